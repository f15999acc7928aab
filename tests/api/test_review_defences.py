"""The review page's defences, over HTTP: CSRF token and Origin check on every state change, security
headers, server-side sign-out, friendly pages for errors, the Secure cookie behind a trusted TLS
proxy, and the player's range requests."""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api import review_session
from api.tables import ReviewSession
from stores.db import Review

ORIGIN = {"Origin": "http://testserver"}


def sign_in(client: TestClient, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token, read from the page."""
    resp = client.post("/review/login", data={"key": key, "next": "/review"}, headers=ORIGIN, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    page = client.get("/review")
    assert page.status_code == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


def test_state_changes_need_the_sessions_csrf_token(client: TestClient, keys, seed) -> None:
    case = seed("csrf-clip", severity=2, categories=("violence",))
    token = sign_in(client, keys["moderator"])
    claim = f"/review/cases/{case.analysis_id}/claim"
    for sent in ({}, {review_session.CSRF_FIELD: "wrong"}, {review_session.CSRF_FIELD: ""}):
        resp = client.post(claim, data=sent, headers=ORIGIN, follow_redirects=False)
        assert resp.status_code == 403 and resp.headers["content-type"].startswith("text/html"), resp.text
        assert "CSRF" in resp.text
    wrong_header = client.post(
        claim, headers={**ORIGIN, review_session.CSRF_HEADER: token[:-1]}, follow_redirects=False
    )
    assert wrong_header.status_code == 403
    # Another session's token is wrong for this one.
    with TestClient(client.app) as other:
        assert token != sign_in(other, keys["moderator"])
    # The form field (forms) and the header (fetch calls) both work.
    assert (
        client.post(claim, data={review_session.CSRF_FIELD: token}, headers=ORIGIN, follow_redirects=False).headers[
            "location"
        ]
        == f"/review/cases/{case.analysis_id}"
    )
    decided = client.post(
        f"/review/cases/{case.analysis_id}/decision",
        data={"decision": "clear", "note": "ok"},
        headers={**ORIGIN, review_session.CSRF_HEADER: token},
        follow_redirects=False,
    )
    assert decided.status_code == 303 and decided.headers["location"].startswith("/review?done=")


def test_a_foreign_origin_is_refused_even_with_the_token(client: TestClient, keys, seed, session: Session) -> None:
    case = seed("origin-clip", severity=2, categories=("violence",))
    token = sign_in(client, keys["moderator"])
    claim = f"/review/cases/{case.analysis_id}/claim"
    form = {review_session.CSRF_FIELD: token}
    # Another port of the same host is the same site (the cookie goes along) but not the same origin.
    for headers in (
        {"Origin": "http://testserver:8001"},
        {"Origin": "https://testserver"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/review"},
        {},
    ):
        resp = client.post(claim, data=form, headers=headers, follow_redirects=False)
        assert resp.status_code == 403 and "must come from the page itself" in resp.text, headers
    assert session.exec(select(Review)).all() == []
    login = client.post(
        "/review/login",
        data={"key": keys["moderator"]},
        headers={"Origin": "http://testserver:8001"},
        follow_redirects=False,
    )
    assert login.status_code == 403 and "set-cookie" not in login.headers
    # A browser that sends no Origin still sends the page as Referer.
    ok = client.post(
        claim,
        data=form,
        headers={"Referer": f"http://testserver/review/cases/{case.analysis_id}"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and "msg=" not in ok.headers["location"]


def test_review_responses_carry_the_security_headers(client: TestClient, keys, seed) -> None:
    case = seed("headers-clip", severity=1, categories=("violence",), duration_s=3.0)
    sign_in(client, keys["moderator"])
    pages = [
        client.get("/review/login"),
        client.get("/review"),
        client.get(f"/review/cases/{case.analysis_id}"),
        client.get("/review?state=bogus"),
        client.get(f"/review/cases/{case.analysis_id}/thumbnails/0.5"),
    ]
    nonces = set()
    for resp in pages:
        h = resp.headers
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin" and h["cache-control"] == "no-store"
        csp = dict(part.strip().split(" ", 1) for part in h["content-security-policy"].split(";"))
        assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'"
        assert csp["form-action"] == "'self'" and "'unsafe-inline'" not in h["content-security-policy"]
        if h["content-type"].startswith("text/html"):
            nonce = re.fullmatch(r"'nonce-([\w-]+)'", csp["script-src"]).group(1)
            assert f'<script nonce="{nonce}">' in resp.text and f'<style nonce="{nonce}">' in resp.text
            assert " style=" not in resp.text  # the CSP forbids inline style attributes
            nonces.add(nonce)
    assert len(nonces) == 4  # a fresh nonce per response
    assert "content-security-policy" not in client.get("/healthz").headers  # only the pages


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(client: TestClient, keys, session: Session) -> None:
    token = sign_in(client, keys["moderator"])
    copied = client.cookies.get(review_session.COOKIE)
    (row,) = session.exec(select(ReviewSession)).all()
    assert row.token_sha256 != copied and copied not in row.token_sha256  # only the digest is stored
    out = client.post("/review/logout", data={review_session.CSRF_FIELD: token}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/review/login"
    session.expire_all()
    assert session.exec(select(ReviewSession)).all() == []
    with TestClient(client.app, cookies={review_session.COOKIE: copied}) as thief:
        resp = thief.get("/review", follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/review/login")


def test_sign_out_needs_the_token_of_a_live_session(client: TestClient, keys) -> None:
    sign_in(client, keys["moderator"])
    forced = client.post("/review/logout", headers=ORIGIN, follow_redirects=False)
    assert forced.status_code == 403
    assert client.get("/review", follow_redirects=False).status_code == 200  # still signed in


def test_revoked_keys_and_expired_sessions_end_at_the_login_form(client: TestClient, keys, session: Session) -> None:
    from api.keys import revoke

    sign_in(client, keys["moderator"])
    revoke(session, keys["moderator"].split("_")[1])
    resp = client.get("/review", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/review/login?next=%2Freview&expired=1"

    with TestClient(client.app) as other:
        sign_in(other, create_moderator(session))
        (row,) = [r for r in session.exec(select(ReviewSession)) if r.key_id != keys["moderator"].split("_")[1]]
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)  # past its 12 hours
        session.add(row)
        session.commit()
        assert other.get("/review", follow_redirects=False).status_code == 303
        sign_in(other, create_moderator(session))  # a new sign-in purges expired rows
        session.expire_all()
        assert all(_aware(r.expires_at) > datetime.now(UTC) for r in session.exec(select(ReviewSession)))


def create_moderator(session: Session) -> str:
    from api.keys import create_key

    return create_key(session, ["moderator"], name="moderator-2")[1]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def test_a_form_sent_with_an_ended_session_returns_to_its_case_after_sign_in(client: TestClient, keys, seed) -> None:
    case = seed("expired-clip", severity=2, categories=("violence",))
    client.cookies.set(review_session.COOKIE, "an-ended-session", path="/review")
    resp = client.post(
        f"/review/cases/{case.analysis_id}/decision",
        data={"decision": "clear", "note": "typed"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    back = f"/review/login?next=%2Freview%2Fcases%2F{case.analysis_id}&expired=1"
    assert resp.status_code == 303 and resp.headers["location"] == back  # never a JSON 401
    page = client.get(back)
    assert "Your session has ended" in page.text and f'value="/review/cases/{case.analysis_id}"' in page.text


@pytest.mark.parametrize(
    "query, says",
    [
        ("state=bogus", "state: Input should be"),
        ("max_age_h=-1", "max_age_h: Input should be greater"),
        ("category=nonsense", "there is no category &#39;nonsense&#39;"),
    ],
)
def test_an_invalid_filter_answers_a_page(client: TestClient, keys, query: str, says: str) -> None:
    sign_in(client, keys["moderator"])
    resp = client.get(f"/review?{query}")
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("text/html")
    assert says in resp.text and 'href="/review" id="back"' in resp.text


def test_other_errors_on_pages_are_pages_and_the_json_api_keeps_problems(client: TestClient, keys) -> None:
    sign_in(client, keys["moderator"])
    missing = client.get("/review/cases/no-such-case")
    assert missing.status_code == 404 and "no analysis" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert client.get("/review/nowhere").headers["content-type"].startswith("text/html")
    api = client.get("/v1/moderation/queue?state=bogus", headers={"Authorization": f"Bearer {keys['moderator']}"})
    assert api.status_code == 422 and api.headers["content-type"] == "application/problem+json"


def test_the_player_streams_the_video_with_ranges_only_to_moderators(
    client: TestClient, keys, seed, sample_clips
) -> None:
    case = seed("player-clip", severity=2, categories=("violence",))
    url = f"/review/cases/{case.analysis_id}/video"
    assert client.get(url, follow_redirects=False).status_code == 303
    sign_in(client, keys["moderator"])
    size = sample_clips[0].stat().st_size
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == sample_clips[0].read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}" and part.headers["content-type"] == "video/mp4"
    assert client.get(url).headers["accept-ranges"] == "bytes"
    with Session(client.app.state.services.engine) as s:
        token, _ = review_session.start(s, keys["product"].split("_")[1])  # a session of a key without the role
    with TestClient(client.app, cookies={review_session.COOKIE: token}) as product:
        assert product.get(url).status_code == 403


def _serve(app, settings, port: int) -> uvicorn.Server:
    from api.app import server_config

    server = uvicorn.Server(server_config(app, settings, "127.0.0.1", port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("trusted", [True, False])
def test_the_cookie_is_secure_behind_a_trusted_tls_proxy_only(app, api_settings, keys, trusted: bool) -> None:
    settings = api_settings if trusted else api_settings.model_copy(update={"api_forwarded_allow_ips": "10.9.9.9"})
    assert api_settings.api_forwarded_allow_ips == "127.0.0.1,::1"  # the default trusts loopback only
    port = _free_port()
    server = _serve(app, settings, port)
    try:
        # The proxy terminated TLS: the browser's origin is https.
        origin = f"{'https' if trusted else 'http'}://127.0.0.1:{port}"
        resp = httpx.post(
            f"http://127.0.0.1:{port}/review/login",
            data={"key": keys["moderator"]},
            headers={"X-Forwarded-Proto": "https", "Origin": origin},
        )
        assert resp.status_code == 303, resp.text
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{review_session.COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ("Secure" in cookie) is trusted
    finally:
        server.should_exit = True


def test_a_remote_video_is_fetched_once_for_the_player(api_settings, sample_clips, tmp_path) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from api.app import create_app
    from api.keys import create_key
    from service.schemas import Submission
    from stores.db import write_analysis
    from tests.support.api import make_record

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(sample_clips[0].parent))
    source = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=source.serve_forever, daemon=True).start()
    settings = api_settings.model_copy(update={"allow_private_addresses": True, "data_dir": tmp_path / "remote"})
    app = create_app(settings)
    try:
        with Session(app.state.services.engine) as s:
            key = create_key(s, ["moderator"], name="moderator-r")[1]
            r = make_record("remote-clip", severity=2, categories=("violence",))
            uri = f"http://127.0.0.1:{source.server_port}/{sample_clips[0].name}"
            write_analysis(s, r, Submission(video_id=r.video_id, uri=uri, submitted_at=r.created_at))
            s.commit()
        with TestClient(app) as client:
            sign_in(client, key)
            url = f"/review/cases/{r.analysis_id}/video"
            assert client.get(url, headers={"Range": "bytes=0-9"}).content == sample_clips[0].read_bytes()[:10]
            source.shutdown()  # the source goes away: the player keeps its copy
            whole = client.get(url)
            assert whole.status_code == 200 and whole.content == sample_clips[0].read_bytes()
    finally:
        source.server_close()
        app.state.services.engine.dispose()


def test_a_session_lives_and_ends_on_each_sql_store(store_app, flagged_case) -> None:
    from api.keys import create_key

    case = flagged_case("store-clip")
    with Session(store_app.state.services.engine) as s:
        key = create_key(s, ["moderator"], name="moderator-s")[1]
    with TestClient(store_app) as client:
        token = sign_in(client, key)
        copied = client.cookies.get(review_session.COOKIE)
        claimed = client.post(
            f"/review/cases/{case.analysis_id}/claim",
            data={review_session.CSRF_FIELD: token},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert claimed.headers["location"] == f"/review/cases/{case.analysis_id}"
        client.post("/review/logout", data={review_session.CSRF_FIELD: token}, headers=ORIGIN)
    with TestClient(store_app, cookies={review_session.COOKIE: copied}) as thief:
        assert thief.get("/review", follow_redirects=False).headers["location"].startswith("/review/login")
