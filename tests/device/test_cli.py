"""`status` and `doctor` against real parts: the SQLite log, ONNX Runtime, PortAudio, Mosquitto."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from device.cli import main
from tests.device.helpers import DaemonThread, run_config


def test_status_reports_the_log_and_the_last_run(tone_bundle, scape_file, tmp_path, capsys):
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path)
    DaemonThread(cfg).start().join()
    assert main(["status", "--db", str(cfg.store_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["detections"] == 4 and doc["counts"]["outbox_detections"] == 4
    assert doc["daemon"]["running"] is False and doc["daemon"]["windows"] == 19
    assert [r["species_id"] for r in doc["recent"]] == ["sp03", "sp02", "sp01", "sp00"]
    assert main(["status", "--db", str(tmp_path / "nope.db")]) == 2
    assert "no device database" in capsys.readouterr().err


def test_status_into_a_closed_pipe_ends_quietly(tone_bundle, scape_file, tmp_path):
    """``biovita-field status | head -1``: the reader leaves early; no BrokenPipeError trace."""
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path)
    DaemonThread(cfg).start().join()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "device.cli", "status", "--db", str(cfg.store_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


@pytest.mark.mqtt
def test_doctor_checks_every_part(tone_bundle, tmp_path, mosquitto, capsys):
    common = [
        "--bundle", str(tone_bundle),
        "--set", f'device.data_dir="{tmp_path}"',
        "--set", "store.min_free_mb=1", "--set", "clips.min_free_mb=1",
        "--set", 'audio.source="file"',
        "--set", f"mqtt.port={mosquitto.port}", "--set", f'mqtt.host="{mosquitto.host}"',
    ]  # fmt: skip
    assert main(["doctor", *common, "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert all(c["ok"] for c in checks.values()), checks
    assert "ms/window" in checks["bundle"]["detail"] and "TensorRT" in checks["bundle"]["detail"]
    assert "accepted an MQTT v5 connection" in checks["broker"]["detail"]
    mosquitto.stop()
    assert main(["doctor", *common]) == 1
    printed = capsys.readouterr().out
    assert "[FAIL] broker" in printed and "[  ok] bundle" in printed
