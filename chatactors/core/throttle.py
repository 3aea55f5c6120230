"""Login throttling: after a few failures an account is locked for a growing time.

Keyed by account (username or id as typed), so an attacker cannot lock out a name they do not
target, and the unknown-user path costs the same as the wrong-password path.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatactors.core.clock import Clock


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self, clock: Clock, free_attempts: int = 5, base_lock: float = 1.0, max_lock: float = 300.0
    ) -> None:
        self.clock = clock
        self.free_attempts = free_attempts
        self.base_lock = base_lock
        self.max_lock = max_lock
        self._records: dict[str, _Record] = {}

    def retry_after(self, account: str) -> float:
        """Seconds until this account may try again (0 when it may now)."""
        record = self._records.get(account)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self.clock.now())

    def failed(self, account: str) -> None:
        record = self._records.setdefault(account, _Record())
        record.failures += 1
        over = record.failures - self.free_attempts
        if over >= 0:
            record.locked_until = self.clock.now() + min(self.max_lock, self.base_lock * 2**over)

    def succeeded(self, account: str) -> None:
        self._records.pop(account, None)
