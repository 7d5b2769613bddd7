"""TensorRT engines, built where TensorRT and a CUDA GPU exist (the Jetson); skipped here.

The bundle is the real exporter's jetson bundle; the engine is built by the device package
(`biovita-field engine`), as on the board, then run by the device's TensorRT backend.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from biovita.bundle import load_bundle
from biovita.errors import EngineUnavailableError
from biovita.stored_windows import StoredWindows
from device.backends import OnnxRuntimeBackend, make_backend
from device.config import InferenceSection
from device.engine import EngineOptions, build_engine, require_tensorrt


@pytest.fixture
def tensorrt() -> None:
    """Listed before the bundle fixture, so a machine without TensorRT skips before exporting."""
    try:
        require_tensorrt()
    except EngineUnavailableError as err:
        pytest.skip(f"{err} ({err.hint})")


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_build_appends_an_entry_with_parity(tensorrt, jetson_bundle, tmp_path, precision):
    bundle_dir = Path(shutil.copytree(jetson_bundle, tmp_path / "bundle"))
    entry = build_engine(bundle_dir, EngineOptions(precision=precision, max_batch=16))
    bundle = load_bundle(bundle_dir)  # re-verifies every hash, the engine's included
    assert bundle.manifest.engines == [entry]
    assert (bundle_dir / entry.file).stat().st_size > 0
    assert entry.parity is not None and entry.parity.passed
    assert entry.precision == precision and entry.max_batch == 16

    # The device picks the engine it just built and agrees with ONNX Runtime on real windows.
    backend = make_backend(bundle, InferenceSection(backend="tensorrt"))
    assert backend.name == f"tensorrt-{precision}"
    windows = StoredWindows.load(bundle).pcm[:40]  # more than max_batch: the split is exercised
    cosine = np.sum(backend.embed(windows) * OnnxRuntimeBackend(bundle).embed(windows), axis=1)
    assert cosine.min() > (0.99 if precision != "int8" else 0.9)
