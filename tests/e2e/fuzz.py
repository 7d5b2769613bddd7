"""Hypothesis strategies for hostile wire messages: what a broken or malicious device can publish.

Each message is built from a contract-valid one (``test_bad_inputs.valid_batch``) broken in a few
places (a value replaced by arbitrary JSON, an edge-of-range time, a key dropped or added), or is
raw bytes, a damaged FLAC, or a topic with odd levels. The strategies are shared by the decoder
fuzz (in process) and the ingest fuzz (through a real Mosquitto into ``biovita-server ingest``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import soundfile
from hypothesis import strategies as st

from biovita.detection import clip_topic, detections_topic, status_topic
from tests.e2e.test_bad_inputs import valid_batch

SITE = "site-f"
DEVICES = tuple(f"dev-{n:02d}" for n in range(40))  # spread over devices: each within its rate

OFFSETS = st.builds(
    timezone,
    st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23)),
)
TIMES = st.one_of(
    st.datetimes(timezones=OFFSETS).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # no zone
    st.sampled_from(
        ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2099-01-01T00:00Z"]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too, written as JSON's non-standard tokens
    st.text(max_size=40),
    TIMES,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


def _doc_of(device: str) -> dict:
    doc = valid_batch(n=2)
    for record in (doc, *doc["detections"]):
        record["device_id"], record["site_id"] = device, SITE
    return doc


def _status_of(device: str) -> dict:
    return {
        "schema": "biovita.status",
        "schema_version": 1,
        "device_id": device,
        "site_id": SITE,
        "online": True,
        "sent_utc": "2026-05-01T04:00:05Z",
        "queue_depth": 3,
        "last_detection_utc": "2026-05-01T04:00:00Z",
    }


TIME_KEYS = ("start_utc", "end_utc", "sent_utc", "last_detection_utc", "stored_utc")


@st.composite
def _broken(draw, doc: dict) -> bytes:
    """``doc`` with one to three keys (of the envelope or of a detection) replaced or dropped;
    times are broken the most often, with times of their own (the edges of the range too)."""
    for _ in range(draw(st.integers(1, 3))):
        detections = doc.get("detections")
        target = draw(
            st.sampled_from([doc, *detections] if isinstance(detections, list) else [doc])
        )
        if not isinstance(target, dict):
            continue
        times = [k for k in TIME_KEYS if k in target]
        if times and draw(st.booleans()):
            target[draw(st.sampled_from(times))] = draw(TIMES)
            continue
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=10))
        if draw(st.integers(0, 3)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(VALUES)
    return json.dumps(doc, allow_nan=True).encode()


def _flac(seconds: float = 0.3) -> bytes:
    buffer = io.BytesIO()
    tone = 0.2 * np.sin(np.arange(int(16000 * seconds)) * 0.3).astype(np.float32)
    soundfile.write(buffer, tone, 16000, format="FLAC")
    return buffer.getvalue()


FLAC = _flac()


@st.composite
def _damaged_flac(draw) -> bytes:
    data = bytearray(FLAC[: draw(st.integers(4, len(FLAC)))])
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


# A topic level: any text a broker takes. MQTT forbids U+0000 and the wildcards; Mosquitto also
# disconnects a client for control characters and non-characters, which says nothing of ingest.
LEVEL = st.text(
    st.characters(exclude_characters="/+#", exclude_categories=("Cc", "Cs", "Cn")), max_size=20
)


@st.composite
def hostile_messages(draw) -> Message:
    """One message a device could publish under the topics ingest subscribes to."""
    device = draw(st.sampled_from(DEVICES))
    kind = draw(st.sampled_from(["batch", "batch", "status", "bytes", "clip", "odd-topic"]))
    if kind == "batch":
        return Message(detections_topic(SITE, device), draw(_broken(_doc_of(device))))
    if kind == "status":
        return Message(status_topic(SITE, device), draw(_broken(_status_of(device))))
    if kind == "bytes":
        topic = draw(st.sampled_from([detections_topic(SITE, device), status_topic(SITE, device)]))
        return Message(topic, draw(st.binary(max_size=300)))
    if kind == "clip":
        payload = draw(_damaged_flac() | st.binary(max_size=200).map(lambda b: b"fLaC" + b))
        clip_id = draw(st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,20}\Z"))
        return Message(clip_topic(SITE, device, clip_id), payload)
    leaf = draw(st.sampled_from(["detections", "status", "clips/"]))
    topic = (
        f"biovita/v1/{draw(LEVEL)}/{draw(LEVEL)}/{leaf}{draw(LEVEL) if leaf == 'clips/' else ''}"
    )
    return Message(topic, draw(_broken(_doc_of(device)) | st.binary(max_size=100)))
