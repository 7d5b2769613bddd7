"""The `biovita-train` command: train the VITA towers, distil the compact tower, build the species bank.

    biovita-train pipeline --world W --out RUN        every stage on a synthetic world
    biovita-train stage1 --manifest M --out RUN --init hf-hub:imageomics/bioclip-2 \\
        --set model.audio=laion/clap-htsat-unfused --set stage1.loop.steps=20000

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
from trainer import distributed
from trainer.config import load_config
from trainer.stages import (
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
    p.add_argument("--config", type=Path, help="recipe file (TOML or JSON)")
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
    cfg = load_config(args.config, overrides)
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
                out = run_distill(cfg, args.out, dist, args.init)
            else:
                out = run_bank(cfg, args.out, args.init, dist)
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
        p.set_defaults(func=_stage(name))
    p = sub.add_parser("pipeline", help="stage0, stage1, stage2, distill and bank in order")
    _common(p)
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also train the Stage 2 ablations (no Stage 1, no AIC, no ITC) under RUN/ablations/",
    )
    p.set_defaults(func=_pipeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
