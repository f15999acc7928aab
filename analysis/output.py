"""Parse a generated answer: optional <analysis> and <think> blocks, then the (JSON) answer.

The blocks are split by keye_model.thinking.parse_thinking (tolerant of a pre-filled opening
tag, an <answer> wrapper, unclosed blocks from truncation); this module adds the JSON decoding
and says in words what was wrong. Reasoning never reaches the answer fields: what the thinking
parser puts in analysis or reasoning is never decoded as the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from keye_model.thinking import parse_thinking

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


@dataclass
class ParsedOutput:
    analysis: str | None = None  # the auto-think mode decision
    think: str | None = None  # the reasoning
    answer_text: str = ""
    answer: Any = None  # the decoded JSON, None when it did not parse
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.answer is not None

    @property
    def reasoning(self) -> str | None:
        parts = [p for p in (self.analysis, self.think) if p]
        return "\n\n".join(parts) if parts else None


def parse_output(text: str) -> ParsedOutput:
    split = parse_thinking(text)
    out = ParsedOutput(analysis=split.analysis, think=split.reasoning)
    if split.truncated:
        out.problems.append("a reasoning or answer block is not closed (truncated output)")
    rest = split.answer.strip()
    fenced = _FENCE.match(rest)
    if fenced:
        rest = fenced.group(1)
    out.answer_text = rest
    if not rest:
        out.problems.append("there is no answer after the reasoning")
        return out
    try:
        out.answer = json.loads(rest)
    except json.JSONDecodeError as e:
        out.problems.append(f"the answer is not valid JSON: {e.msg} at character {e.pos}")
    return out
