"""Decisions under a double click: parallel POSTs by the claim holder, against a real uvicorn server
on SQLite and PostgreSQL, store exactly one review and one feedback event; an Idempotency-Key makes
the retries answer like the first request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from api.keys import create_key
from api.tables import Outbox
from stores.db import Review
from tests.support.api import at_once, auth, live_server

PARALLEL = 20


def _stored(app, video_id: str, analysis_id: str) -> tuple[int, int]:
    """(reviews, feedback messages in the outbox) of one case."""
    topic = app.state.services.settings.topic_feedback
    with Session(app.state.services.engine) as s:
        reviews = s.exec(select(sa.func.count()).select_from(Review).where(Review.analysis_id == analysis_id)).one()
        events = s.exec(
            select(sa.func.count()).select_from(Outbox).where(Outbox.topic == topic, Outbox.key == video_id)
        ).one()
    return reviews, events


def _moderator(app) -> dict[str, str]:
    with Session(app.state.services.engine) as s:
        return auth(create_key(s, ["moderator"], name="mod-race")[1])


@contextmanager
def _claimed(app, analysis_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A live server with the case claimed by a moderator: (the case's URL, that key's headers)."""
    h = _moderator(app)
    with live_server(app) as base:
        case = f"{base}/v1/moderation/cases/{analysis_id}"
        with httpx.Client() as c:
            assert c.post(case + "/claim", headers=h).status_code == 200
        yield case, h


def test_parallel_decisions_by_the_holder_store_one_review_and_one_event(store_app, flagged_case) -> None:
    r = flagged_case("race-1")
    with _claimed(store_app, r.analysis_id) as (case, h):
        answers = at_once(PARALLEL, lambda c: c.post(case + "/decision", json={"decision": "confirm"}, headers=h))
    assert sorted(a.status_code for a in answers) == [200] + [409] * (PARALLEL - 1), [a.text for a in answers]
    for lost in (a for a in answers if a.status_code == 409):
        assert lost.headers["content-type"] == "application/problem+json"
        assert lost.json()["type"] in ("urn:keye:problem:already-decided", "urn:keye:problem:conflict")
    assert _stored(store_app, "race-1", r.analysis_id) == (1, 1)


def test_idempotency_key_replays_the_first_decision(store_app, flagged_case) -> None:
    r = flagged_case("race-2")
    with _claimed(store_app, r.analysis_id) as (case, h):
        retry = {**h, "Idempotency-Key": "click-7f3a"}
        body = {"decision": "clear", "note": "satire"}
        answers = at_once(PARALLEL, lambda c: c.post(case + "/decision", json=body, headers=retry))
        assert [a.status_code for a in answers] == [200] * PARALLEL, [a.text for a in answers]
        assert len({a.json()["event_id"] for a in answers}) == 1
        assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == PARALLEL - 1
        with httpx.Client() as c:
            later = c.post(case + "/decision", json=body, headers=retry)
            assert later.status_code == 200 and later.json() == answers[0].json()
            other = c.post(case + "/decision", json={"decision": "confirm"}, headers=retry)
            assert other.status_code == 422
            assert other.json()["type"] == "urn:keye:problem:idempotency-key-reused"
            assert c.post(case + "/decision", json=body, headers=h).status_code == 409  # no key: a new decision
    assert _stored(store_app, "race-2", r.analysis_id) == (1, 1)


def test_a_claim_is_used_once_by_parallel_decisions_and_releases(store_app, flagged_case) -> None:
    r = flagged_case("race-3")
    with _claimed(store_app, r.analysis_id) as (case, h):
        turn = iter(range(PARALLEL))

        def decide_or_release(c: httpx.Client) -> httpx.Response:
            if next(turn) % 2:
                return c.delete(case + "/claim", headers=h)
            return c.post(case + "/decision", json={"decision": "escalate"}, headers=h)

        answers = at_once(PARALLEL, decide_or_release)
    statuses = sorted(a.status_code for a in answers)
    assert len([s for s in statuses if s in (200, 204)]) == 1, statuses
    assert set(statuses) <= {200, 204, 404, 409}, statuses
    reviews, events = _stored(store_app, "race-3", r.analysis_id)
    assert reviews == events == (1 if 200 in statuses else 0)
