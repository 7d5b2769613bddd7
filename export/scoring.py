"""Fit the bundle's scoring defaults (temperature, threshold, background cosine floor, N-of-M
confirmation) on validation soundscapes with ground truth.

Why: a softmax over the bank always sums to one, so a background window still hands most of its
mass to some species and a small student "fires" on most windows at any score threshold. What
separates a call from background is the raw cosine to the best species and persistence: a call
lasts over overlapping windows, a chance match to noise rarely repeats. So the fit chooses

- the temperature by likelihood of the true species on call windows (the score the device
  reports is then a calibrated probability),
- then jointly the score threshold, the cosine floor (``unknown_similarity``: below it a window
  is background and nothing is reported) and the N-of-M confirmation, for the best window-level
  F1 of the device's rule.

The soundscapes must not be the ones a benchmark later scores: that would grade the fit on the
data it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biovita.annotations import read_truth
from biovita.bank import SpeciesBank, softmax_scores
from biovita.bundle import ScoringDefaults, load_bundle
from export.errors import ExportError
from export.runtime import ort_embed, ort_session
from export.windows import audio_windows

TEMPERATURES = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))
CONFIRMATIONS = ((1, 1), (2, 2), (2, 3), (3, 3))  # (N, M)
FLOOR_QUANTILES = np.linspace(0, 0.98, 50)
MERGE_GAP = 1  # the device's default merge_gap_windows: hits this far apart extend one event
MIN_WINDOWS = 5
BACKGROUND, IGNORED = -1, -2


@dataclass(frozen=True)
class LabelledWindows:
    """Bank similarities ``[N, C]`` of every window of the validation soundscapes, in order.

    ``labels``: bank index of the call a window holds, ``BACKGROUND``, or ``IGNORED`` for a
    window that only grazes a call (neither a clean call nor background: it is scored by
    neither side but still counts towards N-of-M, as on the device). ``recording`` numbers the
    soundscape each window came from (confirmation never spans two files)."""

    sims: np.ndarray
    labels: np.ndarray
    recording: np.ndarray

    @property
    def calls(self) -> int:
        return int((self.labels >= 0).sum())

    @property
    def background(self) -> int:
        return int((self.labels == BACKGROUND).sum())


@dataclass(frozen=True)
class Rule:
    threshold: float
    floor: float
    confirm_hits: int = 1
    confirm_windows: int = 1


@dataclass(frozen=True)
class ScoringFit:
    scoring: ScoringDefaults
    precision: float
    recall: float
    f1: float
    call_windows: int
    background_windows: int
    before: tuple[float, float, float]  # precision, recall, F1 of the defaults it replaces

    def describe(self) -> str:
        s, (p0, r0, f0) = self.scoring, self.before
        return (
            f"scoring fitted on {self.call_windows} call + {self.background_windows} background "
            f"windows: temperature {s.temperature:g}, threshold {s.threshold:g}, background "
            f"cosine floor {s.unknown_similarity:.3f}, confirm {s.confirm_hits} of "
            f"{s.confirm_windows} windows; window P/R/F1 "
            f"{self.precision:.1%}/{self.recall:.1%}/{self.f1:.1%} (was {p0:.1%}/{r0:.1%}/{f0:.1%})"
        )


def window_label(start_s: float, window_s: float, truth, index: dict[str, int]) -> int:
    """Bank index of the call the window holds, ``BACKGROUND`` or ``IGNORED``."""
    end_s, label = start_s + window_s, BACKGROUND
    for event in truth:
        overlap = min(end_s, event.end_s) - max(start_s, event.start_s)
        if overlap <= 0:
            continue
        clean = overlap >= min(1.0, 0.5 * (event.end_s - event.start_s))
        species = index.get(event.species_id)
        if not clean or species is None or label not in (BACKGROUND, species):
            return IGNORED  # a grazed call, a species the bank lacks, or two species at once
        label = species
    return label


def label_windows(
    bank: SpeciesBank, embed, soundscapes: Sequence[tuple[Path, Path]], spec
) -> LabelledWindows:
    index = {s: i for i, s in enumerate(bank.ids)}
    sims, labels, recording = [], [], []
    for number, (audio, truth_path) in enumerate(soundscapes):
        truth = read_truth(truth_path)
        win = audio_windows([audio], spec)
        if not len(win):
            continue
        sims.append(bank.similarities(embed(win.pcm)))
        labels += [
            window_label(k * spec.hop_s, spec.window_s, truth, index) for k in range(len(win))
        ]
        recording += [number] * len(win)
    if not sims:
        raise ExportError("the calibration soundscapes hold no whole window", hint=_HINT)
    return LabelledWindows(
        np.concatenate(sims), np.asarray(labels, np.int64), np.asarray(recording, np.int64)
    )


def fit_temperature(data: LabelledWindows) -> float:
    """The temperature with the least negative log-likelihood of the true species on calls."""
    calls = data.labels >= 0
    sims, labels = data.sims[calls], data.labels[calls]

    def nll(t: float) -> float:
        probs = softmax_scores(sims, t)
        return float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean())

    return min(TEMPERATURES, key=nll)


class _Best:
    """Each window's best species with its score and cosine at one temperature."""

    def __init__(self, data: LabelledWindows, temperature: float) -> None:
        probs = softmax_scores(data.sims, temperature)
        self.species = probs.argmax(axis=1)
        rows = np.arange(len(self.species))
        self.score, self.cosine = probs[rows, self.species], data.sims[rows, self.species]
        self.data = data

    def prf(self, rule: Rule) -> tuple[float, float, float]:
        """Window-level precision/recall/F1 of the device's rule: the best species is reported
        when its score reaches the threshold, its cosine the floor, and it is confirmed."""
        passed = (self.score >= rule.threshold) & (self.cosine >= rule.floor)
        fired = confirmed(passed, self.species, self.data.recording, rule)
        labels = self.data.labels
        scored = fired & (labels != IGNORED)
        tp = int((scored & (self.species == labels)).sum())
        fp = int(scored.sum()) - tp
        fn = int((labels >= 0).sum()) - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1


def confirmed(
    passed: np.ndarray, species: np.ndarray, recording: np.ndarray, rule: Rule
) -> np.ndarray:
    """The windows the device's event tracker reports: a species' hit opens an event once it has
    ``confirm_hits`` hits in the last ``confirm_windows`` windows (those hits join it); later
    hits at most ``MERGE_GAP`` hit-free windows after the event's last extend it. A recording
    shorter than ``confirm_windows`` windows confirms with the scaled rule the tracker uses."""
    if rule.confirm_hits == 1:
        return passed.copy()
    out = np.zeros_like(passed)
    last: dict[tuple[int, int], int] = {}  # (recording, species) -> last window of its event
    for k in np.flatnonzero(passed):
        key = (int(recording[k]), int(species[k]))
        if key in last and k - last[key] <= MERGE_GAP + 1:
            out[k], last[key] = True, k
            continue
        first = max(0, k - rule.confirm_windows + 1)
        hits = [
            j
            for j in range(first, k + 1)
            if passed[j] and not out[j] and species[j] == key[1] and recording[j] == key[0]
        ]
        if len(hits) >= rule.confirm_hits:
            out[hits], last[key] = True, k
    _confirm_short_recordings(out, passed, species, recording, rule)
    return out


def _confirm_short_recordings(
    out: np.ndarray, passed: np.ndarray, species: np.ndarray, recording: np.ndarray, rule: Rule
) -> None:
    """``ceil(confirm_hits * windows / confirm_windows)`` hits confirm a recording of fewer than
    ``confirm_windows`` windows (``device.classify.EventTracker``)."""
    ids, counts = np.unique(recording, return_counts=True)
    for rec, n in zip(ids, counts, strict=True):
        if n >= rule.confirm_windows:
            continue
        needed = max(1, math.ceil(rule.confirm_hits * n / rule.confirm_windows))
        in_rec = passed & (recording == rec)
        for kind in np.unique(species[in_rec]):
            hits = in_rec & (species == kind)
            if hits.sum() >= needed:
                out[hits] = True


def fit_scoring(
    data: LabelledWindows, defaults: ScoringDefaults, source: str = "validation soundscapes"
) -> ScoringFit:
    if data.calls < MIN_WINDOWS or data.background < MIN_WINDOWS:
        raise ExportError(
            f"calibration needs at least {MIN_WINDOWS} call and {MIN_WINDOWS} background "
            f"windows; the soundscapes gave {data.calls} and {data.background}",
            hint=_HINT,
        )
    temperature = fit_temperature(data)
    best = _Best(data, temperature)
    floors = np.unique(np.round(np.quantile(best.cosine, FLOOR_QUANTILES), 3))
    rules = [Rule(t, float(f), n, m) for t in THRESHOLDS for f in floors for n, m in CONFIRMATIONS]
    # Best F1; among ties the stricter rule (fewer false alarms for a reviewer to reject).
    scored = {rule: best.prf(rule) for rule in rules}
    rule = max(
        rules,
        key=lambda r: (round(scored[r][2], 6), r.confirm_hits, r.floor, r.threshold),
    )
    p, r, f1 = scored[rule]
    scoring = defaults.model_copy(
        update={
            "temperature": temperature,
            "threshold": rule.threshold,
            "unknown_similarity": rule.floor,
            "confirm_hits": rule.confirm_hits,
            "confirm_windows": rule.confirm_windows,
            "fitted_on": f"{data.calls} call and {data.background} background windows of "
            f"{source}: window precision {p:.3f}, recall {r:.3f}, F1 {f1:.3f}",
        }
    )
    before = _Best(data, defaults.temperature).prf(
        Rule(
            defaults.threshold,
            defaults.unknown_similarity,
            defaults.confirm_hits,
            defaults.confirm_windows,
        )
    )
    return ScoringFit(scoring, p, r, f1, data.calls, data.background, before)


def soundscape_pairs(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(audio, truth CSV) pairs from soundscape files and folders (a world's soundscapes/)."""
    pairs = []
    for path in map(Path, paths):
        wavs = sorted(path.glob("*.wav")) if path.is_dir() else [path]
        pairs += [(w, w.with_suffix(".csv")) for w in wavs if w.with_suffix(".csv").is_file()]
    if not pairs:
        raise ExportError(f"no soundscape with a truth CSV beside it in {list(paths)}", hint=_HINT)
    return pairs


def calibrate_bundle(bundle_path: str | Path, soundscapes: Sequence[str | Path]) -> ScoringFit:
    """Fit the scoring defaults on ``soundscapes`` and write them into the bundle's manifest."""
    bundle = load_bundle(bundle_path)
    session = ort_session(bundle.tower_path)
    pairs = soundscape_pairs(soundscapes)
    data = label_windows(
        bundle.bank, lambda pcm: ort_embed(session, pcm), pairs, bundle.manifest.frontend
    )
    names = ", ".join(audio.name for audio, _ in pairs)
    fit = fit_scoring(data, bundle.manifest.scoring, source=names)
    bundle.update_manifest(lambda m: m.model_copy(update={"scoring": fit.scoring}))
    return fit


_HINT = (
    "pass validation soundscapes (WAV with a start_s,end_s,species_id,snr_db CSV beside each, "
    "e.g. a world written with another seed), a few minutes long, not the ones you benchmark on"
)
