"""model.embed: one L2-normalized vector per input (text, image or video) in one space.

Pooling (documented in KeyeModel.embed): mean of the final-normed last-layer hidden states over
the sequence's real tokens.
"""

from __future__ import annotations

import torch

from keye_model.attention import PackedCausal
from tests.support.prompts import Prompt, batch, text_prompt


def _inputs():
    return [
        text_prompt(1, 7),
        Prompt().text(1, 2).image(4, 4, seed=1).text(3),
        Prompt().text(4).video(2, 4, 4, 0.5, seed=2).text(5),
    ]


def test_embed_shape_norm_and_padding_invariance(tiny):
    prompts = _inputs()
    vecs = tiny.embed(**batch(prompts))
    assert vecs.shape == (3, tiny.config.hidden_size) and vecs.dtype == torch.float32
    assert torch.allclose(vecs.norm(dim=-1), torch.ones(3), atol=1e-6)
    for i, p in enumerate(prompts):
        assert torch.allclose(vecs[i], tiny.embed(**batch([p]))[0], atol=1e-5)


@torch.no_grad()
def test_embed_is_the_mean_of_final_hidden_states_over_real_tokens(tiny):
    p = Prompt().text(9, 8).image(2, 4, seed=3).text(7, 6, 5)
    packed = tiny.pack(**batch([p]))
    hidden = tiny.run(packed.embeds, packed.positions, PackedCausal(packed.lengths, tiny.device))
    want = torch.nn.functional.normalize(hidden.mean(0), dim=0)
    assert torch.allclose(tiny.embed(**batch([p]))[0], want, atol=1e-6)


def test_embeddings_tell_inputs_apart_and_find_themselves(tiny):
    prompts = _inputs() + [Prompt().text(4).video(2, 4, 4, 0.5, seed=7).text(5)]
    vecs = tiny.embed(**batch(prompts))
    sims = vecs @ vecs.T
    assert torch.equal(sims.argmax(1), torch.arange(len(prompts)))
    assert float(sims[2, 3]) < 0.99999  # same text, different video pixels -> different vectors
