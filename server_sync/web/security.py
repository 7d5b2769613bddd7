"""Sessions, login checks and CSRF/Origin checks for the web app.

Every request gets a session (anonymous until login) carried in a signed cookie; the session's
CSRF token goes into every form. A state-changing request must carry that token and, when the
browser says where it comes from (Origin, else Referer), come from this site.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response

from server_sync.auth import Session
from server_sync.records import Role, User
from server_sync.web.context import WebContext, get_context

COOKIE = "biovita_session"

SECURITY_HEADERS = {
    # No inline script may run, even if some text escaped escaping: defence in depth.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class LoginRequired(Exception):
    """Raised by ``require_user``; pages redirect to the login form, the API answers 401."""


class SessionMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next) -> Response:
        ctx: WebContext = request.app.state.ctx
        session = ctx.signer.loads(request.cookies.get(COOKIE))
        fresh = session is None
        request.state.session = session or Session.anonymous()
        request.state.new_session = None
        response = await call_next(request)
        replacement = request.state.new_session
        if fresh or replacement is not None:
            issued = replacement or request.state.session
            response.set_cookie(
                COOKIE,
                ctx.signer.dumps(issued),
                max_age=max(60, int(issued.expires - time.time())),
                httponly=True,
                samesite="lax",
                secure=ctx.settings.secure_cookies,
                path="/",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response


def session_of(request: Request) -> Session:
    return request.state.session


def start_session(request: Request, session: Session) -> None:
    """Replace the session (login, logout); the middleware sets the new cookie."""
    request.state.session = session
    request.state.new_session = session


def require_user(request: Request, ctx: WebContext = Depends(get_context)) -> User:
    """The logged-in user, re-read from the store with the session: a logout, password reset,
    role change or removal ends it at once."""
    session = session_of(request)
    user = ctx.store.session_user(session.session_id) if session.session_id else None
    if user is None or user.username != session.username:
        raise LoginRequired()
    return user


def require_admin(user: User = Depends(require_user)) -> User:
    if user.role != Role.ADMIN:
        raise HTTPException(403, "this page is for admins")
    return user


def check_same_origin(request: Request) -> None:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        if request.headers.get("origin") == "null":
            raise HTTPException(403, "cross-site request refused")
        return  # no browser hint: the CSRF token alone decides
    # Host only, not scheme: behind a TLS-terminating proxy the app sees http while the browser
    # says https (the proxy must pass the Host header through, as nginx's proxy_set_header does).
    if urlsplit(source).netloc != request.url.netloc:
        raise HTTPException(403, "cross-site request refused")


def check_csrf(request: Request, token: str | None) -> None:
    check_same_origin(request)
    if not session_of(request).csrf_ok(token):
        raise HTTPException(403, "the form has expired or did not come from this site; reload it")
