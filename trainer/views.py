"""Per-tower views of one piece of audio: each tower hears it at its own rate, window and padding.

A teacher trained on 10-s windows at 48 kHz and a student on 3-s windows at 32 kHz cannot share
one array; distillation gives each tower its own view of the same moment: windows centred on the
same instant, each cut from the audio resampled (once, soxr) to that tower's rate, each padded by
that tower's rule where the audio is shorter than its window.

A view comes from the tower's front-end spec (``sample_rate``, ``window_samples``, ``padding``:
a CLAP tower's "repeatpad" tiles a short clip as ``ClapFeatureExtractor`` does, the biovita
front-end's "pad" adds zeros at the end, as its training windows have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biovita.frontend import Padding, pad_window


@dataclass(frozen=True)
class View:
    sample_rate: int
    window_samples: int
    padding: Padding = "pad"

    @classmethod
    def of(cls, spec) -> View:
        """The view of a front-end spec (biovita or CLAP kind)."""
        return cls(int(spec.sample_rate), int(spec.window_samples), spec.padding)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate


def pad_to(pcm: np.ndarray, n: int, padding: Padding = "pad") -> np.ndarray:
    """``pcm`` as float32, ``n`` samples long (``biovita.frontend.pad_window``)."""
    return pad_window(np.asarray(pcm, dtype=np.float32), n, padding)


def centred_window(pcm: np.ndarray, view: View, centre_s: float) -> np.ndarray:
    """``view``'s window of ``pcm`` (at ``view.sample_rate``) centred on ``centre_s`` where the
    audio allows (kept inside it), padded by the view's rule when the audio is shorter."""
    n = view.window_samples
    if len(pcm) <= n:
        return pad_to(pcm, n, view.padding)
    start = int(round(centre_s * view.sample_rate - n / 2))
    start = min(max(0, start), len(pcm) - n)
    return np.ascontiguousarray(pcm[start : start + n], dtype=np.float32)


def rotated(pcm: np.ndarray, fraction: float) -> np.ndarray:
    """``pcm`` rotated in time by ``fraction`` of its length (the same instant at any rate)."""
    return np.roll(pcm, int(round(fraction * len(pcm))))
