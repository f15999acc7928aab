"""The harness separates good from bad on one generated set: the labels fed back score 1.0, the
labels of other clips score at the chance level the report prints (shuffled_labels), random weights
score near or below it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.config import load_config
from evaluation.labelled import truth_records
from evaluation.report import HEADLINE, build_report

CPU_CONFIG = Path(__file__).resolve().parents[2] / "evaluation" / "cpu_config.json"  # the packaged CPU budget
PERFECT = {
    "tags.micro_f1": 1.0,
    "tags.temporal_iou": 1.0,
    "moderation.precision": 1.0,
    "moderation.recall": 1.0,
    "moderation.leakage": 0.0,
    "moderation.overkill": 0.0,
    "moderation.severity_accuracy": 1.0,
    "summary.rouge_l": 1.0,
    "summary.fact_recall": 1.0,
    "retrieval.recall@5": 1.0,
    "retrieval.mrr": 1.0,
    "near_duplicates.f1": 1.0,
}


def _group_vectors(labelled):
    """One axis per content group: a clip and its near-duplicates share it, and so does the caption."""
    from evaluation.retrieval import groups

    group = groups({v.video_id: v.duplicate_of for v in labelled.videos})
    axes = {g: i for i, g in enumerate(sorted(set(group.values())))}
    by_caption = {v.caption: group[v.video_id] for v in labelled.videos if v.duplicate_of is None}

    def onehot(g):
        vec = np.zeros(len(axes))
        vec[axes[g]] = 1.0
        return vec.tolist()

    return {v: onehot(g) for v, g in group.items()}, lambda caption: onehot(by_caption[caption])


def test_the_set_has_what_the_metrics_need(labelled):
    vs = labelled.videos
    assert len(vs) == 8 and sum(v.duplicate_of is not None for v in vs) == 3
    assert sum(bool(v.moderation.categories) for v in vs) == 3 and all(v.caption and v.facts for v in vs)


def test_perfect_predictions_score_one(labelled):
    vectors, embed_caption = _group_vectors(labelled)
    records = {
        k: r.model_copy(update={"embedding": vectors[k], "embedding_dim": len(vectors[k])})
        for k, r in truth_records(labelled).items()
    }
    report = build_report(labelled, records, load_config(), text_embed=embed_caption)
    assert report["headline"] == PERFECT
    assert set(report["headline"]) == set(HEADLINE)
    assert report["moderation"]["overall"]["evidence_iou"] == 1.0 and report["summary"]["object_recall"] == 1.0


def test_labels_of_other_clips_score_low(labelled):
    truth = truth_records(labelled)
    ids = [v.video_id for v in labelled.videos]
    shifted = {a: truth[b] for a, b in zip(ids, ids[1:] + ids[:1])}
    report = build_report(labelled, shifted, load_config())
    h = report["headline"]
    assert h == {
        **report["shuffled_labels"],
        "retrieval.recall@5": None,
        "retrieval.mrr": None,
        "near_duplicates.f1": None,
    }
    assert h["tags.temporal_iou"] < 0.5 and h["summary.rouge_l"] < 0.7 and h["summary.fact_recall"] < 0.5
    assert h["tags.micro_f1"] < 0.8 and h["moderation.recall"] < 1.0


def test_a_missing_prediction_counts_as_an_empty_answer(labelled):
    truth = truth_records(labelled)
    violating = next(v.video_id for v in labelled.videos if v.moderation.categories)
    report = build_report(labelled, {k: r for k, r in truth.items() if k != violating}, load_config())
    assert report["moderation"]["overall"]["leakage"] == pytest.approx(1 / 3)
    assert report["tags"]["micro"]["recall"] < 1.0 and report["tags"]["micro"]["precision"] == 1.0


@pytest.mark.slow
def test_keye_tiny_through_the_cli_scores_near_chance(corpus_dir, tmp_path):
    """`keye eval run` on 3 clips (and one whose file is gone) with random weights, as an operator runs it."""
    from corpus.labels import load_labels, write_labels

    clips = sorted(load_labels(corpus_dir), key=lambda c: c.duration_s)[:4]
    small = tmp_path / "small"
    (small / "clips").mkdir(parents=True)
    for c in clips[:3]:
        os.link(corpus_dir / c.file, small / c.file)  # clips[3]'s file is missing: a failed analysis
    write_labels(small, clips)
    env = {
        **os.environ,
        "KEYE_DATA_DIR": str(tmp_path / "data"),
        "KEYE_ANALYSIS_CONFIG": str(CPU_CONFIG),
        "KEYE_MODEL": "keye-tiny",
    }
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "eval",
            "run",
            str(small),
            "--out",
            str(out),
            "--records",
            str(tmp_path / "records.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["model_version"] == "keye-tiny" and report["prompt_version"] == "analysis-v2-cpu"
    assert list(report["errors"]) == [clips[3].video_id] and report["cost"]["failed"] == 1
    assert report["cost"]["analyzed"] == 3 and report["cost"]["videos_per_minute"] > 0
    assert report["cost"]["generated_tokens_per_video"] > 0
    h, chance = report["headline"], report["shuffled_labels"]
    assert h["tags.micro_f1"] <= (chance["tags.micro_f1"] or 0) + 0.1
    assert h["summary.rouge_l"] < 0.3 and h["summary.fact_recall"] <= (chance["summary.fact_recall"] or 0) + 0.2
    assert report["retrieval"]["text_to_video"]["queries"] >= 1  # captions embedded with the model's text path
    assert (tmp_path / "report-sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "tags.micro_f1" in done.stdout and "stored in SQL" in done.stdout
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 3

    # the stored report is the version's
    from sqlmodel import Session

    from evaluation.store import latest
    from stores.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'keye.db'}")
    with Session(engine) as s:
        row = latest(s, "keye-tiny")
        assert row is not None and row.dataset_id == report["dataset"]["id"]
    engine.dispose()


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEYE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "eval", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_score_rescores_stored_records_without_analyzing(corpus_dir, labelled, tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("".join(r.model_dump_json() + "\n" for r in truth_records(labelled).values()))
    done = _cli(tmp_path, "score", str(corpus_dir), str(records), "--out", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["headline"]["tags.micro_f1"] == 1.0 and report["headline"]["retrieval.mrr"] is None
    assert report["model_version"] == "ground-truth" and (tmp_path / "r-sweep.png").is_file()


def test_reviews_without_decisions_is_a_clear_error(tmp_path):
    done = _cli(tmp_path, "reviews", "--out", str(tmp_path / "r.json"))
    assert done.returncode == 2 and "labelled set is empty" in done.stdout + done.stderr
