"""Detection clips: the audio of each event, with pre/post roll, as FLAC under a disk quota.

Raw audio stays in RAM (a ring of the last ``max_clip_s`` + rolls); only an event's clip reaches
the disk. When the quota is reached, clips the server already has are deleted oldest first; when
only unsynced clips are left, or the disk is nearly full, clip recording stops with a warning
(detections keep flowing) rather than deleting evidence or filling the card.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from device.records import AudioBlock, Event
from device.store import Store

log = logging.getLogger(__name__)

FLAC_BYTES_PER_SAMPLE = 2.1  # PCM_16 plus FLAC framing: an upper bound (noise does not compress)


def ring_samples(rate: int, pre_roll_s: float, post_roll_s: float, max_clip_s: float) -> int:
    """The raw audio kept in RAM: the longest clip, its rolls, and 10 s for inference lag."""
    return int((max_clip_s + pre_roll_s + post_roll_s + 10) * rate)


class AudioHistory:
    """The last ``capacity`` samples of the stream, addressed by the stream sample counter."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ring = np.zeros(capacity, dtype=np.float32)
        self.end = 0  # stream sample one past the newest stored
        self.start = 0  # oldest stream sample still stored

    def push(self, block: AudioBlock) -> None:
        if block.discontinuity or block.start_sample != self.end:
            self.start = self.end = block.start_sample  # never splice unrelated audio
        samples = block.samples[-self.capacity :]
        first = block.end_sample - len(samples)
        pos = first % self.capacity
        head = min(len(samples), self.capacity - pos)
        self._ring[pos : pos + head] = samples[:head]
        self._ring[: len(samples) - head] = samples[head:]
        self.end = block.end_sample
        self.start = max(self.start, self.end - self.capacity)

    def extract(self, start: int, end: int) -> np.ndarray:
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        idx = np.arange(start, end) % self.capacity
        return self._ring[idx]


@dataclass(frozen=True)
class WrittenClip:
    clip_id: str
    path: Path
    bytes: int


class ClipRecorder:
    def __init__(
        self,
        directory: Path,
        sample_rate: int,
        store: Store,
        *,
        pre_roll_s: float,
        post_roll_s: float,
        max_clip_s: float,
        quota_bytes: int,
        min_free_bytes: int,
        enabled: bool,
    ) -> None:
        self.directory, self.rate, self.store = Path(directory), sample_rate, store
        self.pre, self.post = int(pre_roll_s * sample_rate), int(post_roll_s * sample_rate)
        self.max_samples = int(max_clip_s * sample_rate)
        self.quota, self.min_free, self.enabled = quota_bytes, min_free_bytes, enabled
        self.history = AudioHistory(ring_samples(sample_rate, pre_roll_s, post_roll_s, max_clip_s))
        self._pending: list[Event] = []
        self._disk_bytes: int | None = None  # clips on disk, counted once then kept up to date
        self.paused_reason: str | None = None
        self.skipped = 0

    @property
    def disk_bytes(self) -> int:
        """What the clips take on disk now, committed or not (the quota is about the disk)."""
        if self._disk_bytes is None:
            self._disk_bytes = sum(p.stat().st_size for p in self.directory.rglob("*.flac"))
        return self._disk_bytes

    def push_audio(self, block: AudioBlock) -> None:
        if self.enabled:
            self.history.push(block)

    def add(self, events: list[Event]) -> None:
        self._pending += events

    def ready(self, final: bool = False) -> list[tuple[Event, WrittenClip | None]]:
        """Events whose post-roll has arrived (all of them when ``final``), with their clips."""
        done, waiting = [], []
        for event in self._pending:
            if final or not self.enabled or self.history.end >= event.end_sample + self.post:
                done.append((event, self._write(event) if self.enabled else None))
            else:
                waiting.append(event)
        self._pending = waiting
        return done

    def _write(self, event: Event) -> WrittenClip | None:
        start = max(event.start_sample - self.pre, event.end_sample + self.post - self.max_samples)
        audio = self.history.extract(start, event.end_sample + self.post)
        if audio.size == 0:
            return None
        if not self._make_room(int(audio.size * FLAC_BYTES_PER_SAMPLE)):
            self.skipped += 1
            return None
        clip_id = uuid.uuid4().hex
        folder = self.directory / event.wall_time.strftime("%Y-%m-%d")
        path = folder / f"{clip_id}.flac"
        tmp = path.with_suffix(".flac.tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with soundfile.SoundFile(
                tmp, "w", samplerate=self.rate, channels=1, format="FLAC", subtype="PCM_16"
            ) as f:
                f.write(np.clip(audio, -1.0, 1.0))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as err:  # e.g. ENOSPC
            tmp.unlink(missing_ok=True)
            self._pause(f"cannot write clips to {folder}: {err}")
            self.skipped += 1
            return None
        size = path.stat().st_size
        self._disk_bytes = self.disk_bytes + size
        return WrittenClip(clip_id, path, size)

    def _make_room(self, needed: int) -> bool:
        """Delete synced clips, oldest first, until ``needed`` bytes fit quota and disk."""
        if self.disk_bytes + needed > self.quota:
            for clip in self.store.deletable_clips():
                path = Path(clip["path"])
                freed = path.stat().st_size if path.exists() else 0
                path.unlink(missing_ok=True)
                self.store.mark_clip_deleted(clip["clip_id"])
                self._disk_bytes = self.disk_bytes - freed
                if self.disk_bytes + needed <= self.quota:
                    break
        self.directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.directory).free
        if self.disk_bytes + needed > self.quota:
            return self._pause(
                f"clip quota of {self.quota / (1 << 20):g} MiB is full of clips the server has "
                "not acknowledged yet"
            )
        if free - needed < self.min_free:
            return self._pause(
                f"only {free >> 20} MiB free on {self.directory} (keeping {self.min_free >> 20} MiB)"
            )
        if self.paused_reason:
            log.warning("clip recording resumed")
            self.paused_reason = None
        return True

    def _pause(self, reason: str) -> bool:
        if self.paused_reason != reason:
            log.warning("clip recording paused: %s; detections are still logged", reason)
            self.paused_reason = reason
        return False
