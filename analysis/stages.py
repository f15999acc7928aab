"""The per-video path shared by the Kafka worker and `keye analyze`: fetch -> analyze -> persist.

Each stage is timed (the `keye_stage_seconds` histogram and the record's timings_ms) and logged
with the video_id. Persisting is idempotent (see stores.db and stores.vectors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import sqlalchemy as sa
from sqlmodel import Session

from analysis.serving import Analyzer
from service import uploads
from service.failures import StoreUnavailableError
from service.fetch import fetched
from service.metrics import STAGE
from service.schemas import AnalysisRecord, Submission
from service.settings import Settings
from stores import db
from stores.vectors import VectorStore

log = logging.getLogger("keye.worker")


@contextmanager
def timed(stage: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        STAGE.labels(stage).observe(elapsed)
        if timings is not None:
            timings[stage] = round(elapsed * 1000, 3)


class VideoProcessor:
    """Runs one video through the stages. `vectors` is None when another process owns the index."""

    def __init__(
        self, settings: Settings, analyzer: Analyzer, engine: sa.Engine | None, vectors: VectorStore | None = None
    ) -> None:
        """engine None: analysis only (the evaluation harness); persist and mark_failed need one."""
        self.settings, self.analyzer, self.engine, self.vectors = settings, analyzer, engine, vectors

    def analyze(self, work: Submission) -> AnalysisRecord:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with fetched(work.uri, self.settings) as path:  # a download is deleted when analysis ends
            fetch_s = time.perf_counter() - start
            STAGE.labels("fetch").observe(fetch_s)
            timings["fetch"] = round(fetch_s * 1000, 3)
            with timed("analyze", timings):
                record = self.analyzer.analyze(path, work)
        return self._complete(record, work, timings)

    @staticmethod
    def _complete(record: AnalysisRecord, work: Submission, timings: dict[str, float]) -> AnalysisRecord:
        # The Qdrant payload filters on creator and language: take them from the submission when the
        # analyzer did not set them.
        return record.model_copy(
            update={
                "timings_ms": {**record.timings_ms, **timings},
                "creator_id": record.creator_id or work.creator_id,
                "language": record.language or work.language,
            }
        )

    def analyze_many(self, works: list[Submission]) -> dict[str, AnalysisRecord]:
        """Analyze several videos in one call when the analyzer batches (`analyze_many`), e.g. one
        GPU pass for a whole Kafka batch. Best effort: a video that cannot be fetched, or a batch
        call that fails, is left out; the caller runs the per-video path for it (which retries and
        classifies its error)."""
        many = getattr(self.analyzer, "analyze_many", None)
        if many is None or len(works) < 2:
            return {}
        with ExitStack() as stack:
            start = time.perf_counter()
            ready = []
            for w in works:
                try:
                    ready.append((stack.enter_context(fetched(w.uri, self.settings)), w))
                except Exception:  # noqa: BLE001 - handled again, one by one
                    continue
            fetch_ms = (time.perf_counter() - start) * 1000 / max(1, len(ready))
            if len(ready) < 2:
                return {}
            start = time.perf_counter()
            done = _bisect(many, ready)
            analyze_s = (time.perf_counter() - start) / max(1, len(done))
        out = {}
        for (_, w), r, size in done:
            STAGE.labels("analyze").observe(analyze_s)
            out[w.video_id] = self._complete(
                r, w, {"fetch": round(fetch_ms, 3), "analyze": round(analyze_s * 1000, 3), "batch_videos": float(size)}
            )
        return out

    def persist(self, record: AnalysisRecord, work: Submission | None = None) -> None:
        try:
            with timed("sql"), Session(self.engine) as session:
                db.write_analysis(session, record, work)
                session.commit()
            if self.vectors is not None:
                with timed("qdrant"):
                    self.vectors.upsert([record])
        except Exception as e:
            if _is_store_error(e):
                raise StoreUnavailableError(f"storing analysis of {record.video_id}: {e}") from e
            raise
        log.info("video %s analyzed (analysis %s, %s)", record.video_id, record.analysis_id, record.model_version)

    def mark_failed(self, video_id: str, reason: str, uri: str = "") -> None:
        try:
            with timed("sql"), Session(self.engine) as session:
                db.mark_failed(session, video_id, reason, uri)
                session.commit()
        except sa.exc.SQLAlchemyError as e:
            raise StoreUnavailableError(f"marking {video_id} failed: {e}") from e
        log.warning("video %s failed: %s", video_id, reason)
        uploads.discard(uri, self.settings)  # failed for good: an uploaded file would only hold quota


def _bisect(many, items: list) -> list[tuple]:
    """Run `many` on the items; when the call fails, split in halves so that one bad video does not
    deny the others the batched pass. Returns (item, record, call size); failed singles are left out."""
    try:
        return [(item, r, len(items)) for item, r in zip(items, many(items), strict=True)]
    except Exception as e:  # noqa: BLE001 - the per-video path classifies what is left out
        if len(items) == 1:
            return []
        log.info("batched analysis of %d videos failed (%s); splitting the batch", len(items), type(e).__name__)
        mid = len(items) // 2
        return _bisect(many, items[:mid]) + _bisect(many, items[mid:])


def _is_store_error(e: Exception) -> bool:
    from service.failures import Failure, classify

    return classify(e) is Failure.STORE


__all__ = ["VideoProcessor", "timed"]
