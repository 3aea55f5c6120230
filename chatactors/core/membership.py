"""Membership: which nodes are alive, decided by every node alike from a shared heartbeat table.

Orleans' scheme without its votes. Each node writes its own heartbeat to a table in the database
every ``period`` and reads everyone's rows; a row whose heartbeat is ``missed`` periods (plus a grace)
old is dead, and any live node marks it so. A dead letter on a node's link declares it dead at once:
the transport already knows. No node is special: there is no leader to lose.

Epochs fence a stale owner. A node joins with a new epoch (the table's, one more than its last);
a node that learns it was declared dead (its heartbeat refused, or its row marked) stops owning at
once and, after one more read of the table, joins again with a new epoch; a (node, epoch) declared
dead never comes back. If that read shows a newer epoch of its own id alive, another process took
its place while it was paused or cut off: the stale one stops for good (Superseded) instead of
fencing the newer one in turn, so two processes with one id cannot flap.

Two clocks, each for what it can be trusted with:

- Ages come from the database's clock alone (heartbeats stamped with ``now()``, the snapshot read
  with ``now()``), so skew between the nodes' clocks cannot kill a node.
- The node's own schedule and lease come from the injected :class:`Clock`. Others may declare us
  dead no earlier than ``dead_after`` after a heartbeat we sent was stamped; we stop owning ``grace``
  before that, ``lease`` after sending the last heartbeat the table accepted, so two incarnations
  never own a key on missed heartbeats alone. (A dead letter declares a node dead at once: until
  its next heartbeat is refused, at most ``period``, both may act; writes stay exactly-once by the
  database's constraints.)

Timings (defaults): a heartbeat and a read every 1 s; dead when the newest heartbeat is 3.5 s old
(three missed, plus 0.5 s for commit latency and scheduling); seen by every node within one more
read: at most 4.5 s from the last heartbeat to the ring change, under the 5 s asked of a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatactors.core.clock import Clock, MonotonicClock
from chatactors.core.ring import Node, Ring

ACTIVE, DEAD, LEFT = "active", "dead", "left"
IDLE, JOINING, MEMBER, FENCED, GONE = "idle", "joining", "member", "fenced", "gone"


@dataclass(frozen=True, slots=True)
class Timing:
    period: float = 1.0  # seconds between heartbeats, and between reads of the table
    missed: int = 3  # heartbeats missed before a node is dead
    grace: float = 0.5  # slack for commit latency and scheduling; also our lease's margin

    def __post_init__(self) -> None:
        if self.period <= 0 or self.missed < 1 or not 0 <= self.grace < self.period:
            raise ValueError(
                f"bad membership timing {self}: need period > 0, missed >= 1, 0 <= grace < period"
            )

    @property
    def dead_after(self) -> float:
        """The age of the newest heartbeat at which a node is dead."""
        return self.missed * self.period + self.grace

    @property
    def lease(self) -> float:
        """How long after sending an accepted heartbeat a node may keep owning: ``grace`` short of
        the earliest moment another node may declare it dead."""
        return self.missed * self.period

    @property
    def detection(self) -> float:
        """The longest time from a node's last heartbeat to every live node dropping it."""
        return self.dead_after + self.period


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: ``heartbeat`` in seconds on the database's clock."""

    node: Node
    status: str
    heartbeat: float
    link: str = ""
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every row of the table, read at ``at`` seconds on the database's clock."""

    at: float
    rows: tuple[Row, ...]


# -- effects --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Join:
    """Insert our row with a new epoch; report :meth:`Membership.joined` (or ``join_failed``)."""


@dataclass(frozen=True, slots=True)
class WriteHeartbeat:
    """Stamp our row; report :meth:`Membership.heartbeat_written` (or ``heartbeat_failed``)."""

    node: Node


@dataclass(frozen=True, slots=True)
class ReadTable:
    """Read every row; report :meth:`Membership.table_read`."""


@dataclass(frozen=True, slots=True)
class MarkDead:
    """Mark the row dead, only if it still has this epoch (a newer incarnation is not touched)."""

    node: Node


@dataclass(frozen=True, slots=True)
class Leave:
    node: Node


@dataclass(frozen=True, slots=True)
class Joined:
    """Another node is alive: its row says where its link and its gateway are."""

    row: Row


@dataclass(frozen=True, slots=True)
class Died:
    node: Node
    reason: str


@dataclass(frozen=True, slots=True)
class RingChanged:
    ring: Ring


@dataclass(frozen=True, slots=True)
class Fenced:
    """We were declared dead, or could not renew our lease: stop owning now. The next read of the
    table decides what follows: a Join with a new epoch, or Superseded."""

    node: Node
    reason: str


@dataclass(frozen=True, slots=True)
class Superseded:
    """Another process holds our node id with a newer epoch and a live heartbeat: this one is the
    stale one (it was paused, or cut off, and replaced), and stops for good rather than fence the
    newer one in turn."""

    node: Node


Effect = (
    Join | WriteHeartbeat | ReadTable | MarkDead | Leave | Joined | Died | RingChanged | Fenced | Superseded
)


class Membership:
    """One node's view of the cluster. ``tick`` is called often (a few times per period); the
    shell performs each effect and reports the result back as an event."""

    def __init__(self, node_id: str, clock: Clock | None = None, timing: Timing | None = None) -> None:
        self.node_id = node_id
        self.clock: Clock = clock or MonotonicClock()
        self.timing = timing or Timing()
        self.state = IDLE
        self.me: Node | None = None
        self._view: dict[str, Row] = {}  # the other live nodes, by id
        self._buried: dict[str, int] = {}  # per node id, the newest epoch declared dead or gone
        self._pending: Join | WriteHeartbeat | None = None  # sent, not reported yet
        self._sent_at = 0.0
        self._next = 0.0  # when the next Join or WriteHeartbeat is due
        self._lease_until = 0.0
        self._fenced: Node | None = None  # our incarnation that was fenced, until a read decides
        self._seen_from: float | None = None  # when a read first showed us our row (seen_by_all)
        self._stamped: dict[Node, float] = {}  # each node's first heartbeat after _seen_from

    # -- our own row ------------------------------------------------------------------------------
    def start(self) -> list[Effect]:
        if self.state != IDLE:
            return []
        self.state = JOINING
        return self._send(Join())

    def joined(self, epoch: int) -> list[Effect]:
        if self.state != JOINING or not isinstance(self._pending, Join):
            return []
        self._pending = None
        self.state, self.me = MEMBER, Node(self.node_id, epoch)
        self._seen_from, self._stamped = None, {}
        self._lease_until = self._sent_at + self.timing.lease
        self._next = self._sent_at + self.timing.period
        return [RingChanged(self.ring()), ReadTable()]

    def join_failed(self) -> list[Effect]:
        """The database could not be reached: try again a period later."""
        if isinstance(self._pending, Join):
            self._pending = None
        self._next = self._sent_at + self.timing.period
        return []

    def tick(self) -> list[Effect]:
        now, before = self.clock.now(), self.ring()
        effects: list[Effect] = []
        if self.state == MEMBER and now >= self._lease_until:
            effects = self._fence(f"no heartbeat accepted for {self.timing.lease:g} s")
        if self.state == FENCED and now >= self._next:
            self._next = now + self.timing.period
            effects.append(ReadTable())
        elif self.state in (JOINING, MEMBER) and self._pending is None and now >= self._next:
            if self.me is None:
                effects += self._send(Join())
            else:
                effects += [*self._send(WriteHeartbeat(self.me)), ReadTable()]
        return self._with_ring(effects, before)

    def heartbeat_written(self, accepted: bool) -> list[Effect]:
        """``accepted`` is False when our row was marked dead or taken by a newer epoch."""
        if self.state != MEMBER or not isinstance(self._pending, WriteHeartbeat):
            return []  # the answer to a heartbeat of an incarnation fenced meanwhile
        self._pending = None
        if not accepted:
            before = self.ring()
            return self._with_ring(
                self._fence("our heartbeat was refused: declared dead, or superseded"), before
            )
        self._lease_until = max(self._lease_until, self._sent_at + self.timing.lease)
        self._next = self._sent_at + self.timing.period
        return []

    def heartbeat_failed(self) -> list[Effect]:
        """The database could not be reached: the lease is not renewed; try again next period."""
        if isinstance(self._pending, WriteHeartbeat):
            self._pending = None
        self._next = self._sent_at + self.timing.period
        return []

    def leave(self) -> list[Effect]:
        """Leave on purpose (shutdown): the others drop us on their next read, without waiting."""
        me, self.state, self.me = self.me, GONE, None
        if me is None:
            return []
        return [Leave(me), RingChanged(self.ring())]

    def owning(self) -> bool:
        """Whether we may act as an owner right now: a member within its lease. Checked by the owner
        itself, so a node whose heartbeat thread is stuck stops owning on time."""
        return self.state == MEMBER and self.clock.now() < self._lease_until

    # -- the others -------------------------------------------------------------------------------
    def table_read(self, snapshot: Snapshot) -> list[Effect]:
        effects: list[Effect] = []
        before = self.ring()
        rows = {row.node.node_id: row for row in sorted(snapshot.rows, key=lambda r: r.node.epoch)}
        for node_id, row in rows.items():
            if node_id == self.node_id:
                effects += self._check_own(row)
                continue
            known = self._view.get(node_id)
            if known is not None and known.node.epoch < row.node.epoch:
                effects += self._drop(known.node, "a newer epoch joined")
            elif known is not None and known.node == row.node and row.status != ACTIVE:
                effects += self._drop(known.node, f"its row says {row.status}")
            if row.status != ACTIVE:
                continue
            stale = snapshot.at - row.heartbeat >= self.timing.dead_after
            if stale or row.node.epoch <= self._buried.get(node_id, 0):
                if stale and node_id in self._view:
                    effects += self._drop(row.node, f"{self.timing.missed} heartbeats missed")
                self._bury(row.node)
                if self.state == MEMBER:
                    effects.append(MarkDead(row.node))  # conditional on its epoch, so harmless twice
            elif node_id not in self._view:
                self._view[node_id] = row
                effects.append(Joined(row))
            elif self._view[node_id].node == row.node:
                self._view[node_id] = row  # its newest heartbeat, for seen_by_all
        for node_id in [n for n in self._view if n not in rows]:
            effects += self._drop(self._view[node_id].node, "its row is gone")
        if self.state == MEMBER and self._seen_from is None and self.node_id in rows:
            self._seen_from = snapshot.at
        if self._seen_from is not None:
            for row in self._view.values():
                if row.heartbeat > self._seen_from:
                    self._stamped.setdefault(row.node, row.heartbeat)
        if self.state == FENCED:
            effects += self._after_fence(rows.get(self.node_id), snapshot.at)
        return self._with_ring(effects, before)

    def dead_letter(self, node: Node) -> list[Effect]:
        """A message on ``node``'s link came back undelivered: it is dead now (an older incarnation's
        dead letter is ignored)."""
        known = self._view.get(node.node_id)
        if known is None or known.node != node:
            return []
        before = self.ring()
        effects = self._drop(node, "a dead letter on its link")
        if self.state == MEMBER:
            effects.append(MarkDead(node))
        return self._with_ring(effects, before)

    def seen_by_all(self) -> bool:
        """Whether every other live node has read the table since our row was in it and acted on
        what it read, so none of them still owns keys as if we were not there.

        A node's heartbeat stamped after the read that first showed us our row (database clock;
        ``now()`` is a transaction's start, and our row had committed before that read began) says
        its next read will see us: each node reads right after its heartbeat. That read, and the
        ring change it hands to the node, may still be under way; the node's *next* heartbeat comes
        after both (one thread does heartbeat, read, ring change, pause, heartbeat), so each node
        must have stamped twice since. True at once for a node that joins no one."""
        if self.state != MEMBER or self._seen_from is None:
            return False
        return all(
            row.node in self._stamped and row.heartbeat > self._stamped[row.node]
            for row in self._view.values()
        )

    def ring(self) -> Ring:
        nodes = {row.node for row in self._view.values()}
        if self.state == MEMBER and self.me is not None:
            nodes.add(self.me)
        return Ring(frozenset(nodes))

    def row(self, node_id: str) -> Row | None:
        """Another live node's row: where its link and its gateway are."""
        return self._view.get(node_id)

    # -- helpers ----------------------------------------------------------------------------------
    def _send(self, effect: Join | WriteHeartbeat) -> list[Effect]:
        self._pending, self._sent_at = effect, self.clock.now()
        return [effect]

    def _check_own(self, row: Row) -> list[Effect]:
        me = self.me
        if self.state != MEMBER or me is None:
            return []
        if row.node.epoch > me.epoch:
            return self._fence(f"superseded by epoch {row.node.epoch}")
        if row.node == me and row.status != ACTIVE:
            return self._fence(f"our row says {row.status}")
        return []

    def _fence(self, reason: str) -> list[Effect]:
        """Stop owning now; the next read (due at once) decides between a rejoin and Superseded."""
        assert self.me is not None  # only a member is fenced
        self._fenced, self.state, self.me = self.me, FENCED, None
        self._pending, self._next = None, self.clock.now()
        return [Fenced(self._fenced, reason)]

    def _after_fence(self, own: Row | None, at: float) -> list[Effect]:
        fenced = self._fenced
        assert fenced is not None  # set with the FENCED state
        if (
            own is not None
            and own.node.epoch > fenced.epoch
            and own.status == ACTIVE
            and at - own.heartbeat < self.timing.dead_after
        ):
            self.state = GONE
            return [Superseded(fenced)]
        self.state = JOINING
        return self._send(Join())

    def _drop(self, node: Node, reason: str) -> list[Effect]:
        self._bury(node)
        if node.node_id in self._view and self._view[node.node_id].node == node:
            del self._view[node.node_id]
            return [Died(node, reason)]
        return []

    def _bury(self, node: Node) -> None:
        self._buried[node.node_id] = max(node.epoch, self._buried.get(node.node_id, 0))

    def _with_ring(self, effects: list[Effect], before: Ring) -> list[Effect]:
        """``effects`` and one RingChanged if the ring changed. A Join or a ReadTable goes after it,
        so a shell that performs effects in order sees the ring without us before its result does."""
        after = self.ring()
        ring: list[Effect] = [RingChanged(after)] if after != before else []
        later = [e for e in effects if isinstance(e, Join | ReadTable)]
        return [*(e for e in effects if not isinstance(e, Join | ReadTable)), *ring, *later]
