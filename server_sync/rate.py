"""Messages per device per minute: a token bucket per device, on ingest's network thread.

A device within its rate never notices; one that floods (a bug, a stolen key) gets its excess
dead-lettered as ``rate_limited`` before anything is parsed, and nothing of it acked, so the
device keeps its rows and re-sends them later. The bucket holds a minute's worth, so a device
coming back online may send its backlog in a burst. Memory is bounded: past ``MAX_DEVICES``
buckets, the least recently used full ones are forgotten (a full bucket is the default anyway).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_DEVICES = 100_000


class DeviceRateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def allow(self, device_key: str) -> bool:
        """Take one message's token for ``device_key``; False if it has none left."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(device_key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_s)
            allowed = tokens >= 1.0
            self._buckets[device_key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > MAX_DEVICES:
                self._buckets.popitem(last=False)
            return allowed
