"""The CLAP front-end in numpy: the reference for ``ClapFrontendSpec`` (see ``biovita.frontend``).

It reproduces ``transformers.ClapFeatureExtractor`` (unfused, ``truncation="rand_trunc"``) on
clips of at most one window, where the extractor is deterministic: repeat-padding to the window,
a centred periodic-Hann STFT with reflection at the edges, the power spectrum through
Slaney-normalised Slaney-scale mel filters (librosa's defaults), and ``10 log10`` of the mel
power floored at ``power_floor``. The torch module that exports it to ONNX
(``trainer.models.frontend.ClapLogMel``) uses the same kernels and filters from here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from biovita.frontend import ClapFrontendSpec, dft_kernels, fit_window, frame

_SLANEY_LINEAR_HZ = 1000.0  # below: linear, 200/3 Hz per mel; above: logarithmic
_SLANEY_LINEAR_MELS = 15.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _SLANEY_LINEAR_MELS + np.log(np.maximum(hz, 1e-12) / _SLANEY_LINEAR_HZ) / (
        _SLANEY_LOG_STEP
    )
    return np.where(hz >= _SLANEY_LINEAR_HZ, log_part, 3.0 * hz / 200.0)


def slaney_mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _SLANEY_LINEAR_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_LINEAR_MELS))
    return np.where(mel >= _SLANEY_LINEAR_MELS, log_part, 200.0 * mel / 3.0)


@lru_cache(maxsize=4)
def _slaney_filterbank(spec: ClapFrontendSpec) -> np.ndarray:
    freqs = np.linspace(0.0, spec.sample_rate / 2, spec.n_bins)
    mels = np.linspace(hz_to_slaney_mel(spec.f_min), hz_to_slaney_mel(spec.f_max), spec.n_mels + 2)
    edges = slaney_mel_to_hz(mels)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))  # equal area
    bank.setflags(write=False)
    return bank


def slaney_filterbank(spec: ClapFrontendSpec) -> np.ndarray:
    """Slaney mel filters, area-normalised, ``[n_mels, n_bins]`` float64 (read-only, cached)."""
    return _slaney_filterbank(spec)


def clap_log_mel(pcm: np.ndarray, spec: ClapFrontendSpec) -> np.ndarray:
    """``[..., samples]`` -> dB mel ``[..., n_mels, frames]`` float32 (centred frames, no padding
    of the clip itself: pass whole windows, or use ``clap_input_features``)."""
    pcm = np.asarray(pcm, dtype=np.float64)
    half = spec.n_fft // 2
    padded = np.pad(pcm, [(0, 0)] * (pcm.ndim - 1) + [(half, half)], mode="reflect")
    spectrum = frame(padded, spec) @ dft_kernels(spec).T  # [..., frames, 2*bins]
    real, imag = spectrum[..., : spec.n_bins], spectrum[..., spec.n_bins :]
    mel = (real * real + imag * imag) @ slaney_filterbank(spec).T  # [..., frames, n_mels]
    db = 10.0 * np.log10(np.maximum(mel, spec.power_floor))
    return db.swapaxes(-1, -2).astype(np.float32)


def clap_input_features(pcm: np.ndarray, spec: ClapFrontendSpec) -> np.ndarray:
    """One mono clip ``[samples]`` -> ``[frames, n_mels]``: ClapFeatureExtractor's
    ``input_features[i, 0]`` for a clip of at most one window (a longer one: its first window)."""
    return clap_log_mel(fit_window(pcm, spec), spec).T
