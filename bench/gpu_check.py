"""The GPU-server check: what only a CUDA machine can measure, in one run, as one JSON of figures.

    .venv/bin/python -m bench.gpu_check --out gpu_check.json [--bundle JETSON_BUNDLE_DIR]

1. AMP training: Stage 1 steps (ATC, the real loop: fp16 autocast, gradient scaling, the
   non-finite-step guard) of the real-size HTS-AT (``ClapAudioConfig()`` defaults, log-mel tiled
   to CLAP's 1000 frames) at batch 64, on windows that include full-scale tones at +6 dB (the
   input that made fp16 log-mels NaN). Figures: steps/s, clips/s, peak GPU memory, skipped steps,
   and whether every loss, weight and BatchNorm statistic stayed finite.
2. TensorRT: fp16 and int8 engines built from ``--bundle`` (an fp32 bundle exported with
   ``biovita-export --target jetson``) through ``device.engine.build_engine`` (what ``biovita-field engine`` runs on the board), each with
   its parity against ONNX Runtime on the bundle's calibration windows.

Without a CUDA GPU it writes why it skipped and exits 0; a part that cannot run (no TensorRT, no
bundle) is recorded as skipped with its reason. ``--device cpu --audio-size tiny`` runs part 1's
code on a CPU under bf16 autocast, so the script itself is tested where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import ClapAudioConfig, ClapAudioModelWithProjection

from bench.reports import write_json
from biovita.frontend import FrontendSpec
from biovita.taxonomy import Taxon
from trainer.data import Clip, EpochSampler, SpeciesData
from trainer.distributed import DistContext
from trainer.loop import LoopConfig, train
from trainer.metrics import read_jsonl
from trainer.models.encoders import AudioTeacher, tiny_clap_audio_config, tiny_image_text
from trainer.models.vita import VitaModel
from trainer.tasks import FixedWeights, VitaTask

EMBED_DIM = 768  # BioCLIP 2's ViT-L/14 space
CLAP_FRAMES = 1000  # a real 10-s CLAP's input length


def _tone_clip(spec: FrontendSpec, hz: float, amplitude: float):
    def load() -> np.ndarray:
        t = np.arange(spec.window_samples) / spec.sample_rate
        noise = np.random.default_rng(int(hz)).normal(0, 0.01, t.shape)
        return (amplitude * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)

    return load


def _tone_data(n_species: int, spec: FrontendSpec) -> SpeciesData:
    """Two clips per species: a quiet tone and a full-scale one (the sampler adds up to +6 dB)."""
    taxa = [Taxon(species_id=f"s{i:03d}", scientific_name=f"Tonus s{i}") for i in range(n_species)]
    clips = [
        Clip(s, f"tone{s}-{amp}", _tone_clip(spec, 200.0 + 60.0 * s, amp))
        for s in range(n_species)
        for amp in (0.05, 1.0)
    ]
    return SpeciesData(taxa, clips, frontend=spec)


def _vita(audio_size: str) -> VitaModel:
    """The real-size HTS-AT (log-mel tiled to 10 s) or the tiny one (3 s as they are)."""
    if audio_size == "default":
        clap_cfg, frames = ClapAudioConfig(), CLAP_FRAMES
    else:
        clap_cfg, frames = tiny_clap_audio_config(), None
    clap = ClapAudioModelWithProjection(clap_cfg)
    return VitaModel(
        tiny_image_text(EMBED_DIM), AudioTeacher(clap, EMBED_DIM, FrontendSpec(), frames)
    )


def _all_finite(module: torch.nn.Module) -> bool:
    tensors = [*module.parameters(), *module.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def amp_training(device: torch.device, audio_size: str, batch: int, steps: int, work: Path) -> dict:
    """Time ``steps`` Stage 1 steps after a 3-step warm-up (cuDNN autotuning, allocator)."""
    torch.manual_seed(0)
    vita = _vita(audio_size).to(device)
    data = _tone_data(batch, FrontendSpec())
    amp = "fp16" if device.type == "cuda" else "bf16"
    task = VitaTask(
        "stage1", vita, data, EpochSampler(data, batch, seed=0), FixedWeights.atc_only()
    )
    dist = DistContext(device=device)
    runs = {}
    for name, n in (("warmup", 3), ("timed", steps)):
        cfg = LoopConfig(steps=n, batch_size=batch, warmup_steps=0, log_every=1, amp=amp)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = train(task, cfg, work / name / "state.pt", work / name / "m.jsonl", dist)
        runs[name] = (result, read_jsonl(work / name / "m.jsonl"))
    result, metrics = runs["timed"]
    losses = [m["loss"] for _, ms in runs.values() for m in ms]
    figures = {
        "audio_tower": "HTS-AT, "
        + ("ClapAudioConfig() defaults" if audio_size == "default" else "tiny_clap_audio_config()"),
        "audio_parameters": sum(p.numel() for p in vita.audio.parameters()),
        "batch": batch,
        "autocast": amp,
        "timed_steps": steps,
        "seconds": round(result.seconds, 3),
        "steps_per_s": round(steps / result.seconds, 3),
        "clips_per_s": round(steps * batch / result.seconds, 1),
        "skipped_steps": metrics[-1]["skipped_steps"],
        "all_losses_finite": all(math.isfinite(x) for x in losses),
        "weights_and_statistics_finite": _all_finite(vita.audio),
        "final_loss": metrics[-1]["loss"],
    }
    if device.type == "cuda":
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return figures


def tensorrt_parity(bundle: Path | None, work: Path) -> dict:
    """fp16 and int8 engines of ``bundle``, each with its parity report against ONNX Runtime."""
    from biovita.errors import BiovitaError, EngineUnavailableError
    from device.engine import EngineOptions, build_engine, require_tensorrt

    try:
        trt, _ = require_tensorrt()
    except EngineUnavailableError as err:
        return {"skipped": f"{err} ({err.hint})"}
    if bundle is None:
        return {
            "skipped": "no --bundle given: export one with `biovita-export --target jetson "
            "--checkpoint RUN/student.pt --bank RUN/species.npz --audio DIR --out B`"
        }
    engines = {"tensorrt_version": trt.__version__}
    for precision in ("fp16", "int8"):
        copy = Path(shutil.copytree(bundle, work / f"bundle-{precision}"))
        started = time.perf_counter()
        try:
            entry = build_engine(copy, EngineOptions(precision=precision))
        except BiovitaError as err:  # a parity failure is a figure too
            engines[precision] = {"failed": str(err), "hint": err.hint}
            continue
        engines[precision] = {
            "build_seconds": round(time.perf_counter() - started, 1),
            "file": entry.file,
            "parity": entry.parity.model_dump(mode="json"),
        }
    return engines


def run_check(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    report: dict = {
        "command": "gpu_check",
        "host": platform.node(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
    }
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = f"no CUDA GPU visible to PyTorch (torch {torch.__version__}"
        reason += (
            f", built for CUDA {torch.version.cuda})" if torch.version.cuda else ", CPU build)"
        )
        return {**report, "gpu": None, "skipped": reason}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        report["amp_training"] = amp_training(
            device, args.audio_size, args.batch, args.steps, work / "train"
        )
        if device.type == "cuda":
            report["tensorrt"] = tensorrt_parity(args.bundle, work)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON of figures")
    p.add_argument("--bundle", type=Path, help="an fp32 bundle directory (--target jetson)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run)")
    p.add_argument("--audio-size", choices=["default", "tiny"], default="default")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run_check(args)
    write_json(args.out, report)
    if "skipped" in report:
        print(f"gpu_check skipped: {report['skipped']}")
    else:
        print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
