"""SimpleSystem's shortcut for Thespian's wakeups: nothing is scanned while nothing is due, and every
wakeup still fires, in deadline order, whenever and by whom it was armed."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from thespian.actors import Actor, ActorSystem, WakeupMessage

from chatactors.bridge import SimpleSystem


class Alarm(Actor):  # type: ignore[misc]
    """("arm", seconds, tag) arms a wakeup; each is reported to whoever sent "own" last."""

    owner: Any = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if msg == "own":
            self.owner = sender
        elif isinstance(msg, tuple) and msg[0] == "arm":
            self.wakeupAfter(timedelta(seconds=msg[1]), payload=msg[2])
        elif isinstance(msg, WakeupMessage):
            self.send(self.owner, ("woke", msg.payload))
        elif msg == "ping":
            self.send(sender, "pong")


def woken(system: SimpleSystem, count: int, within: float = 10.0) -> list[str]:
    """Run the system until ``count`` wakeups were reported (a deadline, not a sleep, bounds it)."""
    tags: list[str] = []
    deadline = time.monotonic() + within
    while len(tags) < count and time.monotonic() < deadline:
        system.run()
        tags += [m[1] for m in system.received() if isinstance(m, tuple) and m[0] == "woke"]
    return tags


def test_wakeups_fire_in_deadline_order_whatever_order_they_were_armed() -> None:
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        system = SimpleSystem(asys)
        alarm = asys.createActor(Alarm)
        system.tell(alarm, "own")
        system.tell(alarm, ("arm", 0.3, "late"))
        system.tell(alarm, ("arm", 0.1, "early"))  # earlier than the one already pending
        system.run()
        assert system.received() == []  # nothing due yet
        for _ in range(200):  # deliveries while nothing is due leave the wakeups pending
            system.tell(alarm, "ping")
        system.run()
        assert system.received() == ["pong"] * 200
        assert woken(system, 2) == ["early", "late"]
        system.tell(alarm, ("arm", 0.05, "again"))  # armed after the list emptied
        assert woken(system, 1) == ["again"]
    finally:
        asys.shutdown()


def test_a_wakeup_armed_before_the_system_was_wrapped_still_fires() -> None:
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        alarm = asys.createActor(Alarm)
        asys.tell(alarm, ("arm", 0.05, "before"))  # Thespian's own tell: armed before SimpleSystem
        system = SimpleSystem(asys)
        system.tell(alarm, "own")
        system.tell(alarm, ("arm", 10.0, "not due"))  # a later deadline must not hide the earlier one
        assert woken(system, 1) == ["before"]
    finally:
        asys.shutdown()


def test_deliveries_skip_thespians_getlogger_but_keep_its_debug_line() -> None:
    """Actors are handed their messages by chatactors' ``_deliver``, which looks Thespian's logger up
    once; at DEBUG the line Thespian writes for each delivery is still there."""
    from chatactors.bridge import _deliver

    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    thespian_log, handler = logging.getLogger("Thespian"), Lines()
    level = thespian_log.level
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        system = SimpleSystem(asys)
        alarm = asys.createActor(Alarm)
        ref = asys._systemBase.actorRegistry[alarm.actorAddressString]
        assert ref.instance._receive.__func__ is _deliver
        thespian_log.addHandler(handler)
        system.tell(alarm, "ping")
        system.run()
        assert system.received() == ["pong"] and lines == []  # not at DEBUG: no line
        thespian_log.setLevel(logging.DEBUG)
        system.tell(alarm, "ping")
        system.run()
        assert system.received() == ["pong"]
        assert any('got message "ping"' in line for line in lines)
    finally:
        thespian_log.removeHandler(handler)
        thespian_log.setLevel(level)
        asys.shutdown()
