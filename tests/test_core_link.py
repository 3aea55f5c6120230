"""The node link's rules (chatactors/core/link.py) on a fake clock."""

from __future__ import annotations

from chatactors.core.clock import FakeClock
from chatactors.core.link import Inbox, Outbox, Send, Unreachable


def outbox(**kw: float) -> tuple[Outbox, FakeClock]:
    clock = FakeClock()
    return Outbox(clock, **kw), clock  # type: ignore[arg-type]


def test_an_idle_link_sends_a_message_at_once() -> None:
    box, _ = outbox()
    assert box.put("m1") == [Send(1, ("m1",), 1)]


def test_what_is_queued_while_a_batch_waits_leaves_together_after_its_ack() -> None:
    box, _ = outbox()
    box.put("m1")
    assert box.put("m2") == [] and box.put("m3") == []  # one batch in flight at a time
    assert box.acked(1) == [Send(2, ("m2", "m3"), 1)]
    assert box.acked(2) == []  # nothing left: the link is idle
    assert box.put("m4") == [Send(3, ("m4",), 1)]


def test_a_batch_holds_at_most_max_batch_messages() -> None:
    box, _ = outbox(max_batch=2)
    box.put("m1")
    for m in ("m2", "m3", "m4"):
        box.put(m)
    assert box.acked(1) == [Send(2, ("m2", "m3"), 1)]
    assert box.acked(2) == [Send(3, ("m4",), 1)]


def test_an_ack_for_another_batch_changes_nothing() -> None:
    box, _ = outbox()
    box.put("m1")
    box.put("m2")
    assert box.acked(7) == [] and box.acked(0) == []
    assert box.in_flight is not None and box.in_flight.seq == 1


def test_an_overdue_batch_is_sent_again_with_its_number_then_the_peer_is_given_up() -> None:
    box, clock = outbox(ack_timeout=1.0, attempts=3)
    box.put("m1")
    box.put("m2")
    clock.advance(0.9)
    assert box.tick() == []
    assert box.deadline() == 1.0
    clock.advance(0.1)
    assert box.tick() == [Send(1, ("m1",), 2)]
    clock.advance(1.0)
    assert box.tick() == [Send(1, ("m1",), 3)]
    clock.advance(1.0)
    # Everything the peer was owed comes back, in order, for the node to route again.
    assert box.tick() == [Unreachable(("m1", "m2"))]
    assert box.put("m3") == [Unreachable(("m3",))]  # closed: nothing more is sent
    assert box.deadline() is None


def test_a_late_ack_after_a_resend_lets_the_next_batch_go() -> None:
    box, clock = outbox(ack_timeout=1.0)
    box.put("m1")
    box.put("m2")
    clock.advance(1.0)
    box.tick()  # resent
    assert box.acked(1) == [Send(2, ("m2",), 1)]


def test_membership_can_give_a_peer_up_at_once() -> None:
    box, _ = outbox()
    assert box.give_up() == []  # owed nothing: nothing to hand back
    box2, _ = outbox()
    box2.put("m1")
    box2.put("m2")
    assert box2.give_up() == [Unreachable(("m1", "m2"))]


def test_the_inbox_delivers_each_batch_once_per_sender_incarnation() -> None:
    inbox = Inbox()
    assert inbox.accept("n1", 1, 1)
    assert not inbox.accept("n1", 1, 1)  # a resend whose ack was lost: ack again, deliver nothing
    assert inbox.accept("n1", 1, 2)
    assert inbox.accept("n2", 1, 1)  # another node
    assert inbox.accept("n1", 2, 1)  # n1 restarted: a new epoch counts from one
