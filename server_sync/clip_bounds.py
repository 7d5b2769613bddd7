"""How long, how fast and how wide a clip may be, checked by decoding, not by its size.

FLAC compresses silence to almost nothing: 89 KB can hold 30 minutes, which the review app once
decoded whole (1 GB) to draw a spectrogram. So a clip is measured at ingest (a dead letter beyond
``[limits]``) and again before the app decodes or serves one (clips stored before the limit, or
under a looser one). Both read the stream header and then decode in blocks, counting, never more
than the limit plus one block: a header that lies about the length cannot make either cost more.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from biovita.errors import WireFormatError
from server_sync.config import LimitSettings

BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class ClipShape:
    seconds: float
    rate_hz: int
    channels: int


def measure_clip(source: bytes | Path, limits: LimitSettings) -> ClipShape:
    """The clip's decoded shape; ``WireFormatError`` if it is not FLAC or is out of bounds."""
    with _open(source) as f:
        return _within(f, limits, keep=False)[0]


def read_clip(path: Path, limits: LimitSettings) -> tuple[np.ndarray, int]:
    """Decode a stored clip to ``[frames, channels]`` float32, refusing one out of bounds."""
    with _open(path) as f:
        shape, blocks = _within(f, limits, keep=True)
    samples = np.concatenate(blocks) if blocks else np.zeros((0, shape.channels), np.float32)
    return samples, shape.rate_hz


def _open(source: bytes | Path) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise WireFormatError(
            f"clip does not decode as audio: {getattr(err, 'error_string', err)}",
            hint="clips travel as raw FLAC bytes, as the device writes them",
            reason="not_flac",
        ) from None


def _within(
    f: soundfile.SoundFile, limits: LimitSettings, keep: bool
) -> tuple[ClipShape, list[np.ndarray]]:
    if f.format != "FLAC":
        raise WireFormatError(f"clip is {f.format}, not FLAC", reason="not_flac")
    if (
        not 0 < f.samplerate <= limits.max_clip_rate_hz
        or not 0 < f.channels <= limits.max_clip_channels
    ):
        raise WireFormatError(
            f"clip of {f.channels} channel(s) at {f.samplerate} Hz is beyond the limits "
            f"({limits.max_clip_channels} channels, {limits.max_clip_rate_hz} Hz)",
            hint="record mono clips at the model's rate, or raise [limits] max_clip_rate_hz",
            reason="clip_bounds",
        )
    max_frames = int(limits.max_clip_seconds * f.samplerate)
    if f.frames > max_frames:  # the header alone says so: nothing decoded
        raise _too_long(f.frames / f.samplerate, limits)
    frames, blocks = 0, []
    try:
        while len(block := f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
            frames += len(block)
            if frames > max_frames:
                raise _too_long(frames / f.samplerate, limits, at_least=True)
            if keep:
                blocks.append(block)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise WireFormatError(
            f"clip is damaged: {getattr(err, 'error_string', err)}", reason="not_flac"
        ) from None
    return ClipShape(frames / f.samplerate, f.samplerate, f.channels), blocks


def _too_long(seconds: float, limits: LimitSettings, at_least: bool = False) -> WireFormatError:
    return WireFormatError(
        f"clip of {'at least ' if at_least else ''}{seconds:.1f} s is longer than the "
        f"{limits.max_clip_seconds:g} s limit",
        hint="the device cuts clips at [clips] max_clip_s; raise [limits] max_clip_seconds only "
        "if longer clips are meant",
        reason="clip_too_long",
    )
