"""A node's cluster side: its membership and its link, put together; who owns what, and a way there.

The membership runs on a thread of its own (``Member.run``), the link on its threads; this class
joins them: the link's address goes into the node's row, rows that join tell the link where each
peer listens, a peer the link says is gone (its address refuses connections, or ~9 s unanswered)
is reported to the membership as a dead letter (so it leaves the ring at once, not after three
missed heartbeats; one that only timed out once is left to them), and a node that died is dropped from
the link, which hands back what it still owed. What a message *is* and where it goes next is the
caller's: ``on_message`` gets what peers sent, ``on_undelivered`` what could not be delivered.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from chatactors.cluster.link import Link
from chatactors.cluster.member import TICKS_PER_PERIOD, Member
from chatactors.cluster.membership_table import MembershipTable, check_postgres
from chatactors.core.membership import (
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
from chatactors.core.registry import Key
from chatactors.core.ring import Node, Ring

log = logging.getLogger("chatactors.cluster")

OnMessage = Callable[[str, Any], None]
"""``(node_id, message)``: a message a peer sent, in that peer's order (on the link's thread)."""
OnUndelivered = Callable[[str, tuple[Any, ...]], None]
"""``(node_id, messages)``: not acknowledged by that node (gone, or unknown): route them again."""

START_TIMEOUT = 10.0  # seconds to wait for our own row to be in


class ClusterNode:
    """``start()`` joins the cluster, ``stop()`` leaves it. Thread-safe to read and to send."""

    def __init__(
        self,
        database_url: str,
        node_id: str,
        gateway: str,
        on_message: OnMessage,
        on_undelivered: OnUndelivered,
        *,
        timing: Timing | None = None,
        on_ring: Callable[[Ring], None] | None = None,
        report: Callable[[], tuple[int, float]] | None = None,
    ) -> None:
        check_postgres(database_url)  # ClusterNeedsPostgres before anything starts
        self.database_url, self.node_id, self.gateway = database_url, node_id, gateway
        self.on_message, self.on_undelivered, self.on_ring = on_message, on_undelivered, on_ring
        self.report = report
        self.timing = timing or Timing()
        self.ring = Ring()
        self.superseded = False
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in = threading.Event()  # our own row is in: we are in the ring
        self._seen = threading.Event()  # and every other live node has seen it (seen_by_all)
        self._thread: threading.Thread | None = None
        # The link numbers its batches per incarnation of this process, not per membership epoch
        # (which it does not know yet: the row that gets the epoch carries the link's address).
        self.link = Link(node_id, secrets.randbits(62), self._received, self._unreachable)
        self.member: Member | None = None

    @property
    def me(self) -> Node | None:
        return self.member.membership.me if self.member is not None else None

    def start(self) -> None:
        """Join, and return once every other live node has seen this one (``seen_by_all``).

        Until their next read of the table the nodes already there own every key. Had this node
        served clients meanwhile, a session here would attach to it as its user's owner while they
        still routed that user's messages to themselves: pushes lost (stored, seen only at the next
        login). So a node that joins others waits until each has stamped two heartbeats since its
        row went in (one to two periods); the first node of a cluster has no one to wait for. What
        moves at their ring change is then only what they hold: their sessions go to the new owner
        (Reattach). Raises TimeoutError if our row is not in within START_TIMEOUT (past it with our
        row in, a node still silent is only logged), RuntimeError if a newer process took our id."""
        address = self.link.start()
        table = MembershipTable(self.database_url)
        table.create_schema()
        self.member = Member(table, Membership(self.node_id, timing=self.timing), address, self.gateway)
        if self.report is not None:
            self.member.report = self.report
        self._thread = threading.Thread(
            target=self.member.run,
            args=(self._stop, self._effects),
            name=f"member-{self.node_id}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._seen.wait(self.timing.period / TICKS_PER_PERIOD):
            if self.superseded:
                self.stop()
                raise RuntimeError(
                    f"node {self.node_id} was superseded while joining: a newer process has its id"
                )
            if time.monotonic() < deadline:
                continue
            if not self._in.is_set():
                self.stop()
                raise TimeoutError(f"node {self.node_id} could not join the cluster in {START_TIMEOUT:g} s")
            log.warning("node %s: not every node has read the table since it joined", self.node_id)
            break
        log.info("node %s serves in a ring of %s", self.node_id, ", ".join(self.ring.node_ids))

    def stop(self) -> None:
        """Leave (our row says so at once: the others drop us on their next read), stop the link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.link.stop()

    # -- ownership and sending ------------------------------------------------------------------
    def owner(self, key: Key) -> str | None:
        """The id of the node that owns ``key`` now; None while the ring is empty."""
        ring = self.ring
        return ring.owner(key).node_id if len(ring) else None

    def owns(self, key: Key) -> bool:
        """Whether this node owns ``key`` now and is within its lease (a fenced node owns nothing)."""
        me, member = self.me, self.member
        return bool(me and member and member.membership.owning() and self.ring.owns(me, key))

    def send(self, node_id: str, message: Any) -> None:
        """Queue ``message`` for ``node_id``; a node not (or no longer) in the ring gets nothing, and
        the message is handed to ``on_undelivered`` at once."""
        with self._lock:
            row = self._rows.get(node_id)
        if row is None:
            self.on_undelivered(node_id, (message,))
            return
        self.link.send(node_id, row.link, message)

    def nodes(self) -> list[Row]:
        """The other live nodes' rows (their link, their gateway), by id."""
        with self._lock:
            return sorted(self._rows.values(), key=lambda row: row.node.node_id)

    # -- what the membership and the link report ---------------------------------------------------
    def _effects(self, effects: list[Effect]) -> None:
        """One batch of the member's effects (a step's, none included), on the member's thread.
        ``_in`` and ``_seen`` are set after the whole batch: the join's batch holds the ring of us
        alone and then, after the first read of the table, the ring with the others in it; ``start``
        must see the second, and ``seen_by_all`` is asked here, after our ring is updated."""
        for effect in effects:
            match effect:
                case Joined(row):
                    with self._lock:
                        self._rows[row.node.node_id] = row
                case Died(node, reason):
                    log.warning("node %s (epoch %d) is dead: %s", node.node_id, node.epoch, reason)
                    with self._lock:
                        known = self._rows.get(node.node_id)
                        if known is not None and known.node == node:
                            del self._rows[node.node_id]
                    self.link.forget(node.node_id)
                case RingChanged(ring):
                    self.ring = ring
                    if self.on_ring is not None:
                        self.on_ring(ring)
                case Fenced(node, reason):
                    log.warning("this node (%s, epoch %d) is fenced: %s", node.node_id, node.epoch, reason)
                case Superseded(node):
                    log.error("this node id (%s) was taken by a newer process: stopping", node.node_id)
                    self.superseded = True
                    self._stop.set()
        me = self.me
        if me is not None and me in self.ring.members:
            self._in.set()
            if self.member is not None and self.member.membership.seen_by_all():
                self._seen.set()

    def _received(self, node_id: str, messages: tuple[Any, ...]) -> None:
        for message in messages:
            self.on_message(node_id, message)

    def _unreachable(self, node_id: str, messages: tuple[Any, ...], gone: str | None) -> None:
        """The link's verdict ``gone`` (a refused connection, or ~9 s unanswered) is a dead letter
        for the incarnation at that address: dead at once (not a newer one of the same id, which
        listens elsewhere). A peer that only did not answer in time once is left to the heartbeats
        (dead within 3.5 s if it really is): one observer's timeout is what a stranger flooding its
        link port could cause. The messages wait for the ring either way."""
        with self._lock:
            row = self._rows.get(node_id)
        if gone is not None and row is not None and row.link == gone and self.member is not None:
            self.member.report_dead_letter(row.node)
        self.on_undelivered(node_id, messages)
