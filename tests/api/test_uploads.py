"""Upload storage: a total quota answered 507 (the storage's room, not the upload, is the problem),
animated GIFs taken as clips, and the upload folder shared by the API and the workers (and in the
compose deployment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, select

from api.app import create_app
from api.tables import Outbox
from service import uploads
from tests.support.api import auth

REPO = Path(__file__).resolve().parents[2]


def _stored(settings) -> list[Path]:
    return [p for p in settings.upload_dir.rglob("*") if p.is_file()] if settings.upload_dir.exists() else []


def test_the_upload_quota_is_a_507_and_leaves_nothing_behind(api_settings, keys, sample_clips) -> None:
    mp4 = sample_clips[1].read_bytes()
    settings = api_settings.model_copy(update={"api_max_upload_total_bytes": len(mp4) * 3 // 2})
    app = create_app(settings, max_upload_bytes=len(mp4) * 4)
    h = {**auth(keys["ingest"]), "Content-Type": "video/mp4"}
    try:
        with TestClient(app) as client:
            assert client.put("/v1/videos/q-1/content", content=mp4, headers=h).status_code == 202
            declared = client.put("/v1/videos/q-2/content", content=mp4, headers=h)
            streamed = client.put("/v1/videos/q-3/content", content=iter([mp4[:1000], mp4[1000:]]), headers=h)
            for resp in (declared, streamed):  # one knows it from Content-Length, one while streaming
                assert resp.status_code == 507, resp.text
                assert resp.json()["type"] == "urn:keye:problem:insufficient-storage"
            assert len(_stored(settings)) == 1
            uploads.discard(_stored(settings)[0].as_uri(), settings)  # space freed: room again
            assert client.put("/v1/videos/q-4/content", content=mp4, headers=h).status_code == 202
            full = settings.model_copy(update={"api_max_upload_total_bytes": len(mp4)})
            app.state.services.settings = full  # stored uploads now fill the quota: refused before reading
            tiny = client.put("/v1/videos/q-5/content", content=mp4[:100], headers=h)
            assert tiny.status_code == 507 and "quota" in tiny.json()["detail"]
        with Session(app.state.services.engine) as s:
            assert sorted(o.key for o in s.exec(select(Outbox).where(Outbox.topic == settings.topic_ingest))) == [
                "q-1",
                "q-4",
            ]
    finally:
        app.state.services.engine.dispose()


def test_an_animated_gif_upload_is_accepted_as_a_clip(client: TestClient, keys, app, tmp_path) -> None:
    frames = [Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    h = {**auth(keys["ingest"]), "Content-Type": "image/gif"}
    resp = client.put("/v1/videos/gif-1/content", content=(tmp_path / "a.gif").read_bytes(), headers=h)
    assert resp.status_code == 202, resp.text
    (stored,) = _stored(app.state.services.settings)
    assert stored.suffix == ".gif"


def test_discard_removes_uploads_only(api_settings, tmp_path) -> None:
    clip = api_settings.upload_dir / "v-1" / "x.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x")
    other = tmp_path / "media" / "y.mp4"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(b"y")
    assert uploads.stored_bytes(api_settings) == 1
    for uri in (
        other.as_uri(),
        "http://example.com/x.mp4",
        api_settings.upload_dir.as_uri(),
        f"file://{api_settings.upload_dir}/../keye.db",
    ):
        assert uploads.discard(uri, api_settings) is False
    assert other.exists() and api_settings.upload_dir.is_dir()
    assert uploads.discard(clip.as_uri(), api_settings) is True
    assert not clip.exists() and not clip.parent.exists() and uploads.stored_bytes(api_settings) == 0


def test_compose_api_and_worker_share_the_upload_folder() -> None:
    # The worker reads uploads by the same setting the API writes them by: one data dir, one volume.
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    data_dirs = {name: services[name]["environment"]["KEYE_DATA_DIR"] for name in ("api", "worker")}
    assert len(set(data_dirs.values())) == 1, data_dirs
    for name in ("api", "worker"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(data_dirs[name]) == "keye-data", (name, mounts)
