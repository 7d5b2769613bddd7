"""Shared by the soundscape benchmarks: a tiny tone bundle and a soundscape of its calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from tests.support.tiny_bundle import build_tone_bundle, tone_scape

RATE = 48_000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_tone_bundle(tmp_path_factory.mktemp("bundle") / "tones")


@pytest.fixture(scope="module")
def scape(tmp_path_factory) -> tuple[Path, Path]:
    """45 s of noise with six tone calls, and its truth CSV."""
    calls = [(3.0, 0), (10.0, 1), (18.0, 2), (25.0, 3), (33.0, 0), (40.0, 2)]
    audio, truth = tone_scape(calls, 45.0, RATE)
    rows = ["start_s,end_s,species_id,snr_db", *(f"{a},{b},{s},20" for a, b, s in truth)]
    folder = tmp_path_factory.mktemp("scape")
    soundfile.write(folder / "scape.wav", audio, RATE)
    (folder / "scape.csv").write_text("\n".join(rows) + "\n")
    return folder / "scape.wav", folder / "scape.csv"
