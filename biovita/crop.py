"""Which stretch of a recording a tower hears when it gets one window per file.

``first``: the file's first window, a shorter file padded as the tower's front-end says (a CLAP
tower: repeat-padded, as ``ClapFeatureExtractor``). ``onset10``: the crop of dahlian00/BioVITA's
``eval/extract_features.py`` (``load_audio_onset_10s``), with which the released model was
scored: the window starts ``ONSET_PREROLL_S`` before the first sample whose magnitude exceeds
``ONSET_THRESHOLD`` of the file's peak magnitude (at the tower's rate), and a clip that runs out
before the window ends is zero-padded, as there. For a 10-s CLAP tower that is 10 s from the
onset; other towers get their own window length from the same start.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from biovita.errors import AudioError
from biovita.frontend import ClapFrontendSpec, FrontendSpec, fit_window

Crop = Literal["first", "onset10"]
CROPS: tuple[Crop, ...] = ("first", "onset10")
ONSET_THRESHOLD = 0.01  # of the peak |sample|
ONSET_PREROLL_S = 0.2


def onset_start(pcm: np.ndarray, sample_rate: int) -> int:
    """Sample where the onset crop starts: the pre-roll before the first loud-enough sample."""
    magnitude = np.abs(np.asarray(pcm))
    if magnitude.size == 0 or magnitude.max() == 0:
        return 0  # silence: no onset, start at the beginning
    first = int(np.argmax(magnitude > ONSET_THRESHOLD * magnitude.max()))
    return max(0, first - int(ONSET_PREROLL_S * sample_rate))


def crop_window(
    pcm: np.ndarray, spec: FrontendSpec | ClapFrontendSpec, crop: Crop = "first"
) -> np.ndarray:
    """One window ``[spec.window_samples]`` of mono ``pcm`` at ``spec.sample_rate``."""
    if crop == "first":
        return fit_window(pcm, spec)
    if crop != "onset10":
        raise AudioError(f"unknown crop {crop!r}", hint=f"use one of {', '.join(CROPS)}")
    return onset_crop(pcm, spec.sample_rate, spec.window_samples)


def onset_crop(pcm: np.ndarray, sample_rate: int, samples: int) -> np.ndarray:
    """``samples`` of ``pcm`` from ``onset_start``, zero-padded where the file runs out."""
    start = onset_start(pcm, sample_rate)
    crop = np.asarray(pcm, dtype=np.float32)[start : start + samples]
    return np.pad(crop, (0, samples - len(crop)))
