"""Soundscapes: the ground truth is where the energy is, and Raven reads the same events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.errors import ManifestError
from biovita.world import SoundEvent, World, WorldConfig, load_world, write_world
from biovita.world.annotations import RAVEN_COLUMNS, read_raven_table, read_truth, write_truth
from biovita.world.mixing import add_at_snr
from biovita.world.seeding import rng_for


@pytest.fixture(scope="module")
def scape():
    world = World(WorldConfig.tiny())
    audio, events = world.soundscape(rng_for(5, "scape"), seconds=60.0)
    return world, audio, events


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_events_are_ordered_separate_seen_and_within_the_recording(scape):
    world, audio, events = scape
    assert audio.dtype == np.float32 and len(audio) == 60 * 16_000
    assert np.abs(audio).max() <= 1.0
    assert len(events) >= 8  # 15 a minute in the tiny world, minus the calls' own length
    low, high = world.config.soundscape_snr_db
    for before, after in zip(events, events[1:], strict=False):
        assert before.end_s < after.start_s
    for e in events:
        assert 0 <= e.start_s < e.end_s <= 60.0 and low <= e.snr_db <= high
        assert e.species_id in world.seen_ids


def test_calls_raise_the_level_where_the_truth_says_they_are(scape):
    _, audio, events = scape
    rate = 16_000
    loud = [e for e in events if e.snr_db >= 6.0]
    assert loud
    louder = 0
    for e in loud:
        span = audio[int(e.start_s * rate) : int(e.end_s * rate)]
        before = audio[max(0, int((e.start_s - 0.3) * rate)) : int(e.start_s * rate)]
        louder += _rms(span) > 1.5 * _rms(before)
    assert louder >= 0.8 * len(loud)


def test_add_at_snr_hits_the_asked_snr():
    rng = rng_for(0, "snr")
    track = rng.standard_normal(16_000) * 0.1
    original = track.copy()
    call = np.sin(np.arange(4_000) * 0.3).astype(np.float32)
    add_at_snr(track, call, 5_000, 6.0)
    added = track[5_000:9_000] - original[5_000:9_000]
    assert 10 * np.log10(_rms(added) ** 2 / _rms(original[5_000:9_000]) ** 2) == pytest.approx(6.0)
    np.testing.assert_array_equal(track[:5_000], original[:5_000])


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    config = WorldConfig.tiny().model_copy(
        update={
            "train_clips_per_species": 1,
            "test_clips_per_species": 1,
            "unseen_clips_per_species": 1,
        }
    )
    return write_world(tmp_path_factory.mktemp("scape") / "w", config, progress=False)


def test_written_soundscape_truth_and_raven_table_agree(written):
    paths = load_world(written)
    world = paths.world()
    (files,) = paths.soundscapes
    info = soundfile.info(str(files.audio))
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    assert info.duration == pytest.approx(paths.config.soundscape_s)
    truth = read_truth(files.truth)
    raven = read_raven_table(files.raven)
    assert truth and len(raven) == len(truth)
    assert tuple(raven[0]) == RAVEN_COLUMNS
    for number, (event, selection) in enumerate(zip(truth, raven, strict=True), start=1):
        assert int(selection["Selection"]) == number and selection["Channel"] == "1"
        assert float(selection["Begin Time (s)"]) == pytest.approx(event.start_s)
        assert float(selection["End Time (s)"]) == pytest.approx(event.end_s)
        assert selection["Species"] == event.species_id
        low, high = float(selection["Low Freq (Hz)"]), float(selection["High Freq (Hz)"])
        assert 300 <= low < high <= 7500
        call_low, call_high = world.call_model(event.species_id).band_hz()
        assert low <= call_low and high >= call_high


def test_truth_round_trips_and_bad_tables_are_refused(tmp_path):
    events = [SoundEvent(1.25, 2.5, "a_b", -3.5), SoundEvent(4.0, 5.125, "c_d", 12.0)]
    assert read_truth(write_truth(tmp_path / "t.csv", events)) == events
    (tmp_path / "bad.csv").write_text("begin,end,label\n1,2,x\n")
    with pytest.raises(ManifestError, match="column") as err:
        read_truth(tmp_path / "bad.csv")
    assert "start_s" in err.value.hint
    (tmp_path / "nan.csv").write_text("start_s,end_s,species_id,snr_db\nsoon,2,x,1\n")
    with pytest.raises(ManifestError):
        read_truth(tmp_path / "nan.csv")
    with pytest.raises(ManifestError, match="does not exist"):
        read_truth(tmp_path / "missing.csv")
