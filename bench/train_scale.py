"""The trainer's data path at BioVITA scale: a 1.3 M-row manifest, streamed through DataLoader workers.

    .venv/bin/python -m bench.train_scale --out OUT [--rows 1300000] [--species 14000]

The manifest's rows are 3-s segments of the real recordings in ``--audio`` (default the shared
ones), assigned round-robin to ``--species`` species, so every batch decodes and resamples real
files on demand (``data.cache_audio = false``). For each worker count (1, 2) a fresh process
plays one rank of a two-rank run: it reads the manifest into the trainer's index, builds the
species-capped sampler, and draws batches of 64 through ``EpochSampler.stream``. Figures: index
load time, time to first batch, batches/s, and peak RSS of the rank process and of its largest
worker (``getrusage``), written to OUT/train_scale.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile

from bench.reports import markdown_table, write_json, write_text
from biovita.manifest import write_taxa
from biovita.taxonomy import Taxon

DEFAULT_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "realaudio"
SEGMENT_S = 3.0


def write_scale_manifest(out: Path, rows: int, species: int, audio: list[Path]) -> Path:
    """``out/manifest.csv`` of ``rows`` 3-s segments of ``audio`` and ``out/taxa.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    taxa = [Taxon(species_id=f"sp{s:05d}", scientific_name=f"Genus s{s}") for s in range(species)]
    write_taxa(out / "taxa.csv", taxa)
    segments = [
        (path, start)
        for path in audio
        for start in range(int(soundfile.info(str(path)).duration // SEGMENT_S))
    ]
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["audio_path", "species_id", "split", "start_s", "end_s"])
        for i, (path, start) in zip(range(rows), itertools.cycle(segments)):
            begin = start * SEGMENT_S
            writer.writerow([path, taxa[i % species].species_id, "train", begin, begin + SEGMENT_S])
    return out / "manifest.csv"


def _peak_rss_mib(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def measure(manifest: Path, workers: int, batches: int, batch_size: int) -> dict:
    """One rank (0 of 2) of a run: index, sampler, first batch, then ``batches`` more."""
    from trainer.data import EpochSampler, load_species_data

    imported = _peak_rss_mib(resource.RUSAGE_SELF)  # torch and the trainer, before any data
    started = time.perf_counter()
    data = load_species_data(manifest, cache_audio=False)
    indexed = time.perf_counter()
    sampler = EpochSampler(data, batch_size, rank=0, world_size=2)
    stream = sampler.stream(workers)
    next(stream)
    first = time.perf_counter()
    for _ in range(batches):
        next(stream)
    done = time.perf_counter()
    stream.close()  # the workers exit: their peak RSS is then in RUSAGE_CHILDREN
    return {
        "workers": workers,
        "rows": len(data.clips),
        "species": len(data.taxa),
        "epoch_clips_per_rank": sampler.epoch_length,
        "index_s": round(indexed - started, 1),
        "first_batch_s": round(first - indexed, 2),
        "batches_per_s": round(batches / (done - first), 2),
        "clips_per_s": round(batches * batch_size / (done - first), 1),
        "rss_after_imports_mib": imported,
        "peak_rss_rank_mib": _peak_rss_mib(resource.RUSAGE_SELF),
        "peak_rss_worker_mib": _peak_rss_mib(resource.RUSAGE_CHILDREN),
    }


def _measure_in_fresh_process(manifest: Path, workers: int, batches: int, batch: int) -> dict:
    cmd = [sys.executable, "-m", "bench.train_scale", "--measure", str(manifest)]
    cmd += ["--workers", str(workers), "--batches", str(batches), "--batch", str(batch)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.train_scale", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("train_scale"))
    p.add_argument("--rows", type=int, default=1_300_000)
    p.add_argument("--species", type=int, default=14_000)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="folder of real recordings")
    p.add_argument("--batches", type=int, default=20, help="timed batches after the first")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.workers[0], args.batches, args.batch)))
        return 0
    audio = sorted(p for p in args.audio.iterdir() if p.suffix in (".wav", ".ogg", ".flac"))
    with tempfile.TemporaryDirectory(prefix="train_scale-") as tmp:
        started = time.perf_counter()
        manifest = write_scale_manifest(Path(tmp), args.rows, args.species, audio)
        written = round(time.perf_counter() - started, 1)
        runs = [
            _measure_in_fresh_process(manifest, w, args.batches, args.batch) for w in args.workers
        ]
    header = ["workers", "index s", "first batch s", "batches/s", "clips/s", "RSS imports MiB"]
    header += ["RSS rank MiB", "RSS worker MiB"]
    table = markdown_table(
        header,
        [
            [r["workers"], r["index_s"], r["first_batch_s"], r["batches_per_s"], r["clips_per_s"],
             r["rss_after_imports_mib"], r["peak_rss_rank_mib"], r["peak_rss_worker_mib"]]
            for r in runs
        ],
    )  # fmt: skip
    payload = {
        "command": "train_scale",
        "rows": args.rows,
        "species": args.species,
        "audio_files": [p.name for p in audio],
        "batch": args.batch,
        "manifest_write_s": written,
        "runs": runs,
    }
    write_json(args.out / "train_scale.json", payload)
    write_text(args.out / "train_scale.md", table + "\n")
    print(table)
    print(f"wrote {args.out}/train_scale.json, train_scale.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
