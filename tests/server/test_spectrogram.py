"""The review spectrogram: linear kHz up to the clip's own Nyquist, from the stored FLAC."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from matplotlib import image as mpimg

from biovita.audio import load_audio
from server_sync.config import LimitSettings
from server_sync.spectrogram import MAX_COLUMNS, linear_spectrogram, spectrogram_png


def _flac(path, samples: np.ndarray, rate: int):
    soundfile.write(path, samples, rate, format="FLAC")
    return path


def _tone(hz: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [16_000, 48_000, 96_000])
def test_the_frequency_axis_runs_to_the_clips_own_nyquist(rate):
    spec = linear_spectrogram(_tone(1_000.0, rate, 1.0), rate)
    assert spec.frequencies_hz[0] == 0 and spec.frequencies_hz[-1] == pytest.approx(rate / 2)
    assert spec.power_db.shape == (spec.frequencies_hz.size, spec.times_s.size)


def test_a_call_above_the_models_band_shows_where_it_is():
    """A 12 kHz call in a 48 kHz clip: the brightest row is at 12 kHz, not cut at 8 kHz."""
    spec = linear_spectrogram(_tone(12_000.0, 48_000, 2.0), 48_000)
    loudest = spec.frequencies_hz[int(spec.power_db.mean(axis=1).argmax())]
    bin_hz = spec.frequencies_hz[1]
    assert abs(loudest - 12_000.0) <= bin_hz


def test_a_real_recording_draws_from_its_stored_flac(real_audio_dir, tmp_path):
    """The robin (44.1 kHz stereo Vorbis) as a device would store it: FLAC at its own rate."""
    samples, rate = load_audio(real_audio_dir / "librosa_robin_Erithacus_rubecula.ogg", None)
    clip = _flac(tmp_path / "robin.flac", samples, rate)
    png = spectrogram_png(clip, LimitSettings())
    picture = mpimg.imread(io.BytesIO(png), format="png")
    assert picture.shape[:2] == (260, 720)
    spec = linear_spectrogram(samples, rate)
    assert spec.frequencies_hz[-1] == pytest.approx(22_050)
    # The song sits between 2 and 8 kHz: more energy there than in any other band of that width.
    band = spec.power_db[(spec.frequencies_hz >= 2_000) & (spec.frequencies_hz < 8_000)]
    high = spec.power_db[spec.frequencies_hz >= 14_000]
    assert band.mean() > high.mean() + 10


def test_a_long_clip_is_drawn_with_a_bounded_number_of_columns():
    rate = 48_000
    spec = linear_spectrogram(_tone(3_000.0, rate, 120.0), rate)
    assert spec.times_s.size <= MAX_COLUMNS + 1
    assert spec.duration_s == pytest.approx(120.0)


def test_a_clip_shorter_than_one_frame_still_draws(tmp_path):
    clip = _flac(tmp_path / "blip.flac", _tone(2_000.0, 48_000, 0.005), 48_000)
    assert spectrogram_png(clip, LimitSettings()).startswith(b"\x89PNG")


def test_a_short_call_in_a_long_clip_survives_the_merged_columns():
    rate = 48_000
    samples = np.zeros(rate * 120, np.float32)
    samples[rate * 60 : rate * 60 + 480] = _tone(9_000.0, rate, 0.01)  # 10 ms at 60 s
    spec = linear_spectrogram(samples, rate)
    row = int(np.abs(spec.frequencies_hz - 9_000.0).argmin())
    column = int(spec.power_db[row].argmax())
    assert abs(spec.times_s[column] - 60.0) < 0.2
    assert spec.power_db[row, column] > np.median(spec.power_db[row]) + 60
