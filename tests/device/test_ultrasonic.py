"""Ultrasonic recordings: said so once per file; classified time-expanded with real times."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile

from device.cli import main
from device.sources import DecodeReport, read_file_blocks
from tests.support.tiny_bundle import TONE_FREQS_HZ, tone_call

BAT_RATE = 250_000
EXPANSION = 10
CALLS = [(0.3, 0), (1.0, 1), (1.8, 2), (2.5, 3)]  # real seconds, tone species


def _bat_recording(path, seconds: float = 3.0) -> list[tuple[float, float, str]]:
    """A 250 kHz recording whose calls are the tone species 10x higher (7-50 kHz), 60 ms long."""
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.002, int(seconds * BAT_RATE)).astype(np.float32)
    truth = []
    for start_s, species in CALLS:
        call = tone_call(TONE_FREQS_HZ[species] * EXPANSION, BAT_RATE, 0.6 / EXPANSION)
        i = int(start_s * BAT_RATE)
        audio[i : i + len(call)] += call
        truth.append((start_s, start_s + len(call) / BAT_RATE, f"sp{species:02d}"))
    soundfile.write(path, audio, BAT_RATE, subtype="PCM_16")
    return truth


def test_a_250_khz_file_is_flagged_once_and_a_bird_file_is_not(
    tone_bundle, scape_file, tmp_path, capsys
):
    card = tmp_path / "card"
    card.mkdir()
    _bat_recording(card / "bat.wav")
    (card / "bird.wav").write_bytes(scape_file[0].read_bytes())
    argv = ["classify", str(card), "--bundle", str(tone_bundle), "-q"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    [logged] = [line for line in err.splitlines() if "WARNING" in line]  # once, in the log
    assert "bat.wav: 7" in logged and "above 8000 Hz" in logged and "--time-expansion" in logged
    summary = err[err.index("1 file(s) with most of their energy above the band:") :]
    assert "bat.wav: 7" in summary and "bird.wav" not in err  # 75% above 8 kHz


@pytest.mark.parametrize("low, high, share", [(1, 0, 0.0), (2, 1, 0.2), (1, 2, 0.8), (0, 1, 1.0)])
def test_the_share_above_the_band_is_the_energy_the_resampler_removes(tmp_path, low, high, share):
    path = tmp_path / "tones.wav"
    t = np.arange(BAT_RATE * 2) / BAT_RATE
    audio = low * np.sin(2 * np.pi * 1_000 * t) + high * np.sin(2 * np.pi * 30_000 * t)
    soundfile.write(path, (0.2 * audio).astype(np.float32), BAT_RATE, subtype="FLOAT")
    report = DecodeReport()
    list(read_file_blocks(path, 16_000, block_s=0.5, report=report))
    assert report.native_rate == BAT_RATE
    assert report.above_band_fraction == pytest.approx(share, abs=0.01)
    assert (report.ultrasonic is not None) == (share > 0.5)


def test_time_expansion_finds_the_bat_calls_at_their_real_times(tone_bundle, tmp_path):
    truth = _bat_recording(tmp_path / "bat.wav")
    out = tmp_path / "out"
    argv = ["classify", str(tmp_path / "bat.wav"), "--bundle", str(tone_bundle), "-q"]
    assert main([*argv, "--out", str(out), "--time-expansion", str(EXPANSION)]) == 0
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert [r["species_id"] for r in rows] == [species for _, _, species in truth]
    for row, (start, end, _) in zip(rows, truth, strict=True):
        assert float(row["start_s"]) <= start < end <= float(row["end_s"])  # real seconds
        assert float(row["end_s"]) - float(row["start_s"]) <= 0.6 + 1e-9  # windows: 0.3 s real
    assert max(float(r["end_s"]) for r in rows) <= 3.0
    raven = (out / "bat.wav.biovita.selection.table.txt").read_text().splitlines()
    low, high = raven[1].split("\t")[5:7]
    assert (low, high) == ("500", "80000")  # the model's 50-8000 Hz band, in real Hz
