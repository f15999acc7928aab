"""Constrained decoding: each task's answer grammar (thinking prelude + JSON schema) as token masks.

The grammar of a task is `prelude json`: no prelude for no_think, a bounded `<think>...</think>`
block for think, and optional `<analysis>...</analysis>` then optional think block for auto
(the model decides). Thinking text cannot contain '<', so the closing tag is the only way out.
Special tokens other than the stop token are given an empty string, which xgrammar treats as
never admissible: a vision pad or <|im_start|> can never appear inside an answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import xgrammar as xgr

from analysis.config import AnalysisConfig
from analysis.errors import GrammarError
from analysis.schemas import task_schema

VOCAB_SIZE = 151936  # lm_head rows of Keye-VL-8B (the tokenizer has 151675 ids; the rest are padding)
STOP_ID = 151645  # <|im_end|>
_INFO_CACHE: dict[int, xgr.TokenizerInfo] = {}
_INFO_LOCK = threading.Lock()


def tokenizer_info(tokenizer, vocab_size: int = VOCAB_SIZE) -> xgr.TokenizerInfo:
    """xgrammar's view of the Keye tokenizer (a KeyeTokenizer); built once per tokenizer object."""
    with _INFO_LOCK:
        info = _INFO_CACHE.get(id(tokenizer))
        if info is None:
            vocab = tokenizer.tok.get_vocab(with_added_tokens=True)
            encoded = [""] * len(tokenizer)
            for piece, i in vocab.items():
                encoded[i] = piece
            for i in tokenizer.special_ids:
                encoded[i] = ""  # special: only ever admitted as the stop token
            info = xgr.TokenizerInfo(
                encoded, vocab_type=xgr.VocabType.BYTE_LEVEL, vocab_size=vocab_size, stop_token_ids=[STOP_ID]
            )
            _INFO_CACHE[id(tokenizer)] = info
        return info


def prelude_ebnf(thinking: str, think_chars: int, analysis_chars: int) -> str | None:
    think = f'"<think>" [^<]{{0,{think_chars}}} "</think>" [\\n]{{0,2}}'
    analysis = f'"<analysis>" [^<]{{0,{analysis_chars}}} "</analysis>" [\\n]{{0,2}}'
    if thinking == "no_think":
        return None
    if thinking == "think":
        return f"root ::= {think}"
    if thinking == "auto":
        return f"root ::= ({analysis})? ({think})?"
    raise GrammarError(f"unknown thinking mode {thinking!r}")


def _for_xgrammar(schema):
    """xgrammar ignores minLength/maxLength beside a pattern (and warns); the pattern already bounds it."""
    if isinstance(schema, dict):
        drop = {"minLength", "maxLength"} if "pattern" in schema else set()
        return {k: _for_xgrammar(v) for k, v in schema.items() if k not in drop}
    if isinstance(schema, list):
        return [_for_xgrammar(v) for v in schema]
    return schema


class GrammarBook:
    """Compiles and caches the grammar of each (task, shot count)."""

    def __init__(self, cfg: AnalysisConfig, tokenizer, vocab_size: int = VOCAB_SIZE) -> None:
        self.cfg = cfg
        self.info = tokenizer_info(tokenizer, vocab_size)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)
        self._cache: dict[tuple[str, int], xgr.CompiledGrammar] = {}
        self._lock = threading.Lock()

    def grammar(self, task: str, n_segments: int) -> xgr.Grammar:
        t = self.cfg.task(task)
        schema = json.dumps(_for_xgrammar(task_schema(self.cfg, task, n_segments)))
        answer = xgr.Grammar.from_json_schema(schema, any_whitespace=False, strict_mode=True)
        prelude = prelude_ebnf(t.thinking, t.limits.get("think_chars", 0), t.limits.get("analysis_chars", 0))
        if prelude is None:
            return answer
        return xgr.Grammar.concat(xgr.Grammar.from_ebnf(prelude), answer)

    def compiled(self, task: str, n_segments: int) -> xgr.CompiledGrammar:
        key = (task, n_segments)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self.compiler.compile_grammar(self.grammar(task, n_segments))
            return self._cache[key]


@dataclass
class _Row:
    matcher: xgr.GrammarMatcher
    budget: int
    seen: int = 0


class GrammarMasks:
    """Engine logits processor: one grammar matcher per batch row, fed the row's new tokens each step.

    A row that reaches its token budget is forced to stop (its answer is then incomplete and the
    parser reports it); with budgets from `schemas.check_budgets` that never happens.
    """

    def __init__(
        self,
        grammars: Sequence[xgr.CompiledGrammar],
        budgets: Sequence[int],
        vocab_size: int = VOCAB_SIZE,
        stop_id: int = STOP_ID,
    ) -> None:
        if len(grammars) != len(budgets):
            raise GrammarError(f"{len(grammars)} grammars for {len(budgets)} budgets")
        self.rows = [_Row(xgr.GrammarMatcher(g), int(b)) for g, b in zip(grammars, budgets)]
        self.bitmask = xgr.allocate_token_bitmask(len(self.rows), vocab_size)
        self.stop_id = stop_id

    def __call__(self, logits: torch.Tensor, generated: Sequence[Sequence[int]]) -> torch.Tensor:
        if logits.shape[0] != len(self.rows):
            raise GrammarError(f"logits have {logits.shape[0]} rows, the masks {len(self.rows)}")
        force_stop = []
        for i, row in enumerate(self.rows):
            toks = generated[i]
            for t in toks[row.seen :]:
                if not row.matcher.is_terminated() and not row.matcher.accept_token(int(t)):
                    raise GrammarError(f"row {i}: token {t} is not admitted by its grammar")
            row.seen = len(toks)
            if row.matcher.is_terminated():
                self.bitmask[i] = -1  # finished row: its logits are ignored
            else:
                row.matcher.fill_next_token_bitmask(self.bitmask, i)
                if row.seen >= row.budget - 1:
                    force_stop.append(i)
        xgr.apply_token_bitmask_inplace(logits, self.bitmask.to(logits.device))
        for i in force_stop:
            keep = logits[i, self.stop_id].clone()
            logits[i] = float("-inf")
            logits[i, self.stop_id] = keep if torch.isfinite(keep) else 0.0
        return logits
