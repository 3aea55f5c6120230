"""Actors and the persistence actor, which owns the database connection.

Sent to the persistence actor by user and room actors (loads, writes, the steps of a read or a room
command) and by itself (``Flush``); answered to the Thespian sender (loads, ``FetchUnread``,
``RoomOp``), to ``ack_to`` (``ReadAck``), or, for a ``Request``, to the edge caller's ``reply_to``.
Writes are answered only once their batch has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatactors.core.commit import Fanout
from chatactors.core.model import Address, Kind, Message, Only, RoomAction, RoomInfo, Status, UserInfo
from chatactors.messages.edge import LoginResult, Request


# -- loading an activation's state (answered to the sender; one load at a time per activation) ----------
@dataclass(frozen=True, slots=True)
class LoadUser:
    user_id: int


@dataclass(frozen=True, slots=True)
class UserLoaded:
    user: UserInfo | None
    rooms: tuple[RoomInfo, ...] = ()
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class LoadRoom:
    room_id: int


@dataclass(frozen=True, slots=True)
class RoomLoaded:
    room: RoomInfo | None
    members: tuple[UserInfo, ...] = ()
    error: Exception | None = None


# -- requests that end here: the caller is answered at reply_to -----------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class LoadInbox(Request):
    """Answered with the inbox, or with ``login`` completed by it (messages waiting become 'entregado')."""

    user_id: int
    login: LoginResult | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreDirect(Request):
    """From the recipient's actor, which chose ``status``: stored, pushed to ``sinks``, answered."""

    sender: UserInfo
    recipient: UserInfo
    body: str
    client_id: str | None
    status: Status
    sinks: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliverWaiting:
    """To the persistence actor, once its queued writes are committed: every message still
    'enviado' to the user (stored while no session of theirs was known) becomes 'entregado', is
    pushed to ``sinks``, and its sender is told."""

    user_id: int
    sinks: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class RelayCatchUp:
    """From a user's actor on a node that no longer owns the user: once the writes it sent before
    are committed, route a ``CatchUp`` to the user's owner (which knows their sessions)."""

    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRoom(Request):
    """From the room's actor, which chose ``status``: stored once, pushed along ``fanout``, answered."""

    room: RoomInfo
    sender: UserInfo
    body: str
    client_id: str | None
    status: Status
    fanout: Fanout = ()


# -- steps of a read or a room command, under the user actor's token ------------------------------------
@dataclass(frozen=True, slots=True)
class FetchUnread:
    user_id: int
    token: int
    only: Only | None = None


@dataclass(frozen=True, slots=True)
class UnreadFetched:
    token: int
    messages: tuple[Message, ...]
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class MarkRead:
    """From the sender's actor (on ``ConfirmRead``): record 'leido', tell the sender's ``sinks``,
    then ack the reader's actor."""

    reader: UserInfo
    sender_id: int
    message_ids: tuple[int, ...]
    sinks: tuple[Address, ...]
    ack_to: Address
    token: int


@dataclass(frozen=True, slots=True)
class MarkRoomRead:
    """From the room's actor (on ``AdvanceCursor``): move the cursor, tell the senders of what every
    member has now read, then ack the reader's actor."""

    room_id: int
    reader: UserInfo
    up_to: int
    fanout: Fanout
    ack_to: Address
    token: int


@dataclass(frozen=True, slots=True)
class ReadAck:
    token: int
    part: tuple[Kind, int]  # ("user", sender id) or ("room", room id): which confirmation this is
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class RoomOp:
    token: int
    action: RoomAction | Literal["find"]  # find: does it exist (RoomNotFound, or NotAMember)?
    user: UserInfo
    room: str


@dataclass(frozen=True, slots=True)
class RoomOpDone:
    token: int
    room: RoomInfo | None
    error: Exception | None = None


# -- to itself ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Flush:
    """Commit what is queued: sent to itself, so it arrives after every write already in the mailbox."""
