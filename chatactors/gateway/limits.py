"""What one connection may do, and the token bucket that holds it to its rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may do; the defaults suit people typing, not bots."""

    max_frame: int = 64 * 1024  # bytes per incoming frame; larger closes with 1009
    rate: float = 20.0  # frames per second, sustained
    burst: int = 40  # frames accepted at once before the rate applies
    flood: int = 200  # dropped frames in a row before the connection is closed (1008)
    max_pending: int = 2000  # outgoing frames queued for a slow reader before it is closed (1008)
    typing_interval: float = 2.0  # seconds between two typing notices passed on for one conversation
    max_guests: int = 1000  # connections not logged in, at once (the server's); past it the oldest is closed
    max_sessions: int = 32  # one user's sessions on this server at once; past it the oldest is logged out


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


class TypingGate:
    """Passes one typing notice per conversation every ``interval`` seconds and drops the rest.

    A notice is ephemeral: one dropped costs nothing, and a client that sends them faster than a
    person types gains nothing. It remembers at most ``remember`` conversations, so a client naming a
    new one in every frame cannot grow it.
    """

    def __init__(
        self, interval: float, clock: Callable[[], float] = time.monotonic, remember: int = 64
    ) -> None:
        self.interval, self.clock, self.remember = interval, clock, remember
        self.last: dict[Hashable, float] = {}

    def allow(self, conversation: Hashable) -> bool:
        now = self.clock()
        last = self.last.get(conversation)
        if last is not None and now - last < self.interval:
            return False
        if conversation not in self.last and len(self.last) >= self.remember:
            self.last = {k: t for k, t in self.last.items() if now - t < self.interval}
            if len(self.last) >= self.remember:  # all recent: forget the oldest
                del self.last[next(iter(self.last))]
        self.last.pop(conversation, None)  # re-inserted last: the dict stays oldest first
        self.last[conversation] = now
        return True
