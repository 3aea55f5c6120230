"""The core supervisor's rules: which core actor an exit belongs to, and whether to restart it.

An OTP supervisor restarts a crashed child unless children crash too often: more than
``max_restarts`` within ``max_seconds`` means restarting is not helping, so the supervisor gives up
and stops the whole tree loudly instead of looping. :class:`CoreTree` is that policy for the four
core actors (``one_for_one``: only the one that died is restarted), free of Thespian so it can be
tested with a fake clock.

Addresses are opaque and compared with ``==``: on multiprocTCPBase ``createActor`` called inside an
actor returns a placeholder that equals, but does not print like, the address the child reports.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from chatactors.core.clock import Clock, MonotonicClock
from chatactors.core.model import Address

Role = Literal["persistence", "login", "supervisor", "directory"]
ROLES: tuple[Role, ...] = ("persistence", "login", "supervisor", "directory")  # the order they start in


@dataclass(frozen=True)
class Restart:
    role: Role


@dataclass(frozen=True)
class GiveUp:
    role: Role
    reason: str


class RestartIntensity:
    """At most ``max_restarts`` in any window of ``max_seconds`` (OTP's intensity and period)."""

    def __init__(self, max_restarts: int, max_seconds: float, clock: Clock | None = None) -> None:
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.clock: Clock = clock or MonotonicClock()
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        """Record a restart; False when it would exceed the intensity."""
        now = self.clock.now()
        while self._times and now - self._times[0] > self.max_seconds:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True


class CoreTree:
    """Which address holds each role, and what an exit means."""

    def __init__(self, intensity: RestartIntensity) -> None:
        self.intensity = intensity
        self._addresses: dict[Role, list[Address]] = {}  # role -> every name its current actor answers to
        self.stopping = False
        self.restarts = 0

    def assign(self, role: Role, *addresses: Address | None) -> None:
        """``role`` is now held by an actor known under these addresses (placeholder, real)."""
        if role not in ROLES:
            raise ValueError(f"unknown core role {role!r}")
        self._addresses[role] = [a for a in addresses if a is not None]

    def add_alias(self, role: Role, address: Address) -> None:
        self._addresses.setdefault(role, []).append(address)

    def role_of(self, address: Address) -> Role | None:
        for role, known in self._addresses.items():
            if any(address == a for a in known):
                return role
        return None

    def exited(self, address: Address) -> Restart | GiveUp | None:
        """A child exited. None: not a current core actor (a duplicate report, an old incarnation),
        or the tree is stopping anyway."""
        role = self.role_of(address)
        if role is None or self.stopping:
            return None
        del self._addresses[role]
        if not self.intensity.allow():
            self.stopping = True
            return GiveUp(
                role,
                f"{role} exited and more than {self.intensity.max_restarts} restarts happened "
                f"within {self.intensity.max_seconds:g} s",
            )
        self.restarts += 1
        return Restart(role)
