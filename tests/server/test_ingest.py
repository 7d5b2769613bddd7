"""Ingest through a real Mosquitto broker into the real store."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.detection import (
    MAX_PAYLOAD_BYTES,
    clip_topic,
    detections_topic,
    encode,
    status_topic,
)
from server_sync.clips import ClipStore
from server_sync.config import IngestSettings, LimitSettings, MqttSettings
from server_sync.ingest import IngestWorker, NetworkThreadDied
from server_sync.records import DetectionFilter
from server_sync.store import StoreError
from tests.server.devices import DeviceLink
from tests.server.factories import batch, detection, status
from tests.server.seed import silent_flac

pytestmark = pytest.mark.mqtt


class Running:
    """Ingest workers on threads, stopped (and checked for clean exit) at the end."""

    def __init__(
        self, broker, store, clips_dir: Path, workers: int = 1, limits: LimitSettings | None = None
    ):
        self.stop = threading.Event()
        self.workers = [
            IngestWorker(
                store,
                ClipStore(clips_dir, limits),
                MqttSettings(
                    host=broker.host,
                    port=broker.port,
                    client_id=f"ingest-{n}",
                    share_group="ingest",
                ),
                IngestSettings(flush_ms=10),
            )
            for n in range(workers)
        ]
        self.threads = [threading.Thread(target=w.run, args=(self.stop,)) for w in self.workers]
        for worker, thread in zip(self.workers, self.threads, strict=True):
            worker.start()
            assert worker.connected.wait(10), "ingest did not connect"
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
            assert not thread.is_alive(), "ingest did not stop"


@pytest.fixture
def run_ingest(mosquitto, sqlite_store, tmp_path):
    started: list[Running] = []

    def start(store=None, workers=1, limits=None):
        running = Running(mosquitto, store or sqlite_store, tmp_path / "clips", workers, limits)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture
def device_links(mosquitto):
    links: list[DeviceLink] = []

    def link(device_id: str, site_id: str = "site-a") -> DeviceLink:
        links.append(DeviceLink(mosquitto.host, mosquitto.port, site_id, device_id))
        return links[-1]

    yield link
    for each in links:
        each.close()


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s")
        time.sleep(0.02)


def _all_rows(store):
    rows, cursor = [], None
    while True:
        page = store.list_detections(DetectionFilter(), after=cursor, limit=500)
        rows += page.rows
        if (cursor := page.next_cursor) is None:
            return rows


def test_batches_with_duplicates_and_reordering_are_stored_exactly_once(
    run_ingest, device_links, sqlite_store
):
    running = run_ingest(workers=2)  # two workers share the load through $share/ingest
    rng = random.Random(7)
    expected, links, plans = {}, [], []
    for k in range(3):
        link = device_links(f"dev-{k}", site_id=f"site-{k % 2}")
        batches = [
            batch(
                [
                    detection(link.device_id, link.site_id, n=seq * 20 + i, rng=rng)
                    for i in range(20)
                ],
                seq=seq,
            )
            for seq in range(6)
        ]
        expected.update({d.id: d for b in batches for d in b.detections})
        plan = batches + rng.sample(batches, 3)  # re-sends of lost-ack batches
        rng.shuffle(plan)  # out of order
        links.append(link)
        plans.append(plan)
    for link, plan in zip(links, plans, strict=True):
        for b in plan:
            link.publish_batch(b)
    for link, plan in zip(links, plans, strict=True):
        ids = {d.id for b in plan for d in b.detections}
        link.wait_for(lambda lk, ids=ids: lk.acked_ids() >= ids)
        assert {a.seq for a in link.acks} == set(range(6))

    rows = _all_rows(sqlite_store)
    assert len(rows) == len(expected) == 3 * 6 * 20
    assert {r.id: r.detection for r in rows} == expected
    assert all(w.counters.messages > 0 for w in running.workers), "the group shares the load"
    assert sum(w.counters.messages for w in running.workers) == 3 * (6 + 3)
    devices = {d.device_id: d for d in sqlite_store.devices()}
    assert set(devices) == {"dev-0", "dev-1", "dev-2"} and devices["dev-1"].site_id == "site-1"


class _SlowStore:
    """The real store, with a pause before each ingest commit and the first commits failing."""

    def __init__(self, store, pause_s: float, failures: int) -> None:
        self.store, self.pause_s, self.failures = store, pause_s, failures
        self.committed = threading.Event()

    def ingest(self, unit, limits=None):
        threading.Event().wait(self.pause_s)
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database is away", hint="test outage")
        self.store.ingest(unit, limits)
        self.committed.set()

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_acks_are_sent_only_after_the_commit(run_ingest, device_links, sqlite_store):
    slow = _SlowStore(sqlite_store, pause_s=0.2, failures=2)
    running = run_ingest(store=slow)
    link = device_links("dev-1")
    missing_at_ack: list[str] = []

    def check(ack):  # runs the instant the ack arrives: every id must already be committed
        for detection_id in ack.ids:
            if sqlite_store.detection(detection_id) is None:
                missing_at_ack.append(detection_id)

    link.on_ack = check
    sent = batch([detection(n=i) for i in range(10)], seq=1)
    link.publish_batch(sent)
    link.wait_for(lambda lk: lk.acked_ids() >= {d.id for d in sent.detections}, timeout=30)
    assert missing_at_ack == []
    assert running.workers[0].counters.store_failures == 2  # two failed commits, no ack for them
    assert len(link.acks) == 1


def test_malformed_messages_go_to_dead_letters_and_ingest_keeps_going(
    run_ingest, device_links, sqlite_store
):
    run_ingest()
    link = device_links("dev-1")
    topic = detections_topic("site-a", "dev-1")
    good = json.loads(encode(batch([detection(n=1)], seq=1)))
    bad = {
        "not_json": b"{this is not json",
        "not_utf8": b"\xff\xfe\x00garbage",
        "unknown_schema": json.dumps({**good, "schema": "biovita.other"}).encode(),
        "invalid": json.dumps({**good, "seq": -3}).encode(),
        "oversized": b"x" * (MAX_PAYLOAD_BYTES + 1),
        "topic_mismatch": encode(batch([detection("dev-2", n=2)], seq=2)),
    }
    for payload in bad.values():
        link.publish_raw(topic, payload)
    link.publish_raw(topic, json.dumps({**good, "schema_version": 99}).encode())
    link.publish_raw(status_topic("site-a", "dev-1"), b"[]")
    link.publish_clip("clip-x", b"RIFF....WAVE")  # not FLAC
    link.publish_raw(topic, bad["not_json"])  # a repeat: counted, not stored twice
    after = batch([detection(n=3)], seq=3)
    link.publish_batch(after)
    link.wait_for(lambda lk: after.detections[0].id in lk.acked_ids())
    counts = sqlite_store.dead_letter_counts()
    assert counts == {
        "not_json": 2,
        "not_utf8": 1,
        "unknown_schema": 2,  # wrong schema name, and an unknown schema version
        "invalid": 2,  # a negative seq, and a status that is not an object
        "oversized": 1,
        "topic_mismatch": 1,
        "not_flac": 1,
    }
    assert [r.id for r in _all_rows(sqlite_store)] == [after.detections[0].id]
    assert len(link.acks) == 1  # nothing malformed was acked


def _flac(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)
    soundfile.write(buffer, tone.astype(np.float32), 16000, format="FLAC")
    return buffer.getvalue()


def test_clips_are_stored_by_id_and_acked(run_ingest, device_links, sqlite_store, tmp_path):
    run_ingest()
    link = device_links("dev-1")
    flac = _flac()
    link.publish_clip("clip-1", flac)
    link.wait_for(lambda lk: "clip-1" in lk.acked_clips())
    link.publish_clip("clip-1", flac)  # re-sent: acked again, stored once
    link.wait_for(lambda lk: len(lk.acks) == 2)
    clip = sqlite_store.clip("clip-1")
    path = ClipStore(tmp_path / "clips").resolve(clip.path)
    assert path.read_bytes() == flac and clip.size_bytes == len(flac)
    assert clip.path.endswith("/dev-1/clip-1.flac")
    assert soundfile.info(path).samplerate == 16000
    assert sqlite_store.stats()["clips"] == 1


def test_status_updates_the_fleet_table(run_ingest, device_links, sqlite_store):
    running = run_ingest()
    link = device_links("dev-1")
    link.client.publish(
        status_topic("site-a", "dev-1"),
        encode(status(online=True, queue_depth=12, disk_free_bytes=5_000_000, bundle_id="b-7")),
        qos=1,
        retain=True,
    )
    _wait_until(lambda: running.workers[0].counters.statuses == 1)
    (device,) = sqlite_store.devices()
    assert (device.online, device.queue_depth, device.disk_free_bytes, device.bundle_id) == (
        True,
        12,
        5_000_000,
        "b-7",
    )


def test_times_at_the_range_edges_are_dead_letters_and_ingest_keeps_storing(
    run_ingest, device_links, sqlite_store
):
    """A valid ISO time whose UTC overflows killed paho's thread; a *retained* status with one
    killed every new worker. Now: dead letters, and the next batch is stored and acked."""
    link = device_links("dev-1")
    good = json.loads(encode(batch([detection(n=1)], seq=1)))
    good["detections"][0]["start_utc"] = "0001-01-01T00:00:00+01:00"
    retained = json.loads(encode(status()))
    retained["sent_utc"] = "9999-12-31T23:59:59-01:00"
    topic = status_topic("site-a", "dev-1")
    link.client.publish(topic, json.dumps(retained).encode(), qos=1, retain=True).wait_for_publish(
        10
    )  # retained before the worker subscribes: it gets it on its first connect
    running = run_ingest()
    link.publish_raw(detections_topic("site-a", "dev-1"), json.dumps(good).encode())
    after = batch([detection(n=2)], seq=2)
    link.publish_batch(after)
    link.wait_for(lambda lk: after.detections[0].id in lk.acked_ids())
    assert sqlite_store.dead_letter_counts() == {"invalid": 2}
    assert running.workers[0].network_alive
    link.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clear it


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_stops_the_worker_with_an_error(mosquitto, sqlite_store, tmp_path):
    """If paho's thread dies anyway (a bug in a callback), run() raises instead of idling on."""
    worker = IngestWorker(
        sqlite_store,
        ClipStore(tmp_path / "clips"),
        MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-dies"),
    ).start()
    assert worker.connected.wait(10)

    def broken_callback(*_):  # a fault injected into the real paho client
        raise RuntimeError("a callback bug")

    worker._client.on_message = broken_callback
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(threading.Event())
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    link = DeviceLink(mosquitto.host, mosquitto.port, "site-a", "dev-1")
    try:
        link.publish_batch(batch([detection(n=1)], seq=1))
        thread.join(15)
    finally:
        link.close()
    assert not thread.is_alive(), "run() kept going without a network thread"
    assert [type(e) for e in errors] == [NetworkThreadDied]
    assert "network thread died" in str(errors[0])


class _StopAfterCommit:
    """The real store; the first commit also asks the worker to stop (a SIGTERM right then)."""

    def __init__(self, store, stop: threading.Event) -> None:
        self.store, self.stop = store, stop

    def ingest(self, unit, limits=None):
        self.store.ingest(unit, limits)
        self.stop.set()

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_stop_right_after_a_commit_still_sends_all_of_its_acks(
    mosquitto, sqlite_store, device_links, tmp_path
):
    """60 acks from one commit: paho sends 20 at a time, and the disconnect dropped the rest."""
    stop = threading.Event()
    worker = IngestWorker(
        _StopAfterCommit(sqlite_store, stop),
        ClipStore(tmp_path / "clips"),
        MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-stop"),
        IngestSettings(flush_ms=10),
    ).start()
    assert worker.connected.wait(10)
    link = device_links("dev-1")
    sent = [batch([detection(n=seq)], seq=seq) for seq in range(60)]
    for b in sent:
        link.publish_batch(b)
    _wait_until(lambda: worker._inbox.qsize() == len(sent))  # all in one commit
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert worker.counters.flushes == 1
    link.wait_for(lambda lk: len(lk.acks) == len(sent))
    assert {a.seq for a in link.acks} == set(range(60))


def test_a_reused_id_with_other_content_is_a_conflict_and_the_first_row_stays(
    run_ingest, device_links, sqlite_store
):
    run_ingest()
    one, other = device_links("dev-1"), device_links("dev-2")
    original = detection(n=1)
    one.publish_batch(batch([original], seq=1))
    one.wait_for(lambda lk: original.id in lk.acked_ids())
    changed = original.model_copy(update={"score": 0.11, "species_id": "sp_frog"})
    one.publish_batch(batch([changed, detection(n=2)], seq=2))  # same id, other content
    hijack = original.model_copy(update={"device_id": "dev-2"})  # another device, same id
    other.publish_batch(batch([hijack], seq=1))
    one.publish_batch(batch([original], seq=3))  # a plain re-send: no conflict
    one.wait_for(lambda lk: {a.seq for a in lk.acks} == {1, 2, 3})
    other.wait_for(lambda lk: original.id in lk.acked_ids())  # kept as a dead letter: acked
    assert sqlite_store.detection(original.id).detection == original
    assert len(_all_rows(sqlite_store)) == 2
    assert sqlite_store.dead_letter_counts() == {"conflict": 2}
    letters = {d.topic: d for d in sqlite_store.dead_letters()}
    assert set(letters) == {
        detections_topic("site-a", "dev-1"),
        detections_topic("site-a", "dev-2"),
    }
    assert json.loads(letters[detections_topic("site-a", "dev-2")].payload)["device_id"] == "dev-2"


def test_a_clip_that_decodes_too_long_is_a_dead_letter_and_not_acked(
    run_ingest, device_links, sqlite_store
):
    run_ingest()
    link = device_links("dev-1")
    link.publish_clip("clip-long", silent_flac(30 * 60))  # 89 KB, 30 minutes
    link.publish_clip("clip-ok", _flac())
    link.wait_for(lambda lk: "clip-ok" in lk.acked_clips())
    assert "clip-long" not in link.acked_clips() and sqlite_store.clip("clip-long") is None
    assert sqlite_store.dead_letter_counts() == {"clip_too_long": 1}


def test_a_device_over_its_message_rate_is_dead_lettered_and_not_acked(
    run_ingest, device_links, sqlite_store
):
    """[limits] messages_per_device_minute: a flood from one device, the others unaffected."""
    run_ingest(limits=LimitSettings(messages_per_device_minute=10))
    flood, calm = device_links("dev-1"), device_links("dev-2")
    sent = [batch([detection(n=seq)], seq=seq) for seq in range(60)]
    for b in sent:
        flood.publish_batch(b)
    quiet = [batch([detection("dev-2", n=100 + seq)], seq=seq) for seq in range(5)]
    for b in quiet:
        calm.publish_batch(b)
    calm.wait_for(lambda lk: len(lk.acks) == len(quiet))
    _wait_until(
        lambda: len(flood.acks) + sqlite_store.dead_letter_counts().get("rate_limited", 0) == 60
    )
    limited = sqlite_store.dead_letter_counts()["rate_limited"]
    assert 10 <= len(flood.acks) < 60 and limited == 60 - len(flood.acks)  # refills: 1 per 6 s
    assert len(_all_rows(sqlite_store)) == len(flood.acks) + len(quiet)


def test_clip_bytes_per_device_and_day_are_bounded(run_ingest, device_links, sqlite_store):
    """[limits] clip_bytes_per_device_day: beyond it, a dead letter and no ack (re-sent later)."""
    flac = _flac()
    run_ingest(limits=LimitSettings(clip_bytes_per_device_day=int(2.5 * len(flac))))
    one, other = device_links("dev-1"), device_links("dev-2")
    for n in range(3):
        one.publish_clip(f"clip-{n}", flac)
    other.publish_clip("clip-other", flac)
    other.wait_for(lambda lk: "clip-other" in lk.acked_clips())
    _wait_until(lambda: sqlite_store.dead_letter_counts().get("clip_quota") == 1)
    one.wait_for(lambda lk: len(lk.acked_clips()) == 2)
    assert sqlite_store.stats()["clips"] == 3
    (letter,) = [d for d in sqlite_store.dead_letters() if d.reason == "clip_quota"]
    assert "daily limit" in letter.error and letter.topic.startswith("biovita/v1/site-a/dev-1/")


def test_a_reused_clip_id_with_other_bytes_or_from_another_device_is_a_conflict(
    run_ingest, device_links, sqlite_store, tmp_path
):
    """The first file stays; another device (or other bytes) under its id is a conflict dead
    letter, acked like a detection conflict; a plain re-send is still just acked."""
    run_ingest()
    one, other = device_links("dev-1"), device_links("dev-2")
    first = _flac()
    # one at a time, each acked before the next (a flush acks what it holds in one message)
    # the first file, other bytes under its id, a plain re-send
    for n, flac in enumerate((first, _flac(seconds=0.7), first), start=1):
        one.publish_clip("clip-1", flac)
        one.wait_for(lambda lk, n=n: len(lk.acks) == n)
    other.publish_clip("clip-1", _flac(seconds=0.9))  # another device, same id
    other.wait_for(lambda lk: "clip-1" in lk.acked_clips())
    clip = sqlite_store.clip("clip-1")
    assert clip.device_id == "dev-1"
    assert ClipStore(tmp_path / "clips").resolve(clip.path).read_bytes() == first
    assert sqlite_store.dead_letter_counts() == {"conflict": 2}
    assert {d.topic for d in sqlite_store.dead_letters()} == {
        clip_topic("site-a", "dev-1", "clip-1"),
        clip_topic("site-a", "dev-2", "clip-1"),
    }
