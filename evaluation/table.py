"""The report as rich tables for the terminal."""

from __future__ import annotations

from rich.table import Table


def fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def tables(report: dict, top_tags: int = 15) -> list[Table]:
    d = report["dataset"]
    head = Table(
        "metric",
        "value",
        "shuffled labels",
        title=f"{report['model_version']} on {d['name']} ({d['videos']} videos, labels {d['id']})",
    )
    for name, value in report["headline"].items():
        head.add_row(name, fmt(value), fmt(report.get("shuffled_labels", {}).get(name)))
    c = report["cost"]
    for key in ("videos_per_minute", "generated_tokens_per_video", "failed"):
        head.add_row(f"cost.{key}", fmt(c[key]), "")
    m = report["moderation"]
    th = m["thresholds"]
    mod = Table(
        "category",
        "support",
        "precision",
        "recall",
        "leakage",
        "overkill",
        "severity acc",
        "evidence IoU",
        title=f"moderation at severity >= {th['flag_severity']}, confidence >= {th['flag_confidence']}",
    )
    for name, row in [("overall (videos)", m["overall"]), *m["per_category"].items()]:
        mod.add_row(
            name,
            fmt(row["support"]),
            *(fmt(row[k]) for k in ("precision", "recall", "leakage", "overkill", "severity_accuracy", "evidence_iou")),
        )
    tags = Table("tag", "support", "precision", "recall", "f1", "temporal IoU", title="tags (most frequent)")
    per = sorted(report["tags"]["per_tag"].items(), key=lambda kv: -kv[1]["support"])[:top_tags]
    for label, row in per:
        tags.add_row(label, fmt(row["support"]), *(fmt(row[k]) for k in ("precision", "recall", "f1", "temporal_iou")))
    return [head, mod, tags]
