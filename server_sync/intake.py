"""One MQTT message in, one thing to store out: detections, a clip, a status or a dead letter.

Pure translation, no I/O: every contract check happens here, and every failure becomes a
``DeadLetter`` with a reason code instead of an exception, so ingest never stops on bad input.
Even an error no check foresaw (a bug, a library edge) is caught here and dead-lettered with reason
``unexpected``: this runs on paho's network thread, which an escaping exception would kill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from biovita.detection import (
    MAX_CLIP_BYTES,
    DetectionBatch,
    DeviceStatus,
    TopicParts,
    clip_topic,
    decode,
    parse_topic,
)
from biovita.errors import WireFormatError
from server_sync.clip_bounds import measure_clip
from server_sync.clips import FLAC_MAGIC
from server_sync.config import LimitSettings
from server_sync.records import DeadLetter

log = logging.getLogger(__name__)
DEFAULT_LIMITS = LimitSettings()


@dataclass(frozen=True)
class DetectionsIn:
    topic: TopicParts
    batch: DetectionBatch


@dataclass(frozen=True)
class ClipIn:
    topic: TopicParts
    clip_id: str
    payload: bytes


@dataclass(frozen=True)
class StatusIn:
    status: DeviceStatus


@dataclass(frozen=True)
class Ignored:
    why: str


Intake = DetectionsIn | ClipIn | StatusIn | DeadLetter | Ignored


def classify(
    topic: str, payload: bytes, received: datetime, limits: LimitSettings = DEFAULT_LIMITS
) -> Intake:
    try:
        return _classify(topic, payload, limits)
    except WireFormatError as err:
        return dead_letter(topic, payload, received, err.reason, err.describe())
    except Exception as err:  # noqa: BLE001 (no message may raise out of here; see the docstring)
        log.error("unexpected %s on %s, dead-lettered: %s", type(err).__name__, topic, err)
        return dead_letter(topic, payload, received, "unexpected", f"{type(err).__name__}: {err}")


def dead_letter(
    topic: str, payload: bytes, received: datetime, reason: str, error: str
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        reason=reason,
        error=error,
        payload=payload,
        payload_bytes=len(payload),
        last_utc=received,
    )


def _classify(topic: str, payload: bytes, limits: LimitSettings) -> Intake:
    parts = parse_topic(topic)
    if parts.kind == "detections":
        batch = decode(payload, DetectionBatch)
        _check_origin(parts, batch.site_id, batch.device_id)
        for d in batch.detections:
            _check_origin(parts, d.site_id, d.device_id)
        return DetectionsIn(parts, batch)
    if parts.kind == "clips":
        return _clip(parts, payload, limits)
    if parts.kind == "status":
        if not payload:  # a cleared retained status, e.g. a decommissioned device
            return Ignored("empty status")
        status = decode(payload, DeviceStatus)
        _check_origin(parts, status.site_id, status.device_id)
        return StatusIn(status)
    raise WireFormatError(f"the server does not take {parts.kind!r} messages", reason="bad_topic")


def _check_origin(parts: TopicParts, site_id: str, device_id: str) -> None:
    """A device may only speak for itself: the envelope must name the topic's site and device."""
    if (site_id, device_id) != (parts.site_id, parts.device_id):
        raise WireFormatError(
            f"message names {site_id}/{device_id} but arrived on the topic of "
            f"{parts.site_id}/{parts.device_id}",
            hint="a device publishes only its own records under its own topic",
            reason="topic_mismatch",
        )


def _clip(parts: TopicParts, payload: bytes, limits: LimitSettings) -> ClipIn:
    clip_id = parts.clip_id or ""
    try:
        clip_topic(parts.site_id, parts.device_id, clip_id)  # validates the id's characters
    except ValueError as err:
        raise WireFormatError(f"clip id {clip_id!r}: {err}", reason="bad_topic") from None
    if len(payload) > MAX_CLIP_BYTES:
        raise WireFormatError(
            f"clip of {len(payload)} bytes is over the {MAX_CLIP_BYTES}-byte limit",
            hint="send shorter clips",
            reason="oversized",
        )
    if not payload.startswith(FLAC_MAGIC):
        raise WireFormatError(
            "clip payload is not FLAC (no fLaC header)",
            hint="clips travel as raw FLAC bytes",
            reason="not_flac",
        )
    measure_clip(payload, limits)  # decodes at most max_clip_seconds (plus a block)
    return ClipIn(parts, clip_id, payload)
