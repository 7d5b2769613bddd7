"""`biovita-field engine`: build a TensorRT engine from a bundle, on the recorder itself.

An engine is specific to one TensorRT version and one GPU, so it is built where it runs (the
Jetson), appended to the bundle's manifest with its measured parity against ONNX Runtime, and
picked by the device only when both match. It lives in the device package so that a recorder
installed with the ``[jetson]`` extra builds it with what it already has (TensorRT from JetPack,
cuda-python, ONNX Runtime): neither PyTorch nor the onnx package is needed. Uses the TensorRT 10
Python API: explicit-batch network from the ONNX parser, one optimisation profile (min/opt/max
batch), fp16 or int8 builder flags.

Precision: the bundle's ONNX stays fp32 and TensorRT lowers it. With --fp16 every layer of the
log-mel front-end is pinned to fp32: the power spectrum of a loud window reaches 256^2 = 65536
(Hann-windowed 512-point DFT of a full-scale tone), above fp16's maximum of 65504. With --int8 the
entropy calibrator reads the bundle's calibration windows (real audio, saved at export); the
front-end stays fp32 for the same reason and INT8 layers fall back to fp16 where faster.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from biovita.bundle import Bundle, EngineEntry, TowerSpec, load_bundle
from biovita.errors import BundleError, ConfigError, EngineUnavailableError
from biovita.parity import TOLERANCES, compare, describe, require
from biovita.stored_windows import StoredWindows
from device.backends import OnnxRuntimeBackend, TensorRTRunner, select_tower
from device.cuda import DeviceBuffer, compute_capability

log = logging.getLogger(__name__)

FRONTEND_LAYER_PREFIX = "/logmel/"
ENGINE_DIR = "engines"
TENSORRT_HINT = (
    "build engines on the target: JetPack 6 ships TensorRT 10.3 with its Python bindings "
    "(python3-libnvinfer) in the system Python, so make the venv with --system-site-packages "
    "(README, 'On a Jetson'). An engine only runs on the TensorRT version and GPU that built it; "
    "the device falls back to ONNX Runtime until one exists"
)


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "fp16"  # fp32 | fp16 | int8
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mb: int = 1024


def require_tensorrt() -> tuple[ModuleType, str]:
    """``(tensorrt, GPU compute capability)``, or ``EngineUnavailableError`` saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise EngineUnavailableError(
            f"TensorRT is not installed here (import tensorrt failed: {err})", hint=TENSORRT_HINT
        ) from None
    if not hasattr(trt.Builder, "build_serialized_network"):
        raise EngineUnavailableError(
            f"TensorRT {trt.__version__} is too old for this builder",
            hint="use TensorRT 8.6 or newer (JetPack 6: 10.3)",
        )
    return trt, compute_capability()


def _source_tower(bundle: Bundle) -> TowerSpec:
    try:
        return select_tower(bundle, "fp32")
    except ConfigError:
        raise BundleError(
            "the bundle has no fp32 ONNX tower for TensorRT to lower",
            hint="export the bundle with biovita-export --target jetson",
        ) from None


def _pin_frontend_fp32(trt: ModuleType, network: Any) -> int:
    """Keep the log-mel layers in fp32 under fp16/int8 builds; returns how many were pinned."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.name.startswith(FRONTEND_LAYER_PREFIX) and all(
            o.dtype == trt.float32 for o in outputs
        ):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def _calibrator(trt: ModuleType, windows: np.ndarray, batch: int) -> Any:
    """An entropy calibrator over the bundle's calibration windows (deprecated since TensorRT 10.1
    in favour of Q/DQ graphs, still supported through 10.x)."""

    class WindowCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffer = DeviceBuffer(batch * windows.shape[1] * 4)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.position + batch > len(windows):
                return None
            self.buffer.upload(
                np.asarray(windows[self.position : self.position + batch], np.float32)
            )
            self.position += batch
            return [int(self.buffer.ptr)]

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return WindowCalibrator()


def _build(
    trt: ModuleType, onnx_path: Path, spec: TowerSpec, windows: np.ndarray, options: EngineOptions
) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors}",
            hint="re-export with --trt-version set to this TensorRT version to see which op fails",
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    n = spec.input_samples
    profile.set_shape(
        spec.input_name, (options.min_batch, n), (options.opt_batch, n), (options.max_batch, n)
    )
    config.add_optimization_profile(profile)
    if options.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 keeps 10 mantissa bits: not fp32 parity
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        if options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _calibrator(trt, windows, options.opt_batch)
            config.set_calibration_profile(profile)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("pinned %d front-end layers to fp32", _pin_frontend_fp32(trt, network))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(
            f"TensorRT {trt.__version__} failed to build the {options.precision} engine",
            hint="see the TensorRT log above; try a larger --workspace-mb or another precision",
        )
    return bytes(serialized)


def engine_file_name(trt_version: str, compute_capability: str, precision: str) -> str:
    cc = compute_capability.replace(".", "")
    return f"{ENGINE_DIR}/audio_tower.trt{trt_version}.sm{cc}.{precision}.engine"


def build_engine(bundle_path: Path, options: EngineOptions) -> EngineEntry:
    """Build, measure against ONNX Runtime on the calibration windows, and record the engine."""
    if options.precision not in TOLERANCES:
        raise ConfigError(
            f"unknown engine precision {options.precision!r}", hint="use fp32, fp16 or int8"
        )
    trt, capability = require_tensorrt()
    if Path(bundle_path).is_file():
        raise BundleError(
            f"{bundle_path} is a packed bundle; an engine is added to a bundle directory",
            hint="unpack it first (tar -xf) and pass the directory",
        )
    bundle: Bundle = load_bundle(bundle_path)
    spec = _source_tower(bundle)
    stored = StoredWindows.load(bundle)
    engine_bytes = _build(trt, bundle.path(spec.file), spec, stored.pcm, options)
    candidate = f"tensorrt-{trt.__version__}-{options.precision}"
    runner = TensorRTRunner(engine_bytes, spec, options.max_batch, candidate)
    reference = OnnxRuntimeBackend(bundle, precision="fp32").embed(stored.pcm)
    parity = compare(
        reference,
        runner.embed(stored.pcm),
        "onnxruntime-fp32",
        candidate,
        bundle.bank,
        TOLERANCES[options.precision],
    )
    log.info(describe(parity))
    require(parity)
    name = engine_file_name(trt.__version__, capability, options.precision)
    path = bundle.path(name)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(engine_bytes)
    os.replace(tmp, path)
    entry = EngineEntry(
        file=name,
        tensorrt_version=trt.__version__,
        compute_capability=capability,
        precision=options.precision,
        min_batch=options.min_batch,
        opt_batch=options.opt_batch,
        max_batch=options.max_batch,
        parity=parity,
        built_utc=datetime.now(timezone.utc),
    )
    bundle.update_manifest(
        lambda m: m.model_copy(
            update={"engines": [e for e in m.engines if e.file != entry.file] + [entry]}
        )
    )
    return entry
