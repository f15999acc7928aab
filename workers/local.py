"""`keye analyze FILE...`: the worker's per-video path in-process, without Kafka.

Uses the embedded defaults (SQLite and local Qdrant under KEYE_DATA_DIR); this process is the
single owner of the Qdrant folder while it runs. Files named on the command line are trusted:
their folders are added to the file roots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.serving import Analyzer, load_analyzer
from analysis.stages import VideoProcessor
from service.failures import Failure, classify
from service.kafka import to_uri, video_id_for
from service.schemas import AnalysisRecord, Submission, utcnow
from service.settings import Settings
from stores.db import engine_from, migrate
from stores.vectors import VectorStore


@dataclass
class FileResult:
    path: Path
    video_id: str
    record: AnalysisRecord | None = None
    error: str | None = None


def analyze_files(
    paths: Sequence[str | Path], settings: Settings | None = None, analyzer: Analyzer | None = None
) -> list[FileResult]:
    """Analyze each file, store it (SQL + Qdrant), and return one result per file (errors included)."""
    from service.settings import get_settings

    settings = settings or get_settings()
    files = [Path(p).resolve() for p in paths]
    settings = settings.model_copy(update={"file_roots": [*settings.file_roots, *{f.parent for f in files}]})
    engine = engine_from(settings)
    migrate(engine)
    vectors = VectorStore.from_settings(settings)
    processor = VideoProcessor(settings, analyzer or load_analyzer(settings), engine, vectors)
    results = []
    try:
        for f in files:
            uri = to_uri(str(f))
            sub = Submission(video_id=video_id_for(uri), uri=uri, title=f.stem, submitted_at=utcnow())
            try:
                record = processor.analyze(sub)
                processor.persist(record, sub)
                results.append(FileResult(f, sub.video_id, record=record))
            except Exception as e:  # noqa: BLE001 - reported per file; store outages propagate
                if classify(e) is Failure.STORE:
                    raise
                reason = f"{type(e).__name__}: {e}"
                processor.mark_failed(sub.video_id, reason, uri)
                results.append(FileResult(f, sub.video_id, error=reason))
    finally:
        vectors.close()
        engine.dispose()
    return results
