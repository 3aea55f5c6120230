"""Time as a seam: production reads the monotonic clock, tests move a fake one by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class LogEvery:
    """At most one log line per ``interval`` seconds, so a flood (of bad frames, failed accepts,
    dropped requests) cannot fill the disk; what it held back is counted for the next line."""

    def __init__(self, interval: float, clock: Clock | None = None) -> None:
        self.interval = interval
        self.clock: Clock = clock or MonotonicClock()
        self._next = 0.0
        self._held = 0

    def due(self) -> int | None:
        """None: hold this line back (it is counted). Else log it: how many were held back since."""
        now = self.clock.now()
        if now < self._next:
            self._held += 1
            return None
        held, self._held, self._next = self._held, 0, now + self.interval
        return held
