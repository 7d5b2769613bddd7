"""CUDA through cuda-python: the one GPU binding a recorder needs (it never installs PyTorch).

TensorRT runs and builds engines on device pointers; cuda-python gives them with a small wheel
that matches JetPack 6's CUDA 12. Its runtime module moved from ``cuda.cudart`` (deprecated from
cuda-python 12.6) to ``cuda.bindings.runtime``; both are accepted.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from biovita.errors import EngineUnavailableError

CUDA_PYTHON_HINT = (
    "install the jetson extra (pip install 'biovita-field[jetson]': cuda-python 12, matching "
    "JetPack 6's CUDA 12), or pip install 'cuda-python>=12.2,<13'"
)


def cudart() -> ModuleType:
    """The CUDA runtime bindings, or ``EngineUnavailableError`` naming the package to install."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as runtime

        return runtime
    except ImportError as err:
        raise EngineUnavailableError(
            f"cuda-python is not installed ({err})", hint=CUDA_PYTHON_HINT
        ) from None


def check(err: object, what: str) -> None:
    """Raise on a CUDA error code (cuda-python returns codes instead of raising)."""
    runtime = cudart()
    if err != runtime.cudaError_t.cudaSuccess:
        raise EngineUnavailableError(
            f"CUDA {what} failed: {err}",
            hint="check the GPU with biovita-field doctor (and tegrastats / nvidia-smi)",
        )


def compute_capability(device: int = 0) -> str:
    """The GPU's compute capability like ``'8.7'`` (Jetson Orin), or an error if none is visible."""
    runtime = cudart()
    err, count = runtime.cudaGetDeviceCount()
    if err != runtime.cudaError_t.cudaSuccess or count == 0:
        raise EngineUnavailableError(
            f"no CUDA GPU is visible ({err if err != runtime.cudaError_t.cudaSuccess else '0 devices'})",
            hint="run on the Jetson itself; check CUDA_VISIBLE_DEVICES and that the user is in "
            "the video/render groups",
        )
    attr = runtime.cudaDeviceAttr
    err, major = runtime.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device)
    check(err, "query of the compute capability")
    err, minor = runtime.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device)
    check(err, "query of the compute capability")
    return f"{major}.{minor}"


class DeviceBuffer:
    """A block of GPU memory sized once, filled from and read back into numpy arrays."""

    def __init__(self, nbytes: int) -> None:
        self._rt = cudart()
        err, self.ptr = self._rt.cudaMalloc(nbytes)
        check(err, f"cudaMalloc of {nbytes} bytes")
        self.nbytes = nbytes

    def upload(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a {self.nbytes}-byte buffer")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        (err,) = self._rt.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind)
        check(err, "copy to the device")

    def download(self, out: np.ndarray) -> np.ndarray:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        (err,) = self._rt.cudaMemcpy(out.ctypes.data, self.ptr, out.nbytes, kind)
        check(err, "copy to the host")
        return out

    def free(self) -> None:
        if self.ptr:
            self._rt.cudaFree(self.ptr)
            self.ptr = 0
