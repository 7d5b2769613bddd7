"""Fixtures shared by every test package: real services started on loopback, real audio."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.mosquitto import MOSQUITTO, MosquittoBroker

# Fuzz tests (hypothesis) are derandomized by default, so CI runs the same cases every time and
# a failure reproduces; HYPOTHESIS_PROFILE=explore draws new ones. No deadline: the 2-core CI
# machine is shared, and time is bounded by each test's max_examples instead.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
REAL_AUDIO = Path(os.environ.get("BIOVITA_REAL_AUDIO", REPO.parent / "shared" / "realaudio"))


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A fresh Mosquitto broker (persistence on) on a free loopback port."""
    if not Path(MOSQUITTO).exists() and not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed: run scripts/setup.sh (Debian package mosquitto)")
    broker = MosquittoBroker(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def real_audio_dir() -> Path:
    if not REAL_AUDIO.is_dir():
        pytest.skip(f"real recordings not found at {REAL_AUDIO} (../shared/realaudio)")
    return REAL_AUDIO


@pytest.fixture(scope="session")
def real_audio_files(real_audio_dir: Path) -> list[Path]:
    from biovita.audio import list_audio_files

    return list_audio_files(real_audio_dir)
