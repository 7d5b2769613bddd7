"""Real windows for parity checks and INT8 calibration: clips from a training-data manifest (e.g.
the synthetic world's test clips) and windows cut from recordings. Never random noise: activation
ranges calibrated on noise do not match the calls and backgrounds the recorder will hear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from biovita.audio import expand_audio_paths, load_audio, windows
from biovita.frontend import FrontendSpec
from biovita.manifest import read_manifest
from export.errors import ExportError

MANIFEST_FILE = "manifest.csv"


@dataclass(frozen=True)
class Windows:
    """``pcm [N, samples]`` float32 and, per window, where it came from (``file@start_s``)."""

    pcm: np.ndarray
    origin: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.pcm)

    def spread(self, n: int) -> Windows:
        """At most ``n`` windows, evenly spaced over the set (deterministic, covers every file)."""
        if len(self) <= n:
            return self
        index = np.unique(np.linspace(0, len(self) - 1, n).round().astype(int))
        return Windows(self.pcm[index], tuple(self.origin[i] for i in index))

    @staticmethod
    def concat(*sets: Windows) -> Windows:
        sets = tuple(s for s in sets if len(s))
        if not sets:
            return Windows(np.zeros((0, 0), np.float32), ())
        return Windows(np.concatenate([s.pcm for s in sets]), sum((s.origin for s in sets), ()))


def _file_windows(path: Path, spec: FrontendSpec, start_s: float = 0.0, end_s=None) -> Windows:
    samples, rate = load_audio(path, spec.sample_rate)
    first = int(round(start_s * rate))
    last = len(samples) if end_s is None else int(round(end_s * rate))
    pcm = windows(samples[first:last], spec.window_samples, spec.hop_samples)
    origin = tuple(f"{path.name}@{start_s + i * spec.hop_s:g}s" for i in range(len(pcm)))
    return Windows(pcm, origin)


def audio_windows(paths: Sequence[str | Path], spec: FrontendSpec) -> Windows:
    """Every window (``spec`` window and hop) of the given files and of the audio in folders."""
    files = expand_audio_paths(paths)
    return Windows.concat(
        *(_file_windows(f, spec) for f in tqdm(files, desc="recordings", disable=len(files) < 4))
    )


def resolve_manifest(path: str | Path) -> Path:
    """A manifest CSV, or a folder holding one (a synthetic world written by biovita-bench)."""
    path = Path(path)
    return path / MANIFEST_FILE if path.is_dir() else path


def manifest_windows(path: str | Path, spec: FrontendSpec, split: str) -> Windows:
    """Windows of every clip of ``split`` in a training-data manifest (one per 3 s clip)."""
    rows = [r for r in read_manifest(resolve_manifest(path)) if r.split == split]
    return Windows.concat(
        *(
            _file_windows(r.audio_path, spec, r.start_s or 0.0, r.end_s)
            for r in tqdm(rows, desc=f"{split} clips", disable=len(rows) < 50)
        )
    )


@dataclass(frozen=True)
class WindowSources:
    """Where an export takes its windows from; see ``calibration`` and ``evaluation``."""

    clips: Path | None = None
    audio: tuple[Path, ...] = ()

    def describe(self, split: str) -> str:
        parts = [f"{split} clips of {resolve_manifest(self.clips)}"] if self.clips else []
        parts += [f"recordings {', '.join(p.name for p in self.audio)}"] if self.audio else []
        return " + ".join(parts)

    def _load(self, spec: FrontendSpec, split: str) -> Windows:
        if self.clips is None and not self.audio:
            raise ExportError(
                "an export needs real windows to check parity and calibrate INT8",
                hint="pass --clips WORLD_OR_MANIFEST (e.g. a synthetic world) and/or --audio DIR",
            )
        found = Windows.concat(
            manifest_windows(self.clips, spec, split) if self.clips else Windows.concat(),
            audio_windows(self.audio, spec) if self.audio else Windows.concat(),
        )
        if not len(found):
            raise ExportError(
                f"no windows found in {self.describe(split)}",
                hint=f"the manifest needs rows with split={split}, or pass --audio recordings",
            )
        return found

    def evaluation(self, spec: FrontendSpec) -> Windows:
        """Held-out test clips (the benchmark's clips) plus the recordings: the parity set."""
        return self._load(spec, "test")

    def benchmark(self, spec: FrontendSpec) -> Windows:
        """The benchmark's clips alone, where given: INT8 agreement is judged on in-domain audio
        (recordings of species outside the bank give near-ties whose flips mean nothing)."""
        if self.clips is None:
            return self._load(spec, "test")
        return WindowSources(clips=self.clips)._load(spec, "test")

    def describe_benchmark(self) -> str:
        return (
            WindowSources(clips=self.clips).describe("test")
            if self.clips
            else self.describe("test")
        )

    def calibration(self, spec: FrontendSpec) -> Windows:
        """Training clips plus the recordings: disjoint from the test clips INT8 is judged on."""
        return self._load(spec, "train")
