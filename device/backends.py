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
from biovita.errors import BundleError, ConfigError
from device.config import InferenceSection, default_of

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
        import onnxruntime as ort

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
        from cuda import cudart

        err, major = cudart.cudaDeviceGetAttribute(
            cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, 0
        )
        err2, minor = cudart.cudaDeviceGetAttribute(
            cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, 0
        )
        if err != cudart.cudaError_t.cudaSuccess or err2 != cudart.cudaError_t.cudaSuccess:
            return tensorrt.__version__, None
        return tensorrt.__version__, f"{major}.{minor}"
    except ImportError:
        return tensorrt.__version__, None


class TensorRTBackend:  # pragma: no cover - runs only where TensorRT and a GPU exist
    """A serialized TensorRT engine, run with cuda-python on the default stream.

    Batches larger than the engine's ``max_batch`` are split; input is copied host -> device, the
    engine runs, the embedding is copied back. Buffers are sized for ``max_batch`` once.
    """

    def __init__(self, bundle: Bundle, engine: EngineEntry) -> None:
        import tensorrt as trt
        from cuda import cudart

        self._cudart = cudart
        tower = bundle.manifest.tower
        self.input_name, self.output_name = tower.input_name, tower.output_name
        self.window_samples, self.dim = tower.input_samples, tower.embedding_dim
        self.max_batch = engine.max_batch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(bundle.path(engine.file).read_bytes())
        if self.engine is None:
            raise BundleError(
                f"TensorRT cannot deserialize {engine.file}",
                hint="rebuild the engine on this device with biovita-export",
            )
        self.context = self.engine.create_execution_context()
        self._in = self._malloc(self.max_batch * self.window_samples * 4)
        self._out = self._malloc(self.max_batch * self.dim * 4)
        self.context.set_tensor_address(self.input_name, self._in)
        self.context.set_tensor_address(self.output_name, self._out)
        self.name = f"tensorrt-{engine.precision}"

    def _malloc(self, nbytes: int) -> int:
        err, ptr = self._cudart.cudaMalloc(nbytes)
        self._check(err, "cudaMalloc")
        return ptr

    def _check(self, err, what: str) -> None:
        if err != self._cudart.cudaError_t.cudaSuccess:
            raise BundleError(
                f"CUDA {what} failed: {err}", hint="check the GPU with biovita-field doctor"
            )

    def embed(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        parts = [self._run(pcm[i : i + self.max_batch]) for i in range(0, len(pcm), self.max_batch)]
        return _l2(np.concatenate(parts))

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        kind = cudart.cudaMemcpyKind
        self.context.set_input_shape(self.input_name, chunk.shape)
        (err,) = cudart.cudaMemcpy(
            self._in, chunk.ctypes.data, chunk.nbytes, kind.cudaMemcpyHostToDevice
        )
        self._check(err, "copy to device")
        if not self.context.execute_async_v3(0):
            raise BundleError("TensorRT inference failed", hint="check the engine with doctor")
        out = np.empty((len(chunk), self.dim), dtype=np.float32)
        (err,) = cudart.cudaMemcpy(
            out.ctypes.data, self._out, out.nbytes, kind.cudaMemcpyDeviceToHost
        )
        self._check(err, "copy to host")
        return out


def make_backend(bundle: Bundle, cfg: InferenceSection):
    """The backend the config asks for; ``auto`` = a matching TensorRT engine, else ONNX Runtime."""
    backend = cfg.backend
    if backend != "onnxruntime":
        choice = select_engine(bundle.manifest.engines, *local_tensorrt())
        if choice.engine is not None:
            log.info("using TensorRT: %s", choice.reason)
            return TensorRTBackend(bundle, choice.engine)
        if backend == "tensorrt" or bundle.manifest.engines:
            log.warning("TensorRT not used, falling back to ONNX Runtime: %s", choice.reason)
        else:
            log.info("using ONNX Runtime: %s", choice.reason)
    return OnnxRuntimeBackend(
        bundle, cfg.providers, cfg.intra_op_threads, cfg.precision, cfg.allow_spinning
    )
