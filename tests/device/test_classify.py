from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from biovita.bank import SpeciesBank
from biovita.errors import ConfigError
from device.classify import UNKNOWN, EventTracker, Scorer, ScoringPolicy
from device.records import Candidate, Window, WindowResult
from tests.support.tiny_bundle import tone_taxa

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
BANK = SpeciesBank(tone_taxa(4), np.eye(4, dtype=np.float32))


def _window(i: int, discontinuity: bool = False) -> Window:
    start = T0 + timedelta(seconds=i * 1.5)  # 150 samples at 100 Hz per hop
    return Window(np.zeros(300, np.float32), 100, i * 150, start, "x", i, discontinuity)


def _towards(species: int, cosine: float) -> np.ndarray:
    """A unit vector with the given cosine to species ``species`` (rest spread on the others)."""
    v = np.full(4, np.sqrt((1 - cosine**2) / 3), np.float32)
    v[species] = cosine
    return v


def _score(policy: ScoringPolicy, vectors: list[np.ndarray]):
    windows = [_window(i) for i in range(len(vectors))]
    return Scorer(BANK, policy).score(windows, np.stack(vectors))


def test_scores_are_a_temperature_softmax_and_top_k_is_best_first():
    (result,) = _score(ScoringPolicy(temperature=0.1, top_k=3), [_towards(2, 0.9)])
    sims = BANK.similarities(_towards(2, 0.9))[0]
    probs = np.exp(sims / 0.1) / np.exp(sims / 0.1).sum()
    assert [c.species_id for c in result.top][0] == "sp02" and len(result.top) == 3
    assert result.top[0].score == pytest.approx(probs[2], rel=1e-5)
    assert result.candidates == (result.top[0],)


def test_global_and_per_species_thresholds():
    vectors = [_towards(0, 0.6), _towards(1, 0.6)]
    strict_sp00 = ScoringPolicy(temperature=0.5, threshold=0.3, species_thresholds={"sp00": 0.9})
    results = _score(strict_sp00, vectors)
    assert results[0].candidates == ()  # sp00's own threshold is higher than its score
    assert [c.species_id for c in results[1].candidates] == ["sp01"]


def test_allow_and_deny_lists_hide_species_without_reassigning_the_call():
    v = [_towards(0, 0.95)]
    assert _score(ScoringPolicy(deny=frozenset({"sp00"})), v)[0].candidates == ()
    assert _score(ScoringPolicy(allow=frozenset({"sp01", "sp02"})), v)[0].candidates == ()
    assert _score(ScoringPolicy(allow=frozenset({"sp00"})), v)[0].candidates[0].species_id == "sp00"


def test_open_set_unknown_band_between_min_similarity_and_unknown_similarity():
    policy = ScoringPolicy(temperature=0.05, unknown_similarity=0.8, min_similarity=0.5)
    close, unknown, background = _score(
        policy, [_towards(1, 0.9), _towards(1, 0.65), _towards(1, 0.45)]
    )
    assert close.candidates[0].species_id == "sp01"
    assert [c.species_id for c in unknown.candidates] == [UNKNOWN]
    assert background.candidates == ()
    quiet = ScoringPolicy(temperature=0.05, unknown_similarity=0.8)  # default: no unknown band
    assert _score(quiet, [_towards(1, 0.65)])[0].candidates == ()


def test_a_config_naming_species_outside_the_bank_is_refused():
    with pytest.raises(ConfigError, match="not in the bundle's bank"):
        Scorer(BANK, ScoringPolicy(allow=frozenset({"sp99"})))


def _hits(pattern: str, tracker: EventTracker, species: str = "sp01"):
    """Feed one window per character: 'x' = a hit of ``species``, '.' = nothing."""
    events = []
    for i, ch in enumerate(pattern):
        cands = (Candidate(species, 0.5 + i / 100, 0.9),) if ch == "x" else ()
        events += tracker.push(WindowResult(_window(i), cands, cands))
    return events + tracker.flush()


def test_adjacent_hits_merge_into_one_event_and_gaps_split_them():
    events = _hits("xxx...x.x", EventTracker(merge_gap=1))
    assert [(e.first_window, e.last_window, e.windows) for e in events] == [(0, 2, 3), (6, 8, 2)]
    first = events[0]
    assert (first.start_sample, first.end_sample) == (0, 2 * 150 + 300)
    assert first.score == pytest.approx(0.52)  # the best window's score


def test_n_of_m_confirmation_drops_isolated_hits_and_keeps_the_first_hit_time():
    tracker = EventTracker(confirm_hits=2, confirm_windows=3, merge_gap=0)
    events = _hits("x...x.x...x", tracker)
    assert [(e.first_window, e.last_window, e.windows) for e in events] == [(4, 6, 2)]


def test_long_events_are_cut_into_exact_disjoint_pieces_and_a_discontinuity_closes_them():
    pieces = _hits("x" * 10, EventTracker(max_event_samples=600))  # 10 windows span 0-1650
    assert [(e.start_sample, e.end_sample) for e in pieces] == [(0, 600), (600, 1200), (1200, 1650)]
    assert pieces[1].wall_time == T0 + timedelta(seconds=6)  # 600 samples at 100 Hz
    assert sum(e.windows for e in pieces) >= 10 and all(e.windows >= 1 for e in pieces)
    tracker = EventTracker()
    cands = (Candidate("sp01", 0.9, 0.9),)
    tracker.push(WindowResult(_window(0), cands, cands))
    closed = tracker.push(WindowResult(_window(1, discontinuity=True), cands, cands))
    assert [e.last_window for e in closed] == [0]


def test_same_species_events_never_overlap_when_windows_do():
    events = _hits("x..x", EventTracker(merge_gap=1))  # windows 0 (0-300) and 3 (450-750)
    assert [(e.start_sample, e.end_sample) for e in events] == [(0, 300), (450, 750)]
    overlapping = _hits("x.x", EventTracker(merge_gap=0))  # 0-300, then 300-600 starts at 300
    assert [(e.start_sample, e.end_sample) for e in overlapping] == [(0, 300), (300, 600)]


@pytest.mark.parametrize(
    "pattern, n, m, expected",
    [
        ("x", 2, 2, 1),  # one window: ceil(2 * 1 / 2) = 1 hit confirms
        ("x", 3, 3, 1),
        ("x.", 3, 3, 0),  # two windows of a 3-of-3 rule: ceil(3 * 2 / 3) = 2 hits needed
        ("xx", 3, 3, 1),
        ("x.", 2, 2, 0),  # a full M windows: the rule itself (2 of 2) applies
    ],
)
def test_a_stream_shorter_than_the_confirmation_confirms_with_the_windows_it_has(
    pattern, n, m, expected
):
    assert len(_hits(pattern, EventTracker(confirm_hits=n, confirm_windows=m))) == expected


def test_an_event_ends_at_the_last_real_sample_not_in_the_padding():
    tracker = EventTracker()
    cands = (Candidate("sp01", 0.9, 0.9),)
    short = Window(np.zeros(300, np.float32), 100, 0, T0, "x", 0, padding=180)  # 1.2 s of audio
    [event] = tracker.push(WindowResult(short, cands, cands)) + tracker.flush()
    assert (event.start_s, event.end_s) == (0.0, 1.2)
