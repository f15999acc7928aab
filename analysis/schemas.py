"""JSON schemas of the task answers, tight enough that constrained decoding must terminate.

Every string has a bounded length and no escapes (a pattern without quote, backslash or control
characters), every array a maxItems, every number is an integer range or an enum, every object
has all its properties required in a fixed order. So the longest admissible answer is finite and
`max_answer_bytes` computes it; since every token is at least one byte, that bounds the tokens.
Scores and confidences are integers 0-100 (a float has unbounded digits); times are shot numbers,
mapped to the shot's seconds afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from analysis.config_types import AnalysisConfig, TaskConfig
from analysis.errors import AnalysisConfigError

# UTF-8 needs at most 4 bytes per character; byte-level tokens may split a character.
BYTES_PER_CHAR = 4
# Compact JSON as xgrammar emits it with any_whitespace=False: ", " and ": " separators.
ITEM_SEP, KEY_SEP = 2, 2


def text(max_chars: int) -> dict[str, Any]:
    """A non-empty string of at most max_chars characters, first one not a space, no escapes."""
    if max_chars < 1:
        raise AnalysisConfigError("a text field needs at least one character")
    body = '[^"\\\\\\u0000-\\u001f]'
    first = '[^ "\\\\\\u0000-\\u001f]'
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_chars,
        "pattern": f"^{first}{body}{{0,{max_chars - 1}}}$",
    }


def integer(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def array(items: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": max_items}


def obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def shot_index(n_segments: int) -> dict[str, Any]:
    return integer(0, max(n_segments, 1) - 1)


def task_schema(cfg: AnalysisConfig, task: str, n_segments: int) -> dict[str, Any]:
    """The answer schema of one task for a video (or chunk) cut into n_segments shots."""
    t = cfg.task(task)
    shot = shot_index(n_segments)
    if task == "tags":
        tag = obj(
            label=text(t.limit("text_chars")),
            score=integer(0, 100),
            shots=array(shot, min(t.limit("max_segments"), max(n_segments, 1))),
        )
        return obj(tags=array(tag, t.limit("max_items")))
    if task == "summary":
        return obj(
            title=text(t.limit("title_chars")), short=text(t.limit("short_chars")), long=text(t.limit("long_chars"))
        )
    if task == "moderation":
        evidence = obj(shot=shot, reason=text(t.limit("text_chars")))
        flag = obj(
            category={"type": "string", "enum": list(cfg.categories)},
            severity=integer(0, 3),
            confidence=integer(0, 100),
            evidence=array(evidence, t.limit("max_evidence")),
        )
        return obj(categories=array(flag, min(t.limit("max_items"), len(cfg.categories))))
    if task == "products":
        attribute = obj(name=text(20), value=text(t.limit("text_chars")))
        product = obj(
            name=text(t.limit("text_chars")),
            category={"type": "string", "enum": list(cfg.product_categories)},
            attributes=array(attribute, t.limit("max_attributes")),
            shots=array(shot, min(t.limit("max_segments"), max(n_segments, 1))),
        )
        return obj(products=array(product, t.limit("max_items")))
    raise AnalysisConfigError(f"no schema for task {task!r}")


def max_answer_bytes(schema: dict[str, Any]) -> int:
    """Longest compact JSON text the schema admits, in UTF-8 bytes (only the constructs above)."""
    if "enum" in schema:
        return max(len(json.dumps(v, ensure_ascii=False).encode()) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return 2 + BYTES_PER_CHAR * schema["maxLength"]
    if kind == "integer":
        return max(len(str(schema["minimum"])), len(str(schema["maximum"])))
    if kind == "array":
        n = schema["maxItems"]
        return 2 + n * max_answer_bytes(schema["items"]) + max(n - 1, 0) * ITEM_SEP
    if kind == "object":
        props = schema["properties"]
        inner = sum(len(json.dumps(k).encode()) + KEY_SEP + max_answer_bytes(v) for k, v in props.items())
        return 2 + inner + max(len(props) - 1, 0) * ITEM_SEP
    raise AnalysisConfigError(f"cannot bound the length of schema {schema!r:.80}")


def reasoning_bytes(t: TaskConfig) -> int:
    """Longest thinking prelude the task's grammar admits (see grammar.prelude_ebnf)."""
    think = len("<think>") + BYTES_PER_CHAR * t.limits.get("think_chars", 0) + len("</think>") + 2
    analysis = len("<analysis>") + BYTES_PER_CHAR * t.limits.get("analysis_chars", 0) + len("</analysis>") + 2
    if t.thinking == "think":
        return think
    if t.thinking == "auto":
        return analysis + think
    return 0


def max_output_tokens(cfg: AnalysisConfig, task: str, n_segments: int | None = None) -> int:
    """Upper bound of the tokens a constrained answer can take, the stop token included."""
    n = cfg.segmentation.max_segments if n_segments is None else n_segments
    t = cfg.task(task)
    return reasoning_bytes(t) + max_answer_bytes(task_schema(cfg, task, n)) + 1


def check_budgets(cfg: AnalysisConfig) -> None:
    for name, t in cfg.tasks.items():
        if t.thinking != "no_think" and t.limits.get("think_chars", 0) < 1:
            raise AnalysisConfigError(f"task {name} thinks ({t.thinking}) but limits.think_chars is not set")
        if t.thinking == "auto" and t.limits.get("analysis_chars", 0) < 1:
            raise AnalysisConfigError(f"task {name} uses auto-think but limits.analysis_chars is not set")
        need = max_output_tokens(cfg, name)
        if t.max_new_tokens < need:
            raise AnalysisConfigError(
                f"task {name}: max_new_tokens {t.max_new_tokens} is below the {need} tokens its grammar may take; "
                "raise it or lower the task's limits"
            )
