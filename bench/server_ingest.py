"""Sustained ingest through Mosquitto into SQLite and PostgreSQL, acks included.

The real pieces, as deployed: a Mosquitto broker, ``biovita-server ingest`` as its own process
(the CLI, default settings), and D devices publishing QoS 1 detection batches and waiting for the
application acks. The clock runs from the first publish to the last ack, so the rate counts
validation, the durable commit (SQLite WAL + synchronous=FULL; PostgreSQL with fsync on) and the
acks, not just the broker. Payloads are encoded before the clock starts.

Run from the repository root (it starts its broker and database with the test helpers):

    .venv/bin/python -m bench.server_ingest [--detections 100000] [--devices 4]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from biovita.detection import encode
from server_sync.store import open_store
from tests.server.devices import DeviceLink
from tests.server.factories import batch, detection
from tests.support.mosquitto import MosquittoBroker
from tests.support.postgres import PostgresServer

SERVER = Path(sys.executable).parent / "biovita-server"


def start_ingest(
    db_url: str, broker: MosquittoBroker, workdir: Path, worker: int
) -> subprocess.Popen:
    # A few bench "devices" stand for a fleet's load: lift the per-device message rate bound
    # ([limits] messages_per_device_minute), which would otherwise pace them to a field device's.
    config = workdir / "bench-server.toml"
    config.write_text("[limits]\nmessages_per_device_minute = 100000000\n")
    process = subprocess.Popen(
        [str(SERVER), "ingest", "--config", str(config), "--db", db_url, "--data", str(workdir)]
        + ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
        + ["--client-id", f"bench-ingest-{os.getpid()}-{worker}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    connected = threading.Event()

    def watch() -> None:
        for line in process.stderr:
            if "subscribed" in line:
                connected.set()
            if "ERROR" in line or "Traceback" in line:
                sys.stderr.write(line)

    threading.Thread(target=watch, daemon=True).start()
    if not connected.wait(30):
        process.kill()
        raise RuntimeError("biovita-server ingest did not connect")
    return process


def run_once(
    db_url: str, broker, workdir: Path, devices: int, per_batch: int, total: int, workers: int
) -> dict:
    rng = random.Random(0)
    batches_per_device = max(1, total // (devices * per_batch))
    links, payloads, expected = [], [], 0
    for k in range(devices):
        link = DeviceLink(broker.host, broker.port, "site-bench", f"b{k}-{per_batch}-{workers}")
        plan = []
        for seq in range(batches_per_device):
            rows = [
                detection(link.device_id, link.site_id, n=seq * per_batch + i, rng=rng)
                for i in range(per_batch)
            ]
            plan.append(encode(batch(rows, seq)))
        expected += batches_per_device * per_batch
        links.append(link)
        payloads.append(plan)
    open_store(db_url).close()  # migrate once, before the workers race to
    ingests = [start_ingest(db_url, broker, workdir, n) for n in range(workers)]
    try:
        wanted = batches_per_device * per_batch
        cpu_at_start = sum(_cpu_seconds(p.pid) for p in ingests)  # imports, connecting
        start = time.perf_counter()
        publishers = [
            threading.Thread(
                target=lambda lk=lk, pl=pl: [lk.publish_raw(_topic(lk), p) for p in pl]
            )
            for lk, pl in zip(links, payloads, strict=True)
        ]
        for t in publishers:
            t.start()
        for link in links:
            link.wait_for(lambda lk: lk.acked_count() >= wanted, timeout=300)
        elapsed = time.perf_counter() - start
        cpu_s = sum(_cpu_seconds(p.pid) for p in ingests) - cpu_at_start
    finally:
        for ingest in ingests:
            ingest.terminate()
            ingest.wait(30)
        for link in links:
            link.close()
    store = open_store(db_url)
    stored = store.stats()["detections"]
    store.close()
    return {
        "detections": expected,
        "stored": stored,
        "messages": devices * batches_per_device,
        "seconds": elapsed,
        "rate": expected / elapsed,
        "msg_rate": devices * batches_per_device / elapsed,
        "cpu_s": cpu_s,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc), for a load-independent cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _topic(link: DeviceLink) -> str:
    from biovita.detection import detections_topic

    return detections_topic(link.site_id, link.device_id)


def measure(backend: str, tmp: Path, broker, args, per_batch: int, workers: int) -> dict:
    work = tmp / f"{backend}-{per_batch}-{workers}"
    if backend == "sqlite":
        url = f"sqlite://{work / 'server.db'}"
        return run_once(url, broker, work, args.devices, per_batch, args.detections, workers)
    with PostgresServer(durable=True) as pg:
        url = pg.create_database("bench")
        return run_once(url, broker, work, args.devices, per_batch, args.detections, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--per-batch", type=int, nargs="+", default=[100, 10])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="ingest processes ($share group)"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        for backend in args.backends:
            for per_batch in args.per_batch:
                for workers in args.workers:
                    # a fresh broker per run: the last run's worker sessions (and their share
                    # of the group) must not linger in this one
                    label = f"{backend}-{per_batch}-{workers}"
                    with MosquittoBroker(tmp / f"mosquitto-{label}") as broker:
                        r = measure(backend, tmp, broker, args, per_batch, workers)
                        results.append((backend, per_batch, workers, r))
                        print(
                            f"  {backend} x{per_batch} workers={workers}: "
                            f"{r['rate']:,.0f} detections/s",
                            flush=True,
                        )
    print()
    print(
        "| store | ingest workers | detections/message | devices | detections | stored "
        "| seconds | detections/s | messages/s | ingest CPU s | detections per ingest CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, per_batch, workers, r in results:
        print(
            f"| {backend} | {workers} | {per_batch} | {args.devices} | {r['detections']:,} "
            f"| {r['stored']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | {r['msg_rate']:,.0f} "
            f"| {r['cpu_s']:.2f} | {r['detections'] / r['cpu_s']:,.0f} |"
        )
    print(f"\nload average after the run (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
