"""The detection record and MQTT envelopes: golden JSON pins the wire format."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from biovita.detection import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Alternative,
    Detection,
    DetectionBatch,
    DeviceStatus,
    acks_topic,
    clip_topic,
    decode,
    detections_topic,
    encode,
    parse_topic,
    status_topic,
)
from biovita.errors import SchemaVersionError, WireFormatError

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 5, 17, 4, 30, 0, 250_000, tzinfo=timezone.utc)


def golden_batch() -> DetectionBatch:
    detection = Detection(
        id="7d3c1f9e-2b4a-4c55-9e1d-0a6b8f3e2c11",
        device_id="pi-ridge-07",
        site_id="ridge",
        start_utc=T0,
        end_utc=T0 + timedelta(seconds=4.5),
        start_sample=1_296_000,
        end_sample=1_368_000,
        sample_rate_hz=16_000,
        species_id="sp017",
        scientific_name="Trillora cantans",
        common_name="Singing Trillwing",
        score=0.8734,
        similarity=0.412,
        windows=2,
        alternatives=[Alternative(species_id="sp018", score=0.071, similarity=0.355)],
        bundle_id="b3c0ffee",
        backend="onnxruntime-cpu",
        clip_id="clip-7d3c1f9e",
    )
    return DetectionBatch(
        device_id="pi-ridge-07",
        site_id="ridge",
        seq=42,
        sent_utc=T0 + timedelta(seconds=10),
        detections=[detection],
    )


def golden_ack() -> Ack:
    return Ack(
        device_id="pi-ridge-07",
        seq=42,
        ids=["7d3c1f9e-2b4a-4c55-9e1d-0a6b8f3e2c11"],
        clip_ids=["clip-7d3c1f9e"],
        stored_utc=T0 + timedelta(seconds=11),
    )


def golden_status() -> DeviceStatus:
    return DeviceStatus(
        device_id="pi-ridge-07",
        site_id="ridge",
        online=True,
        sent_utc=T0,
        uptime_s=3600.5,
        queue_depth=3,
        disk_free_bytes=12_000_000_000,
        clips_bytes=52_000_000,
        bundle_id="b3c0ffee",
        backend="onnxruntime-cpu",
        software_version="0.1.0",
        last_detection_utc=T0,
    )


CASES = [
    ("detection_batch_v1.json", golden_batch, DetectionBatch),
    ("ack_v1.json", golden_ack, Ack),
    ("status_v1.json", golden_status, DeviceStatus),
]


@pytest.mark.parametrize(("name", "make", "model"), CASES)
def test_encoding_matches_the_golden_json(name, make, model):
    golden = json.loads((GOLDEN / name).read_text())
    assert json.loads(encode(make())) == golden


@pytest.mark.parametrize(("name", "make", "model"), CASES)
def test_golden_json_decodes_to_the_same_message(name, make, model):
    assert decode((GOLDEN / name).read_bytes(), model) == make()


def test_older_senders_may_omit_fields_with_defaults():
    raw = json.loads((GOLDEN / "detection_batch_v1.json").read_text())
    for key in ("alternatives", "clip_id", "backend", "windows", "clock_synced"):
        del raw["detections"][0][key]
    batch = decode(json.dumps(raw).encode(), DetectionBatch)
    assert batch.detections[0].clip_id is None and batch.detections[0].windows == 1


def _payload(**changes) -> bytes:
    raw = json.loads(encode(golden_batch()))
    raw.update(changes)
    return json.dumps(raw).encode()


def _detection(**changes) -> bytes:
    raw = json.loads(encode(golden_batch()))
    raw["detections"][0].update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "invalid"),
        (_payload(schema="biovita.somethingelse"), "unknown_schema"),
        (_payload(schema_version=2), "unknown_schema"),
        (_payload(seq="forty-two"), "invalid"),
        (_payload(device_id="a/b"), "invalid"),
        (_payload(device_id="+"), "invalid"),
        (_payload(unexpected=1), "invalid"),
        (_detection(score=1.5), "invalid"),
        (_detection(id="not-a-uuid"), "invalid"),
        (_detection(start_utc="2026-05-17T04:30:00"), "invalid"),  # no timezone
        (_detection(species_id=""), "invalid"),
        (_detection(end_sample=0), "invalid"),  # ends before it starts
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversized"),
    ],
)
def test_hostile_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(WireFormatError) as err:
        decode(payload, DetectionBatch)
    assert err.value.reason == reason
    assert str(err.value)


def test_unknown_schema_version_is_also_a_schema_version_error():
    with pytest.raises(SchemaVersionError):
        decode(_payload(schema_version=7), DetectionBatch)


def test_topics_round_trip():
    assert detections_topic("ridge", "pi-7") == "biovita/v1/ridge/pi-7/detections"
    assert parse_topic(clip_topic("ridge", "pi-7", "c1")).clip_id == "c1"
    assert parse_topic(status_topic("ridge", "pi-7")).kind == "status"
    assert parse_topic(acks_topic("ridge", "pi-7")).device_id == "pi-7"
    for bad in ["biovita/v2/a/b/detections", "biovita/v1/a/b", "biovita/v1/a/b/other", "x"]:
        with pytest.raises(WireFormatError) as err:
            parse_topic(bad)
        assert err.value.reason == "bad_topic"
    with pytest.raises(ValueError):
        detections_topic("bad/site", "d")


def test_times_are_normalised_to_utc():
    plus2 = timezone(timedelta(hours=2))
    d = golden_batch().detections[0].model_copy()
    again = Detection.model_validate(
        {**d.model_dump(), "start_utc": datetime(2026, 5, 17, 6, 30, tzinfo=plus2)}
    )
    assert again.start_utc == datetime(2026, 5, 17, 4, 30, tzinfo=timezone.utc)
    assert again.start_utc.tzinfo == timezone.utc


EDGE_TIMES = ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00")


def _envelope(schema: str, **fields) -> bytes:
    return json.dumps({"schema": schema, "schema_version": 1, "device_id": "d", **fields}).encode()


@pytest.mark.parametrize("when", EDGE_TIMES)
@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (DetectionBatch, lambda t: _payload(sent_utc=t)),
        (DetectionBatch, lambda t: _detection(start_utc=t, end_utc=t)),
        (DeviceStatus, lambda t: _envelope("biovita.status", site_id="s", online=True, sent_utc=t)),
        (DeviceStatus, lambda t: _envelope("biovita.status", site_id="s", online=True,
                                           last_detection_utc=t)),
        (Ack, lambda t: _envelope("biovita.acks", stored_utc=t)),
    ],
)  # fmt: skip
def test_times_past_the_range_once_in_utc_are_invalid_not_an_overflow(model, payload, when):
    """Valid ISO-8601 whose UTC lies outside datetime's range: a reasoned refusal, never an
    OverflowError (which escaped decode and killed the server's network thread)."""
    with pytest.raises(WireFormatError) as err:
        decode(payload(when), model)
    assert err.value.reason == "invalid"
    assert "range" in str(err.value)
