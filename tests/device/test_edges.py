"""Short files, file edges and silence: what a field card is mostly made of (3 s clips, gaps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from device.app import open_bundle
from device.config import load_config
from device.offline import classify_batch
from tests.support.tiny_bundle import tone_scape


def _classify(bundle: Path, path: Path, out: Path, **overrides):
    cfg = load_config(None, environ={}, overrides={"bundle": str(bundle), **overrides})
    return classify_batch(path, open_bundle(cfg), cfg, out, set(), progress=False)


TWO_OF_TWO = {"classify.confirm_hits": 2, "classify.confirm_windows": 2}


@pytest.mark.parametrize("seconds", [1.0, 2.0, 2.9])
def test_a_file_shorter_than_a_window_confirms_with_the_window_it_has(
    tone_bundle, tmp_path, seconds
):
    audio, truth = tone_scape([(0.2, 1)], seconds)
    path = tmp_path / "short.wav"
    soundfile.write(path, audio, 48_000)
    result = _classify(tone_bundle, path, tmp_path, **TWO_OF_TWO)
    [row] = result.rows[str(path)]
    assert row.species_id == "sp01" and result.windows == 1
    assert row.start_s == 0.0 and row.end_s == pytest.approx(seconds, abs=1e-3)  # not 3.0


def test_events_end_with_their_file_and_every_row_stays_inside_it(tone_bundle, tmp_path):
    audio, _ = tone_scape([(4.0, 2)], 4.7)  # windows 0-3, 1.5-4.5 and 3-4.7 (padded)
    path = tmp_path / "edge.wav"
    soundfile.write(path, audio, 48_000)
    [row] = _classify(tone_bundle, path, tmp_path, **TWO_OF_TWO).rows[str(path)]
    assert row.species_id == "sp02" and row.end_s == pytest.approx(4.7, abs=1e-3)  # not 6.0


def test_the_real_short_recording_is_classified_inside_its_length(
    tone_bundle, real_audio_dir, tmp_path
):
    robin = real_audio_dir / "librosa_robin_Erithacus_rubecula.ogg"  # 2.7 s, stereo, 44.1 kHz
    result = _classify(tone_bundle, robin, tmp_path, **TWO_OF_TWO)
    assert result.windows == 1 and not result.errors
    duration = soundfile.info(str(robin)).duration
    assert all(0 <= r.start_s < r.end_s <= duration + 1e-3 for r in result.rows[str(robin)])


def test_digital_silence_is_gated_counted_and_never_detected(tone_bundle, tmp_path):
    path = tmp_path / "muted.wav"
    soundfile.write(path, np.zeros(48_000 * 12, np.float32), 48_000)
    result = _classify(tone_bundle, path, tmp_path, **{"classify.threshold": 0.0})
    assert result.rows[str(path)] == [] and result.windows == 0
    assert result.silent_windows == 7  # 12 s at a 3 s window and 1.5 s hop


def test_the_silence_floor_is_a_config_key(tone_bundle, tmp_path):
    audio, _ = tone_scape([(2.0, 3)], 6.0)
    path = tmp_path / "quiet.wav"
    soundfile.write(path, audio * 0.05, 48_000)  # the windows with the call: about -47 dBFS
    assert _classify(tone_bundle, path, tmp_path).rows[str(path)] != []
    gated = _classify(tone_bundle, path, tmp_path, **{"classify.silence_dbfs": -40.0})
    assert gated.rows[str(path)] == [] and gated.silent_windows == 3 and gated.windows == 0


@pytest.mark.parametrize("mode", ["CONSTANT", "VARIABLE"])
def test_the_last_call_of_an_mp3_is_classified(tone_bundle, tmp_path, mode):
    audio, _ = tone_scape([(6.7, 1)], 7.3, rate=44_100)  # the call fills the last 0.6 s
    path = tmp_path / "tail.mp3"
    soundfile.write(path, audio, 44_100, format="MP3", bitrate_mode=mode)
    [row] = _classify(tone_bundle, path, tmp_path).rows[str(path)]
    assert row.species_id == "sp01" and row.end_s == pytest.approx(7.3, abs=0.03)
