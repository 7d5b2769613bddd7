"""The spectrogram image of a clip: the same log-mel the model sees (biovita.frontend).

Drawn with matplotlib's object API (a ``Figure`` with no pyplot state), which is safe in the web
server's worker threads and needs no display.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from biovita.audio import check_finite, resample, to_mono
from biovita.frontend import FrontendSpec, log_mel
from server_sync.clip_bounds import read_clip
from server_sync.config import LimitSettings

SPEC = FrontendSpec()


def spectrogram_png(clip: Path, limits: LimitSettings, spec: FrontendSpec = SPEC) -> bytes:
    """The clip's spectrogram; ``WireFormatError`` if it decodes beyond ``limits``."""
    decoded, native_rate = read_clip(clip, limits)
    rate = spec.sample_rate
    samples = resample(check_finite(to_mono(decoded), str(clip)), native_rate, rate)
    if samples.size < spec.n_fft:
        samples = np.pad(samples, (0, spec.n_fft - samples.size))
    mel = log_mel(samples, spec)
    fig = Figure(figsize=(7.2, 2.4), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(
        mel,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, samples.size / rate, 0, spec.n_mels),
        vmin=float(np.percentile(mel, 5)),
        vmax=float(mel.max()),
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
