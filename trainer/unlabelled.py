"""Recordings streamed from disk for distillation, with or without species labels.

A site's recordings have no labels and may be hours long, so they are neither labelled clips nor
kept in RAM: they are indexed once (length and rate from the file header), cut into items of one
student window each, and each sampled item is read from disk on demand (only the span its views
need), resampled once per tower rate (soxr) and cut into the student's and the teacher's view of
the same moment (trainer.views). The teacher's embedding is the target; a recording from a
labelled manifest carries its species, so the text anchor applies to it alone.

Item order is a pure function of (seed, epoch) and each item's jitter of (seed, epoch, position,
rank), as in ``trainer.data.EpochSampler``: a resumed run draws exactly what an uninterrupted one
would, and DDP ranks never draw the same item twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from biovita.audio import (
    AUDIO_SUFFIXES,
    audio_info,
    check_finite,
    list_audio_files,
    resample,
    to_mono,
)
from biovita.errors import AudioError, ManifestError
from biovita.manifest import read_manifest
from trainer.data import Batch, EpochCursor
from trainer.views import View, centred_window

log = logging.getLogger(__name__)

UNLABELLED = -1


@dataclass(frozen=True)
class Recording:
    """A file, or a segment of one (``start_s`` .. ``end_s``), and its species (-1: unknown)."""

    path: Path
    rate: int
    start_s: float
    end_s: float
    species: int = UNLABELLED

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _recording(path: Path, start_s=None, end_s=None, species=UNLABELLED) -> Recording | None:
    try:
        info = audio_info(path)
    except AudioError as err:
        log.warning("skipped: %s", err)
        return None
    length = info.frames / info.samplerate
    start = min(max(0.0, start_s or 0.0), length)
    end = length if end_s is None else min(end_s, length)
    if end <= start:
        log.warning("skipped: %s holds no audio in %.2f-%.2f s", path, start, end)
        return None
    return Recording(Path(path), int(info.samplerate), start, end, species)


def find_recordings(sources: Sequence[str | Path]) -> list[Recording]:
    """Every readable audio file in ``sources`` (folders, searched recursively, or files)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += list_audio_files(source)
        elif source.is_file() and source.suffix.lower() in AUDIO_SUFFIXES:
            paths.append(source)
        else:
            raise ManifestError(
                f"{source} is neither a folder nor an audio file",
                hint=f"pass folders or files ({', '.join(sorted(AUDIO_SUFFIXES))}) with --audio",
            )
    found = [r for p in paths if (r := _recording(p)) is not None]
    skipped = len(paths) - len(found)
    if skipped:
        log.warning("%d of %d audio files could not be read and are left out", skipped, len(paths))
    if not found:
        raise ManifestError(
            f"no readable recordings in {', '.join(map(str, sources))}",
            hint="point --audio at folders of WAV/FLAC/OGG/MP3 recordings",
        )
    return found


def manifest_recordings(
    manifest: str | Path, splits: Sequence[str], species_ids: Sequence[str]
) -> list[Recording]:
    """A manifest's clips of ``splits`` as labelled recordings (species: index in ``species_ids``)."""
    index = {s: i for i, s in enumerate(species_ids)}
    rows = [r for r in read_manifest(manifest) if r.split in splits]
    found = [_recording(r.audio_path, r.start_s, r.end_s, index[r.species_id]) for r in rows]
    return [r for r in found if r is not None]


class StreamedAudio:
    """Items of one student window over ``recordings``, each read from disk when drawn."""

    def __init__(self, recordings: list[Recording], student: View, teacher: View) -> None:
        self.recordings, self.student, self.teacher = recordings, student, teacher
        step = student.window_s
        self.items = [
            (r, (k + 0.5) * step)  # (recording, centre in s from the recording's start)
            for r, rec in enumerate(recordings)
            for k in range(max(1, math.floor(rec.duration_s / step)))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def species(self, item: int) -> int:
        return self.recordings[self.items[item][0]].species

    def views(self, item: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """The student's and the teacher's view of item ``item`` (jittered within its window)."""
        r, centre = self.items[item]
        rec = self.recordings[r]
        if rng is not None:
            centre += float(rng.uniform(-0.5, 0.5)) * self.student.window_s
        centre = min(max(0.0, centre), rec.duration_s)
        half = max(self.student.window_s, self.teacher.window_s) / 2
        first = max(0.0, centre - half)
        last = min(rec.duration_s, centre + half)
        span = self._read(rec, first, last)
        return tuple(
            centred_window(resample(span, rec.rate, v.sample_rate), v, centre - first)
            for v in (self.student, self.teacher)
        )

    @staticmethod
    def _read(rec: Recording, first_s: float, last_s: float) -> np.ndarray:
        start = int(round((rec.start_s + first_s) * rec.rate))
        stop = max(start + 1, int(round((rec.start_s + last_s) * rec.rate)))
        try:
            samples, _ = soundfile.read(
                rec.path, start=start, stop=stop, dtype="float32", always_2d=True
            )
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
            raise AudioError(
                f"cannot decode {rec.path}: {err}",
                hint="the file changed or is damaged since it was indexed",
            ) from err
        return check_finite(to_mono(samples), str(rec.path))


class StreamSampler(EpochCursor):
    """Batches of ``StreamedAudio`` items: every item once per epoch, in a shuffled order."""

    rng_stream = 2

    def __init__(
        self,
        audio: StreamedAudio,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: bool = True,
    ) -> None:
        self.audio, self.batch_size, self.seed = audio, batch_size, seed
        self.rank, self.world_size, self.augment = rank, world_size, augment
        self._start("audio windows")

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.audio))
        per_rank = len(order) // self.world_size
        return order[self.rank :: self.world_size][:per_rank]

    def batch_at(self, position: int) -> Batch:
        items, students, teachers = [], [], []
        for p in range(position, position + self.batch_size):
            item, rng = self._item_at(p)
            student, teacher = self.audio.views(item, rng if self.augment else None)
            if self.augment:  # recorders differ in gain by tens of dB
                gain = np.float32(10 ** (rng.uniform(-12, 6) / 20))
                student, teacher = student * gain, teacher * gain
            items.append(item)
            students.append(student)
            teachers.append(teacher)
        n = len(items)
        return Batch(
            species=torch.tensor([self.audio.species(i) for i in items], dtype=torch.long),
            prompts=[""] * n,
            images=torch.full((n,), -1, dtype=torch.long),
            clips=torch.tensor(items, dtype=torch.long),
            pcm=torch.from_numpy(np.stack(students).astype(np.float32)),
            teacher_pcm=torch.from_numpy(np.stack(teachers).astype(np.float32)),
        )
