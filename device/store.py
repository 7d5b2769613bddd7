"""The device's SQLite log: detections, the outbox that feeds MQTT, and the clips on disk.

Reliability rules (DESIGN.md section 5): WAL with ``synchronous=FULL`` so a committed row survives
a power cut; a detection and its outbox row are committed in one transaction BEFORE anything is
published; a row leaves the outbox only when the server's ack names it. ``PRAGMA
integrity_check`` runs at every start and a damaged file is refused (never overwritten). The
schema is versioned with ``PRAGMA user_version`` and upgraded by the migrations below, in order.
All access goes through one lock: the capture loop and the MQTT thread share the connection.
Every write first checks that the path still names the file opened (device and inode): a
database deleted or replaced under a running daemon is a ``StoreError``, and the rows the
orphaned file holds are copied beside the path first, so nothing committed is lost.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from biovita.detection import Detection
from biovita.errors import BiovitaError
from device.config import StoreSection, default_of

BUSY_TIMEOUT_MS = default_of(StoreSection, "busy_timeout_ms")


class StoreError(BiovitaError):
    """The device database is damaged, locked or of a newer schema."""


def _v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["detections"].create(
        {
            "id": str,
            "start_utc": str,
            "end_utc": str,
            "species_id": str,
            "score": float,
            "similarity": float,
            "clip_id": str,
            "payload": str,
            "created_utc": str,
            "delivered_utc": str,
        },
        pk="id",
    )
    db["detections"].create_index(["start_utc"])
    db["clips"].create(
        {
            "clip_id": str,
            "detection_id": str,
            "path": str,
            "bytes": int,
            "created_utc": str,
            "synced_utc": str,
            "deleted_utc": str,
        },
        pk="clip_id",
    )
    db.execute(
        "CREATE TABLE outbox ("
        " n INTEGER PRIMARY KEY AUTOINCREMENT,"
        " kind TEXT NOT NULL CHECK (kind IN ('detection', 'clip')),"
        " ref TEXT NOT NULL,"
        " batch_seq INTEGER,"
        " sent_utc TEXT,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " UNIQUE (kind, ref))"
    )


def _v2(db: sqlite_utils.Database) -> None:
    """The audio file a detection came from (``classify --db``); NULL for live audio."""
    db.execute("ALTER TABLE detections ADD COLUMN source_file TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    detection_id: str
    path: Path
    bytes: int


@dataclass(frozen=True)
class OutboxItem:
    n: int
    kind: str
    ref: str
    attempts: int


class Store:
    def __init__(self, path: str | Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._check_integrity(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # the outbox must survive a power cut
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"cannot open the device database {self.path}: {err}",
                hint="if it is damaged, move it aside (keep it for recovery) and start again",
            ) from err
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._identity = _identity(self.path)
        self._lost: str | None = None  # set once the file was deleted or replaced
        self._migrate()

    def check_file(self) -> None:
        """Raise ``StoreError`` if the path no longer names the file this store has open."""
        if self._lost is None:
            now = _identity(self.path)
            if now == self._identity:
                return
            what = "deleted" if now is None else "replaced by another file"
            self._lost = (
                f"the device database {self.path} was {what} while the daemon ran; nothing more "
                f"is written to it, and the rows it held are saved in {self._rescue()}"
            )
        raise StoreError(
            self._lost,
            hint="restart the daemon (it opens whatever file is at the path now); merge the "
            "saved copy back with sqlite3 if its rows are wanted",
        )

    def _rescue(self) -> Path:
        """Copy the orphaned file this store still has open to a new name beside the path."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.orphaned-{stamp}")
        copy = sqlite3.connect(target)
        try:
            self.conn.backup(copy)
        finally:
            copy.close()
        return target

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            raise StoreError(
                f"the device database {self.path} failed its integrity check: {'; '.join(rows[:5])}",
                hint="move the file aside (keep it: sqlite3 .recover can save rows) and restart",
            )

    def _migrate(self) -> None:
        with self._lock:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the device database {self.path} has schema version {version}; this "
                    f"biovita-field knows up to {SCHEMA_VERSION}",
                    hint="install the newer biovita-field that wrote it",
                )
            for target in range(version, SCHEMA_VERSION):
                with self.conn:
                    MIGRATIONS[target](self.db)
                    self.conn.execute(f"PRAGMA user_version = {target + 1}")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction under the lock; a full disk or an I/O error becomes a ``StoreError``.

        SQLite rolls the transaction back, so the file stays consistent and every row committed
        before is still there.
        """
        with self._lock:
            self.check_file()
            try:
                with self.conn:
                    yield
            except sqlite3.OperationalError as err:
                raise StoreError(
                    f"cannot write to the device database {self.path}: {err}",
                    hint="free space on the card (or fix its permissions) and start again; "
                    "every detection committed before is kept",
                ) from err

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # ------------------------------------------------------------------------------ writing

    def add(
        self,
        detections: list[Detection],
        clips: list[ClipRecord] = (),
        outbox: bool = True,
        source_file: str | None = None,
    ) -> None:
        """Commit detections, their clips and their outbox rows in ONE transaction.

        A detection whose id is already stored is left as it is and not queued again (a file
        classified twice gives the same ids: its detections are sent once).
        """
        now = _now()
        with self._write():
            for d in detections:
                inserted = self.conn.execute(
                    "INSERT OR IGNORE INTO detections (id, start_utc, end_utc, species_id, score,"
                    " similarity, clip_id, payload, created_utc, source_file)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        d.id,
                        d.start_utc.isoformat(),
                        d.end_utc.isoformat(),
                        d.species_id,
                        d.score,
                        d.similarity,
                        d.clip_id,
                        d.model_dump_json(),
                        now,
                        source_file,
                    ),
                ).rowcount
                if outbox and inserted:
                    self._enqueue("detection", d.id)
            for c in clips:
                self.conn.execute(
                    "INSERT OR IGNORE INTO clips (clip_id, detection_id, path, bytes, created_utc)"
                    " VALUES (?,?,?,?,?)",
                    (c.clip_id, c.detection_id, str(c.path), c.bytes, now),
                )
                if outbox:
                    self._enqueue("clip", c.clip_id)

    def _enqueue(self, kind: str, ref: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO outbox (kind, ref) VALUES (?, ?)", (kind, ref))

    def next_seq(self) -> int:
        """The next batch sequence number, persisted so it keeps increasing across restarts."""
        with self._write():
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            seq = int(row[0]) if row else 0
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (str(seq + 1),)
            )
        return seq

    # -------------------------------------------------------------------------------- outbox

    def due(self, kind: str, limit: int) -> list[OutboxItem]:
        """Outbox rows not in flight (never sent, or released for a re-send), in commit order.

        When a row goes again is the sender's decision, on its monotonic clock (``release``): a
        wall-clock step must neither delay a re-send nor let newer rows overtake older ones.
        """
        with self._lock:
            rows = self.conn.execute(
                "SELECT n, kind, ref, attempts FROM outbox WHERE kind = ?"
                " AND sent_utc IS NULL ORDER BY n LIMIT ?",
                (kind, limit),
            ).fetchall()
        return [OutboxItem(*r) for r in rows]

    def detections(self, ids: list[str]) -> list[Detection]:
        if not ids:
            return []
        with self._lock:
            marks = ",".join("?" * len(ids))
            rows = dict(
                self.conn.execute(
                    f"SELECT id, payload FROM detections WHERE id IN ({marks})", ids
                ).fetchall()
            )
        return [Detection.model_validate_json(rows[i]) for i in ids if i in rows]

    def clip(self, clip_id: str) -> dict | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM clips WHERE clip_id = ?", [clip_id]))
        return rows[0] if rows else None

    def reset_sent(self) -> None:
        """Make every unacked outbox row due now (after a restart or a reconnect)."""
        with self._write():
            self.conn.execute("UPDATE outbox SET sent_utc = NULL WHERE sent_utc IS NOT NULL")

    def release(self, items: list[OutboxItem]) -> None:
        """Sent, but no ack came in time: these rows are due again (acked ones are gone already)."""
        with self._write():
            self.conn.executemany(
                "UPDATE outbox SET sent_utc = NULL WHERE n = ?", [(item.n,) for item in items]
            )

    def mark_sent(self, items: list[OutboxItem], seq: int | None = None) -> None:
        now = _now()
        with self._write():
            self.conn.executemany(
                "UPDATE outbox SET sent_utc = ?, batch_seq = ?, attempts = attempts + 1 WHERE n = ?",
                [(now, seq, item.n) for item in items],
            )

    def mark_delivered(self, detection_ids: list[str], clip_ids: list[str] = ()) -> int:
        """The server stored these: drop them from the outbox. Returns rows newly delivered."""
        now, done = _now(), 0
        with self._write():
            for ref in detection_ids:
                cur = self.conn.execute(
                    "DELETE FROM outbox WHERE kind = 'detection' AND ref = ?", (ref,)
                )
                done += cur.rowcount
                self.conn.execute(
                    "UPDATE detections SET delivered_utc = COALESCE(delivered_utc, ?) WHERE id = ?",
                    (now, ref),
                )
            for ref in clip_ids:
                done += self.conn.execute(
                    "DELETE FROM outbox WHERE kind = 'clip' AND ref = ?", (ref,)
                ).rowcount
                self.conn.execute(
                    "UPDATE clips SET synced_utc = COALESCE(synced_utc, ?) WHERE clip_id = ?",
                    (now, ref),
                )
        return done

    def drop_from_outbox(self, kind: str, ref: str) -> None:
        """Give up on an item that can never be sent (e.g. its clip file vanished)."""
        with self._write():
            self.conn.execute("DELETE FROM outbox WHERE kind = ? AND ref = ?", (kind, ref))

    # --------------------------------------------------------------------------------- clips

    def deletable_clips(self) -> list[dict]:
        """Clips on disk the server already has, oldest first: the first to go under quota."""
        with self._lock:
            return list(
                self.db.query(
                    "SELECT clip_id, path, bytes FROM clips WHERE synced_utc IS NOT NULL"
                    " AND deleted_utc IS NULL ORDER BY created_utc"
                )
            )

    def mark_clip_deleted(self, clip_id: str) -> None:
        with self._write():
            self.conn.execute(
                "UPDATE clips SET deleted_utc = ? WHERE clip_id = ?", (_now(), clip_id)
            )

    def clips_bytes(self) -> int:
        with self._lock:
            row = self.conn.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM clips WHERE deleted_utc IS NULL"
            ).fetchone()
        return int(row[0])

    # -------------------------------------------------------------------------------- status

    def set_meta(self, key: str, value: str) -> None:
        with self._write():
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def queue_depth(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            q = self.conn.execute
            return {
                "detections": q("SELECT COUNT(*) FROM detections").fetchone()[0],
                "delivered": q(
                    "SELECT COUNT(*) FROM detections WHERE delivered_utc IS NOT NULL"
                ).fetchone()[0],
                "outbox_detections": q(
                    "SELECT COUNT(*) FROM outbox WHERE kind = 'detection'"
                ).fetchone()[0],
                "outbox_clips": q("SELECT COUNT(*) FROM outbox WHERE kind = 'clip'").fetchone()[0],
                "clips_on_disk": q(
                    "SELECT COUNT(*) FROM clips WHERE deleted_utc IS NULL"
                ).fetchone()[0],
            }

    def last_detection_utc(self) -> datetime | None:
        with self._lock:
            row = self.conn.execute("SELECT MAX(start_utc) FROM detections").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def recent(self, limit: int = 10) -> list[dict]:
        with self._lock:
            return list(
                self.db.query(
                    "SELECT id, start_utc, species_id, score, similarity, clip_id, delivered_utc"
                    " FROM detections ORDER BY start_utc DESC LIMIT ?",
                    [limit],
                )
            )
