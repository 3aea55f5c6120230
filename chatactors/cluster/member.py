"""The shell of :class:`~chatactors.core.membership.Membership`: performs its effects on the table.

It runs on a thread of its own in a node (or is stepped by hand in tests): a heartbeat must not
wait behind a busy actor's mailbox, or a loaded node would be declared dead.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

from chatactors.cluster.membership_table import MembershipTable
from chatactors.core.membership import (
    Effect,
    Join,
    Leave,
    MarkDead,
    Membership,
    ReadTable,
    WriteHeartbeat,
)
from chatactors.core.ring import Node
from chatactors.errors import StorageUnavailable

log = logging.getLogger("chatactors.cluster")
TICKS_PER_PERIOD = 4  # how often run() ticks: a due heartbeat is late by a quarter period at most


class Member:
    """One node's membership. ``step``, ``start`` and ``leave`` return the effects for the node
    itself (Joined, Died, RingChanged, Fenced), in order; the table's effects are done already."""

    def __init__(self, table: MembershipTable, membership: Membership, link: str, gateway: str) -> None:
        self.table = table
        self.membership = membership
        self.link = link
        self.gateway = gateway
        self._reported: list[Node] = []  # dead letters from other threads (the link's), for step()
        self._lock = threading.Lock()
        # (sessions, requests per second) written with each heartbeat, for `chatactors status`.
        self.report: Callable[[], tuple[int, float]] = lambda: (0, 0.0)

    def start(self) -> list[Effect]:
        return self.perform(self.membership.start())

    def step(self) -> list[Effect]:
        with self._lock:
            reported, self._reported = self._reported, []
        effects = [e for node in reported for e in self.dead_letter(node)]
        return effects + self.perform(self.membership.tick())

    def report_dead_letter(self, node: Node) -> None:
        """From any thread (the link's): ``node`` stopped answering; the next step acts on it, on
        the membership's own thread."""
        with self._lock:
            self._reported.append(node)

    def leave(self) -> list[Effect]:
        return self.perform(self.membership.leave())

    def dead_letter(self, node: Node) -> list[Effect]:
        return self.perform(self.membership.dead_letter(node))

    def perform(self, effects: Iterable[Effect]) -> list[Effect]:
        """Do the table's effects in order, feeding their results back; first in, first out, so
        the node sees each ring after the one before it."""
        todo, out = deque(effects), list[Effect]()
        while todo:
            effect = todo.popleft()
            try:
                todo.extend(self._do(effect, out))
            except StorageUnavailable:
                todo.extend(self._failed(effect))
        return out

    def _do(self, effect: Effect, out: list[Effect]) -> list[Effect]:
        m = self.membership
        match effect:
            case Join():
                return m.joined(self.table.join(m.node_id, self.link, self.gateway))
            case WriteHeartbeat(node):
                return m.heartbeat_written(self.table.heartbeat(node, *self._report()))
            case ReadTable():
                return m.table_read(self.table.read())
            case MarkDead(node):
                self.table.mark_dead(node)
            case Leave(node):
                self.table.leave(node)
            case _:
                out.append(effect)
        return []

    def _report(self) -> tuple[int, float]:
        try:
            return self.report()
        except Exception:  # a figure for status must never cost a heartbeat
            log.exception("could not read this node's load")
            return 0, 0.0

    def _failed(self, effect: Effect) -> list[Effect]:
        """The database could not be reached: the membership decides what that means (no lease
        renewed, a join retried); a lost MarkDead or Leave is redone by the others' reads."""
        if isinstance(effect, Join):
            return self.membership.join_failed()
        if isinstance(effect, WriteHeartbeat):
            return self.membership.heartbeat_failed()
        return []

    def run(self, stop: threading.Event, on_effects: Callable[[list[Effect]], None]) -> None:
        """Start, then step a few times per period until ``stop`` is set; then leave, and close this
        thread's connection. ``on_effects`` gets every step's effects, none included, so the node
        can look at the membership after each step on this thread."""
        pause = self.membership.timing.period / TICKS_PER_PERIOD
        try:
            on_effects(self.start())
            while not stop.wait(pause):
                on_effects(self.step())
            on_effects(self.leave())
        finally:
            self.table.close()
