"""The daemon's composition and its stop sequence, on real parts (tiny bundle, SQLite, a file)."""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
import soundfile

from device.app import build_daemon
from device.clips import ClipRecorder
from device.config import DeviceConfig
from device.lock import DataDirLock
from device.pipeline import Pipeline
from device.store import Store, StoreError
from device.stream import WatchedStream
from tests.device.ack_peer import AckPeer
from tests.device.helpers import DaemonThread, run_config
from tests.device.test_faults import _busy_scape

STOP_STEPS = [
    "stop capture",
    "commit",
    "drain",
    "publish offline",
    "heartbeat",
    "close store",
    "release data folder",
    "restore signal handlers",
]


@pytest.fixture
def short_file(tmp_path: Path) -> Path:
    path = tmp_path / "quiet.wav"
    soundfile.write(path, [0.0] * 32_000, 16_000)
    return path


def test_the_stop_runs_every_step_in_order_and_restores_the_signal_handlers(
    tone_bundle, short_file, tmp_path
):
    cfg = run_config(tmp_path, tone_bundle, short_file)
    daemon = build_daemon(cfg)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    daemon.install_signal_handlers()
    assert signal.getsignal(signal.SIGHUP) == daemon._on_signal
    assert daemon.run() == 0
    assert daemon.steps_done == STOP_STEPS
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        daemon.store.queue_depth()
    DataDirLock(cfg.device.data_dir).acquire().release()  # the folder is free again
    store = Store(cfg.store_path)
    try:
        heartbeat = json.loads(store.get_meta("daemon"))
    finally:
        store.close()
    assert heartbeat["running"] is False and heartbeat["stop_reason"] == "the audio source ended"


def test_a_second_daemon_on_the_same_data_folder_is_refused_and_names_the_first(
    tone_bundle, short_file, tmp_path
):
    cfg = run_config(tmp_path, tone_bundle, short_file)
    first = build_daemon(cfg)
    with pytest.raises(StoreError) as err:
        build_daemon(cfg)
    assert f"pid {os.getpid()}" in str(err.value) and str(cfg.device.data_dir) in str(err.value)
    assert "device.data_dir" in err.value.hint
    assert first.run() == 0
    build_daemon(cfg).run()  # once the first has stopped, the folder is free


def test_a_failed_build_leaves_the_data_folder_unlocked(tone_bundle, short_file, tmp_path):
    cfg = run_config(tmp_path, tone_bundle, short_file)
    cfg.store_path.parent.mkdir(parents=True)
    cfg.store_path.write_bytes(b"not a database" * 1000)  # fails after the lock was taken
    with pytest.raises(StoreError, match="cannot open the device database"):
        build_daemon(cfg)
    DataDirLock(cfg.device.data_dir).acquire().release()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_while_running_stops_the_daemon_and_keeps_its_rows(
    tone_bundle, tmp_path, how
):
    audio = _busy_scape(tmp_path, calls=16, seed=2)
    cfg = run_config(tmp_path, tone_bundle, audio, **{"audio.realtime": True, "audio.speed": 4.0})
    runner = DaemonThread(cfg).start()
    AckPeer.wait(lambda: runner.daemon.detections >= 2, 60, "two committed detections")
    db = cfg.store_path
    if how == "deleted":
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
    else:
        other = db.with_name("other.db")
        Store(other).close()
        os.replace(other, db)
    with pytest.raises(StoreError, match=f"was {how}"):
        runner.join()
    assert "close store" in runner.daemon.steps_done  # the stop still ran to the end
    (orphan,) = db.parent.glob(f"{db.name}.orphaned-*")
    rescued = Store(orphan)
    try:
        assert rescued.counts()["detections"] >= 2  # every row it held is kept
    finally:
        rescued.close()


@pytest.mark.parametrize(
    ("target", "parameter", "section_key"),
    [
        (Pipeline, "max_batch", "inference.max_batch"),
        (Pipeline, "silence_dbfs", "classify.silence_dbfs"),
        (WatchedStream, "watchdog_s", "windows.watchdog_s"),
        (ClipRecorder, "max_clip_s", "clips.max_clip_s"),
        (ClipRecorder, "quota_bytes", "clips.quota_mb"),
        (ClipRecorder, "pre_roll_s", "clips.pre_roll_s"),
    ],
)
def test_a_config_key_has_its_default_in_the_config_only(target, parameter, section_key):
    """A constructor default beside the config's is a second source of truth (32 against 8)."""
    default = inspect.signature(target).parameters[parameter].default
    section, key = section_key.split(".")
    assert key in type(getattr(DeviceConfig(), section)).model_fields
    assert default is inspect.Parameter.empty, f"{target.__name__}({parameter}={default!r})"
