"""Every source path with the real recordings at their native rates (4 formats, 32/44.1 kHz)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile

from biovita.audio import load_audio
from biovita.errors import AudioError
from device.sources import (
    FileSource,
    StdinSource,
    read_file_blocks,
    resolve_input_device,
)

RATE = 16_000


def _joined(blocks) -> np.ndarray:
    blocks = list(blocks)
    starts = [b.start_sample for b in blocks]
    assert starts == sorted(starts) and starts[0] == 0
    for a, b in zip(blocks, blocks[1:], strict=False):
        assert b.start_sample == a.end_sample  # the sample counter has no gaps or overlaps
    return np.concatenate([b.samples for b in blocks])


def _close_to_reference(streamed: np.ndarray, reference: np.ndarray) -> None:
    assert abs(len(streamed) - len(reference)) <= 2
    n = min(len(streamed), len(reference))
    inner = slice(100, n - 100)  # soxr's streaming and one-shot filters differ only at the edges
    err = np.abs(streamed[inner] - reference[inner]).max()
    assert err < 1e-3 * max(1.0, np.abs(reference).max())


def test_real_files_stream_in_blocks_equal_to_a_one_shot_decode(real_audio_files):
    assert len(real_audio_files) == 5
    for path in real_audio_files:
        reference, _ = load_audio(path, RATE)
        streamed = _joined(read_file_blocks(path, RATE, block_s=0.37))
        _close_to_reference(streamed, reference)


def test_real_files_on_stdin_as_raw_pcm_at_their_native_rates(real_audio_files):
    for path in real_audio_files:
        native, rate = soundfile.read(path, dtype="float32", always_2d=True)
        for fmt, dtype in (("int16", "<i2"), ("float32", "<f4")):
            data = native if fmt == "float32" else np.round(native * 32767)
            raw = io.BytesIO(np.ascontiguousarray(data.astype(dtype)).tobytes())
            src = StdinSource(rate, RATE, native.shape[1], fmt, None, 0.25, raw)
            streamed = _joined(src.blocks())
            reference, _ = load_audio(path, RATE)
            assert abs(len(streamed) - len(reference)) <= 2
            n = min(len(streamed), len(reference))
            tol = 1e-3 if fmt == "float32" else 2e-3
            assert np.abs(streamed[100 : n - 100] - reference[100 : n - 100]).max() < tol


def test_stereo_channel_selection_and_downmix(real_audio_dir):
    robin = real_audio_dir / "librosa_robin_Erithacus_rubecula.ogg"
    native, rate = soundfile.read(robin, dtype="float32", always_2d=True)
    assert native.shape[1] == 2
    left = _joined(read_file_blocks(robin, rate, channel=0))
    mix = _joined(read_file_blocks(robin, rate, channel=None))
    assert np.allclose(left, native[:, 0]) and np.allclose(mix, native.mean(axis=1), atol=1e-6)
    with pytest.raises(AudioError, match="channel 2 does not exist"):
        list(read_file_blocks(robin, rate, channel=2))


def test_a_folder_plays_as_one_stream_with_a_continuous_counter(real_audio_dir):
    src = FileSource(real_audio_dir, RATE, realtime=False, block_s=2.0)
    blocks = list(src.blocks())
    origins = list(dict.fromkeys(b.origin for b in blocks))
    assert len(origins) == 5
    for a, b in zip(blocks, blocks[1:], strict=False):
        assert b.start_sample == a.end_sample
        assert b.wall_time > a.wall_time
    total = sum(len(b.samples) for b in blocks)
    assert total == pytest.approx(141.8 * RATE, rel=0.01)


def test_realtime_playback_is_paced_at_the_speed_of_sound(real_audio_dir):
    robin = real_audio_dir / "librosa_robin_Erithacus_rubecula.ogg"  # 2.7 s
    started = time.monotonic()
    blocks = list(FileSource(robin, RATE, realtime=True, block_s=0.5).blocks())
    elapsed = time.monotonic() - started
    audio_s = sum(len(b.samples) for b in blocks) / RATE
    assert audio_s == pytest.approx(2.7, abs=0.05)
    assert audio_s - 0.3 <= elapsed <= audio_s + 2.0


def test_stdin_refuses_the_rates_the_file_source_refuses(tmp_path):
    path = tmp_path / "low.wav"
    soundfile.write(path, np.zeros(8_000, np.float32), 8_000)
    with pytest.raises(AudioError) as from_file:
        list(read_file_blocks(path, RATE, min_rate=16_000))
    with pytest.raises(AudioError) as from_stdin:
        StdinSource(8_000, RATE, stream=io.BytesIO(b""), min_rate=16_000)
    assert "below the 16000 Hz the model needs" in str(from_stdin.value)
    assert from_stdin.value.hint == from_file.value.hint


def test_a_missing_input_device_lists_the_available_ones():
    devices = [
        {
            "index": 0,
            "name": "USB Audio Device: Dodotronic",
            "channels": 1,
            "default_rate_hz": 384000,
        },
        {"index": 3, "name": "seeed-2mic-voicecard", "channels": 2, "default_rate_hz": 48000},
    ]
    assert resolve_input_device("dodotronic", devices)["index"] == 0
    assert resolve_input_device("3", devices)["name"] == "seeed-2mic-voicecard"
    with pytest.raises(AudioError) as err:
        resolve_input_device("AudioMoth", devices)
    assert "[0] USB Audio Device: Dodotronic (1 ch, 384000 Hz)" in err.value.hint
    assert "seeed-2mic-voicecard" in err.value.hint


def test_the_real_portaudio_device_list_is_queried():
    """On this machine PortAudio is real but may see no card: then the error says so clearly."""
    from device.sources import SoundcardSource, input_devices

    devices = input_devices()
    if devices:
        pytest.skip(f"this machine has input devices ({devices}); covered by doctor")
    with pytest.raises(AudioError, match="no audio input device") as err:
        SoundcardSource(RATE, "any")
    assert "microphone" in err.value.hint
