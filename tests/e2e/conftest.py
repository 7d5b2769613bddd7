"""Fixtures of the end-to-end suites: one tiny synthetic world, a bundle that hears it, longer
soundscapes for the fault runs; and the session summary of what the suites proved."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.world import World, WorldConfig, write_world
from biovita.world.annotations import write_truth
from biovita.world.mixing import make_soundscape
from tests.e2e import ledger
from tests.e2e.chain import Service


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A daemon runs in its own session, so pytest's exit does not end it: stop what a test (a
    failed one, typically) left running, and say so. A module or session fixture's service was
    started before this fixture (wider scopes are set up first) and is kept for the next test."""
    shared = Service.running()
    yield
    if leftovers := Service.stop_leftovers(keep=shared):
        warnings.warn(f"stopped processes the test left running: {leftovers}", stacklevel=1)


@pytest.fixture(autouse=True, scope="session")
def _no_process_outlives_the_session():
    yield
    if leftovers := Service.stop_leftovers():
        warnings.warn(f"stopped processes the fixtures left running: {leftovers}", stacklevel=1)


@dataclass(frozen=True)
class FieldKit:
    world_dir: Path
    bundle: Path
    soundscapes: tuple[Path, ...]  # minutes of calls in background, ground truth beside (.csv)
    rate: int


@pytest.fixture(scope="session")
def field_kit(tmp_path_factory) -> FieldKit:
    """A tiny world written to disk, the tiny real ONNX bundle (tests/support/tiny_bundle.py)
    whose species bank is built from the world's calls, and two 2-minute soundscapes.

    The tiny tower is untrained: its features separate genera, not sister species, so the bank
    and the soundscapes hold one species per genus (as tests/device/test_world_live.py does).
    """
    from tests.support.tiny_bundle import world_reference_bundle

    root = tmp_path_factory.mktemp("field-kit")
    config = WorldConfig.tiny()
    world_dir = write_world(root / "world", config)
    world = World(config)
    bundle, taxa = world_reference_bundle(root / "bundle", world)
    ids = [t.species_id for t in taxa]
    scapes = []
    for n in range(2):
        audio, truth = make_soundscape(
            ids, world.call, np.random.default_rng(100 + n), 120.0, config.sample_rate,
            (0.0, 18.0), 12.0,
        )  # fmt: skip
        path = root / f"soundscape_{n}.wav"
        soundfile.write(path, audio, config.sample_rate, subtype="PCM_16")
        write_truth(path.with_suffix(".csv"), truth)
        scapes.append(path)
    return FieldKit(world_dir, bundle, tuple(scapes), config.sample_rate)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = ledger.lines()
    if lines:
        terminalreporter.section("end-to-end, fault and security suites")
        for line in lines:
            terminalreporter.write_line(line)
