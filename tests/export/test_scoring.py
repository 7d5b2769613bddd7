"""Scoring calibration: fitted on one soundscape of a tiny world, judged on another, applied by
the device exactly as fitted."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.bundle import ScoringDefaults, load_bundle
from biovita.world import World, WorldConfig
from biovita.world.annotations import read_truth as read_world_truth
from biovita.world.annotations import write_truth
from device.app import build_pipeline
from device.classify import EventTracker
from device.config import load_config
from device.records import Candidate, Window, WindowResult
from export.cli import main
from export.errors import ExportError
from export.runtime import ort_embed, ort_session
from export.scoring import Rule, _Best, confirmed, label_windows, soundscape_pairs
from tests.support.tiny_bundle import build_tiny_bundle

SECONDS = 120.0


@pytest.fixture(scope="module")
def world_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A bundle whose bank is the tiny tower's mean of each seen species' calls, and two
    soundscapes: ``validation`` to fit on, ``held_out`` to judge the fit."""
    out = tmp_path_factory.mktemp("scoring")
    world = World(WorldConfig.tiny())
    rng = np.random.default_rng(0)
    seen = [t for t in world.taxa if t.species_id not in world.unseen_ids]
    calls = {t.species_id: [world.call(t.species_id, rng) for _ in range(4)] for t in seen}
    bundle = build_tiny_bundle(out / "bundle", seen, calls)
    scapes = []
    for name, seed in (("validation", 1), ("held_out", 2)):
        audio, truth = world.soundscape(np.random.default_rng(seed), SECONDS)
        soundfile.write(out / f"{name}.wav", audio, world.config.sample_rate, subtype="FLOAT")
        write_truth(out / f"{name}.csv", truth)
        scapes.append(out / f"{name}.wav")
    return bundle, *scapes


def window_scores(bundle: Path, soundscape: Path, scoring: ScoringDefaults):
    loaded = load_bundle(bundle)
    session = ort_session(loaded.tower_path)
    data = label_windows(
        loaded.bank,
        lambda pcm: ort_embed(session, pcm),
        soundscape_pairs([soundscape]),
        loaded.manifest.frontend,
    )
    rule = Rule(
        scoring.threshold, scoring.unknown_similarity, scoring.confirm_hits, scoring.confirm_windows
    )
    return _Best(data, scoring.temperature).prf(rule)


def test_fitted_scoring_cuts_false_alarms_on_a_soundscape_it_never_saw(world_files, capsys):
    bundle, validation, held_out = world_files
    defaults = load_bundle(bundle).manifest.scoring
    assert defaults.fitted_on == ""
    before = window_scores(bundle, held_out, defaults)

    assert main(["calibrate", "--bundle", str(bundle), str(validation)]) == 0
    assert "background cosine floor" in capsys.readouterr().out

    loaded = load_bundle(bundle)  # hashes re-checked: the manifest was rewritten consistently
    fitted = loaded.manifest.scoring
    assert "validation.wav" in fitted.fitted_on
    assert fitted.unknown_similarity > defaults.unknown_similarity  # background now rejected
    after = window_scores(bundle, held_out, fitted)
    precision, _, f1 = after
    assert precision > before[0] + 0.1, (before, after)
    assert f1 >= before[2], (before, after)


def test_the_device_applies_the_bundles_confirmation_unless_its_config_sets_it(tmp_path):
    from tests.support.tiny_bundle import tone_taxa

    scoring = ScoringDefaults(confirm_hits=2, confirm_windows=3)
    bundle = load_bundle(build_tiny_bundle(tmp_path / "b", tone_taxa(3), scoring=scoring))
    cfg = load_config(None, environ={}, overrides={"bundle": str(bundle.root)})
    tracker = build_pipeline(bundle, cfg, backend=None).tracker
    assert (tracker.n, tracker.m) == (2, 3)
    overrides = {"classify.confirm_hits": 1, "classify.confirm_windows": 1}
    cfg = load_config(None, environ={}, overrides={"bundle": str(bundle.root), **overrides})
    tracker = build_pipeline(bundle, cfg, backend=None).tracker
    assert (tracker.n, tracker.m) == (1, 1)
    with pytest.raises(ValueError, match="confirm_hits"):
        ScoringDefaults(confirm_hits=3, confirm_windows=2)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 2), (2, 3), (3, 3)])
@pytest.mark.parametrize("recording_windows", [400, 1, 2])  # one long recording, short files
def test_the_fit_simulates_the_device_event_tracker(n, m, recording_windows):
    """The windows ``confirmed`` reports are exactly the windows of the device's events."""
    rng = np.random.default_rng(n * 10 + m)
    count = 400
    passed = rng.random(count) < 0.45
    species = rng.integers(0, 3, count)
    recording = np.arange(count) // recording_windows
    simulated = confirmed(passed, species, recording, Rule(0.5, 0.0, n, m))

    tracker = EventTracker(confirm_hits=n, confirm_windows=m, merge_gap=1)
    events = []
    for k in range(count):
        new_file = k > 0 and recording[k] != recording[k - 1]
        window = Window(
            np.zeros(1, np.float32),
            1,
            k,
            datetime.now(timezone.utc),
            index=k,
            discontinuity=new_file,
        )
        hits = (Candidate(f"sp{species[k]}", 1.0, 1.0),) if passed[k] else ()
        events += tracker.push(WindowResult(window, hits, hits))
    events += tracker.flush()
    on_device = np.zeros(count, bool)
    for event in events:  # an event's windows are its hits: the tracker counts them
        kind = int(event.species_id[2:])
        span = range(event.first_window, event.last_window + 1)
        hits = [k for k in span if passed[k] and species[k] == kind]
        assert len(hits) == event.windows
        on_device[hits] = True
    assert np.array_equal(simulated, on_device)


def test_calibration_needs_soundscapes_with_truth(tmp_path, world_files):
    bundle, *_ = world_files
    soundfile.write(tmp_path / "lonely.wav", np.zeros(16_000 * 5, np.float32), 16_000)
    with pytest.raises(ExportError, match="truth CSV") as err:
        soundscape_pairs([tmp_path])
    assert "not the ones you benchmark on" in err.value.hint
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(16_000 * 6, np.float32), 16_000)
    write_truth(short.with_suffix(".csv"), [])
    assert main(["calibrate", "--bundle", str(bundle), str(short)]) == 2  # too few windows


def test_calibration_reads_the_three_column_truth_the_readme_documents(world_files, tmp_path):
    """``start_s,end_s,species_id`` (extra columns allowed) labels windows as the world's does."""
    bundle, validation, _ = world_files
    hand_made = tmp_path / "hand_made.wav"
    shutil.copy(validation, hand_made)
    with hand_made.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["species_id", "start_s", "end_s", "notes"])  # any order, one extra
        for e in read_world_truth(validation.with_suffix(".csv")):
            writer.writerow([e.species_id, e.start_s, e.end_s, "checked by ear"])
    loaded = load_bundle(bundle)
    session = ort_session(loaded.tower_path)

    def labels(audio: Path) -> np.ndarray:
        embed = lambda pcm: ort_embed(session, pcm)  # noqa: E731
        pairs = soundscape_pairs([audio])
        return label_windows(loaded.bank, embed, pairs, loaded.manifest.frontend).labels

    assert np.array_equal(labels(hand_made), labels(validation))
