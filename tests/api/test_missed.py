"""A violation the model missed, reported by a moderator: a confirmed flag, a flagged analysis and a
`confirm` of that category on feedback.events, which training turns into the answer the model owed."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from analysis.answers import corrected_moderation
from analysis.config import load_config
from api.tables import Outbox
from stores.db import Analysis, ModerationFlag, Review
from tests.support.api import auth


def test_a_missed_violation_on_a_clear_video_flags_it_and_is_feedback(
    client: TestClient, session: Session, keys, seed, app
) -> None:
    r = seed("missed", tags=("dog",), embedding=[0.5, 0.1, 0.2])  # the model saw nothing
    h = auth(keys["moderator"])
    url = f"/v1/moderation/cases/{r.analysis_id}/missed"
    out = client.post(url, json={"category": "weapons", "severity": 3, "note": "a gun in shot 2"}, headers=h)
    assert out.status_code == 200, out.text
    assert out.json()["moderation_status"] == "flagged" and out.json()["decision"] == "confirm"

    session.expire_all()
    a = session.get(Analysis, r.analysis_id)
    assert (a.moderation_status, a.max_severity, a.record["moderation"]["status"]) == ("flagged", 3, "flagged")
    assert a.record["moderation"]["categories"] == []  # the record stays what the model answered
    (flag,) = session.exec(select(ModerationFlag)).all()
    assert (flag.category, flag.severity, flag.review_status) == ("weapons", 3, "confirmed")
    (review,) = session.exec(select(Review)).all()
    assert (review.decision, review.category, review.note) == ("confirm", "weapons", "a gun in shot 2")
    (msg,) = session.exec(select(Outbox)).all()
    event = json.loads(msg.value)
    assert msg.topic == "feedback.events" and event["event_id"] == out.json()["event_id"]
    assert event["kind"] == "moderation_decision"
    assert {k: event["payload"][k] for k in ("decision", "category", "severity", "missed")} == {
        "decision": "confirm",
        "category": "weapons",
        "severity": 3,
        "missed": True,
    }
    # the training target: the category the model owed, at the reported severity
    target = corrected_moderation(load_config(), a.record, [event["payload"]])
    assert [(f.category, f.severity, f.confidence) for f in target.flags] == [("weapons", 3, 100)]
    store = app.state.services.vectors
    (point,) = store.retrieve([r.analysis_id])
    assert point.payload["moderation_status"] == "flagged"

    again = client.post(url, json={"category": "weapons"}, headers=h)
    assert again.status_code == 409 and "already has a weapons flag" in again.json()["detail"]


def test_a_missed_report_waits_for_the_cases_decision_and_checks_its_input(client: TestClient, keys, seed) -> None:
    r = seed("open", severity=2, categories=("violence",))
    h = auth(keys["moderator"])
    url = f"/v1/moderation/cases/{r.analysis_id}"
    early = client.post(url + "/missed", json={"category": "weapons"}, headers=h)
    assert early.status_code == 409 and "undecided" in early.json()["detail"]
    client.post(url + "/claim", headers=h)
    assert client.post(url + "/decision", json={"decision": "clear"}, headers=h).status_code == 200
    late = client.post(url + "/missed", json={"category": "weapons", "severity": 2}, headers=h)
    assert late.status_code == 200 and late.json()["moderation_status"] == "flagged"
    assert client.post(url + "/missed", json={"category": "nonsense"}, headers=h).status_code == 422
    assert client.post(url + "/missed", json={"category": "drugs", "severity": 4}, headers=h).status_code == 422
    assert client.post("/v1/moderation/cases/nope/missed", json={"category": "drugs"}, headers=h).status_code == 404
    assert client.post(url + "/missed", json={"category": "drugs"}, headers=auth(keys["product"])).status_code == 403
