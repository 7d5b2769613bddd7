"""`make demo`: the whole chain on one machine, as a user meets it.

    synthetic world -> biovita-train pipeline -> biovita-export -> biovita-field listen (a
    soundscape played as a live stream) -> Mosquitto -> biovita-server ingest -> review app

The world, the trained run and the exported bundle are cached under ``.cache/demo/<key>/``, the
key being a hash of everything that shapes them (world settings, recipe, and the code of
``biovita``, ``trainer`` and ``export``), so a second run starts listening in seconds.
Every service runs as its own process group and is stopped (SIGTERM, then SIGKILL) on exit or
Ctrl-C. Run ``python -m scripts.demo --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.events import TimedEvent, match_events
from biovita.bundle import load_bundle
from biovita.world import World, WorldConfig, write_world
from biovita.world.annotations import read_truth, write_truth
from tests.e2e.chain import (
    BIN,
    DETECTION_LINE,
    DeviceDb,
    ServerDb,
    Service,
    add_reviewer,
    ingest_service,
    listen_service,
    serve_service,
    wait_until,
)
from tests.support.mosquitto import MosquittoBroker, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "demo"
SITE, DEVICE = "demo-site", "recorder-01"
REVIEWER = "demo"
VALIDATION_S = 240.0  # the soundscape the bundle's scoring is fitted on

# The recipe: the trainer's model classes at a width a laptop CPU trains in minutes. "quick"
# trains a few steps only (the plumbing, not a useful model: precision and recall show it).
WIDTHS = [
    "model.embed_dim=64",
    "model.image_text_width=64",
    "model.image_text_layers=2",
    "model.audio_hidden=16",
    "model.audio_depths=[1, 1, 2]",
    "model.audio_projection_dim=64",
    'distill.student={"stem_channels": 8, "blocks": [[2, 16, 2], [2, 32, 2]], "head_channels": 64}',
    "distill.max_param_ratio=1.0",
]
STEPS = {
    "standard": {"stage0": 150, "stage1": 200, "stage2": 120, "distill": 300},
    "quick": {"stage0": 6, "stage1": 6, "stage2": 6, "distill": 6},
}


def recipe(name: str) -> list[str]:
    sets = list(WIDTHS)
    for stage, steps in STEPS[name].items():
        sets += [f"{stage}.loop.steps={steps}", f"{stage}.loop.batch_size=16"]
    return sets + [f"stage2.ramp_steps={STEPS[name]['stage2'] // 2}"]


# ---------------------------------------------------------------------------------- output


def step(n: int, total: int, text: str) -> None:
    print(f"\n\033[1m[{n}/{total}] {text}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"      {text}", flush=True)


def run(*argv: str | Path) -> None:
    """A step's command, its own progress bars shown as they come."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(a) for a in argv], env=env)
    if done.returncode != 0:
        raise SystemExit(f"demo: {Path(str(argv[0])).name} failed (exit {done.returncode})")


# ------------------------------------------------------------------------------- the build


# The code that shapes the cached world, run and bundle: a change to any of it is a new cache.
SHAPING_CODE = ("biovita", "trainer", "export")


def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for root in SHAPING_CODE:
        path = REPO / root
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(source.relative_to(REPO).as_posix().encode() + b"\0")
            digest.update(source.read_bytes())
    return digest.hexdigest()


def cache_dir(config: WorldConfig, sets: list[str]) -> Path:
    key = json.dumps(
        {"world": config.model_dump(mode="json"), "recipe": sets, "code": code_fingerprint()},
        sort_keys=True,
    )
    return CACHE / hashlib.sha256(key.encode()).hexdigest()[:12]


def build(cache: Path, config: WorldConfig, sets: list[str], total: int) -> tuple[Path, Path]:
    """The world, the trained run and the exported bundle, each reused when already built."""
    world_dir, run_dir, bundle = cache / "world", cache / "run", cache / "bundle"
    step(1, total, f"synthetic world ({config.n_species} species) in {world_dir}")
    if world_dir.exists():
        note("cached")
    else:  # written aside, then renamed: an interrupted write is never taken for a cached one
        staging = cache / "world.partial"
        shutil.rmtree(staging, ignore_errors=True)
        write_world(staging, config)
        staging.rename(world_dir)

    step(2, total, "training: stage 0-2 alignment, distillation, species bank")
    if (run_dir / "student.pt").exists() and (run_dir / "species.npz").exists():
        note("cached")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        args = [a for s in sets for a in ("--set", s)]
        run(BIN / "biovita-train", "pipeline", "--world", world_dir, "--out", run_dir, *args)

    step(3, total, "export: ONNX with the log-mel inside, parity checked, scoring fitted, bundle")
    # The scoring (temperature, threshold, background floor, N-of-M) is fitted on a soundscape of
    # its own: the one the demo listens to and scores must stay unseen by the fit.
    validation = soundscape(cache, config, VALIDATION_S, seed=config.seed + 2, name="validation")
    if (bundle / "manifest.json").exists():
        note("cached")
        if not load_bundle(bundle).manifest.scoring.fitted_on:  # cached before calibration
            run(BIN / "biovita-export", "calibrate", "--bundle", bundle, validation)
    else:
        shutil.rmtree(bundle, ignore_errors=True)
        run(
            BIN / "biovita-export", "export", "--target", "cpu", "--precision", "fp32",
            "--checkpoint", run_dir / "student.pt", "--bank", run_dir / "species.npz",
            "--clips", world_dir, "--calibrate-on", validation, "--out", bundle,
        )  # fmt: skip
    return world_dir, bundle


def soundscape(
    cache: Path, config: WorldConfig, seconds: float, seed: int, name: str = "soundscape"
) -> Path:
    """Minutes of the world's background with calls of its seen species, and the truth."""
    path = cache / f"{name}_{int(seconds)}s.wav"
    if not path.exists():
        audio, truth = World(config).soundscape(np.random.default_rng(seed), seconds)
        soundfile.write(path, audio, config.sample_rate, subtype="PCM_16")
        write_truth(path.with_suffix(".csv"), truth)
    return path


# ------------------------------------------------------------------------------- the run


class Services:
    """Everything the demo started, stopped in reverse order, whatever happens."""

    def __init__(self) -> None:
        self.started: list[Service | MosquittoBroker] = []

    def add(self, service):
        self.started.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.started):
            try:
                service.stop()
            except Exception as err:  # keep stopping the others
                print(f"demo: stopping {service}: {err}", file=sys.stderr)
        self.started.clear()


def watch(daemon: Service, server: ServerDb) -> None:
    """Print each detection as the daemon commits it, with the server's synced count."""
    shown = 0
    while True:
        lines = [ln for ln in daemon.log_text().splitlines() if DETECTION_LINE.search(ln)]
        for line in lines[shown:]:
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            synced = len(server.ids(DEVICE))
            note(
                f"{fields.get('start', '')[11:19]}  {fields.get('species', '?'):<28} "
                f"score {fields.get('score', '?')}  (synced to the server: {synced})"
            )
        shown = len(lines)
        if not daemon.alive:
            return
        time.sleep(0.2)


def summary(server: ServerDb, device: DeviceDb, truth_csv: Path) -> tuple[int, int, object]:
    rows = server.rows(DEVICE)
    predicted = [TimedEvent(r[0] / r[2], r[1] / r[2], r[3], r[4]) for r in rows]
    truth = [TimedEvent(t.start_s, t.end_s, t.species_id) for t in read_truth(truth_csv)]
    return len(device.ids()), len(rows), match_events(predicted, truth, tolerance_s=1.5).overall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(STEPS), default="standard")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic world's seed")
    parser.add_argument("--minutes", type=float, default=2.0, help="soundscape length")
    parser.add_argument("--speed", type=float, default=8.0, help="times faster than real time")
    parser.add_argument("--port", type=int, default=8080, help="review app port")
    parser.add_argument("--no-wait", action="store_true", help="stop once the summary is out")
    args = parser.parse_args(argv)

    total = 6
    config = WorldConfig.tiny(seed=args.seed)
    sets = recipe(args.recipe)
    cache = cache_dir(config, sets)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        _, bundle = build(cache, config, sets, total)
    except KeyboardInterrupt:  # the step's own command got the Ctrl-C too and has stopped
        print("\ndemo: interrupted; what was finished stays cached", flush=True)
        return 130
    scape = soundscape(cache, config, args.minutes * 60, seed=config.seed + 1)

    session = cache / "session" / time.strftime("%Y%m%d-%H%M%S")
    services = Services()
    try:
        step(4, total, "starting Mosquitto, the server's ingest and its review app")
        broker = services.add(MosquittoBroker(session / "broker").start())
        server_data = session / "server"
        ingest = services.add(
            ingest_service(server_data, broker.host, broker.port, session / "ingest.log")
        )
        ingest.start().wait_for_log("connected to")
        password = secrets.token_urlsafe(9)
        add_reviewer(server_data, REVIEWER, password)
        port = args.port if _port_free(args.port) else free_port()
        web = services.add(
            serve_service(server_data, port, session / "serve.log", bundle / "species.npz")
        )
        web.start()
        wait_for_port(port, timeout=60)
        note(
            f"broker 127.0.0.1:{broker.port}, review app http://127.0.0.1:{port}, logs in {session}"
        )

        step(
            5,
            total,
            f"listening: a {args.minutes:g}-minute soundscape played live at {args.speed:g}x real time",
        )
        daemon = services.add(
            listen_service(
                bundle, session / DEVICE, DEVICE, SITE, broker.host, broker.port,
                ["--file", str(scape)], {"audio.speed": args.speed, "audio.realtime": True},
            )
        )  # fmt: skip
        device, server = DeviceDb(session / DEVICE / "device.db"), ServerDb(server_data)
        daemon.start()
        watch(daemon, server)
        if daemon.process.returncode != 0:
            print(daemon.log_text()[-3000:], file=sys.stderr)
            raise SystemExit("demo: biovita-field listen failed")
        wait_until(lambda: device.outbox_detections() == 0, 60, "the recorder's outbox synced")

        step(6, total, "summary")
        on_device, synced, counts = summary(server, device, scape.with_suffix(".csv"))
        note(f"detections on the recorder: {on_device}; stored on the server: {synced}")
        note(
            f"against the soundscape's ground truth: precision {counts.precision:.0%}, "
            f"recall {counts.recall:.0%} ({counts.tp} calls found, {counts.fp} false, "
            f"{counts.fn} missed; recipe '{args.recipe}')"
        )
        s = load_bundle(bundle).manifest.scoring
        note(
            f"the bundle's scoring, fitted on {VALIDATION_S:g} s of another soundscape: temperature "
            f"{s.temperature:g}, threshold {s.threshold:g}, background cosine floor "
            f"{s.unknown_similarity:.3f}, confirm {s.confirm_hits} of {s.confirm_windows} windows"
        )
        note(
            f"review them: http://127.0.0.1:{port}/detections  (user {REVIEWER}, password {password})"
        )
        if not args.no_wait:
            note("the broker, ingest and review app keep running; Ctrl-C stops everything")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
    finally:
        services.stop()
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    raise SystemExit(main())
