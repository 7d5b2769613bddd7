"""Fault tests: kill -9, SIGTERM, bad files mid-stream, a stalled source, a damaged database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from device.sources import StdinSource
from device.store import Store, StoreError
from device.stream import WatchedStream
from tests.device.helpers import DaemonThread, run_config
from tests.device.test_offline import _write_bad_files
from tests.support.tiny_bundle import tone_scape

REPO = Path(__file__).resolve().parents[2]


def _listen_cmd(bundle: Path, audio: Path, data: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "device.cli", "listen",
        "--bundle", str(bundle), "--file", str(audio), "--no-mqtt",
        "--set", f'device.data_dir="{data}"', *extra,
    ]  # fmt: skip


def _committed_ids(db: Path) -> set[str]:
    """What a reader sees as committed right now (read-only, beside the writer: WAL)."""
    if not db.exists():
        return set()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return {r[0] for r in conn.execute("SELECT id FROM detections")}
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the writer is creating the schema right now
        return set()


def _busy_scape(tmp_path: Path, calls: int = 16, seed: int = 0) -> Path:
    audio, _ = tone_scape(
        [(1.0 + 2.5 * i, i % 4) for i in range(calls)], 2.5 * calls + 1, seed=seed
    )
    path = tmp_path / "busy.wav"
    soundfile.write(path, audio, 48_000)
    return path


def test_kill_9_mid_run_loses_no_committed_row(tone_bundle, tmp_path, capsys):
    data = tmp_path / "data"
    db = data / "biovita-field.db"
    audio = _busy_scape(tmp_path)
    proc = subprocess.Popen(
        _listen_cmd(tone_bundle, audio, data, "--set", "audio.speed=4.0"),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        while len(seen) < 4 and time.monotonic() < deadline and proc.poll() is None:
            seen = _committed_ids(db)
            time.sleep(0.1)
        assert len(seen) >= 4, proc.stderr.read().decode() if proc.poll() is not None else ""
        seen = _committed_ids(db)  # the last snapshot before the kill
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    store = Store(db)  # integrity check passes on the WAL database left behind
    try:
        after = {r["id"] for r in store.recent(1000)}
        assert seen <= after  # every row a reader saw committed survived
        assert store.counts()["outbox_detections"] == len(after)  # and is still queued for sync
        assert store.detections(sorted(after))  # payloads still parse as Detection records
    finally:
        store.close()
    from device.cli import main

    assert main(["status", "--db", str(db)]) == 0
    assert "gone without a clean stop" in capsys.readouterr().out
    # the next run opens the same database and carries on
    rerun = subprocess.run(
        _listen_cmd(tone_bundle, audio, data, "--fast"), cwd=REPO, capture_output=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert after < _committed_ids(db)


def _start_listening(bundle: Path, tmp_path: Path, data: Path, seed: int) -> subprocess.Popen:
    """A paced ``listen`` process, returned once it has committed its first detection."""
    audio = _busy_scape(tmp_path, calls=12, seed=seed)
    proc = subprocess.Popen(
        _listen_cmd(bundle, audio, data, "--set", "audio.speed=4.0"),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _committed_ids(data / "biovita-field.db") and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_gracefully_with_a_final_commit(tone_bundle, tmp_path, sig):
    """SIGHUP stops as cleanly as SIGTERM (exit 0); systemd's Restart=always brings it back."""
    data = tmp_path / "data"
    proc = _start_listening(tone_bundle, tmp_path, data, seed=1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    log = err.decode()
    assert proc.returncode == 0, log
    assert f"stopping: {sig.name}" in log and "listen stop" in log
    store = Store(data / "biovita-field.db")
    try:
        import json

        heartbeat = json.loads(store.get_meta("daemon"))
        assert heartbeat["running"] is False
        assert store.counts()["detections"] >= 1
    finally:
        store.close()


def test_a_second_listen_on_the_same_data_folder_is_refused(tone_bundle, scape_file, tmp_path):
    data = tmp_path / "data"
    first = _start_listening(tone_bundle, tmp_path, data, seed=4)
    try:
        second = subprocess.run(
            _listen_cmd(tone_bundle, scape_file[0], data, "--fast"),
            cwd=REPO, capture_output=True, timeout=120,
        )  # fmt: skip
        assert first.poll() is None  # the first one was not disturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    err = second.stderr.decode()
    assert second.returncode == 2, err
    assert f"another biovita-field daemon (pid {first.pid})" in err and "hint:" in err
    assert first.returncode == 0


def test_listen_skips_bad_files_and_goes_on_with_the_next(
    tone_bundle, scape_file, tmp_path, caplog
):
    folder = tmp_path / "card"
    folder.mkdir()
    expected = _write_bad_files(folder)
    good, _ = scape_file
    (folder / "z_good.wav").write_bytes(good.read_bytes())
    cfg = run_config(tmp_path, tone_bundle, folder)
    with caplog.at_level("ERROR"):
        DaemonThread(cfg).start().join()
    logged = caplog.text
    for name, words in expected.items():
        assert name in logged and words in logged, name
    store = Store(cfg.store_path)
    try:
        species = sorted(r["species_id"] for r in store.recent(100))
    finally:
        store.close()
    assert species == ["sp00", "sp01", "sp02", "sp03"]


def test_a_stalled_source_is_reopened_by_the_watchdog():
    """A real pipe that stops delivering (a hung capture process) is noticed and re-opened."""
    opened: list[int] = []

    def open_source():
        read_fd, write_fd = os.pipe()
        opened.append(read_fd)
        pcm = (np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes()  # 0.5 s at 16 kHz

        def feed():
            os.write(write_fd, pcm)  # then silence on the pipe, but the writer stays open
            time.sleep(5)
            os.close(write_fd)

        threading.Thread(target=feed, daemon=True).start()
        return StdinSource(16_000, 16_000, block_s=0.25, stream=os.fdopen(read_fd, "rb"))

    stream = WatchedStream(open_source, watchdog_s=0.6)
    blocks = []
    started = time.monotonic()
    for block in stream.blocks():
        blocks.append(block)
        if stream.reopens >= 2 or time.monotonic() - started > 10:
            stream.stop_event.set()
    assert stream.reopens >= 2 and len(opened) >= 3
    firsts = [b for b in blocks if b.discontinuity]
    assert len(firsts) >= 2  # the first block after each re-open is marked
    starts = [b.start_sample for b in blocks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # one counter, no reuse


def test_a_damaged_database_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "log.db"
    store = Store(db)
    store.close()
    raw = bytearray(db.read_bytes())
    raw[100:4096] = os.urandom(3996)  # trash the schema page
    db.write_bytes(bytes(raw))
    before = db.read_bytes()
    with pytest.raises(StoreError) as err:
        Store(db)
    assert "move it aside" in err.value.hint or "move the file aside" in err.value.hint
    assert db.read_bytes() == before


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    db = tmp_path / "log.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(db)


def test_a_nearly_full_disk_stops_clips_then_the_daemon_cleanly(
    tone_bundle, scape_file, tmp_path, caplog
):
    path, _ = scape_file
    huge = 1 << 40  # MiB: more free space than any disk has
    cfg = run_config(
        tmp_path, tone_bundle, path, **{"store.min_free_mb": huge, "clips.min_free_mb": huge}
    )
    runner = DaemonThread(cfg)
    with caplog.at_level("WARNING"):
        runner.start().join()
    assert runner.daemon.stop_reason == "disk nearly full"
    assert "stopping cleanly before the disk is full" in caplog.text
    Store(cfg.store_path).close()  # left consistent


def test_queued_windows_are_batched_when_inference_falls_behind(tone_bundle, scape_file, tmp_path):
    """Played as fast as possible, audio always waits for inference: windows go in batches."""
    path, _ = scape_file
    runner = DaemonThread(run_config(tmp_path, tone_bundle, path, **{"inference.max_batch": 8}))
    runner.start().join()
    pipeline = runner.daemon.pipeline
    assert pipeline.windows_classified == 19
    assert pipeline.batches < pipeline.windows_classified / 2
