"""The evaluation report: one JSON object with stable keys (REPORT_VERSION bumps when they change).

    report_version        int
    model_version         the analyzer's model version ("ground-truth" for the labels fed back)
    prompt_version        the analysis configuration version
    created_at            ISO time
    dataset               {name, id (hash of the labels), videos}
    headline              {metric: value}: the numbers `keye train promote` compares (HEADLINE)
    shuffled_labels       {metric: value}: the same metrics of the labels answered for the wrong videos
                          (each video gets the next one's labels): the chance level of a model that
                          knows only the label distribution; retrieval is left out (null)
    tags                  {micro {precision, recall, f1, tp, fp, fn, support}, macro_f1, temporal_iou,
                           per_tag {label: {precision, recall, f1, tp, fp, fn, support, temporal_iou}}, videos}
    moderation            {thresholds {flag_severity, flag_confidence},
                           overall {precision, recall, f1, leakage, overkill, severity_accuracy, evidence_iou,
                                    tp, fp, fn, support, negatives},
                           per_category {category: same keys as overall},
                           predicted_status {clear, needs_review, flagged},
                           sweep {category | "overall": [{confidence, precision, recall}, ...]}, videos}
    summary               {rouge_l, rouge_l_by_field {title, short, long}, fact_recall, object_recall,
                           empty_predictions, videos}
    retrieval             {text_to_video {recall@1, recall@5, recall@10, mrr, queries, videos},
                           near_duplicates {precision, recall, f1, tp, fp, fn, support, threshold, videos}}
    cost                  {videos, analyzed, failed, seconds, videos_per_minute, generated_tokens_per_video}
    errors                {video_id: reason} for the videos the analyzer could not analyze

A metric with nothing to measure (no labelled violations, no embeddings...) is null, never 0 or 1.
A video the analyzer failed on counts as an empty answer (it is wrong, not skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from evaluation.counts import mean
from evaluation.labelled import LabelledSet, truth_records
from evaluation.moderation import ModerationCase, moderation_metrics
from evaluation.retrieval import DUPLICATE_SIMILARITY, groups, near_duplicates, text_to_video
from evaluation.tags import TagCase, tag_metrics
from evaluation.text import SummaryCase, summary_metrics
from service.schemas import AnalysisRecord, Moderation, Summary, utcnow

REPORT_VERSION = 1

# name -> (path in the report, +1 when higher is better, -1 when lower is)
HEADLINE: dict[str, tuple[tuple[str, ...], int]] = {
    "tags.micro_f1": (("tags", "micro", "f1"), 1),
    "tags.temporal_iou": (("tags", "temporal_iou"), 1),
    "moderation.precision": (("moderation", "overall", "precision"), 1),
    "moderation.recall": (("moderation", "overall", "recall"), 1),
    "moderation.leakage": (("moderation", "overall", "leakage"), -1),
    "moderation.overkill": (("moderation", "overall", "overkill"), -1),
    "moderation.severity_accuracy": (("moderation", "overall", "severity_accuracy"), 1),
    "summary.rouge_l": (("summary", "rouge_l"), 1),
    "summary.fact_recall": (("summary", "fact_recall"), 1),
    "retrieval.recall@5": (("retrieval", "text_to_video", "recall@5"), 1),
    "retrieval.mrr": (("retrieval", "text_to_video", "mrr"), 1),
    "near_duplicates.f1": (("retrieval", "near_duplicates", "f1"), 1),
}


def lookup(report: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def headline(report: Mapping[str, Any]) -> dict[str, float | None]:
    return {name: lookup(report, path) for name, (path, _) in HEADLINE.items()}


def _retrieval(
    labelled: LabelledSet,
    records: Mapping[str, AnalysisRecord],
    text_embed: Callable[[str], list[float]] | None,
    threshold: float,
) -> dict:
    embedded = [v for v in labelled.videos if v.video_id in records and records[v.video_id].embedding]
    if not embedded:
        return {
            "text_to_video": text_to_video(np.zeros((0, 1)), [], np.zeros((0, 1))),
            "near_duplicates": near_duplicates(np.zeros((0, 1)), [], threshold),
        }
    vectors = np.array([records[v.video_id].embedding for v in embedded])
    group = groups({v.video_id: v.duplicate_of for v in labelled.videos})
    group_of = [group[v.video_id] for v in embedded]
    # one query per original clip's caption; its answers are the clip and its near-duplicates
    queries, relevant = [], []
    if text_embed is not None:
        for v in labelled.videos:
            if v.caption and v.duplicate_of is None:
                rel = {i for i, g in enumerate(group_of) if g == group[v.video_id]}
                if rel:
                    queries.append(text_embed(v.caption))
                    relevant.append(rel)
    t2v = text_to_video(np.array(queries) if queries else np.zeros((0, vectors.shape[1])), relevant, vectors)
    return {"text_to_video": t2v, "near_duplicates": near_duplicates(vectors, group_of, threshold)}


def _cost(labelled: LabelledSet, run) -> dict:
    n = len(labelled.videos)
    if run is None:
        return {
            "videos": n,
            "analyzed": None,
            "failed": None,
            "seconds": None,
            "videos_per_minute": None,
            "generated_tokens_per_video": None,
        }
    return {
        "videos": n,
        "analyzed": len(run.records),
        "failed": len(run.errors),
        "seconds": round(run.seconds, 3),
        "videos_per_minute": 60.0 * len(run.records) / run.seconds if run.seconds > 0 else None,
        "generated_tokens_per_video": mean(run.generated_tokens.values()),
    }


def shuffled_labels(labelled: LabelledSet, config) -> dict[str, float | None]:
    """Headline metrics of the labels shifted by one video (a derangement of the truth)."""
    truth = truth_records(labelled)
    ids = [v.video_id for v in labelled.videos]
    shifted = {a: truth[b] for a, b in zip(ids, ids[1:] + ids[:1])} if len(ids) > 1 else {}
    return build_report(labelled, shifted, config, with_baseline=False)["headline"]


def build_report(
    labelled: LabelledSet,
    records: Mapping[str, AnalysisRecord],
    config=None,
    text_embed: Callable[[str], list[float]] | None = None,
    run=None,
    model_version: str = "unknown",
    prompt_version: str = "unknown",
    duplicate_threshold: float = DUPLICATE_SIMILARITY,
    with_baseline: bool = True,
) -> dict:
    """Score `records` (video_id -> what the analyzer answered) against the labelled set."""
    from analysis.config import load_config

    cfg = config or load_config()
    empty = Moderation(), Summary()

    def answer(vid: str) -> tuple[list, Moderation, Summary]:
        r = records.get(vid)
        return ([], *empty) if r is None else (r.tags, r.moderation, r.summary)

    tag_cases, mod_cases, sum_cases = [], [], []
    for v in labelled.videos:
        tags, mod, summ = answer(v.video_id)
        if v.tags is not None:
            tag_cases.append(TagCase(v.tags, tags, v.duration_s))
        if v.moderation is not None:
            mod_cases.append(ModerationCase(v.moderation, mod))
        if v.summary is not None:
            sum_cases.append(SummaryCase(v.summary, summ, v.facts))
    report = {
        "report_version": REPORT_VERSION,
        "model_version": model_version,
        "prompt_version": prompt_version,
        "created_at": utcnow().isoformat(),
        "dataset": labelled.describe(),
        "headline": {},
        "shuffled_labels": {},
        "tags": tag_metrics(tag_cases),
        "moderation": moderation_metrics(mod_cases, cfg.categories, cfg.thresholds),
        "summary": summary_metrics(sum_cases),
        "retrieval": _retrieval(labelled, records, text_embed, duplicate_threshold),
        "cost": _cost(labelled, run),
        "errors": dict(run.errors) if run is not None else {},
    }
    report["headline"] = headline(report)
    if with_baseline:
        report["shuffled_labels"] = shuffled_labels(labelled, cfg)
    return report
