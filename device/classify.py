"""From embeddings to events: scores, thresholds, site lists, open-set, confirmation, merging.

Scores are a temperature-scaled softmax over the WHOLE bank; the site allow/deny list then hides
species that cannot occur here without re-normalising, so a call of a denied species is dropped
rather than pinned on its nearest allowed relative (BirdNET's species lists behave the same way).
Open set: a window whose best species is confident by score but whose cosine is below
``unknown_similarity`` is not that species. If its cosine is still at least ``min_similarity`` it is
``unknown`` (something call-like the bank has no species for); below that it is background and
nothing is reported. ``min_similarity`` defaults to ``unknown_similarity``: no unknowns.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from biovita.bank import SpeciesBank, softmax_scores, top_k
from biovita.bundle import ScoringDefaults
from biovita.errors import ConfigError
from device.records import Candidate, Event, Window, WindowResult

UNKNOWN = "unknown"


@dataclass(frozen=True)
class ScoringPolicy:
    temperature: float = 0.05
    threshold: float = 0.5
    species_thresholds: dict[str, float] = field(default_factory=dict)
    unknown_similarity: float = 0.0
    min_similarity: float | None = None  # None = unknown_similarity (never report unknown)
    report_unknown: bool = True
    top_k: int = 5
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, defaults: ScoringDefaults, section) -> ScoringPolicy:
        """The bundle's scoring defaults, overridden by the ``[classify]`` config section."""

        def pick(value, default):
            return default if value is None else value

        return cls(
            temperature=pick(section.temperature, defaults.temperature),
            threshold=pick(section.threshold, defaults.threshold),
            species_thresholds=dict(section.species_thresholds),
            unknown_similarity=pick(section.unknown_similarity, defaults.unknown_similarity),
            min_similarity=section.min_similarity,
            report_unknown=section.report_unknown,
            top_k=pick(section.top_k, defaults.top_k),
            allow=frozenset(section.allow),
            deny=frozenset(section.deny),
        )


class Scorer:
    """Scores windows against the bank and keeps the candidates that pass the policy."""

    def __init__(self, bank: SpeciesBank, policy: ScoringPolicy) -> None:
        unknown_ids = (set(policy.species_thresholds) | policy.allow | policy.deny) - set(bank.ids)
        if unknown_ids:
            raise ConfigError(
                f"config names species not in the bundle's bank: {sorted(unknown_ids)[:10]}",
                hint="use species ids from the bank (biovita-field status --species lists them)",
            )
        self.bank, self.policy = bank, policy
        self.ids = bank.ids
        self.thresholds = np.array(
            [policy.species_thresholds.get(s, policy.threshold) for s in self.ids], np.float32
        )
        allowed = [
            (not policy.allow or s in policy.allow) and s not in policy.deny for s in self.ids
        ]
        self.allowed = np.array(allowed, dtype=bool)

    def score(self, windows: list[Window], embeddings: np.ndarray) -> list[WindowResult]:
        sims = self.bank.similarities(embeddings)
        probs = softmax_scores(sims, self.policy.temperature)
        best = top_k(probs, self.policy.top_k)
        results = []
        for row, window in enumerate(windows):
            idx = best.indices[row]
            top = tuple(
                Candidate(self.ids[j], float(probs[row, j]), float(sims[row, j])) for j in idx
            )
            results.append(WindowResult(window, self._candidates(idx, probs[row], sims[row]), top))
        return results

    def _candidates(
        self, idx: np.ndarray, probs: np.ndarray, sims: np.ndarray
    ) -> tuple[Candidate, ...]:
        policy, out = self.policy, []
        first = idx[0]
        if probs[first] >= self.thresholds[first] and sims[first] < policy.unknown_similarity:
            floor = (
                policy.unknown_similarity
                if policy.min_similarity is None
                else policy.min_similarity
            )
            if policy.report_unknown and sims[first] >= floor:
                out.append(Candidate(UNKNOWN, float(probs[first]), float(sims[first])))
            return tuple(out)
        for j in idx:
            passes = probs[j] >= self.thresholds[j] and sims[j] >= policy.unknown_similarity
            if passes and self.allowed[j]:
                out.append(Candidate(self.ids[j], float(probs[j]), float(sims[j])))
        return tuple(out)


@dataclass
class _Track:
    """One species' recent unconfirmed hits and its open event."""

    pending: deque = field(default_factory=deque)  # (window index, WindowResult, Candidate)
    event: Event | None = None
    best_score: float = -1.0


class EventTracker:
    """N-of-M confirmation per species, then adjacent hits merged into one event.

    A species is confirmed once it passed in ``confirm_hits`` of the last ``confirm_windows``
    windows; its event then starts at the earliest of those hits. A stream (a file) that ends
    before it had ``confirm_windows`` windows cannot meet that rule, so it is scaled to the windows
    the stream had: ``ceil(confirm_hits * windows / confirm_windows)`` hits (a 3 s file of one
    window with a 2-of-2 rule confirms with its one hit). Later hits at most ``merge_gap``
    windows apart extend the event; a longer silence or a discontinuity in the audio closes it.

    Events end at the last real sample of their last window (never in a stream's zero padding).
    One longer than ``max_event_samples`` is cut into pieces of exactly that length, each starting
    where the previous ended; events of one species never overlap.
    """

    def __init__(
        self,
        confirm_hits: int = 1,
        confirm_windows: int = 1,
        merge_gap: int = 1,
        max_event_samples: int = 2**62,
    ) -> None:
        if confirm_hits > confirm_windows:
            raise ConfigError("confirm_hits must not exceed confirm_windows")
        if max_event_samples < 1:
            raise ConfigError("max_event_samples must be positive")
        self.n, self.m = confirm_hits, confirm_windows
        self.merge_gap, self.max_samples = merge_gap, max_event_samples
        self._tracks: dict[str, _Track] = {}
        self._last_end: dict[str, int] = {}  # per species: where its last event ended
        self._segment_windows = 0  # windows since the stream started or last broke

    def push(self, result: WindowResult) -> list[Event]:
        window = result.window
        closed = self.flush() if window.discontinuity else []
        self._segment_windows += 1
        for cand in result.candidates:
            track = self._tracks.setdefault(cand.species_id, _Track())
            if track.event is not None:
                closed += self._extend(track, result, cand)
                continue
            track.pending.append((window.index, result, cand))
            self._forget_old(track, window.index)
            if len(track.pending) >= self.n:
                closed += self._confirm(track)
        for species, track in list(self._tracks.items()):
            event = track.event
            if event is None:
                self._forget_old(track, window.index)
                if not track.pending:
                    del self._tracks[species]
            elif window.index - event.last_window > self.merge_gap:
                closed.append(self._close(track))
        return _in_order(closed)

    def flush(self) -> list[Event]:
        """Close every open event (end of stream, or a gap in the audio).

        Pending hits of a stream shorter than ``confirm_windows`` windows confirm by the scaled
        rule; other pending hits are forgotten.
        """
        closed = []
        needed = self._scaled_hits()
        for track in self._tracks.values():
            if track.event is None and needed is not None and len(track.pending) >= needed:
                closed += self._confirm(track)
            if track.event is not None:
                closed.append(self._close(track))
        self._tracks.clear()
        self._last_end.clear()
        self._segment_windows = 0
        return _in_order(closed)

    def _scaled_hits(self) -> int | None:
        """Hits that confirm in a stream that ended before ``confirm_windows`` windows."""
        if not 0 < self._segment_windows < self.m:
            return None
        return max(1, math.ceil(self.n * self._segment_windows / self.m))

    def _forget_old(self, track: _Track, index: int) -> None:
        while track.pending and track.pending[0][0] <= index - self.m:
            track.pending.popleft()

    def _confirm(self, track: _Track) -> list[Event]:
        closed = []
        for _, r, c in track.pending:
            closed += self._extend(track, r, c)
        track.pending.clear()
        return closed

    def _close(self, track: _Track) -> Event:
        event = track.event
        self._last_end[event.species_id] = event.end_sample
        track.event, track.best_score = None, -1.0
        return event

    def _extend(self, track: _Track, result: WindowResult, cand: Candidate) -> list[Event]:
        """Add one hit to the species' event (opening one); returns the pieces cut off."""
        window, closed = result.window, []
        end = window.audio_end_sample
        if track.event is None:
            start = max(window.start_sample, self._last_end.get(cand.species_id, 0))
            track.event = _open(cand, window, start)
        while end - track.event.start_sample > self.max_samples:
            piece = track.event
            piece.end_sample = piece.start_sample + self.max_samples
            piece.windows = max(1, piece.windows)  # a window longer than the limit: one piece
            closed.append(self._close(track))
            track.event = _open(cand, window, piece.end_sample)
        event = track.event
        event.end_sample = max(event.end_sample, end)
        event.last_window = max(event.last_window, window.index)
        event.windows += 1
        event.similarity = max(event.similarity, cand.similarity)
        if cand.score > track.best_score:  # the alternatives are those of the best window
            track.best_score = event.score = cand.score
            event.alternatives = [c for c in result.top if c.species_id != cand.species_id]
        return closed


def _open(cand: Candidate, window: Window, start: int) -> Event:
    """A new event of ``cand``'s species starting at stream sample ``start`` inside ``window``."""
    return Event(
        species_id=cand.species_id,
        start_sample=start,
        end_sample=start,
        sample_rate=window.sample_rate,
        wall_time=window.wall_time
        + timedelta(seconds=(start - window.start_sample) / window.sample_rate),
        origin=window.origin,
        score=cand.score,
        similarity=cand.similarity,
        windows=0,
        first_window=window.index,
        last_window=window.index,
    )


def _in_order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.start_sample, e.species_id))
