"""An uploaded video goes the whole way: `PUT /v1/videos/{id}/content` -> outbox -> `videos.ingest`
-> streams gate -> `videos.work` -> a worker process -> an analysis row; an upload that fails for good
has its file removed. The worker's file roots do not name the upload folder: it is allowed by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests.support.pipeline import Pipeline, analysis_counts, video_states, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_uploads_are_analysed_by_a_worker_and_a_failed_one_is_removed(
    pipeline: Pipeline, sample_clips: list[Path]
) -> None:
    from api.app import create_app
    from api.keys import create_key

    s = pipeline.settings
    assert not any(s.upload_dir.is_relative_to(Path(r).resolve()) for r in s.file_roots)
    pipeline.streams()
    pipeline.worker(batch_size=2)
    clip = next(c for c in sample_clips if c.suffix == ".mp4" and c.name != "bigbuckbunny.mp4")
    broken = clip.read_bytes()[:64] + b"\x00" * 4096  # an MP4 signature, then nothing decodable

    app = create_app(s, publish=True)
    try:
        with TestClient(app) as client:
            with Session(app.state.services.engine) as session:
                _, key = create_key(session, ["ingest"], name="uploader")
            h = {"Authorization": f"Bearer {key}", "Content-Type": "video/mp4"}
            for video_id, body in (("up-good", clip.read_bytes()), ("up-broken", broken)):
                resp = client.put(f"/v1/videos/{video_id}/content", content=body, headers=h)
                assert resp.status_code == 202, resp.text
            stored = {p.parent.name: p for p in s.upload_dir.rglob("*") if p.is_file()}
            assert set(stored) == {"up-good", "up-broken"}

            def settled() -> bool:
                states = video_states(s)
                return states.get("up-good", ("",))[0] == "analyzed" and states.get("up-broken", ("",))[0] == "failed"

            wait_for(settled, 150, "the uploads analysed or failed", pipeline)
    finally:
        if app.state.services.vectors is not None:
            app.state.services.vectors.close()
        app.state.services.engine.dispose()
    assert analysis_counts(s).get("up-good") == 1
    assert video_states(s)["up-good"][1] is None
    assert video_states(s)["up-broken"][1].startswith("VideoDecodeError")
    assert stored["up-good"].is_file()  # kept: the review page plays it
    assert not stored["up-broken"].exists() and not stored["up-broken"].parent.exists()
