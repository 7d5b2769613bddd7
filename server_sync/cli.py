"""The `biovita-server` command: ingest detections from MQTT, store them, serve the review app.

Settings come from ``--config server.toml``, then ``BIOVITA_*`` environment variables, then flags
(see ``server_sync/config.py``). One composition root per command: each builds only what it uses.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from biovita.cli import run
from biovita.detection import utc_now
from biovita.errors import ConfigError
from server_sync.config import ServerSettings, load_settings

log = logging.getLogger("biovita-server")


def _settings(args: argparse.Namespace) -> ServerSettings:
    return load_settings(
        args.config,
        {
            "data_dir": args.data,
            "db": args.db,
            "clips_dir": getattr(args, "clips", None),
            "mqtt.host": getattr(args, "mqtt_host", None),
            "mqtt.port": getattr(args, "mqtt_port", None),
            "mqtt.client_id": getattr(args, "client_id", None),
            "ingest.flush_ms": getattr(args, "flush_ms", None),
            "web.host": getattr(args, "host", None),
            "web.port": getattr(args, "port", None),
            "web.species": getattr(args, "species", None),
            "web.secure_cookies": getattr(args, "secure_cookies", None) or None,
        },
    )


def _store(settings: ServerSettings, migrate: bool = True):
    from server_sync.store import open_store

    return open_store(settings.db_url, migrate=migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _store(settings)
    store.optimize()
    print(f"{settings.db_url}: schema version {store.schema_version()}, statistics refreshed")
    store.close()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from server_sync.clips import ClipStore
    from server_sync.ingest import IngestWorker

    settings = _settings(args)
    store = _store(settings)
    worker = IngestWorker(
        store, ClipStore(settings.clips_root, settings.limits), settings.mqtt, settings.ingest
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("ingesting into %s, clips in %s", settings.db_url, settings.clips_root)
    worker.start()
    try:
        worker.run(stop)
    finally:
        log.info("stopped: %s", worker.summary())
        store.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server_sync.auth import load_or_create_secret
    from server_sync.clips import ClipStore
    from server_sync.species import SpeciesCatalogue
    from server_sync.web.app import create_app, uvicorn_options

    settings = _settings(args)
    store = _store(settings)
    app = create_app(
        store,
        ClipStore(settings.clips_root, settings.limits),
        SpeciesCatalogue.load(settings.web.species),
        load_or_create_secret(settings.secret_path),
        settings.web,
        cache_dir=settings.data_dir / "cache",
    )
    log.info("review app on http://%s:%s", settings.web.host, settings.web.port)
    try:
        uvicorn.run(app, log_level="info", **uvicorn_options(settings.web))
    finally:
        store.close()
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from server_sync.auth import hash_password
    from server_sync.records import Role, User

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if password is None:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ", hint="type the same password twice")
    if not args.username.strip() or len(args.username) > 64:
        raise ConfigError("user names are 1-64 characters", hint="choose another name")
    store = _store(_settings(args))
    try:
        store.put_user(User(args.username, hash_password(password), Role(args.role), utc_now()))
    finally:
        store.close()
    print(f"user {args.username} ({args.role}) saved")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    store = _store(_settings(args))
    try:
        users = store.users()
    finally:
        store.close()
    for user in users:
        print(f"{user.username}\t{user.role.value}\tsince {user.created_utc:%Y-%m-%d}")
    if not users:
        print("no users yet: add one with biovita-server users add NAME --role admin")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from server_sync.records import Role

    store = _store(_settings(args))
    try:
        admins = [u.username for u in store.users() if u.role == Role.ADMIN]
        if admins == [args.username]:
            raise ConfigError(
                f"{args.username} is the only admin; without one nobody can reach the admin pages",
                hint="add another admin first (biovita-server users add NAME --role admin)",
            )
        removed = store.delete_user(args.username)
    finally:
        store.close()
    if not removed:
        raise ConfigError(
            f"there is no user {args.username!r}", hint="biovita-server users list shows them"
        )
    print(f"user {args.username} removed (their reviews stay; an open session ends now)")
    return 0


def cmd_export_reviewed(args: argparse.Namespace) -> int:
    from server_sync.clips import ClipStore
    from server_sync.export import export_reviewed

    settings = _settings(args)
    store = _store(settings)
    try:
        report = export_reviewed(
            store, ClipStore(settings.clips_root, settings.limits), args.out, args.split
        )
    finally:
        store.close()
    print(
        f"{report.path}: {report.written} reviewed clips"
        f" ({report.without_clip} reviewed without a clip, {report.missing_file} clip files missing)"
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    store = _store(_settings(args), migrate=False)
    try:
        stats = store.stats()
    finally:
        store.close()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        width = max(map(len, stats))
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_thresholds(args: argparse.Namespace) -> int:
    from server_sync.thresholds import suggest_threshold, thresholds_toml

    store = _store(_settings(args), migrate=False)
    try:
        suggestions = [
            suggest_threshold(
                s.species_id, store.reviewed_scores(s.species_id), args.precision, args.min_reviews
            )
            for s in store.species_summaries()
            if s.reviewed
        ]
    finally:
        store.close()
    sys.stdout.write(thresholds_toml(suggestions))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biovita-server",
        description="ingest detections from MQTT, store them, serve the review app.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="server.toml (then env, then these flags)")
    common.add_argument("--data", type=Path, help="data folder (default server-data)")
    common.add_argument(
        "--db", help="sqlite:///path/server.db or postgresql://user@host/db (default: in --data)"
    )
    clips = argparse.ArgumentParser(add_help=False)
    clips.add_argument("--clips", type=Path, help="clip folder (default DATA/clips)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser(
        "migrate", parents=[common], help="create or upgrade the schema; refresh statistics"
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("ingest", parents=[common, clips], help="MQTT -> store, with acks")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--client-id", help="unique per worker; workers share the load")
    p.add_argument("--flush-ms", type=float, help="collect messages this long per commit")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("serve", parents=[common, clips], help="the review web app")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--species", type=Path, help="species.npz bank or taxa.csv for relabelling")
    p.add_argument("--secure-cookies", action="store_true", help="behind HTTPS")
    p.set_defaults(func=cmd_serve)

    users = sub.add_parser("users", help="manage review users").add_subparsers(metavar="ACTION")
    p = users.add_parser("add", parents=[common], help="add a user or reset its password")
    p.add_argument("username")
    p.add_argument("--role", choices=["reviewer", "admin"], default="reviewer")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("list", parents=[common], help="user names and roles")
    p.set_defaults(func=cmd_users_list)
    p = users.add_parser("remove", parents=[common], help="remove a user (reviews stay)")
    p.add_argument("username")
    p.set_defaults(func=cmd_users_remove)

    p = sub.add_parser(
        "export-reviewed", parents=[common, clips], help="reviewed clips -> training manifest"
    )
    p.add_argument("--out", type=Path, required=True, help="manifest.csv to write")
    p.add_argument("--split", default="train")
    p.set_defaults(func=cmd_export_reviewed)

    p = sub.add_parser("stats", parents=[common], help="counts, devices, dead letters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "thresholds", parents=[common], help="suggested per-species thresholds (device TOML)"
    )
    p.add_argument("--precision", type=float, default=0.9, help="target precision")
    p.add_argument("--min-reviews", type=int, default=5)
    p.set_defaults(func=cmd_thresholds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
