"""The `biovita-export` command: export a compact tower and species bank as a deployable bundle.

biovita-export --target jetson --checkpoint RUN/student.pt --bank RUN/species.npz --out B
biovita-export --tower teacher --target jetson --checkpoint RUN/stage2.pt --bank ... --out B
biovita-export export ...            (the same, as a subcommand)
biovita-export verify B
biovita-export rebank --bundle B --bank species.npz [--out B2]   (a new species list, same tower)

TensorRT engines are built on the recorder itself: `biovita-field engine --bundle B --fp16`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from biovita.bundle import load_bundle
from biovita.cli import run
from biovita.parity import MIN_INT8_TOP1, describe
from export.opsupport import DEFAULT_TRT_VERSION
from export.package import TOWERS, ExportRequest, export_bundle
from export.rebank import rebank_bundle
from export.scoring import calibrate_bundle
from export.verify import verify_bundle
from export.windows import WindowSources

COMMANDS = ("export", "verify", "calibrate", "rebank")


def _export(args: argparse.Namespace) -> int:
    request = ExportRequest(
        checkpoint=args.checkpoint,
        bank=args.bank,
        out=args.out,
        target=args.target,
        sources=WindowSources(clips=args.clips, audio=tuple(args.audio)),
        precision=args.precision,
        trt_version=args.trt_version,
        opset=args.opset,
        stored_windows=args.stored_windows,
        tar=args.tar,
        min_int8_agreement=args.min_int8_agreement,
        calibrate_on=tuple(args.calibrate_on),
        tower=args.tower,
    )
    out = export_bundle(request)
    manifest = load_bundle(out).manifest
    print(f"bundle {manifest.bundle_id} ({manifest.target}, {manifest.tower.precision}) -> {out}")
    for report in manifest.parity:
        print("  parity: " + describe(report))
    if manifest.quantisation:
        q = manifest.quantisation
        print(
            f"  int8: top-1 agreement {q.top1_agreement:.2%} (threshold "
            f"{q.threshold_top1_agreement:.0%}), cosine to fp32 min {q.cosine_to_fp32_min:.4f} "
            f"mean {q.cosine_to_fp32_mean:.4f} on {q.evaluated_on}"
        )
        print(f"  int8 method: {q.method}")
    if args.calibrate_on:
        s = manifest.scoring
        print(
            f"  scoring fitted on {len(args.calibrate_on)} soundscape path(s): temperature "
            f"{s.temperature:g}, threshold {s.threshold:g}, background cosine floor "
            f"{s.unknown_similarity:.3f}, confirm {s.confirm_hits} of {s.confirm_windows} windows"
        )
    if args.tar:
        print(f"  packed: {out.with_name(out.name + '.tar')}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    print(calibrate_bundle(args.bundle, args.soundscapes).describe())
    return 0


def _rebank(args: argparse.Namespace) -> int:
    out = rebank_bundle(args.bundle, args.bank, args.out)
    manifest = load_bundle(out).manifest
    print(
        f"bundle {manifest.bundle_id}: {manifest.species.count} species from {args.bank}, "
        f"verified -> {out}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    verify_bundle(args.bundle, args.trt_version)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0)
    parser = argparse.ArgumentParser(
        prog="biovita-export",
        description="export a compact tower and species bank as a deployable bundle "
        "(the subcommand 'export' may be left out).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    export = commands.add_parser("export", parents=[common], help="checkpoint + bank -> bundle")
    export.add_argument("--target", required=True, choices=["jetson", "cpu", "rpi"])
    export.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="the student (student.pt), or with --tower teacher a stage1/stage2 checkpoint",
    )
    export.add_argument(
        "--tower",
        choices=TOWERS,
        default="student",
        help="teacher: the CLAP audio tower with its CLAP front-end in the graph, fp32, for "
        "boards that can run the full model",
    )
    export.add_argument("--bank", required=True, type=Path, help="the species bank (species.npz)")
    export.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    export.add_argument(
        "--clips",
        type=Path,
        help="training-data manifest or a synthetic world folder: test clips check parity and "
        "INT8, train clips calibrate",
    )
    export.add_argument(
        "--audio", type=Path, action="append", default=[], help="recordings (files or folders)"
    )
    export.add_argument(
        "--precision", choices=["fp32", "int8"], help="ONNX tower (default: jetson fp32, else int8)"
    )
    export.add_argument(
        "--trt-version",
        default=DEFAULT_TRT_VERSION,
        help="TensorRT whose ops the jetson graph may use",
    )
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--stored-windows", type=int, help="calibration windows kept in the bundle")
    export.add_argument(
        "--min-int8-agreement",
        type=float,
        default=MIN_INT8_TOP1,
        help="refuse an INT8 tower that keeps fewer fp32 top-1 species on the test clips",
    )
    export.add_argument(
        "--calibrate-on", type=Path, action="append", default=[], metavar="SOUNDSCAPES",
        help="fit the scoring defaults on these validation soundscapes (files or folders, a truth "
        "CSV beside each; not the ones you benchmark on)",
    )  # fmt: skip
    export.add_argument("--tar", action="store_true", help="also pack BUNDLE.tar")
    export.set_defaults(func=_export)

    calibrate = commands.add_parser(
        "calibrate", parents=[common], help="fit a bundle's scoring defaults on soundscapes"
    )
    calibrate.add_argument("--bundle", required=True, type=Path)
    calibrate.add_argument(
        "soundscapes", type=Path, nargs="+", help="validation soundscapes (files or folders)"
    )
    calibrate.set_defaults(func=_calibrate)

    rebank = commands.add_parser(
        "rebank", parents=[common], help="swap a bundle's species bank (tower unchanged)"
    )
    rebank.add_argument("--bundle", required=True, type=Path)
    rebank.add_argument(
        "--bank", required=True, type=Path, help="species.npz (biovita-train bank --taxa ...)"
    )
    rebank.add_argument("--out", type=Path, help="write here instead of replacing the bundle")
    rebank.set_defaults(func=_rebank)

    verify = commands.add_parser(
        "verify", parents=[common], help="re-check hashes, shapes, op support and parity"
    )
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--trt-version", help="check ops against this TensorRT (jetson: 10.3)")
    verify.set_defaults(func=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["export", *argv]  # `biovita-export --target jetson ...` as the issue writes it
    return run(build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
