"""The HTML pages: detections (list, detail, review, bulk), species, fleet, dead letters, login."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from biovita.errors import BiovitaError
from server_sync.auth import DUMMY_HASH, Session, verify_password
from server_sync.charts import daily_counts_svg
from server_sync.clip_bounds import measure_clip
from server_sync.records import DetectionFilter, ReviewError, ReviewFilter, User, Verdict
from server_sync.spectrogram import DRAWING_VERSION, spectrogram_png
from server_sync.thresholds import suggest_threshold, thresholds_toml
from server_sync.web.context import MAX_BULK, WebContext, get_context
from server_sync.web.filters import filter_params, parse_cursor, parse_filter
from server_sync.web.security import (
    check_csrf,
    require_admin,
    require_user,
    session_of,
    start_session,
)
from server_sync.web.views import clock_note, device_state, species_rows

MAX_NOTE = 2000
PAGE_SIZE = 50

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # every {{ value }} is HTML-escaped; nothing is marked safe from input
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
router = APIRouter()
Ctx = Annotated[WebContext, Depends(get_context)]
CurrentUser = Annotated[User, Depends(require_user)]


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    session = session_of(request)
    context.setdefault("user", None)
    return templates.TemplateResponse(
        request, name, {"csrf": session.csrf, **context}, status_code=status_code
    )


# ------------------------------------------------------------------------------ login


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/detections"


@router.get("/login")
def login_form(request: Request, next: str = "/detections"):
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/detections",
):
    check_csrf(request, csrf_token)
    address = request.client.host if request.client else "?"
    wait_s = ctx.logins.attempt(address, username)
    if wait_s > 0:
        minutes = max(1, round(wait_s / 60))
        response = render(
            request,
            "login.html",
            status_code=429,
            next=_safe_next(next),
            error=f"Too many failed logins from your address. Try again in "
            f"{minutes} minute{'s' if minutes > 1 else ''}, or ask an admin to reset the password.",
        )
        response.headers["Retry-After"] = str(int(wait_s) + 1)
        return response
    user = ctx.store.user(username.strip())
    if not verify_password(password, user.password_hash if user else DUMMY_HASH) or user is None:
        return render(
            request,
            "login.html",
            status_code=400,
            next=_safe_next(next),
            error="Wrong user name or password.",
        )
    ctx.logins.succeeded(address, username)
    session = Session.for_user(user.username, user.role.value, ctx.settings.session_hours * 3600)
    ctx.store.start_session(
        session.session_id, user, datetime.fromtimestamp(session.expires, timezone.utc)
    )
    start_session(request, session)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, ctx: Ctx, csrf_token: Annotated[str, Form()] = ""):
    check_csrf(request, csrf_token)
    if session_of(request).session_id:
        ctx.store.end_session(session_of(request).session_id)
    start_session(request, Session.anonymous())
    return RedirectResponse("/login", status_code=303)


@router.get("/")
def home():
    return RedirectResponse("/detections", status_code=303)


# ------------------------------------------------------------------------------ detections


@router.get("/detections")
def detections(request: Request, ctx: Ctx, user: CurrentUser):
    flt = parse_filter(request.query_params)
    after = parse_cursor(request.query_params.get("after"))
    page = ctx.store.list_detections(flt, after=after, limit=PAGE_SIZE)
    params = filter_params(flt)
    next_url = (
        f"/detections?{urlencode({**params, 'after': page.next_cursor.encode()})}"
        if page.next_cursor
        else None
    )
    return render(
        request,
        "detections.html",
        user=user,
        rows=page.rows,
        flt=flt,
        params=params,
        next_url=next_url,
        first_url=f"/detections?{urlencode(params)}" if after else None,
        review_filters=list(ReviewFilter),
        devices=ctx.store.devices(),
        catalogue=ctx.catalogue,
        bulk_done=request.query_params.get("bulk"),
        max_bulk=MAX_BULK,
    )


@router.post("/detections/bulk")
async def bulk_review(request: Request, ctx: Ctx, user: CurrentUser):
    form = await request.form()
    check_csrf(request, form.get("csrf_token"))
    flt = parse_filter({k: str(v) for k, v in form.items()})
    verdict, species_id, note = _review_fields(ctx, form)
    ids = ctx.store.matching_ids(flt, MAX_BULK + 1)
    if len(ids) > MAX_BULK:
        raise HTTPException(
            400, f"the filter matches more than {MAX_BULK} detections; narrow it first"
        )
    _add_reviews(ctx, ids, user, verdict, species_id, note)
    return RedirectResponse(
        f"/detections?{urlencode({**filter_params(flt), 'bulk': len(ids)})}", status_code=303
    )


@router.get("/detections/{detection_id}")
def detection_page(request: Request, ctx: Ctx, user: CurrentUser, detection_id: str):
    row = ctx.store.detection(detection_id)
    if row is None:
        raise HTTPException(404, "no such detection")
    clip = ctx.store.clip(row.detection.clip_id) if row.detection.clip_id else None
    return render(
        request,
        "detection.html",
        user=user,
        row=row,
        d=row.detection,
        clip=clip,
        reviews=ctx.store.reviews(detection_id),
        catalogue=ctx.catalogue,
    )


@router.post("/detections/{detection_id}/review")
async def review(request: Request, ctx: Ctx, user: CurrentUser, detection_id: str):
    form = await request.form()
    check_csrf(request, form.get("csrf_token"))
    verdict, species_id, note = _review_fields(ctx, form)
    _add_reviews(ctx, [detection_id], user, verdict, species_id, note)
    return RedirectResponse(f"/detections/{detection_id}", status_code=303)


def _review_fields(ctx: WebContext, form) -> tuple[Verdict, str | None, str]:
    try:
        verdict = Verdict(str(form.get("verdict", "")))
    except ValueError:
        raise HTTPException(400, "choose confirm, reject or relabel") from None
    species_id = str(form.get("species_id") or "").strip() or None
    note = str(form.get("note") or "")
    if len(note) > MAX_NOTE:
        raise HTTPException(400, f"the note is longer than {MAX_NOTE} characters")
    if verdict == Verdict.RELABEL:
        if not species_id:
            raise HTTPException(400, "a relabel needs the new species")
        if len(ctx.catalogue) and species_id not in ctx.catalogue:
            raise HTTPException(400, f"species {species_id!r} is not in the species list")
    return verdict, species_id if verdict == Verdict.RELABEL else None, note


def _add_reviews(ctx, ids, user: User, verdict, species_id, note) -> None:
    try:
        ctx.store.add_reviews(ids, user.username, verdict, species_id, note)
    except ReviewError as err:
        raise HTTPException(400, err.describe()) from None


@router.get("/clips/{clip_id}")
def clip_file(ctx: Ctx, user: CurrentUser, clip_id: str):
    clip = ctx.store.clip(clip_id)
    if clip is None:
        raise HTTPException(404, "no such clip")
    path = ctx.clips.resolve(clip.path)
    if not path.is_file():
        raise HTTPException(410, "the clip file is gone from the clip store")
    try:  # the browser would decode it all: a long one costs the reviewer's machine, too
        measure_clip(path, ctx.clips.limits)
    except BiovitaError as err:
        raise HTTPException(422, f"cannot play this clip: {err}") from None
    return FileResponse(
        path,
        media_type="audio/flac",
        filename=f"{clip_id}.flac",
        headers={"Cache-Control": "private, max-age=86400"},
    )


@router.get("/clips/{clip_id}/spectrogram.png")
def spectrogram(ctx: Ctx, user: CurrentUser, clip_id: str):
    clip = ctx.store.clip(clip_id)
    if clip is None:
        raise HTTPException(404, "no such clip")
    # The drawing's version names the folder, so a server upgraded to a new picture never
    # serves pictures an older version cached.
    cached = ctx.cache_dir / "spectrograms" / DRAWING_VERSION / f"{clip.sha256}.png"
    if not cached.exists():
        try:
            png = spectrogram_png(ctx.clips.resolve(clip.path), ctx.clips.limits)
        except BiovitaError as err:
            raise HTTPException(422, f"cannot draw this clip: {err}") from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{secrets.token_hex(4)}.tmp")  # two requests, two files
        tmp.write_bytes(png)
        tmp.replace(cached)
    return FileResponse(
        cached, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


# ------------------------------------------------------------------------------ species


@router.get("/species")
def species_list(request: Request, ctx: Ctx, user: CurrentUser):
    return render(
        request, "species_list.html", user=user, rows=species_rows(ctx.store, ctx.catalogue)
    )


@router.get("/species/thresholds.toml")
def thresholds_file(ctx: Ctx, user: CurrentUser):
    suggestions = [
        suggest_threshold(s.species_id, ctx.store.reviewed_scores(s.species_id))
        for s in ctx.store.species_summaries()
        if s.reviewed
    ]
    return PlainTextResponse(
        thresholds_toml(suggestions),
        media_type="application/toml",
        headers={"Content-Disposition": 'attachment; filename="species_thresholds.toml"'},
    )


@router.get("/species/{species_id}")
def species_page(request: Request, ctx: Ctx, user: CurrentUser, species_id: str):
    summary = next(iter(ctx.store.species_summaries(species_id)), None)
    if summary is None:
        raise HTTPException(404, "no detections of this species")
    suggestion = suggest_threshold(species_id, ctx.store.reviewed_scores(species_id))
    return render(
        request,
        "species.html",
        user=user,
        species_id=species_id,
        label=ctx.catalogue.label(species_id),
        summary=summary,
        suggestion=suggestion,
        toml=thresholds_toml([suggestion]),
        chart=Markup(daily_counts_svg(ctx.store.daily_counts(species_id))),  # escaped inside
        list_url=f"/detections?{urlencode(filter_params(DetectionFilter(species_id=species_id)))}",
    )


# ------------------------------------------------------------------------------ fleet, admin


@router.get("/fleet")
def fleet(request: Request, ctx: Ctx, user: CurrentUser):
    devices = [(d, device_state(d), clock_note(d)) for d in ctx.store.devices()]
    return render(request, "fleet.html", user=user, devices=devices)


@router.get("/dead-letters")
def dead_letters(request: Request, ctx: Ctx, user: Annotated[User, Depends(require_admin)]):
    return render(
        request,
        "dead_letters.html",
        user=user,
        counts=ctx.store.dead_letter_counts(),
        letters=ctx.store.dead_letters(200),
    )
