"""The review app's composition root: ``create_app`` wires the store, clips, species and keys."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from server_sync.auth import SessionSigner
from server_sync.clips import ClipStore
from server_sync.config import WebSettings
from server_sync.species import SpeciesCatalogue
from server_sync.store import Store
from server_sync.web import api, pages
from server_sync.web.context import WebContext
from server_sync.web.security import LoginRequired, SessionMiddleware


def uvicorn_options(settings: WebSettings) -> dict:
    """How uvicorn serves the app. X-Forwarded-For is believed only from the configured proxies:
    uvicorn's own default trusts 127.0.0.1, so anything on the host could pose as any address
    and rotate past the login throttle."""
    trusted = settings.trusted_proxies
    return {
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }


def create_app(
    store: Store,
    clips: ClipStore,
    catalogue: SpeciesCatalogue,
    secret: bytes,
    settings: WebSettings | None = None,
    cache_dir: Path | None = None,
) -> FastAPI:
    app = FastAPI(
        title="biovita-server", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.ctx = WebContext(
        store=store,
        clips=clips,
        catalogue=catalogue,
        signer=SessionSigner(secret),
        settings=settings or WebSettings(),
        cache_dir=cache_dir or clips.root.parent / "cache",
    )
    app.add_middleware(SessionMiddleware)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(LoginRequired)
    def _login_required(request: Request, exc: LoginRequired):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "log in first"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(HTTPException)
    def _http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return pages.render(
            request, "error.html", status_code=exc.status_code, message=str(exc.detail)
        )

    return app
