"""Two small adapters over keye_model.engine for the analysis.

- `prefill_prefix`: the engine's prefix prefill that also returns the embedding of the prefix
  (mean of the final-normed hidden states, as `KeyeModel.embed` pools), so the video goes
  through the vision tower once for both the answers and the vector.
- `generate_rows`: continue SEVERAL prefixes (one per video or chunk) in one batch; the engine's
  `generate_from_prefix` continues one prefix only. Each row is (prefix, continuation tokens).
Both reuse the engine's own cache, prefill and decode loop (its internal helpers); the engine
owner is asked for public equivalents (see the analysis report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from keye_model.attention import CachedPrefill
from keye_model.engine import Engine, GenerationResult, Prefix, SamplingParams
from keye_model.engine.engine import _State
from keye_model.errors import InputError
from keye_model.rope import VisionGrids, mrope_positions


@torch.no_grad()
def prefill_prefix(engine: Engine, inputs: dict[str, Any]) -> tuple[Prefix, torch.Tensor]:
    """(prefix, L2-normalized float32 embedding of the prefix tokens)."""
    model = engine.model
    packed = model.pack(**inputs)
    if len(packed.lengths) != 1:
        raise InputError(f"a prefix is one sequence, got a batch of {len(packed.lengths)}")
    cache = engine._cache(1, packed.lengths[0])
    hidden = model.run(packed.embeds, packed.positions, CachedPrefill(cache, [0], packed.lengths))
    cache.lengths[0] += packed.lengths[0]
    embedding = F.normalize(hidden.float().mean(0), dim=-1)
    return Prefix(cache, packed.tokens[0], packed.next_positions[0]), embedding


@torch.no_grad()
def generate_rows(engine: Engine, rows: Sequence[tuple[Prefix, Sequence[int]]], params: SamplingParams,
                  logits_processors=None) -> GenerationResult:
    """Batched continuation of several prefixes; row i continues rows[i][0] with rows[i][1]."""
    if not rows:
        raise InputError("no rows to generate")
    model, cfg = engine.model, engine.cfg
    conts = [list(map(int, c)) for _, c in rows]
    if any(not c for c in conts):
        raise InputError("every continuation needs at least one token")
    longest = max(int(p.cache.lengths[0]) + len(c) for (p, _), c in zip(rows, conts))
    cache = engine._cache(len(rows), longest + params.max_new_tokens)
    positions, nxt = [], []
    for i, ((prefix, _), c) in enumerate(zip(rows, conts)):
        cache.copy_rows(prefix.cache, 0, [i])
        p, n = mrope_positions(c, VisionGrids(), cfg, start=prefix.next_position)
        positions.append(p)
        nxt.append(n)
    flat = torch.tensor([t for c in conts for t in c], dtype=torch.long, device=model.device)
    embeds = model.model.embed_tokens(flat)
    logits = engine._prefill(cache, list(range(len(rows))), embeds, torch.cat(positions, 1).to(model.device),
                             [len(c) for c in conts])
    state = _State(cache, logits, torch.tensor(nxt), [p.tokens + c for (p, _), c in zip(rows, conts)])
    result = engine._result(len(rows))
    for _ in engine._loop(state, params, logits_processors, result):
        pass
    return result
