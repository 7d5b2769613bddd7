"""Filters and cursors from query strings and forms, and back (for links and hidden fields)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from fastapi import HTTPException

from biovita.detection import to_utc
from server_sync.records import Cursor, DetectionFilter, ReviewError, ReviewFilter

FILTER_FIELDS = ("site", "device", "species", "from", "to", "score_min", "score_max", "review")


def parse_filter(params: Mapping[str, str]) -> DetectionFilter:
    """Empty fields mean "any"; a bad value is a 400 that names the field."""
    text = {k: (params.get(k) or "").strip() for k in FILTER_FIELDS}
    try:
        review = ReviewFilter(text["review"] or "any")
    except ValueError:
        raise HTTPException(
            400, f"review must be one of {[r.value for r in ReviewFilter]}"
        ) from None
    return DetectionFilter(
        site_id=text["site"] or None,
        device_id=text["device"] or None,
        species_id=text["species"] or None,
        start_from=_time(text["from"], "from"),
        start_to=_time(text["to"], "to"),
        score_min=_score(text["score_min"], "score_min"),
        score_max=_score(text["score_max"], "score_max"),
        review=review,
    )


def filter_params(flt: DetectionFilter) -> dict[str, str]:
    """The non-empty fields of a filter, as the form names them."""
    values = {
        "site": flt.site_id,
        "device": flt.device_id,
        "species": flt.species_id,
        "from": _time_text(flt.start_from),
        "to": _time_text(flt.start_to),
        "score_min": None if flt.score_min is None else f"{flt.score_min:g}",
        "score_max": None if flt.score_max is None else f"{flt.score_max:g}",
        "review": None if flt.review == ReviewFilter.ANY else flt.review.value,
    }
    return {k: v for k, v in values.items() if v}


def parse_cursor(token: str | None) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.decode(token)
    except ReviewError as err:
        raise HTTPException(400, str(err)) from None


def _time(text: str, name: str) -> datetime | None:
    """ISO-8601; a time without a zone (as a datetime-local input sends it) is UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return to_utc(value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value)
    except ValueError as err:  # not a time, or one outside the range once in UTC
        raise HTTPException(
            400, f"{name}: {text!r} is not a time like 2024-05-01T04:00 ({err})"
        ) from None


def _time_text(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _score(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise HTTPException(400, f"{name} must be a number from 0 to 1")
    return value
