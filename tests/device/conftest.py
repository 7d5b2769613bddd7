"""Fixtures for the device tests: a tiny real bundle of tone 'species' and soundscapes of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from tests.support.tiny_bundle import build_tone_bundle, tone_scape


@pytest.fixture(scope="session")
def tone_bundle(tmp_path_factory) -> Path:
    return build_tone_bundle(tmp_path_factory.mktemp("bundle") / "tones")


@pytest.fixture
def scape_file(tmp_path: Path) -> tuple[Path, list[tuple[float, float, str]]]:
    audio, truth = tone_scape([(3.0, 0), (10.0, 1), (18.0, 2), (25.0, 3)], 30.0)
    path = tmp_path / "scape.wav"
    soundfile.write(path, audio, 48_000)
    return path, truth
