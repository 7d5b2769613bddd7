"""Every query of the store, written once for SQLite and PostgreSQL.

The SQL here is the common subset of both (``ON CONFLICT``, ``RETURNING``, row-value comparisons,
``?`` placeholders that the PostgreSQL session rewrites). What differs lives in a ``Dialect``:
column types, how a time is bound and read back, and the day-of-a-time expression.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter

from biovita.detection import Alternative, Detection, DeviceStatus, utc_now
from server_sync.config import LimitSettings
from server_sync.records import (
    Clip,
    Cursor,
    DeadLetter,
    DetectionFilter,
    DeviceRow,
    ExportRow,
    IngestUnit,
    Page,
    Review,
    ReviewedScore,
    ReviewError,
    ReviewFilter,
    SpeciesSummary,
    StoredDetection,
    User,
    Verdict,
    capped_to_clock,
)
from server_sync.store.base import StoreError
from server_sync.store.bounds import BoundedQueries
from server_sync.store.migrations import LATEST_VERSION, MIGRATIONS, statements
from server_sync.store.sessions import SessionQueries, new_generation

_ALTERNATIVES = TypeAdapter(list[Alternative])

DETECTION_COLUMNS = (
    "id",
    "device_id",
    "site_id",
    "start_utc",
    "end_utc",
    "start_sample",
    "end_sample",
    "sample_rate_hz",
    "clock_synced",
    "species_id",
    "scientific_name",
    "common_name",
    "score",
    "similarity",
    "rank",
    "windows",
    "alternatives",
    "bundle_id",
    "backend",
    "clip_id",
    "schema_version",
    "received_utc",
)
_TIME_COLUMNS = {"start_utc", "end_utc", "received_utc"}
REVIEW_COLUMNS = ("id", "detection_id", "reviewer", "verdict", "species_id", "note", "created_utc")
DEVICE_COLUMNS = (
    "device_id",
    "site_id",
    "last_seen_utc",
    "online",
    "status_sent_utc",
    "uptime_s",
    "queue_depth",
    "disk_free_bytes",
    "clips_bytes",
    "bundle_id",
    "backend",
    "software_version",
    "last_detection_utc",
    "clock_ahead_s",
)
CLIP_COLUMNS = ("clip_id", "device_id", "site_id", "path", "size_bytes", "sha256", "received_utc")
_REVIEWED_STATES = {
    ReviewFilter.REVIEWED,
    ReviewFilter.CONFIRMED,
    ReviewFilter.REJECTED,
    ReviewFilter.RELABELLED,
}


class Dialect(Protocol):
    name: str
    types: dict[str, str]

    def time_param(self, value: datetime | None) -> Any: ...

    def time_value(self, value: Any) -> datetime | None: ...

    def day(self, column: str) -> str:
        """SQL for the UTC day (YYYY-MM-DD) of a time column."""
        ...

    @property
    def table_exists(self) -> str:
        """SQL with one ``?`` (a table name) returning a row if the table exists."""
        ...


class Session(Protocol):
    """One open transaction."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


@dataclass(frozen=True)
class _Query:
    sql: str
    params: list[Any]


class SqlStore(SessionQueries, BoundedQueries, ABC):
    """The store's behaviour; subclasses provide connections and a dialect."""

    dialect: Dialect
    url: str

    @abstractmethod
    def transaction(self, write: bool = False) -> AbstractContextManager[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def close(self) -> None: ...

    def _migration_lock(self, session: Session) -> None:  # noqa: B027 (optional hook)
        """Serialise concurrent migrators (SQLite's write lock already does)."""

    # ------------------------------------------------------------------------------ schema

    def migrate(self) -> int:
        """Apply missing migrations; returns the schema version now in the database."""
        with self.transaction(write=True) as s:
            self._migration_lock(s)
            s.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_utc TEXT NOT NULL)"
            )
            done = {row[0] for row in s.rows("SELECT version FROM schema_migrations")}
            self._refuse_newer(max(done, default=0))
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in statements(migration.ddl, self.dialect.types):
                    s.run(statement)
                s.run(
                    "INSERT INTO schema_migrations (version, name, applied_utc) VALUES (?, ?, ?)",
                    (migration.version, migration.name, utc_now().isoformat()),
                )
        return self.schema_version()

    def optimize(self) -> None:
        """Refresh the query planner's statistics (after a bulk load, or now and then)."""
        with self.transaction(write=True) as s:
            s.run("ANALYZE")

    def schema_version(self) -> int:
        with self.transaction() as s:
            if not s.rows(self.dialect.table_exists, ("schema_migrations",)):
                return 0  # a database never migrated
            version = s.rows("SELECT MAX(version) FROM schema_migrations")[0][0] or 0
        return int(version)

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreError(
                f"database {self.url} has schema version {version}; this server knows up to "
                f"{LATEST_VERSION}",
                hint="upgrade biovita-server; never run an older server on a newer database",
            )

    def check_schema(self) -> None:
        version = self.schema_version()
        self._refuse_newer(version)
        if version < LATEST_VERSION:
            raise StoreError(
                f"database {self.url} is at schema version {version}, not {LATEST_VERSION}",
                hint="run: biovita-server migrate --db URL",
            )

    # ------------------------------------------------------------------------------ ingest

    def ingest(self, unit: IngestUnit, limits: LimitSettings | None = None) -> None:
        """Commit one flush of ingest: rows, clips, device state and dead letters together."""
        limits = limits or LimitSettings()
        with self.transaction(write=True) as s:
            if unit.detections:
                self._insert_detections(s, unit.detections, utc_now())
            if unit.clips:
                s.many(
                    f"INSERT INTO clips ({', '.join(CLIP_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(CLIP_COLUMNS))}) ON CONFLICT (clip_id) DO NOTHING",
                    [self._clip_params(c) for c in unit.clips],
                )
            for site_id, device_id, when in unit.seen:
                self._device_seen(s, site_id, device_id, when)
            for status, when in unit.statuses:
                self._device_status(s, status, when)
            for letter in unit.dead_letters:
                self._dead_letter(s, letter, limits.dead_letters_per_device_reason)

    def insert_detections(self, detections: Sequence[Detection], received: datetime) -> None:
        """Bulk-load detections (upsert by id): for imports and benchmarks."""
        with self.transaction(write=True) as s:
            self._insert_detections(s, detections, received)

    def _insert_detections(
        self, s: Session, detections: Sequence[Detection], received: datetime
    ) -> None:
        s.many(
            f"INSERT INTO detections ({', '.join(DETECTION_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(DETECTION_COLUMNS))}) ON CONFLICT (id) DO NOTHING",
            [self._detection_params(d, received) for d in detections],
        )

    def _detection_params(self, d: Detection, received: datetime) -> tuple:
        t = self.dialect.time_param
        alternatives = _ALTERNATIVES.dump_json(d.alternatives).decode()
        return (
            d.id,
            d.device_id,
            d.site_id,
            t(d.start_utc),
            t(d.end_utc),
            d.start_sample,
            d.end_sample,
            d.sample_rate_hz,
            d.clock_synced,
            d.species_id,
            d.scientific_name,
            d.common_name,
            d.score,
            d.similarity,
            d.rank,
            d.windows,
            alternatives,
            d.bundle_id,
            d.backend,
            d.clip_id,
            d.schema_version,
            t(received),
        )

    def _clip_params(self, c: Clip) -> tuple:
        return (
            c.clip_id,
            c.device_id,
            c.site_id,
            c.path,
            c.size_bytes,
            c.sha256,
            self.dialect.time_param(c.received_utc),
        )

    def _device_seen(self, s: Session, site_id: str, device_id: str, when: datetime) -> None:
        t = self.dialect.time_param(when)
        s.run(
            "INSERT INTO devices (device_id, site_id, last_seen_utc) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET last_seen_utc = excluded.last_seen_utc, "
            "site_id = excluded.site_id "
            "WHERE devices.last_seen_utc IS NULL OR devices.last_seen_utc < excluded.last_seen_utc",
            (device_id, site_id, t),
        )

    def _device_status(self, s: Session, st: DeviceStatus, when: datetime) -> None:
        """Keep the newest status by the device's own clock: a late, older one changes nothing.

        A time ahead of the server's is capped to the server's and the lead recorded: one status
        from a clock reading 2099 would otherwise outrank every later status, for good.
        """
        st, clock_ahead_s = capped_to_clock(st, when)
        t = self.dialect.time_param
        values = (
            st.device_id,
            st.site_id,
            t(when),
            st.online,
            t(st.sent_utc),
            st.uptime_s,
            st.queue_depth,
            st.disk_free_bytes,
            st.clips_bytes,
            st.bundle_id,
            st.backend,
            st.software_version,
            t(st.last_detection_utc),
            clock_ahead_s,
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS[1:])
        s.run(
            f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(DEVICE_COLUMNS))}) "
            f"ON CONFLICT (device_id) DO UPDATE SET {updates} "
            "WHERE devices.status_sent_utc IS NULL "
            "OR devices.status_sent_utc <= excluded.status_sent_utc",
            values,
        )

    def clips_by_id(self, clip_ids: Sequence[str]) -> dict[str, Clip]:
        rows: list[tuple] = []
        with self.transaction() as s:
            for part in chunks(list(clip_ids), 500):
                rows += s.rows(
                    f"SELECT {', '.join(CLIP_COLUMNS)} FROM clips "
                    f"WHERE clip_id IN ({', '.join('?' * len(part))})",
                    part,
                )
        return {clip.clip_id: clip for clip in map(self._clip, rows)}

    def clip(self, clip_id: str) -> Clip | None:
        return self.clips_by_id([clip_id]).get(clip_id)

    def _clip(self, row: tuple) -> Clip:
        values = dict(zip(CLIP_COLUMNS, row, strict=True))
        values["received_utc"] = self.dialect.time_value(values["received_utc"])
        return Clip(**values)

    # ------------------------------------------------------------------ detections list

    _SELECT_DETECTION = (
        ", ".join(f"d.{c}" for c in DETECTION_COLUMNS)
        + ", "
        + ", ".join(f"rv.{c}" for c in REVIEW_COLUMNS)
    )

    def _list_query(
        self, flt: DetectionFilter, after: Cursor | None, limit: int, select: str
    ) -> _Query:
        t = self.dialect.time_param
        by_review = flt.review in _REVIEWED_STATES
        # Page over review_state's own index when the filter is a reviewed state: the few
        # reviewed rows are then found without walking a million unreviewed ones.
        time_col, id_col = (
            ("rs.start_utc", "rs.detection_id") if by_review else ("d.start_utc", "d.id")
        )
        join = "JOIN" if by_review else "LEFT JOIN"
        where: list[str] = []
        params: list[Any] = []

        def add(clause: str, *values: Any) -> None:
            where.append(clause)
            params.extend(values)

        if flt.species_id:
            add("rs.detected_species_id = ?" if by_review else "d.species_id = ?", flt.species_id)
        if flt.site_id:
            add("d.site_id = ?", flt.site_id)
        if flt.device_id:
            add("d.device_id = ?", flt.device_id)
        if flt.start_from:
            add(f"{time_col} >= ?", t(flt.start_from))
        if flt.start_to:
            add(f"{time_col} < ?", t(flt.start_to))
        if flt.score_min is not None:
            add("d.score >= ?", flt.score_min)
        if flt.score_max is not None:
            add("d.score <= ?", flt.score_max)
        if flt.review == ReviewFilter.UNREVIEWED:
            add("rs.detection_id IS NULL")
        elif flt.review not in (ReviewFilter.ANY, ReviewFilter.REVIEWED):
            add("rs.verdict = ?", flt.review.value)
        if after is not None:
            add(f"({time_col}, {id_col}) < (?, ?)", t(after.start_utc), after.id)
        sql = (
            f"SELECT {select} FROM detections d "
            f"{join} review_state rs ON rs.detection_id = d.id "
            "LEFT JOIN reviews rv ON rv.id = rs.review_id "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY {time_col} DESC, {id_col} DESC LIMIT ?"
        )
        return _Query(sql, [*params, limit])

    def list_detections(
        self, flt: DetectionFilter, after: Cursor | None = None, limit: int = 50
    ) -> Page:
        query = self._list_query(flt, after, limit + 1, self._SELECT_DETECTION)
        with self.transaction() as s:
            rows = [self._stored(r) for r in s.rows(query.sql, query.params)]
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1].detection if more and rows else None
        return Page(rows, Cursor(last.start_utc, last.id) if last else None)

    def matching_ids(self, flt: DetectionFilter, max_rows: int) -> list[str]:
        query = self._list_query(flt, None, max_rows, "d.id")
        with self.transaction() as s:
            return [r[0] for r in s.rows(query.sql, query.params)]

    def detection(self, detection_id: str) -> StoredDetection | None:
        return self.detections_by_id([detection_id]).get(detection_id)

    def detections_by_id(self, detection_ids: Sequence[str]) -> dict[str, StoredDetection]:
        rows: list[tuple] = []
        with self.transaction() as s:
            for part in chunks(list(dict.fromkeys(detection_ids)), 500):
                rows += s.rows(
                    f"SELECT {self._SELECT_DETECTION} FROM detections d "
                    "LEFT JOIN review_state rs ON rs.detection_id = d.id "
                    "LEFT JOIN reviews rv ON rv.id = rs.review_id "
                    f"WHERE d.id IN ({', '.join('?' * len(part))})",
                    part,
                )
        return {row.id: row for row in map(self._stored, rows)}

    def _stored(self, row: tuple) -> StoredDetection:
        n = len(DETECTION_COLUMNS)
        values = dict(zip(DETECTION_COLUMNS, row[:n], strict=True))
        for column in _TIME_COLUMNS:
            values[column] = self.dialect.time_value(values[column])
        received = values.pop("received_utc")
        values["alternatives"] = json.loads(values["alternatives"])
        values["clock_synced"] = bool(values["clock_synced"])
        review = self._review(row[n:]) if row[n] is not None else None
        return StoredDetection(Detection.model_validate(values), received, review)

    def _review(self, row: Sequence[Any]) -> Review:
        values = dict(zip(REVIEW_COLUMNS, row, strict=True))
        values["verdict"] = Verdict(values["verdict"])
        values["created_utc"] = self.dialect.time_value(values["created_utc"])
        return Review(**values)

    # ------------------------------------------------------------------------------ reviews

    def reviews(self, detection_id: str) -> list[Review]:
        with self.transaction() as s:
            rows = s.rows(
                f"SELECT {', '.join(REVIEW_COLUMNS)} FROM reviews WHERE detection_id = ? "
                "ORDER BY id",
                (detection_id,),
            )
        return [self._review(r) for r in rows]

    def add_reviews(
        self,
        detection_ids: Sequence[str],
        reviewer: str,
        verdict: Verdict,
        species_id: str | None = None,
        note: str = "",
        when: datetime | None = None,
    ) -> int:
        """Append one review per detection and move its review state; all or nothing."""
        verdict = Verdict(verdict)
        if verdict == Verdict.RELABEL and not species_id:
            raise ReviewError("a relabel needs the new species", hint="choose a species")
        when_param = self.dialect.time_param(when or utc_now())
        with self.transaction(write=True) as s:
            for detection_id in detection_ids:
                found = s.rows(
                    "SELECT species_id, start_utc FROM detections WHERE id = ?", (detection_id,)
                )
                if not found:
                    raise ReviewError(
                        f"detection {detection_id} does not exist", hint="reload the list"
                    )
                detected, start = found[0]
                species = {Verdict.CONFIRM: detected, Verdict.REJECT: None}.get(verdict, species_id)
                review_id = s.rows(
                    "INSERT INTO reviews (detection_id, reviewer, verdict, species_id, note, "
                    "created_utc) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (detection_id, reviewer, verdict.value, species, note, when_param),
                )[0][0]
                s.run(
                    "INSERT INTO review_state (detection_id, review_id, verdict, species_id, "
                    "detected_species_id, start_utc) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (detection_id) DO UPDATE SET review_id = excluded.review_id, "
                    "verdict = excluded.verdict, species_id = excluded.species_id",
                    (detection_id, review_id, verdict.value, species, detected, start),
                )
        return len(detection_ids)

    # ------------------------------------------------------------------------------ species

    def species_summaries(self, species_id: str | None = None) -> list[SpeciesSummary]:
        """Counts per species (all species, or one: then an index range, not a table scan)."""
        one = species_id is not None
        params = (species_id,) if one else ()
        with self.transaction() as s:
            counts = s.rows(
                "SELECT species_id, COUNT(*) FROM detections "
                f"{'WHERE species_id = ?' if one else ''} GROUP BY species_id",
                params,
            )
            verdicts = s.rows(
                "SELECT detected_species_id, verdict, COUNT(*) FROM review_state "
                f"{'WHERE detected_species_id = ?' if one else ''} "
                "GROUP BY detected_species_id, verdict",
                params,
            )
        by_species: dict[str, dict[str, int]] = {}
        for species, verdict, n in verdicts:
            by_species.setdefault(species, {})[verdict] = int(n)
        return [
            SpeciesSummary(
                species_id=species,
                detections=int(n),
                confirmed=by_species.get(species, {}).get("confirm", 0),
                rejected=by_species.get(species, {}).get("reject", 0),
                relabelled=by_species.get(species, {}).get("relabel", 0),
            )
            for species, n in sorted(counts, key=lambda r: (-r[1], r[0]))
        ]

    def daily_counts(self, species_id: str | None = None) -> list[tuple[str, int]]:
        day = self.dialect.day("start_utc")
        where, params = ("WHERE species_id = ?", (species_id,)) if species_id else ("", ())
        with self.transaction() as s:
            rows = s.rows(
                f"SELECT {day} AS day, COUNT(*) FROM detections {where} GROUP BY day ORDER BY day",
                params,
            )
        return [(str(day), int(n)) for day, n in rows]

    def reviewed_scores(self, species_id: str) -> list[ReviewedScore]:
        with self.transaction() as s:
            rows = s.rows(
                "SELECT d.score, rs.species_id FROM review_state rs "
                "JOIN detections d ON d.id = rs.detection_id WHERE rs.detected_species_id = ?",
                (species_id,),
            )
        return [ReviewedScore(float(score), said == species_id) for score, said in rows]

    # ------------------------------------------------------------------------------ fleet

    def devices(self) -> list[DeviceRow]:
        with self.transaction() as s:
            rows = s.rows(
                f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices ORDER BY site_id, device_id"
            )
        result = []
        for row in rows:
            values = dict(zip(DEVICE_COLUMNS, row, strict=True))
            for column in ("last_seen_utc", "status_sent_utc", "last_detection_utc"):
                values[column] = self.dialect.time_value(values[column])
            values["online"] = None if values["online"] is None else bool(values["online"])
            result.append(DeviceRow(**values))
        return result

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.transaction() as s:
            rows = s.rows(
                "SELECT id, topic, reason, error, payload, payload_bytes, count, first_utc, "
                "last_utc FROM dead_letters ORDER BY last_utc DESC, id DESC LIMIT ?",
                (limit,),
            )
        t = self.dialect.time_value
        return [
            DeadLetter(
                id=r[0],
                topic=r[1],
                reason=r[2],
                error=r[3],
                payload=bytes(r[4]),
                payload_bytes=int(r[5]),
                count=int(r[6]),
                first_utc=t(r[7]),
                last_utc=t(r[8]),
            )
            for r in rows
        ]

    def dead_letter_counts(self) -> dict[str, int]:
        with self.transaction() as s:
            rows = s.rows("SELECT reason, SUM(count) FROM dead_letters GROUP BY reason")
        return {reason: int(n) for reason, n in sorted(rows)}

    # ------------------------------------------------------------------------------ users

    def put_user(self, user: User) -> None:
        """Create the user, or reset its password and role: either way its sessions end."""
        with self.transaction(write=True) as s:
            s.run(
                "INSERT INTO users (username, password_hash, role, created_utc, generation) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET "
                "password_hash = excluded.password_hash, role = excluded.role, "
                "generation = excluded.generation",
                (
                    user.username,
                    user.password_hash,
                    user.role.value,
                    self.dialect.time_param(user.created_utc),
                    new_generation(),
                ),
            )
            self._end_sessions_of(s, user.username)

    def user(self, username: str) -> User | None:
        with self.transaction() as s:
            rows = s.rows(
                "SELECT username, password_hash, role, created_utc, generation FROM users "
                "WHERE username = ?",
                (username,),
            )
        return self._user(rows[0]) if rows else None

    def users(self) -> list[User]:
        with self.transaction() as s:
            rows = s.rows(
                "SELECT username, password_hash, role, created_utc, generation FROM users "
                "ORDER BY username"
            )
        return [self._user(row) for row in rows]

    def delete_user(self, username: str) -> bool:
        """Remove the user (their reviews stay, signed with the name); False if there was none.

        Their sessions go with them, so they end at once (and a name added again starts afresh).
        """
        with self.transaction(write=True) as s:
            found = s.rows("SELECT 1 FROM users WHERE username = ?", (username,))
            s.run("DELETE FROM users WHERE username = ?", (username,))
            self._end_sessions_of(s, username)
        return bool(found)

    # ------------------------------------------------------------------------ export, stats

    def export_rows(self) -> list[ExportRow]:
        """Confirmed and relabelled detections with their clip path (None: no clip arrived)."""
        with self.transaction() as s:
            rows = s.rows(
                "SELECT rs.detection_id, rs.species_id, c.path, rv.reviewer, rs.verdict "
                "FROM review_state rs JOIN reviews rv ON rv.id = rs.review_id "
                "JOIN detections d ON d.id = rs.detection_id "
                "LEFT JOIN clips c ON c.clip_id = d.clip_id "
                "WHERE rs.verdict IN ('confirm', 'relabel') "
                "ORDER BY rs.start_utc, rs.detection_id"
            )
        return [ExportRow(r[0], r[1], r[2], r[3], Verdict(r[4])) for r in rows]

    def stats(self) -> dict[str, object]:
        with self.transaction() as s:

            def one(sql: str) -> int:
                return int(s.rows(sql)[0][0] or 0)

            result: dict[str, object] = {
                "backend": self.dialect.name,
                "schema_version": one("SELECT MAX(version) FROM schema_migrations"),
                "detections": one("SELECT COUNT(*) FROM detections"),
                "species": one("SELECT COUNT(DISTINCT species_id) FROM detections"),
                "clips": one("SELECT COUNT(*) FROM clips"),
                "clip_bytes": one("SELECT SUM(size_bytes) FROM clips"),
                "reviews": one("SELECT COUNT(*) FROM reviews"),
                "reviewed_detections": one("SELECT COUNT(*) FROM review_state"),
                "devices": one("SELECT COUNT(*) FROM devices"),
                "devices_online": one("SELECT COUNT(*) FROM devices WHERE online"),
            }
            newest = s.rows("SELECT MAX(received_utc) FROM detections")[0][0]
        result["last_received_utc"] = (
            None if newest is None else self.dialect.time_value(newest).isoformat()
        )
        result["dead_letters"] = self.dead_letter_counts()
        return result


def rewrite_placeholders(sql: str) -> str:
    """``?`` -> ``%s`` for psycopg (the store's SQL holds no literal ``?`` or ``%``)."""
    if "%" in sql:
        raise ValueError("store SQL must not contain '%'")
    return sql.replace("?", "%s")


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
