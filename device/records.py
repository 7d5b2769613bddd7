"""The records that flow through the device pipeline, and the ports (Protocols) between stages.

acoupi style: plain frozen records in one module, small ``Protocol`` ports beside them, one adapter
per module (sources, backends, store, sync), wired together in ``device.app``. Audio is carried
with two clocks: ``start_sample`` counts samples since the stream started (monotonic, exact) and
``wall_time`` is the UTC instant of the first sample as the host clock saw it (may jump when NTP
syncs). Detections keep both so a server can re-time rows recorded before the clock synced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class AudioBlock:
    """Mono float32 samples at ``sample_rate``; ``start_sample`` counts from the stream start."""

    samples: np.ndarray
    sample_rate: int
    start_sample: int
    wall_time: datetime
    origin: str = ""  # file path or device name, for messages and offline outputs
    discontinuity: bool = False  # True: does not follow the previous block (source re-opened)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)

    def time_of(self, sample: int) -> datetime:
        """Wall-clock time of ``sample`` (a stream sample counter value), from this block's clock."""
        return self.wall_time + timedelta(seconds=(sample - self.start_sample) / self.sample_rate)


@dataclass(frozen=True)
class Window:
    """One fixed-length window handed to the audio tower."""

    samples: np.ndarray
    sample_rate: int
    start_sample: int
    wall_time: datetime
    origin: str = ""
    index: int = 0  # windows since the stream started
    discontinuity: bool = False  # True: the audio before this window is not contiguous with it
    padding: int = 0  # zeros after the end of the audio (the last window of a stream)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)

    @property
    def audio_end_sample(self) -> int:
        """One past the last real sample: an event never reaches into the padding."""
        return self.end_sample - self.padding

    @property
    def audio(self) -> np.ndarray:
        """The window's real samples, without the padding."""
        return self.samples[: len(self.samples) - self.padding]


@dataclass(frozen=True)
class Candidate:
    """A species (or ``unknown``) that passed its threshold in one window."""

    species_id: str
    score: float
    similarity: float


@dataclass(frozen=True)
class WindowResult:
    """What classification said about one window: every candidate, best first, plus the top-k."""

    window: Window
    candidates: tuple[Candidate, ...]
    top: tuple[Candidate, ...]  # top-k by score regardless of thresholds (alternatives)


@dataclass
class Event:
    """Adjacent windows of one species merged into one acoustic event."""

    species_id: str
    start_sample: int
    end_sample: int
    sample_rate: int
    wall_time: datetime  # of start_sample
    origin: str
    score: float
    similarity: float
    windows: int
    alternatives: list[Candidate] = field(default_factory=list)
    first_window: int = 0
    last_window: int = 0

    @property
    def start_s(self) -> float:
        """Seconds from the stream (or file) start."""
        return self.start_sample / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate

    @property
    def end_time(self) -> datetime:
        return self.wall_time + timedelta(
            seconds=(self.end_sample - self.start_sample) / self.sample_rate
        )


class AudioSource(Protocol):
    """Yields blocks already down-mixed and resampled to the bundle's rate."""

    name: str

    def blocks(self) -> Iterator[AudioBlock]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """The audio tower: ``[B, samples]`` float32 PCM -> ``[B, D]`` L2-normalised embeddings."""

    name: str

    def embed(self, pcm: np.ndarray) -> np.ndarray: ...
