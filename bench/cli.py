"""The `biovita-bench` command: measure checkpoints and bundles; write the synthetic world.

biovita-bench world        --out W [--tiny]
biovita-bench retrieval    --world W --checkpoint RUN/stage2.pt [--checkpoint RUN/student.pt]
                           [--bundle BUNDLE] [--out DIR]
biovita-bench retrieval    --bench BioVITA-Bench/ --media-root MEDIA --checkpoint ...
biovita-bench traits       --world W --checkpoint ... [--out DIR]
biovita-bench consistency  --world W --checkpoint ... [--out DIR]
biovita-bench detection    --bundle BUNDLE --world W | --soundscape S.wav --truth S.csv
biovita-bench stability    --bundle BUNDLE --world W | --soundscape S.wav --truth S.csv
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import world_cmd
from biovita.cli import run
from biovita.errors import ConfigError

log = logging.getLogger("bench")
PARITY_LIMIT_POINTS = 0.5


def _model_names(paths: Sequence[Path]) -> list[str]:
    """``stage2``, ``student``...; ``run/stage2`` when two runs share a file name."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def _checkpoint_sources(args: argparse.Namespace, registry) -> list:
    names = _model_names(args.checkpoint)
    return [registry.checkpoint(p, n) for p, n in zip(args.checkpoint, names, strict=True)]


def _need_checkpoints(args: argparse.Namespace) -> None:
    if not args.checkpoint:
        raise ConfigError("no model given", hint="pass --checkpoint RUN/stage2.pt (repeatable)")


def _print(text: str) -> None:
    print(text, flush=True)


def _publish(
    out: Path,
    name: str,
    payload: dict,
    markdown: str,
    plot: Callable[[Path], object] | None = None,
    png: str | None = None,
) -> int:
    """Write ``name``.json, ``name``.md (and a chart) to ``out``; print the table and the files."""
    from bench.reports import write_json, write_text

    files = [f"{name}.json", f"{name}.md"]
    write_json(out / files[0], {"command": name, **payload})
    write_text(out / files[1], markdown)
    if plot is not None:
        files.append(png or f"{name}.png")
        plot(out / files[-1])
    _print(markdown)
    _print(f"wrote {out}/{', '.join(files)}")
    return 0


# ------------------------------------------------------------------------------------ retrieval


def _chain_paths(args: argparse.Namespace) -> tuple[Path, Path] | None:
    if args.no_chain:
        return None
    if args.stage1 or args.stage0:
        if not (args.stage1 and args.stage0):
            raise ConfigError(
                "the zero-shot chain needs both --stage1 and --stage0", hint="pass both, or neither"
            )
        return args.stage1, args.stage0
    for ckpt in args.checkpoint:  # RUN/stage1.pt and RUN/stage0.pt beside a given checkpoint
        stage1, stage0 = ckpt.parent / "stage1.pt", ckpt.parent / "stage0.pt"
        if stage1.is_file() and stage0.is_file():
            return stage1, stage0
    return None


def _retrieval(args: argparse.Namespace) -> int:
    from bench.models import ModelRegistry, bundle_checkpoint
    from bench.retrieval import (
        describe_unreadable,
        parity_gap,
        read_benchmark,
        results_markdown,
        run_retrieval,
        write_benchmark,
        write_reports,
    )
    from bench.sources import DataFolder

    if not args.checkpoint and not args.bundle:
        raise ConfigError("no model given", hint="pass --checkpoint and/or --bundle")
    out = args.out
    if args.bench is not None:
        lists_dir = args.bench
    elif args.world is not None:
        lists_dir = write_benchmark(
            out / "lists",
            DataFolder.open(args.world),
            args.seed,
            tuple(args.splits),
            args.candidates,
            args.max_queries,
        )
        log.info("candidate lists written to %s", lists_dir)
    else:
        raise ConfigError("nothing to benchmark on", hint="pass --world W or --bench DIR")
    benchmarks = read_benchmark(lists_dir, args.media_root)

    registry = ModelRegistry(crop=args.crop)
    sources = _checkpoint_sources(args, registry)
    chain = _chain_paths(args)
    if chain is not None:
        sources.append(registry.chain(*chain))
    names = dict(zip(args.checkpoint, _model_names(args.checkpoint), strict=True))
    for bundle in args.bundle:
        ckpt = args.bundle_checkpoint or bundle_checkpoint(bundle, args.checkpoint)
        sources += registry.bundle(bundle, ckpt, reference=names.get(ckpt))

    results = run_retrieval(benchmarks, sources)
    parity = {
        s.name: {
            "reference": s.reference,
            "max_abs_top1_points": parity_gap(results, s.name, s.reference),
        }
        for s in sources
        if s.reference is not None
    }
    meta = {
        "command": "retrieval",
        "crop": args.crop,
        "seed": args.seed,
        "lists": str(lists_dir),
        "world": str(args.world) if args.world else None,
        "parity": parity,
    }
    paths = write_reports(results, out, meta)
    _print(results_markdown(results))
    for line in describe_unreadable(results):
        _print(line)
    for name, p in parity.items():
        gap = p["max_abs_top1_points"]
        verdict = "within" if gap <= PARITY_LIMIT_POINTS else "EXCEEDS"
        _print(
            f"parity: {name} vs {p['reference']}: max |dTop-1| = {gap:.2f} points "
            f"({verdict} the {PARITY_LIMIT_POINTS} point limit)"
        )
    _print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


# --------------------------------------------------------------------------- traits / consistency


def _features_per_split(args: argparse.Namespace, splits: Sequence[str]):
    """(data folder, [(source name, split, index, features)]) for every checkpoint and split."""
    from bench.models import ModelRegistry
    from bench.sources import DataFolder

    _need_checkpoints(args)
    data = DataFolder.open(args.world)
    indexes = {s: data.index(s) for s in splits}
    rows = []
    for source in _checkpoint_sources(args, ModelRegistry()):
        for split, index in indexes.items():
            rows.append((source.name, split, index, source.featurize(index)))
    return data, rows


def _traits(args: argparse.Namespace) -> int:
    from bench.traits import TraitResults, plot_traits, run_traits, traits_markdown

    # the unseen split's index holds every held-out item: seen species' test items and unseen ones
    data, rows = _features_per_split(args, ("unseen",))
    if not any(data.traits.values()):
        raise ConfigError(
            f"{args.world}/taxa.csv has no trait_* columns", hint="add trait_<name> columns"
        )
    results = TraitResults()
    for model in dict.fromkeys(name for name, *_ in rows):
        features = [(fs, index) for name, _, index, fs in rows if name == model]
        run_traits(model, features, data.traits, results, args.folds, args.seed)
    payload = {
        "seed": args.seed,
        "folds": args.folds,
        "items": results.items,
        "accuracy": results.accuracy,
    }
    return _publish(
        args.out,
        "traits",
        payload,
        traits_markdown(results),
        lambda path: plot_traits(results, path),
    )


def _consistency(args: argparse.Namespace) -> int:
    from bench.consistency import (
        ConsistencyResults,
        consistency_markdown,
        plot_consistency,
        run_consistency,
    )

    data, rows = _features_per_split(args, tuple(args.splits))
    results = ConsistencyResults()
    for model, split, index, features in rows:
        run_consistency(split, model, index, data.taxa, features, results)
    return _publish(
        args.out,
        "consistency",
        results.to_json(),
        consistency_markdown(results),
        lambda path: plot_consistency(results, path),
    )


# ------------------------------------------------------------------------------------ detection


def _soundscapes(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(audio, truth CSV) pairs from --soundscape/--truth or every soundscape of --world."""
    from bench.detection import world_soundscapes

    if args.soundscape is not None:
        if args.truth is None:
            raise ConfigError("--soundscape needs --truth", hint="the ground-truth CSV beside it")
        return [(args.soundscape, args.truth)]
    if args.world is not None:
        return world_soundscapes(args.world)
    raise ConfigError("no soundscape given", hint="pass --world W or --soundscape + --truth")


def _detection(args: argparse.Namespace) -> int:
    from bench.detection import DeviceClassifier, detection_markdown, plot_pr_curve, run_detection

    pairs = _soundscapes(args)
    classifier = DeviceClassifier(args.bundle, args.device_config)
    result = run_detection(classifier, pairs, args.tolerance)
    return _publish(
        args.out,
        "detection",
        {"bundle": str(args.bundle), **result.to_json()},
        detection_markdown(result),
        lambda path: plot_pr_curve(result, path),
        png="detection_pr.png",
    )


# ---------------------------------------------------------------------------------------- parser


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a trainer checkpoint (stage0/1/2 or student .pt); repeat for side-by-side rows",
    )


def _add_common(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-out") / command,
        help=f"folder for the JSON, Markdown and PNG reports (bench-out/{command})",
    )


def _add_soundscape_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", type=Path, help="every soundscapes/*.wav of this world")
    parser.add_argument("--soundscape", type=Path, help="one recording ...")
    parser.add_argument(
        "--truth", type=Path, help="... and its truth CSV (start_s,end_s,species_id)"
    )


def build_parser() -> argparse.ArgumentParser:
    from bench.protocol import N_CANDIDATES, SPLITS

    parser = argparse.ArgumentParser(
        prog="biovita-bench",
        description="measure checkpoints and bundles; write the synthetic world.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    world_cmd.add_parser(commands)

    p = commands.add_parser(
        "retrieval",
        help="BioVITA-Bench: 6 directions x species/genus/family, seen and unseen splits",
        description="Write (or read) candidate lists and score every model on them.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--world", type=Path, help="a world or data folder (manifest.csv, taxa.csv)")
    where.add_argument(
        "--bench",
        type=Path,
        help="existing candidate lists: ours (<dir>/seen, <dir>/unseen) or the published layout",
    )
    p.add_argument("--media-root", type=Path, help="base of relative file paths in --bench indexes")
    _add_models(p)
    p.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=[],
        help="an exported bundle: audio through its ONNX tower in ONNX Runtime",
    )
    p.add_argument(
        "--bundle-checkpoint",
        type=Path,
        help="image/text side of --bundle (default: the --checkpoint it came from)",
    )
    p.add_argument("--stage1", type=Path, help="zero-shot chain: the stage-1 (audio-text) model")
    p.add_argument("--stage0", type=Path, help="zero-shot chain: the image-text model")
    p.add_argument("--no-chain", action="store_true", help="leave out the zero-shot chain row")
    p.add_argument(
        "--crop",
        choices=["onset10"],
        help="onset10: each audio file cut to 10 s from its onset, as the official BioVITA "
        "evaluation does (default: every window of the file, averaged)",
    )
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    p.add_argument(
        "--candidates",
        type=int,
        default=N_CANDIDATES,
        help=f"candidates per query, answer included ({N_CANDIDATES})",
    )
    p.add_argument("--max-queries", type=int, help="at most this many queries per list")
    _add_common(p, "retrieval")
    p.set_defaults(func=_retrieval)

    p = commands.add_parser("traits", help="linear probes: ecological traits from embeddings")
    p.add_argument("--world", type=Path, required=True)
    _add_models(p)
    p.add_argument("--folds", type=int, default=5, help="species-disjoint folds (5)")
    _add_common(p, "traits")
    p.set_defaults(func=_traits)

    p = commands.add_parser(
        "consistency", help="when the species is wrong, how often genus/family are right"
    )
    p.add_argument("--world", type=Path, required=True)
    _add_models(p)
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=["seen"])
    _add_common(p, "consistency")
    p.set_defaults(func=_consistency)

    p = commands.add_parser(
        "detection", help="the device's classifier over soundscapes: P/R/F1 and a PR curve"
    )
    p.add_argument("--bundle", type=Path, required=True, help="the bundle the device runs")
    p.add_argument("--device-config", type=Path, help="a biovita-field TOML config (defaults)")
    _add_soundscape_args(p)
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.5,
        help="seconds a detection may miss the call by and still count (1.5)",
    )
    _add_common(p, "detection")
    p.set_defaults(func=_detection)

    p = commands.add_parser(
        "stability",
        help="how far each tower's embedding and top-1 move when the window moves 1 sample-100 ms",
    )
    p.add_argument("--bundle", type=Path, required=True, help="the bundle to measure")
    _add_soundscape_args(p)
    _add_common(p, "stability")
    p.set_defaults(func=_stability)
    return parser


def _stability(args: argparse.Namespace) -> int:
    from bench.stability import run_stability, stability_markdown, to_json

    rows = run_stability(args.bundle, _soundscapes(args))
    payload = {"bundle": str(args.bundle), "rows": to_json(rows)}
    return _publish(args.out, "stability", payload, stability_markdown(rows))


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
