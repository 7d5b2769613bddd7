"""The chain's real processes for the e2e suites: `biovita-field listen` and `biovita-server
ingest` started as a user starts them (console scripts, flags), each in its own process group with
its output in a log file, and read-only views of the two SQLite databases they write.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import ClassVar

import numpy as np

BIN = Path(sys.executable).parent
DETECTION_LINE = re.compile(r"detection id=([0-9a-f-]{36}) ")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1):
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(every)


class Service:
    """One CLI process in its own process group (so a kill reaches its children too).

    Its own session means it outlives pytest unless stopped: use it as a context manager (stopped
    on the way out, however the test ends); whatever a test still leaves running is stopped by
    ``stop_leftovers`` (an autouse fixture of ``tests/e2e/conftest.py``)."""

    started: ClassVar[list[Service]] = []  # every start of this session, for ``stop_leftovers``

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        log_path: Path,
        stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.argv, self.log_path = name, [str(a) for a in argv], log_path
        self.stdin, self.env = stdin, env
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=self.stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})},
            )
        self.starts += 1
        if self not in Service.started:
            Service.started.append(self)
        return self

    def __enter__(self) -> Service:
        return self if self.alive else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def running(cls) -> set[Service]:
        return {service for service in cls.started if service.alive}

    @classmethod
    def stop_leftovers(cls, keep: set[Service] = frozenset()) -> list[str]:
        """Stop every service a test left running, except ``keep`` (those a module or session
        fixture started before the test, still in use); their names, for the test's report."""
        left = [service for service in cls.started if service.alive and service not in keep]
        for service in left:
            service.stop()
        cls.started = [service for service in cls.started if service in keep]
        return [service.name for service in left]

    def __repr__(self) -> str:
        return f"<{self.name}>"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """A power cut, as far as the process can tell: SIGKILL to the whole group."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (the clean stop every daemon here implements), then SIGKILL if it hangs."""
        if self.process is None:
            return None
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: re.search(pattern, self.log_text()) is not None,
            timeout,
            f"{self.name} never logged {pattern!r}; log tail:\n{self.log_text()[-2000:]}",
        )

    def logged_detection_ids(self) -> list[str]:
        """Ids the daemon logged, which it does only after their transaction committed."""
        return DETECTION_LINE.findall(self.log_text())


def ingest_service(
    data_dir: Path,
    host: str,
    port: int,
    log_path: Path,
    worker: str = "ingest-1",
    env: dict[str, str] | None = None,
) -> Service:
    """``biovita-server ingest``; ``env`` carries e.g. the MQTT login and TLS CA, as in systemd."""
    return Service(
        f"ingest[{worker}]",
        [
            BIN / "biovita-server", "ingest", "--data", data_dir,
            "--mqtt-host", host, "--mqtt-port", str(port),
            "--client-id", worker, "--flush-ms", "20",
        ],
        log_path,
        env=env,
    )  # fmt: skip


def listen_service(
    bundle: Path,
    data_dir: Path,
    device_id: str,
    site_id: str,
    host: str,
    port: int,
    source: Sequence[str],
    sets: dict[str, object] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Service:
    """``biovita-field listen``; ``source`` is e.g. ``["--file", path, "--fast"]``.

    Retries are tightened (acks after 3 s, reconnect within 2 s) so the suites stay short; the
    logic that runs is the production one.
    """
    settings = {
        "device.data_dir": str(data_dir),
        "mqtt.ack_timeout_s": 3.0,
        "mqtt.reconnect_min_s": 0.2,
        "mqtt.reconnect_max_s": 2.0,
        "mqtt.status_interval_s": 5.0,
        **(sets or {}),
    }
    argv: list[str | Path] = [
        BIN / "biovita-field", "listen", "--bundle", bundle, "--db", data_dir / "device.db",
        "--device-id", device_id, "--site", site_id,
        "--mqtt-host", host, "--mqtt-port", str(port), *source,
    ]  # fmt: skip
    for key, value in settings.items():
        argv += ["--set", f"{key}={_toml(value)}"]
    return Service(f"listen[{device_id}]", argv, data_dir / "listen.log", stdin=stdin)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


# ------------------------------------------------------------------------------ the databases


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def _query(path: Path, sql: str, params: Sequence = ()) -> list:
    """Rows of a read-only query; none while the owner has not created the file or schema."""
    if not path.exists():
        return []
    with closing(_read_only(path)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return []
            raise


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database no process is writing ("ok" when sound)."""
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


class DeviceDb:
    """What a device has committed, in commit order, and what the server acknowledged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str) -> list:
        return _query(self.path, sql)

    def ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT id FROM detections ORDER BY rowid")]

    def delivered_ids(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT id FROM detections WHERE delivered_utc NOT NULL")}

    def outbox_detections(self) -> int:
        rows = self._rows("SELECT COUNT(*) FROM outbox WHERE kind = 'detection'")
        return rows[0][0] if rows else 0

    def clip_ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT clip_id FROM detections WHERE clip_id NOT NULL")]


class ServerDb:
    """The server's SQLite store, read the way an auditor would."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "server.db"

    def _rows(self, sql: str, params: Sequence = ()) -> list:
        return _query(self.path, sql, params)

    def ids(self, device_id: str) -> list[str]:
        """Detection ids of one device in the order the server first stored them."""
        return [
            r[0]
            for r in self._rows(
                "SELECT id FROM detections WHERE device_id = ? ORDER BY rowid", (device_id,)
            )
        ]

    def rows(self, device_id: str) -> list[tuple[int, int, int, str, float]]:
        """(start_sample, end_sample, sample_rate_hz, species_id, score) of a device's rows."""
        return self._rows(
            "SELECT start_sample, end_sample, sample_rate_hz, species_id, score FROM detections"
            " WHERE device_id = ? ORDER BY start_sample",
            (device_id,),
        )

    def species(self, device_id: str) -> list[str]:
        return [
            r[0]
            for r in self._rows(
                "SELECT species_id FROM detections WHERE device_id = ? ORDER BY rowid", (device_id,)
            )
        ]

    def count(self) -> int:
        rows = self._rows("SELECT COUNT(*) FROM detections")
        return rows[0][0] if rows else 0

    def duplicates(self) -> int:
        """Rows that repeat another row's id, or its event (device, start time, species) under a
        new id: the second kind is what a device re-creating a row on re-send would cause."""
        by_id = self._rows("SELECT COUNT(*) - COUNT(DISTINCT id) FROM detections")
        by_event = self._rows(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM detections"
            " GROUP BY device_id, start_utc, species_id)"
        )
        return (by_id[0][0] if by_id else 0) + (by_event[0][0] if by_event else 0)

    def clip_ids(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT clip_id FROM clips")}

    def dead_letters(self) -> list[tuple[str, str]]:
        return self._rows("SELECT reason, topic FROM dead_letters ORDER BY id")

    def dead_letter_counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT reason, SUM(count) FROM dead_letters GROUP BY reason"))


# ------------------------------------------------------------------------------ a live stream


class PcmFeeder:
    """Plays audio into a `listen --stdin-rate` daemon's stdin as a sound card would deliver it,
    ``speed`` times faster than real time, then keeps the line open with silence (a quiet night)
    until ``close()``. A daemon killed mid-write simply ends the feed."""

    BLOCK_S = 0.25

    def __init__(self, audio, rate: int, speed: float = 10.0) -> None:
        self.pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.block = int(rate * self.BLOCK_S) * 2
        self.period = self.BLOCK_S / speed
        self.silence = bytes(self.block)
        self.played = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._pipe = None

    def attach(self, service: Service) -> PcmFeeder:
        self._pipe = service.process.stdin
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self._pipe,), daemon=True)
        self._thread.start()
        return self

    def _run(self, pipe) -> None:
        offset = 0
        try:
            while not self._stop.is_set():
                if offset < len(self.pcm):
                    chunk = self.pcm[offset : offset + self.block]
                    offset += len(chunk)
                else:
                    self.played.set()
                    chunk = self.silence
                pipe.write(chunk)
                pipe.flush()
                self._stop.wait(self.period)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the daemon went away (killed, or stopped): the feed ends with it
        finally:
            self.played.set()

    def close(self) -> None:
        """Stop playing and close the line: the daemon sees the end of its stream."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()


# ------------------------------------------------------------------------- the review app


def serve_service(data_dir: Path, port: int, log_path: Path, species: Path | None = None):
    argv: list[str | Path] = [
        BIN / "biovita-server", "serve", "--data", data_dir,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    if species is not None:
        argv += ["--species", species]
    return Service("serve", argv, log_path)


def add_reviewer(data_dir: Path, username: str, password: str, role: str = "reviewer") -> None:
    done = subprocess.run(
        [str(BIN / "biovita-server"), "users", "add", username, "--role", role,
         "--password-stdin", "--data", str(data_dir)],
        input=password + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class ReviewClient:
    """A reviewer's browser session against the review app, over real HTTP."""

    def __init__(self, base_url: str) -> None:
        import httpx

        self.base = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)

    def csrf(self, page: str = "/login") -> str:
        match = CSRF_FIELD.search(self.http.get(page).text)
        assert match, f"no CSRF token in {page}"
        return match.group(1)

    def login(self, username: str, password: str) -> None:
        token = self.csrf("/login")
        answer = self.http.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            headers={"Origin": self.base},
        )
        assert answer.status_code == 303, answer.text[:500]

    def detections(self, **filters: str) -> list[dict]:
        rows, after = [], None
        while True:
            params = {**filters, "limit": "500", **({"after": after} if after else {})}
            page = self.http.get("/api/detections", params=params)
            assert page.status_code == 200, page.text[:500]
            doc = page.json()
            rows += doc["detections"]
            after = doc["next"]
            if not after:
                return rows

    def review(self, detection_id: str, verdict: str, **fields) -> int:
        token = self.csrf("/detections")
        answer = self.http.post(
            f"/api/detections/{detection_id}/reviews",
            json={"verdict": verdict, **fields},
            headers={"X-CSRF-Token": token, "Origin": self.base},
        )
        return answer.status_code

    def close(self) -> None:
        self.http.close()
