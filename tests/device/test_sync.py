"""MQTT store-and-forward through a real Mosquitto broker and a real acking peer."""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta, timezone

import pytest
import soundfile
import time_machine

from biovita.detection import DeviceStatus
from device.config import MqttSection
from device.store import Store
from device.sync import MqttSync
from tests.device.ack_peer import AckPeer
from tests.device.helpers import DaemonThread, run_config
from tests.device.test_store import _detection

pytestmark = pytest.mark.mqtt


def _mqtt(broker, **extra):
    return {"mqtt.enabled": True, "mqtt.host": broker.host, "mqtt.port": broker.port, **extra}


def _db(cfg) -> Store:
    return Store(cfg.store_path)


def _assert_delivered(cfg, n: int) -> None:
    """All ``n`` detections of the run reached the server and left the outbox."""
    store = _db(cfg)
    try:
        counts = store.counts()
    finally:
        store.close()
    assert counts["delivered"] == n and counts["outbox_detections"] == 0, counts


def test_every_detection_and_clip_is_delivered_and_marked_only_on_ack(
    mosquitto, tone_bundle, scape_file, tmp_path
):
    peer = AckPeer(mosquitto.host, mosquitto.port)
    path, truth = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_mqtt(mosquitto, **{"mqtt.ha_discovery": True}))
    runner = DaemonThread(cfg).start()
    runner.join()
    store = _db(cfg)
    try:
        counts = store.counts()
        assert counts["detections"] == 4
        assert counts["outbox_detections"] == counts["outbox_clips"] == 0
        assert counts["delivered"] == 4
        ids = {r["id"] for r in store.recent(10)}
    finally:
        store.close()
    assert set(peer.stored) == ids
    assert sorted(d.species_id for d in peer.stored.values()) == ["sp00", "sp01", "sp02", "sp03"]
    assert [b.seq for b in peer.batches] == sorted(b.seq for b in peer.batches)
    for clip_id, data in peer.clips.items():
        audio, rate = soundfile.read(io.BytesIO(data))
        assert rate == 16_000 and 2.0 < len(audio) / rate < 10.0, clip_id
    assert {d.clip_id for d in peer.stored.values()} == set(peer.clips)
    # retained status: online while running, offline (clean stop) at the end
    assert peer.statuses[0].online and not peer.statuses[-1].online
    assert peer.statuses[-1].queue_depth == 0
    assert any(t.endswith("/queue_depth/config") for t in peer.extra)
    peer.close()


def test_rows_stay_queued_without_an_ack_and_go_when_the_server_comes_back(
    mosquitto, tone_bundle, scape_file, tmp_path
):
    silent = AckPeer(mosquitto.host, mosquitto.port, acking=False)  # a server that is down
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_mqtt(mosquitto))
    DaemonThread(cfg).start().join()
    store = _db(cfg)
    assert store.counts()["outbox_detections"] == 4  # PUBACK alone never clears a row
    assert store.counts()["delivered"] == 0
    store.close()
    silent.close()

    # restart: a new daemon run (on one second of silence) resumes the old outbox
    peer = AckPeer(mosquitto.host, mosquitto.port)
    quiet = path.with_name("quiet.wav")
    soundfile.write(quiet, [0.0] * 16_000, 16_000)
    cfg2 = run_config(tmp_path, tone_bundle, quiet, **_mqtt(mosquitto))
    runner = DaemonThread(cfg2).start()
    peer.wait(lambda: len(peer.stored) == 4, 30, "the old outbox at the server")
    runner.join()  # the final drain waited for the connection and the acks
    _assert_delivered(cfg2, 4)
    peer.close()


def test_the_final_drain_waits_for_a_connection_still_being_made(
    mosquitto, tone_bundle, scape_file, tmp_path
):
    """A short ``listen --file`` that ends before its first connect still syncs in the run."""
    path, _ = scape_file
    mosquitto.stop()  # the connect is still under way (a slow TLS/WAN link) when the file ends
    cfg = run_config(
        tmp_path, tone_bundle, path, **_mqtt(mosquitto, **{"mqtt.flush_timeout_s": 20})
    )
    runner = DaemonThread(cfg).start()
    AckPeer.wait(runner.daemon.stop_event.is_set, 30, "the end of the file source")
    mosquitto.start()
    peer = AckPeer(mosquitto.host, mosquitto.port)
    runner.join()
    _assert_delivered(cfg, 4)
    assert len(peer.stored) == 4
    peer.close()


HOSTILE_ACKS = [
    b"",
    b"\xff\xfe not utf-8",
    b"[" * 100_000,
    b'{"schema": "biovita.acks", "schema_version": 1}',
    b'{"schema": "biovita.acks", "schema_version": 99, "device_id": "rec-7"}',
    # a valid ISO time at the edge of the range: _utc overflows (OverflowError, not a ValueError)
    b'{"schema": "biovita.acks", "schema_version": 1, "device_id": "rec-7", "ids": [],'
    b' "stored_utc": "9999-12-31T23:59:59-01:00"}',
    b'{"schema": "biovita.acks", "schema_version": 1, "device_id": "someone-else", "ids": []}',
    b"x" * (1 << 20),
]


def test_malformed_acks_are_rejected_and_counted_and_never_stop_the_sync(
    mosquitto, tone_bundle, scape_file, tmp_path
):
    peer = AckPeer(mosquitto.host, mosquitto.port, hostile=HOSTILE_ACKS)  # before every real ack
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_mqtt(mosquitto))
    runner = DaemonThread(cfg).start()
    runner.join()
    _assert_delivered(cfg, 4)
    sync = runner.daemon.sync
    assert sync.acks_rejected >= len(HOSTILE_ACKS) and sync.acks_received >= 1
    assert runner.returncode == 0
    peer.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_stops_the_daemon_with_a_failure(mosquitto, tone_bundle, tmp_path):
    """paho's thread dies (here: a callback that raises); the daemon exits 1 for systemd."""
    from tests.support.tiny_bundle import tone_scape

    audio, _ = tone_scape([(1.0 + 2.5 * i, i % 4) for i in range(12)], 31.0, seed=5)
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, 48_000)
    peer = AckPeer(mosquitto.host, mosquitto.port)
    cfg = run_config(tmp_path, tone_bundle, path, **_mqtt(mosquitto, **{"audio.realtime": True}))
    runner = DaemonThread(cfg).start()
    sync = runner.daemon.sync
    AckPeer.wait(sync.connected.is_set, 20, "the device's connection")

    def broken(*args):
        raise RuntimeError("a bug in a paho callback")

    sync.client.on_publish = broken  # paho re-raises it on the next PUBACK: its thread ends
    runner.join(60)
    assert runner.returncode == 1
    assert runner.daemon.failure == "the MQTT network thread died"
    assert "close store" in runner.daemon.steps_done  # the stop still ran to the end
    peer.close()


def _status(online: bool) -> DeviceStatus:
    return DeviceStatus(device_id="rec-1", site_id="marsh", online=online)


def test_a_backward_wall_clock_step_neither_delays_resends_nor_lets_newer_rows_overtake(
    mosquitto, tmp_path
):
    silent = AckPeer(mosquitto.host, mosquitto.port, acking=False)  # nothing is ever acked
    store = Store(tmp_path / "log.db")
    older, newer = [_detection(i) for i in range(2)], [_detection(i) for i in range(2, 4)]
    store.add(older)
    cfg = MqttSection(
        host=mosquitto.host, port=mosquitto.port, batch_size=2, ack_timeout_s=1.0,
        reconnect_min_s=0.2, reconnect_max_s=1.0,
    )  # fmt: skip
    sync = MqttSync(store, cfg, "rec-1", "marsh", _status)
    sync.start()
    try:
        silent.wait(lambda: len(silent.received) >= 1, 20, "the first batch")
        # an NTP correction (or a dead RTC battery) steps the wall clock an hour back
        with time_machine.travel(datetime.now(timezone.utc) - timedelta(hours=1), tick=True):
            store.add(newer)
            sync.wake()
            silent.wait(lambda: len(silent.received) >= 2, 20, "a second batch")
        first, second = silent.received[:2]
        assert [d.id for d in first.detections] == [d.id for d in older]
        assert [d.id for d in second.detections] == [d.id for d in older]  # re-sent, first
    finally:
        sync.stop()
        store.close()
        silent.close()


def test_broker_stopped_and_restarted_mid_run_loses_nothing(mosquitto, tone_bundle, tmp_path):
    """A live (paced) stream keeps detecting while the broker is down; all arrive, once acked."""
    from tests.support.tiny_bundle import tone_scape

    audio, truth = tone_scape([(1.0 + 2.5 * i, i % 4) for i in range(8)], 21.0, seed=3)
    path = tmp_path / "live.wav"
    soundfile.write(path, audio, 48_000)
    peer = AckPeer(mosquitto.host, mosquitto.port)
    cfg = run_config(
        tmp_path,
        tone_bundle,
        path,
        **_mqtt(mosquitto, **{"audio.realtime": True, "audio.speed": 2.0}),
    )
    runner = DaemonThread(cfg).start()
    peer.wait(lambda: len(peer.stored) >= 1, 20, "a first delivered detection")
    mosquitto.stop()
    during = len(peer.stored)
    time.sleep(3.0)  # the stream goes on; detections pile up in the outbox
    mosquitto.start()
    runner.join(60)
    store = _db(cfg)
    try:
        ids = {r["id"] for r in store.recent(100)}
        counts = store.counts()
    finally:
        store.close()
    assert len(ids) >= 7 and during < len(ids)  # most were detected while the broker was down
    assert set(peer.stored) == ids  # every one reached the server ...
    assert counts["delivered"] == len(ids) and counts["outbox_detections"] == 0  # ... and was acked
    seqs = [b.seq for b in peer.batches]
    assert seqs == sorted(seqs)  # batches arrive in outbox order
    peer.close()


def test_status_is_retained_and_the_last_will_says_offline(
    mosquitto, tone_bundle, scape_file, tmp_path
):
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_mqtt(mosquitto))
    runner = DaemonThread(cfg).start()
    runner.join()
    late = AckPeer(mosquitto.host, mosquitto.port)  # subscribes after the fact: retained
    late.wait(lambda: late.statuses, 5, "the retained status")
    status = late.statuses[-1]
    assert isinstance(status, DeviceStatus) and not status.online
    assert status.device_id == "rec-7" and status.bundle_id
    late.close()
