"""Shared helpers of the analysis tests (a plain module; the fixtures are in tests/analysis/conftest.py)."""

from __future__ import annotations

import json

from analysis import config as C
from analysis.schemas import max_output_tokens

# Small answers: every bound stays in the tens of tokens, so a random model finishes quickly.
TIGHT_LIMITS = {
    "tags": {"max_items": 2, "text_chars": 8, "max_segments": 2},
    "summary": {"title_chars": 8, "short_chars": 12, "long_chars": 16},
    "moderation": {"max_items": 2, "max_evidence": 1, "text_chars": 8, "think_chars": 16, "analysis_chars": 8},
    "products": {"max_items": 1, "text_chars": 8, "max_attributes": 1, "max_segments": 1},
}


def tight_raw(**thinking: str) -> dict:
    raw = json.loads(C.DEFAULT_PATH.read_text())
    raw["video"].update({"max_frames": 8, "max_pixels": 12544, "min_pixels": 3136, "frames_per_pass": 8})
    for name, limits in TIGHT_LIMITS.items():
        raw["tasks"][name]["limits"] = dict(limits)
        raw["tasks"][name]["max_new_tokens"] = 100_000
        if name in thinking:
            raw["tasks"][name]["thinking"] = thinking[name]
            raw["tasks"][name]["limits"].setdefault("think_chars", 16)
            raw["tasks"][name]["limits"].setdefault("analysis_chars", 8)
    cfg = C.parse_config(raw)
    for name in TIGHT_LIMITS:
        raw["tasks"][name]["max_new_tokens"] = max_output_tokens(cfg, name)
    return raw
