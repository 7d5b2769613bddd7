"""The server's records: what the store keeps and what the pages show.

A stored detection is the wire ``biovita.detection.Detection`` plus what the server adds (when it
arrived, the latest review). Reviews are append-only; ``ReviewState`` is the latest verdict per
detection, kept beside the reviews so a filter on it needs no scan of the review history.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from biovita.detection import Detection, DeviceStatus, to_utc
from biovita.errors import BiovitaError


class Verdict(str, Enum):
    CONFIRM = "confirm"
    REJECT = "reject"
    RELABEL = "relabel"


class ReviewFilter(str, Enum):
    """The review-state filter of the detections list."""

    ANY = "any"
    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    CONFIRMED = "confirm"
    REJECTED = "reject"
    RELABELLED = "relabel"


class Role(str, Enum):
    REVIEWER = "reviewer"
    ADMIN = "admin"


class ReviewError(BiovitaError):
    """A review that cannot be recorded (unknown detection, relabel without a species, ...)."""


@dataclass(frozen=True)
class Review:
    detection_id: str
    reviewer: str
    verdict: Verdict
    species_id: str | None  # confirm: the detected species; relabel: the new one; reject: None
    note: str
    created_utc: datetime
    id: int | None = None


@dataclass(frozen=True)
class StoredDetection:
    detection: Detection
    received_utc: datetime
    latest_review: Review | None = None

    @property
    def id(self) -> str:
        return self.detection.id

    @property
    def reviewed_species_id(self) -> str | None:
        """The species a person says this is (None: unreviewed or rejected)."""
        review = self.latest_review
        return None if review is None else review.species_id


@dataclass(frozen=True)
class DetectionFilter:
    site_id: str | None = None
    device_id: str | None = None
    species_id: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    score_min: float | None = None
    score_max: float | None = None
    review: ReviewFilter = ReviewFilter.ANY


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the (start_utc, id) of the last row shown; opaque text in URLs."""

    start_utc: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.start_utc.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            start, ident = json.loads(raw)
            return cls(to_utc(datetime.fromisoformat(start)), str(ident))
        except (ValueError, TypeError) as err:
            raise ReviewError(
                "the page cursor is damaged", hint="start again from the first page"
            ) from err


@dataclass(frozen=True)
class Page:
    rows: list[StoredDetection]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class Clip:
    clip_id: str
    device_id: str
    site_id: str
    path: str  # relative to the clip store's root
    size_bytes: int
    sha256: str
    received_utc: datetime


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    site_id: str
    last_seen_utc: datetime | None
    online: bool | None = None
    status_sent_utc: datetime | None = None
    uptime_s: float | None = None
    queue_depth: int | None = None
    disk_free_bytes: int | None = None
    clips_bytes: int | None = None
    bundle_id: str = ""
    backend: str = ""
    software_version: str = ""
    last_detection_utc: datetime | None = None
    clock_ahead_s: float | None = None  # the last status was this far ahead of the server


def capped_to_clock(status: DeviceStatus, now: datetime) -> tuple[DeviceStatus, float]:
    """``status`` with no time later than ``now``, and how far ahead its clock was (0 if not)."""
    ahead_s = max(0.0, (status.sent_utc - now).total_seconds())
    last = status.last_detection_utc
    if ahead_s == 0 and (last is None or last <= now):
        return status, 0.0
    capped = {"sent_utc": min(status.sent_utc, now)}
    if last is not None:
        capped["last_detection_utc"] = min(last, now)
    return status.model_copy(update=capped), ahead_s


def device_key(topic: str) -> str:
    """``site/device`` of a biovita topic, the unit the per-device bounds count by (for a foreign
    topic, its second and third levels: a broker's ACL keeps devices out of those anyway)."""
    return "/".join(topic.split("/")[2:4])


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    error: str
    payload: bytes  # the first DEAD_LETTER_KEEP_BYTES bytes (store/bounds.py)
    payload_bytes: int  # the full size
    count: int = 1
    first_utc: datetime | None = None
    last_utc: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class SpeciesSummary:
    species_id: str
    detections: int
    confirmed: int = 0
    rejected: int = 0
    relabelled: int = 0

    @property
    def reviewed(self) -> int:
        return self.confirmed + self.rejected + self.relabelled

    @property
    def false_positive_ratio(self) -> float | None:
        """Share of reviewed detections a person said were not this species."""
        return None if self.reviewed == 0 else (self.rejected + self.relabelled) / self.reviewed


@dataclass(frozen=True)
class ReviewedScore:
    """One reviewed detection of a species: its score and whether the species was right."""

    score: float
    correct: bool


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: Role
    created_utc: datetime
    generation: str = ""  # drawn anew by every reset; a session of another generation is over


@dataclass(frozen=True)
class ExportRow:
    """A reviewed detection whose clip can go back into training."""

    detection_id: str
    species_id: str  # the species the reviewer settled on
    clip_path: str  # relative to the clip store's root
    reviewer: str
    verdict: Verdict


@dataclass
class IngestUnit:
    """Everything one ingest flush commits in one transaction."""

    detections: list[Detection] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    statuses: list[tuple[DeviceStatus, datetime]] = field(default_factory=list)  # (status, seen)
    seen: list[tuple[str, str, datetime]] = field(default_factory=list)  # (site, device, when)
    dead_letters: list[DeadLetter] = field(default_factory=list)
