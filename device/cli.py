"""The `biovita-field` command: listen, classify and sync detections on a field recorder.

Configuration comes from the TOML file (``--config``), then ``BIOVITA_*`` environment variables,
then these flags; ``--set section.key=value`` reaches any key the flags below do not name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from biovita.cli import run
from biovita.errors import ConfigError
from device.config import DeviceConfig, load_config, parse_value
from device.outputs import FORMATS


def _set_pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected section.key=value, got {text!r}")
    return key.strip(), parse_value(value.strip())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="device TOML file (see device.example.toml)")
    p.add_argument("--bundle", type=Path, help="bundle directory or .tar (overrides the config)")
    p.add_argument("--db", type=Path, help="SQLite log (store.path)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=_set_pair,
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set classify.threshold=0.7 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--json-logs", action="store_true", help="one JSON object per log line")


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> DeviceConfig:
    overrides: dict[str, Any] = dict(args.sets)
    if args.bundle is not None:
        overrides["bundle"] = str(args.bundle)
    if args.db is not None:
        overrides["store.path"] = str(args.db)
    overrides.update({k: v for k, v in (extra or {}).items() if v is not None})
    return load_config(args.config, overrides=overrides)


# ------------------------------------------------------------------------------------ classify


def cmd_classify(args: argparse.Namespace) -> int:
    from device.app import open_bundle
    from device.offline import classify_batch
    from device.store import Store

    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    unknown = formats - set(FORMATS)
    if unknown:
        raise ConfigError(
            f"unknown output format(s) {sorted(unknown)}", hint=f"use {', '.join(FORMATS)}"
        )
    cfg = config_from_args(
        args,
        {
            "classify.threshold": args.threshold,
            "inference.intra_op_threads": args.threads,
            "inference.max_batch": args.batch,
            "audio.time_expansion": args.time_expansion,
        },
    )
    bundle = open_bundle(cfg)
    out_dir = args.out or (args.path if args.path.is_dir() else args.path.parent)
    store = Store(cfg.store_path, cfg.store.busy_timeout_ms) if args.db else None
    try:
        result = classify_batch(
            args.path,
            bundle,
            cfg,
            out_dir,
            formats,
            workers=args.workers,
            resume=args.resume,
            store=store,
            start_time=args.start_time,
            progress=not args.quiet,
        )
    finally:
        if store is not None:
            store.close()
    n = sum(len(r) for r in result.rows.values())
    print(
        f"{n} detections in {len(result.rows)} file(s), {result.audio_s:.1f} s of audio "
        f"classified, {result.silent_windows} silent window(s) skipped, "
        f"{len(result.skipped)} file(s) skipped (--resume: results exist), "
        f"{len(result.errors)} error(s); results in {out_dir}"
    )
    if result.ultrasonic:
        lines = [f"{len(result.ultrasonic)} file(s) with most of their energy above the band:"]
        lines += [f"  {warning}" for warning in result.ultrasonic.values()]
        print("\n".join(lines), file=sys.stderr)
    if result.errors:
        lines = [f"{len(result.errors)} file(s) failed:"]
        lines += [f"error: {file}: {message}" for file, message in result.errors.items()]
        print("\n".join(lines), file=sys.stderr)
        return 1
    return 0


def _start_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-05-01T05:30:00+02:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -------------------------------------------------------------------------------------- listen


def cmd_listen(args: argparse.Namespace) -> int:
    from biovita.cli import setup_logging
    from device.app import build_daemon

    extra: dict[str, Any] = {
        "device.id": args.device_id,
        "device.site": args.site,
        "audio.input_device": args.input_device,
        "audio.channel": args.channel,
        "mqtt.host": args.mqtt_host,
        "mqtt.port": args.mqtt_port,
    }
    if args.file is not None:
        extra.update({"audio.source": "file", "audio.path": str(args.file)})
    if args.fast:
        extra["audio.realtime"] = False
    if args.stdin_rate is not None:
        extra.update({"audio.source": "stdin", "audio.stdin_rate_hz": args.stdin_rate})
    if args.no_mqtt:
        extra["mqtt.enabled"] = False
    cfg = config_from_args(args, extra)
    if cfg.log.json_logs or cfg.log.verbose:
        setup_logging(max(cfg.log.verbose, args.verbose), cfg.log.json_logs or args.json_logs)
    daemon = build_daemon(cfg)
    daemon.install_signal_handlers()
    return daemon.run()


# -------------------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    from device.store import Store

    cfg = config_from_args(args)
    if not cfg.store_path.exists():
        raise ConfigError(
            f"no device database at {cfg.store_path}",
            hint="run biovita-field listen first, or point --db / --config at the right place",
        )
    store = Store(cfg.store_path, cfg.store.busy_timeout_ms)
    try:
        daemon = json.loads(store.get_meta("daemon") or "{}")
        doc = {
            "store": str(store.path),
            "schema_version": store.schema_version,
            "counts": store.counts(),
            "clips_bytes": store.clips_bytes(),
            "daemon": daemon,
            "recent": store.recent(args.recent),
        }
    finally:
        store.close()
    if args.species:
        from device.app import open_bundle

        bundle = open_bundle(cfg)
        doc["species"] = [t.model_dump() for t in bundle.bank.taxa]
    if args.json:
        _print_json(doc)
        return 0
    state = "not running"
    if daemon.get("running"):
        state = "running" if _alive(daemon.get("pid")) else "gone without a clean stop (crash/kill)"
    print(f"daemon:  {state} (last heartbeat {daemon.get('utc', 'never')})")
    keys = ("bundle_id", "backend", "source", "windows", "mqtt_connected", "acks_rejected")
    for key in (*keys, "clips_paused", "stop_reason", "failure"):
        if key in daemon:
            print(f"  {key}: {daemon[key]}")
    print(f"store:   {doc['store']} (schema v{doc['schema_version']})")
    for key, value in doc["counts"].items():
        print(f"  {key}: {value}")
    print(f"  clips on disk: {doc['clips_bytes'] / (1 << 20):.1f} MiB")
    for row in doc["recent"]:
        synced = "delivered" if row["delivered_utc"] else "queued"
        print(f"  {row['start_utc']}  {row['species_id']:<20} {row['score']:.3f}  {synced}")
    for taxon in doc.get("species", []):
        print(f"  {taxon['species_id']}\t{taxon['scientific_name']}\t{taxon['common_name']}")
    return 0


# -------------------------------------------------------------------------------------- engine


def cmd_engine(args: argparse.Namespace) -> int:
    from biovita.parity import describe
    from device.engine import EngineOptions, build_engine

    bundle = config_from_args(args).bundle
    if bundle is None:
        raise ConfigError(
            "no bundle to build an engine for", hint="pass --bundle DIR or set bundle in the config"
        )
    options = EngineOptions(
        precision=args.precision,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        workspace_mb=args.workspace_mb,
    )
    entry = build_engine(bundle, options)
    print(f"engine {entry.file}: TensorRT {entry.tensorrt_version}, sm {entry.compute_capability}")
    if entry.parity:
        print("  parity: " + describe(entry.parity))
    return 0


# -------------------------------------------------------------------------------------- doctor


def cmd_doctor(args: argparse.Namespace) -> int:
    from device.doctor import run_checks

    cfg = config_from_args(args)
    checks = run_checks(cfg)
    if args.json:
        _print_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            print(f"[{'ok' if c.ok else 'FAIL':>4}] {c.name:<7} {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    from device.engine import EngineOptions

    parser = argparse.ArgumentParser(
        prog="biovita-field",
        description="listen, classify and sync detections on a field recorder.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("classify", help="classify a file or folder offline, write result tables")
    p.add_argument("path", type=Path, metavar="FILE_OR_DIR")
    _common(p)
    p.add_argument("--out", type=Path, help="output folder (default: next to the audio)")
    p.add_argument(
        "--formats",
        default="csv,json,raven,audacity",
        help=f"comma-separated, from {','.join(FORMATS)} (default: all)",
    )
    p.add_argument("--threshold", type=float, help="minimum score (default: the bundle's)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.add_argument("--batch", type=int, help="windows per inference call")
    p.add_argument(
        "--workers", type=int, default=1, help="files classified at once, one process each"
    )
    p.add_argument(
        "--resume", action="store_true", help="skip files whose results are already written"
    )
    p.add_argument(
        "--start-time",
        type=_start_time,
        help="UTC start of the recording (ISO 8601; no offset = UTC) when its name does not "
        "say (names YYYYMMDD_HHMMSS or PREFIX_YYYYMMDD_HHMMSS do)",
    )
    p.add_argument(
        "--time-expansion",
        type=int,
        metavar="N",
        help="play the recordings N times slower (bats: 10); times stay real",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "listen",
        help="classify a live stream continuously, log and sync",
        description="SIGTERM, SIGINT and SIGHUP stop cleanly (exit 0; under systemd a HUP is a "
        "restart that re-reads the config); a failure such as a dead MQTT network thread exits "
        "1; a bad config, a damaged or vanished database or a second daemon on the same data "
        "folder exits 2.",
    )
    _common(p)
    p.add_argument("--file", type=Path, help="play a file or folder as the live stream")
    p.add_argument("--fast", action="store_true", help="with --file: as fast as possible")
    p.add_argument("--stdin-rate", type=int, help="read raw PCM from stdin at this rate (Hz)")
    p.add_argument("--input-device", help="sound card by index or name")
    p.add_argument("--channel", type=int, help="input channel to use (default: down-mix)")
    p.add_argument("--device-id", help="device.id")
    p.add_argument("--site", help="device.site")
    p.add_argument("--mqtt-host", help="mqtt.host")
    p.add_argument("--mqtt-port", type=int, help="mqtt.port")
    p.add_argument("--no-mqtt", action="store_true", help="log to SQLite only")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("status", help="what the local log holds and whether the daemon runs")
    _common(p)
    p.add_argument("--recent", type=int, default=10, help="recent detections to show")
    p.add_argument("--species", action="store_true", help="list the bundle's species ids")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("doctor", help="check audio devices, bundle, disk, store and broker")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "engine", help="build a TensorRT engine into the bundle, on this board (Jetson)"
    )
    _common(p)
    precision = p.add_mutually_exclusive_group()
    for name, help_text in [
        ("fp32", "no reduced precision (TF32 off)"),
        ("fp16", "fp16, the log-mel kept in fp32 (default)"),
        ("int8", "int8 calibrated on the bundle's windows, fp16 where faster"),
    ]:
        precision.add_argument(
            f"--{name}", dest="precision", action="store_const", const=name, help=help_text
        )
    p.set_defaults(precision=EngineOptions.precision, func=cmd_engine)
    p.add_argument("--min-batch", type=int, default=EngineOptions.min_batch)
    p.add_argument("--opt-batch", type=int, default=EngineOptions.opt_batch)
    p.add_argument("--max-batch", type=int, default=EngineOptions.max_batch)
    p.add_argument("--workspace-mb", type=int, default=EngineOptions.workspace_mb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by the service user
        return True
    return True


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
