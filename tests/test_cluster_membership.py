"""The membership table on a real PostgreSQL, driven by the nodes' own state machines.

Several nodes live in this one process, each a :class:`Member` with its own state machine. Their
schedules run on FakeClocks, moved by hand; ages come from the database's clock, so a node that
"missed" heartbeats is one whose row was stamped in the past. One test runs on real time with a short
period, waiting on conditions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from chatactors.cluster.member import Member
from chatactors.cluster.membership_table import MembershipTable, NodeRecord, check_postgres
from chatactors.core.clock import Clock, FakeClock, MonotonicClock
from chatactors.core.membership import (
    ACTIVE,
    DEAD,
    LEFT,
    Died,
    Effect,
    Fenced,
    Joined,
    Membership,
    RingChanged,
    Row,
    Superseded,
    Timing,
)
from chatactors.core.ring import Node, Ring
from chatactors.errors import ChatError, ClusterNeedsPostgres, StorageUnavailable
from chatactors.storage import close_database, open_database

A1, B1, C1, C2 = Node("a", 1), Node("b", 1), Node("c", 1), Node("c", 2)


@pytest.fixture
def table(pg_url: str) -> Iterator[MembershipTable]:
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    table = MembershipTable(pg_url)
    table.create_schema()
    yield table
    table.close()
    close_database(pg_url)


def member(
    table: MembershipTable, node_id: str, timing: Timing | None = None, clock: Clock | None = None
) -> Member:
    membership = Membership(node_id, clock or FakeClock(), timing)
    return Member(
        table, membership, link=f"127.0.0.1:{1900 + ord(node_id[0])}", gateway=f"ws://{node_id}:8765"
    )


def step(m: Member, seconds: float = 1.0) -> list[Effect]:
    """One period later on this node's clock, and what it brought."""
    clock = m.membership.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)
    return m.step()


def ring(*nodes: Node) -> Ring:
    return Ring(frozenset(nodes))


def backdate(node_id: str, seconds: int) -> None:
    """As if ``node_id`` had written no heartbeat for ``seconds``: its row stamped that long ago."""
    NodeRecord.update(heartbeat=pw.SQL(f"now() - interval '{seconds} seconds'")).where(
        NodeRecord.node_id == node_id
    ).execute()


def status(node_id: str) -> tuple[int, str]:
    record = NodeRecord.get_by_id(node_id)
    return record.epoch, record.status


def row(table: MembershipTable, node_id: str) -> Row:
    """The table's row for ``node_id`` now, as a node reads it."""
    return next(r for r in table.read().rows if r.node.node_id == node_id)


def three(table: MembershipTable) -> tuple[Member, Member, Member]:
    a, b, c = (member(table, n) for n in "abc")
    for m in (a, b, c):
        m.start()
    for m in (a, b, c):
        step(m)  # a heartbeat and a read: each sees the others
    return a, b, c


def test_nodes_that_join_and_heartbeat_see_each_other(table: MembershipTable) -> None:
    a, b, c = (member(table, n) for n in "abc")
    assert a.start() == [RingChanged(ring(A1))]
    assert b.start() == [RingChanged(ring(B1)), Joined(row(table, "a")), RingChanged(ring(A1, B1))]
    c.start()
    for m in (a, b, c):
        step(m)
    assert [m.membership.ring() for m in (a, b, c)] == [ring(A1, B1, C1)] * 3
    assert {row.node: (row.link, row.gateway) for row in table.live()} == {
        A1: ("127.0.0.1:1997", "ws://a:8765"),
        B1: ("127.0.0.1:1998", "ws://b:8765"),
        C1: ("127.0.0.1:1999", "ws://c:8765"),
    }
    seen = a.membership.row("c")  # where a finds c's link and gateway
    assert seen is not None and (seen.link, seen.gateway) == ("127.0.0.1:1999", "ws://c:8765")
    for _ in range(3):  # heartbeats go on; nothing changes
        assert [step(m) for m in (a, b, c)] == [[], [], []]


def test_a_node_that_misses_heartbeats_is_declared_dead_by_the_others(table: MembershipTable) -> None:
    a, b, c = three(table)
    backdate("c", 10)  # c stopped writing ten seconds ago (it is not stepped)
    assert step(a) == [Died(C1, "3 heartbeats missed"), RingChanged(ring(A1, B1))]
    assert status("c") == (1, DEAD)  # a marked it, conditional on its epoch
    assert step(b) == [Died(C1, "its row says dead"), RingChanged(ring(A1, B1))]

    # c wakes up (paused, or cut off from the others): its heartbeat is refused, it stops owning,
    # and rejoins with a new epoch.
    key = next(k for k in (("user", i) for i in range(1, 100)) if ring(A1, B1, C1).owner(k) == C1)
    woke = step(c)
    assert woke[0] == Fenced(C1, "our heartbeat was refused: declared dead, or superseded")
    assert woke[1] == RingChanged(ring(A1, B1))
    assert woke[2] == RingChanged(ring(A1, B1, C2))
    assert status("c") == (2, ACTIVE)
    assert step(a)[-1] == step(b)[-1] == RingChanged(ring(A1, B1, C2))
    assert not c.membership.ring().owns(C1, key)  # the old incarnation owns nothing...
    assert c.membership.ring().owns(C2, key)  # ...the new one gets its keys back


def test_a_stale_process_is_fenced_after_its_node_rejoins(table: MembershipTable) -> None:
    a, b, stale = three(table)
    fresh = member(table, "c")  # c restarted while the old process hung
    assert fresh.start()[0] == RingChanged(ring(C2))
    assert status("c") == (2, ACTIVE)
    assert step(a)[:2] == [Died(C1, "a newer epoch joined"), Joined(row(table, "c"))]
    assert a.membership.ring() == ring(A1, B1, C2)

    woke = step(stale)
    assert woke[0] == Fenced(C1, "our heartbeat was refused: declared dead, or superseded")
    assert Superseded(C1) in woke  # it does not rejoin: that would fence the fresh process
    assert not stale.membership.owning()
    assert status("c") == (2, ACTIVE)
    assert step(fresh) == []  # its heartbeats are accepted: it is the member
    assert fresh.membership.ring() == ring(A1, B1, C2)
    assert step(stale, 10.0) == []  # stays out


def test_a_dead_letter_kills_at_once_and_marking_is_conditional_on_the_epoch(table: MembershipTable) -> None:
    a, b, c = three(table)
    assert a.dead_letter(C1) == [Died(C1, "a dead letter on its link"), RingChanged(ring(A1, B1))]
    assert status("c") == (1, DEAD)
    assert table.join("c", "l", "g") == 2
    assert not table.mark_dead(C1)  # the old incarnation: the new row is untouched
    assert not table.heartbeat(C1)
    assert status("c") == (2, ACTIVE)
    assert table.heartbeat(C2)


def test_a_node_that_leaves_is_dropped_at_the_next_read(table: MembershipTable) -> None:
    a, b, c = three(table)
    assert c.leave() == [RingChanged(ring(A1, B1))]
    assert status("c") == (1, LEFT)
    assert step(a, 0.25) == []  # not a period yet: no read
    assert step(a, 0.75) == [Died(C1, "its row says left"), RingChanged(ring(A1, B1))]
    c2 = member(table, "c")
    c2.start()
    assert status("c") == (2, ACTIVE)  # the epoch survives a leave


def test_concurrent_joins_get_distinct_epochs(table: MembershipTable) -> None:
    count = 8
    barrier = threading.Barrier(count * 2)
    epochs: dict[str, list[int]] = {"same": [], "own": []}
    errors: list[BaseException] = []

    def join(node_id: str, into: str) -> None:
        try:
            barrier.wait(timeout=30)
            epochs[into].append(table.join(node_id, "link", "gateway"))
        except BaseException as exc:  # reported below, never lost in the thread
            errors.append(exc)
        finally:
            table.close()  # this thread's connection

    threads = [threading.Thread(target=join, args=("same", "same")) for _ in range(count)]
    threads += [threading.Thread(target=join, args=(f"own-{i}", "own")) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(epochs["same"]) == list(range(1, count + 1))  # one id: each join its own epoch
    assert epochs["own"] == [1] * count  # epochs count per node id
    assert status("same") == (count, ACTIVE)  # the last join holds the row; the others are fenced


def test_members_on_real_time_drop_a_silent_node(
    table: MembershipTable, wait_until: Callable[..., Any]
) -> None:
    # Dead when the newest heartbeat is 1.75 s old: short for a test, long enough for a busy machine.
    timing = Timing(period=0.5, missed=3, grace=0.25)
    silent = member(table, "c", timing, MonotonicClock())
    silent.start()  # joins, then never writes again
    stop = threading.Event()
    rings: dict[str, list[Ring]] = {"a": [], "b": []}

    def record(node_id: str) -> Callable[[list[Effect]], None]:
        def on_effects(effects: list[Effect]) -> None:
            rings[node_id] += [e.ring for e in effects if isinstance(e, RingChanged)]

        return on_effects

    runners = [
        threading.Thread(target=member(table, n, timing, MonotonicClock()).run, args=(stop, record(n)))
        for n in "ab"
    ]
    for t in runners:
        t.start()
    try:

        def latest_ids(node_id: str) -> tuple[str, ...]:
            return rings[node_id][-1].node_ids if rings[node_id] else ()

        wait_until(
            lambda: latest_ids("a") == latest_ids("b") == ("a", "b"),
            timeout=20,
            what="both running nodes to drop the silent one, and keep each other",
        )
        assert any("c" in r.node_ids for r in rings["a"] + rings["b"])  # it was seen alive first
        wait_until(lambda: status("c")[1] == DEAD, timeout=10, what="the silent node marked dead")
    finally:
        stop.set()
        for t in runners:
            t.join(timeout=10)
    assert [t.is_alive() for t in runners] == [False, False]
    assert {status(n)[1] for n in "ab"} == {LEFT}  # each left on the way out


class CutOff(MembershipTable):
    """The real table, until ``down`` is set: then every call fails as a lost database does."""

    down = False

    def __getattribute__(self, name: str) -> Any:
        if name in ("join", "heartbeat", "read", "mark_dead", "leave") and object.__getattribute__(
            self, "down"
        ):
            raise StorageUnavailable("database unavailable: cut off by the test")
        return object.__getattribute__(self, name)


def test_a_member_cut_off_from_the_database_stops_owning_within_its_lease(
    pg_url: str, table: MembershipTable
) -> None:
    cut = CutOff(pg_url)
    a = member(cut, "a")
    a.start()
    cut.down = True
    assert step(a) == [] and step(a) == []  # heartbeats fail; the lease (3 s from the join) holds
    assert a.membership.owning()
    assert step(a) == [Fenced(A1, "no heartbeat accepted for 3 s"), RingChanged(Ring())]
    assert not a.membership.owning()
    assert step(a) == []  # reads and joins fail too: it waits, owning nothing
    cut.down = False
    assert step(a) == [RingChanged(ring(Node("a", 2)))]  # the database is back: a new epoch


def test_clustering_on_sqlite_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    with pytest.raises(ClusterNeedsPostgres, match="clustering needs PostgreSQL") as raised:
        MembershipTable(url)
    assert isinstance(raised.value, ChatError) and isinstance(raised.value, ValueError)
    assert not (tmp_path / "chat.db").exists()  # refused before anything was opened
    for other in ("mysql://localhost/chat", "chat.db", ""):
        with pytest.raises(ClusterNeedsPostgres):
            check_postgres(other)
    check_postgres("postgresql://localhost/chat")  # accepted, unopened
    check_postgres("postgres+pool://localhost/chat")


def test_a_row_dead_for_long_is_no_longer_read_but_its_epoch_counts_on(table: MembershipTable) -> None:
    """A cluster of processes with fresh ids reads the rows it needs, not every process it ever ran."""
    from chatactors.cluster.membership_table import FORGET_AFTER

    for node_id in ("old", "gone", "alive", "late"):
        table.join(node_id, "l", "g")
    table.mark_dead(Node("old", 1))
    table.leave(Node("gone", 1))
    for node_id in ("old", "gone", "alive"):
        backdate(node_id, FORGET_AFTER + 60)
    backdate("late", FORGET_AFTER - 60)
    table.mark_dead(Node("late", 1))  # dead, but not for long yet
    rows = {r.node.node_id: r.status for r in table.read().rows}
    # An active row is read however old its heartbeat (a reader marks it dead); a recent dead one too.
    assert rows == {"alive": ACTIVE, "late": DEAD}
    assert table.join("old", "l", "g") == 2  # the row was kept: its id's next epoch
    assert {r.node for r in table.read().rows if r.node.node_id == "old"} == {Node("old", 2)}


def test_a_join_whose_commit_reply_is_lost_takes_one_epoch(pg_url: str) -> None:
    """Joining writes (a new epoch): a COMMIT whose reply is lost is settled, not run again, so the
    node gets the epoch it committed and the row does not skip one."""
    from pg_proxy import PgProxy

    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    close_database(pg_url)
    with PgProxy(pg_url) as proxy:
        table = MembershipTable(proxy.url)
        try:
            table.create_schema()
            assert table.join("a", "127.0.0.1:1", "ws://a") == 1
            proxy.arm("reply")
            assert table.join("a", "127.0.0.1:1", "ws://a") == 2
            assert proxy.fired.is_set()
            assert [r.epoch for r in NodeRecord.select()] == [2]
        finally:
            table.close()
            close_database(proxy.url)
