"""The membership state machine alone: time is a FakeClock, the table a list of rows."""

from __future__ import annotations

import pytest

from chatactors.core.clock import FakeClock
from chatactors.core.membership import (
    ACTIVE,
    DEAD,
    LEFT,
    Died,
    Fenced,
    Join,
    Joined,
    Leave,
    MarkDead,
    Membership,
    ReadTable,
    RingChanged,
    Row,
    Snapshot,
    Superseded,
    Timing,
    WriteHeartbeat,
)
from chatactors.core.ring import Node, Ring

A1, B1, C1 = Node("a", 1), Node("b", 1), Node("c", 1)


def row(node: Node, heartbeat: float, status: str = ACTIVE) -> Row:
    return Row(node, status, heartbeat, link=f"link-{node.node_id}", gateway=f"ws://{node.node_id}")


def member(node_id: str = "a", epoch: int = 1) -> tuple[Membership, FakeClock]:
    """A member that has joined with ``epoch`` at time 0."""
    clock = FakeClock()
    m = Membership(node_id, clock)
    assert m.start() == [Join()]
    assert m.joined(epoch) == [RingChanged(Ring(frozenset({Node(node_id, epoch)}))), ReadTable()]
    return m, clock


def ring(*nodes: Node) -> Ring:
    return Ring(frozenset(nodes))


class TestTiming:
    def test_the_defaults_detect_a_dead_node_within_five_seconds(self) -> None:
        timing = Timing()
        assert timing.dead_after == 3.5  # three missed heartbeats of 1 s, plus 0.5 s of grace
        assert timing.lease < timing.dead_after  # we stop owning before anyone may take over
        assert timing.detection <= 5.0

    @pytest.mark.parametrize("bad", [{"period": 0}, {"missed": 0}, {"grace": -1}, {"grace": 1.0}])
    def test_bad_timings_are_refused(self, bad: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="bad membership timing"):
            Timing(**bad)  # type: ignore[arg-type]


class TestOwnHeartbeat:
    def test_a_heartbeat_and_a_read_each_period_one_at_a_time(self) -> None:
        m, clock = member()
        assert m.tick() == []
        clock.advance(1.0)
        assert m.tick() == [WriteHeartbeat(A1), ReadTable()]
        clock.advance(0.5)
        assert m.tick() == []  # the write is not reported yet: never two in flight
        assert m.heartbeat_written(True) == []
        assert m.tick() == []
        clock.advance(0.5)
        assert m.tick() == [WriteHeartbeat(A1), ReadTable()]  # a period after the last was sent

    def test_a_refused_heartbeat_fences_us_and_we_rejoin_with_a_new_epoch(self) -> None:
        m, clock = member()
        clock.advance(1.0)
        assert m.tick() == [WriteHeartbeat(A1), ReadTable()]
        assert m.heartbeat_written(False) == [
            Fenced(A1, "our heartbeat was refused: declared dead, or superseded"),
            RingChanged(Ring()),
        ]
        assert not m.owning()
        # The read that follows the heartbeat shows why: our row was marked dead. We rejoin.
        assert m.table_read(Snapshot(101.0, (row(A1, 100.0, DEAD),))) == [Join()]
        assert m.joined(2) == [RingChanged(ring(Node("a", 2))), ReadTable()]
        assert m.owning()

    def test_a_fenced_node_whose_id_another_process_holds_stops_for_good(self) -> None:
        m, clock = member()
        clock.advance(1.0)
        m.tick()
        m.heartbeat_written(False)
        a2 = Node("a", 2)  # a new process with our id joined while we were paused
        assert m.table_read(Snapshot(101.0, (row(a2, 100.8), row(B1, 100.9)))) == [
            Joined(row(B1, 100.9)),
            Superseded(A1),
            RingChanged(ring(B1)),  # what is left of its view; it stops anyway
        ]
        clock.advance(10.0)
        assert m.tick() == []  # no rejoin: it would fence the newer process in turn
        assert not m.owning()

    def test_a_fenced_node_rejoins_when_the_newer_epoch_of_its_id_is_dead_too(self) -> None:
        m, clock = member()
        clock.advance(1.0)
        m.tick()
        m.heartbeat_written(False)
        assert m.table_read(Snapshot(110.0, (row(Node("a", 2), 100.0),))) == [Join()]

    def test_an_unreachable_database_ends_our_lease_before_anyone_may_declare_us_dead(self) -> None:
        m, clock = member()
        for _ in range(2):
            clock.advance(1.0)
            assert m.tick() == [WriteHeartbeat(A1), ReadTable()]
            assert m.heartbeat_failed() == []
            assert m.owning()
        clock.advance(1.0)  # 3 s since the join was sent: the lease is over
        assert not m.owning()
        assert m.tick() == [Fenced(A1, "no heartbeat accepted for 3 s"), RingChanged(Ring()), ReadTable()]
        assert m.tick() == []  # the read failed too: it is tried again a period later
        clock.advance(1.0)
        assert m.tick() == [ReadTable()]
        assert m.table_read(Snapshot(105.0, (row(A1, 101.0, DEAD),))) == [Join()]
        assert m.join_failed() == []
        assert m.tick() == []  # the next join is a period later
        clock.advance(1.0)
        assert m.tick() == [Join()]

    def test_the_lease_runs_from_when_the_heartbeat_was_sent_not_answered(self) -> None:
        m, clock = member()
        clock.advance(1.0)
        m.tick()  # sent at 1.0
        clock.advance(2.5)
        m.heartbeat_written(True)  # answered at 3.5: the lease ends at 1.0 + 3.0
        clock.advance(0.4)
        assert m.owning()
        clock.advance(0.1)
        assert not m.owning()

    def test_a_late_answer_for_a_fenced_incarnation_is_ignored(self) -> None:
        m, clock = member()
        clock.advance(1.0)
        m.tick()
        clock.advance(3.0)
        assert m.tick()[0] == Fenced(A1, "no heartbeat accepted for 3 s")
        assert m.heartbeat_written(True) == []  # the old write's late answer renews nothing
        assert not m.owning()
        assert m.table_read(Snapshot(105.0, (row(A1, 101.0),))) == [Join()]
        assert m.heartbeat_written(True) == []
        assert m.joined(2)[0] == RingChanged(ring(Node("a", 2)))

    def test_leave_says_so_and_drops_us_from_our_ring(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(10.0, (row(A1, 10.0), row(B1, 10.0))))
        assert m.leave() == [Leave(A1), RingChanged(ring(B1))]
        assert not m.owning()
        assert m.tick() == []


class TestOthers:
    def test_a_fresh_row_joins_the_ring(self) -> None:
        m, _ = member()
        effects = m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 99.0), row(C1, 97.0))))
        assert effects == [Joined(row(B1, 99.0)), Joined(row(C1, 97.0)), RingChanged(ring(A1, B1, C1))]
        assert m.row("b") == row(B1, 99.0)
        assert m.table_read(Snapshot(101.0, (row(A1, 101.0), row(B1, 100.0), row(C1, 100.0)))) == []

    def test_a_node_that_joins_no_one_is_seen_by_all_at_its_first_read(self) -> None:
        m, _ = member()
        assert not m.seen_by_all()  # no read yet: it cannot know who is there
        m.table_read(Snapshot(100.0, (row(A1, 100.0),)))
        assert m.seen_by_all()

    def test_a_node_that_joins_others_is_seen_once_each_has_stamped_twice_after_its_first_read(
        self,
    ) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 99.8), row(C1, 99.9))))
        assert not m.seen_by_all()  # b and c last read the table before our row was in it
        m.table_read(Snapshot(100.5, (row(A1, 100.0), row(B1, 100.2), row(C1, 100.0))))
        assert not m.seen_by_all()  # b will see us at the read after that heartbeat, which may be
        # under way; c stamped as our first read began: it may have read just before our row was in
        m.table_read(Snapshot(101.0, (row(A1, 101.0), row(B1, 100.2), row(C1, 100.7))))
        assert not m.seen_by_all()
        assert m.table_read(Snapshot(101.3, (row(A1, 101.0), row(B1, 101.2), row(C1, 100.7)))) == []
        assert not m.seen_by_all()  # b's read that saw us is done, and what it changed; c's not yet
        m.table_read(Snapshot(101.8, (row(A1, 101.0), row(B1, 101.2), row(C1, 101.7))))
        assert m.seen_by_all()
        assert m.row("c") == row(C1, 101.7)  # the view keeps each row's newest heartbeat

    def test_a_node_that_never_stamps_again_stops_holding_us_back_once_it_is_dead(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        m.table_read(Snapshot(103.4, (row(A1, 103.0), row(B1, 100.0))))
        assert not m.seen_by_all()  # stamped as our first read began: not after it
        m.table_read(Snapshot(103.5, (row(A1, 103.0), row(B1, 100.0))))
        assert m.seen_by_all()  # b is dead: there is no one left to wait for

    def test_a_rejoin_is_seen_afresh(self) -> None:
        m, clock = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0),)))
        assert m.seen_by_all()
        clock.advance(3.0)  # the lease runs out: fenced, then joins again with a new epoch
        m.tick()
        assert m.table_read(Snapshot(103.0, (row(A1, 100.0), row(B1, 102.0))))[-1] == Join()
        m.joined(2)
        assert not m.seen_by_all()  # b read the table before our new row was in it

    def test_three_missed_heartbeats_and_the_grace_make_a_node_dead(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.table_read(Snapshot(103.4, (row(A1, 103.0), row(B1, 100.0)))) == []
        assert m.table_read(Snapshot(103.5, (row(A1, 103.0), row(B1, 100.0)))) == [
            Died(B1, "3 heartbeats missed"),
            MarkDead(B1),
            RingChanged(ring(A1)),
        ]
        assert m.row("b") is None

    def test_a_stale_row_never_joins_and_any_member_marks_it_dead(self) -> None:
        m, _ = member()
        assert m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 90.0)))) == [MarkDead(B1)]
        # Marking is conditional on the epoch: asking again while the row says active is harmless.
        assert m.table_read(Snapshot(101.0, (row(A1, 100.0), row(B1, 90.0)))) == [MarkDead(B1)]

    def test_a_row_another_node_marked_dead_leaves_the_ring(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.table_read(Snapshot(101.0, (row(A1, 101.0), row(B1, 100.5, DEAD)))) == [
            Died(B1, "its row says dead"),
            RingChanged(ring(A1)),
        ]

    def test_a_node_that_left_leaves_the_ring_at_once(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.table_read(Snapshot(100.2, (row(A1, 100.0), row(B1, 100.0, LEFT))))[0] == Died(
            B1, "its row says left"
        )

    def test_a_vanished_row_leaves_the_ring(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.table_read(Snapshot(101.0, (row(A1, 101.0),))) == [
            Died(B1, "its row is gone"),
            RingChanged(ring(A1)),
        ]

    def test_a_dead_letter_kills_at_once_and_the_old_epoch_never_comes_back(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.dead_letter(B1) == [
            Died(B1, "a dead letter on its link"),
            MarkDead(B1),
            RingChanged(ring(A1)),
        ]
        # The table still says active and fresh (our MarkDead was lost): it stays dead, and is marked again.
        assert m.table_read(Snapshot(100.5, (row(A1, 100.0), row(B1, 100.4)))) == [MarkDead(B1)]
        # Only a new epoch returns.
        b2 = Node("b", 2)
        assert m.table_read(Snapshot(101.0, (row(A1, 101.0), row(b2, 101.0)))) == [
            Joined(row(b2, 101.0)),
            RingChanged(ring(A1, b2)),
        ]

    def test_a_dead_letter_for_an_old_or_unknown_incarnation_is_ignored(self) -> None:
        m, _ = member()
        b2 = Node("b", 2)
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(b2, 100.0))))
        assert m.dead_letter(B1) == []
        assert m.dead_letter(C1) == []
        assert m.ring() == ring(A1, b2)

    def test_a_restarted_node_replaces_its_old_incarnation(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        b2 = Node("b", 2)
        assert m.table_read(Snapshot(101.0, (row(A1, 101.0), row(b2, 101.0)))) == [
            Died(B1, "a newer epoch joined"),
            Joined(row(b2, 101.0)),
            RingChanged(ring(A1, b2)),
        ]

    def test_a_node_that_is_not_a_member_marks_no_one_dead(self) -> None:
        m = Membership("a", FakeClock())
        m.start()  # joining: its view may be read, but the table is not its to judge yet
        assert m.table_read(Snapshot(100.0, (row(B1, 90.0), row(C1, 100.0)))) == [
            Joined(row(C1, 100.0)),
            RingChanged(ring(C1)),
        ]


class TestFencing:
    def test_our_row_marked_dead_fences_us(self) -> None:
        m, _ = member()
        m.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0))))
        assert m.table_read(Snapshot(101.0, (row(A1, 100.0, DEAD), row(B1, 101.0)))) == [
            Fenced(A1, "our row says dead"),
            RingChanged(ring(B1)),
            Join(),  # decided on the same read: the row is ours and dead, nobody took our id
        ]
        assert not m.owning()

    def test_a_newer_epoch_of_our_id_fences_us(self) -> None:
        # Another process started with our node id: the older incarnation gives way.
        m, _ = member()
        assert m.table_read(Snapshot(100.0, (row(Node("a", 2), 100.0),))) == [
            Fenced(A1, "superseded by epoch 2"),
            Superseded(A1),
            RingChanged(Ring()),
        ]

    def test_our_own_row_never_appears_as_another_node(self) -> None:
        m, _ = member()
        assert m.table_read(Snapshot(100.0, (row(A1, 100.0),))) == []
        assert m.ring() == ring(A1)


class TestNoNodeIsSpecial:
    def test_every_node_computes_the_same_ring_from_the_same_table(self) -> None:
        table = Snapshot(100.0, (row(A1, 100.0), row(B1, 99.5), row(C1, 99.0), row(Node("d", 4), 90.0)))
        rings = []
        for node in (A1, B1, C1):
            m, _ = member(node.node_id, node.epoch)
            m.table_read(table)
            rings.append(m.ring())
        assert rings == [ring(A1, B1, C1)] * 3

    def test_losing_the_first_node_is_like_losing_any_other(self) -> None:
        b, _ = member("b")
        b.table_read(Snapshot(100.0, (row(A1, 100.0), row(B1, 100.0), row(C1, 100.0))))
        assert b.dead_letter(A1)[-1] == RingChanged(ring(B1, C1))
        assert b.owning()
