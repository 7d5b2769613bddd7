"""Decoding, down-mixing, resampling and windowing, for any input rate and channel count.

Everything returns mono float32 in [-1, 1] at the rate asked for. Bad audio raises ``AudioError``
naming the file and the fix; it never returns silence in place of a broken file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from biovita.errors import AudioError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus", ".w64"})


def to_mono(samples: np.ndarray, channel: int | None = None) -> np.ndarray:
    """``[frames]`` or ``[frames, channels]`` -> ``[frames]``: one channel, or the mean of all."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        if channel not in (None, 0):
            raise AudioError(
                f"channel {channel} asked of mono audio", hint="use channel 0 or no channel"
            )
        return samples.astype(np.float32, copy=False)
    if samples.ndim != 2:
        raise AudioError(f"audio of shape {samples.shape} is neither mono nor [frames, channels]")
    if channel is None:
        return samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not 0 <= channel < samples.shape[1]:
        raise AudioError(
            f"channel {channel} does not exist in {samples.shape[1]}-channel audio",
            hint=f"choose a channel from 0 to {samples.shape[1] - 1}, or none to down-mix",
        )
    return np.ascontiguousarray(samples[:, channel], dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality band-limited resampling (libsoxr) of mono ``[frames]`` float audio."""
    if rate_in <= 0 or rate_out <= 0:
        raise AudioError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    samples = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or samples.size == 0:
        return samples
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def check_finite(samples: np.ndarray, source: str = "audio") -> np.ndarray:
    if not np.isfinite(samples).all():
        bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise AudioError(
            f"{source} holds {bad} NaN or infinite samples",
            hint="the file or stream is damaged; re-record or re-export it",
        )
    return samples


def load_audio(
    path: str | Path, sample_rate: int | None = None, channel: int | None = None
) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 at ``sample_rate`` (native rate when None)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist", hint="check the path")
    try:
        samples, native_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(
            f"cannot decode {path}: {err}",
            hint="the file is corrupt, truncated or not audio; supported: WAV, FLAC, OGG, MP3",
        ) from err
    if samples.shape[0] == 0:
        raise AudioError(f"{path} holds no audio samples", hint="the file is empty; re-record it")
    mono = check_finite(to_mono(samples, channel), str(path))
    rate = native_rate if sample_rate is None else sample_rate
    return resample(mono, native_rate, rate), rate


def audio_info(path: str | Path) -> soundfile._SoundFileInfo:
    try:
        return soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise AudioError(
            f"cannot read {path}: {err}", hint="the file is not readable audio"
        ) from err


def list_audio_files(folder: str | Path) -> list[Path]:
    """Audio files below ``folder``, sorted, so a folder plays back in a stable order.

    Hidden files and folders are skipped, among them the ``._rec.wav`` AppleDouble files macOS
    leaves on every card it touches (resource forks, not audio).
    """
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def window_starts(n_samples: int, window: int, hop: int, pad_last: bool = True) -> list[int]:
    """Start offsets of fixed windows; a short tail gets one last (zero-padded) window."""
    if n_samples <= 0:
        return []
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if pad_last and starts[-1] + window < n_samples:
        starts.append(starts[-1] + hop)
    return starts


def iter_windows(
    samples: np.ndarray, window: int, hop: int, pad_last: bool = True
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_sample, [window] float32)``; a short tail is zero-padded."""
    for start in window_starts(len(samples), window, hop, pad_last):
        chunk = samples[start : start + window]
        if len(chunk) < window:
            chunk = np.pad(chunk, (0, window - len(chunk)))
        yield start, chunk


def windows(samples: np.ndarray, window: int, hop: int, pad_last: bool = True) -> np.ndarray:
    """All windows of ``samples`` stacked as ``[n, window]`` float32."""
    chunks = [w for _, w in iter_windows(samples, window, hop, pad_last)]
    if not chunks:
        return np.zeros((0, window), dtype=np.float32)
    return np.stack(chunks).astype(np.float32, copy=False)
