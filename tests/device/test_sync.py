"""MQTT store-and-forward through a real Mosquitto broker and a real acking peer."""

from __future__ import annotations

import io
import time

import pytest
import soundfile

from biovita.detection import DeviceStatus
from device.store import Store
from tests.device.ack_peer import AckPeer
from tests.device.helpers import DaemonThread, run_config

pytestmark = pytest.mark.mqtt


def _mqtt(broker, **extra):
    return {"mqtt.enabled": True, "mqtt.host": broker.host, "mqtt.port": broker.port, **extra}


def _db(cfg) -> Store:
    return Store(cfg.store_path)


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
    runner.join()
    store = _db(cfg2)
    try:
        assert store.counts()["outbox_detections"] == 0
        assert store.counts()["delivered"] == 4
    finally:
        store.close()
    assert len(peer.stored) == 4
    peer.close()


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
