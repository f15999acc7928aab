"""A contrastive objective: a video's embedding near its caption's, away from the batch's other captions.

    pairs = caption_pairs(processor, corpus_examples(processor, cfg, folder))
    train_full(model, pairs, FullConfig(batch_size=8), Contrastive(temperature=0.07))

Both sides go through the model's own embedding path (KeyeModel.embed: mean-pooled final hidden
states, L2-normalized), with gradients: a video is embedded like the analyzer embeds it (each visual
pass's prompt prefix, the passes' vectors averaged and normalized again), a caption like a search
query (keye.analysis.embedding.query_inputs). The loss is the symmetric InfoNCE over the batch
(video->caption and caption->video cross-entropy on scaled cosine similarities, the batch's other
pairs as negatives) with a learnable (or fixed) temperature. Under data parallelism each rank's
negatives are its own slice of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from keye.analysis.embedding import query_inputs
from keye_model.model import KeyeModel
from training.dataset import ChunkPrompt
from training.errors import TrainConfigError

MAX_SCALE = 100.0  # the similarity scale's ceiling (temperature 0.01): keeps a learned one from diverging

# KeyeModel.embed runs under no_grad for serving; training needs the very same pooling with gradients.
_embed = KeyeModel.embed.__wrapped__


@dataclass
class VideoCaption:
    video_id: str
    passes: list[ChunkPrompt]  # the analyzer's visual passes of the video
    text_ids: torch.Tensor  # (1, L) the caption framed as a query
    text_mask: torch.Tensor


def caption_pairs(processor, made) -> list[VideoCaption]:
    """One pair per clip of corpus_examples' output (its decoded passes and its caption)."""
    out = []
    for vid, passes in made.clips.items():
        ids, mask = query_inputs(processor, made.captions[vid])
        out.append(VideoCaption(vid, passes, ids, mask))
    return out


def video_vectors(model: nn.Module, pairs: Sequence[VideoCaption]) -> torch.Tensor:
    rows = []
    for p in pairs:
        per_pass = torch.cat([_embed(model, c.ids[None], **c.vision) for c in p.passes])
        rows.append(F.normalize(per_pass.mean(0), dim=-1))
    return torch.stack(rows)


def text_vectors(model: nn.Module, pairs: Sequence[VideoCaption]) -> torch.Tensor:
    return torch.cat([_embed(model, p.text_ids, p.text_mask) for p in pairs])


class Contrastive(nn.Module):
    def __init__(self, temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        if not 1 / MAX_SCALE <= temperature <= 1.0:
            raise TrainConfigError(f"temperature must lie in [{1 / MAX_SCALE}, 1], got {temperature}")
        log_scale = torch.tensor(math.log(1 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1 / self.scale().detach())

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def weight(self, batch: Sequence[VideoCaption]) -> float:
        return float(len(batch))

    def logits(self, model: nn.Module, batch: Sequence[VideoCaption]) -> torch.Tensor:
        """(videos x captions) scaled cosine similarities."""
        v, t = video_vectors(model, batch), text_vectors(model, batch)
        return self.scale() * v @ t.t()

    def loss_sum(self, model: nn.Module, batch: Sequence[VideoCaption]) -> torch.Tensor:
        logits = self.logits(model, batch).float()
        match = torch.arange(len(batch), device=logits.device)
        video_to_text = F.cross_entropy(logits, match, reduction="sum")
        return 0.5 * (video_to_text + F.cross_entropy(logits.t(), match, reduction="sum"))


@torch.no_grad()
def caption_ranks(model: nn.Module, pairs: Sequence[VideoCaption]) -> list[int]:
    """For each video, the rank (0 = first) of its own caption among all the pairs' captions."""
    sims = video_vectors(model, pairs) @ text_vectors(model, pairs).t()
    own = sims.diagonal()[:, None]
    return (sims > own).sum(1).tolist()
