"""Constrained, batched continuation of prefilled prefixes: the analysis decoder.

Row i continues prefix rows[i][0] with the task prompt rows[i][1] under grammar i. The engine's
public API prefills the prefixes (`Engine.prefill_prefix`); this module forks them and decodes,
because three things the analysis needs are not (yet) engine API:
- jump-forward: while a row's grammar admits exactly one token (a JSON key, `": "`, a closing
  bracket), that token is taken without computing logits and fed, with the row's other new
  tokens, in ONE multi-token forward (a CachedPrefill chunk) instead of one decode step each;
- sparse vocabulary projection (choice.py) for rows whose grammar admits few tokens, and the
  engine's screened greedy head for free-text rows;
- compaction: finished rows leave the batch (a moderation answer with its reasoning runs far
  longer than a title; a finished row would keep paying attention and projection every step).
Forced tokens are the ones the plain path would pick too (every other logit is -inf), so with
greedy decoding the tokens match plain constrained decoding (`PLAIN`, the reference) exactly.
What would let this move into the engine: a public decode state with fork(rows) / extend(state,
tokens per row) / keep(state, rows), and a masked variant of the screened greedy head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import xgrammar as xgr

from analysis.allowed import RowGrammar
from analysis.choice import DecodeStats, choose_tokens
from analysis.grammar import STOP_ID
from keye_model.attention import CachedDecode, CachedPrefill
from keye_model.engine import GenerationResult, KVCache, Prefix, SamplingParams
from keye_model.errors import InputError
from keye_model.rope import VisionGrids, mrope_positions


@dataclass(frozen=True)
class DecodeOptions:
    jump_forward: bool = True  # grammar-forced tokens skip the logits and share one forward
    sparse_limit: int = 4096  # rows admitting at most this many tokens project only those rows (0: off)
    screen: bool = True  # greedy free-text rows try the engine's screened exact argmax first


DEFAULT_DECODE = DecodeOptions()  # every shortcut on
PLAIN = DecodeOptions(jump_forward=False, sparse_limit=0, screen=False)  # every token from full logits + mask


class _Batch:
    """Live rows' KV cache and next positions; rows leave it as they finish."""

    def __init__(self, model, rows: Sequence[tuple[Prefix, Sequence[int]]], room: int) -> None:
        cfg = model.config
        self.model = model
        longest = max(int(p.cache.lengths[0]) + len(c) for p, c in rows)
        self.cache = KVCache.allocate(
            cfg.num_hidden_layers,
            len(rows),
            longest + room,
            cfg.num_key_value_heads,
            cfg.head_dim,
            model.dtype,
            model.device,
        )
        positions, self.next_pos = [], []
        for i, (prefix, cont) in enumerate(rows):
            self.cache.copy_rows(prefix.cache, 0, [i])
            p, n = mrope_positions(list(cont), VisionGrids(), cfg, start=prefix.next_position)
            positions.append(p)
            self.next_pos.append(n)
        self.hidden = self._prefill([list(c) for _, c in rows], torch.cat(positions, 1))

    def _prefill(self, feeds: list[list[int]], positions: torch.Tensor) -> torch.Tensor:
        """Several new tokens for some rows: write them after each row's cache; last hidden per row."""
        lengths = [len(f) for f in feeds]
        model = self.model
        embeds = model.model.embed_tokens(torch.tensor([t for f in feeds for t in f], device=model.device))
        hidden = model.run(
            embeds, positions.to(model.device), CachedPrefill(self.cache, list(range(len(feeds))), lengths)
        )
        self.cache.lengths += torch.tensor(lengths)
        return hidden[(torch.tensor(lengths).cumsum(0) - 1).to(hidden.device)]

    def extend(self, feeds: list[list[int]]) -> torch.Tensor:
        """Feed each row its new tokens (one per row: a decode step); the rows' last hidden states."""
        model = self.model
        if all(len(f) == 1 for f in feeds):
            embeds = model.model.embed_tokens(torch.tensor([f[0] for f in feeds], device=model.device))
            positions = torch.tensor(self.next_pos).to(model.device).expand(3, -1)
            self.hidden = model.run(embeds, positions, CachedDecode(self.cache))
            self.cache.lengths += 1
        else:  # text tokens: the three M-RoPE rows hold the same position
            positions = torch.cat([torch.arange(p, p + len(f)) for p, f in zip(self.next_pos, feeds)]).expand(3, -1)
            self.hidden = self._prefill(feeds, positions)
        self.next_pos = [p + len(f) for p, f in zip(self.next_pos, feeds)]
        return self.hidden

    def keep(self, idx: list[int]) -> None:
        sel = torch.tensor(idx, device=self.cache.device)
        self.cache = KVCache(
            [k.index_select(0, sel) for k in self.cache.k],
            [v.index_select(0, sel) for v in self.cache.v],
            self.cache.lengths[idx],
        )
        self.next_pos = [self.next_pos[i] for i in idx]
        self.hidden = self.hidden[sel]


@torch.no_grad()
def generate_rows(
    engine,
    rows: Sequence[tuple[Prefix, Sequence[int]]],
    grammars: Sequence[xgr.CompiledGrammar],
    budgets: Sequence[int],
    params: SamplingParams,
    options: DecodeOptions = DecodeOptions(),
    stats: DecodeStats | None = None,
) -> GenerationResult:
    """Row i continues rows[i][0] with rows[i][1] under grammars[i], at most budgets[i] tokens."""
    if not rows:
        raise InputError("no rows to generate")
    if not len(rows) == len(grammars) == len(budgets):
        raise InputError(f"{len(rows)} rows, {len(grammars)} grammars and {len(budgets)} budgets must match")
    if any(len(c) == 0 for _, c in rows):
        raise InputError("every continuation needs at least one token")
    if params.stop_strings or params.repetition_penalty != 1.0:
        raise InputError("the analysis decoder supports neither stop strings nor a repetition penalty")
    model = engine.model
    vocab = model.lm_head.weight.shape[0]
    limit = max(options.sparse_limit, 1 if options.jump_forward else 0)
    grams = [RowGrammar(g, b, STOP_ID, vocab) for g, b in zip(grammars, budgets)]
    result = GenerationResult([[] for _ in rows], ["length"] * len(rows))
    stops = set(params.stop_token_ids)
    stats = stats if stats is not None else DecodeStats()

    def next_forced(r: int) -> int | None:
        return grams[r].admitted(limit).forced if options.jump_forward else None

    def take(r: int, tok: int, feed: list[int], forced: bool = False) -> bool:
        """Record row r's token, then any it is forced to take; True while the row goes on."""
        while True:
            stats.forced += forced
            result.tokens[r].append(tok)
            grams[r].accept(tok)
            if tok in stops:
                result.finish_reasons[r] = "stop_token"
                return False
            if len(result.tokens[r]) >= params.max_new_tokens:
                return False
            feed.append(tok)
            nxt = next_forced(r)
            if nxt is None:
                return True
            tok, forced = nxt, True

    feeds = [list(map(int, c)) for _, c in rows]
    live = []
    for r, feed in enumerate(feeds):  # a task may open with forced text: it joins the prompt's prefill
        nxt = next_forced(r)
        if nxt is None or take(r, nxt, feed, forced=True):
            live.append(r)
    if not live:
        return result
    batch = _Batch(model, [(rows[r][0], feeds[r]) for r in live], params.max_new_tokens)
    gen = torch.Generator(device=model.device).manual_seed(params.seed) if params.seed is not None else None
    while True:
        toks = choose_tokens(
            model.lm_head,
            batch.hidden,
            [grams[r].admitted(limit) for r in live],
            params,
            gen,
            options.sparse_limit,
            options.screen,
            stats,
        )
        keep, feeds = [], []
        for i, (r, tok) in enumerate(zip(live, toks)):
            feed = []  # list[int], as in the prefill loop above
            if take(r, tok, feed):
                keep.append(i)
                feeds.append(feed)
        if not keep:
            return result
        if len(keep) < len(live):
            batch.keep(keep)
            live = [live[i] for i in keep]
        batch.extend(feeds)
        stats.forwards += 1
