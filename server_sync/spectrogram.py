"""The spectrogram image of a clip, in kHz at the clip's own sample rate.

A reviewer judges a call by its frequency and shape, so the picture is a linear-frequency power
spectrogram from 0 to the clip's Nyquist: a 48 kHz clip shows its 8-24 kHz band, which a picture
at the model's rate would cut away. matplotlib's ``mlab.specgram`` computes it and its object API
(a ``Figure`` with no pyplot state) draws it, safe in the web server's worker threads with no
display.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import mlab
from matplotlib.figure import Figure

from biovita.audio import check_finite, to_mono
from server_sync.clip_bounds import read_clip
from server_sync.config import LimitSettings

# About 10.7 ms per frame at any rate (512 samples at 48 kHz): short enough for a trill.
FRAME_S = 512 / 48_000
# More columns than this add nothing to a picture 720 pixels wide; they only cost memory.
MAX_COLUMNS = 2_000
DYNAMIC_RANGE_DB = 80.0
DRAWING_VERSION = "linear-khz-1"  # change it when the picture changes: it names the cache folder


@dataclass(frozen=True)
class Spectrogram:
    """Power in dB, ``[frequencies, frames]``, with the centre of each row (Hz) and column (s)."""

    power_db: np.ndarray
    frequencies_hz: np.ndarray
    times_s: np.ndarray
    sample_rate: int
    duration_s: float


def linear_spectrogram(samples: np.ndarray, sample_rate: int) -> Spectrogram:
    """A Hann-windowed power spectrogram of mono ``samples`` from 0 Hz to ``sample_rate / 2``.

    Frames overlap by 75% up to ``MAX_COLUMNS`` of them; a longer clip keeps every sample in some
    frame (the hop never passes the frame) and merges neighbouring columns by their maximum, so a
    call of one frame still shows.
    """
    duration_s = samples.size / sample_rate
    n_fft = max(128, 2 ** round(math.log2(sample_rate * FRAME_S)))
    hop = min(n_fft, max(n_fft // 4, math.ceil(samples.size / MAX_COLUMNS)))
    if samples.size < n_fft + hop:  # at least two frames
        samples = np.pad(samples, (0, n_fft + hop - samples.size))
    power, freqs, times = mlab.specgram(
        samples.astype(np.float64),
        NFFT=n_fft,
        Fs=sample_rate,
        noverlap=n_fft - hop,
        window=np.hanning(n_fft),
        mode="psd",
    )
    merge = math.ceil(times.size / MAX_COLUMNS)
    if merge > 1:
        columns = math.ceil(times.size / merge)
        padded = np.pad(power, ((0, 0), (0, columns * merge - times.size)), mode="edge")
        power = padded.reshape(power.shape[0], columns, merge).max(axis=2)
        times = np.pad(times, (0, columns * merge - times.size), mode="edge")
        times = times.reshape(columns, merge).mean(axis=1)
    power_db = 10 * np.log10(np.maximum(power, 1e-20)).astype(np.float32)
    return Spectrogram(power_db, freqs, times, sample_rate, duration_s)


def draw_spectrogram(spec: Spectrogram) -> bytes:
    """A PNG of ``spec`` with seconds across and kHz up, the loudest 80 dB in colour."""
    fig = Figure(figsize=(7.2, 2.6), dpi=100)
    ax = fig.add_subplot()
    top = float(spec.power_db.max())
    image = ax.imshow(
        spec.power_db,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, spec.duration_s, 0, spec.sample_rate / 2000),
        vmin=top - DYNAMIC_RANGE_DB,
        vmax=top,
        interpolation="nearest",
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("kHz")
    ax.set_title(f"{spec.sample_rate / 1000:g} kHz clip", fontsize=8, loc="right")
    fig.colorbar(image, ax=ax, pad=0.01).set_label("dB", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def spectrogram_png(clip: Path, limits: LimitSettings) -> bytes:
    """The clip's spectrogram; ``WireFormatError`` if it decodes beyond ``limits``."""
    decoded, native_rate = read_clip(clip, limits)
    samples = check_finite(to_mono(decoded), str(clip))
    return draw_spectrogram(linear_spectrogram(samples, native_rate))
