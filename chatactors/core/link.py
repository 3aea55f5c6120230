"""The node link's rules, one peer at a time: batches, acknowledgements, and giving up.

A node's messages to one peer leave in batches, one batch in flight at a time (stop and wait). What
is queued while a batch waits for its ack goes in the next batch, so under load a frame carries many
messages and its cost (0.14-0.23 ms of CPU a batch, both ends, docs/cluster.md) is shared; idle, a
message leaves at once. A batch that is not acknowledged in ``ack_timeout`` is sent again (the same
number: the receiver drops a repeat but acknowledges it); after ``attempts`` sends the peer is
unreachable, and every message not acknowledged is handed back so the node can route it again
once the ring has changed, or after a wait (the shell says whether the peer looks gone). Not acknowledged is not "not delivered": a peer that took a
batch and died before its ack left did deliver it. The link is at least once; what it carries must
be safe to apply twice (a chat message is stored once per ``client_id``).

The receiver's side is :class:`Inbox`: it accepts each batch number once per sender incarnation.
Nothing here knows of threads or sockets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from chatactors.core.clock import Clock, MonotonicClock

ACK_TIMEOUT = 1.0  # seconds: a loaded peer answers in milliseconds; a dead one never
ATTEMPTS = 3  # sends of one batch before the peer is unreachable (3 s: within the 5 s a death may take)
MAX_BATCH = 1000  # messages a frame carries at most


@dataclass(frozen=True)
class Send:
    """Send (or send again) batch ``seq``."""

    seq: int
    messages: tuple[Any, ...]
    attempt: int


@dataclass(frozen=True)
class Unreachable:
    """The peer did not acknowledge these messages (in order): some may have arrived all the same."""

    messages: tuple[Any, ...]


Effect = Send | Unreachable


@dataclass
class _InFlight:
    seq: int
    messages: tuple[Any, ...]
    sent_at: float
    attempt: int


@dataclass
class Outbox:
    """What this node owes one peer."""

    clock: Clock = field(default_factory=MonotonicClock)
    ack_timeout: float = ACK_TIMEOUT
    attempts: int = ATTEMPTS
    max_batch: int = MAX_BATCH
    queued: deque[Any] = field(default_factory=deque)
    in_flight: _InFlight | None = None
    next_seq: int = 1
    closed: bool = False  # unreachable: nothing more is sent, whatever is put is handed back

    def put(self, message: Any) -> list[Effect]:
        if self.closed:
            return [Unreachable((message,))]
        self.queued.append(message)
        return self._next()

    def acked(self, seq: int) -> list[Effect]:
        """An ack: for the batch in flight, the next batch goes; a late one for an older is ignored."""
        if self.in_flight is None or seq != self.in_flight.seq:
            return []
        self.in_flight = None
        return self._next()

    def tick(self) -> list[Effect]:
        """Time passed: an overdue batch is sent again, or the peer is given up."""
        flight = self.in_flight
        if flight is None or self.clock.now() - flight.sent_at < self.ack_timeout:
            return []
        if flight.attempt < self.attempts:
            flight.attempt += 1
            flight.sent_at = self.clock.now()
            return [Send(flight.seq, flight.messages, flight.attempt)]
        return self.give_up()

    def give_up(self) -> list[Effect]:
        """The peer is gone (the batch timed out, or membership says so): hand back all it was owed."""
        undelivered = (*(self.in_flight.messages if self.in_flight else ()), *self.queued)
        self.in_flight, self.queued, self.closed = None, deque(), True
        return [Unreachable(undelivered)] if undelivered else []

    def deadline(self) -> float | None:
        """When :meth:`tick` has work: the in-flight batch's timeout."""
        return None if self.in_flight is None else self.in_flight.sent_at + self.ack_timeout

    def _next(self) -> list[Effect]:
        if self.in_flight is not None or not self.queued:
            return []
        count = min(len(self.queued), self.max_batch)
        messages = tuple(self.queued.popleft() for _ in range(count))
        self.in_flight = _InFlight(self.next_seq, messages, self.clock.now(), 1)
        self.next_seq += 1
        return [Send(self.in_flight.seq, messages, 1)]


@dataclass
class Inbox:
    """Batches received, per sender incarnation: each is delivered once, in order, and always acked."""

    last: dict[tuple[str, int], int] = field(default_factory=dict)

    def accept(self, node: str, epoch: int, seq: int) -> bool:
        """True if batch ``seq`` from ``node`` (incarnation ``epoch``) is new: deliver it. A repeat
        (its ack was lost) is False: acknowledge it again, deliver nothing."""
        key = (node, epoch)
        if seq <= self.last.get(key, 0):
            return False
        self.last[key] = seq
        return True
