"""The detection record and the MQTT wire format (DESIGN.md section 3).

One record, two views: the device's SQLite row and the JSON on the wire are both this model.
Fields may be added in later schema versions, never renamed; ``tests/biovita/golden`` pins the
JSON. Times are timezone-aware UTC; ``start_sample`` counts samples since the stream started, so
rows recorded before the clock synced (``clock_synced`` false) can be re-timed later.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from biovita.errors import SchemaVersionError, WireFormatError

DETECTION_SCHEMA_VERSION = 1
TOPIC_ROOT = "biovita/v1"
MAX_PAYLOAD_BYTES = 1 << 20  # 1 MiB per detections message; clips have their own limit
MAX_CLIP_BYTES = 8 << 20
MAX_BATCH_DETECTIONS = 1000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _topic_safe(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "must be 1-64 characters of letters, digits, '_', '.', '-' (no '/', '+', '#'), "
            "starting with a letter or digit"
        )
    return value


def to_utc(value: datetime) -> datetime:
    """``value`` in UTC; a ``ValueError`` if it has no zone or its UTC time is out of range.

    ``9999-12-31T23:59:59-01:00`` is valid ISO-8601 but lies past ``datetime.max`` once in UTC:
    ``astimezone`` raises ``OverflowError``, which pydantic does not turn into a validation error.
    Raised as one, it makes the message a dead letter instead of an exception on a network thread.
    """
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (UTC)")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside the representable range once in UTC"
        ) from None


# Constraints as patterns, not Python validators: pydantic checks them in Rust, which halves the
# server's validation cost per detection (bench/server_ingest.py).
TopicName = Annotated[str, StringConstraints(pattern=_NAME.pattern)]
CanonicalUuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
UtcTime = Annotated[datetime, AfterValidator(to_utc)]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Alternative(_Wire):
    """A runner-up species for the same event."""

    species_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1)
    similarity: float = Field(ge=-1, le=1)


class Detection(_Wire):
    """One detected acoustic event of one species on one device."""

    schema_version: Literal[1] = DETECTION_SCHEMA_VERSION
    id: CanonicalUuid = Field(
        default_factory=new_id, description="UUID made on the device (lower-case canonical form)"
    )
    device_id: TopicName
    site_id: TopicName
    start_utc: UtcTime
    end_utc: UtcTime
    start_sample: int = Field(ge=0, description="samples since the stream started")
    end_sample: int = Field(ge=0)
    sample_rate_hz: int = Field(gt=0)
    clock_synced: bool = True
    species_id: str = Field(min_length=1, max_length=128)
    scientific_name: str = Field("", max_length=256)
    common_name: str = Field("", max_length=256)
    score: float = Field(ge=0, le=1, description="calibrated probability")
    similarity: float = Field(ge=-1, le=1, description="raw cosine to the species embedding")
    rank: int = Field(1, ge=1)
    windows: int = Field(1, ge=1, description="classified windows merged into this event")
    alternatives: list[Alternative] = Field(default_factory=list, max_length=50)
    bundle_id: str = Field("", max_length=128)
    backend: str = Field("", max_length=64)
    clip_id: TopicName | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Detection:
        if self.end_sample < self.start_sample or self.end_utc < self.start_utc:
            raise ValueError("an event must not end before it starts")
        return self

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / self.sample_rate_hz


class DetectionBatch(_Wire):
    """The payload of ``biovita/v1/{site}/{device}/detections`` (QoS 1)."""

    schema_: Literal["biovita.detections"] = Field("biovita.detections", alias="schema")
    schema_version: Literal[1] = DETECTION_SCHEMA_VERSION
    device_id: TopicName
    site_id: TopicName
    seq: int = Field(ge=0, description="per-device batch counter, increasing, kept across restarts")
    sent_utc: UtcTime = Field(default_factory=utc_now)
    detections: list[Detection] = Field(max_length=MAX_BATCH_DETECTIONS)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Ack(_Wire):
    """The payload of ``.../acks`` (server -> device): ids durably stored on the server."""

    schema_: Literal["biovita.acks"] = Field("biovita.acks", alias="schema")
    schema_version: Literal[1] = DETECTION_SCHEMA_VERSION
    device_id: TopicName
    seq: int | None = None
    ids: list[str] = Field(default_factory=list)
    clip_ids: list[str] = Field(default_factory=list)
    stored_utc: UtcTime = Field(default_factory=utc_now)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DeviceStatus(_Wire):
    """The retained payload of ``.../status``; also the Last Will (``online`` false)."""

    schema_: Literal["biovita.status"] = Field("biovita.status", alias="schema")
    schema_version: Literal[1] = DETECTION_SCHEMA_VERSION
    device_id: TopicName
    site_id: TopicName
    online: bool
    sent_utc: UtcTime = Field(default_factory=utc_now)
    uptime_s: float = 0.0
    queue_depth: int = 0
    disk_free_bytes: int | None = None
    clips_bytes: int | None = None
    bundle_id: str = ""
    backend: str = ""
    software_version: str = ""
    last_detection_utc: UtcTime | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------- topics


def device_topic(site_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{_topic_safe(site_id)}/{_topic_safe(device_id)}"


def detections_topic(site_id: str, device_id: str) -> str:
    return f"{device_topic(site_id, device_id)}/detections"


def clip_topic(site_id: str, device_id: str, clip_id: str) -> str:
    return f"{device_topic(site_id, device_id)}/clips/{_topic_safe(clip_id)}"


def status_topic(site_id: str, device_id: str) -> str:
    return f"{device_topic(site_id, device_id)}/status"


def acks_topic(site_id: str, device_id: str) -> str:
    return f"{device_topic(site_id, device_id)}/acks"


DETECTIONS_FILTER = f"{TOPIC_ROOT}/+/+/detections"
CLIPS_FILTER = f"{TOPIC_ROOT}/+/+/clips/+"
STATUS_FILTER = f"{TOPIC_ROOT}/+/+/status"


class TopicParts(_Wire):
    site_id: str
    device_id: str
    kind: Literal["detections", "clips", "status", "acks"]
    clip_id: str | None = None


def parse_topic(topic: str) -> TopicParts:
    """Split a biovita topic; raises ``WireFormatError`` (reason ``bad_topic``) otherwise."""
    parts = topic.split("/")
    try:
        if parts[:2] != TOPIC_ROOT.split("/"):
            raise ValueError("not under " + TOPIC_ROOT)
        site, device, kind = _topic_safe(parts[2]), _topic_safe(parts[3]), parts[4]
        if kind == "clips" and len(parts) == 6:
            return TopicParts(site_id=site, device_id=device, kind=kind, clip_id=parts[5])
        if len(parts) == 5 and kind in ("detections", "status", "acks"):
            return TopicParts(site_id=site, device_id=device, kind=kind)
        raise ValueError("unknown topic layout")
    except (IndexError, ValueError) as err:
        raise WireFormatError(
            f"topic {topic!r} is not a biovita topic: {err}",
            hint=f"publish under {TOPIC_ROOT}/SITE/DEVICE/(detections|status|clips/ID)",
            reason="bad_topic",
        ) from None


# ----------------------------------------------------------------------------- encode / decode

_M = TypeVar("_M", bound=BaseModel)
_SCHEMAS: dict[type[BaseModel], str] = {
    DetectionBatch: "biovita.detections",
    Ack: "biovita.acks",
    DeviceStatus: "biovita.status",
}


def encode(message: BaseModel) -> bytes:
    """Compact UTF-8 JSON, field names as in the contract (``schema``, not ``schema_``)."""
    return message.model_dump_json(by_alias=True).encode("utf-8")


def decode(payload: bytes, model: type[_M], max_bytes: int = MAX_PAYLOAD_BYTES) -> _M:
    """Validate a payload against ``model``; every failure is a ``WireFormatError`` with a reason."""
    if len(payload) > max_bytes:
        raise WireFormatError(
            f"payload of {len(payload)} bytes is over the {max_bytes}-byte limit",
            hint="send smaller batches",
            reason="oversized",
        )
    try:  # fast path: pydantic parses and validates the JSON in one pass (about 2x quicker)
        return model.model_validate_json(payload)
    except ValidationError:
        pass  # slow path: find out why, so the dead-letter table can count by reason
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise WireFormatError(f"payload is not UTF-8: {err}", reason="not_utf8") from None
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise WireFormatError(f"payload is not JSON: {err}", reason="not_json") from None
    except RecursionError:  # e.g. 100,000 nested arrays: small on the wire, deep for the parser
        raise WireFormatError(
            "payload nests JSON too deeply to parse",
            hint="send the contract's flat envelope",
            reason="not_json",
        ) from None
    if not isinstance(raw, dict):
        raise WireFormatError("payload is not a JSON object", reason="invalid")
    expected = _SCHEMAS[model]
    if raw.get("schema") != expected:
        raise WireFormatError(
            f"payload schema {raw.get('schema')!r} is not {expected!r}",
            hint="publish the right message type on this topic",
            reason="unknown_schema",
        )
    if raw.get("schema_version") != DETECTION_SCHEMA_VERSION:
        raise SchemaVersionErrorOnWire(raw.get("schema_version"))
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise WireFormatError(
            f"payload does not follow the {expected} contract: "
            f"{err.error_count()} error(s), first: {_first_error(err)}",
            hint="fix the sender; the message was kept in the dead-letter table",
            reason="invalid",
        ) from None


def _first_error(err: ValidationError) -> str:
    first = err.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


class SchemaVersionErrorOnWire(WireFormatError, SchemaVersionError):
    """A message of a schema version this code does not know (dead-lettered, not dropped)."""

    def __init__(self, version: object) -> None:
        WireFormatError.__init__(
            self,
            f"schema version {version!r} is not supported (this code reads "
            f"{DETECTION_SCHEMA_VERSION})",
            hint="upgrade the server before the devices",
            reason="unknown_schema",
        )
