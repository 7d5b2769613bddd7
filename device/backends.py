"""Inference backends for the bundle's audio tower: ONNX Runtime (reference) and TensorRT.

The device prefers a TensorRT engine built for exactly this TensorRT version and GPU compute
capability (an engine is not portable across either); when there is none, or TensorRT is not
installed, it falls back to ONNX Runtime and logs why. ``select_engine`` is pure so the choice is
tested everywhere; the TensorRT runtime itself runs only on a Jetson / CUDA machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from biovita.bundle import Bundle, EngineEntry, TowerSpec
from biovita.errors import BundleError, ConfigError, EngineUnavailableError
from device.config import InferenceSection, default_of
from device.cuda import DeviceBuffer, compute_capability

log = logging.getLogger(__name__)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def select_tower(bundle: Bundle, precision: str | None = None) -> TowerSpec:
    """The bundle's primary tower, or the one (primary or alternate) of ``precision``."""
    manifest = bundle.manifest
    if precision is None or manifest.tower.precision == precision:
        return manifest.tower
    for tower in manifest.alternates:
        if tower.precision == precision:
            return tower
    have = [manifest.tower.precision] + [t.precision for t in manifest.alternates]
    raise ConfigError(
        f"the bundle has no {precision} tower (it has: {', '.join(have)})",
        hint="unset inference.precision to use the bundle's primary tower",
    )


ONNXRUNTIME_HINT = (
    "on a Jetson install NVIDIA's onnxruntime-gpu wheel for JetPack 6 (README, 'On a Jetson'); "
    "elsewhere pip install 'biovita-field[device]'"
)


def import_onnxruntime():
    """``onnxruntime`` (CPU build or NVIDIA's GPU build), or an error naming the one to install."""
    try:
        import onnxruntime
    except ImportError as err:
        raise EngineUnavailableError(
            f"ONNX Runtime is not installed ({err})", hint=ONNXRUNTIME_HINT
        ) from None
    return onnxruntime


class OnnxRuntimeBackend:
    """ONNX Runtime on the providers asked for that this build has (CUDA where present)."""

    def __init__(
        self,
        bundle: Bundle,
        providers: list[str] | None = None,  # None: the CPU only (benchmarks, tests)
        intra_op_threads: int = default_of(InferenceSection, "intra_op_threads"),
        precision: str | None = default_of(InferenceSection, "precision"),
        allow_spinning: bool = default_of(InferenceSection, "allow_spinning"),
    ) -> None:
        ort = import_onnxruntime()
        tower = select_tower(bundle, precision)
        path = bundle.path(tower.file)

        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle ORT threads spin by default: on a battery recorder that burns energy, and on a
        # shared 2-core box it cost 40-60% throughput in our benchmark (docs/BENCHMARKS.md).
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
        )
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own untyped errors for bad graphs
            raise BundleError(
                f"ONNX Runtime cannot load {path}: {err}",
                hint="re-export the bundle with biovita-export",
            ) from err
        self.input_name, self.output_name = tower.input_name, tower.output_name
        self.window_samples, self.dim = tower.input_samples, tower.embedding_dim
        self._check_signature()
        self.providers = self.session.get_providers()
        device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        self.name = f"onnxruntime-{device}-{tower.precision}"

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.input_name not in inputs or self.output_name not in outputs:
            raise BundleError(
                f"the audio tower has inputs {list(inputs)} and outputs {list(outputs)}; the "
                f"manifest says {self.input_name!r} -> {self.output_name!r}",
                hint="re-export the bundle with biovita-export",
            )
        shape = inputs[self.input_name].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != self.window_samples):
            raise BundleError(
                f"the audio tower takes input of shape {shape}; the manifest says "
                f"[batch, {self.window_samples}]",
                hint="re-export the bundle with biovita-export",
            )

    def embed(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: pcm})
        return _l2(out)


# -------------------------------------------------------------------------------------- TensorRT


@dataclass(frozen=True)
class EngineChoice:
    engine: EngineEntry | None
    reason: str


def select_engine(
    engines: list[EngineEntry], tensorrt_version: str | None, compute_capability: str | None
) -> EngineChoice:
    """The engine built for this TensorRT version (major.minor.patch) and GPU, fastest first."""
    if tensorrt_version is None:
        return EngineChoice(None, "TensorRT is not installed")
    if compute_capability is None:
        return EngineChoice(None, "no CUDA GPU is visible")
    if not engines:
        return EngineChoice(None, "the bundle has no TensorRT engine (build one on this device)")
    version = ".".join(tensorrt_version.split(".")[:3])
    matching = [
        e
        for e in engines
        if ".".join(e.tensorrt_version.split(".")[:3]) == version
        and e.compute_capability == compute_capability
        and (e.parity is None or e.parity.passed)
    ]
    if not matching:
        built = ", ".join(
            f"TensorRT {e.tensorrt_version} / sm {e.compute_capability}" for e in engines
        )
        return EngineChoice(
            None,
            f"no engine matches TensorRT {version} on compute capability {compute_capability} "
            f"(bundle has: {built})",
        )
    speed = {"int8": 0, "fp16": 1, "fp32": 2}
    best = min(matching, key=lambda e: speed[e.precision])
    return EngineChoice(best, f"engine {best.file} ({best.precision}) matches this device")


def local_tensorrt() -> tuple[str | None, str | None]:
    """(TensorRT version, GPU compute capability like '8.7'), None where absent."""
    try:
        import tensorrt
    except ImportError:
        return None, None
    try:
        return tensorrt.__version__, compute_capability()
    except EngineUnavailableError:
        return tensorrt.__version__, None


class TensorRTRunner:  # pragma: no cover - runs only where TensorRT and a GPU exist
    """A serialized TensorRT engine, run with cuda-python on the default stream.

    Batches larger than ``max_batch`` are split; input is copied host -> device, the engine runs,
    the embedding is copied back. Buffers are sized for ``max_batch`` once.
    """

    def __init__(self, engine_bytes: bytes, tower: TowerSpec, max_batch: int, name: str) -> None:
        import tensorrt as trt

        self.input_name, self.output_name = tower.input_name, tower.output_name
        self.window_samples, self.dim = tower.input_samples, tower.embedding_dim
        self.max_batch = max_batch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BundleError(
                f"TensorRT {trt.__version__} cannot deserialize the {name} engine",
                hint="rebuild the engine on this device with biovita-field engine",
            )
        self.context = self.engine.create_execution_context()
        self._in = DeviceBuffer(max_batch * self.window_samples * 4)
        self._out = DeviceBuffer(max_batch * self.dim * 4)
        self.context.set_tensor_address(self.input_name, self._in.ptr)
        self.context.set_tensor_address(self.output_name, self._out.ptr)
        self.name = name

    def embed(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        parts = [self._run(pcm[i : i + self.max_batch]) for i in range(0, len(pcm), self.max_batch)]
        return _l2(np.concatenate(parts))

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        self.context.set_input_shape(self.input_name, chunk.shape)
        self._in.upload(chunk)
        if not self.context.execute_async_v3(0):
            raise BundleError("TensorRT inference failed", hint="check the engine with doctor")
        return self._out.download(np.empty((len(chunk), self.dim), dtype=np.float32))


def tensorrt_backend(bundle: Bundle, engine: EngineEntry) -> TensorRTRunner:  # pragma: no cover
    """The bundle's engine ``engine``, ready to embed windows."""
    engine_bytes = bundle.path(engine.file).read_bytes()
    name = f"tensorrt-{engine.precision}"
    return TensorRTRunner(engine_bytes, bundle.manifest.tower, engine.max_batch, name)


BACKENDS = ("auto", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class BackendPlan:
    """Which runtime ``listen`` will use, and why (what ``doctor`` prints)."""

    runtime: str  # "tensorrt" | "onnxruntime"
    engine: EngineEntry | None
    reason: str
    fallback: bool  # TensorRT was asked for or possible but is not used


def plan_backend(
    engines: list[EngineEntry],
    backend: str,
    tensorrt_version: str | None,
    compute_capability: str | None,
) -> BackendPlan:
    """The config's ``inference.backend`` against what this device has: pure, so tested anywhere."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint="use auto, onnxruntime or tensorrt")
    if backend == "onnxruntime":
        return BackendPlan("onnxruntime", None, "inference.backend is onnxruntime", False)
    choice = select_engine(engines, tensorrt_version, compute_capability)
    if choice.engine is not None:
        return BackendPlan("tensorrt", choice.engine, choice.reason, False)
    return BackendPlan("onnxruntime", None, choice.reason, backend == "tensorrt" or bool(engines))


def make_backend(bundle: Bundle, cfg: InferenceSection):
    """The backend the config asks for; ``auto`` = a matching TensorRT engine, else ONNX Runtime."""
    plan = plan_backend(bundle.manifest.engines, cfg.backend, *local_tensorrt())
    if plan.engine is not None:
        log.info("using TensorRT: %s", plan.reason)
        return tensorrt_backend(bundle, plan.engine)
    if plan.fallback:
        log.warning("TensorRT not used, falling back to ONNX Runtime: %s", plan.reason)
    else:
        log.info("using ONNX Runtime: %s", plan.reason)
    return OnnxRuntimeBackend(
        bundle, cfg.providers, cfg.intra_op_threads, cfg.precision, cfg.allow_spinning
    )
