"""The `biovita-train` command: train the VITA towers, distil the compact tower, build the species bank.

    biovita-train pipeline --world W --out RUN        every stage on a synthetic world
    biovita-train distill --init TEACHER.pt --audio site/recordings --out RUN   (no labels)
    biovita-train bank --init RUN/stage2.pt --taxa taxa.csv [--images DIR] --out RUN
    biovita-train stage1 --manifest M --out RUN --init hf-hub:imageomics/bioclip-2 \\
        --set model.audio=laion/clap-htsat-unfused --set stage1.loop.steps=20000
    biovita-train import-biovita --release risashinoda/BioVITA --out RUN   (RUN/stage2.pt)
    biovita-train embed --init RUN/stage2.pt --out emb.npz [--crop onset10] FILE_OR_DIR...

Each stage reads its inputs from RUN (stage1 <- stage0.pt, stage2 <- stage1.pt, distill <-
stage2.pt, bank <- stage2.pt) unless --init says otherwise. Under torchrun every process joins
one DDP group (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from biovita.cli import run
from biovita.crop import CROPS
from trainer import distributed
from trainer.config import load_config, recipe_names
from trainer.file_embeddings import embed_files
from trainer.release import import_biovita
from trainer.stages import (
    OUTPUTS,
    run_ablations,
    run_bank,
    run_distill,
    run_pipeline,
    run_stage0,
    run_vita_stage,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="the run directory")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--world", type=Path, help="a synthetic world (its manifest.csv)")
    data.add_argument("--manifest", type=Path, help="a biovita manifest CSV")
    p.add_argument(
        "--recipe",
        help=f"a named preset to start from: {', '.join(recipe_names())} (default: the "
        "synthetic-world recipe)",
    )
    p.add_argument("--config", type=Path, help="recipe file (TOML or JSON), over --recipe")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field, e.g. stage1.loop.steps=500 (repeatable)",
    )
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per process (1 is fastest on a busy or shared CPU, and under "
        "torchrun with one process per core)",
    )


def _load(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    manifest = args.manifest or (args.world / "manifest.csv" if args.world else None)
    if manifest is not None:
        overrides.insert(0, f"data.manifest={manifest}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides, args.recipe)
    if cfg.data.manifest is None and (args.out / "config.json").is_file():
        # A stage run after the pipeline (or another stage) reuses the run's recipe.
        cfg = load_config(args.out / "config.json", overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    return cfg


def _stage(name: str):
    def command(args) -> int:
        cfg = _load(args)
        dist = distributed.setup(cfg.distributed.timeout_s)
        try:
            if name == "stage0":
                out = run_stage0(cfg, args.out, dist)
            elif name in ("stage1", "stage2"):
                out = run_vita_stage(name, cfg, args.out, dist, args.init)
            elif name == "distill":
                out = run_distill(cfg, args.out, dist, args.init, audio=args.audio)
            else:
                out = run_bank(cfg, args.out, args.init, dist, args.taxa, args.images)
            if out is not None:
                print(out)
            (args.out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
        finally:
            distributed.teardown()
        return 0

    return command


def _pipeline(args) -> int:
    cfg = _load(args)
    dist = distributed.setup(cfg.distributed.timeout_s)
    try:
        seconds = run_pipeline(cfg, args.out, dist)
        if args.ablations:
            seconds["ablations"] = run_ablations(cfg, args.out, dist)
    finally:
        distributed.teardown()
    if dist.is_main:
        print(json.dumps({"seconds": seconds, "run": str(args.out)}))
    return 0


def _import_biovita(args) -> int:
    vita, meta = import_biovita(args.release, args.clap_config)
    print(vita.save(args.out / OUTPUTS["stage2"], meta))
    return 0


def _embed(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = embed_files(args.init, args.files, args.crop, args.batch_size)
    out = result.save(args.out)
    print(f"{len(result.files)} embeddings of dim {result.embeddings.shape[1]} -> {out}")
    for path, why in result.failed:
        print(f"  skipped {path}: {why}")
    return 0


INIT_HELP = {
    "stage0": None,
    "stage1": "image-text model: RUN/stage0.pt (default), an open_clip dir or hf-hub:ID",
    "stage2": "Stage 1 checkpoint (default RUN/stage1.pt)",
    "distill": "teacher: Stage 2 checkpoint (default RUN/stage2.pt)",
    "bank": "checkpoint whose towers embed prompts and images (default RUN/stage2.pt)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biovita-train",
        description="train the VITA towers, distil the compact tower, build the species bank.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, init_help in INIT_HELP.items():
        p = sub.add_parser(name, help=f"run {name}")
        _common(p)
        if init_help:
            p.add_argument("--init", help=init_help)
        if name == "distill":
            p.add_argument(
                "--audio",
                type=Path,
                action="append",
                default=[],
                metavar="DIR",
                help="distil on these recordings (folders or files, no labels needed; "
                "repeatable), streamed from disk; a --manifest's clips join them, labelled",
            )
        if name == "bank":
            p.add_argument(
                "--taxa",
                type=Path,
                help="taxa.csv: build the bank for these species from text alone, no manifest",
            )
            p.add_argument(
                "--images",
                type=Path,
                help="with --taxa: one folder of images per species (DIR/<species_id>/*.jpg)",
            )
        p.set_defaults(func=_stage(name))
    p = sub.add_parser("pipeline", help="stage0, stage1, stage2, distill and bank in order")
    _common(p)
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also train the Stage 2 ablations (no Stage 1, no AIC, no ITC) under RUN/ablations/",
    )
    p.set_defaults(func=_pipeline)

    p = sub.add_parser(
        "import-biovita",
        help="the released BioVITA model (open_clip towers + clap_weights.pth) as RUN/stage2.pt",
    )
    p.add_argument(
        "--release",
        required=True,
        help="a local snapshot folder of the hub repo, or its hub id (risashinoda/BioVITA)",
    )
    p.add_argument("--out", type=Path, required=True, help="the run directory")
    p.add_argument(
        "--clap-config",
        help="CLAP architecture of clap_weights.pth: a transformers config dir or hub id "
        "(default: laion/clap-htsat-unfused's, as the official reader)",
    )
    p.set_defaults(func=_import_biovita)

    p = sub.add_parser("embed", help="one L2-normalised audio embedding per file (.npz)")
    p.add_argument("--init", required=True, help="a stage1/stage2 checkpoint or a student")
    p.add_argument("--out", type=Path, required=True, help="OUT.npz: embeddings [N, D], files")
    p.add_argument(
        "--crop",
        choices=CROPS,
        default="first",
        help="first: the first window, padded as the tower's front-end says; onset10: the "
        "official BioVITA crop from the first onset (see biovita/crop.py)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("files", nargs="+", type=Path, help="audio files or folders")
    p.set_defaults(func=_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
