"""Shaping store records for pages and JSON: one place, so both show the same numbers."""

from __future__ import annotations

from datetime import datetime, timezone

from server_sync.records import DeviceRow, Review, StoredDetection
from server_sync.species import SpeciesCatalogue
from server_sync.store import Store
from server_sync.thresholds import Suggestion, suggest_threshold

STALE_AFTER_S = 15 * 60  # no message for this long: shown as stale even if "online"
CLOCK_AHEAD_FLAG_S = 60.0  # a status further ahead of the server's clock is flagged


def detection_json(row: StoredDetection) -> dict:
    d = row.detection.model_dump(mode="json")
    d["received_utc"] = row.received_utc.isoformat()
    d["review"] = review_json(row.latest_review) if row.latest_review else None
    return d


def review_json(review: Review) -> dict:
    return {
        "id": review.id,
        "reviewer": review.reviewer,
        "verdict": review.verdict.value,
        "species_id": review.species_id,
        "note": review.note,
        "created_utc": review.created_utc.isoformat(),
    }


def species_rows(store: Store, catalogue: SpeciesCatalogue) -> list[dict]:
    rows = []
    for summary in store.species_summaries():
        suggestion = (
            suggest_threshold(summary.species_id, store.reviewed_scores(summary.species_id))
            if summary.reviewed
            else None
        )
        rows.append(
            {
                "species_id": summary.species_id,
                "label": catalogue.label(summary.species_id),
                "detections": summary.detections,
                "reviewed": summary.reviewed,
                "confirmed": summary.confirmed,
                "rejected": summary.rejected,
                "relabelled": summary.relabelled,
                "false_positive_ratio": summary.false_positive_ratio,
                "suggested_threshold": suggestion.threshold if suggestion else None,
            }
        )
    return rows


def suggestion_json(s: Suggestion) -> dict:
    return {
        "threshold": s.threshold,
        "precision": s.precision,
        "kept": s.kept,
        "correct": s.correct,
        "reviewed": s.reviewed,
        "reason": s.reason,
    }


def device_state(device: DeviceRow, now: datetime | None = None) -> str:
    """online, offline, stale (said online but silent too long) or unknown (no status yet)."""
    now = now or datetime.now(timezone.utc)
    if device.online is None:
        return "unknown"
    if not device.online:
        return "offline"
    seen = device.last_seen_utc
    if seen is None or (now - seen).total_seconds() > STALE_AFTER_S:
        return "stale"
    return "online"


def clock_note(device: DeviceRow) -> str | None:
    """A warning when the device's clock ran ahead of the server's (its times were capped)."""
    ahead = device.clock_ahead_s or 0.0
    if ahead <= CLOCK_AHEAD_FLAG_S:
        return None
    for unit, seconds in (("days", 86400), ("h", 3600), ("min", 60)):
        if ahead >= seconds:
            return f"clock {ahead / seconds:.0f} {unit} ahead"
    return None


def device_json(device: DeviceRow) -> dict:
    values = {k: getattr(device, k) for k in device.__dataclass_fields__}
    for k, v in values.items():
        if isinstance(v, datetime):
            values[k] = v.isoformat()
    values["state"] = device_state(device)
    values["clock_note"] = clock_note(device)
    return values
