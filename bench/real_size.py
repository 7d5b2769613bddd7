"""Real-size dry run: the released model's architectures with random weights, end to end on a CPU.

    .venv/bin/python -m bench.real_size --out /tmp/real-size [--steps 20] [--threads 2]

1. writes a release in the risashinoda/BioVITA layout: open_clip ViT-L-14 with embed 768
   (BioCLIP 2's shape) and ``clap_weights.pth`` holding a transformers ClapModel of the
   clap-htsat-unfused architecture (``ClapConfig()``: HTS-AT + its RoBERTa text side) and a
   [768, 512] adapter, all random;
2. ``biovita-train import-biovita`` -> ``stage2.pt``;
3. ``biovita-train bank`` and ``distill`` (the default student, ``--steps`` steps) on a tiny
   synthetic world, each tower hearing its own view of the clips (``distill`` decides the views);
4. ``biovita-export --tower teacher`` and the student's export, both for the Jetson: TensorRT 10.3
   op check, ONNX Runtime parity and the fp16 estimate, as a real export runs them;
5. reports parameters, ONNX sizes, each step's wall time and peak RSS (each step runs in its own
   process, so the peaks are the step's own) and ONNX Runtime CPU latency per window: teacher
   10 s at 48 kHz, student 3 s at its rate, BirdNET V2.4 beside them where ``.[birdnet]`` is
   installed (``bench.device_bench.birdnet_cost``).

Weights are random: the figures are sizes and costs, not accuracy. Writes ``real_size.json`` and
``real_size.md`` (the docs/BENCHMARKS.md table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PY = sys.executable
BATCH = 1


def _run(step: str, args: list[str], log: dict, threads: int) -> None:
    """One step as its own process: wall time and that process's own peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    print(f"[{step}] {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen([PY, "-m", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed (exit {os.waitstatus_to_exitcode(status)})")
    log[step] = {
        "seconds": round(time.monotonic() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),  # Linux: KiB
    }


def _smoke_architectures():
    """Tiny stand-ins of the same classes, to check the script itself in a minute or two."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    from trainer.models.encoders import tiny_image_text_config

    audio = ClapAudioConfig(
        spec_size=256, window_size=4, patch_size=16, patch_stride=(16, 16),
        patch_embeds_hidden_size=16, hidden_size=32, depths=[1, 1], num_attention_heads=[1, 1],
        projection_dim=16,
    )  # fmt: skip
    text = ClapTextConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, projection_dim=16)  # fmt: skip
    clap = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    return tiny_image_text_config(embed_dim=32, width=32, layers=2), clap


def write_release(root: Path, smoke: bool = False, seed: int = 0) -> dict:
    """The release layout with random weights of the real architectures; returns their sizes."""
    import open_clip
    import torch
    from transformers import ClapConfig, ClapModel

    from trainer.models.encoders import build_image_text, save_image_text_dir
    from trainer.release import CLAP_WEIGHTS

    torch.manual_seed(seed)
    if smoke:
        model_cfg, clap_cfg = _smoke_architectures()
    else:
        model_cfg, clap_cfg = open_clip.get_model_config("ViT-L-14"), ClapConfig()
        assert model_cfg["embed_dim"] == 768
    image_text = build_image_text(model_cfg, source="random weights")
    save_image_text_dir(image_text, root)
    clap = ClapModel(clap_cfg)
    if smoke:
        clap.config.save_pretrained(root.parent / "clap-config")
    dim = image_text.embed_dim
    adapter = torch.randn(dim, clap.config.projection_dim) * clap.config.projection_dim**-0.5
    torch.save(
        {"clap_audio": clap.state_dict(), "audio_adapter": {"weight": adapter}},
        root / CLAP_WEIGHTS,
    )
    audio = sum(p.numel() for n, p in clap.named_parameters() if n.startswith("audio_"))
    return {
        "image_text_parameters": sum(p.numel() for p in image_text.model.parameters()),
        "clap_audio_parameters": audio,
        "release_mib": round(sum(f.stat().st_size for f in root.iterdir()) / 2**20),
    }


def latency(onnx_path: Path, samples: int, threads: int, seconds: float) -> float:
    from bench.export_latency import _ms_per_window

    pcm = np.random.default_rng(1).normal(0, 0.1, (BATCH, samples)).astype(np.float32)
    return _ms_per_window(onnx_path, pcm, BATCH, threads, seconds)


def report(out: Path, sizes: dict, steps: dict, threads: int, seconds: float) -> dict:
    from bench.device_bench import birdnet_cost
    from biovita.bundle import load_bundle

    rows = {}
    for tower in ("teacher", "student"):
        bundle = load_bundle(out / f"bundle-{tower}")
        m = bundle.manifest
        rows[tower] = {
            "parameters": m.tower.parameters,
            "onnx_mib": round(bundle.tower_path.stat().st_size / 2**20, 1),
            "window": f"{m.frontend.window_s:g} s at {m.frontend.sample_rate / 1000:g} kHz",
            "ms_per_window": round(
                latency(bundle.tower_path, m.tower.input_samples, threads, seconds), 2
            ),
            "parity_min_cosine": min(p.min_cosine for p in m.parity),
        }
    birdnet = birdnet_cost(threads, BATCH, seconds)
    rows["birdnet"] = {
        "window": "3 s at 48 kHz",
        "ms_per_window": None if birdnet is None else round(birdnet, 2),
    }
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": threads,
        "batch": BATCH,
        **sizes,
        "steps": steps,
        "towers": rows,
    }
    (out / "real_size.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "real_size.md").write_text(markdown(result), encoding="utf-8")
    return result


def markdown(r: dict) -> str:
    t = r["towers"]
    birdnet = t["birdnet"]["ms_per_window"]
    lines = [
        "| tower | parameters | ONNX MiB | window | ms per window (ORT CPU) | parity min cosine |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
        *(
            f"| {name} | {t[name]['parameters']:,} | {t[name]['onnx_mib']} | {t[name]['window']} "
            f"| {t[name]['ms_per_window']} | {t[name]['parity_min_cosine']:.5f} |"
            for name in ("teacher", "student")
        ),
        f"| BirdNET V2.4 FP32 | | | 3 s at 48 kHz | "
        f"{birdnet if birdnet is not None else 'not installed (.[birdnet])'} | |",
        "",
        "| step | seconds | peak RSS MiB |",
        "| --- | ---: | ---: |",
        *(f"| {k} | {v['seconds']} | {v['peak_rss_mib']} |" for k, v in r["steps"].items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder (must be new)")
    parser.add_argument("--steps", type=int, default=20, help="distillation steps")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every step")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per tower")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny architectures: check the script, not the sizes"
    )
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True)
    threads = str(args.threads)
    steps: dict = {}

    start = time.monotonic()
    sizes = write_release(out / "release", args.smoke)
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # this process wrote it
    steps["write release"] = {
        "seconds": round(time.monotonic() - start, 1),
        "peak_rss_mib": round(own_peak / 1024),
    }
    run = out / "run"
    smoke_config = ["--clap-config", str(out / "clap-config")] if args.smoke else []
    _run("import-biovita", ["trainer.cli", "import-biovita", "--release", str(out / "release"),
                            "--out", str(run), *smoke_config], steps, args.threads)  # fmt: skip
    _run("world", ["bench.cli", "world", "--out", str(out / "world"), "--tiny", "--no-progress"],
         steps, args.threads)  # fmt: skip
    common = ["--world", str(out / "world"), "--out", str(run), "--init", str(run / "stage2.pt"),
              "--threads", threads]  # fmt: skip
    _run("bank", ["trainer.cli", "bank", *common], steps, args.threads)
    # the smoke teacher is smaller than any student: lift the size bar there only
    ratio = ["--set", "distill.max_param_ratio=1000"] if args.smoke else []
    _run("distill", ["trainer.cli", "distill", *common, "--set",
                     f"distill.loop.steps={args.steps}", "--set", "distill.loop.batch_size=8",
                     *ratio], steps, args.threads)  # fmt: skip
    for tower, checkpoint in (("teacher", "stage2.pt"), ("student", "student.pt")):
        _run(f"export {tower}", ["export.cli", "export", "--tower", tower, "--target", "jetson",
                                 "--checkpoint", str(run / checkpoint), "--bank",
                                 str(run / "species.npz"), "--clips", str(out / "world"),
                                 "--out", str(out / f"bundle-{tower}")], steps, args.threads)  # fmt: skip
    result = report(out, sizes, steps, args.threads, args.seconds)
    print(markdown(result))


if __name__ == "__main__":
    main()
