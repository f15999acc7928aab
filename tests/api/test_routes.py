"""Every route, every role: allowed with its roles, 401 without a key or with a bad one, 403 with a
key lacking the role. The table is read from the app, so a new route without a role check fails."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from api import review_session
from api.app import route_table
from api.auth import Roles
from tests.support.api import auth

# Deliberately public: probes, metrics, the login form and the generated docs.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/review/login"),
    ("POST", "/review/login"),
    ("POST", "/review/logout"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
PARAMS = {"video_id": "v-1", "analysis_id": "a-1", "t": "1.0", "key_id": "k-1", "webhook_id": "w-1"}


def _guards(route) -> list[Roles]:
    found, stack = [], [route.dependant]
    while stack:
        d = stack.pop()
        if isinstance(d.call, Roles):
            found.append(d.call)
        stack.extend(d.dependencies)
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PARAMS[m.group(1)], path)


def route_problems(app) -> list[str]:
    """What is wrong with the app's route table: unguarded, doubly guarded or undocumented routes."""
    problems = []
    for method, path, route in route_table(app):
        if (method, path) in PUBLIC:
            if isinstance(route, APIRoute) and _guards(route):
                problems.append(f"{method} {path} should be public")
            continue
        if not isinstance(route, APIRoute):
            problems.append(f"{method} {path} is not an API route")
            continue
        guards = _guards(route)
        if len(guards) != 1:
            problems.append(f"{method} {path} has {len(guards)} role checks; it needs exactly one")
            continue
        roles = ", ".join(sorted(guards[0].roles))
        if f"Roles: {roles}" not in (route.description or ""):
            problems.append(f"{method} {path}: document 'Roles: {roles}'")
        if not {401, 403} <= {int(s) for s in route.responses}:
            problems.append(f"{method} {path}: document 401 and 403")
    return problems


def test_every_route_is_guarded_or_deliberately_public(app) -> None:
    assert len(route_table(app)) > 30
    assert route_problems(app) == []
    # The check itself catches a new route that forgot its guard.
    app.get("/v1/forgotten")(lambda: {"ok": True})
    assert route_problems(app) == ["GET /v1/forgotten has 0 role checks; it needs exactly one"]


def test_each_route_with_each_role(app, client: TestClient, keys) -> None:
    checked = 0
    same_origin = {"Origin": "http://testserver"}
    for method, path, route in route_table(app):
        if (method, path) in PUBLIC:
            continue
        guard = _guards(route)[0]
        url = _url(path)
        if guard.page:
            # Pages: no session redirects to the login form; a session of a key without the role: 403.
            resp = client.request(method, url, headers=same_origin, follow_redirects=False)
            assert resp.status_code == 303 and resp.headers["location"].startswith("/review/login"), f"{method} {url}"
            for role, key in keys.items():
                with Session(app.state.services.engine) as s:
                    token, row = review_session.start(s, key.split("_")[1])
                client.cookies.set(review_session.COOKIE, token, path="/review")
                resp = client.request(
                    method,
                    url,
                    follow_redirects=False,
                    headers={**same_origin, review_session.CSRF_HEADER: row.csrf_token},
                )
                client.cookies.clear()
                expect_ok = role in guard.roles
                assert (
                    (resp.status_code != 403 and resp.status_code != 401) if expect_ok else resp.status_code == 403
                ), f"{method} {url} as {role}: {resp.status_code} {resp.text[:200]}"
            client.cookies.set(review_session.COOKIE, "forged.value", path="/review")
            assert client.request(method, url, headers=same_origin, follow_redirects=False).status_code == 303
            client.cookies.clear()
        else:
            none = client.request(method, url)
            assert none.status_code == 401, f"{method} {url} without a key: {none.status_code}"
            assert none.headers["content-type"] == "application/problem+json"
            assert none.json()["type"] == "urn:keye:problem:unauthorized"
            bad = client.request(method, url, headers=auth("keye_deadbeef_nottherealsecret"))
            assert bad.status_code == 401, f"{method} {url} with a bad key: {bad.status_code}"
            for role, key in keys.items():
                resp = client.request(method, url, headers=auth(key))
                if role in guard.roles:
                    assert resp.status_code not in (401, 403), (
                        f"{method} {url} as {role}: {resp.status_code} {resp.text[:200]}"
                    )
                else:
                    assert resp.status_code == 403, f"{method} {url} as {role}: {resp.status_code}"
                    assert resp.json()["type"] == "urn:keye:problem:forbidden"
        checked += 1
    assert checked >= 25


def test_revoked_key_is_refused_and_x_api_key_header_works(client: TestClient, keys) -> None:
    admin = auth(keys["admin"])
    created = client.post("/v1/admin/keys", json={"name": "rec", "roles": ["recommender"]}, headers=admin)
    assert created.status_code == 201
    key = created.json()["key"]
    assert (
        client.post("/v1/search/batch", json={"queries": [{"vector": [1.0]}]}, headers={"X-API-Key": key}).status_code
        == 200
    )
    listed = client.get("/v1/admin/keys", headers=admin).json()
    assert {k["name"] for k in listed} >= {"rec", "admin-1"} and all("key" not in k for k in listed)
    assert client.delete(f"/v1/admin/keys/{created.json()['key_id']}", headers=admin).json()["revoked_at"]
    gone = client.post("/v1/search/batch", json={"queries": [{"vector": [1.0]}]}, headers={"X-API-Key": key})
    assert gone.status_code == 401


@pytest.mark.parametrize("roles", [[], ["root"]])
def test_key_roles_are_validated(client: TestClient, keys, roles) -> None:
    resp = client.post("/v1/admin/keys", json={"name": "x", "roles": roles}, headers=auth(keys["admin"]))
    assert resp.status_code == 422 and resp.headers["content-type"] == "application/problem+json"


def test_problem_details_request_ids_and_metrics(client: TestClient, keys) -> None:
    resp = client.get("/v1/videos/nope", headers={**auth(keys["product"]), "X-Request-ID": "trace-123"})
    assert resp.status_code == 404 and resp.headers["X-Request-ID"] == "trace-123"
    body = resp.json()
    assert body == {
        "type": "urn:keye:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no video 'nope'",
        "instance": "/v1/videos/nope",
        "request_id": "trace-123",
    }
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    invalid = client.get("/v1/moderation/queue", params={"limit": 0}, headers=auth(keys["moderator"]))
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["loc"] == ["query", "limit"]
    metrics = client.get("/metrics").text
    assert 'keye_api_requests_total{method="GET",route="/v1/videos/{video_id}",status="404"} 1.0' in metrics
    assert client.get("/readyz").json() == {"status": "ok", "checks": {"sql": "ok", "vectors": "ok"}}


def test_openapi_documents_roles_errors_and_security(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/moderation/cases/{analysis_id}/decision"]["post"]
    assert "Roles: moderator" in op["description"]
    for status in ("401", "403", "409", "422"):
        assert "application/problem+json" in op["responses"][status]["content"]
    assert op["security"] and {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


HOLD_SHARD = """import sys, time
import numpy as np
from stores.vectors import VectorStore
store = VectorStore(path=sys.argv[1])
store.upsert_points(["00000000-0000-0000-0000-000000000001"], np.ones((1, 8), dtype=np.float32), [{"video_id": "a"}])
print("held", flush=True)
time.sleep(600)
"""


def test_readyz_reports_a_store_it_cannot_open(api_settings, tmp_path) -> None:
    import subprocess
    import sys

    from api.app import create_app

    settings = api_settings.model_copy(update={"data_dir": tmp_path / "ready", "qdrant_path": tmp_path / "locked"})
    # an embedded shard is locked by the one process holding it: a child writes a point and keeps it open
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SHARD, str(tmp_path / "locked")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    app = create_app(settings)
    try:
        with TestClient(app) as c:
            resp = c.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["checks"]["sql"] == "ok" and resp.json()["checks"]["vectors"].startswith("down")
    finally:
        holder.kill()
        holder.wait()
        app.state.services.engine.dispose()
