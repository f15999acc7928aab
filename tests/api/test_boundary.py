"""The request boundary: NUL bytes refused with 422 on every route and both SQL stores, bodies
bounded while they stream (413 before they are read whole), filter strings bounded, and API keys
sent in the query string kept out of the access log."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import select
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import params
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app, route_table
from api.boundary import scanner_for
from api.keys import ROLES, create_key
from api.observability import redact
from tests.support.api import auth, live_server

PROBLEM = "application/problem+json"
PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _nul_probes(app) -> list[tuple[str, str, dict]]:
    """(method, url, request kwargs) putting a NUL in each route's path, query and parsed body."""
    probes = []
    for method, path, route in route_table(app):
        plain = PARAM.sub("1", path)
        if PARAM.search(path):
            probes.append((method, PARAM.sub("a%00b", path), {}))
        probes.append((method, plain + "?q=a%00b", {}))
        body = getattr(route, "body_field", None)
        if body is not None:
            form = isinstance(body.field_info, params.Form)
            probes.append((method, plain, {"data": {"key": "a\x00b"}} if form else {"json": {"note": "a\x00b"}}))
    return probes


def _all_roles(app) -> dict[str, str]:
    with Session(app.state.services.engine) as s:
        return auth(create_key(s, ROLES, name="every-role")[1])


def _refused(resp: httpx.Response) -> bool:
    """422 for the NUL: a problem body, or on the review page its error page."""
    if resp.status_code != 422 or "NUL" not in resp.text:
        return False
    if resp.url.path.startswith("/review") and resp.headers["content-type"].startswith("text/html"):
        return True
    return resp.headers["content-type"] == PROBLEM and resp.json()["type"] == "urn:keye:problem:invalid-request"


def test_every_route_refuses_nul_in_path_query_and_body(store_app) -> None:
    h = _all_roles(store_app)
    probes = _nul_probes(store_app)
    assert len(probes) > 60
    wrong = []
    with TestClient(store_app) as client:
        for method, url, kw in probes:
            resp = client.request(method, url, headers=h, **kw)
            if not _refused(resp):
                wrong.append(f"{method} {url} {kw}: {resp.status_code} {resp.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_nul_in_real_fields_is_refused_before_any_store(store_app, flagged_case, sample_clips: list[Path]) -> None:
    r = flagged_case("nul-1")
    h = _all_roles(store_app)
    case = f"/v1/moderation/cases/{r.analysis_id}"
    with TestClient(store_app) as client:
        assert client.post(case + "/claim", headers=h).status_code == 200
        requests = [
            ("POST", case + "/decision", {"json": {"decision": "clear", "note": "ok\x00"}}),
            ("GET", "/v1/moderation/queue", {"params": {"category": "hate\x00"}}),
            ("GET", "/v1/videos/nul-1%00", {}),
            ("POST", "/v1/search", {"json": {"vector": [0.1] * 8, "filters": {"tags": ["cat\x00"]}}}),
            ("POST", "/v1/videos", {"json": {"uri": sample_clips[0].resolve().as_uri(), "title": "t\x00"}}),
            ("POST", "/review/login", {"data": {"key": "keye_a\x00_b"}}),
        ]
        for method, url, kw in requests:
            resp = client.request(method, url, headers=h, **kw)
            assert _refused(resp), (url, resp.status_code, resp.text[:300])
        # The refused decision stored nothing: the claim still decides.
        assert client.post(case + "/decision", json={"decision": "clear", "note": "ok"}, headers=h).status_code == 200


def test_json_nul_scanner_matches_json_semantics_across_chunk_boundaries() -> None:
    rng = random.Random(13)
    pieces = ["a", "u0000", "\\\\", "\\u0000", "\\u0041", '\\"', "\\n", "é"]
    for _ in range(3000):
        text = '{"k": "' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + '"}'
        expected = "\x00" in json.loads(text)["k"]
        data = text.encode()
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 6))))
        scanner = scanner_for("application/json; charset=utf-8")
        found = any([scanner.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)])])
        assert found == expected, (text, cuts)


def test_form_and_upload_scanning() -> None:
    form = scanner_for("application/x-www-form-urlencoded")
    assert not form.feed(b"key=keye_a%0") and form.feed(b"0b")  # %00 split across chunks
    assert scanner_for("video/mp4") is None  # raw uploads stream untouched
    assert scanner_for("multipart/form-data; boundary=x").feed(b"--x\r\n\x00")


@pytest.fixture
def small_app(api_settings, text_embedder):
    application = create_app(
        api_settings.model_copy(update={"api_max_json_bytes": 64 << 10}),
        embedder=text_embedder,
        max_upload_bytes=2_000_000,
    )
    yield application
    application.state.services.engine.dispose()


def _post_streamed(app, path: str, chunks: int, content_length: int | None) -> tuple[int, bytes, int]:
    """POST `chunks` 16 KiB chunks straight into the ASGI app; (status, body, chunks it pulled)."""
    pulled, sent = 0, []
    chunk = b" " * (16 << 10)

    async def receive() -> dict:
        nonlocal pulled
        if pulled < chunks:
            pulled += 1
            return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}
        await asyncio.Event().wait()  # a client that stays connected

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"host", b"test")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled


def test_json_bodies_over_the_limit_are_refused_while_streaming(small_app) -> None:
    status, body, pulled = _post_streamed(small_app, "/v1/search", chunks=1000, content_length=None)
    assert status == 413 and json.loads(body)["type"] == "urn:keye:problem:payload-too-large"
    assert "KEYE_API_MAX_JSON_BYTES" in json.loads(body)["detail"]
    assert pulled <= 5  # 64 KiB in 16 KiB chunks, plus the one that crossed the limit; not 16 MB
    status, body, pulled = _post_streamed(small_app, "/v1/search", chunks=1000, content_length=1000 * (16 << 10))
    assert status == 413 and pulled == 0, body  # the declared length alone refuses it (Starlette's plain answer)


def test_chunked_body_over_the_limit_gets_413_from_uvicorn_before_it_is_sent(small_app) -> None:
    chunk = b" " * (16 << 10)
    with live_server(small_app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            sent = 0
            while sent < 1000 and not select.select([sock], [], [], 0.02)[0]:
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:  # the server answered and closed
                    break
                sent += 1
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 100, f"{sent} chunks went out before the answer"


def test_uploads_keep_their_own_limit_above_the_json_one(small_app, sample_clips: list[Path]) -> None:
    clip = next(p for p in sample_clips if 64 << 10 < p.stat().st_size < 2_000_000)
    with TestClient(small_app) as client:
        h = _all_roles(small_app)
        resp = client.put(
            "/v1/videos/big-upload/content", content=clip.read_bytes(), headers={**h, "Content-Type": "video/mp4"}
        )
        assert resp.status_code == 202, resp.text
        big = client.post("/v1/videos", content=b" " * (65 << 10), headers={**h, "Content-Type": "application/json"})
        assert big.status_code == 413


def test_filter_and_hashtag_strings_are_bounded(client: TestClient, keys) -> None:
    long = "x" * 201
    resp = client.post(
        "/v1/search", json={"vector": [0.1] * 8, "filters": {"tags": [long]}}, headers=auth(keys["recommender"])
    )
    assert resp.status_code == 422 and ["body", "filters", "tags", "0"] == resp.json()["errors"][0]["loc"]
    for field, value in (("creator_id", ["c" * 129]), ("language", ["l" * 36])):
        resp = client.post(
            "/v1/search", json={"vector": [0.1] * 8, "filters": {field: value}}, headers=auth(keys["recommender"])
        )
        assert resp.status_code == 422, field
    resp = client.post(
        "/v1/videos", json={"uri": "https://example.com/v.mp4", "hashtags": [long]}, headers=auth(keys["ingest"])
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"][:2] == ["body", "hashtags"]


def test_keys_in_the_query_string_are_redacted_from_the_access_log(app) -> None:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Capture()
    with live_server(app, log_level="info") as base:
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            resp = httpx.get(
                f"{base}/v1/moderation/queue",
                params={"api_key": "keye_abc_SECRET1", "state": "open", "next": "keye_def_SECRET2"},
            )
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    assert resp.status_code == 401  # a key in the query string is never read
    (line,) = [x for x in lines if "/v1/moderation/queue" in x]
    assert "SECRET" not in line and "api_key=REDACTED" in line and "state=open" in line, line


def test_redact_keeps_ordinary_parameters() -> None:
    assert redact("/v1/x?state=open&limit=5") == "/v1/x?state=open&limit=5"
    assert redact("/v1/x?X-API-Key=abc&t=1") == "/v1/x?X-API-Key=REDACTED&t=1"
    assert redact("/v1/x?q=keye%5Fabc%5Fdef") == "/v1/x?q=REDACTED"
