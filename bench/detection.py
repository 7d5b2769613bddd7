"""``biovita-bench detection``: the device's own classifier over soundscapes with ground truth.

The soundscape is played through the device's composition root (``device.app``: its file source,
windower, backend, scorer and event tracker, configured exactly as ``biovita-field`` would be, from
an optional device config file), once per threshold. Windows are embedded once: a small cache in
front of the backend serves the repeated passes, so a 20-point precision-recall curve costs one
pass of inference. Events are scored against the truth with ``bench.events``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.events import (
    Counts,
    CurvePoint,
    DetectionScores,
    TimedEvent,
    average_precision,
    match_events,
)
from bench.reports import markdown_table, pyplot
from biovita import annotations
from biovita.errors import ManifestError

DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


def read_truth(path: Path) -> list[TimedEvent]:
    """Ground truth CSV: start_s,end_s,species_id (other columns ignored)."""
    return [TimedEvent(e.start_s, e.end_s, e.species_id) for e in annotations.read_truth(path)]


def world_soundscapes(world: Path) -> list[tuple[Path, Path]]:
    """(audio, truth) pairs of a world folder's soundscapes/."""
    pairs = [
        (wav, wav.with_suffix(".csv"))
        for wav in sorted((Path(world) / "soundscapes").glob("*.wav"))
        if wav.with_suffix(".csv").is_file()
    ]
    if not pairs:
        raise ManifestError(
            f"{world} has no soundscapes/*.wav with a .csv beside it",
            hint="write a world with biovita-bench world, or pass --soundscape and --truth",
        )
    return pairs


class CachedBackend:
    """The device backend, remembering each window's embedding (keyed by its samples)."""

    def __init__(self, backend) -> None:
        self.backend, self.name = backend, backend.name
        self._cache: dict[bytes, np.ndarray] = {}
        self.embedded = 0

    def embed(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in pcm]
        todo = [k for k, key in enumerate(keys) if key not in self._cache]
        if todo:
            for k, vector in zip(todo, self.backend.embed(pcm[todo]), strict=True):
                self._cache[keys[k]] = vector
            self.embedded += len(todo)
        return np.stack([self._cache[key] for key in keys])


class DeviceClassifier:
    """The device pipeline for one bundle and config, run over a file at any threshold."""

    def __init__(self, bundle_path: Path, config_path: Path | None = None) -> None:
        from device.app import build_backend, open_bundle
        from device.config import load_config

        self.config = load_config(config_path, environ={}, overrides={"bundle": str(bundle_path)})
        self.bundle = open_bundle(self.config)
        self.backend = CachedBackend(build_backend(self.bundle, self.config))

    @property
    def default_threshold(self) -> float:
        c = self.config.classify.threshold
        return self.bundle.manifest.scoring.threshold if c is None else c

    def events(self, audio: Path, threshold: float) -> list[TimedEvent]:
        from device.app import build_pipeline, build_source
        from device.classify import UNKNOWN

        cfg = self.config.model_copy(
            update={
                "classify": self.config.classify.model_copy(update={"threshold": threshold}),
                "audio": self.config.audio.model_copy(
                    update={"source": "file", "path": Path(audio), "realtime": False}
                ),
            }
        )
        pipeline = build_pipeline(self.bundle, cfg, self.backend)
        source = build_source(self.bundle, cfg)
        found = []
        try:
            for block in source.blocks():
                pipeline.push(block)
                if pipeline.ready():
                    found += pipeline.drain()
            found += pipeline.finish()
        finally:
            source.close()
        return [
            TimedEvent(e.start_s, e.end_s, e.species_id, e.score)
            for e in found
            if e.species_id != UNKNOWN
        ]


@dataclass
class DetectionRun:
    tolerance_s: float
    threshold: float
    scores: DetectionScores
    curve: list[CurvePoint]
    soundscapes: list[str] = field(default_factory=list)
    truth_events: int = 0
    windows_embedded: int = 0

    def to_json(self) -> dict:
        return {
            "tolerance_s": self.tolerance_s,
            "threshold": self.threshold,
            "soundscapes": self.soundscapes,
            "truth_events": self.truth_events,
            "overall": self.scores.overall.to_json(),
            "macro_f1": round(100 * self.scores.macro_f1, 3),
            "average_precision": round(100 * average_precision(self.curve), 3),
            "per_species": {s: c.to_json() for s, c in self.scores.per_species.items()},
            "pr_curve": [p.__dict__ for p in self.curve],
        }


def run_detection(
    classifier: DeviceClassifier,
    soundscapes: list[tuple[Path, Path]],
    tolerance_s: float,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> DetectionRun:
    """All soundscapes at every threshold; the headline table at the device's own threshold.

    Each soundscape is scored on its own and the counts summed (an event of one file never
    matches the truth of another)."""
    default = classifier.default_threshold
    grid = sorted(set(thresholds) | {default})
    per_threshold: dict[float, list[DetectionScores]] = {t: [] for t in grid}
    truth_total = 0
    for audio, truth_path in tqdm(soundscapes, desc="soundscapes", leave=False):
        truth = read_truth(truth_path)
        truth_total += len(truth)
        for t in grid:
            per_threshold[t].append(match_events(classifier.events(audio, t), truth, tolerance_s))
    summed = {t: _sum(scores) for t, scores in per_threshold.items()}
    curve = [
        CurvePoint(
            t, s.overall.precision, s.overall.recall, s.overall.f1, s.overall.tp + s.overall.fp
        )
        for t, s in sorted(summed.items())
    ]
    return DetectionRun(
        tolerance_s,
        default,
        summed[default],
        curve,
        [str(a) for a, _ in soundscapes],
        truth_total,
        classifier.backend.embedded,
    )


def _sum(scores: list[DetectionScores]) -> DetectionScores:
    total: dict[str, Counts] = {}
    for s in scores:
        for species, c in s.per_species.items():
            t = total.get(species, Counts())
            total[species] = Counts(t.tp + c.tp, t.fp + c.fp, t.fn + c.fn)
    return DetectionScores(dict(sorted(total.items())))


def detection_markdown(run: DetectionRun) -> str:
    rows = [
        [s, c.tp, c.fp, c.fn, 100 * c.precision, 100 * c.recall, 100 * c.f1]
        for s, c in run.scores.per_species.items()
    ]
    o = run.scores.overall
    rows.append(
        ["**overall (micro)**", o.tp, o.fp, o.fn, 100 * o.precision, 100 * o.recall, 100 * o.f1]
    )
    head = (
        f"Device classifier at threshold {run.threshold:g}, tolerance {run.tolerance_s:g} s, "
        f"{len(run.soundscapes)} soundscape(s), {run.truth_events} true calls; macro F1 "
        f"{100 * run.scores.macro_f1:.1f}%, average precision over thresholds "
        f"{100 * average_precision(run.curve):.1f}%\n\n"
    )
    curve = markdown_table(
        ["threshold", "precision %", "recall %", "F1 %", "events"],
        [
            [f"{p.threshold:g}", 100 * p.precision, 100 * p.recall, 100 * p.f1, p.predictions]
            for p in run.curve
        ],
    )
    table = markdown_table(["species", "TP", "FP", "FN", "precision %", "recall %", "F1 %"], rows)
    return head + table + "\n\n" + curve + "\n"


def plot_pr_curve(run: DetectionRun, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = [p for p in run.curve if p.predictions]
    ax.plot([100 * p.recall for p in points], [100 * p.precision for p in points], "o-")
    for p in points[:: max(1, len(points) // 6)]:
        ax.annotate(f"{p.threshold:g}", (100 * p.recall, 100 * p.precision), fontsize=7)
    default = next((p for p in run.curve if p.threshold == run.threshold), None)
    if default is not None and default.predictions:
        ax.scatter(
            [100 * default.recall],
            [100 * default.precision],
            s=120,
            facecolors="none",
            edgecolors="r",
            label=f"device threshold {run.threshold:g}",
        )
        ax.legend()
    ax.set_xlabel("recall %")
    ax.set_ylabel("precision %")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"Detection PR curve (tolerance {run.tolerance_s:g} s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
