"""What the showcase prints: one panel per analysis record (ground truth beside it for corpus
clips), the models' headline metrics side by side, and the hits of a text search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from evaluation.labelled import LabelledVideo
from evaluation.report import HEADLINE
from evaluation.table import fmt
from service.schemas import AnalysisRecord

YES, NO = "[green]✓[/green]", "[red]✗[/red]"


def span(start: float | None, end: float | None) -> str:
    return "whole video" if start is None or end is None else f"{start:.1f}-{end:.1f}s"


def _mark(ok: bool) -> str:
    return YES if ok else NO


def _tags(record: AnalysisRecord, truth: LabelledVideo | None) -> Table:
    table = Table("tag", "score", "where", *(["truth"] if truth is not None else []), box=None, pad_edge=False)
    labels = {t.label for t in truth.tags} if truth is not None and truth.tags is not None else None
    for t in record.tags:
        table.add_row(
            escape(t.label),
            f"{t.score:.2f}",
            span(t.start_s, t.end_s),
            *([_mark(t.label in labels)] if labels is not None else []),
        )
    if not record.tags:
        table.add_row("(none)", "", "")
    return table


def _missed(record: AnalysisRecord, truth: LabelledVideo) -> str | None:
    said = {t.label for t in record.tags}
    missed = sorted({t.label for t in truth.tags or ()} - said)
    return f"[dim]missed tags:[/dim] {escape(', '.join(missed))}" if missed else None


def _moderation(record: AnalysisRecord, truth: LabelledVideo | None) -> Table:
    m = record.moderation
    table = Table(
        "category",
        "severity",
        "confidence",
        "evidence",
        *(["truth"] if truth is not None else []),
        title=f"moderation: {m.status}",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    true = {c.category: c for c in truth.moderation.categories} if truth is not None and truth.moderation else None
    for c in m.categories:
        evidence = escape("; ".join(f"{span(e.start_s, e.end_s)} {e.reason}".strip() for e in c.evidence) or "-")
        mark = [] if true is None else [_mark(c.category in true and true[c.category].severity == c.severity)]
        table.add_row(escape(c.category), str(c.severity), f"{c.confidence:.2f}", evidence, *mark)
    if true is not None:
        for name, c in true.items():
            if name not in {x.category for x in m.categories}:
                table.add_row(
                    f"[red]{name}[/red]",
                    str(c.severity),
                    "",
                    "[red]missed[/red] " + "; ".join(span(e.start_s, e.end_s) for e in c.evidence),
                    NO,
                )
    if not table.rows:
        table.add_row("(nothing flagged)", "", "", "", *([YES] if true is not None else []))
    return table


def record_panel(record: AnalysisRecord, name: str, truth: LabelledVideo | None = None) -> Panel:
    s = record.summary
    parts: list = [f"[bold]{escape(s.title or '(no title)')}[/bold]", escape(s.short or "(no summary)")]
    if truth is not None and truth.summary is not None:
        parts.append(f"[dim]truth:[/dim] [bold]{escape(truth.summary.title)}[/bold] | {escape(truth.summary.short)}")
    parts.append(_tags(record, truth))
    if truth is not None and (missed := _missed(record, truth)):
        parts.append(missed)
    parts.append(_moderation(record, truth))
    return Panel(
        Group(*parts),
        title=f"{escape(name)}  ({record.duration_s:.1f}s, {record.frames_used} frames, {record.model_version})",
        title_align="left",
    )


def comparison(reports: Sequence[dict]) -> Table:
    """Headline metrics of several reports on the same labels, with the chance level."""
    first = reports[0]
    d = first["dataset"]
    table = Table(
        "metric",
        *(r["model_version"] for r in reports),
        "shuffled labels",
        title=f"keye eval on {d['name']} ({d['videos']} videos, labels {d['id']})",
    )
    for name, (_, better) in HEADLINE.items():
        arrow = "↑" if better > 0 else "↓"
        table.add_row(
            f"{name} {arrow}",
            *(fmt(r["headline"].get(name)) for r in reports),
            fmt(first.get("shuffled_labels", {}).get(name)),
        )
    for key in ("videos_per_minute", "generated_tokens_per_video", "failed"):
        table.add_row(f"cost.{key}", *(fmt(r["cost"][key]) for r in reports), "")
    return table


def search_table(
    query: str, hits: Sequence, names: Mapping[str, str], captions: Mapping[str, str], relevant: str | None = None
) -> Table:
    """`hits`: api.search Hits; `relevant`: the video a caption query describes (marked)."""
    table = Table(
        "#",
        "score",
        "video",
        "tags",
        "caption (ground truth)",
        *(["match"] if relevant else []),
        title=escape(f"search {query!r}"),
        title_justify="left",
    )
    for i, h in enumerate(hits, 1):
        tags = ", ".join(h.payload.get("tags", [])[:6])
        table.add_row(
            str(i),
            f"{h.score:.3f}",
            escape(names.get(h.video_id, h.video_id)),
            escape(tags),
            escape(captions.get(h.video_id, "-")),
            *([_mark(h.video_id == relevant)] if relevant else []),
        )
    return table
