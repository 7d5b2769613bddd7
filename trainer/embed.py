"""Embeddings from any trainer checkpoint, as L2-normalised float32 numpy arrays.

``load_embedder(path)`` takes a Stage 0/1/2 checkpoint or the student. The student has no image or
text tower of its own: those come from the Stage 2 checkpoint it was distilled from (its meta's
``teacher_checkpoint``), so a student is measured in all six retrieval directions.

With a ``DistContext`` the towers run on its device, and under DDP every rank embeds one share of
the inputs and gets all the rows (the quick evaluation and the bank during a torchrun), so every
rank must then make the same calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from biovita.errors import AudioError
from biovita.frontend import FrontendSpec
from trainer.checkpoint import load_student, read_checkpoint
from trainer.distributed import DistContext, map_rows
from trainer.models.encoders import OPEN_CLIP_CONFIG, load_image_text
from trainer.models.vita import VITA_KIND, VitaModel


class Embedder:
    def __init__(
        self,
        name: str,
        vita: VitaModel,
        audio_tower: nn.Module | None,
        frontend: FrontendSpec,
        batch_size: int = 64,
        dist: DistContext | None = None,
    ) -> None:
        self.dist = dist or DistContext()
        self.name, self.vita = name, vita.eval().to(self.dist.device)
        self.audio_tower = audio_tower
        self.frontend, self.batch_size = frontend, batch_size
        if audio_tower is not None:
            audio_tower.eval().to(self.dist.device)

    @property
    def dim(self) -> int:
        return self.vita.embed_dim

    @property
    def has_audio(self) -> bool:
        return self.audio_tower is not None or self.vita.audio is not None

    def _map(self, embed: Callable[[Sequence], torch.Tensor], items: Sequence) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, self.dim), np.float32)
        rows = map_rows(embed, items, self.batch_size, across_ranks=self.dist.enabled)
        return rows.float().cpu().numpy()

    def _windows(self, windows) -> np.ndarray:
        pcm = np.asarray(windows if isinstance(windows, np.ndarray) else np.stack(windows))
        pcm = np.atleast_2d(pcm.astype(np.float32, copy=False))
        if pcm.ndim != 2 or pcm.shape[1] < self.frontend.n_fft:
            raise AudioError(
                f"audio of shape {pcm.shape} is not [batch, samples] of one window or more",
                hint=f"pass windows of {self.frontend.window_samples} samples",
            )
        return pcm

    @torch.no_grad()
    def audio(self, pcm: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """``[B, samples]`` mono float32 PCM at the front-end rate (16 kHz) -> ``[B, D]``.

        ``pcm`` may also be a sequence of windows that decodes on slicing
        (``trainer.evaluate.Windows``): then only one batch is in memory at a time.
        """
        if isinstance(pcm, np.ndarray) or not isinstance(pcm, Sequence):
            pcm = self._windows(pcm)  # checked once, batched below
        tower = self.audio_tower or self.vita.audio
        if tower is None:
            self.vita.encode_audio(torch.zeros(1, self.frontend.window_samples))  # raises, hinting

        def embed(windows) -> torch.Tensor:
            return tower(torch.from_numpy(self._windows(windows)).to(self.dist.device))

        return self._map(embed, pcm)

    @torch.no_grad()
    def images(self, images: Sequence) -> np.ndarray:
        """Image paths, encoded bytes, PIL images or uint8 ``[H, W, 3]`` arrays -> ``[N, D]``.

        Paths and bytes are decoded batch by batch (under DDP, each rank only its share).
        """

        def embed(batch) -> torch.Tensor:
            pixels = self.vita.image_text.image_tensor(list(batch))
            return self.vita.encode_image(pixels.to(self.dist.device))

        return self._map(embed, images)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._map(lambda batch: self.vita.encode_texts(list(batch)), texts)


def teacher_path(student_path: str | Path, meta: dict) -> Path:
    """The student's Stage 2 checkpoint; relative paths are relative to the student's folder."""
    path = Path(meta["teacher_checkpoint"])
    return path if path.is_absolute() else Path(student_path).parent / path


def load_embedder(
    path: str | Path, batch_size: int = 64, dist: DistContext | None = None
) -> Embedder:
    """A stage checkpoint or imported teacher (``.pt``), the student, or an image/text model
    alone (an open_clip folder or ``hf-hub:`` id, e.g. vanilla BioCLIP 2: no audio tower)."""
    if str(path).startswith("hf-hub:") or (Path(path) / OPEN_CLIP_CONFIG).is_file():
        image_text = load_image_text(str(path))
        return Embedder(str(path), VitaModel(image_text), None, FrontendSpec(), batch_size, dist)
    path = Path(path)
    kind = read_checkpoint(path)["kind"]
    if kind == VITA_KIND:
        vita, _ = VitaModel.load(path)
        frontend = vita.audio.frontend if vita.audio is not None else FrontendSpec()
        return Embedder(path.stem, vita, None, frontend, batch_size, dist)
    student, meta = load_student(path)
    vita, _ = VitaModel.load(teacher_path(path, meta))
    return Embedder(path.stem, vita, student, student.config.frontend, batch_size, dist)
