"""The moderators' review page: server-rendered HTML over the same case logic as the JSON API.

Sign-in exchanges a moderator key for a signed, HttpOnly, SameSite=Strict cookie (which also keeps
other sites from posting decisions in the moderator's name). Pages without a session redirect to
the login form.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from api import cases, keys
from api.auth import COOKIE, COOKIE_TTL_S, LoginRequired, Principal, Roles, sign_session
from api.deps import Services, db, services
from api.problems import Problem, problem_response
from keye.schemas import MODERATION_CATEGORIES

PAGE = Roles("moderator", page=True)
templates = Jinja2Templates(directory=str(FsPath(__file__).resolve().parents[1] / "templates"))
router = APIRouter(prefix="/review", tags=["review page"])
CaseId = Path(min_length=1, max_length=36)
HTML = {200: {"content": {"text/html": {}}, "description": "an HTML page"}}
SEE_OTHER = {303: {"description": "redirect to the next page"}}


def _safe_next(value: str | None) -> str:
    # Only same-site paths: never an open redirect.
    return value if value and value.startswith("/review") and not value.startswith("//") else "/review"


@router.get("/login", response_class=HTMLResponse, responses=HTML, summary="Sign-in form", description="Public.")
def login_form(request: Request, next: str = Query("/review", max_length=500)) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "principal": None})


@router.post("/login", response_class=HTMLResponse, responses={**HTML, **SEE_OTHER, 401: HTML[200]},
             summary="Exchange a moderator key for a session cookie", description="Public.")
def login(request: Request, key: str = Form(max_length=200), next: str = Form("/review", max_length=500),
          session: Session = Depends(db), svc: Services = Depends(services)) -> Response:
    row = keys.verify(session, key.strip())
    if row is None or "moderator" not in row.roles:
        why = "That key is unknown, revoked or not a moderator key."
        return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "principal": None,
                                                                  "flash": why, "flash_error": True}, status_code=401)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(COOKIE, sign_session(svc.secret, row.key_id), max_age=COOKIE_TTL_S, httponly=True,
                    samesite="strict", secure=request.url.scheme == "https", path="/review")
    return resp


@router.post("/logout", status_code=303, response_class=RedirectResponse, responses=SEE_OTHER, summary="End the session", description="Public.")
def logout() -> Response:
    resp = RedirectResponse("/review/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/review")
    return resp


@router.get("", response_class=HTMLResponse, responses={**HTML, **SEE_OTHER},
            summary="The review queue page", description=None)
def queue_page(request: Request, category: str | None = Query(None, max_length=64),
               state: cases.QueueState = "open", max_age_h: float | None = Query(None, ge=0, le=1e6),
               done: str | None = Query(None, max_length=200), session: Session = Depends(db),
               who: Principal = Depends(PAGE)) -> HTMLResponse:
    q = cases.queue(session, state=state, category=category or None,
                    max_age_s=max_age_h * 3600 if max_age_h else None, limit=200)
    return templates.TemplateResponse(request, "queue.html", {
        "principal": who, "queue": q, "categories": MODERATION_CATEGORIES, "category": category, "state": state,
        "max_age_h": max_age_h, "flash": done})


@router.get("/cases/{analysis_id}", response_class=HTMLResponse, responses={**HTML, **SEE_OTHER},
            summary="A case page", description=None)
def case_page(request: Request, analysis_id: str = CaseId, msg: str | None = Query(None, max_length=300),
              session: Session = Depends(db), who: Principal = Depends(PAGE)) -> HTMLResponse:
    case = cases.get_case(session, analysis_id, "/review/cases/{analysis_id}/thumbnails/{t}")
    mine = case.claim is not None and case.claim.key_id == who.key_id
    return templates.TemplateResponse(request, "case.html", {"principal": who, "case": case, "mine": mine,
                                                             "flash": msg, "flash_error": bool(msg)})


@router.post("/cases/{analysis_id}/claim", status_code=303, response_class=RedirectResponse, responses=SEE_OTHER,
             summary="Claim from the page", description=None)
def claim_from_page(analysis_id: str = CaseId, session: Session = Depends(db), svc: Services = Depends(services),
                    who: Principal = Depends(PAGE)) -> Response:
    target = f"/review/cases/{quote(analysis_id)}"
    try:
        cases.claim(session, analysis_id, who, svc.claim_ttl_s)
    except Problem as e:
        return RedirectResponse(f"{target}?msg={quote(e.detail)}", status_code=303)
    return RedirectResponse(target, status_code=303)


@router.post("/cases/{analysis_id}/decision", status_code=303, response_class=RedirectResponse,
             responses=SEE_OTHER,
             summary="Decide from the page", description=None)
def decide_from_page(analysis_id: str = CaseId, decision: cases.Decision = Form(),
                     note: str | None = Form(None, max_length=4000), session: Session = Depends(db),
                     svc: Services = Depends(services), who: Principal = Depends(PAGE)) -> Response:
    try:
        out = cases.decide(svc, session, analysis_id, cases.DecisionIn(decision=decision, note=note or None), who)
    except Problem as e:
        return RedirectResponse(f"/review/cases/{quote(analysis_id)}?msg={quote(e.detail)}", status_code=303)
    svc.published()
    done = f"{out.decision} recorded for {out.video_id}; status is now {out.moderation_status}"
    return RedirectResponse(f"/review?done={quote(done)}", status_code=303)


@router.get("/cases/{analysis_id}/thumbnails/{t}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG frame"}, **SEE_OTHER},
            summary="A frame for the case page", description=None)
def page_thumbnail(analysis_id: str = CaseId, t: float = Path(ge=0, le=86400), session: Session = Depends(db),
                   svc: Services = Depends(services), _: Principal = Depends(PAGE)) -> Response:
    return Response(cases.thumbnail(svc, session, analysis_id, t), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


def install(app) -> None:  # noqa: ANN001
    """Pages answer a missing session with the login form instead of a problem body."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/review") and request.method == "GET":
            return RedirectResponse(f"/review/login?next={quote(request.url.path)}", status_code=303)
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail)
