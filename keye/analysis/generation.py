"""Two small adapters over keye_model.engine for the analysis.

- `prefill_prefix`: the engine's prefix prefill that also returns the embedding of the prefix
  (mean of the final-normed hidden states, as `KeyeModel.embed` pools), so the video goes
  through the vision tower once for both the answers and the vector.
- `generate_rows`: continue SEVERAL prefixes (one per video or chunk) in one batch; the engine's
  `generate_from_prefix` continues one prefix only. Each row is (prefix, continuation tokens).
  Its decode loop drops finished rows from the batch (compaction): task answers differ a lot in
  length (a thinking moderation answer against a short title), and a finished row would
  otherwise keep paying for the vocabulary projection and attention every step.
Both reuse the engine's cache, prefill and sampling (some are its internal helpers); the engine
owner is asked for public equivalents (see the analysis report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from keye_model.attention import CachedDecode, CachedPrefill
from keye_model.engine import Engine, GenerationResult, KVCache, Prefix, SamplingParams
from keye_model.engine.sampling import choose
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
    history = [p.tokens + c for (p, _), c in zip(rows, conts)]
    return _decode(engine, cache, logits, torch.tensor(nxt), history, params, logits_processors or ())


def _decode(engine: Engine, cache: KVCache, logits: torch.Tensor, next_pos: torch.Tensor, history: list[list[int]],
            params: SamplingParams, processors) -> GenerationResult:
    """The engine's decode step and sampling, on a batch that shrinks as rows finish."""
    if params.stop_strings:
        raise InputError("generate_rows does not support stop strings; use stop token ids")
    model, dev = engine.model, engine.model.device
    n = cache.batch
    result = GenerationResult([[] for _ in range(n)], ["length"] * n)
    live = list(range(n))  # the result row of each batch row
    gen = torch.Generator(device=dev).manual_seed(params.seed) if params.seed is not None else None
    seen = torch.zeros(n, logits.shape[-1], dtype=torch.bool, device=dev)
    if params.repetition_penalty != 1.0:
        for i, h in enumerate(history):
            seen[i, torch.tensor(h, dtype=torch.long, device=dev)] = True
    stops = set(params.stop_token_ids)
    for step in range(params.max_new_tokens):
        for proc in processors:
            logits = proc(logits, [result.tokens[r] for r in live])
        tok = choose(logits, params, seen, gen)
        seen[torch.arange(len(live), device=dev), tok] = True
        keep = []
        for i, t in enumerate(tok.tolist()):
            result.tokens[live[i]].append(t)
            if t in stops:
                result.finish_reasons[live[i]] = "stop_token"
            else:
                keep.append(i)
        if not keep or step == params.max_new_tokens - 1:
            break
        if len(keep) < len(live):
            idx = torch.tensor(keep, device=dev)
            cache = KVCache([k.index_select(0, idx) for k in cache.k], [v.index_select(0, idx) for v in cache.v],
                            cache.lengths[keep])
            live, next_pos, seen, tok = [live[i] for i in keep], next_pos[keep], seen[idx], tok[idx]
            for proc in processors:
                if hasattr(proc, "keep_rows"):
                    proc.keep_rows(keep)
        hidden = model.run(model.model.embed_tokens(tok), next_pos.to(dev).expand(3, -1), CachedDecode(cache))
        cache.lengths += 1
        next_pos += 1
        logits = model.lm_head(hidden).float()
    return result
