"""Fault suite: the chain keeps every committed detection, exactly once, through kill -9 of the
device daemon, kill -9 of the server's ingest, a broker outage (once losing its whole
persistence store) and a full disk. Real processes on loopback, bounded in time."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.e2e import ledger
from tests.e2e.chain import (
    DeviceDb,
    PcmFeeder,
    ServerDb,
    Service,
    ingest_service,
    integrity,
    listen_service,
    wait_until,
)
from tests.support.mosquitto import MosquittoBroker, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt]

SITE = "site-f"
SEED = 20261123


@dataclass
class Chain:
    broker: object
    ingest: Service
    server: ServerDb
    root: Path

    def device(
        self, kit, device_id: str, source: list[str], data_dir: Path | None = None, **sets
    ) -> Service:
        return listen_service(
            kit.bundle,
            data_dir or self.root / device_id,
            device_id,
            SITE,
            self.broker.host,
            self.broker.port,
            source,
            sets,
            stdin=subprocess.PIPE if "--stdin-rate" in source else subprocess.DEVNULL,
        )


@pytest.fixture
def chain(mosquitto, tmp_path):
    data = tmp_path / "server"
    ingest = ingest_service(data, mosquitto.host, mosquitto.port, tmp_path / "ingest.log").start()
    ingest.wait_for_log("connected to")
    yield Chain(mosquitto, ingest, ServerDb(data), tmp_path)
    ingest.stop()


def stdin_source(kit) -> list[str]:
    return ["--stdin-rate", str(kit.rate)]


def assert_delivered_exactly_once(chain: Chain, device_id: str, db: DeviceDb) -> None:
    """Every row the device committed is on the server once, and the server has nothing else."""
    device_ids = db.ids()
    server_ids = chain.server.ids(device_id)
    lost = len(set(device_ids) - set(server_ids))
    phantoms = len(set(server_ids) - set(device_ids))
    duplicated = chain.server.duplicates()
    ledger.rows(len(device_ids), lost, duplicated)
    assert device_ids, "the run produced no detections: the fault was not exercised"
    assert (lost, phantoms, duplicated) == (0, 0, 0)
    assert len(server_ids) == len(device_ids)


def drain(chain: Chain, kit, device_id: str, db: DeviceDb, timeout: float = 60.0, **sets) -> None:
    """Restart the daemon on a quiet live stream until the server has acked its whole outbox,
    then end the stream (the daemon stops by itself, as at the end of any source)."""
    daemon = chain.device(kit, device_id, stdin_source(kit), data_dir=db.path.parent, **sets)
    feeder = PcmFeeder(np.zeros(kit.rate, np.float32), kit.rate, speed=1.0)
    feeder.attach(daemon.start())
    try:
        wait_until(lambda: db.outbox_detections() == 0, timeout, f"{device_id} outbox drained")
    finally:
        feeder.close()
        assert daemon.wait(30) == 0, daemon.log_text()[-3000:]


# ---------------------------------------------------------------------- kill -9 of the device


def test_device_daemon_killed_at_random_moments(chain, field_kit):
    """kill -9 at >= 10 random moments of a soundscape run, restarting each time."""
    rng = random.Random(SEED)
    device_id = "dev-kill"
    # paced at 30x real time: the 2-minute run lasts 4 s on any machine, so every kill lands
    daemon = chain.device(
        field_kit, device_id, ["--file", str(field_kit.soundscapes[0])], **{"audio.speed": 30.0}
    )
    db = DeviceDb(chain.root / device_id / "device.db")
    committed: set[str] = set()
    kills = attempts = 0
    while kills < 12 and attempts < 30:
        attempts += 1
        daemon.start()
        time.sleep(rng.uniform(0.5, 4.5))
        if not daemon.alive:  # it finished the file before the chosen moment: not a kill
            assert daemon.wait(10) == 0, daemon.log_text()[-3000:]
            continue
        daemon.kill9()
        kills += 1
        assert integrity(db.path) == "ok"
        stored = set(db.ids())
        logged = set(daemon.logged_detection_ids())
        assert logged <= stored, f"{len(logged - stored)} announced commits missing after kill"
        assert committed <= stored, f"{len(committed - stored)} committed rows vanished"
        committed = stored
    assert kills >= 10, f"only {kills} kills landed in {attempts} runs"
    ledger.fault("kill -9 device daemon", kills)
    drain(chain, field_kit, device_id, db)
    assert integrity(db.path) == "ok"
    assert_delivered_exactly_once(chain, device_id, db)


# ----------------------------------------------------------------- kill -9 of the server ingest


def scape_audio(kit, n: int) -> np.ndarray:
    audio, _ = soundfile.read(kit.soundscapes[n], dtype="float32")
    return audio


def stream(chain: Chain, kit, device_id: str, scape: int, speed: float) -> tuple:
    """A device listening to soundscape ``scape`` played live, ``speed`` x real time."""
    daemon = chain.device(kit, device_id, stdin_source(kit)).start()
    feeder = PcmFeeder(scape_audio(kit, scape), kit.rate, speed=speed).attach(daemon)
    return daemon, feeder, DeviceDb(chain.root / device_id / "device.db")


def finish(chain: Chain, device_id: str, daemon: Service, feeder: PcmFeeder, db: DeviceDb):
    """Let the stream play out and the outbox drain, then end the stream."""
    try:
        assert feeder.played.wait(120), "the stream did not play out"
        wait_until(lambda: db.outbox_detections() == 0, 60, f"{device_id} outbox drained")
    finally:
        feeder.close()
    assert daemon.wait(30) == 0, daemon.log_text()[-3000:]
    assert integrity(db.path) == "ok"


def test_server_ingest_killed_and_restarted_mid_stream(chain, field_kit):
    """No loss, no duplicates, and an ack never arrives for a row the server has not stored."""
    rng = random.Random(SEED + 1)
    device_id = "dev-ingest"
    daemon, feeder, db = stream(chain, field_kit, device_id, scape=0, speed=12.0)
    kills = 0
    try:
        for _ in range(3):
            time.sleep(rng.uniform(1.5, 3.0))
            chain.ingest.kill9()
            kills += 1
            # acks consistent: whatever the device was told is stored IS stored
            delivered = db.delivered_ids()
            assert delivered <= set(chain.server.ids(device_id))
            time.sleep(rng.uniform(0.2, 1.5))  # the device keeps detecting, nobody ingests
            chain.ingest.start()
    finally:
        finish(chain, device_id, daemon, feeder, db)
    ledger.fault("kill -9 server ingest", kills)
    assert db.delivered_ids() == set(db.ids())
    assert_delivered_exactly_once(chain, device_id, db)


# ----------------------------------------------------------------------- the broker goes away


@pytest.mark.parametrize("wipe", [False, True], ids=["restart", "restart-empty-store"])
def test_broker_outage_then_everything_delivered(chain, field_kit, wipe):
    """Two devices stream while the broker is down for a few seconds (and, once, comes back
    without its persistence store: every queued message and session gone)."""
    devices = {f"dev-b{n}": stream(chain, field_kit, f"dev-b{n}", n, speed=12.0) for n in (0, 1)}
    try:
        time.sleep(2.0)
        chain.broker.stop()
        time.sleep(3.0)  # the devices keep detecting into their outboxes
        if wipe:
            chain.broker.wipe()
        chain.broker.start()
        ledger.fault("broker restart (empty store)" if wipe else "broker restart")
    finally:
        for device_id, (daemon, feeder, db) in devices.items():
            finish(chain, device_id, daemon, feeder, db)
    for device_id, (_, _, db) in devices.items():
        assert_delivered_exactly_once(chain, device_id, db)
        late = overtaken(chain.server.ids(device_id), db.ids())
        ledger.order(late)
        assert late == 0, f"{device_id}: {late} rows stored behind rows committed after them"


def overtaken(stored: list[str], committed: list[str]) -> int:
    """Rows the server stored after a row the device had committed later.

    After a broker restart Mosquitto 2.0 has forgotten the ingest's shared subscription until
    the worker re-subscribes, so what devices publish in between is dropped at the broker and
    only arrives with the device's re-send. The device keeps one batch in flight
    (mqtt.max_inflight_batches = 1), so that re-send goes out before anything newer: order holds.
    """
    position = {row: n for n, row in enumerate(committed)}
    latest, late = -1, 0
    for row in stored:
        if position[row] < latest:
            late += 1
        latest = max(latest, position[row])
    return late


# --------------------------------------------------------------------------- the disk fills up


@pytest.fixture
def sd_card(tmp_path):
    """A real 8 MiB file system (tmpfs) for the recorder's data folder, so "disk full" is the
    kernel's ENOSPC and not a simulation."""
    mount = tmp_path / "sd"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A ballast file that leaves about ``leave_bytes`` free on ``disk``."""
    ballast = disk / "ballast"
    ballast.unlink(missing_ok=True)
    size = max(0, shutil.disk_usage(disk).free - leave_bytes)
    with open(ballast, "wb") as f:
        for _ in range(size // (1 << 16)):
            f.write(bytes(1 << 16))
        with contextlib.suppress(OSError):
            f.write(bytes(size % (1 << 16)))
    return ballast


def test_disk_full_degrades_as_designed_without_damage(chain, field_kit, sd_card):
    scape = ["--file", str(field_kit.soundscapes[1]), "--fast"]
    device_id = "dev-disk"
    data = sd_card / device_id
    db = DeviceDb(data / "device.db")

    # free-space floors scaled to an 8 MiB card (the defaults, 20 and 200 MiB, suit an SD card)
    floors = {"store.min_free_mb": 0.5, "clips.min_free_mb": 0.5}

    def run(**sets) -> Service:
        daemon = listen_service(
            field_kit.bundle, data, device_id, SITE, chain.broker.host, chain.broker.port,
            scape, {"mqtt.enabled": False, **floors, **sets},
        )  # fmt: skip
        daemon.start().wait(120)
        return daemon

    # 1. the clip quota fills with clips the server has not acknowledged (no link): clip
    #    recording pauses, detections keep flowing
    quota = run(**{"clips.quota_mb": 0.25})
    assert quota.process.returncode == 0, quota.log_text()[-3000:]
    assert "clip recording paused: clip quota" in quota.log_text()
    rows, with_clip = len(db.ids()), len(db.clip_ids())
    assert 0 < with_clip < rows
    assert sum(f.stat().st_size for f in (data / "clips").rglob("*.flac")) <= 0.25 * (1 << 20)
    ledger.fault("clip quota full")

    # 2. the card is nearly full: the daemon refuses to go on and stops cleanly
    ballast = fill(sd_card, leave_bytes=1 << 20)
    low = run(**{"store.min_free_mb": 2.0})
    assert low.process.returncode == 0, low.log_text()[-3000:]
    assert "stopping cleanly before the disk is full" in low.log_text()
    assert integrity(db.path) == "ok" and len(db.ids()) >= rows
    ledger.fault("disk below the floor")

    # 3. the card is really full (something else filled it between two checks): SQLite gets
    #    ENOSPC. The daemon stops with an error a person can act on, nothing committed is lost
    #    and the file stays sound.
    before = set(db.ids())
    fill(sd_card, leave_bytes=0)
    full = run(**{"store.min_free_mb": 0.0, "clips.min_free_mb": 0.0})
    ballast.unlink()
    assert integrity(db.path) == "ok"
    assert before <= set(db.ids()) and set(full.logged_detection_ids()) <= set(db.ids())
    assert "Traceback" not in full.log_text(), full.log_text()[-3000:]
    ledger.fault("disk full (ENOSPC)")

    # 4. room again: everything recorded through all of it reaches the server, exactly once
    drain(chain, field_kit, device_id, db, **floors)
    assert_delivered_exactly_once(chain, device_id, db)


# ------------------------------------------------------------------- a clean stop mid-stream


def test_sigterm_mid_live_stream_is_a_clean_stop(chain, field_kit):
    """systemd stops the daemon with SIGTERM while it reads a live stream (stdin here): it must
    commit, say goodbye and exit 0, not abort with its reader thread still blocked on stdin."""
    for run in range(3):  # the reader is blocked in read() at a random moment: try a few
        daemon = chain.device(
            field_kit, "dev-term", [*stdin_source(field_kit), "--no-mqtt"]
        ).start()
        feeder = PcmFeeder(scape_audio(field_kit, 1), field_kit.rate, speed=1.0).attach(daemon)
        try:
            # the runs share one log file: wait for THIS run's start line (one per run), or the
            # SIGTERM may land before the handlers are installed on a slow, loaded machine
            wait_until(lambda d=daemon, n=run: d.log_text().count("listen start") > n, 60, "start")
            time.sleep(1.0 + run)
            assert daemon.stop() == 0, daemon.log_text()[-2000:]
        finally:
            feeder.close()
        assert "listen stop reason='SIGTERM'" in daemon.log_text()
        ledger.fault("SIGTERM mid-stream")
    assert integrity(chain.root / "dev-term" / "device.db") == "ok"


def test_ingest_logs_a_wrong_broker_address_keeps_retrying_and_connects_once_it_answers(
    tmp_path,
):
    """Nothing listens at the configured address: ingest says so (address and reason) instead of
    waiting in silence, stays up, and connects as soon as a broker answers there."""
    port = free_port()
    service = ingest_service(tmp_path / "server", "127.0.0.1", port, tmp_path / "ingest.log")
    with service as ingest:
        ingest.wait_for_log(rf"cannot connect to the broker at 127\.0\.0\.1:{port} \(\w+Error")
        assert ingest.alive, ingest.log_text()[-2000:]
        with MosquittoBroker(tmp_path / "mosquitto", port=port):
            ingest.wait_for_log("connected to", timeout=60)  # the back-off is at most 30 s
    assert "Traceback" not in service.log_text()


def test_a_service_left_running_by_a_failing_test_is_stopped(tmp_path):
    """The clean-up the fuzz test lacked: a service used as a context manager ends however the
    block ends, and ``stop_leftovers`` ends one that was only started."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    scoped = Service("scoped", sleeper, tmp_path / "scoped.log")
    with pytest.raises(AssertionError), scoped:
        raise AssertionError("the test failed half-way")
    assert not scoped.alive
    shared = Service("a module fixture's", sleeper, tmp_path / "shared.log").start()
    forgotten = Service("forgotten", sleeper, tmp_path / "forgotten.log").start()
    try:
        assert Service.stop_leftovers(keep={shared}) == ["forgotten"]
        assert not forgotten.alive and shared.alive  # the next test of the module still uses it
    finally:
        shared.stop()
