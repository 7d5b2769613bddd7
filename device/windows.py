"""Blocks in, fixed windows out: a buffer that cuts ``window`` samples every ``hop`` samples.

Windows start at 0, hop, 2 hop, ... exactly as ``biovita.audio.window_starts``; at the end of a
stream (or at a discontinuity) a tail not yet covered gets one last padded window (so a file
shorter than a window still gets one), which says how much of it is padding. The padding repeats
the window's own audio: zeros would add a step into digital silence that a tower reads as part
of the sound (a 1 s call zero-padded to 3 s loses half its cosine to its species). Every window carries
the stream sample counter of its first sample and the wall clock of that sample.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from device.records import AudioBlock, Window


class Windower:
    def __init__(self, window: int, hop: int, sample_rate: int) -> None:
        """``sample_rate``: stream samples per real second, for the times only (the bundle's
        rate, times the time expansion of a slowed-down bat recording)."""
        if hop <= 0 or window <= 0:
            raise ValueError("window and hop must be positive")
        self.window, self.hop, self.rate = window, hop, sample_rate
        self.index = 0
        self._reset(0)

    def _reset(self, start_sample: int) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = start_sample  # stream sample of _buf[0]
        self._next = start_sample  # stream sample where the next window starts
        self._emitted = False  # a window was cut since the last reset
        self._anchor: tuple[int, datetime] | None = None
        self._origin = ""
        self._discontinuity = False

    @property
    def _buf_end(self) -> int:
        return self._buf_start + len(self._buf)

    def push(self, block: AudioBlock) -> list[Window]:
        out: list[Window] = []
        contiguous = block.start_sample == self._buf_end and block.origin == self._origin
        if self._anchor is not None and (block.discontinuity or not contiguous):
            out += self.flush()
            self._reset(block.start_sample)
            self._discontinuity = True
        elif self._anchor is None:
            self._reset(block.start_sample)
        self._origin = block.origin
        self._anchor = (block.start_sample, block.wall_time)
        self._buf = np.concatenate([self._buf, block.samples.astype(np.float32, copy=False)])
        while self._next + self.window <= self._buf_end:
            out.append(self._cut(self._next))
            self._next += self.hop
        self._trim()
        return out

    def flush(self) -> list[Window]:
        """End of stream: cover the tail with one zero-padded window, if any tail is left."""
        if self._anchor is None or self._buf_end <= self._buf_start:
            return []
        covered = self._emitted and self._next - self.hop + self.window >= self._buf_end
        if covered or self._next >= self._buf_end:
            return []
        window = self._cut(self._next)
        self._next += self.hop
        self._trim()
        return [window]

    def _cut(self, start: int) -> Window:
        offset = start - self._buf_start
        samples = self._buf[offset : offset + self.window]
        padding = self.window - len(samples)
        if padding:  # the audio repeated: its own level and spectrum, no step into silence
            samples = np.resize(samples, self.window)
        anchor_sample, anchor_wall = self._anchor
        wall = anchor_wall + timedelta(seconds=(start - anchor_sample) / self.rate)
        window = Window(
            samples, self.rate, start, wall, self._origin, self.index, self._discontinuity, padding
        )
        self.index += 1
        self._emitted = True
        self._discontinuity = False
        return window

    def _trim(self) -> None:
        drop = min(self._next - self._buf_start, len(self._buf))
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
