"""When a live actor may hibernate: idle long enough and owing nobody a reply."""

from __future__ import annotations

from chatactors.core.clock import Clock


class IdlePolicy:
    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self.last_activity = clock.now()
        self.outstanding = 0  # requests sent to other actors whose replies come straight back here

    def touch(self) -> None:
        self.last_activity = self.clock.now()

    def started(self) -> None:
        self.outstanding += 1
        self.touch()

    def finished(self) -> None:
        self.outstanding = max(0, self.outstanding - 1)
        self.touch()

    def should_retire(self) -> bool:
        return self.outstanding == 0 and self.clock.now() - self.last_activity >= self.timeout
