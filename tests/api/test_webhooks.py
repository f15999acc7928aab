"""Webhooks: registration, fan-out of pipeline messages, delivery to a real HTTP receiver with a
Standard Webhooks signature (checked with the `standardwebhooks` package, an implementation not
ours), retries with backoff, and the delivery log."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from api.app import create_app
from api.keys import ROLES, create_key
from api.tables import Webhook
from api.webhooks import MAX_ATTEMPTS, RETRY, deliver_due, fanout_message
from service.schemas import FlagMessage, encode, utcnow
from tests.support.api import auth, make_record


class Receiver:
    """Answers each POST with the next status of `script` (then 200) and records what it got."""

    def __init__(self, script: list[int]) -> None:
        self.script, self.got = list(script), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.script.pop(0) if outer.script else 200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def local_app(api_settings, tmp_path):
    """Webhook receivers in tests live on loopback, so this deployment allows private addresses."""
    settings = api_settings.model_copy(update={"allow_private_addresses": True, "data_dir": tmp_path / "hooks"})
    app = create_app(settings)
    with TestClient(app) as client, Session(app.state.services.engine) as session:
        keys = {r: create_key(session, [r], name=f"{r}-1")[1] for r in ROLES}
        yield app, client, session, keys
    app.state.services.engine.dispose()


def test_signed_delivery_with_retries_and_log(local_app) -> None:
    app, client, session, keys = local_app
    svc = app.state.services
    receiver = Receiver([500, 503])
    h = auth(keys["product"])
    reg = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["flagged"]}, headers=h)
    assert reg.status_code == 201, reg.text
    hook = reg.json()
    assert "secret" not in client.get("/v1/webhooks", headers=h).json()[0]

    record = make_record("w1", severity=3, categories=("violence",))
    assert fanout_message(session, svc.settings, "videos.analyzed", encode(record)) == 0  # not subscribed
    flag = encode(FlagMessage.from_record(record))
    assert fanout_message(session, svc.settings, "moderation.flags", flag) == 1
    fanout_message(session, svc.settings, "moderation.flags", flag)  # redelivered by Kafka: no second delivery
    session.commit()

    now = utcnow()
    assert deliver_due(svc.engine, svc.settings, now) == 1
    assert deliver_due(svc.engine, svc.settings, now) == 0  # backing off
    log = client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=h).json()
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("pending", 1, 500)]
    deliver_due(svc.engine, svc.settings, now + timedelta(seconds=RETRY.delay(1) + 1))
    deliver_due(svc.engine, svc.settings, now + timedelta(seconds=RETRY.delay(1) + RETRY.delay(2) + 2))
    log = client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=h).json()
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("delivered", 3, 200)]

    assert len(receiver.got) == 3
    headers, body = receiver.got[-1]
    assert headers["X-Keye-Event"] == "flagged" and json.loads(body)["data"]["video_id"] == "w1"
    assert hook["secret"].startswith("whsec_")
    assert Verifier(hook["secret"]).verify(body, headers)["data"]["video_id"] == "w1"
    assert {h["webhook-id"] for h, _ in receiver.got} == {f"flagged:{record.analysis_id}"}  # the same on retries
    with pytest.raises(WebhookVerificationError):
        Verifier(hook["secret"]).verify(body.replace("w1", "w9"), headers)
    receiver.server.shutdown()


def test_a_secret_from_before_standard_webhooks_still_verifies(local_app) -> None:
    """A webhook registered under the old scheme keeps its secret: its UTF-8 bytes are the key."""
    app, client, session, keys = local_app
    svc = app.state.services
    receiver = Receiver([])
    hook = client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["analyzed"]}, headers=auth(keys["product"])
    ).json()
    legacy = "Q3JhZnRlZC1iZWZvcmUtdGhlLXN3aXRjaA_-x"  # token_urlsafe-shaped: not base64 as such
    row = session.get(Webhook, hook["webhook_id"])
    assert row is not None
    row.secret = legacy
    session.add(row)
    fanout_message(session, svc.settings, "videos.analyzed", encode(make_record("w3")))
    session.commit()
    assert deliver_due(svc.engine, svc.settings) == 1
    headers, body = receiver.got[-1]
    assert Verifier(legacy.encode()).verify(body, headers)["data"]["video_id"] == "w3"
    with pytest.raises(WebhookVerificationError):
        Verifier(hook["secret"]).verify(body, headers)
    receiver.server.shutdown()


def test_gives_up_after_max_attempts_and_owner_only(local_app) -> None:
    app, client, session, keys = local_app
    svc = app.state.services
    receiver = Receiver([500] * MAX_ATTEMPTS)
    hook = client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["analyzed"]}, headers=auth(keys["product"])
    ).json()
    fanout_message(session, svc.settings, "videos.analyzed", encode(make_record("w2")))
    session.commit()
    when = utcnow()
    for i in range(MAX_ATTEMPTS):
        deliver_due(svc.engine, svc.settings, when)
        when += timedelta(seconds=RETRY.delay(i + 1) + 1)
    log = client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=auth(keys["product"])).json()
    assert [(d["status"], d["attempts"]) for d in log] == [("failed", MAX_ATTEMPTS)]
    _, other = create_key(session, ["product"], name="another-team")
    assert client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=auth(other)).status_code == 404
    assert client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=auth(other)).status_code == 404
    assert client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=auth(keys["product"])).status_code == 204
    receiver.server.shutdown()


def test_webhook_urls_follow_the_fetch_policy(client: TestClient, keys) -> None:
    h = auth(keys["product"])
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/", "file:///tmp/x"):
        resp = client.post("/v1/webhooks", json={"url": url, "events": ["analyzed"]}, headers=h)
        assert resp.status_code == 422 and resp.json()["type"] == "urn:keye:problem:unsafe-uri", url
