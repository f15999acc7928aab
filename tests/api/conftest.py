"""Fixtures for the API tests: an app over a fresh SQLite file and a local Qdrant folder, keys per
role, and analyses written through the same `stores.db.write_analysis` the workers use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.embedder import KeyeTextEmbedder
from api.keys import ROLES, create_key
from service.schemas import AnalysisRecord, Submission
from service.settings import Settings
from stores.db import write_analysis
from tests.support.api import make_record


@pytest.fixture
def api_settings(tmp_path: Path, sample_clips: list[Path]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        qdrant_path=tmp_path / "qdrant",
        model="keye-tiny",
        file_roots=[sample_clips[0].parent, tmp_path / "media"],
    )


@pytest.fixture(scope="session")
def text_embedder() -> KeyeTextEmbedder:
    """The real adapter over keye_model's random-weight keye-tiny; it loads on the first text query."""
    return KeyeTextEmbedder(Settings(model="keye-tiny", device="cpu", dtype="float32"))


@pytest.fixture
def app(api_settings: Settings, text_embedder: KeyeTextEmbedder):
    from stores.vectors import VectorStore

    store = VectorStore(path=api_settings.resolved_qdrant_path)
    application = create_app(api_settings, vectors=store, embedder=text_embedder, max_upload_bytes=2_000_000)
    yield application
    store.close()
    application.state.services.engine.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def session(app) -> Iterator[Session]:
    with Session(app.state.services.engine) as s:
        yield s


@pytest.fixture
def keys(session: Session) -> dict[str, str]:
    """One plaintext key per role, named after it."""
    return {role: create_key(session, [role], name=f"{role}-1")[1] for role in ROLES}


@pytest.fixture
def seed(app, session: Session, sample_clips: list[Path]) -> Callable[..., AnalysisRecord]:
    """Write one analysed video (submission + analysis, and its point when it has an embedding) the
    way the workers and the vector sink do."""

    def _seed(video_id: str, **kw) -> AnalysisRecord:
        r = make_record(video_id, **kw)
        sub = Submission(
            video_id=video_id,
            uri=sample_clips[0].resolve().as_uri(),
            creator_id=r.creator_id,
            language=r.language,
            submitted_at=r.created_at,
        )
        write_analysis(session, r, sub)
        session.commit()
        if r.embedding:
            app.state.services.vectors.upsert([r])
        return r

    return _seed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_app(request, api_settings: Settings, text_embedder: KeyeTextEmbedder):
    """The app over either SQL store: the SQLite file, or a fresh PostgreSQL database."""
    settings = api_settings
    if request.param == "postgres":
        settings = api_settings.model_copy(update={"database_url": request.getfixturevalue("pg_database")})
    application = create_app(settings, embedder=text_embedder, max_upload_bytes=2_000_000)
    yield application
    if application.state.services.vectors is not None:
        application.state.services.vectors.close()
    application.state.services.engine.dispose()


@pytest.fixture
def flagged_case(store_app, sample_clips: list[Path]) -> Callable[[str], AnalysisRecord]:
    """Write a flagged analysis into store_app's database; returns its record."""

    def _case(video_id: str) -> AnalysisRecord:
        r = make_record(video_id, severity=2, categories=("violence",))
        with Session(store_app.state.services.engine) as s:
            write_analysis(
                s, r, Submission(video_id=video_id, uri=sample_clips[0].resolve().as_uri(), submitted_at=r.created_at)
            )
            s.commit()
        return r

    return _case
