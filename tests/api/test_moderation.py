"""The review queue, claims and decisions through the JSON API."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.keys import create_key
from api.tables import Outbox
from stores.db import Analysis, ModerationFlag, Review
from tests.support.api import auth


def test_queue_orders_by_severity_then_age_and_filters(client: TestClient, keys, seed) -> None:
    seed("mild-old", severity=1, categories=("hate",), age_s=7200)
    seed("severe", severity=3, categories=("violence", "weapons"), age_s=60)
    seed("mild-new", severity=1, categories=("drugs",), age_s=30)
    seed("review-me", severity=2, categories=("scam_spam",), status="needs_review", age_s=100)
    seed("fine", tags=("dog",))  # clear: never in the queue
    h = auth(keys["moderator"])

    q = client.get("/v1/moderation/queue", headers=h).json()
    assert [i["video_id"] for i in q["items"]] == ["severe", "review-me", "mild-old", "mild-new"]
    assert q["total"] == 4 and q["items"][0]["categories"] == ["violence", "weapons"]

    by_cat = client.get("/v1/moderation/queue", params={"category": "drugs"}, headers=h).json()
    assert [i["video_id"] for i in by_cat["items"]] == ["mild-new"]
    recent = client.get("/v1/moderation/queue", params={"max_age_s": 600}, headers=h).json()
    assert {i["video_id"] for i in recent["items"]} == {"severe", "review-me", "mild-new"}
    old = client.get("/v1/moderation/queue", params={"min_age_s": 3600}, headers=h).json()
    assert [i["video_id"] for i in old["items"]] == ["mild-old"]
    page = client.get("/v1/moderation/queue", params={"limit": 2, "offset": 2}, headers=h).json()
    assert [i["video_id"] for i in page["items"]] == ["mild-old", "mild-new"] and page["total"] == 4


def test_claim_is_exclusive_and_decision_needs_it(client: TestClient, session: Session, keys, seed) -> None:
    r = seed("v1", severity=2, categories=("violence",))
    _, other = create_key(session, ["moderator"], name="moderator-2")
    a, b = auth(keys["moderator"]), auth(other)
    url = f"/v1/moderation/cases/{r.analysis_id}"

    nope = client.post(url + "/decision", json={"decision": "clear"}, headers=a)
    assert nope.status_code == 409 and nope.json()["type"] == "urn:keye:problem:conflict"
    assert client.post(url + "/claim", headers=a).status_code == 200
    assert client.post(url + "/claim", headers=a).status_code == 200  # renewing one's own claim
    taken = client.post(url + "/claim", headers=b)
    assert taken.status_code == 409 and "moderator-1" in taken.json()["detail"]
    assert client.post(url + "/decision", json={"decision": "clear"}, headers=b).status_code == 409
    q = client.get("/v1/moderation/queue", headers=b).json()
    assert q["items"][0]["claim"]["moderator"] == "moderator-1"

    assert client.delete(url + "/claim", headers=a).status_code == 204
    assert client.post(url + "/claim", headers=b).status_code == 200


def test_decision_is_stored_published_and_changes_status(client: TestClient, session: Session, keys, seed, app) -> None:
    r = seed("v2", severity=3, categories=("violence", "weapons"), embedding=[0.5, 0.1, 0.2])
    h = auth(keys["moderator"])
    url = f"/v1/moderation/cases/{r.analysis_id}"
    client.post(url + "/claim", headers=h)
    out = client.post(url + "/decision", json={"decision": "clear", "note": "toy gun"}, headers=h)
    assert out.status_code == 200, out.text
    assert out.json()["moderation_status"] == "clear"

    session.expire_all()
    a = session.get(Analysis, r.analysis_id)
    assert a.moderation_status == "clear" and a.record["moderation"]["status"] == "clear"
    assert {f.review_status for f in session.exec(select(ModerationFlag))} == {"cleared"}
    (review,) = session.exec(select(Review)).all()
    assert (review.decision, review.reviewer, review.note) == ("clear", "moderator-1", "toy gun")
    (msg,) = session.exec(select(Outbox)).all()
    event = json.loads(msg.value)
    assert msg.topic == "feedback.events" and msg.key == "v2"
    assert event["kind"] == "moderation_decision" and event["payload"]["decision"] == "clear"
    assert event["event_id"] == out.json()["event_id"]

    store = app.state.services.vectors  # the search filter on moderation status follows the decision
    (point,) = store.retrieve([r.analysis_id])
    assert point.payload["moderation_status"] == "clear"

    assert client.get("/v1/moderation/queue", headers=h).json()["total"] == 0
    again = client.post(url + "/claim", headers=h)
    assert again.status_code == 409 and "already decided" in again.json()["detail"]


def test_escalate_moves_to_escalated_queue(client: TestClient, keys, seed) -> None:
    r = seed("v3", severity=2, categories=("hate",))
    h = auth(keys["moderator"])
    url = f"/v1/moderation/cases/{r.analysis_id}"
    client.post(url + "/claim", headers=h)
    assert (
        client.post(url + "/decision", json={"decision": "escalate"}, headers=h).json()["moderation_status"]
        == "needs_review"
    )
    assert client.get("/v1/moderation/queue", headers=h).json()["total"] == 0
    esc = client.get("/v1/moderation/queue", params={"state": "escalated"}, headers=h).json()
    assert [i["video_id"] for i in esc["items"]] == ["v3"]
    client.post(url + "/claim", headers=h)
    assert client.post(url + "/decision", json={"decision": "escalate"}, headers=h).status_code == 409
    assert (
        client.post(url + "/decision", json={"decision": "confirm"}, headers=h).json()["moderation_status"] == "flagged"
    )
    assert client.get("/v1/moderation/queue", params={"state": "escalated"}, headers=h).json()["total"] == 0


def test_case_shows_evidence_reasoning_and_real_thumbnails(client: TestClient, keys, seed) -> None:
    r = seed("v4", severity=2, categories=("weapons", "drugs"), duration_s=3.0)
    h = auth(keys["moderator"])
    case = client.get(f"/v1/moderation/cases/{r.analysis_id}", headers=h).json()
    assert case["reasoning"] == "reasoning for v4" and case["state"] == "open"
    assert {f["category"] for f in case["flags"]} == {"weapons", "drugs"}
    assert [t["t"] for t in case["thumbnails"]] == [0.5, 1.5]
    img = client.get(case["thumbnails"][1]["url"], headers=h)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content[:3] == b"\xff\xd8\xff"
    outside = client.get(f"/v1/moderation/cases/{r.analysis_id}/thumbnails/99", headers=h)
    assert outside.status_code == 422 and outside.json()["type"] == "urn:keye:problem:invalid-request"
    missing = client.get("/v1/moderation/cases/nope", headers=h)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
