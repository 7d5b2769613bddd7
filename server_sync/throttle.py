"""Failed logins slow an attacker down: a user name tried from one client address gets
``max_failures`` wrong passwords per ``window_s``, then must wait until the oldest leaves the window.

Keyed by (address, user name) as the OWASP authentication cheat sheet suggests: a guesser cannot
try more than a handful of passwords per quarter hour against an account, while nobody can lock a
reviewer out from another address. The counts live in memory (one server process; a restart
forgets them, which only gives a guesser one more handful), bounded in size.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
MAX_KEYS = 10_000  # a flood of made-up user names cannot grow memory without bound


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def retry_after(self, address: str, username: str) -> float:
        """Seconds until this pair may try again (0: now)."""
        failures = self._recent(_key(address, username))
        if len(failures) < self.max_failures:
            return 0.0
        return max(0.0, failures[0] + self.window_s - self.clock())

    def failed(self, address: str, username: str) -> None:
        key = _key(address, username)
        self._failures[key] = self._recent(key)
        self._failures[key].append(self.clock())
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, address: str, username: str) -> None:
        self._failures.pop(_key(address, username), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        """The pair's failures inside the window (reading never adds a pair)."""
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures


def _key(address: str, username: str) -> tuple[str, str]:
    return address, username.strip().casefold()
