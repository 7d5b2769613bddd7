"""ONNX Runtime latency of the exported compact tower, fp32 vs INT8, side by side in one run.

    .venv/bin/python -m bench.export_latency [--checkpoint RUN/student.pt | --bundle B] [--audio DIR]

Without --checkpoint or --bundle the default CompactConfig is exported with its initial weights
(latency does not depend on the weights). INT8 with every convolution quantised is calibrated on
real windows (--audio, default the shared real recordings) as `biovita-export --target cpu`
does; with --bundle, the bundle's own towers (its FP32 tower, and its INT8 tower with the layers
its mixed-precision search kept float) are timed beside it. Prints ms per 3 s window (median of
repeated runs) at batch 1 and 8 with 1 and 2 threads, the real-time factor, model size and
parameter count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from biovita.bundle import load_bundle
from export.onnx_export import export_onnx
from export.quantise import quantise_int8
from export.runtime import ort_session
from export.windows import audio_windows
from trainer.checkpoint import load_student
from trainer.models.compact import CompactAudioTower, count_parameters

DEFAULT_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "realaudio"


def _ms_per_window(path: Path, pcm: np.ndarray, batch: int, threads: int, seconds: float) -> float:
    session = ort_session(path, threads=threads)
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(pcm[:batch])}
    for _ in range(3):
        session.run(None, feed)
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times) < 5:
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_from = parser.add_mutually_exclusive_group()
    model_from.add_argument("--checkpoint", type=Path, help="a student checkpoint (default: fresh)")
    model_from.add_argument("--bundle", type=Path, help="an exported cpu/rpi bundle: its towers")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="calibration audio")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per cell")
    args = parser.parse_args()

    shipped: dict[str, Path] = {}
    if args.bundle:
        manifest = load_bundle(args.bundle).manifest
        spec, parameters, source = manifest.frontend, manifest.tower.parameters, args.bundle
        for tower in (manifest.tower, *manifest.alternates):
            layers = manifest.quantisation.float_layers if manifest.quantisation else []
            mixed = f", {len(layers)} convolutions float" if tower.precision == "int8" else ""
            shipped[f"bundle {tower.precision}{mixed}"] = args.bundle / tower.file
    else:
        model = load_student(args.checkpoint)[0] if args.checkpoint else CompactAudioTower()
        spec, parameters = model.config.frontend, count_parameters(model.eval())
        source = f"checkpoint {args.checkpoint}" if args.checkpoint else "default CompactConfig"
    windows = audio_windows([args.audio], spec).pcm
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        if args.bundle:
            fp32 = shipped.pop("bundle fp32")  # every bundle has an FP32 tower, primary or not
        else:
            export_onnx(model, fp32, spec.window_samples)
        quantise_int8(fp32, int8, windows, "cpu")
        towers = {"fp32": fp32, "int8, every convolution": int8, **shipped}
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        counted = f"{parameters:,} parameters" if parameters else "parameters not recorded"
        print(f"model: {source}, {counted}, window {spec.window_s:g} s")
        sizes = ", ".join(
            f"{name} {path.stat().st_size / 1e6:.2f} MB" for name, path in towers.items()
        )
        print(f"size: {sizes}")
        print()
        print("| precision | threads | batch | ms / window | x real time |")
        print("|---|---|---|---|---|")
        for name, path in towers.items():
            for threads in (1, 2):
                for batch in (1, 8):
                    ms = _ms_per_window(path, windows, batch, threads, args.seconds)
                    print(
                        f"| {name} | {threads} | {batch} | {ms:.2f} | {spec.window_s * 1000 / ms:,.0f} |"
                    )


if __name__ == "__main__":
    main()
