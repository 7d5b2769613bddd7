"""``biovita-bench retrieval``: six directions x three levels x seen/unseen, per model.

A run first writes the candidate lists (or takes existing ones), then always scores the lists *as
re-read from disk*, so the CSVs in the output are exactly what produced the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.candidates import build_tasks
from bench.features import Features
from bench.models import ModelSource
from bench.protocol import (
    DIRECTIONS,
    LEVELS,
    N_CANDIDATES,
    SPLITS,
    BenchmarkIndex,
    Task,
    read_index,
    read_task,
    task_paths,
    write_index,
    write_task,
)
from bench.reports import grouped_bars, markdown_table, pyplot, write_json, write_text
from bench.scoring import TaskScore, chance_score, score_task
from bench.sources import DataFolder
from biovita.errors import BiovitaError, ManifestError

CHANCE = "chance"
SUMMARY = "lists.json"  # per split: seed, and how many queries each list has / could not pose


@dataclass
class Benchmark:
    """The index and candidate lists of one split."""

    split: str
    index: BenchmarkIndex
    tasks: list[Task]


def write_benchmark(
    out_dir: Path,
    data: DataFolder,
    seed: int,
    splits: tuple[str, ...] = SPLITS,
    n_candidates: int = N_CANDIDATES,
    max_queries: int | None = None,
) -> Path:
    """Candidate lists of every split under ``out_dir/<split>/`` in the BioVITA-Bench layout."""
    for split in splits:
        index = data.index(split)
        split_dir = Path(out_dir) / split
        write_index(split_dir / "ids", index)
        posed = {}
        for task in build_tasks(index, data.taxa, seed, n_candidates, max_queries):
            path = write_task(split_dir, task)
            posed[path.relative_to(split_dir).as_posix()] = {
                "queries": len(task.queries),
                "not_posed": task.skipped,
            }
        write_json(
            split_dir / SUMMARY, {"seed": seed, "n_candidates": n_candidates, "tasks": posed}
        )
    return Path(out_dir)


def _read_split(name: str, split_dir: Path, media_root: Path | None) -> Benchmark:
    tasks = []
    summary_path = split_dir / SUMMARY
    summary = json.loads(summary_path.read_text())["tasks"] if summary_path.is_file() else {}
    for path in task_paths(split_dir):
        task = read_task(path)
        task.skipped += summary.get(path.relative_to(split_dir).as_posix(), {}).get("not_posed", 0)
        tasks.append(task)
    return Benchmark(name, read_index(split_dir / "ids", media_root), tasks)


def read_benchmark(bench_dir: Path, media_root: Path | None = None) -> list[Benchmark]:
    """Ours (``<dir>/<split>/...``) or a single published-layout folder (``<dir>/ids`` +
    ``<dir>/<level>/*.csv``, reported under the folder's name)."""
    bench_dir = Path(bench_dir)
    if (bench_dir / "ids").is_dir():
        layouts = [(bench_dir.name, bench_dir)]
    else:
        layouts = [(s, bench_dir / s) for s in SPLITS if (bench_dir / s / "ids").is_dir()]
    if not layouts:
        raise ManifestError(
            f"{bench_dir} holds no benchmark (no ids/ folder, nor seen/ids or unseen/ids)",
            hint="write one with --world, or point at the published benchmark folder",
        )
    return [_read_split(name, d, media_root) for name, d in layouts]


@dataclass
class RetrievalResults:
    """``scores[split][model]`` = the TaskScores of that model on that split."""

    scores: dict[str, dict[str, list[TaskScore]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # split -> modality

    def get(self, split: str, model: str, level: str, code: str) -> TaskScore | None:
        for s in self.scores.get(split, {}).get(model, []):
            if s.level == level and s.direction == code:
                return s
        return None

    def to_json(self) -> dict:
        return {
            "unreadable_media": {
                split: {m: {"count": len(v), "files": v} for m, v in by_modality.items()}
                for split, by_modality in self.unreadable.items()
            },
            "splits": {
                split: {
                    model: {
                        "kind": self.kinds.get(model, "model"),
                        "tasks": [s.to_json() for s in ss],
                    }
                    for model, ss in by_model.items()
                }
                for split, by_model in self.scores.items()
            },
        }


def run_retrieval(benchmarks: list[Benchmark], sources: list[ModelSource]) -> RetrievalResults:
    results = RetrievalResults()
    results.kinds[CHANCE] = "baseline"
    for bench in benchmarks:
        by_model = results.scores.setdefault(bench.split, {})
        by_model[CHANCE] = [chance_score(t) for t in bench.tasks]
        for source in sources:
            results.kinds[source.name] = source.kind
            features = source.featurize(bench.index)
            by_model[source.name] = [
                score_task(t, features) for t in bench.tasks if _has_pair(features, t)
            ]
            for modality, bad in getattr(features, "unreadable", {}).items():
                seen = results.unreadable.setdefault(bench.split, {}).setdefault(modality, [])
                seen.extend(b for b in bad if b not in seen)
    return results


def _has_pair(features: Features, task: Task) -> bool:
    """False for a direction the model has no tower for (I<->T only for an image/text model)."""
    try:
        features.pair(task.direction, task.level)
    except BiovitaError:
        return False
    return True


def describe_unreadable(results: RetrievalResults) -> list[str]:
    """One line per split and modality with media that were missing or could not be decoded."""
    return [
        f"{split}: {len(bad)} {modality} file(s) missing or undecodable, left out (first: {bad[0]})"
        for split, by_modality in results.unreadable.items()
        for modality, bad in by_modality.items()
        if bad
    ]


def _row(results: RetrievalResults, split: str, model: str, level: str) -> list[object] | None:
    cells: list[object] = [model]
    top1, top5 = [], []
    for d in DIRECTIONS:
        s = results.get(split, model, level, d.code)
        if s is None or s.n == 0:
            cells += ["-", "-"]
            continue
        top1.append(100 * s.hits[1])
        top5.append(100 * s.hits[5])
        cells += [top1[-1], top5[-1]]
    if not top1:
        return None
    return cells + [float(np.mean(top1)), float(np.mean(top5))]


def results_markdown(results: RetrievalResults) -> str:
    header = ["model"] + [f"{d.label} {m}" for d in DIRECTIONS for m in ("T1", "T5")]
    header += ["avg T1", "avg T5"]
    parts = []
    for split, by_model in results.scores.items():
        for level in LEVELS:
            rows = [r for m in by_model if (r := _row(results, split, m, level)) is not None]
            if not rows:
                continue
            queries = [s.n for s in by_model[CHANCE] if s.level == level]
            cands = [s.candidates_mean for s in by_model[CHANCE] if s.level == level and s.n]
            parts.append(
                f"**{split} split, {level} level** ({min(queries)}-{max(queries)} queries per "
                f"direction, {np.mean(cands):.0f} candidates per query; Top-1/Top-5 %)\n\n"
                + markdown_table(header, rows)
            )
    return "\n\n".join(parts) + "\n"


def plot_results(results: RetrievalResults, path: Path) -> Path:
    plt = pyplot()
    splits = list(results.scores)
    fig, axes = plt.subplots(
        len(splits), len(LEVELS), figsize=(5 * len(LEVELS), 3.6 * len(splits)), squeeze=False
    )
    for r, split in enumerate(splits):
        for c, level in enumerate(LEVELS):
            series = {}
            for model in results.scores[split]:
                values = [results.get(split, model, level, d.code) for d in DIRECTIONS]
                series[model] = [100 * v.hits[1] if v and v.n else 0.0 for v in values]
            ax = axes[r][c]
            grouped_bars(ax, [d.label for d in DIRECTIONS], series, "Top-1 %")
            ax.set_title(f"{split} / {level}")
            ax.set_ylim(0, 100)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    fig.suptitle("BioVITA-Bench retrieval: Top-1 % (the chance bar is each list's own chance)")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(labels) > 4), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_reports(results: RetrievalResults, out_dir: Path, meta: dict) -> dict[str, Path]:
    out_dir = Path(out_dir)
    markdown = results_markdown(results)
    return {
        "json": write_json(out_dir / "retrieval.json", {**meta, **results.to_json()}),
        "markdown": write_text(out_dir / "retrieval.md", markdown),
        "png": plot_results(results, out_dir / "retrieval.png"),
    }


def parity_gap(results: RetrievalResults, model: str, reference: str, k: int = 1) -> float:
    """Largest absolute difference (points) between two rows over every task and split."""
    gaps = [0.0]
    for by_model in results.scores.values():
        if model not in by_model or reference not in by_model:
            continue
        for a, b in zip(by_model[model], by_model[reference], strict=True):
            gaps.append(100 * abs(a.hits[k] - b.hits[k]))
    return max(gaps)
