"""Clip files on disk, keyed by clip id: ``ROOT/YYYY/MM/DD/DEVICE/CLIP.flac``.

The day is the day the server received the clip, so an operator can archive or prune by folder.
The database maps each clip id to its path (relative to the root), which keeps paths stable if the
root moves. Files are written to a temp name, fsynced and renamed before the row that names them is
committed: a crash leaves at worst an orphan file, never a row pointing at half a clip.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from biovita.errors import BiovitaError
from server_sync.config import LimitSettings

FLAC_MAGIC = b"fLaC"


class ClipStore:
    def __init__(self, root: str | Path, limits: LimitSettings | None = None) -> None:
        self.root = Path(root).resolve()
        self.limits = limits or LimitSettings()  # what a clip may decode to (clip_bounds.py)

    def relative_path(self, clip_id: str, device_id: str, received: datetime) -> str:
        return f"{received:%Y/%m/%d}/{device_id}/{clip_id}.flac"

    def write(self, relative: str, payload: bytes) -> str:
        """Durably write ``payload``; returns its sha256."""
        path = self.resolve(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return hashlib.sha256(payload).hexdigest()

    def resolve(self, relative: str) -> Path:
        """The file for a stored relative path; refuses anything outside the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise BiovitaError(
                f"clip path {relative!r} leaves the clip store",
                hint="the database row is damaged; clip paths are relative to the clip root",
            )
        return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
