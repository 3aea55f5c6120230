"""Room membership from both sides: a room's live state (:class:`RoomState`) and a user's rooms
(:class:`Memberships`).

A room knows its members, which of them are active (logged in, with a live user actor: they keep
the room's actor running) and, from the directory, which sinks hold their sessions, so a message
fans out as one push per sink carrying the member ids, not one message per member. A join is
answered only once the directory has said where the new member's sessions are: a message posted
after ``join()`` returns must reach them.

A user knows its rooms by name, whatever the case it is typed in. A command about a room that is
not one of its own (a post, a leave) goes to the database, which knows whether the answer is
``RoomNotFound`` or ``NotAMember``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from chatactors.core.commit import Fanout
from chatactors.core.model import ENTREGADO, ENVIADO, Address, RoomAction, RoomInfo, Status, UserInfo
from chatactors.core.replies import Answer, Refuse
from chatactors.core.rules import check_body, check_room_name
from chatactors.errors import ChatError, InternalError, NotAMember


# -- a room's effects -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register:
    """Tell the directory the room's members; it answers with where their sessions are
    (:meth:`RoomState.sinks_arrived`, complete)."""

    member_ids: tuple[int, ...]


@dataclass(frozen=True)
class Located:
    """The state and the members' sessions are both in: the activation may serve what waited."""


@dataclass(frozen=True)
class StoreMessage:
    """Store ``request``'s message in ``room`` with ``status``; once stored it is pushed along ``fanout``."""

    request: Any
    room: RoomInfo
    status: Status
    fanout: Fanout


@dataclass(frozen=True)
class MarkCursor:
    """Move ``request``'s reader's cursor; the senders of what all have read are told along ``fanout``."""

    request: Any
    fanout: Fanout


@dataclass(frozen=True)
class CheckRetire:
    """A member went: the room may have no active member left."""


RoomEffect = Register | Located | StoreMessage | MarkCursor | CheckRetire | Answer | Refuse


class RoomState:
    def __init__(self) -> None:
        self.room: RoomInfo | None = None
        self.members: dict[int, UserInfo] = {}
        self.active: set[int] = set()
        self.sinks: dict[int, tuple[Address, ...]] = {}  # member id -> sinks holding their sessions
        self.pending_joins: list[Any] = []  # answered with the next complete sinks
        self.located = False

    @property
    def name(self) -> str:
        assert self.room is not None, "the room is served only once loaded"
        return self.room.name

    @property
    def may_retire(self) -> bool:
        """No active member is left, and no join waits for its answer: retiring would lose it (the
        actor adds: and no other reply is owed)."""
        return not self.active and not self.pending_joins

    def _register(self) -> list[RoomEffect]:
        return [Register(tuple(self.members))]

    # -- the directory --------------------------------------------------------------------------
    def loaded(self, room: RoomInfo, members: Iterable[UserInfo]) -> list[RoomEffect]:
        self.room = room
        self.members = {u.id: u for u in members}
        return self._register()

    def directory_restarted(self) -> list[RoomEffect]:
        """The new directory learns the members (it lost them); its complete sinks answer."""
        return self._register() if self.room is not None else []

    def sinks_arrived(
        self, sinks: Iterable[tuple[int, tuple[Address, ...]]], complete: bool
    ) -> list[RoomEffect]:
        """Where members' sessions are: all of them (``complete``), or a change for some."""
        if complete:
            self.sinks = {}
        for user_id, held in sinks:
            if held:
                self.sinks[user_id] = held
            else:
                self.sinks.pop(user_id, None)
        if not complete:
            return []
        effects: list[RoomEffect] = []
        if not self.located:
            self.located = True
            effects.append(Located())
        joins, self.pending_joins = self.pending_joins, []
        return [*effects, *(Answer(request, self.name) for request in joins)]

    def release_joins(self) -> list[RoomEffect]:
        """The actor goes before its members' sessions are all known (handed over to another node, or
        a core actor restarted): the joins waiting for them are in the database already, so they are
        answered as done; the next activation finds the sessions."""
        joins, self.pending_joins = self.pending_joins, []
        return [Answer(request, self.name) for request in joins]

    # -- membership and activity ----------------------------------------------------------------
    def presence(self, user_id: int, active: bool) -> list[RoomEffect]:
        if active and user_id in self.members:
            self.active.add(user_id)
            return []
        self.active.discard(user_id)
        return [CheckRetire()]

    def joined(self, request: Any, user: UserInfo, active: bool) -> list[RoomEffect]:
        self.members[user.id] = user
        if active:
            self.active.add(user.id)
        self.pending_joins.append(request)
        return self._register()

    def left(self, request: Any, user_id: int) -> list[RoomEffect]:
        self.members.pop(user_id, None)
        self.active.discard(user_id)
        self.sinks.pop(user_id, None)
        return [*self._register(), Answer(request, self.name), CheckRetire()]

    # -- messages and reads ---------------------------------------------------------------------
    def fanout(self, exclude: int | None = None) -> Fanout:
        """One entry per sink, with the members it holds sessions of (sinks compare by name: a
        Thespian address is unhashable)."""
        by_sink: dict[str, tuple[Address, list[int]]] = {}
        for user_id, sinks in self.sinks.items():
            if user_id == exclude or user_id not in self.members:
                continue
            for sink in sinks:
                by_sink.setdefault(str(sink), (sink, []))[1].append(user_id)
        return tuple((sink, tuple(users)) for sink, users in by_sink.values())

    def post(self, request: Any, sender_id: int) -> list[RoomEffect]:
        """A message to the room: pushed to every other member's sessions once stored."""
        if sender_id not in self.members:
            return [Refuse(request, NotAMember(f"you are not in {self.name!r}"))]
        assert self.room is not None
        fanout = self.fanout(exclude=sender_id)
        return [StoreMessage(request, self.room, ENTREGADO if fanout else ENVIADO, fanout)]

    def advance(self, request: Any) -> list[RoomEffect]:
        """A member read up to a message: the senders' sessions are told what all have now read."""
        return [MarkCursor(request, self.fanout())]


# -- a user's effects -------------------------------------------------------------------------------
Action = RoomAction | Literal["find"]  # find: does it exist (RoomNotFound), or is it not mine (NotAMember)?


@dataclass(frozen=True)
class AskRoomOp:
    """Ask the database to ``action`` (create, join, leave, or only find) ``room`` for this user; it
    answers :meth:`Memberships.done` with ``token``."""

    token: int
    action: Action
    room: str


@dataclass(frozen=True)
class PostTo:
    """Hand ``request``'s message to room ``room_id``."""

    room_id: int
    request: Any


@dataclass(frozen=True)
class JoinRoom:
    """Tell room ``room_id`` this user joined, and whether active; the room answers ``request``."""

    room_id: int
    request: Any
    active: bool


@dataclass(frozen=True)
class LeaveRoom:
    """Tell room ``room_id`` this user left; the room answers ``request``."""

    room_id: int
    request: Any


@dataclass(frozen=True)
class Presence:
    """Tell room ``room_id`` whether this user is active (active members keep it running)."""

    room_id: int
    active: bool


UserEffect = AskRoomOp | PostTo | JoinRoom | LeaveRoom | Presence | Refuse


class Memberships:
    def __init__(self) -> None:
        self.rooms: dict[str, RoomInfo] = {}  # by lower-case name: names are case-insensitive
        self.active = False
        self.ops: dict[int, tuple[Any, Action]] = {}  # token -> (request, action), waiting on the database
        self._tokens = 0

    def load(self, rooms: Iterable[RoomInfo]) -> None:
        self.rooms = {r.name.lower(): r for r in rooms}

    def get(self, name: str) -> RoomInfo | None:
        return self.rooms.get(name.lower())

    def set_active(self, active: bool) -> list[UserEffect]:
        """Active members keep their rooms' actors running (roadmap V0.4)."""
        if active == self.active:
            return []
        self.active = active
        return [Presence(room.id, active) for room in self.rooms.values()]

    def command(self, request: Any, action: RoomAction, room: str) -> list[UserEffect]:
        """Create, join or leave ``room``. Raises InvalidMessage for a malformed name."""
        check_room_name(room)
        if action == "leave" and self.get(room) is None:
            return self._ask(request, "find", room)  # RoomNotFound, or NotAMember
        return self._ask(request, action, room)

    def post(self, request: Any, room: str, body: str) -> list[UserEffect]:
        """A message to ``room``. Raises InvalidMessage for a body that breaks the input rules."""
        check_body(body)
        info = self.get(room)
        if info is None:
            return self._ask(request, "find", room)
        return [PostTo(info.id, request)]

    def _ask(self, request: Any, action: Action, room: str) -> list[UserEffect]:
        self._tokens += 1
        self.ops[self._tokens] = (request, action)
        return [AskRoomOp(self._tokens, action, room)]

    def done(self, token: int, room: RoomInfo | None, error: ChatError | None) -> list[UserEffect]:
        """The database's answer to :class:`AskRoomOp`."""
        if token not in self.ops:
            return []  # failed meanwhile (a core actor restarted)
        request, action = self.ops.pop(token)
        if error is not None or room is None:
            return [Refuse(request, error or InternalError(f"{action} failed: the database named no room"))]
        if action == "find":  # it exists, and it is not one of mine
            return [Refuse(request, NotAMember(f"you are not in {room.name!r}"))]
        if action == "leave":
            self.rooms.pop(room.name.lower(), None)
            return [LeaveRoom(room.id, request)]
        self.rooms[room.name.lower()] = room
        return [JoinRoom(room.id, request, self.active)]

    def fail_all(self, error: ChatError) -> list[UserEffect]:
        """Answer every command still waiting on the database."""
        ops, self.ops = self.ops, {}
        return [Refuse(request, error) for request, _ in ops.values()]
