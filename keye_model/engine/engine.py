"""Batched generation over a preallocated KV cache, with prefix reuse and a token stream.

Prefill packs the real tokens of all rows (left padding stripped) and writes their keys and
values into cache rows; decode feeds one token per row at position (prompt max + 1 + step).
A prefix (system prompt + video) is prefilled once into a one-row cache; continuations fork
its row into a fresh cache and only compute their own tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from keye_model.attention import CachedDecode, CachedPrefill
from keye_model.engine.head import project, screened_head
from keye_model.engine.sampling import LogitsProcessor, SamplingParams, choose
from keye_model.errors import InputError
from keye_model.kv_cache import KVCache
from keye_model.rope import VisionGrids, mrope_positions


@dataclass
class StepOutput:
    """One decoding step: the token each row produced (None once a row had finished)."""

    step: int
    tokens: list[int | None]
    finished: list[bool]


@dataclass
class GenerationResult:
    tokens: list[list[int]]
    finish_reasons: list[str]  # "stop_token", "stop_string" or "length"

    def padded(self, pad_id: int) -> torch.Tensor:
        width = max((len(t) for t in self.tokens), default=0)
        out = torch.full((len(self.tokens), width), pad_id, dtype=torch.long)
        for i, t in enumerate(self.tokens):
            out[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return out


@dataclass
class Prefix:
    """A prefilled shared prompt: one cache row, its tokens and the next free position."""

    cache: KVCache
    tokens: list[int]
    next_position: int
    meta: dict[str, Any] = field(default_factory=dict)
    # With prefill_prefix(..., embed=True): the prompt's vector, pooled like KeyeModel.embed.
    embedding: torch.Tensor | None = None


@dataclass
class _State:
    cache: KVCache
    hidden: torch.Tensor  # (B, hidden): each row's last final-normed hidden state
    next_pos: torch.Tensor  # (B,) long on the CPU
    history: list[list[int]]  # prompt tokens per row (for the repetition penalty)


class _DecodeRope:
    """cos/sin of every position a generation can decode, computed once: a step indexes them.

    Decoded tokens are text, so their three M-RoPE rows hold the same position."""

    def __init__(self, model, next_pos: torch.Tensor, steps: int) -> None:
        lo, hi = int(next_pos.min()), int(next_pos.max()) + steps
        self.cos, self.sin = model.rope(torch.arange(lo, hi, device=model.device).expand(3, -1))
        self.offset = (next_pos - lo).to(model.device)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.offset + step
        return self.cos.index_select(0, idx), self.sin.index_select(0, idx)


class Engine:
    def __init__(self, model, decode=None, screen: bool = True) -> None:
        """`decode(token_ids) -> str` is needed only for stop strings. `screen=False` turns off
        the bf16-screened exact greedy head (engine/head.py), e.g. to compare against it."""
        self.model = model
        self.decode = decode
        self.cfg = model.config
        self.screen = screen

    # ---- prefill -------------------------------------------------------------------------------
    def _cache(self, batch: int, max_len: int) -> KVCache:
        c = self.cfg
        return KVCache.allocate(
            c.num_hidden_layers, batch, max_len, c.num_key_value_heads, c.head_dim, self.model.dtype, self.model.device
        )

    def _prefill_hidden(self, cache: KVCache, rows: list[int], embeds, positions, lengths: list[int]) -> torch.Tensor:
        """Write the new tokens of each row into the cache; their final hidden states, packed."""
        if any(n == 0 for n in lengths):
            raise InputError("every input row needs at least one real token")
        hidden = self.model.run(embeds, positions, CachedPrefill(cache, rows, lengths))
        for r, n in zip(rows, lengths):
            cache.lengths[r] += n
        return hidden

    def _prefill_last(self, cache: KVCache, rows: list[int], embeds, positions, lengths: list[int]) -> torch.Tensor:
        """As _prefill_hidden, returning only each row's last hidden state (B, hidden)."""
        hidden = self._prefill_hidden(cache, rows, embeds, positions, lengths)
        last = torch.tensor(lengths).cumsum(0) - 1
        return hidden[last.to(hidden.device)]

    @staticmethod
    def _as_dict(inputs: Any) -> dict[str, Any]:
        """Processor output (KeyeInputs) or a plain dict of the processor's keys."""
        return inputs.model_inputs() if hasattr(inputs, "model_inputs") else dict(inputs)

    @torch.no_grad()
    def _start(self, inputs: dict[str, Any], params: SamplingParams) -> _State:
        packed = self.model.pack(**self._as_dict(inputs))
        batch = len(packed.lengths)
        cache = self._cache(batch, max(packed.lengths) + params.max_new_tokens)
        hidden = self._prefill_last(cache, list(range(batch)), packed.embeds, packed.positions, packed.lengths)
        return _State(cache, hidden, torch.tensor(packed.next_positions), packed.tokens)

    @torch.no_grad()
    def prefill_prefix(self, inputs: dict[str, Any], embed: bool = False) -> Prefix:
        """Run a shared prompt (one row, media included) once; continue it with `*_from_prefix`.

        embed=True also pools the prompt's hidden states into `Prefix.embedding` exactly as
        KeyeModel.embed does, so one pass through the vision tower serves answers and vector.
        """
        packed = self.model.pack(**self._as_dict(inputs))
        if len(packed.lengths) != 1:
            raise InputError(f"a prefix is one sequence, got a batch of {len(packed.lengths)}")
        cache = self._cache(1, packed.lengths[0])
        hidden = self._prefill_hidden(cache, [0], packed.embeds, packed.positions, packed.lengths)
        vector = F.normalize(hidden.float().mean(0), dim=-1) if embed else None
        return Prefix(cache, packed.tokens[0], packed.next_positions[0], embedding=vector)

    @torch.no_grad()
    def _continue_rows(self, rows: Sequence[tuple[Prefix, Sequence[int]]], params: SamplingParams) -> _State:
        """Row i forks rows[i]'s prefix cache and prefills its continuation tokens (text)."""
        if not rows:
            raise InputError("no continuation prompts given")
        conts = [list(map(int, c)) for _, c in rows]
        longest = max(int(p.cache.lengths[0]) + len(c) for (p, _), c in zip(rows, conts))
        cache = self._cache(len(rows), longest + params.max_new_tokens)
        positions, nxt = [], []
        for i, ((prefix, _), c) in enumerate(zip(rows, conts)):
            cache.copy_rows(prefix.cache, 0, [i])
            p, n = mrope_positions(c, VisionGrids(), self.cfg, start=prefix.next_position)
            positions.append(p)
            nxt.append(n)
        flat = torch.tensor([t for c in conts for t in c], dtype=torch.long, device=self.model.device)
        embeds = self.model.model.embed_tokens(flat)
        hidden = self._prefill_last(
            cache,
            list(range(len(rows))),
            embeds,
            torch.cat(positions, 1).to(self.model.device),
            [len(c) for c in conts],
        )
        return _State(cache, hidden, torch.tensor(nxt), [p.tokens + c for (p, _), c in zip(rows, conts)])

    def _continue(self, prefix: Prefix, continuations: Sequence[Sequence[int]], params: SamplingParams) -> _State:
        return self._continue_rows([(prefix, c) for c in continuations], params)

    # ---- decode loop ---------------------------------------------------------------------------
    def _loop(
        self, st: _State, params: SamplingParams, processors: Sequence[LogitsProcessor] | None, result: GenerationResult
    ) -> Iterator[StepOutput]:
        if params.stop_strings and self.decode is None:
            raise InputError("stop strings need an Engine built with decode=tokenizer.decode")
        model, dev = self.model, self.model.device
        batch = st.cache.batch
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=dev).manual_seed(params.seed)
        # Plain greedy needs no logits at all: the screened head returns the argmax directly.
        head = None
        if params.temperature == 0.0 and params.repetition_penalty == 1.0 and not processors and self.screen:
            head = screened_head(model.lm_head)
        seen = None  # tokens of each row's prompt and output, only for the repetition penalty
        if params.repetition_penalty != 1.0:
            seen = torch.zeros(batch, model.config.vocab_size, dtype=torch.bool, device=dev)
            for i, h in enumerate(st.history):
                seen[i, torch.tensor(h, dtype=torch.long, device=dev)] = True
        rope = _DecodeRope(model, st.next_pos, params.max_new_tokens)
        stops = set(params.stop_token_ids)
        out = result.tokens
        done = [False] * batch
        hidden = st.hidden
        for step in range(params.max_new_tokens):
            if head is not None:
                tok = head(hidden)
            else:
                logits = project(model.lm_head.weight, hidden)
                for proc in processors or ():
                    logits = proc(logits, out)
                tok = choose(logits, params, seen, gen)
            step_tokens: list[int | None] = []
            for i, t in enumerate(tok.tolist()):
                if done[i]:
                    step_tokens.append(None)
                    continue
                out[i].append(t)
                step_tokens.append(t)
                if t in stops:
                    done[i], result.finish_reasons[i] = True, "stop_token"
                elif params.stop_strings and self._hit_stop_string(out[i], params.stop_strings):
                    done[i], result.finish_reasons[i] = True, "stop_string"
            if seen is not None:
                seen[torch.arange(batch, device=dev), tok] = True
            yield StepOutput(step, step_tokens, list(done))
            if all(done) or step == params.max_new_tokens - 1:
                break
            if any(done):  # finished rows keep decoding padding (their output is frozen)
                tok = tok.masked_fill(torch.tensor(done, device=dev), self.cfg.pad_token_id)
            with torch.no_grad():
                cos, sin = rope.at(step)
                hidden = model.model(model.model.embed_tokens(tok), cos, sin, CachedDecode(st.cache))
                st.cache.lengths += 1

    def _hit_stop_string(self, tokens: list[int], stop_strings: Sequence[str]) -> bool:
        longest = max(len(s) for s in stop_strings)
        text = self.decode(tokens[-(longest + 4) :])
        return any(s in text for s in stop_strings)

    def _result(self, batch: int) -> GenerationResult:
        return GenerationResult([[] for _ in range(batch)], ["length"] * batch)

    # ---- public API ----------------------------------------------------------------------------
    def stream(
        self,
        inputs: dict[str, Any],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> Iterator[StepOutput]:
        """Yield one StepOutput per decoding step for a (left-padded) batch of prompts."""
        params = params or SamplingParams()
        st = self._start(inputs, params)
        yield from self._loop(st, params, logits_processors, self._result(st.cache.batch))

    def generate(
        self,
        inputs: dict[str, Any],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> GenerationResult:
        params = params or SamplingParams()
        st = self._start(inputs, params)
        result = self._result(st.cache.batch)
        for _ in self._loop(st, params, logits_processors, result):
            pass
        return result

    def stream_from_prefix(
        self,
        prefix: Prefix,
        continuations: Sequence[Sequence[int]],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> Iterator[StepOutput]:
        params = params or SamplingParams()
        st = self._continue(prefix, continuations, params)
        yield from self._loop(st, params, logits_processors, self._result(st.cache.batch))

    def generate_from_prefixes(
        self,
        rows: Sequence[tuple[Prefix, Sequence[int]]],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> GenerationResult:
        """Batched continuation of SEVERAL prefixes: row i continues rows[i][0] with rows[i][1]."""
        params = params or SamplingParams()
        st = self._continue_rows(rows, params)
        result = self._result(st.cache.batch)
        for _ in self._loop(st, params, logits_processors, result):
            pass
        return result

    def stream_from_prefixes(
        self,
        rows: Sequence[tuple[Prefix, Sequence[int]]],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> Iterator[StepOutput]:
        params = params or SamplingParams()
        st = self._continue_rows(rows, params)
        yield from self._loop(st, params, logits_processors, self._result(st.cache.batch))

    def generate_from_prefix(
        self,
        prefix: Prefix,
        continuations: Sequence[Sequence[int]],
        params: SamplingParams | None = None,
        logits_processors: Sequence[LogitsProcessor] | None = None,
    ) -> GenerationResult:
        """Continue one prefilled prefix with several text prompts (token ids), batched."""
        params = params or SamplingParams()
        st = self._continue(prefix, continuations, params)
        result = self._result(st.cache.batch)
        for _ in self._loop(st, params, logits_processors, result):
            pass
        return result


def text_deltas(steps: Iterator[StepOutput], decode, rows: int) -> Iterator[list[str]]:
    """Turn a token stream into per-row text increments for callers that stream text.

    A token can end inside a multi-byte character (byte-level BPE); such text is held back
    until the character completes, so every increment is printable and their sum is the text.
    """
    tokens: list[list[int]] = [[] for _ in range(rows)]
    sent = [0] * rows
    for step in steps:
        out = []
        for i, t in enumerate(step.tokens):
            if t is not None:
                tokens[i].append(t)
            text = decode(tokens[i]) if tokens[i] else ""
            if text.endswith("\ufffd"):
                out.append("")
                continue
            out.append(text[sent[i] :])
            sent[i] = len(text)
        yield out
