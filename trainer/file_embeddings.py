"""One audio embedding per file, from any checkpoint's audio tower (``biovita-train embed``).

Each file is decoded to mono (the mean of its channels), resampled with soxr to the tower's
front-end rate, cut to one window (``biovita.crop``: its first window, or the official onset
crop) and embedded; the result is L2-normalised ``[N, D]``. A file that cannot be decoded is
reported and left out; the others are still embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from biovita.audio import expand_audio_paths, load_audio
from biovita.crop import Crop, crop_window
from biovita.errors import AudioError, ConfigError
from biovita.frontend import ClapFrontendSpec, FrontendSpec
from trainer.checkpoint import load_student, read_checkpoint
from trainer.models.vita import VITA_KIND, VitaModel

log = logging.getLogger(__name__)


def load_audio_tower(path: str | Path) -> tuple[nn.Module, FrontendSpec | ClapFrontendSpec]:
    """The audio tower (eval mode) of a VITA checkpoint or a student, and its front-end."""
    if read_checkpoint(path)["kind"] == VITA_KIND:
        audio = VitaModel.load(path)[0].audio
        if audio is None:
            raise ConfigError(
                f"{path} has no audio tower (a Stage 0 image-text model)",
                hint="embed with a stage1/stage2 checkpoint, an imported release or a student",
            )
        return audio.eval(), audio.frontend
    student, _ = load_student(path)
    return student, student.config.frontend


@dataclass(frozen=True)
class FileEmbeddings:
    embeddings: np.ndarray  # [N, D] float32, unit rows
    files: list[str]
    failed: list[tuple[str, str]]  # (file, why)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            embeddings=self.embeddings,
            files=np.array(self.files, dtype=str),
            failed=np.array([f for f, _ in self.failed], dtype=str),
            failed_reasons=np.array([why for _, why in self.failed], dtype=str),
        )
        return path


@torch.no_grad()
def embed_files(
    checkpoint: str | Path, paths: Sequence[str | Path], crop: Crop = "first", batch_size: int = 8
) -> FileEmbeddings:
    tower, spec = load_audio_tower(checkpoint)
    files = expand_audio_paths(paths)
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            chunks.append(tower(torch.from_numpy(np.stack(pending))).numpy())
            pending.clear()

    for path in tqdm(files, desc="embed", unit="file", disable=len(files) < 4):
        try:
            pcm, _ = load_audio(path, spec.sample_rate)
        except AudioError as err:
            log.warning("skipped %s: %s", path, err)
            failed.append((str(path), str(err)))
            continue
        pending.append(crop_window(pcm, spec, crop).astype(np.float32))
        done.append(str(path))
        if len(pending) == batch_size:
            flush()
    flush()
    if not done:
        raise AudioError(
            f"none of the {len(files)} file(s) could be decoded", hint="check the paths and formats"
        )
    return FileEmbeddings(np.concatenate(chunks).astype(np.float32), done, failed)
