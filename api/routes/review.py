"""The moderators' review page: server-rendered HTML over the same case logic as the JSON API.

Sign-in exchanges a moderator key for a server-side session (api.review_session). Every
state-changing request must come from the page's own origin and carry the session's CSRF token;
every response carries the headers of api.review_security. Pages without a session redirect to
the login form (a form sent with an expired session too, back to its case once signed in), and
errors answer a page, never a JSON body.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Awaitable, Callable
from pathlib import Path as FsPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import HTTPExceptionHandler

from api import case_context, case_media, cases, keys, review_session
from api.auth import Principal
from api.deps import Services, db, services
from api.problems import Invalid, Problem
from api.review_security import PageHeaders, csp_nonce, is_review_path, same_origin
from api.review_session import COOKIE, LoginRequired, Page
from service.schemas import MODERATION_CATEGORIES

PAGE = Page("moderator")
templates = Jinja2Templates(directory=str(FsPath(__file__).resolve().parents[1] / "templates"))
HTML: dict[str, Any] = {"content": {"text/html": {}}, "description": "an HTML page"}
# Errors on these routes are pages too: documented so, overriding the problem bodies auth.document adds.
router = APIRouter(
    prefix="/review",
    tags=["review page"],
    dependencies=[Depends(same_origin)],
    responses={s: HTML for s in (401, 403, 404, 409, 422, 503)},
)
CaseId = Path(min_length=1, max_length=36)
SEE_OTHER: dict[int | str, dict[str, Any]] = {303: {"description": "redirect to the next page"}}
_CASE_PATH = re.compile(r"^/review/cases/([^/]+)")


def _safe_next(value: str | None) -> str:
    # Only same-site paths: never an open redirect.
    return value if value and value.startswith("/review") and not value.startswith("//") else "/review"


def _page(request: Request, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
    row = getattr(request.state, "review_session", None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": getattr(request.state, "principal", None),
            "csrf": row.csrf_token if row else "",
            "nonce": csp_nonce(request),
            "csrf_field": review_session.CSRF_FIELD,
            **context,
        },
        status_code=status_code,
    )


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/login", response_class=HTMLResponse, responses={200: HTML}, summary="Sign-in form", description="Public.")
def login_form(
    request: Request, next: str = Query("/review", max_length=500), expired: bool = Query(False)
) -> HTMLResponse:
    flash = "Your session has ended: sign in again to carry on (a note you were typing is kept)." if expired else None
    return _page(request, "login.html", next=_safe_next(next), flash=flash)


@router.post(
    "/login",
    response_class=HTMLResponse,
    responses={200: HTML, **SEE_OTHER},
    summary="Exchange a moderator key for a session cookie",
    description="Public.",
)
def login(
    request: Request,
    key: str = Form(max_length=200),
    next: str = Form("/review", max_length=500),
    session: Session = Depends(db),
) -> Response:
    row = keys.verify(session, key.strip())
    if row is None or "moderator" not in row.roles:
        return _page(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            flash_error=True,
            flash="That key is unknown, revoked or not a moderator key.",
        )
    token, _ = review_session.start(session, row.key_id)
    resp = _see(_safe_next(next))
    review_session.set_cookie(resp, request, token)
    return resp


@router.post(
    "/logout",
    status_code=303,
    response_class=RedirectResponse,
    responses=SEE_OTHER,
    summary="End the session (server-side: the cookie stops working everywhere)",
    description="Public.",
)
def logout(
    request: Request, session: Session = Depends(db), sent: str | None = Depends(review_session.sent_csrf)
) -> Response:
    token = request.cookies.get(COOKIE)
    row = review_session.find(session, token)
    if row is not None and token is not None:  # a row is found only for a token
        review_session.check_csrf(row, sent)
        review_session.end(session, token)
    resp = _see("/review/login")
    review_session.clear_cookie(resp)
    return resp


@router.get(
    "",
    response_class=HTMLResponse,
    responses={200: HTML, **SEE_OTHER},
    summary="The review queue page",
    description=None,
)
def queue_page(
    request: Request,
    category: str | None = Query(None, max_length=64),
    state: cases.QueueState = "open",
    max_age_h: float | None = Query(None, ge=0, le=1e6),
    done: str | None = Query(None, max_length=200),
    decided: str | None = Query(None, max_length=36),
    session: Session = Depends(db),
    _: Principal = Depends(PAGE),
) -> HTMLResponse:
    if category and category not in MODERATION_CATEGORIES:
        raise Invalid(f"there is no category {category!r}; choose one of {', '.join(MODERATION_CATEGORIES)}")
    q = cases.queue(
        session, state=state, category=category or None, max_age_s=max_age_h * 3600 if max_age_h else None, limit=200
    )
    return _page(
        request,
        "queue.html",
        queue=q,
        context=case_context.queue_context(session, q),
        categories=MODERATION_CATEGORIES,
        category=category,
        state=state,
        max_age_h=max_age_h,
        flash=done,
        decided=decided,
    )


@router.get(
    "/cases/{analysis_id}",
    response_class=HTMLResponse,
    responses={200: HTML, **SEE_OTHER},
    summary="A case page",
    description=None,
)
def case_page(
    request: Request,
    analysis_id: str = CaseId,
    msg: str | None = Query(None, max_length=300),
    session: Session = Depends(db),
    who: Principal = Depends(PAGE),
) -> HTMLResponse:
    case = cases.get_case(session, analysis_id, "/review/cases/{analysis_id}/thumbnails/{t}")
    mine = case.claim is not None and case.claim.key_id == who.key_id
    return _page(request, "case.html", case=case, mine=mine, flash=msg, flash_error=bool(msg))


@router.post(
    "/cases/{analysis_id}/claim",
    status_code=303,
    response_class=RedirectResponse,
    responses=SEE_OTHER,
    summary="Claim from the page",
    description=None,
)
def claim_from_page(
    analysis_id: str = CaseId,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(PAGE),
) -> Response:
    target = f"/review/cases/{quote(analysis_id)}"
    try:
        cases.claim(session, analysis_id, who, svc.claim_ttl_s)
    except Problem as e:
        return _see(f"{target}?msg={quote(e.detail)}")
    return _see(target)


@router.post(
    "/cases/{analysis_id}/release",
    status_code=303,
    response_class=RedirectResponse,
    responses=SEE_OTHER,
    summary="Release one's claim from the page",
    description=None,
)
def release_from_page(
    analysis_id: str = CaseId, session: Session = Depends(db), who: Principal = Depends(PAGE)
) -> Response:
    try:
        cases.release(session, analysis_id, who)
    except Problem as e:
        return _see(f"/review/cases/{quote(analysis_id)}?msg={quote(e.detail)}")
    return _see(f"/review?done={quote(f'released the claim on case {analysis_id}')}")


@router.post(
    "/cases/{analysis_id}/decision",
    status_code=303,
    response_class=RedirectResponse,
    responses=SEE_OTHER,
    summary="Decide from the page",
    description=None,
)
def decide_from_page(
    analysis_id: str = CaseId,
    decision: cases.Decision = Form(),
    note: str | None = Form(None, max_length=4000),
    session: Session = Depends(db),
    svc: Services = Depends(services),
    who: Principal = Depends(PAGE),
) -> Response:
    try:
        out = cases.decide(svc, session, analysis_id, cases.DecisionIn(decision=decision, note=note or None), who)
    except Problem as e:
        return _see(f"/review/cases/{quote(analysis_id)}?msg={quote(e.detail)}")
    svc.published()
    done = f"{out.decision} recorded for {out.video_id}; status is now {out.moderation_status}"
    return _see(f"/review?done={quote(done)}&decided={quote(analysis_id)}")


@router.get(
    "/cases/{analysis_id}/thumbnails/{t}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG frame"}, **SEE_OTHER},
    summary="A frame for the case page",
    description=None,
)
def page_thumbnail(
    analysis_id: str = CaseId,
    t: float = Path(ge=0, le=86400),
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(PAGE),
) -> Response:
    return Response(cases.thumbnail(svc, session, analysis_id, t), media_type="image/jpeg")


@router.get(
    "/cases/{analysis_id}/video",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/*": {}}, "description": "the stored video"},
        206: {"content": {"video/*": {}}, "description": "the requested byte range"},
        **SEE_OTHER,
    },
    summary="The case's video for the player (HTTP ranges)",
    description=None,
)
def page_video(
    analysis_id: str = CaseId,
    session: Session = Depends(db),
    svc: Services = Depends(services),
    _: Principal = Depends(PAGE),
) -> FileResponse:
    path = case_media.video_file(svc, session, analysis_id)
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def _login_again(request: Request) -> RedirectResponse:
    """Back to this page after signing in; a form sent from a case page returns to that case."""
    case = _CASE_PATH.match(request.url.path)
    if request.method == "GET":
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        back = f"/review/cases/{case.group(1)}" if case else "/review"
    expired = "&expired=1" if request.cookies.get(COOKIE) else ""
    return _see(f"/review/login?next={quote(_safe_next(back), safe='')}{expired}")


def _error_page(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, Problem):
        status, title, detail = exc.status, exc.title, exc.detail
    elif isinstance(exc, RequestValidationError):
        status, title = 422, "That request is not valid"
        detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()[:3])
    else:
        assert isinstance(exc, StarletteHTTPException), "install() routes only these three kinds here"
        status, detail = exc.status_code, str(exc.detail)
        title = "Not found" if status == 404 else "Not possible"
    return _page(
        request,
        "error.html",
        status_code=status,
        title=title,
        detail=detail,
        request_id=getattr(request.state, "request_id", None),
    )


def install(app: FastAPI) -> None:
    """The security headers, and pages instead of problem bodies under /review (the JSON handlers
    installed by api.problems keep every other path)."""
    app.add_middleware(PageHeaders)
    for kind in (Problem, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, _pages_or(app.exception_handlers[kind]))


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _pages_or(fallback: HTTPExceptionHandler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if not is_review_path(request.url.path):
            answer = fallback(request, exc)  # api.problems' handlers are async; Starlette allows plain ones
            return await answer if isinstance(answer, Awaitable) else answer
        if isinstance(exc, LoginRequired):
            return _login_again(request)
        return _error_page(request, exc)

    return handle
