"""Labels from the moderators' decisions and tag corrections (SQLite and PostgreSQL), the reports
kept per version, and the promotion gate built on them (refuse, force recorded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from analysis.config import load_config
from evaluation.labelled import LabelledSet, LabelledVideo, truth_records
from evaluation.report import build_report
from evaluation.reviews import from_reviews
from evaluation.store import EvalReport, comparable, latest, reports_of, save_report
from service.schemas import (
    AnalysisRecord,
    CategoryFlag,
    Evidence,
    FeedbackEvent,
    Moderation,
    Submission,
    Summary,
    TagScore,
    analysis_id_for,
)
from stores import db
from training import registry

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _engine(url: str):
    engine = db.make_engine(url)
    db.migrate(engine)
    return engine


def _analysis(session, vid: str, tags: list[str], flags: list[tuple[str, int, float]]) -> str:
    rec = AnalysisRecord(
        analysis_id=analysis_id_for(vid, "keye-tiny"),
        video_id=vid,
        model_version="keye-tiny",
        prompt_version="p",
        duration_s=8.0,
        frames_used=4,
        tags=[TagScore(label=t, score=0.9, start_s=0.0, end_s=2.0) for t in tags],
        moderation=Moderation(
            status="flagged" if flags else "clear",
            categories=[
                CategoryFlag(category=c, severity=s, confidence=p, evidence=[Evidence(start_s=1, end_s=3, reason="r")])
                for c, s, p in flags
            ],
        ),
        embedding_dim=0,
        created_at=T0,
    )
    db.write_analysis(session, rec, Submission(video_id=vid, uri=f"file:///clips/{vid}.mp4", submitted_at=T0))
    return rec.analysis_id


def _feedback(session, n: int, vid: str, kind: str, payload: dict) -> None:
    db.write_feedback(
        session,
        FeedbackEvent(
            event_id=f"e{n}", video_id=vid, kind=kind, actor="mod", payload=payload, at=T0 + timedelta(minutes=n)
        ),
    )


def _seed(session) -> None:
    a1 = _analysis(session, "v1", ["cat", "dog"], [("weapons", 3, 0.9), ("drugs", 2, 0.8)])
    a2 = _analysis(session, "v2", ["car"], [("violence", 2, 0.7)])
    _analysis(session, "v3", ["tree"], [])  # never reviewed: not labelled
    session.add(db.Review(analysis_id=a1, video_id="v1", category="weapons", decision="confirm", reviewer="mod", at=T0))
    _feedback(session, 1, "v1", "moderation_decision", {"analysis_id": a1, "decision": "clear", "category": "drugs"})
    session.add(db.Review(analysis_id=a2, video_id="v2", category=None, decision="clear", reviewer="mod", at=T0))
    session.add(db.Review(analysis_id=a2, video_id="v2", category=None, decision="escalate", reviewer="m2", at=T0))
    _feedback(session, 2, "v2", "tag_correction", {"analysis_id": a2, "add": ["Truck"], "remove": ["car"]})
    session.commit()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_reviews_become_labels(store, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'k.db'}" if store == "sqlite" else request.getfixturevalue("pg_database")
    engine = _engine(url)
    cfg = load_config()
    with Session(engine) as session:
        _seed(session)
        labelled = from_reviews(session, cfg)
        stored = {r.video_id: AnalysisRecord.model_validate(r.record) for r in session.exec(select(db.Analysis))}
    engine.dispose()
    by_id = {v.video_id: v for v in labelled.videos}
    assert sorted(by_id) == ["v1", "v2"]
    v1, v2 = by_id["v1"], by_id["v2"]
    assert [c.category for c in v1.moderation.categories] == ["weapons"] and v1.tags is None
    assert v1.moderation.categories[0].evidence[0].start_s == 1.0 and v1.uri == "file:///clips/v1.mp4"
    assert v2.moderation.categories == [] and [t.label for t in v2.tags] == ["truck"] and v2.summary is None
    # the model's own answers against the moderators: drugs on v1 and violence on v2 were wrong
    report = build_report(labelled, stored, cfg)
    m = report["moderation"]
    assert m["per_category"]["weapons"]["precision"] == 1.0 and m["per_category"]["drugs"]["fp"] == 1
    assert m["overall"]["overkill"] == 1.0 and m["overall"]["recall"] == 1.0
    assert report["tags"]["micro"]["tp"] == 0 and report["summary"]["videos"] == 0


def _report(labelled: LabelledSet, version: str, damage: float = 0.0) -> dict:
    """A report of `version` whose tag F1 falls with `damage` (that share of videos loses its tags)."""
    truth = truth_records(labelled)
    ids = sorted(truth)
    cut = set(ids[: round(damage * len(ids))])
    records = {k: r.model_copy(update={"tags": []}) if k in cut else r for k, r in truth.items()}
    return build_report(labelled, records, model_version=version)


def _set(n: int = 10) -> LabelledSet:
    return LabelledSet(
        "fixture",
        tuple(
            LabelledVideo(
                video_id=f"v{i}",
                uri=f"file:///v{i}.mp4",
                duration_s=5.0,
                tags=(TagScore(label="ball", score=1.0),),
                moderation=Moderation(),
                summary=Summary(short="a ball"),
            )
            for i in range(n)
        ),
    )


@pytest.fixture
def session(tmp_path):
    engine = _engine(f"sqlite:///{tmp_path / 'k.db'}")
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_reports_are_kept_per_version_and_paired_by_labels(session):
    a, b = _set(10), _set(12)
    save_report(session, "base", _report(a, "base"))
    save_report(session, "cand", _report(b, "cand"))
    assert comparable(session, "cand", "base") is None  # different labels: nothing to compare
    save_report(session, "cand", _report(a, "cand"))
    mine, theirs = comparable(session, "cand", "base")
    assert mine.dataset_id == theirs.dataset_id == a.dataset_id and len(reports_of(session, "cand")) == 2
    assert latest(session, "cand").dataset_id == a.dataset_id


def test_the_table_matches_its_migration(session):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    diff = compare_metadata(
        MigrationContext.configure(session.connection(), opts={"compare_type": True}), SQLModel.metadata
    )
    assert [d for d in diff if EvalReport.__tablename__ in repr(d)] == []


def _registry(session, tmp_path, settings_model="keye-tiny"):
    from service.settings import Settings

    registry.ensure_base(session, Settings(model=settings_model, data_dir=tmp_path))
    (tmp_path / "ck").mkdir(exist_ok=True)
    registry.register_candidate(session, "cand", tmp_path / "ck", "keye-tiny", {})


def test_promotion_refuses_a_regression_unless_forced(session, tmp_path):
    labelled = _set(10)
    _registry(session, tmp_path)
    save_report(session, "keye-tiny", _report(labelled, "keye-tiny"))
    save_report(session, "cand", _report(labelled, "cand", damage=0.3))  # tag F1 1.0 -> ~0.82
    with pytest.raises(registry.PromotionRefused, match="tags.micro_f1"):
        registry.promote(session, "cand", tolerance=0.05)
    assert registry.active_version(session).version == "keye-tiny"
    row = registry.promote(session, "cand", force=True, tolerance=0.05)
    session.commit()
    p = row.metrics["promotion"]
    assert row.status == "active" and p["forced"] is True and p["verdict"] == "regressed"
    assert p["against"] == "keye-tiny" and [r["metric"] for r in p["regressions"]] == ["tags.micro_f1"]
    assert p["dataset"]["id"] == labelled.dataset_id


def test_promotion_within_tolerance_passes_and_unmeasured_is_refused(session, tmp_path):
    labelled = _set(10)
    _registry(session, tmp_path)
    with pytest.raises(registry.PromotionRefused, match="no evaluation reports"):
        registry.promote(session, "cand")
    save_report(session, "keye-tiny", _report(labelled, "keye-tiny"))
    save_report(session, "cand", _report(labelled, "cand", damage=0.1))  # F1 1.0 -> ~0.95
    row = registry.promote(session, "cand", tolerance=0.1)
    assert row.metrics["promotion"]["verdict"] == "passed" and row.metrics["promotion"]["forced"] is False
