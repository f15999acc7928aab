"""Versioned analysis configuration: taxonomy, prompts, thresholds and per-task budgets (the types
are config_types.py's; they are importable from here too).

The packaged `default_config.json` is the default; `load_config(path)` reads another file (JSON or
YAML) with the same shape. Every record carries `version` as its prompt_version, so a change to
prompts or taxonomy must bump it. Loading validates everything, including that each task's
max_new_tokens covers the longest answer its grammar admits (so decoding always terminates).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from analysis.config_types import (
    TASK_NAMES,
    THINKING_MODES,
    AnalysisConfig,
    Sampling,
    SegmentationConfig,
    TaskConfig,
    Thresholds,
    VideoBudget,
)
from analysis.errors import AnalysisConfigError
from analysis.schemas import check_budgets

DEFAULT_PATH = Path(__file__).with_name("default_config.json")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _section(cls, raw: Any, where: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise AnalysisConfigError(f"{where} must be an object")
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise AnalysisConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as e:
        raise AnalysisConfigError(f"{where}: {e}") from None


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise AnalysisConfigError(reason)


def parse_config(raw: dict[str, Any]) -> AnalysisConfig:
    _check(isinstance(raw, dict), "the analysis configuration must be an object")
    # The checks that narrow a value's type raise inline (mypy does not narrow through _check).
    version = raw.get("version")
    if not (isinstance(version, str) and 0 < len(version) <= 64):
        raise AnalysisConfigError("version must be a non-empty string (<= 64 chars)")
    cats = raw.get("moderation_categories")
    if not (isinstance(cats, dict) and len(cats) > 0):
        raise AnalysisConfigError("moderation_categories must be a non-empty object name -> description")
    for name, desc in cats.items():
        _check(bool(_NAME.match(name)), f"moderation category {name!r} must be lower_snake_case")
        _check(isinstance(desc, str) and desc.strip() != "", f"moderation category {name} needs a description")
    products = raw.get("product_categories", ["other"])
    _check(
        isinstance(products, list)
        and len(products) > 0
        and all(isinstance(p, str) and _NAME.match(p) for p in products),
        "product_categories must be a non-empty list of lower_snake_case names",
    )
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, dict):
        raise AnalysisConfigError("tasks must be an object")
    unknown = set(tasks_raw) - set(TASK_NAMES)
    _check(not unknown, f"unknown task(s) {sorted(unknown)}; known: {', '.join(TASK_NAMES)}")
    tasks: dict[str, TaskConfig] = {}
    for name, t in tasks_raw.items():
        _check(isinstance(t, dict), f"tasks.{name} must be an object")
        task = _section(TaskConfig, {"name": name, **t}, f"tasks.{name}")
        _check(task.thinking in THINKING_MODES, f"tasks.{name}.thinking must be one of {', '.join(THINKING_MODES)}")
        _check(
            isinstance(task.prompt, str) and task.prompt.strip() != "",
            f"tasks.{name}.prompt must be a non-empty string",
        )
        _check(
            isinstance(task.max_new_tokens, int) and task.max_new_tokens > 0, f"tasks.{name}.max_new_tokens must be > 0"
        )
        _check(
            all(isinstance(v, int) and v > 0 for v in task.limits.values()),
            f"tasks.{name}.limits must be positive integers",
        )
        tasks[name] = task
    cfg = AnalysisConfig(
        version=version,
        moderation_categories=dict(cats),
        product_categories=tuple(products),
        tasks=tasks,
        thresholds=_section(Thresholds, raw.get("thresholds"), "thresholds"),
        segmentation=_section(SegmentationConfig, raw.get("segmentation"), "segmentation"),
        video=_section(VideoBudget, raw.get("video"), "video"),
        sampling=_section(Sampling, raw.get("sampling"), "sampling"),
    )
    th, seg, vid = cfg.thresholds, cfg.segmentation, cfg.video
    _check(
        0 <= th.review_severity <= th.flag_severity <= 3, "thresholds need 0 <= review_severity <= flag_severity <= 3"
    )
    _check(0.0 <= th.flag_confidence <= 1.0 and 0.0 <= th.tag_min_score <= 1.0, "thresholds scores must lie in [0, 1]")
    _check(0.0 < seg.threshold <= 1.0, "segmentation.threshold must lie in (0, 1]")
    _check(
        1 <= seg.max_segments <= 99 and seg.min_shot_s >= 0,
        "segmentation needs 1 <= max_segments <= 99, min_shot_s >= 0",
    )
    _check(2 <= seg.hist_bins <= 256 and 4 <= seg.thumb_side <= 256, "segmentation.hist_bins/thumb_side out of range")
    _check(
        vid.fps > 0 and vid.max_frames >= 4 and vid.frames_per_pass >= 2,
        "video needs fps > 0, max_frames >= 4, frames_per_pass >= 2",
    )
    _check(0 < vid.min_pixels <= vid.max_pixels, "video needs 0 < min_pixels <= max_pixels")
    check_budgets(cfg)  # the bounds depend on the schemas
    return cfg


def load_config(path: str | Path | None = None) -> AnalysisConfig:
    """The packaged configuration, or the file at `path` (.json, .yaml or .yml)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    if not p.is_file():
        raise AnalysisConfigError(f"analysis configuration file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is a config error
        raise AnalysisConfigError(
            f"{p}: not valid {'YAML' if p.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {e}"
        ) from None
    return parse_config(raw)
