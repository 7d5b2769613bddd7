"""Windows saved inside a bundle, with the PyTorch fp32 embeddings of exactly those windows.

``calibration/windows.npy`` (float16 PCM: half the size of float32 and finer than the 16-bit
recorders it comes from) feeds the INT8 engine calibrator on the Jetson (there: training clips and
recordings; cpu/rpi bundles keep the benchmark's test clips instead, as they only re-check); with
``calibration/reference.npy`` it lets ``biovita-export verify`` and ``engine`` re-measure parity
anywhere without the checkpoint. The reference is computed from the float16-rounded windows, so
the comparison is exact about its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biovita.bundle import Bundle
from biovita.errors import BundleError

CALIBRATION_DIR = "calibration"
WINDOWS_FILE = f"{CALIBRATION_DIR}/windows.npy"
REFERENCE_FILE = f"{CALIBRATION_DIR}/reference.npy"


@dataclass(frozen=True)
class StoredWindows:
    pcm: np.ndarray  # [N, samples] float32 (stored as float16)
    reference: np.ndarray | None = None  # [N, D] PyTorch fp32 embeddings

    @staticmethod
    def round(pcm: np.ndarray) -> np.ndarray:
        """What the windows become once stored: compute the reference from this."""
        return np.asarray(pcm, np.float32).astype(np.float16).astype(np.float32)

    def save(self, root: Path) -> None:
        (root / CALIBRATION_DIR).mkdir(exist_ok=True)
        np.save(root / WINDOWS_FILE, self.pcm.astype(np.float16), allow_pickle=False)
        if self.reference is not None:
            np.save(root / REFERENCE_FILE, self.reference.astype(np.float32), allow_pickle=False)

    @classmethod
    def load(cls, bundle: Bundle) -> StoredWindows:
        if bundle.manifest.calibration_dir is None or WINDOWS_FILE not in bundle.manifest.files:
            raise BundleError(
                f"bundle {bundle.root} holds no calibration windows",
                hint="re-export it with biovita-export (every target stores them)",
            )
        pcm = np.load(bundle.path(WINDOWS_FILE), allow_pickle=False).astype(np.float32)
        reference = None
        if REFERENCE_FILE in bundle.manifest.files:
            reference = np.load(bundle.path(REFERENCE_FILE), allow_pickle=False)
        samples = bundle.manifest.tower.input_samples
        if (
            pcm.ndim != 2
            or pcm.shape[1] != samples
            or (
                reference is not None
                and reference.shape != (len(pcm), bundle.manifest.tower.embedding_dim)
            )
        ):
            raise BundleError(
                f"bundle {bundle.root}: calibration windows {pcm.shape} do not fit the tower "
                f"([N, {samples}] -> [N, {bundle.manifest.tower.embedding_dim}])",
                hint="re-export the bundle",
            )
        return cls(pcm, reference)
