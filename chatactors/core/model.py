"""Value types shared by every layer, and the names the actor protocol is typed with."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal, NewType

Address = NewType("Address", object)
"""Where an actor can be reached: a Thespian ``ActorAddress``, opaque everywhere else (the core never
imports Thespian). A distinct type so that an id, a message or a name passed where an address belongs
is a type error; Thespian's own calls are untyped, so what they return needs no cast. Addresses
cannot be hashed: tables key them by ``str``."""

Kind = Literal["user", "room"]
"""What a virtual actor is; the directory knows each one as ``(kind, id)``."""

RoomAction = Literal["create", "join", "leave"]
"""What a user asks of a room by name (``Session.create_room``/``join``/``leave``)."""


class Status(StrEnum):
    """A message's status: only moves forward (:func:`advance`). The values are what the database
    stores and what the WebSocket protocol sends; a member equals, formats and serializes as its value,
    and its ``repr`` is the value's too, so a ``Message`` reads as it always has."""

    ENVIADO = "enviado"  # stored; the recipient was offline
    ENTREGADO = "entregado"  # reached at least one live session of the recipient
    LEIDO = "leido"  # the recipient confirmed reading it

    def __repr__(self) -> str:
        return repr(self.value)


# The roadmap's names for the statuses, kept as module constants (``from chatactors import LEIDO``).
ENVIADO = Status.ENVIADO
ENTREGADO = Status.ENTREGADO
LEIDO = Status.LEIDO

STATUSES = tuple(Status)
_RANK = {status: rank for rank, status in enumerate(STATUSES)}


def advance(current: Status, new: Status) -> Status:
    """A message's status only moves forward: a late 'entregado' never undoes 'leido'."""
    return new if _RANK[new] > _RANK[current] else current


REPR_WIDTH = 100  # a Message's repr fits one terminal line: a REPL list of them stays readable
NAME_WIDTH = 20  # a name in that repr; usernames are at most 32 characters, room names 128


# Bidirectional overrides and isolates: shown raw they reorder the rest of the line ("Trojan Source").
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(c: str) -> bool:
    return c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp")


def terminal_safe(text: str) -> str:
    """``text`` safe to write to a terminal: control characters (ESC, BEL, CR, newline, C1 such as
    CSI), line separators and bidi overrides escaped as ``repr`` shows them, so a message body from
    another user can neither send escape sequences nor break or reorder the line. Emoji, accents and
    joiners stay as they are."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(repr(c)[1:-1] if _unsafe(c) else c for c in text)


def one_line(text: str, width: int) -> str:
    """``text`` as one line of at most ``width`` characters: newlines and other unprintable characters
    escaped (as ``repr`` shows them), the rest cut with an ellipsis."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One chat message as users see it; ``room`` is set for group messages, else ``recipient_id``.

    Its ``repr`` is one short line, ``<Message #12 ana→juan "hola…" entregado>``: every field is an
    attribute (``m.sent_at``, ``m.body``), the repr is what a REPL prints of a list of messages.
    """

    id: int
    sender_id: int
    sender: str
    recipient_id: int | None
    room: str | None
    body: str
    sent_at: datetime
    status: Status
    recipient: str | None = None

    def with_status(self, status: Status) -> Message:
        return replace(self, status=advance(self.status, status))

    def __str__(self) -> str:
        # What a REPL's echo prints when a message arrives: another user's body, made terminal-safe.
        if self.room is not None:
            return f"[{self.room}] {self.sender}: {terminal_safe(self.body)}"
        return f"[{self.sender} -> {self.recipient}] {terminal_safe(self.body)}"

    def __repr__(self) -> str:
        to = f"#{self.room}" if self.room is not None else self.recipient or f"user:{self.recipient_id}"
        head = f"<Message #{self.id} {one_line(self.sender, NAME_WIDTH)}→{one_line(to, NAME_WIDTH)}"
        tail = f" {self.status}>"
        body = one_line(self.body, REPR_WIDTH - len(head) - len(tail) - 3)  # 3: a space, two quotes
        return f'{head} "{body}"{tail}'


@dataclass(frozen=True, slots=True)
class Only:
    """Narrows a read: one person's direct messages, or one room's, up to a message id."""

    sender_id: int | None = None
    room_id: int | None = None
    up_to: int | None = None
    ids: tuple[int, ...] | None = None  # exactly these (a room's cursor still moves up to them)


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str


@dataclass(frozen=True, slots=True)
class RoomInfo:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class SearchResults:
    """Users and rooms whose names start with a prefix (``Session.search``), each sorted by name."""

    users: tuple[UserInfo, ...]
    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as ``Session.rooms()`` lists it."""

    name: str
    members: int
    unread: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A status change of messages one sent, pushed to the sender's live sessions."""

    message_ids: tuple[int, ...]
    status: Status
    by: str
    by_id: int

    def __str__(self) -> str:
        ids = ", ".join(str(i) for i in self.message_ids)
        return f"[{self.by} {self.status}: {ids}]"


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """Messages this user just read, pushed to all their sessions: a badge cleared on one device
    clears on the others."""

    message_ids: tuple[int, ...]

    def __str__(self) -> str:
        return f"[read: {', '.join(str(i) for i in self.message_ids)}]"


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    """A session token was revoked (a logout): every session that holds it ends. It names the token's
    hash, so the token itself never travels in a push."""

    token_hash: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store: to a user (``recipient``) or to a room."""

    sender: UserInfo
    recipient: UserInfo | None
    room: RoomInfo | None
    body: str
    client_id: str | None
    status: Status
