"""Keye's three thinking modes: prompt suffixes, and parsing of what the model writes back.

The mode is chosen by a suffix on the last user text: `/think`, `/no_think`, or nothing (auto:
the model decides, and may write its decision in `<analysis>...</analysis>` first). Reasoning
comes in `<think>...</think>`; the answer follows, optionally inside `<answer>...</answer>`.
Parsing never raises: truncated or malformed outputs give a best-effort split and `truncated`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keye_model.errors import InputError


class ThinkingMode(StrEnum):
    THINK = "think"
    NO_THINK = "no_think"
    AUTO = "auto"


SUFFIX = {ThinkingMode.THINK: "/think", ThinkingMode.NO_THINK: "/no_think", ThinkingMode.AUTO: ""}
_TRAILING = re.compile(r"\s*/(?:no_think|think)\s*$")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _mode(mode: ThinkingMode | str) -> ThinkingMode:
    try:
        return ThinkingMode(mode)
    except ValueError:
        raise InputError(f"unknown thinking mode '{mode}'; use think, no_think or auto") from None


def prompt_suffix(mode: ThinkingMode | str) -> str:
    return SUFFIX[_mode(mode)]


def with_mode(text: str, mode: ThinkingMode | str) -> str:
    """The user text with exactly one mode suffix (any suffix already there is replaced)."""
    return _TRAILING.sub("", text) + prompt_suffix(mode)


def apply_mode(messages: list[dict[str, Any]], mode: ThinkingMode | str) -> list[dict[str, Any]]:
    """A copy of chat messages whose last user message's last text carries the mode suffix."""
    out = copy.deepcopy(messages)
    for msg in reversed(out):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            msg["content"] = with_mode(content, mode)
            return out
        for item in reversed(content or []):
            if item.get("type") == "text":
                item["text"] = with_mode(item.get("text", ""), mode)
                return out
        content.append({"type": "text", "text": prompt_suffix(mode)})
        return out
    raise InputError("no user message to attach the thinking mode to")


@dataclass(frozen=True)
class ThinkingOutput:
    analysis: str | None  # the mode decision (auto-think), if written
    reasoning: str | None  # inside <think>...</think>; None when the model did not think
    answer: str  # the final answer, <answer> tags removed
    truncated: bool  # a tag was opened and never closed (output cut by max tokens)

    @property
    def thought(self) -> bool:
        return bool(self.reasoning and self.reasoning.strip())


def _take(text: str, open_tag: str, close_tag: str) -> tuple[str | None, str, bool]:
    """(inside, text with the block removed, truncated). A missing open tag with a present close
    tag means the block started at the beginning (templates sometimes pre-fill the open tag)."""
    start = text.find(open_tag)
    end = text.find(close_tag, start + len(open_tag) if start >= 0 else 0)
    if start < 0 and end < 0:
        return None, text, False
    if start < 0:
        return text[:end].strip(), text[end + len(close_tag) :], False
    if end < 0:
        return text[start + len(open_tag) :].strip(), text[:start], True
    return text[start + len(open_tag) : end].strip(), text[:start] + text[end + len(close_tag) :], False


def parse_thinking(text: str) -> ThinkingOutput:
    for tok in _END_TOKENS:
        text = text.replace(tok, "")
    analysis, rest, cut_a = _take(text, "<analysis>", "</analysis>")
    reasoning, rest, cut_t = (None, rest, False) if cut_a else _take(rest, "<think>", "</think>")
    truncated = cut_a or cut_t
    answer = rest.strip()
    if not truncated and "<answer>" in answer:
        found = re.findall(r"<answer>(.*?)</answer>", answer, re.DOTALL)
        if found:
            answer = found[-1].strip()
        else:
            answer, truncated = answer.split("<answer>", 1)[1].strip(), True
    elif not truncated:
        answer = answer.replace("</answer>", "").strip()
    if truncated and (cut_a or cut_t):
        answer = ""  # the answer never started
    return ThinkingOutput(analysis, reasoning, answer, truncated)
