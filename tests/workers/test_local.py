"""`keye analyze` (in-process, embedded SQLite + local Qdrant), failure classification, ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from service.failures import Failure, StoreUnavailableError, classify
from service.fetch import FetchError, UnsafeURIError
from service.schemas import SchemaError
from service.settings import Settings
from stores.vectors import VectorStore


def test_analyze_files_on_keye_tiny_is_idempotent(tmp_path: Path, sample_clips: list[Path]) -> None:
    from analysis.serving import load_analyzer
    from tests.support.analyzer import SMALL
    from workers.local import analyze_files

    settings = Settings(data_dir=tmp_path / "data", file_roots=[tmp_path])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")  # looks like MP4, is not one
    clips = [c for c in sample_clips if c.name != "bigbuckbunny.mp4"][:2]
    analyzer = load_analyzer(settings, "basic", **SMALL)
    first = analyze_files([*clips, broken], settings, analyzer)
    assert [r.error is None for r in first] == [True, True, False]
    assert first[2].error.startswith("VideoDecodeError")
    again = analyze_files(clips, settings, analyzer)  # a second run rewrites the same rows and points
    assert [r.record.analysis_id for r in again] == [r.record.analysis_id for r in first[:2]]
    for r in first[:2]:
        assert r.record.summary.short and r.record.frames_used == 4 and r.record.timings_ms["analyze"] > 0
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT video_id, status FROM videos ORDER BY video_id")).all()
        analyses = c.execute(sa.text("SELECT count(*) FROM analyses")).scalar_one()
    engine.dispose()
    assert analyses == 2
    assert sorted(status for _, status in rows) == ["analyzed", "analyzed", "failed"]
    store = VectorStore.from_settings(settings)
    try:
        assert store.count() == 2
        # same embedding in -> the same video first
        hit = store.search(first[0].record.embedding, limit=1)[0]
        assert hit.payload["video_id"] == first[0].video_id and hit.score == pytest.approx(1.0, abs=1e-4)
    finally:
        store.close()


def test_the_default_analyzer_is_the_full_analysis(tmp_path: Path) -> None:
    from analysis import VideoAnalyzer
    from analysis.serving import Analyzer, load_analyzer

    analyzer = load_analyzer(Settings(data_dir=tmp_path))
    assert isinstance(analyzer, VideoAnalyzer) and isinstance(analyzer, Analyzer)
    assert analyzer.model_version == "keye-tiny"
    with pytest.raises(ValueError, match="unknown analyzer kind"):
        load_analyzer(Settings(data_dir=tmp_path), "fancy")


def test_workers_serve_the_registry_active_version(tmp_path: Path) -> None:
    """After `keye train promote`, a (re)started worker loads the promoted checkpoint and stamps its
    records with that version; without an active version it serves KEYE_MODEL."""
    import torch
    from sqlmodel import Session

    import keye_model
    from analysis.serving import load_analyzer
    from service.schemas import utcnow
    from stores.db import ModelVersion, engine_from, migrate

    settings = Settings(data_dir=tmp_path / "data")
    tuned = keye_model.load("keye-tiny")
    with torch.no_grad():
        tuned.lm_head.weight.mul_(2.0)  # distinguishable from a fresh keye-tiny
    tuned.save_pretrained(tmp_path / "ft-run1")
    engine = engine_from(settings)
    migrate(engine)
    with Session(engine) as s:
        s.add(ModelVersion(version="keye-tiny", path="keye-tiny", status="retired", metrics={}, created_at=utcnow()))
        s.add(
            ModelVersion(
                version="ft-run1",
                path=str(tmp_path / "ft-run1"),
                base_version="keye-tiny",
                status="active",
                metrics={},
                created_at=utcnow(),
                promoted_at=utcnow(),
            )
        )
        s.commit()
    engine.dispose()
    analyzer = load_analyzer(settings)
    assert analyzer.model_version == "ft-run1"
    assert torch.equal(analyzer.model.lm_head.weight, tuned.lm_head.weight)
    assert load_analyzer(Settings(data_dir=tmp_path / "empty")).model_version == "keye-tiny"


def test_failure_classification() -> None:
    import sqlalchemy.exc as sx

    from keye_model.processor import UnsupportedMedia, VideoTooLong

    assert classify(SchemaError("x")) is Failure.PERMANENT
    assert classify(UnsafeURIError("x")) is Failure.PERMANENT
    assert classify(FetchError("x", permanent=False)) is Failure.LIMITED
    assert classify(UnsupportedMedia("not a video")) is Failure.PERMANENT
    assert classify(VideoTooLong("too long")) is Failure.PERMANENT
    assert classify(sx.OperationalError("SELECT 1", {}, Exception("down"))) is Failure.STORE
    assert classify(StoreUnavailableError("x")) is Failure.STORE
    assert classify(ConnectionRefusedError()) is Failure.STORE
    assert classify(RuntimeError("CUDA out of memory")) is Failure.LIMITED


@pytest.mark.kafka
def test_ingest_publishes_validated_submissions_keyed_by_video_id(
    kafka_bootstrap: str, tmp_path: Path, sample_clips: list[Path]
) -> None:
    import uuid

    from service.kafka import ensure_topics, ingest, video_id_for
    from tests.support.pipeline import read_topic

    s = Settings(kafka_bootstrap=kafka_bootstrap, topic_ingest=f"t{uuid.uuid4().hex[:10]}.videos.ingest")
    ensure_topics(s, [s.topic_ingest], partitions=1)
    with pytest.raises(SchemaError, match="uri must start"):
        ingest(["ftp://example.com/a.mp4"], s)
    sent = ingest([str(sample_clips[0]), "https://example.com/b.mp4"], s, creator_id="c1", hashtags=["x"])
    assert sent[0].uri == sample_clips[0].resolve().as_uri()
    assert sent[0].video_id == video_id_for(sent[0].uri) == ingest([sample_clips[0].as_uri()], s)[0].video_id
    got = read_topic(s, s.topic_ingest, idle_s=1.0)
    assert [k for k, _ in got] == [sent[0].video_id, sent[1].video_id, sent[0].video_id]
    assert got[1][1]["uri"] == "https://example.com/b.mp4" and got[1][1]["creator_id"] == "c1"


@pytest.mark.kafka
def test_vector_sink_writes_points_once_and_dead_letters_what_qdrant_refuses(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    import threading
    import uuid

    from service.kafka import ensure_topics, producer, send
    from stores.vector_sink import run_vector_sink
    from tests.support.pipeline import read_topic, wait_for
    from tests.support.stores import record

    prefix = f"t{uuid.uuid4().hex[:10]}"
    s = Settings(
        kafka_bootstrap=kafka_bootstrap,
        data_dir=tmp_path,
        topic_analyzed=f"{prefix}.videos.analyzed",
        topic_dlq=f"{prefix}.videos.dlq",
    )
    ensure_topics(s, [s.topic_analyzed, s.topic_dlq], partitions=2)
    prod = producer(s)
    good = [record("v1"), record("v2"), record("v1")]  # v1 redelivered
    wrong = record("v3", embedding=(1.0, 0.0))  # another vector size than the collection's
    for r in [*good, wrong]:
        send(prod, s.topic_analyzed, r)
    prod.send(s.topic_analyzed, key=b"v4", value=b"{broken")
    prod.flush()
    prod.close()
    store = VectorStore.from_settings(s)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_vector_sink, args=(s, stop), kwargs={"group_id": f"{prefix}-vs", "store": store}
    )
    thread.start()
    try:
        wait_for(lambda: store.count() == 2, 60, "two points")
        dlq = {k: v for k, v in read_topic(s, s.topic_dlq, idle_s=2.0)}
    finally:
        stop.set()
        thread.join(timeout=30)
    assert store.count() == 2 and store.count({"video_id": "v1"}) == 1
    assert dlq["v3"]["stage"] == "vectors.upsert" and "3-dim" in dlq["v3"]["error"]
    assert dlq["v4"]["stage"] == "vectors.decode" and dlq["v4"]["error_type"] == "SchemaError"
    store.close()


@pytest.mark.kafka
def test_worker_analyzes_a_kafka_batch_in_one_call_when_the_analyzer_batches(
    kafka_bootstrap: str, tmp_path: Path, sample_clips: list[Path]
) -> None:
    import threading

    from tests.support.analyzer import BatchingTestAnalyzer
    from tests.support.pipeline import analysis_counts, make_pipeline, read_topic, submit_work, wait_for
    from workers.consumer import Worker, WorkerConfig

    db_url = f"sqlite:///{tmp_path / 'keye.db'}"
    p = make_pipeline(kafka_bootstrap, db_url, tmp_path, sample_clips[0].parent)
    s = p.settings
    (tmp_path / "media" / "broken.mp4").write_bytes(b"not a video")
    clips = [c for c in sample_clips if c.name != "bigbuckbunny.mp4"]
    ids = submit_work(s, [*clips, tmp_path / "media" / "broken.mp4"], copies=1)
    analyzer = BatchingTestAnalyzer(s)
    worker = Worker(s, analyzer, WorkerConfig(group_id=f"{s.topic_work}-w", batch_size=8))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(analysis_counts(s)) == len(clips), 120, "every clip analyzed")
        dlq = read_topic(s, s.topic_dlq, idle_s=2.0)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert analysis_counts(s) == {v: 1 for v in ids[:-1]}
    assert [k for k, _ in dlq] == [ids[-1]] and dlq[0][1]["error_type"] == "UnsupportedMedia"
    assert max(analyzer.batches) >= 2  # several videos of one Kafka batch went through one call
    analyzed = read_topic(s, s.topic_analyzed, idle_s=1.0)
    assert sorted(k for k, _ in analyzed) == sorted(ids[:-1])
    assert any(v["timings_ms"].get("batch_videos", 1) >= 2 for _, v in analyzed)
