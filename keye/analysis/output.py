"""Parse a generated answer: optional <analysis> and <think> blocks, then the (JSON) answer.

Tolerant by design: the model may also be run unconstrained, so a missing opening tag, an
unclosed block (truncation), an <answer> wrapper or a code fence are all understood. Reasoning
text never reaches the answer fields: whatever sits inside a block or before a closing tag is
reasoning, the rest is the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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


def _block(text: str, tag: str, out: ParsedOutput) -> tuple[str | None, str]:
    """(block content, the text after it); an unclosed block takes everything (truncated output)."""
    open_t, close_t = f"<{tag}>", f"</{tag}>"
    stripped = text.lstrip()
    if stripped.startswith(open_t):
        body = stripped[len(open_t):]
        end = body.find(close_t)
        if end < 0:
            out.problems.append(f"the <{tag}> block is not closed (truncated output)")
            return body.strip(), ""
        return body[:end].strip(), body[end + len(close_t):]
    end = stripped.find(close_t)
    if end >= 0 and open_t not in stripped[:end]:
        # the opening tag was part of the prompt (some templates pre-fill it)
        return stripped[:end].strip(), stripped[end + len(close_t):]
    return None, text


def parse_output(text: str) -> ParsedOutput:
    out = ParsedOutput()
    out.analysis, rest = _block(text, "analysis", out)
    out.think, rest = _block(rest, "think", out)
    rest = rest.strip()
    if rest.startswith("<answer>"):
        rest = rest[len("<answer>"):]
        end = rest.find("</answer>")
        if end < 0:
            out.problems.append("the <answer> block is not closed (truncated output)")
        else:
            rest = rest[:end]
    rest = rest.strip()
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
