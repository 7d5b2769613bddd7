"""Audio sources: a sound card, a file or folder played as a live stream, raw PCM on stdin.

Every source yields ``AudioBlock``s of mono float32 at the bundle's rate, counting samples from 0;
``device.stream`` re-bases the counters across re-opens. Resampling is streaming (libsoxr keeps
its filter state between blocks), so block edges leave no clicks and hours of audio never sit in
RAM at once. Bad audio raises ``AudioError`` naming the file and the fix.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import soxr

from biovita.audio import AUDIO_SUFFIXES, list_audio_files, to_mono
from biovita.errors import AudioError
from device.records import AudioBlock

log = logging.getLogger(__name__)


class StreamResampler:
    """Band-limited resampling of a stream in blocks (libsoxr keeps state between calls)."""

    def __init__(self, rate_in: float, rate_out: int) -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        self._stream = (
            None
            if rate_in == rate_out
            else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
        )

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono, last=last)


def check_rate(rate: float, min_rate: int, origin: str) -> None:
    if rate < min_rate:
        raise AudioError(
            f"{origin} is sampled at {rate:g} Hz, below the {min_rate} Hz the model needs "
            f"(it listens up to {min_rate // 2} Hz; upsampling cannot add what was never recorded)",
            hint="record at a higher rate, or set audio.min_rate_hz if you accept the loss",
        )


ULTRASONIC_FRACTION = 0.5  # more of the energy than this above the model's band: say so
BAND_CHECK_S = 10.0  # a live stream is judged on its first seconds, a file on all of it


class _Blocker:
    """Turns mono blocks at the native rate into ``AudioBlock``s at the target rate.

    ``time_expansion`` N plays the audio N times slower (a bat recording at 250 kHz and N = 10
    becomes 25 kHz audio with its 40 kHz calls at 4 kHz); the counter then runs N times faster
    than real time, and the wall clock stays in real time. The energy the resampler removes is
    the energy above the model's band: when it is most of the audio, one warning says so.
    """

    def __init__(
        self,
        rate_in: int,
        rate_out: int,
        origin: str,
        start_utc: datetime,
        time_expansion: int = 1,
        live: bool = True,
    ) -> None:
        self.resample = StreamResampler(rate_in / time_expansion, rate_out)
        self.live = live  # judge the band after BAND_CHECK_S; a file is judged at its end
        self.rate_in, self.rate_out = rate_in, rate_out
        self.clock_rate = rate_out * time_expansion  # counter samples per real second
        self.origin, self.start_utc = origin, start_utc
        self.counter = 0  # output samples so far
        self.frames_in = 0  # input frames so far
        self.energy_in = self.energy_out = 0.0  # sum of squares per second, either side
        self.band_warned = False

    def block(
        self, mono: np.ndarray, last: bool = False, wall: datetime | None = None
    ) -> AudioBlock | None:
        self._check_finite(mono)
        self.frames_in += len(mono)
        out = self.resample(mono, last=last)
        self.energy_in += float(np.dot(mono, mono)) / self.resample.rate_in
        self.energy_out += float(np.dot(out, out)) / self.rate_out
        judged = last or (self.live and self.frames_in >= BAND_CHECK_S * self.rate_in)
        if judged and not self.band_warned:
            self._warn_if_ultrasonic()
        if out.size == 0:
            return None
        when = wall or self.start_utc + timedelta(seconds=self.counter / self.clock_rate)
        block = AudioBlock(out, self.rate_out, self.counter, when, self.origin)
        self.counter += out.size
        return block

    @property
    def above_band_fraction(self) -> float:
        """Share of the input's energy above the model's band (the resampler removed it)."""
        if self.resample.rate_in <= self.rate_out or self.energy_in <= 0.0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - self.energy_out / self.energy_in))

    @property
    def band_top_hz(self) -> float:
        """The highest real frequency the model hears of this audio."""
        return self.clock_rate / 2

    def ultrasonic_warning(self) -> str | None:
        fraction = self.above_band_fraction
        if fraction <= ULTRASONIC_FRACTION:
            return None
        return (
            f"{self.origin}: {fraction:.0%} of its energy lies above {self.band_top_hz:.0f} Hz, "
            "which the model does not hear (ultrasonic? a bat recording can be classified "
            "time-expanded: --time-expansion 10, or audio.time_expansion)"
        )

    def _warn_if_ultrasonic(self) -> None:
        self.band_warned = True
        warning = self.ultrasonic_warning()
        if warning:
            log.warning("%s", warning)

    def _check_finite(self, mono: np.ndarray) -> None:
        bad = ~np.isfinite(mono)
        if bad.any():
            first_s = (self.frames_in + int(np.argmax(bad))) / self.rate_in
            raise AudioError(
                f"{self.origin} holds {int(bad.sum())} NaN or infinite samples, the first at "
                f"{first_s:.3f} s",
                hint="the file or stream is damaged; re-record or re-export it",
            )


# ------------------------------------------------------------------------------------- files


def expand_paths(path: Path) -> list[Path]:
    """A file, or the audio files below a folder (sorted: a folder plays in a stable order)."""
    path = Path(path)
    if path.is_dir():
        files = list_audio_files(path)
        if not files:
            raise AudioError(
                f"folder {path} holds no audio files",
                hint=f"put {', '.join(sorted(AUDIO_SUFFIXES))} files there",
            )
        return files
    if not path.exists():
        raise AudioError(f"audio path {path} does not exist", hint="check the path")
    return [path]


@dataclass
class DecodeReport:
    """What decoding a file found out, for the caller's summary."""

    native_rate: int | None = None
    above_band_fraction: float = 0.0  # of the energy, above what the model hears
    ultrasonic: str | None = None  # the warning, when that is most of it


def read_file_blocks(
    path: Path,
    rate_out: int,
    block_s: float = 30.0,
    channel: int | None = None,
    min_rate: int = 1,
    start_utc: datetime | None = None,
    time_expansion: int = 1,
    report: DecodeReport | None = None,
) -> Iterator[AudioBlock]:
    """Decode ``path`` in blocks, down-mix, resample; counters start at 0 for this file.

    ``time_expansion`` N: the file is played N times slower (its rate read as rate / N); block
    times stay real. ``report`` is filled in for the caller's summary.

    Raises ``AudioError`` for a file that cannot be decoded, is empty, holds NaN/Inf samples, is
    sampled too low, or ends before the length its header declares (truncated).
    """
    path = Path(path)
    origin = str(path)
    try:
        sf = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(
            f"cannot decode {path}: {err}",
            hint="the file is corrupt, truncated or not audio; supported: WAV, FLAC, OGG, MP3",
        ) from err
    with sf:
        if sf.frames == 0:
            raise AudioError(
                f"{path} holds no audio samples", hint="the file is empty; re-record it"
            )
        played = f"{origin} played {time_expansion}x slower" if time_expansion > 1 else origin
        check_rate(sf.samplerate / time_expansion, min_rate, played)
        start = start_utc or file_start(path)[0]
        blocker = _Blocker(sf.samplerate, rate_out, origin, start, time_expansion, live=False)
        report = report or DecodeReport()
        report.native_rate = sf.samplerate
        frames_read = 0
        blocksize = max(1, int(block_s * sf.samplerate))
        while True:
            try:
                data = sf.read(blocksize, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as err:
                raise AudioError(
                    f"{path} is damaged after {frames_read / sf.samplerate:.1f} s: {err}",
                    hint="the file is truncated or corrupt; re-copy it from the recorder",
                ) from err
            # only an empty read is the end: a decoder may return a short block before it (an
            # MP3 frame boundary), and stopping there would drop the rest of the file
            last = len(data) == 0
            frames_read += len(data)
            block = blocker.block(to_mono(data, channel), last=last)
            if block is not None:
                yield block
            if last:
                break
        report.above_band_fraction = blocker.above_band_fraction
        report.ultrasonic = blocker.ultrasonic_warning()
        declared = declared_frames(path)
        if declared is not None and declared > frames_read:
            raise AudioError(
                f"{path} is truncated: its header declares {declared} frames "
                f"({declared / sf.samplerate:.1f} s) but only {frames_read} are there",
                hint="re-copy the file from the recorder; the part that was there was classified",
            )
        if frames_read == 0:
            raise AudioError(
                f"{path} holds no audio samples", hint="the file is empty; re-record it"
            )


def declared_frames(path: Path) -> int | None:
    """The frame count a RIFF/WAVE header declares (libsndfile trusts the file size instead).

    A recorder that lost power mid-file leaves a header promising more data than the file holds;
    None when the header does not say (other formats, or streaming WAVs with a 0/0xFFFFFFFF size).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                tag, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if tag == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = int.from_bytes(fmt[12:14], "little")
                elif tag == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


# AudioMoth names files YYYYMMDD_HHMMSS (UTC); Wildlife Acoustics PREFIX_YYYYMMDD_HHMMSS
_NAME_TIME = re.compile(r"(?:^|_)(\d{8}_\d{6})(?=$|_)")


def start_from_name(path: Path) -> datetime | None:
    """The recording start a recorder wrote into the file name, read as UTC; None if none."""
    match = _NAME_TIME.search(path.stem)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:  # 8 and 6 digits that are no date (a counter, a serial number)
        return None


def file_start(path: Path) -> tuple[datetime, bool]:
    """A file's recording start and whether it is known: from its name, or else a guess.

    The guess (modification time minus length) is only as good as the copy that set the time,
    so it comes back as not known (``clock_synced`` false on the detections).
    """
    named = start_from_name(path)
    if named is not None:
        return named, True
    try:
        info = soundfile.info(str(path))
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        return mtime - timedelta(seconds=info.duration), False
    except (OSError, RuntimeError, soundfile.LibsndfileError):
        return datetime.now(timezone.utc), False


class FileSource:
    """A file or folder played as one live stream, paced at real time (times ``speed``) or as
    fast as possible.

    A file that fails is reported through ``on_error`` and skipped: the stream goes on with the
    next file (one bad recording must not stop a recorder replaying a card of them).
    """

    def __init__(
        self,
        path: Path,
        rate_out: int,
        realtime: bool = True,
        block_s: float = 0.5,
        channel: int | None = None,
        min_rate: int = 1,
        on_error: Callable[[Path, AudioError], None] | None = None,
        speed: float = 1.0,
        time_expansion: int = 1,
    ) -> None:
        self.paths = expand_paths(path)
        self.time_expansion = time_expansion
        self.clock_rate = rate_out * time_expansion  # stream samples per real second
        self.name = str(path)
        self.rate_out, self.realtime, self.block_s = rate_out, realtime, block_s
        self.channel, self.min_rate, self.speed = channel, min_rate, speed
        self.on_error = on_error or (lambda p, e: log.error("skipping %s", e.describe()))
        self._closed = False

    def blocks(self) -> Iterator[AudioBlock]:
        start_mono = time.monotonic()
        start_wall = self._anchor(datetime.now(timezone.utc))
        offset = 0  # stream samples before the current file
        for path in self.paths:
            file_end = offset
            try:
                for block in read_file_blocks(
                    path,
                    self.rate_out,
                    self.block_s,
                    self.channel,
                    self.min_rate,
                    time_expansion=self.time_expansion,
                ):
                    if self._closed:
                        return
                    start = offset + block.start_sample
                    wall = start_wall + timedelta(seconds=start / self.clock_rate)
                    block = AudioBlock(block.samples, self.rate_out, start, wall, block.origin)
                    if self.realtime:
                        _sleep_until(start_mono + block.end_sample / self.rate_out / self.speed)
                    file_end = block.end_sample
                    yield block
            except AudioError as err:
                self.on_error(path, err)
            offset = file_end

    def _anchor(self, now: datetime) -> datetime:
        """The UTC time of the stream's first sample; later samples follow the sample clock.

        Played at the speed of sound the files stand in for a microphone: the stream starts
        now. Played faster, it is dated as if it had been recorded just before playback began
        (it ends at ``now``), so no detection is dated in the future and times stay in order.
        """
        if self.realtime and self.speed == 1.0:
            return now
        total = sum(_duration_or_zero(p) for p in self.paths)  # real seconds, expanded or not
        return now - timedelta(seconds=total)

    def close(self) -> None:
        self._closed = True


def _duration_or_zero(path: Path) -> float:
    try:
        return float(soundfile.info(str(path)).duration)
    except (RuntimeError, soundfile.LibsndfileError):
        return 0.0  # undecodable: on_error reports it when its turn comes


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# ------------------------------------------------------------------------------------- stdin


class StdinSource:
    """Interleaved raw PCM (int16 or float32) on a binary stream, e.g. ``arecord ... |``."""

    def __init__(
        self,
        rate_in: int,
        rate_out: int,
        channels: int = 1,
        sample_format: str = "int16",
        channel: int | None = None,
        block_s: float = 0.5,
        stream: BinaryIO | None = None,
        min_rate: int = 1,
    ) -> None:
        self.name = "stdin"
        check_rate(rate_in, min_rate, "audio on stdin")
        # The unbuffered file, not sys.stdin.buffer: the reader thread may still be blocked in
        # read() when the daemon exits on SIGTERM, and a BufferedReader's lock held by a daemon
        # thread aborts interpreter shutdown ("could not acquire lock ... at shutdown").
        # Short reads from the raw file are fine: blocks() collects until a block is full.
        self.stream = stream or sys.stdin.buffer.raw
        self.channels, self.channel = channels, channel
        self.dtype = np.dtype("<i2" if sample_format == "int16" else "<f4")
        self.frame_bytes = self.dtype.itemsize * channels
        self.block_bytes = max(1, int(block_s * rate_in)) * self.frame_bytes
        self.rate_in, self.rate_out = rate_in, rate_out

    def blocks(self) -> Iterator[AudioBlock]:
        """Times follow the sample clock from the first block's arrival: monotonic and exact
        whatever the pipe's pace (a pipe faster than real time is not stamped by arrival)."""
        blocker: _Blocker | None = None
        pending = b""
        while True:
            chunk = self.stream.read(self.block_bytes - len(pending))
            if not chunk:
                break
            pending += chunk
            if len(pending) < self.block_bytes:
                continue
            if blocker is None:
                start = _arrival(len(pending) // self.frame_bytes, self.rate_in)
                blocker = _Blocker(self.rate_in, self.rate_out, self.name, start)
            block = blocker.block(self._decode(pending))
            pending = b""
            if block is not None:
                yield block
        usable = len(pending) - len(pending) % self.frame_bytes
        if blocker is None:
            start = _arrival(usable // self.frame_bytes, self.rate_in)
            blocker = _Blocker(self.rate_in, self.rate_out, self.name, start)
        block = blocker.block(self._decode(pending[:usable]), last=True)
        if block is not None:
            yield block

    def _decode(self, raw: bytes) -> np.ndarray:
        frames = np.frombuffer(raw, dtype=self.dtype).reshape(-1, self.channels)
        if self.dtype.kind == "i":
            frames = frames.astype(np.float32) / 32768.0
        return to_mono(frames, self.channel)

    def close(self) -> None:
        pass


def _arrival(frames: int, rate: int) -> datetime:
    """The wall time of a block's first sample, for a block that has just arrived."""
    return datetime.now(timezone.utc) - timedelta(seconds=frames / rate)


# --------------------------------------------------------------------------------- sound card


def input_devices() -> list[dict]:
    """Every input device PortAudio sees (index, name, channels, default rate)."""
    import sounddevice

    return [
        {
            "index": i,
            "name": d["name"],
            "channels": d["max_input_channels"],
            "default_rate_hz": int(d["default_samplerate"]),
        }
        for i, d in enumerate(sounddevice.query_devices())
        if d["max_input_channels"] > 0
    ]


def describe_devices(devices: list[dict]) -> str:
    if not devices:
        return (
            "no input devices at all (is the microphone plugged in? is the user in group 'audio'?)"
        )
    return "; ".join(
        f"[{d['index']}] {d['name']} ({d['channels']} ch, {d['default_rate_hz']} Hz)"
        for d in devices
    )


def resolve_input_device(wanted: str | None, devices: list[dict]) -> dict:
    """Pick an input device by index or (case-insensitive) name substring; error lists them all."""
    if not devices:
        raise AudioError("no audio input device found", hint=describe_devices(devices))
    if wanted is None:
        import sounddevice

        default = sounddevice.default.device[0]
        matches = [d for d in devices if d["index"] == default] or devices[:1]
    elif wanted.strip().isdigit():
        matches = [d for d in devices if d["index"] == int(wanted)]
    else:
        matches = [d for d in devices if wanted.lower() in d["name"].lower()]
    if not matches:
        raise AudioError(
            f"audio input device {wanted!r} not found",
            hint=f"set audio.input_device to one of: {describe_devices(devices)}",
        )
    return matches[0]


class SoundcardSource:
    """A sound card through PortAudio (sounddevice), at any native rate and channel count."""

    def __init__(
        self,
        rate_out: int,
        input_device: str | None = None,
        capture_rate: int | None = None,
        channels: int = 1,
        channel: int | None = None,
        block_s: float = 0.5,
        min_rate: int = 1,
        queue_blocks: int = 240,
    ) -> None:
        self.device = resolve_input_device(input_device, input_devices())
        self.name = self.device["name"]
        self.rate_in = capture_rate or self.device["default_rate_hz"]
        check_rate(self.rate_in, min_rate, f"input device {self.name!r}")
        self.channels = min(max(channels, (channel or 0) + 1), self.device["channels"])
        self.channel, self.rate_out, self.block_s = channel, rate_out, block_s
        self._queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._stream = None
        self.overflows = 0
        self.dropped_blocks = 0

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait((indata.copy(), _arrival(frames, self.rate_in)))
        except queue.Full:  # inference is far behind: losing audio beats unbounded RAM
            self.dropped_blocks += 1

    def blocks(self) -> Iterator[AudioBlock]:
        import sounddevice

        blocker = _Blocker(self.rate_in, self.rate_out, self.name, datetime.now(timezone.utc))
        try:
            self._stream = sounddevice.InputStream(
                device=self.device["index"],
                samplerate=self.rate_in,
                channels=self.channels,
                dtype="float32",
                blocksize=int(self.block_s * self.rate_in),
                callback=self._callback,
            )
            self._stream.start()
        except sounddevice.PortAudioError as err:
            raise AudioError(
                f"cannot open input device {self.name!r} at {self.rate_in} Hz, "
                f"{self.channels} ch: {err}",
                hint=f"pick another rate or device; available: {describe_devices(input_devices())}",
            ) from err
        while self._stream is not None:
            try:
                data, wall = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue  # the watchdog upstream decides when silence means a stalled card
            block = blocker.block(to_mono(data, self.channel), wall=wall)
            if block is not None:
                yield block

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
