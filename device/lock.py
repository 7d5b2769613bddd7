"""One daemon per data folder: an exclusive ``flock`` on ``<data_dir>/biovita-field.lock``.

Two daemons on one folder would share a client id (they kick each other off the broker), log
every event twice and race on the clip quota. The kernel drops the lock when its holder exits,
however it exits (``kill -9``, a power cut), so a stale lock file never blocks a restart; the
file holds the holder's pid so the second daemon can say which process is in the way.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from device.store import StoreError

LOCK_NAME = "biovita-field.lock"


class DataDirLock:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"another biovita-field daemon (pid {holder}) already runs on the data folder "
                f"{self.path.parent}",
                hint="stop it first (systemctl stop biovita-field), or give this one its own "
                "device.data_dir",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with the next daemon's open)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
