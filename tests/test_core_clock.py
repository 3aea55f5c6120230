"""core.clock.LogEvery: the one limiter behind every "at most one line every N s" log."""

from __future__ import annotations

from chatactors.core.clock import FakeClock, LogEvery


def test_one_line_per_interval_and_the_next_counts_what_was_held_back() -> None:
    clock = FakeClock()
    every = LogEvery(10.0, clock)
    assert every.due() == 0  # the first line goes at once
    assert [every.due() for _ in range(3)] == [None, None, None]
    clock.advance(9.9)
    assert every.due() is None
    clock.advance(0.1)
    assert every.due() == 4  # held back since the last line
    assert every.due() is None
