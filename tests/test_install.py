"""The README's install lines, run for real: each extra in a fresh venv, with no PyTorch.

`.[device]` must classify and pass doctor's runtime check with PyPI's CPU ONNX Runtime;
`.[jetson]` must install without any onnxruntime (NVIDIA's GPU wheel takes that place on the
board) and without PyTorch, and its engine command must say what is missing instead of a
traceback; `.[server]` must migrate a store. Slow: each install fetches its wheels (cached by pip
after the first run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_bundle import build_tone_bundle

REPO = Path(__file__).resolve().parents[1]
# The installed copy must be what runs, never the checkout (a PYTHONPATH would put it first).
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
pytestmark = pytest.mark.slow


def _install(tmp_path: Path, extra: str) -> Path:
    venv = tmp_path / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{REPO}[{extra}]"],
        capture_output=True,
        text=True,
        timeout=900,
        env=CLEAN_ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


def _run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=CLEAN_ENV,
    )


def _modules(bin_dir: Path, cwd: Path, *names: str) -> dict[str, bool]:
    code = "import importlib.util as u, sys; print(' '.join(str(u.find_spec(n) is not None) for n in sys.argv[1:]))"
    out = _run(bin_dir, "python", "-c", code, *names, cwd=cwd).stdout.split()
    return dict(zip(names, (v == "True" for v in out), strict=True))


def test_recorder_install_runs_without_pytorch(tmp_path, real_audio_files):
    bin_dir = _install(tmp_path, "device")
    assert _modules(bin_dir, tmp_path, "torch", "onnx", "onnxruntime") == {
        "torch": False,
        "onnx": False,
        "onnxruntime": True,
    }
    bundle = build_tone_bundle(tmp_path / "bundle")
    classify = _run(
        bin_dir, "biovita-field", "classify", str(real_audio_files[0]), "--bundle", str(bundle),
        "--out", str(tmp_path / "out"), "--formats", "csv", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert classify.returncode == 0, classify.stderr
    assert list((tmp_path / "out").glob("*.csv"))
    doctor = _run(
        bin_dir, "biovita-field", "doctor", "--bundle", str(bundle),
        "--set", f"device.data_dir={tmp_path / 'data'}", "--set", "mqtt.enabled=false", cwd=tmp_path,
    )  # fmt: skip
    runtime = next(line for line in doctor.stdout.splitlines() if " runtime " in line)
    assert runtime.startswith("[  ok]") and "listen uses onnxruntime" in runtime, doctor.stdout


def test_jetson_install_has_no_cpu_onnxruntime_and_explains_the_engine_build(tmp_path):
    bin_dir = _install(tmp_path, "jetson")
    assert _modules(bin_dir, tmp_path, "torch", "onnx", "onnxruntime", "cuda") == {
        "torch": False,
        "onnx": False,
        "onnxruntime": False,  # NVIDIA's onnxruntime-gpu wheel for JetPack goes here
        "cuda": True,
    }
    bundle = build_tone_bundle(tmp_path / "bundle")
    engine = _run(bin_dir, "biovita-field", "engine", "--bundle", str(bundle), cwd=tmp_path)
    assert engine.returncode == 2
    assert "TensorRT is not installed here" in engine.stderr
    assert "Traceback" not in engine.stderr
    doctor = _run(
        bin_dir, "biovita-field", "doctor", "--bundle", str(bundle),
        "--set", f"device.data_dir={tmp_path / 'data'}", "--set", "mqtt.enabled=false", cwd=tmp_path,
    )  # fmt: skip
    assert "onnxruntime-gpu wheel for JetPack 6" in doctor.stdout


def test_server_install_migrates_without_pytorch(tmp_path):
    bin_dir = _install(tmp_path, "server")
    assert not _modules(bin_dir, tmp_path, "torch")["torch"]
    migrate = _run(
        bin_dir, "biovita-server", "migrate", "--data", str(tmp_path / "srv"), cwd=tmp_path
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "srv").is_dir()
