"""Helpers shared by the API tests (plain functions; fixtures live in tests/api/conftest.py)."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx

from service.schemas import AnalysisRecord, CategoryFlag, Evidence, Moderation, Summary, TagScore, analysis_id_for

MODEL_VERSION = "keye-tiny"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_record(
    video_id: str,
    *,
    severity: int = 0,
    categories: tuple[str, ...] = (),
    status: str | None = None,
    tags: tuple[str, ...] = ("cat",),
    summary: str = "a short clip",
    language: str = "en",
    creator_id: str = "creator-1",
    duration_s: float = 4.0,
    age_s: float = 60.0,
    embedding: list[float] | None = None,
    model_version: str = MODEL_VERSION,
) -> AnalysisRecord:
    flags = [
        CategoryFlag(
            category=c,
            severity=severity,
            confidence=0.9,
            evidence=[Evidence(start_s=0.5 + i, end_s=1.5 + i, reason=f"{c} visible")],
        )
        for i, c in enumerate(categories)
    ]
    status = status or ("flagged" if flags else "clear")
    return AnalysisRecord(
        analysis_id=analysis_id_for(video_id, model_version),
        video_id=video_id,
        model_version=model_version,
        prompt_version="p1",
        duration_s=duration_s,
        frames_used=8,
        tags=[TagScore(label=t, score=0.8) for t in tags],
        summary=Summary(short=summary, long=summary + " (long)", title=summary.title()),
        moderation=Moderation(status=status, categories=flags, reasoning=f"reasoning for {video_id}"),
        embedding_dim=len(embedding or []),
        created_at=datetime.now(UTC) - timedelta(seconds=age_s),
        creator_id=creator_id,
        language=language,
        embedding=embedding,
    )


def random_vector(dim: int, rng: random.Random) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]


@contextmanager
def live_server(app, **config) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def at_once(n: int, call: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """`call` from n threads released together, each on its own connection."""
    barrier = threading.Barrier(n)
    out: list[httpx.Response] = []

    def run() -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            out.append(call(c))

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == n, "a client thread failed"
    return out
