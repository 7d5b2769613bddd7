"""``classify --workers 1`` against ``--workers 2``: real recordings, a card of files, one long file.

    .venv/bin/python -m bench.classify_workers [--bundle B] [--hours 1] [--json FILE]

Each run is a fresh ``biovita-field classify`` process (decode, resample, infer, classify, every
table written per file). One worker gets all the cores as ONNX Runtime threads; N workers get
``cores / N`` threads each. The card is ``--hours`` of the synthetic soundscape cut into 5-minute
48 kHz files (a recorder's card); the long file is the same audio as one file, where workers
cannot help (files are the unit of work). Without ``--bundle`` a fresh untrained student is
exported (its cost is the trained one's: same architecture).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import soundfile

from bench.device_bench import _bin, make_student_bundle, measured_run, write_long_soundscape
from biovita.audio import list_audio_files

REAL_AUDIO = Path(
    os.environ.get("BIOVITA_REAL_AUDIO", Path(__file__).parents[2] / "shared" / "realaudio")
)
CARD_FILE_S = 300.0


def write_card(long_file: Path, card: Path) -> None:
    """``long_file`` cut into 5-minute files, as a recorder writes them."""
    card.mkdir(parents=True)
    with soundfile.SoundFile(long_file) as f:
        block = int(CARD_FILE_S * f.samplerate)
        for i in range(0, f.frames, block):
            soundfile.write(card / f"rec{i // block:03d}.wav", f.read(block), f.samplerate)


def audio_seconds(path: Path) -> float:
    files = list_audio_files(path) if path.is_dir() else [path]
    return sum(soundfile.info(str(f)).duration for f in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="default: export a fresh student")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="biovita-workers-bench-"))
    try:
        load_before = os.getloadavg()[0]
        bundle = args.bundle or make_student_bundle(work)
        long_file = work / "long_48k.wav"
        write_long_soundscape(long_file, args.hours)
        write_card(long_file, work / "card")
        inputs = {
            f"real recordings ({len(list_audio_files(REAL_AUDIO))} files)": REAL_AUDIO,
            f"card of {CARD_FILE_S / 60:.0f}-minute files": work / "card",
            "one long file": long_file,
        }
        rows = []
        for name, path in inputs.items():
            seconds = audio_seconds(path)
            for workers in args.workers:
                out = work / f"out-{len(rows)}"
                cmd = [_bin("biovita-field"), "classify", str(path), "--bundle", str(bundle),
                       "-q", "--out", str(out), "--workers", str(workers)]  # fmt: skip
                wall, rss, _ = measured_run(cmd)
                rows.append(
                    {
                        "input": name,
                        "audio_s": seconds,
                        "workers": workers,
                        "wall_s": wall,
                        "x_realtime": seconds / wall,
                        "peak_rss_mib": rss,
                    }  # fmt: skip
                )
                shutil.rmtree(out)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(f"machine: {machine}; load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| input | audio | workers | wall | x real time | peak RSS (largest process) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['input']} | {r['audio_s'] / 60:.1f} min | {r['workers']} | {r['wall_s']:.1f} s "
              f"| {r['x_realtime']:.0f}x | {r['peak_rss_mib']:.0f} MiB |")  # fmt: skip
    if args.json:
        doc = {"machine": machine, "load": [load_before, load_after], "runs": rows}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
