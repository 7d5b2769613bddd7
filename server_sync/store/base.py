"""The store port: what ingest, the web app and the CLI need from a database.

Two adapters implement it (``sqlite.SqliteStore``, ``postgres.PostgresStore``); both share every
query through ``sql.SqlStore`` and differ only in connections, types and two SQL expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from biovita.detection import Detection
from biovita.errors import BiovitaError
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
    SpeciesSummary,
    StoredDetection,
    User,
    Verdict,
)


class StoreError(BiovitaError):
    """The database cannot be opened, migrated or written."""


class Store(Protocol):
    """The central store. Every write is one transaction; methods are safe across threads."""

    url: str

    def migrate(self) -> int: ...

    def schema_version(self) -> int: ...

    def check_schema(self) -> None: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...

    # ingest
    def ingest(self, unit: IngestUnit, limits: LimitSettings | None = None) -> None: ...

    def clip_bytes_since(self, device_key_: str, since: datetime) -> int: ...

    def clips_by_id(self, clip_ids: Sequence[str]) -> dict[str, Clip]: ...

    # detections and reviews
    def list_detections(
        self, flt: DetectionFilter, after: Cursor | None = None, limit: int = 50
    ) -> Page: ...

    def matching_ids(self, flt: DetectionFilter, max_rows: int) -> list[str]: ...

    def detection(self, detection_id: str) -> StoredDetection | None: ...

    def detections_by_id(self, detection_ids: Sequence[str]) -> dict[str, StoredDetection]: ...

    def reviews(self, detection_id: str) -> list[Review]: ...

    def add_reviews(
        self,
        detection_ids: Sequence[str],
        reviewer: str,
        verdict: Verdict,
        species_id: str | None = None,
        note: str = "",
        when: datetime | None = None,
    ) -> int: ...

    def clip(self, clip_id: str) -> Clip | None: ...

    # species, fleet, dead letters
    def species_summaries(self, species_id: str | None = None) -> list[SpeciesSummary]: ...

    def daily_counts(self, species_id: str | None = None) -> list[tuple[str, int]]: ...

    def reviewed_scores(self, species_id: str) -> list[ReviewedScore]: ...

    def devices(self) -> list[DeviceRow]: ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def dead_letter_counts(self) -> dict[str, int]: ...

    # users, export, stats
    def put_user(self, user: User) -> None: ...

    def user(self, username: str) -> User | None: ...

    def users(self) -> list[User]: ...

    def delete_user(self, username: str) -> bool: ...

    # review-app sessions (server_sync/store/sessions.py)
    def start_session(self, session_id: str, user: User, expires: datetime) -> None: ...

    def session_user(self, session_id: str) -> User | None: ...

    def end_session(self, session_id: str) -> None: ...

    def session_count(self, username: str) -> int: ...

    def export_rows(self) -> list[ExportRow]: ...

    def stats(self) -> dict[str, object]: ...

    def insert_detections(self, detections: Sequence[Detection], received: datetime) -> None: ...
