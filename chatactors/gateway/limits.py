"""What one connection may do, and the token bucket that holds it to its rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may do; the defaults suit people typing, not bots."""

    max_frame: int = 64 * 1024  # bytes per incoming frame; larger closes with 1009
    rate: float = 20.0  # frames per second, sustained
    burst: int = 40  # frames accepted at once before the rate applies
    flood: int = 200  # dropped frames in a row before the connection is closed (1008)
    max_pending: int = 2000  # outgoing frames queued for a slow reader before it is closed (1008)


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; the clock is a parameter so tests need no sleep."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens = float(burst)
        self.stamp = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
