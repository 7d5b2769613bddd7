"""`biovita-field engine` and the runtime check on a recorder without TensorRT or a GPU.

The engine build itself runs where TensorRT and a GPU exist (tests/export/test_engine.py, marked
`tensorrt`); here: it imports neither PyTorch nor onnx, and without TensorRT it says what to
install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from biovita.errors import EngineUnavailableError
from device.cli import main
from device.config import load_config
from device.doctor import check_runtime

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_the_engine_command_and_the_backends_import_neither_torch_nor_onnx():
    """What a Jetson install ([jetson] or [device]) has is enough to build and run an engine."""
    code = (
        "import sys, device.cli, device.engine, device.backends, device.doctor, device.cuda\n"
        "device.cli.build_parser()\n"
        "heavy = [m for m in ('torch', 'onnx', 'export', 'trainer', 'tensorrt') if m in sys.modules]\n"
        "print(heavy)\n"
        "raise SystemExit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: the build itself is tested")
def test_engine_without_tensorrt_names_what_to_install(tone_bundle, capsys):
    assert main(["engine", "--bundle", str(tone_bundle), "--int8"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed here" in err
    assert "--system-site-packages" in err  # the hint: JetPack's bindings live in system Python


def test_engine_needs_a_bundle(tmp_path, capsys):
    assert main(["engine", "--set", f"device.data_dir={tmp_path}"]) == 2
    assert "pass --bundle DIR" in capsys.readouterr().err


def test_cuda_python_missing_is_a_clear_error():
    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed here")
    from device.cuda import cudart

    with pytest.raises(EngineUnavailableError, match="cuda-python is not installed") as err:
        cudart()
    assert "biovita-field[jetson]" in err.value.hint


def test_doctor_says_which_runtime_listen_uses_and_why(tone_bundle, tmp_path):
    overrides = {"bundle": str(tone_bundle), "device.data_dir": str(tmp_path)}
    cfg = load_config(None, environ={}, overrides=overrides)
    detail = check_runtime(cfg)
    assert "ONNX Runtime" in detail and "CPUExecutionProvider" in detail
    if not HAS_TENSORRT:
        assert "TensorRT not installed" in detail
        assert detail.endswith("listen uses onnxruntime: TensorRT is not installed")
