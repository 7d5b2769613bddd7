"""Schema migrations, one list for both backends.

Each migration is DDL with type placeholders (``{time}``, ``{bool}``, ...) that the backend's
``Dialect`` fills in, so SQLite and PostgreSQL always get the same tables, columns and indexes.
Migrations are append-only: never edit a released one, add the next number. ``schema_migrations``
records what ran; ``apply_migrations`` runs the missing ones, each in its own transaction.

Why these indexes: the detections list is ordered by (start_utc, id) descending and paged by keyset,
so every filter that narrows by an equality (species, site, device) has an index that starts with
that column and ends with (start_utc, id): the page is then an index range scan, no sort, however
many rows are stored. Review-state filters page over ``review_state``, which carries start_utc.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    ddl: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "detections, clips, reviews, devices, dead letters, users",
        """
        CREATE TABLE detections (
            id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            start_utc {time} NOT NULL,
            end_utc {time} NOT NULL,
            start_sample BIGINT NOT NULL,
            end_sample BIGINT NOT NULL,
            sample_rate_hz INTEGER NOT NULL,
            clock_synced {bool} NOT NULL,
            species_id TEXT NOT NULL,
            scientific_name TEXT NOT NULL,
            common_name TEXT NOT NULL,
            score {float} NOT NULL,
            similarity {float} NOT NULL,
            rank INTEGER NOT NULL,
            windows INTEGER NOT NULL,
            alternatives TEXT NOT NULL,
            bundle_id TEXT NOT NULL,
            backend TEXT NOT NULL,
            clip_id TEXT,
            schema_version INTEGER NOT NULL,
            received_utc {time} NOT NULL
        );
        CREATE INDEX detections_by_time ON detections (start_utc, id);
        CREATE INDEX detections_by_species ON detections (species_id, start_utc, id);
        CREATE INDEX detections_by_site ON detections (site_id, start_utc, id);
        CREATE INDEX detections_by_device ON detections (device_id, start_utc, id);

        CREATE TABLE clips (
            clip_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            path TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            received_utc {time} NOT NULL
        );

        CREATE TABLE reviews (
            id {serial_pk},
            detection_id TEXT NOT NULL REFERENCES detections (id),
            reviewer TEXT NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ('confirm', 'reject', 'relabel')),
            species_id TEXT,
            note TEXT NOT NULL,
            created_utc {time} NOT NULL
        );
        CREATE INDEX reviews_by_detection ON reviews (detection_id, id);

        CREATE TABLE review_state (
            detection_id TEXT PRIMARY KEY REFERENCES detections (id),
            review_id BIGINT NOT NULL REFERENCES reviews (id),
            verdict TEXT NOT NULL,
            species_id TEXT,
            detected_species_id TEXT NOT NULL,
            start_utc {time} NOT NULL
        );
        CREATE INDEX review_state_by_verdict ON review_state (verdict, start_utc, detection_id);
        CREATE INDEX review_state_by_time ON review_state (start_utc, detection_id);
        CREATE INDEX review_state_by_species ON review_state (detected_species_id, verdict);

        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            site_id TEXT NOT NULL,
            last_seen_utc {time},
            online {bool},
            status_sent_utc {time},
            uptime_s {float},
            queue_depth BIGINT,
            disk_free_bytes BIGINT,
            clips_bytes BIGINT,
            bundle_id TEXT NOT NULL DEFAULT '',
            backend TEXT NOT NULL DEFAULT '',
            software_version TEXT NOT NULL DEFAULT '',
            last_detection_utc {time}
        );

        CREATE TABLE dead_letters (
            id {serial_pk},
            fingerprint TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            error TEXT NOT NULL,
            payload {blob} NOT NULL,
            payload_bytes BIGINT NOT NULL,
            count BIGINT NOT NULL,
            first_utc {time} NOT NULL,
            last_utc {time} NOT NULL
        );
        CREATE INDEX dead_letters_by_reason ON dead_letters (reason);

        CREATE TABLE users (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
            created_utc {time} NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "status clocks ahead of the server's; sessions kept server-side; per-device bounds",
        """
        ALTER TABLE devices ADD COLUMN clock_ahead_s {float};

        ALTER TABLE users ADD COLUMN generation TEXT NOT NULL DEFAULT '';
        CREATE TABLE sessions (
            session_key TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            generation TEXT NOT NULL,
            created_utc {time} NOT NULL,
            expires_utc {time} NOT NULL
        );
        CREATE INDEX sessions_by_user ON sessions (username);
        CREATE INDEX sessions_by_expiry ON sessions (expires_utc);

        ALTER TABLE dead_letters ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
        CREATE INDEX dead_letters_by_device ON dead_letters (device_id, reason);
        CREATE INDEX clips_by_device ON clips (device_id, received_utc);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def statements(ddl: str, types: dict[str, str]) -> list[str]:
    """The migration's statements with the backend's types filled in."""
    return [s.strip() for s in ddl.format(**types).split(";") if s.strip()]
