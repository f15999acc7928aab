"""What every route shares: the per-app services and a SQL session per request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlmodel import Session

from api.embedder import TextEmbedder
from api.problems import Unavailable
from service.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    max_upload_bytes: int = 512 * 1024 * 1024
    max_clip_seconds: float = 60.0
    claim_ttl_s: float = 15 * 60
    vectors: Any = None  # stores.vectors.VectorStore, opened on first use
    embedder: TextEmbedder | None = None
    analyzer: Any = None  # analysis.serving.Analyzer: the workers' per-video analysis, loaded on first use
    relay: Any = None  # api.outbox.Relay when Kafka publishing runs in this process
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def upload_dir(self) -> Path:
        return self.settings.upload_dir

    def vector_store(self) -> Any:
        with self._lock:
            if self.vectors is None:
                from stores.vectors import VectorStore

                try:
                    store = VectorStore.from_settings(self.settings)
                    store.warm()  # open the embedded shard now (a log replay after a crash), not in the first search
                except Exception as e:  # noqa: BLE001 - an embedded shard may be locked by another process
                    raise Unavailable(f"the vector store cannot be opened: {e}") from None
                self.vectors = store
            return self.vectors

    def published(self) -> None:
        """Tell the outbox relay that a commit added messages."""
        if self.relay is not None:
            self.relay.wake()

    def clip_analyzer(self) -> Any:
        with self._lock:
            if self.analyzer is None:
                from analysis.serving import AnalyzerUnavailableError, load_analyzer

                try:
                    self.analyzer = load_analyzer(self.settings)
                except AnalyzerUnavailableError as e:
                    raise Unavailable(f"the model cannot be loaded for clip summaries: {e}") from None
            return self.analyzer

    def text_embedder(self) -> TextEmbedder:
        with self._lock:
            if self.embedder is None:
                from api.embedder import KeyeTextEmbedder

                self.embedder = KeyeTextEmbedder(self.settings)
            return self.embedder


def services(request: Request) -> Services:
    return request.app.state.services


def db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.services.engine) as session:
        yield session
