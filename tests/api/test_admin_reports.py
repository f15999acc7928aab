"""GET /v1/admin/models carries each version's newest `keye eval` report (null when never evaluated)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from evaluation.labelled import LabelledSet, LabelledVideo
from evaluation.report import build_report
from evaluation.store import save_report
from service.schemas import TagScore, utcnow
from stores.db import ModelVersion
from tests.support.api import auth


def test_each_version_returns_its_report(client: TestClient, session: Session, keys) -> None:
    labelled = LabelledSet(
        "fixture",
        (
            LabelledVideo(
                video_id="v1", uri="file:///v1.mp4", duration_s=3.0, tags=(TagScore(label="ball", score=1.0),)
            ),
        ),
    )
    session.add(ModelVersion(version="keye-a", path="/m/a", status="active", created_at=utcnow(), promoted_at=utcnow()))
    session.add(ModelVersion(version="keye-b", path="/m/b", status="candidate", created_at=utcnow()))
    old = build_report(labelled, {}, model_version="keye-a")
    save_report(session, "keye-a", old)
    session.commit()
    newer = build_report(labelled, {}, model_version="keye-a")
    newer["dataset"] = {**newer["dataset"], "name": "newer"}
    save_report(session, "keye-a", newer)
    session.commit()
    resp = client.get("/v1/admin/models", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    views = {v["version"]: v for v in resp.json()["versions"]}
    assert views["keye-a"]["report"]["dataset"]["name"] == "newer"
    assert views["keye-a"]["report"]["headline"]["tags.micro_f1"] == 0.0 and views["keye-b"]["report"] is None
    assert client.get("/v1/admin/models", headers=auth(keys["product"])).status_code == 403
