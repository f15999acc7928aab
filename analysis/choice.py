"""Next-token choice under the grammars, projecting onto the vocabulary only where it matters.

The lm_head has 151,936 rows; on a CPU reading them dominates a decode step. A row whose grammar
admits at most `sparse_limit` tokens (JSON punctuation, keys, enum values, digits) only needs
those rows of the weight: its logits are W[ids] @ h, the same numbers the full projection gives
for the admitted tokens, and every other token is masked to -inf either way. Rows in free text
admit nearly every token: with greedy decoding they first ask the engine's exact screened head
(a bf16 pass over the weight, float32 recheck of the near-best) for the unconstrained argmax;
when the grammar admits that token it is also the constrained argmax (the max over a set is the
max over any subset holding it). Otherwise, or without a screen, they take the full float32
projection and the mask, as plain constrained decoding does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import xgrammar as xgr

from analysis.allowed import Admitted
from keye_model.engine import SamplingParams
from keye_model.engine.head import screened_head
from keye_model.engine.sampling import choose


@dataclass
class DecodeStats:
    """Where the tokens of one generation came from (for benchmarks and tests)."""

    forwards: int = 0  # decoder passes after the prompts' prefill
    forced: int = 0  # tokens taken by jump-forward, without logits
    sparse: int = 0  # chosen from the admitted rows of the lm_head only
    screened: int = 0  # chosen by the screened greedy head (admitted unconstrained argmax)
    full: int = 0  # chosen from the full float32 projection and the mask


def _full_logits(weight: torch.Tensor, hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, H) -> masked (B, V) float32; W @ h^T streams the weight once for a few rows."""
    logits = (weight @ hidden.t()).t().float().contiguous()
    xgr.apply_token_bitmask_inplace(logits, masks.to(logits.device))
    return logits


def _admits(mask: torch.Tensor, token: int) -> bool:
    return bool((int(mask[0, token // 32]) >> (token % 32)) & 1)


def _sparse_logits(weight: torch.Tensor, h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return (weight.index_select(0, ids) @ h).float()


def _screened(
    lm_head, hidden: torch.Tensor, admitted: Sequence[Admitted], rows: list[int], out: list[int], stats: DecodeStats
) -> list[int]:
    """Greedy rows settled by the screened head (their token written to out); the rows left over."""
    head = screened_head(lm_head) if rows else None
    if head is None:
        return rows
    left = []
    for i, t in zip(rows, head(hidden[rows]).tolist()):
        if _admits(admitted[i].mask, t):
            out[i] = t
            stats.screened += 1
        else:
            left.append(i)
    return left


def choose_tokens(
    lm_head,
    hidden: torch.Tensor,
    admitted: Sequence[Admitted],
    params: SamplingParams,
    generator: torch.Generator | None,
    sparse_limit: int,
    screen: bool,
    stats: DecodeStats,
) -> list[int]:
    """One token per row of `hidden` (B, H) under `admitted[i]`.

    Greedy takes the argmax of the admitted logits (ties to the smallest id, as argmax over the
    masked full row does). Sampling builds the full masked (B, V) logits and calls the engine's
    `choose` once for the batch, so the generator draws exactly as in plain decoding."""
    dev, weight = hidden.device, lm_head.weight
    greedy = params.temperature == 0.0
    out = [0] * len(admitted)
    sparse_ids = {i: a.ids for i, a in enumerate(admitted) if a.ids is not None and a.ids.numel() <= sparse_limit}
    sparse = list(sparse_ids)
    dense = [i for i in range(len(admitted)) if i not in sparse]
    if greedy and screen:
        dense = _screened(lm_head, hidden, admitted, dense, out, stats)
    stats.sparse += len(sparse)
    stats.full += len(dense)
    full = None
    if dense:
        full = _full_logits(weight, hidden[dense], torch.cat([admitted[i].mask for i in dense]))
    ids = {i: t.to(dev) for i, t in sparse_ids.items()}
    if greedy:
        if full is not None:
            for i, t in zip(dense, full.argmax(-1).tolist()):
                out[i] = t
        for i in sparse:
            out[i] = int(ids[i][_sparse_logits(weight, hidden[i], ids[i]).argmax()])
        return out
    logits = torch.full((len(admitted), weight.shape[0]), float("-inf"), device=dev)
    if full is not None:
        logits[dense] = full
    for i in sparse:
        logits[i, ids[i]] = _sparse_logits(weight, hidden[i], ids[i])
    return choose(logits, params, None, generator).tolist()
