"""Text queries in the video space: the same model, the same chat framing, the same pooling.

A video's vector is the mean-pooled final hidden state over its prefix prompt (system turn, then
the user turn holding the video, without the end of turn; see prompts.prefix_inputs, prefilled
with Engine.prefill_prefix(embed=True)); a query's vector is the same pooling over the same
framing with the query text in place of the video. Both are L2-normalized, so cosine similarity
is a dot product.
"""

from __future__ import annotations

import torch

from analysis.errors import AnalysisError
from analysis.prompts import END_OF_USER

MAX_QUERY_CHARS = 2000


def query_inputs(processor, query: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of a text query in the videos' framing (training embeds captions so too)."""
    if not isinstance(query, str) or not query.strip():
        raise AnalysisError("a text query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise AnalysisError(f"a text query has at most {MAX_QUERY_CHARS} characters, got {len(query)}")
    messages = [{"role": "user", "content": [{"type": "text", "text": query}]}]
    inputs = processor(messages, add_generation_prompt=False)
    if inputs.input_ids[0, -2:].tolist() != END_OF_USER:
        raise AnalysisError("the chat template does not end a user turn with <|im_end|> and a newline")
    return inputs.input_ids[:, :-2], inputs.attention_mask[:, :-2]  # as for videos: no end of turn


def embed_text(model, processor, query: str) -> list[float]:
    ids, mask = query_inputs(processor, query)
    with torch.inference_mode():
        vec = model.embed(ids, mask)
    return vec[0].float().tolist()
