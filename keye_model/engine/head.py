"""Exact greedy next token through a bfloat16 screen of the vocabulary projection.

At decode time on a CPU the lm_head (151,936 rows) is bound by reading its weight. oneDNN's
bfloat16 matmul (AVX512-BF16/AMX) reads half the bytes and runs 3-6x faster than float32 here,
but its scores are rounded. They are only a screen: every token whose bf16 score could, within a
proven error bound, still be the best is recomputed in float32 from the original weight, and the
argmax is taken over those. The choice is argmax of the float32 logits (up to float32 rounding
ties, which any two summation orders already break differently).

Bound, for row j of W and hidden h (bf16 copies Ŵ, ĥ): |W_j·h - score_j| <=
  ||W_j - Ŵ_j|| ||h|| + ||Ŵ_j|| ||h - ĥ||   (Cauchy-Schwarz on the bf16 rounding)
  + K 2^-23 ||Ŵ_j|| ||ĥ||                   (float32 accumulation of exact bf16 products, 2x margin)
  + 2^-8 |score_j|                           (the bf16 output rounding, 2x margin)
with the row norms replaced by their maxima over the vocabulary (one scalar per batch row).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

_OUTPUT_ROUNDING = 2.0**-8
_CHUNK = 16384  # rows per pass when measuring the rounding (bounded temporary memory)


def project(weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """(B, K) -> (B, V) float32 logits, the plain way. For a few rows against a ~150k-row
    vocabulary, BLAS is up to 1.6x faster as W @ h^T (one streaming pass over W) than as h @ W^T."""
    return (weight @ hidden.t()).t().float().contiguous()  # row-major: processors mask rows in place


class ScreenedGreedyHead:
    # Candidates are found block by block: block maxima first, then only the blocks that pass
    # (a mask or topk over the whole vocabulary costs as much as the bf16 matmul itself).
    block = 128
    # Beyond this many passing blocks per row the screen saves nothing (e.g. an all-equal head).
    max_candidates = 1024

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()
        self.vocab = weight.shape[0]
        pad = -self.vocab % self.block  # zero rows up to whole blocks; their scores are masked
        self.screen = self.weight.new_zeros(self.vocab + pad, weight.shape[1], dtype=torch.bfloat16)
        self.screen[: self.vocab] = self.weight  # no float32 temporary of the whole weight
        rounding, norms = [], []
        for w, s in zip(self.weight.split(_CHUNK), self.screen.split(_CHUNK)):
            rounding.append((w - s.float()[: len(w)]).norm(dim=1).max())
            norms.append(s.float().norm(dim=1).max())
        slack = 1.0 + 1e-3  # the norms themselves are float32 sums
        self.rounding = float(torch.stack(rounding).max()) * slack  # max_j ||W_j - Ŵ_j||
        self.norm = float(torch.stack(norms).max()) * slack  # max_j ||Ŵ_j||
        self.accumulation = weight.shape[1] * 2.0**-23

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, K) float32 -> token ids (B,) long: argmax of the float32 logits."""
        h = hidden.float()
        batch = h.shape[0]
        hb = h.bfloat16()
        scores = (self.screen @ hb.t()).t().contiguous()  # (B, V') bf16; W @ h^T streams W once
        if scores.shape[1] > self.vocab:
            scores[:, self.vocab :] = float("-inf")
        blocks = scores.view(batch, -1, self.block)
        block_max = blocks.amax(-1).float()
        hf = hb.float()
        err = (
            self.rounding * h.norm(dim=1)
            + self.norm * (h - hf).norm(dim=1)
            + self.norm * self.accumulation * hf.norm(dim=1)
        )
        # The best true logit is at least `floor`; token j can reach it only if
        # score_j + err + r |score_j| >= floor, i.e. score_j >= threshold (solved for both signs).
        best = block_max.amax(1)
        x = best - 2 * err - _OUTPUT_ROUNDING * best.abs()
        threshold = torch.where(x >= 0, x / (1 + _OUTPUT_ROUNDING), x / (1 - _OUTPUT_ROUNDING))
        rows, blks = (block_max >= threshold[:, None]).nonzero(as_tuple=True)
        if rows.numel() > self.max_candidates * batch:
            return project(self.weight, h).argmax(-1)  # too many near-ties to screen
        hit, col = (blocks[rows, blks].float() >= threshold[rows, None]).nonzero(as_tuple=True)
        rows, vocab = rows[hit], blks[hit] * self.block + col
        exact = (self.weight[vocab] * h[rows]).sum(-1)
        top = exact.new_full((batch,), float("-inf")).scatter_reduce(0, rows, exact, "amax")
        win = exact == top[rows]
        # Ties go to the smallest token id, as argmax does.
        tok = torch.full((batch,), self.vocab, dtype=torch.long, device=h.device)
        tok = tok.scatter_reduce(0, rows[win], vocab[win], "amin")
        if bool((tok == self.vocab).any()):
            return project(self.weight, h).argmax(-1)  # a row without candidates: NaN hidden states
        return tok


_HEADS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, ScreenedGreedyHead]] = weakref.WeakKeyDictionary()


def screened_head(lm_head: nn.Linear) -> ScreenedGreedyHead | None:
    """The screen for a float32 CPU lm_head, built once and rebuilt when the weight changes;
    None where it does not pay (CUDA, or a weight already in 16 bits)."""
    w = lm_head.weight
    if w.device.type != "cpu" or w.dtype != torch.float32:
        return None
    key = (w.data_ptr(), w._version, tuple(w.shape))
    cached = _HEADS.get(lm_head)
    if cached is None or cached[0] != key:
        cached = (key, ScreenedGreedyHead(w))
        _HEADS[lm_head] = cached
    return cached[1]
