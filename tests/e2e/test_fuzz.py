"""Fuzz suite: generated hostile input at every wire decoder, at a running ingest through a real
Mosquitto, and at the review app's query parameters. Nothing may raise where it must answer: a
decoder refuses with a ``WireFormatError`` (a reason code), ingest dead-letters and keeps storing,
the review app answers 400 (never 500). Derandomized (``tests/conftest.py``): CI runs the same
cases every time, bounded by each test's ``max_examples``. The counts are printed at the end of
the session with the other e2e figures (``ledger``).
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime, timezone

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from biovita.detection import Ack, DetectionBatch, DeviceStatus, acks_topic, decode, parse_topic
from biovita.errors import WireFormatError
from server_sync.intake import classify
from server_sync.records import Cursor, ReviewError
from server_sync.store import open_store
from server_sync.web.app import create_app
from server_sync.web.filters import FILTER_FIELDS, parse_filter
from tests.e2e import ledger
from tests.e2e.chain import ServerDb, ingest_service
from tests.e2e.fuzz import LEVEL, TIMES, VALUES, hostile_messages
from tests.e2e.peers import Peer
from tests.e2e.test_bad_inputs import valid_batch
from tests.server.seed import PASSWORDS, seed

INGEST_MESSAGES = 2000
_NOW = datetime(2026, 5, 1, 4, tzinfo=timezone.utc)
QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def _run(target: str, check, *args) -> None:
    """Run one case, counting it (and, if it raises where it must not, the crash)."""
    try:
        check(*args)
    except BaseException:
        ledger.fuzzed(target, crashes=1)
        raise
    ledger.fuzzed(target)


# ----------------------------------------------------------------------------- wire decoders


def _decoders(payload: bytes, topic: str) -> None:
    for model in (DetectionBatch, DeviceStatus, Ack):
        try:
            decode(payload, model)
        except WireFormatError as err:
            assert err.reason and str(err)
    try:
        parse_topic(topic)
    except WireFormatError as err:
        assert err.reason == "bad_topic"
    assert classify(topic, payload, _NOW) is not None  # never raises: a dead letter at worst


@settings(max_examples=1500, suppress_health_check=QUIET)
@given(hostile_messages())
def test_every_wire_decoder_refuses_hostile_messages_with_a_reason(message):
    _run("wire decoders", _decoders, message.payload, message.topic)


@settings(max_examples=300, suppress_health_check=QUIET)
@given(st.binary(max_size=200), st.text(max_size=60))
def test_decoders_refuse_arbitrary_bytes_and_topics(payload, topic):
    _run("wire decoders", _decoders, payload, topic)


# ------------------------------------------------------------- ingest through a real broker


@pytest.mark.mqtt
@pytest.mark.e2e
def test_ingest_survives_2000_hostile_messages_then_stores_and_acks_a_valid_batch(
    mosquitto, tmp_path
):
    data = tmp_path / "server"
    service = ingest_service(data, mosquitto.host, mosquitto.port, tmp_path / "ingest.log")
    with service as ingest, Peer(mosquitto.host, mosquitto.port, "fuzzer") as peer:
        ingest.wait_for_log("connected to")
        sent = []

        # no shrinking: a failure here is the broker's or ingest's state, not one message's
        @settings(
            max_examples=INGEST_MESSAGES,
            suppress_health_check=QUIET,
            phases=[Phase.explicit, Phase.generate],
        )
        @given(hostile_messages())
        def publish(message):
            sent.append(message)
            peer.publish(message.topic, message.payload)

        publish()
        final = valid_batch(seq=99) | {"device_id": "dev-x"}  # a device that sent no junk
        peer.subscribe(acks_topic("site-x", "dev-x"))
        peer.publish("biovita/v1/site-x/dev-x/detections", json.dumps(final).encode())
        ack = peer.messages_until(lambda m: m.topic == acks_topic("site-x", "dev-x"), 60)[-1]
        # one publisher, one worker: it reached the final batch after every hostile message
        ledger.fuzzed("ingest via Mosquitto", len(sent), crashes=0 if ingest.alive else 1)
        assert len(sent) >= INGEST_MESSAGES
        assert ingest.alive, ingest.log_text()[-3000:]
    server = ServerDb(data)
    assert set(json.loads(ack.payload)["ids"]) == {d["id"] for d in final["detections"]}
    assert set(server.ids("dev-x")) == {d["id"] for d in final["detections"]}
    counts = server.dead_letter_counts()
    assert "unexpected" not in counts, counts  # the guard caught nothing no check foresaw
    assert sum(counts.values()) >= len(sent) // 2, counts
    log = service.log_text()
    assert "Traceback" not in log and "network thread died" not in log
    assert service.process.returncode == 0, log[-3000:]  # a clean stop, acks flushed


# --------------------------------------------------------------- review app query parameters

PARAM_VALUES = st.one_of(
    st.text(max_size=30),
    TIMES,
    st.floats().map(str),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    VALUES.map(json.dumps),
    LEVEL,
)
QUERIES = st.dictionaries(
    st.sampled_from([*FILTER_FIELDS, "after", "limit"]) | st.text(max_size=8),
    PARAM_VALUES,
    max_size=5,
)


@pytest.fixture
def reviewer(tmp_path):
    store = open_store(f"sqlite://{tmp_path / 'server.db'}")
    world = seed(store, tmp_path)
    app = create_app(store, world.clips, world.catalogue, b"k" * 32, cache_dir=tmp_path)
    client = TestClient(app)  # a server exception fails the case (raise_server_exceptions)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    form = {"username": "ann", "password": PASSWORDS["ann"], "csrf_token": token}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    yield client
    store.close()


def test_review_query_parameters_get_an_answer_never_a_server_error(reviewer):
    def query(params: dict) -> None:
        for path in ("/api/detections", "/detections"):
            response = reviewer.get(path, params=params)
            assert response.status_code in (200, 400, 422), (path, params, response.text[:300])

    @settings(max_examples=250, suppress_health_check=QUIET)
    @given(QUERIES)
    def case(params):
        _run("review query parameters", query, params)

    case()


@settings(max_examples=500, suppress_health_check=QUIET)
@given(st.dictionaries(st.sampled_from(FILTER_FIELDS), PARAM_VALUES), st.text(max_size=80))
def test_filter_and_cursor_parsers_refuse_with_their_own_errors(params, token):
    def parse() -> None:
        try:
            parse_filter(params)
        except HTTPException as err:
            assert err.status_code == 400
        with contextlib.suppress(ReviewError):
            Cursor.decode(token)

    _run("review query parameters", parse)
