"""Failed logins slow a password guesser down (OWASP authentication cheat sheet).

Two limits, both over a sliding ``window_s``:

* per (client address, user name): ``max_failures`` attempts that did not log in, then that pair
  waits until the oldest leaves the window. Nobody can lock a reviewer out from elsewhere.
* per client address: ``max_address_failures`` over all names, so one address cannot spray
  passwords across accounts, nor flood the table with made-up names.

Every attempt is counted *before* the password is checked (and forgotten on success), so a burst
of concurrent requests cannot all slip past the check while scrypt runs. What this does not stop:
a guesser rotating client addresses (an IPv6 /64 holds many) gets ``max_failures`` guesses per
address; long, unique passwords are still the defence. The counts live in memory: one server
process (a restart forgets them, which only gives a guesser one more window), bounded in size.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 5
MAX_ADDRESS_FAILURES = 50
WINDOW_S = 15 * 60.0
MAX_KEYS = 10_000  # pairs tracked at once; made-up names from many addresses cannot grow memory
MAX_NAME = 64  # user names are 1-64 characters: a longer one cannot exist, so it is cut


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        max_address_failures: int = MAX_ADDRESS_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.max_address_failures = max_failures, max_address_failures
        self.window_s, self.clock = window_s, clock
        self._pairs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, address: str, username: str) -> float:
        """Count one login attempt; return 0 if it may go ahead, else the seconds to wait."""
        key = (address, username.strip().casefold()[:MAX_NAME])
        with self._lock:
            now = self.clock()
            pair = self._recent(self._pairs, key, now)
            by_address = self._recent(self._addresses, address, now)
            waits = [
                self._wait(pair, self.max_failures, now),
                self._wait(by_address, self.max_address_failures, now),
            ]
            if max(waits) > 0:
                return max(waits)
            self._pairs[key] = pair
            self._pairs.move_to_end(key)
            self._addresses[address] = by_address
            self._addresses.move_to_end(address)
            pair.append(now)
            by_address.append(now)
            self._shrink(self._pairs, self.max_failures, now)
            self._shrink(self._addresses, self.max_address_failures, now)
            return 0.0

    def succeeded(self, address: str, username: str) -> None:
        """The attempt logged in: it was no guess. The address keeps its other failures."""
        key = (address, username.strip().casefold()[:MAX_NAME])
        with self._lock:
            pair = self._pairs.pop(key, None)
            by_address = self._addresses.get(address)
            if pair and by_address:
                by_address.remove(pair[-1])

    def _wait(self, attempts: deque[float], limit: int, now: float) -> float:
        if len(attempts) < limit:
            return 0.0
        return max(0.0, attempts[-limit] + self.window_s - now)

    def _recent(self, table: dict, key, now: float) -> deque[float]:
        """The attempts of ``key`` inside the window (reading never adds a key)."""
        attempts = table.get(key, deque())
        while attempts and attempts[0] <= now - self.window_s:
            attempts.popleft()
        if not attempts:
            table.pop(key, None)
        return attempts

    def _shrink(self, table: OrderedDict, limit: int, now: float) -> None:
        """Past MAX_KEYS entries, forget the stalest that hold no lock-out; past twice that, any."""
        for key in list(table):
            if len(table) <= MAX_KEYS:
                return
            if self._wait(self._recent(table, key, now), limit, now) == 0:
                table.pop(key, None)
        while len(table) > 2 * MAX_KEYS:
            table.popitem(last=False)
