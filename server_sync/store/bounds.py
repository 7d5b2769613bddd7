"""What the store keeps per device, bounded: dead letters per device and reason, clip bytes per day.

Dead letters: each distinct (topic, reason, payload) is a row with up to 64 KB of its payload,
which is what an operator needs to see what went wrong, but 3,000 distinct junk messages from one
device were 171 MiB. So a device keeps at most ``dead_letters_per_device_reason`` distinct rows
per reason; beyond that, its further letters of that reason are only counted, in one overflow row
per device and reason (no payload). The counts by reason stay exact.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from biovita.detection import utc_now
from server_sync.records import DeadLetter, device_key

if TYPE_CHECKING:
    from server_sync.store.sql import Session

DEAD_LETTER_KEEP_BYTES = 64 << 10  # enough to read what went wrong; the size is kept in full


class BoundedQueries:
    """The per-device bounds of ``SqlStore`` (a mixin: it uses the store's transactions)."""

    def clip_bytes_since(self, device_key_: str, since: datetime) -> int:
        """Bytes of the clips of one device (``site/device``) received since ``since``."""
        site_id, _, device_id = device_key_.partition("/")
        with self.transaction() as s:
            rows = s.rows(
                "SELECT SUM(size_bytes) FROM clips WHERE device_id = ? AND site_id = ? "
                "AND received_utc >= ?",
                (device_id, site_id, self.dialect.time_param(since)),
            )
        return int(rows[0][0] or 0)

    def _dead_letter(self, s: Session, letter: DeadLetter, keep_per_reason: int) -> None:
        """One row per distinct (topic, reason, payload); repeats only raise its counter."""
        device = device_key(letter.topic)
        fingerprint = _fingerprint(letter.topic, letter.reason, letter.payload)
        payload, error = letter.payload[:DEAD_LETTER_KEEP_BYTES], letter.error
        if not s.rows("SELECT 1 FROM dead_letters WHERE fingerprint = ?", (fingerprint,)):
            kept = s.rows(
                "SELECT COUNT(*) FROM dead_letters WHERE device_id = ? AND reason = ?",
                (device, letter.reason),
            )[0][0]
            if kept >= keep_per_reason:  # only counted from now on
                fingerprint = _fingerprint(device, letter.reason, b"overflow")
                payload = b""
                error = (
                    f"more than {keep_per_reason} distinct {letter.reason} dead letters from "
                    f"{device or 'outside the biovita topics'}: later ones are only counted "
                    f"(the latest: {letter.error.splitlines()[0][:300]})"
                )
        when = self.dialect.time_param(letter.last_utc or utc_now())
        s.run(
            "INSERT INTO dead_letters (fingerprint, device_id, topic, reason, error, payload, "
            "payload_bytes, count, first_utc, last_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET count = dead_letters.count + excluded.count, "
            "last_utc = excluded.last_utc, error = excluded.error",
            (
                fingerprint,
                device,
                letter.topic,
                letter.reason,
                error,
                payload,
                letter.payload_bytes,
                letter.count,
                when,
                when,
            ),
        )


def _fingerprint(topic: str, reason: str, payload: bytes) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + reason.encode() + b"\0" + payload).hexdigest()
