"""SQL tables and migrations (SQLite and PostgreSQL), and the vector store (embedded, and the server engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from service.schemas import FeedbackEvent, Submission, analysis_id_for
from stores import db
from stores.vectors import PAYLOAD_INDEXES, VectorStore, VectorStoreError
from tests.support.stores import AT, record

OURS = {
    "videos",
    "analyses",
    "tags",
    "moderation_flags",
    "reviews",
    "feedback_events",
    "model_versions",
    "training_runs",
    "tag_trends",
    "creator_flag_rates",
}


def check_schema_and_idempotence(engine: sa.Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    db.migrate(engine)
    db.migrate(engine)  # a second start changes nothing
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    ours = [d for d in diff if _table_of(d) in OURS]
    assert ours == [], f"migrations and models disagree: {ours}"

    sub = Submission(video_id="v1", uri="file:///x.mp4", hashtags=["a"], creator_id="c1", submitted_at=AT)
    for _ in range(3):  # redelivery
        with Session(engine) as s:
            db.write_analysis(s, record(), sub)
            s.commit()
    with Session(engine) as s:
        db.write_analysis(s, record(model="m2", tags=("cat",), severity=None), sub)
        db.mark_failed(s, "v1", "late duplicate failure must not undo the analysis")
        db.mark_failed(s, "v2", "FetchError: no such file", "file:///gone.mp4")
        ev = FeedbackEvent(event_id="e1", video_id="v1", kind="summary_rating", actor="a", payload={"rating": 3}, at=AT)
        assert db.write_feedback(s, ev) is True
        assert db.write_feedback(s, ev) is False
        s.commit()
    with engine.connect() as c:

        def q(sql: str) -> list:
            return list(c.execute(sa.text(sql)).all())

        assert q("SELECT video_id, model_version FROM analyses ORDER BY 2") == [("v1", "m1"), ("v1", "m2")]
        assert sorted(q("SELECT analysis_id, label FROM tags")) == sorted(
            [
                (analysis_id_for("v1", "m1"), "cat"),
                (analysis_id_for("v1", "m1"), "dog"),
                (analysis_id_for("v1", "m2"), "cat"),
            ]
        )
        assert q("SELECT category, severity FROM moderation_flags") == [("violence", 2)]
        assert q("SELECT video_id, status, error FROM videos ORDER BY 1") == [
            ("v1", "analyzed", None),
            ("v2", "failed", "FetchError: no such file"),
        ]
        assert q("SELECT count(*) FROM feedback_events") == [(1,)]


def _table_of(diff) -> str | None:
    op = diff[0] if isinstance(diff, list) else diff
    obj = op[1] if len(op) > 1 else None
    name = getattr(obj, "name", None)
    table = getattr(obj, "table", None)
    if table is not None:
        return table.name
    return name if isinstance(name, str) else (op[2] if len(op) > 2 and isinstance(op[2], str) else None)


def test_sqlite_schema_by_migrations_and_idempotent_writes(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'keye.db'}")
    try:
        check_schema_and_idempotence(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_schema_by_migrations_and_idempotent_writes(pg_database: str) -> None:
    engine = db.make_engine(pg_database)
    try:
        check_schema_and_idempotence(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_migrations_on_postgres(pg_database: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engines = [db.make_engine(pg_database) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as ex:
            list(ex.map(db.migrate, engines))  # three workers starting at once
        with engines[0].connect() as c:
            assert OURS <= set(sa.inspect(c).get_table_names())
    finally:
        for e in engines:
            e.dispose()


def test_embedded_points_are_deterministic_and_filterable(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path / "q")
    try:
        for _ in range(2):  # redelivery overwrites the same point
            store.upsert(
                [
                    record("v1", embedding=(1.0, 0.0, 0.0)),
                    record("v2", tags=("dog",), severity=None, embedding=(0.0, 1.0, 0.0)),
                ]
            )
        store.upsert([record("v1", model="m2", embedding=(0.9, 0.1, 0.0))])
        assert store.count() == 3
        assert store.count({"video_id": "v1"}) == 2
        hits = store.search([1.0, 0.0, 0.0], limit=3)
        assert str(hits[0].id) == analysis_id_for("v1", "m1") and hits[0].score == pytest.approx(1.0)
        assert hits[0].payload["tags"] == ["cat", "dog"] and hits[0].payload["max_severity"] == 2
        clear = store.search([1.0, 0.0, 0.0], where={"moderation_status": "clear"})
        assert [h.payload["video_id"] for h in clear] == ["v2"]
        assert [h.payload["video_id"] for h in store.search([0.0, 1.0, 0.0], where={"tags": ["dog"]}, limit=1)] == [
            "v2"
        ]
        with pytest.raises(VectorStoreError, match="4-dim|3-dim"):
            store.upsert([record("v3", embedding=(1.0, 0.0, 0.0, 0.0))])
        with pytest.raises(VectorStoreError, match="no embedding"):
            store.upsert([record("v4").model_copy(update={"embedding": None})])
    finally:
        store.close()
    assert set(PAYLOAD_INDEXES) >= {
        "video_id",
        "tags",
        "language",
        "creator_id",
        "moderation_status",
        "max_severity",
        "created_at",
        "model_version",
        "duration_s",
    }
    with pytest.raises(ValueError, match="exactly one"):
        VectorStore(url="http://x:6333", path=tmp_path / "q2")


def test_server_path_creates_a_payload_index_per_filterable_field(tmp_path: Path) -> None:
    """No Qdrant server can run here: drive the server engine through qdrant-client's local mode,
    which speaks the same client API (it accepts each create_payload_index call and validates its
    schema type, then ignores it)."""
    import warnings

    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q"))
    store = VectorStore.with_client(client)
    try:
        real, made = client.create_payload_index, []

        def recording(collection, field_name, field_schema=None, **kw):
            made.append((field_name, field_schema.value))
            return real(collection, field_name, field_schema=field_schema, **kw)  # the real client call

        client.create_payload_index = recording
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store.ensure_collection(3)
        assert dict(made) == PAYLOAD_INDEXES
        params = client.get_collection("videos").config.params.vectors
        assert params["keye"].size == 3 and params["keye"].distance.name == "COSINE"
        store.ensure_collection(3)  # idempotent
        with pytest.raises(VectorStoreError, match="holds 3-dim vectors, got 4"):
            store.ensure_collection(4)
        # the same write path as the embedded engine: upsert, payload edit, delete, search
        store.upsert([record("v1", embedding=(1.0, 0.0, 0.0)), record("v2", embedding=(0.0, 1.0, 0.0))])
        store.set_payload([analysis_id_for("v2", "m1")], {"moderation_status": "clear"})
        assert [h.payload["video_id"] for h in store.search([0.0, 1.0, 0.0], where={"moderation_status": "clear"})] == [
            "v2"
        ]
        store.delete([analysis_id_for("v1", "m1")])
        assert store.count() == 1 and store.vector(analysis_id_for("v1", "m1")) is None
    finally:
        store.close()
