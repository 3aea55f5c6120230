"""Group commit: which writes share a transaction, and who is told what once it has committed.

The persistence actor hands every write to :class:`GroupCommit` and performs the effects it returns.
A write queues and asks for one ``ScheduleFlush`` (the actor sends itself a ``Flush``: everything
already in its mailbox joins the batch before it arrives, so a burst is one transaction and a lone
write waits for no timer); a full batch asks for ``FlushNow``. :meth:`GroupCommit.flush` runs the
batch through a :class:`Database` and returns what to tell whom. Nothing is answered, pushed or
acknowledged before the batch has committed.

One bad row never fails the others: a new message is checked against the input rules before it
joins a batch, and a batch the database refuses is run again isolated (new messages in savepoints,
a refused group halved until the refused row fails alone: :func:`isolate`; every other write in a
savepoint of its own). Only a database that fails fails the whole batch, each write with its error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from chatactors.core.model import LEIDO, Address, Kind, Message, NewMessage, Receipt, UserInfo
from chatactors.core.rules import check_body, check_client_id
from chatactors.errors import ChatError, InvalidMessage

log = logging.getLogger("chatactors.persistence")

Fanout = tuple[tuple[Address, tuple[int, ...]], ...]  # (sink, the users it holds sessions of)
R = TypeVar("R")
T = TypeVar("T")


# -- effects ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """Reply ``value`` to request ``req_id`` at ``to``."""

    to: Address | None
    req_id: int
    value: Any


@dataclass(frozen=True)
class Refuse:
    """Fail request ``req_id`` at ``to`` with ``error``."""

    to: Address | None
    req_id: int
    error: ChatError


@dataclass(frozen=True)
class PushTo:
    """Push ``event`` to ``sink``, for its sessions of ``user_ids``."""

    sink: Address
    user_ids: tuple[int, ...]
    event: Message | Receipt


@dataclass(frozen=True)
class Ack:
    """Tell the reader's actor (``to``) that its read of ``part`` is recorded, or failed."""

    to: Address
    token: int
    part: tuple[Kind, int]
    error: ChatError | None = None


@dataclass(frozen=True)
class ScheduleFlush:
    """Send yourself a flush: it arrives after everything already in the mailbox."""


@dataclass(frozen=True)
class FlushNow:
    """The batch is full: flush before taking anything else."""


Effect = Answer | Refuse | PushTo | Ack | ScheduleFlush | FlushNow


# -- writes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Post:
    """A new message: a row of the batch's multi-row insert, pushed along ``fanout`` once stored."""

    new: NewMessage
    req_id: int
    reply_to: Address | None
    fanout: Fanout

    def done(self, result: tuple[Message, bool]) -> list[Effect]:
        message, fresh = result
        effects: list[Effect] = []
        if fresh:  # a retried client_id is answered again, but pushed only once
            effects += [PushTo(sink, user_ids, message) for sink, user_ids in self.fanout]
        return [*effects, Answer(self.reply_to, self.req_id, message)]

    def failed(self, error: ChatError) -> list[Effect]:
        return [Refuse(self.reply_to, self.req_id, error)]


@dataclass(frozen=True)
class DirectRead:
    """``reader`` read ``message_ids`` from ``sender_id``: recorded, then the sender's sinks told."""

    reader: UserInfo
    sender_id: int
    message_ids: tuple[int, ...]
    sinks: tuple[Address, ...]
    ack_to: Address
    token: int

    @property
    def part(self) -> tuple[Kind, int]:
        return ("user", self.sender_id)

    def apply(self, db: Database) -> object:
        return db.mark_read(self)

    def done(self, result: object) -> list[Effect]:
        receipt = Receipt(self.message_ids, LEIDO, self.reader.username, self.reader.id)
        pushes: list[Effect] = [PushTo(sink, (self.sender_id,), receipt) for sink in self.sinks]
        return [*pushes, Ack(self.ack_to, self.token, self.part)]

    def failed(self, error: ChatError) -> list[Effect]:
        return [Ack(self.ack_to, self.token, self.part, error)]


@dataclass(frozen=True)
class RoomRead:
    """``reader``'s cursor in ``room_id`` moves to ``up_to``; the senders of what every member has
    now read are told, on the sinks of ``fanout`` that hold their sessions."""

    room_id: int
    reader: UserInfo
    up_to: int
    fanout: Fanout
    ack_to: Address
    token: int

    @property
    def part(self) -> tuple[Kind, int]:
        return ("room", self.room_id)

    def apply(self, db: Database) -> list[tuple[int, int]]:
        return db.mark_room_read(self)

    def done(self, result: list[tuple[int, int]]) -> list[Effect]:
        by_sender: dict[int, list[int]] = {}
        for message_id, sender_id in result:
            by_sender.setdefault(sender_id, []).append(message_id)
        effects: list[Effect] = []
        for sink, user_ids in self.fanout:
            for sender_id in set(user_ids) & set(by_sender):
                receipt = Receipt(tuple(by_sender[sender_id]), LEIDO, self.reader.username, self.reader.id)
                effects.append(PushTo(sink, (sender_id,), receipt))
        return [*effects, Ack(self.ack_to, self.token, self.part)]

    def failed(self, error: ChatError) -> list[Effect]:
        return [Ack(self.ack_to, self.token, self.part, error)]


Write = Post | DirectRead | RoomRead


class Database(Protocol):
    """The database as group commit sees it (``storage.Store``, adapted by the persistence actor)."""

    def transaction(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one transaction. Raises InvalidMessage when the database refused a row
        (everything is rolled back), another ChatError when it failed."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: a row refused inside raises InvalidMessage and is rolled back alone."""
        ...

    def insert(self, rows: list[NewMessage], isolated: bool) -> list[tuple[Message, bool] | InvalidMessage]:
        """One multi-row insert: (message, stored now) per row; ``isolated``, see :func:`isolate`."""
        ...

    def mark_read(self, write: DirectRead) -> object: ...

    def mark_room_read(self, write: RoomRead) -> list[tuple[int, int]]:
        """(message id, sender id) of what every member has now read."""
        ...


def isolate(rows: Sequence[R], attempt: Callable[[Sequence[R]], list[T]]) -> list[T | InvalidMessage]:
    """Run ``attempt`` (rows in a savepoint, raising InvalidMessage when refused) on all ``rows``,
    halving a refused group until the refused row fails alone: a batch with one bad row costs about
    2 log2(n) savepoints, not n. Left half first, so a row repeated in the batch (a client_id) is
    stored by its first occurrence and found by the later ones."""
    try:
        return list(attempt(rows))
    except InvalidMessage as exc:
        if len(rows) == 1:
            return [exc]
        middle = len(rows) // 2
        return [*isolate(rows[:middle], attempt), *isolate(rows[middle:], attempt)]


class GroupCommit:
    """The persistence actor's write queue: when to flush, how a batch runs, who is told what."""

    def __init__(self, batch_max: int = 500) -> None:
        self.batch_max = batch_max
        self.pending: list[Write] = []
        self.flush_scheduled = False

    def queue(self, write: Write) -> list[Effect]:
        """Raises InvalidMessage for a new message that breaks an input rule: it never joins a batch
        (checked again here, as a message may come from an actor that skipped the facade)."""
        if isinstance(write, Post):
            check_body(write.new.body)
            check_client_id(write.new.client_id)
        self.pending.append(write)
        if len(self.pending) >= self.batch_max:
            return [FlushNow()]
        if self.flush_scheduled:
            return []
        self.flush_scheduled = True
        return [ScheduleFlush()]

    def flush_arrived(self, db: Database) -> list[Effect]:
        """The scheduled flush: the next write schedules another."""
        self.flush_scheduled = False
        return self.flush(db)

    def flush(self, db: Database) -> list[Effect]:
        """Commit what is queued; the effects say who learns what (in the order the writes came)."""
        if not self.pending:
            return []
        batch, self.pending = self.pending, []
        try:
            try:
                outcomes = db.transaction(lambda: self._apply(db, batch, isolated=False))
            except InvalidMessage as exc:  # a row the database refused: find it
                log.warning("a batch of %d writes was refused (%s); isolating the bad rows", len(batch), exc)
                outcomes = db.transaction(lambda: self._apply(db, batch, isolated=True))
        except ChatError as exc:  # the database itself failed: nothing in the batch is acknowledged
            return [effect for write in batch for effect in write.failed(exc)]
        return self.committed(batch, outcomes)

    @staticmethod
    def committed(batch: Sequence[Write], outcomes: Sequence[Any]) -> list[Effect]:
        """Each write's effects: its result's, or its error's when it failed alone."""
        effects: list[Effect] = []
        for write, outcome in zip(batch, outcomes, strict=True):
            effects += write.failed(outcome) if isinstance(outcome, ChatError) else write.done(outcome)
        return effects

    def _apply(self, db: Database, batch: list[Write], isolated: bool) -> list[Any]:
        """New messages go in as one multi-row insert; the rest one by one, in order, each a result or
        the ChatError it failed alone with."""
        outcomes: list[Any] = [None] * len(batch)
        posts = [(i, w) for i, w in enumerate(batch) if isinstance(w, Post)]
        if posts:
            inserted = db.insert([w.new for _, w in posts], isolated)
            for (i, _), outcome in zip(posts, inserted, strict=True):
                outcomes[i] = outcome
        for i, write in enumerate(batch):
            if not isinstance(write, Post):
                outcomes[i] = self._apply_one(db, write, isolated)
        return outcomes

    @staticmethod
    def _apply_one(db: Database, write: DirectRead | RoomRead, isolated: bool) -> Any:
        """The store checks every rule before it writes anything (see ``Store.mark_room_read``), so a
        refused write leaves nothing to roll back and needs no savepoint (two statements saved per
        write) until the database has refused the batch once."""
        try:
            if not isolated:
                return write.apply(db)
            with db.savepoint():
                return write.apply(db)
        except ChatError as exc:
            return exc
