"""Read receipts: one user's read, from the request to the answer, across the actors that record it.

A read fetches the reader's unread messages (:class:`Fetch`), then has them confirmed: the user of
each direct message's sender records them and tells the sender (:class:`Confirm`, one per sender),
and each room moves the reader's cursor (:class:`Advance`, one per room). Each of these parts
acknowledges (:meth:`ReadSaga.acked`); once the last one is in, the reader is answered and all
their sessions are told what was read (:class:`PushRead`): a badge cleared on one device clears on
the others. A part that failed fails the read, once every part has answered.

Reads run one at a time, the others queued in arrival order: two reads in flight would fetch the
same unread messages, and both would return them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.core.model import LEIDO, Address, Kind, Message, Only, ReadEvent
from chatactors.core.replies import Answer, Refuse
from chatactors.core.rooms import Memberships
from chatactors.errors import ChatError, NotAMember

Part = tuple[Kind, int]  # ("user", sender id) or ("room", room id): one confirmation a read waits for


@dataclass(frozen=True)
class Query:
    """What to read: all that is unread, or one person's direct messages, or one room's; up to a
    message id, or exactly some ids."""

    with_user: int | None = None
    room: str | None = None
    up_to: int | None = None
    ids: tuple[int, ...] | None = None


# -- effects ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fetch:
    """Ask the database for the reader's unread messages that ``only`` selects; it answers
    :meth:`ReadSaga.fetched` with ``token``."""

    token: int
    only: Only


@dataclass(frozen=True)
class Confirm:
    """Tell user ``sender_id`` that the reader read ``message_ids``; it acks part ("user", sender_id)."""

    sender_id: int
    message_ids: tuple[int, ...]
    token: int


@dataclass(frozen=True)
class Advance:
    """Tell room ``room_id`` to move the reader's cursor to ``up_to``; it acks part ("room", room_id)."""

    room_id: int
    up_to: int
    token: int


@dataclass(frozen=True)
class PushRead:
    """Tell ``sink``, which holds sessions of the reader, what they just read."""

    sink: Address
    event: ReadEvent


Effect = Fetch | Confirm | Advance | PushRead | Answer | Refuse


@dataclass
class _Read:
    request: Any
    sinks: tuple[Address, ...]  # the reader's sessions, told what was read
    messages: tuple[Message, ...] = ()
    waiting: frozenset[Part] = frozenset()
    error: ChatError | None = None


class ReadSaga:
    """One user's reads; :class:`Fetch`, :class:`Confirm` and :class:`Advance` each owe it a reply."""

    def __init__(self, rooms: Memberships) -> None:
        self.rooms = rooms  # the reader's rooms, as they are when a read starts
        self.reads: dict[int, _Read] = {}
        self.queued: list[tuple[Any, Query, tuple[Address, ...]]] = []
        self._tokens = 0

    @property
    def busy(self) -> bool:
        """A read is in progress: the activation does not retire before it is answered."""
        return bool(self.reads)

    def read(self, request: Any, query: Query, sinks: tuple[Address, ...]) -> list[Effect]:
        """A read request; ``sinks`` hold the reader's sessions."""
        room = self.rooms.get(query.room) if query.room is not None else None
        if query.room is not None and room is None:
            return [Refuse(request, NotAMember(f"you are not in {query.room!r}"))]
        if self.reads:
            self.queued.append((request, query, sinks))
            return []
        only = Only(
            sender_id=query.with_user,
            room_id=room.id if room is not None else None,
            up_to=query.up_to,
            ids=query.ids,
        )
        self._tokens += 1
        self.reads[self._tokens] = _Read(request, sinks)
        return [Fetch(self._tokens, only)]

    def fetched(self, token: int, messages: tuple[Message, ...], error: ChatError | None) -> list[Effect]:
        """The database's answer to :class:`Fetch`: the messages now to confirm."""
        read = self.reads.get(token)
        if read is None:
            return []  # failed meanwhile (a core actor restarted)
        if error is not None or not messages:
            read.error = error
            return self._finish(token)
        read.messages = messages
        direct: dict[int, list[int]] = {}
        rooms: dict[int, int] = {}
        by_name = {r.name: r.id for r in self.rooms.rooms.values()}  # as stored: a message carries it so
        for m in messages:
            if m.room is None:
                direct.setdefault(m.sender_id, []).append(m.id)
            elif m.room in by_name:
                rooms[by_name[m.room]] = max(rooms.get(by_name[m.room], 0), m.id)
        read.waiting = frozenset([("user", s) for s in direct] + [("room", r) for r in rooms])
        effects: list[Effect] = [Confirm(s, tuple(ids), token) for s, ids in direct.items()]
        effects += [Advance(room_id, up_to, token) for room_id, up_to in rooms.items()]
        if not read.waiting:
            effects += self._finish(token)
        return effects

    def acked(self, token: int, part: Part, error: ChatError | None) -> list[Effect]:
        """A :class:`Confirm` or :class:`Advance` is recorded, or failed with ``error``."""
        read = self.reads.get(token)
        if read is None:
            return []  # late: the read was answered or failed already
        read.waiting = read.waiting - {part}
        if error is not None:
            read.error = error
        if read.waiting:
            return []
        return self._finish(token)

    def _finish(self, token: int) -> list[Effect]:
        read = self.reads.pop(token)
        effects: list[Effect] = []
        if read.error is not None:
            effects.append(Refuse(read.request, read.error))
        else:
            effects.append(Answer(read.request, tuple(m.with_status(LEIDO) for m in read.messages)))
            if read.messages:
                event = ReadEvent(tuple(m.id for m in read.messages))
                effects += [PushRead(sink, event) for sink in read.sinks]
        while self.queued and not self.reads:  # one refused at its start lets the next one go
            effects += self.read(*self.queued.pop(0))
        return effects

    def fail_all(self, error: ChatError) -> list[Effect]:
        """Answer every read in progress or queued with ``error``."""
        effects: list[Effect] = [Refuse(read.request, error) for read in self.reads.values()]
        effects += [Refuse(request, error) for request, _, _ in self.queued]
        self.reads, self.queued = {}, []
        return effects
