"""The edge and the core: what a caller outside the actors asks, and what comes back to it.

Sent by the edge (a ``Chat``'s bridge, a WebSocket gateway; the threads of the login service's
hashing pool too, through the bridge's local port), received by the core actor each section names:
the login service, the directory, the persistence actor, or (routed by the directory) the user's
actor. Received by the edge: ``Reply`` or ``Failed`` for each request, and ``Push`` from any actor
that has something for a user's live sessions.

Every request here is a :class:`Request`; see the package docstring for how it is answered.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from chatactors.core.model import (
    Address,
    Kind,
    Message,
    ReadEvent,
    Receipt,
    RoomAction,
    TokenRevoked,
    UserInfo,
)
from chatactors.core.throttle import LOCAL


# -- correlation, and what every sink receives ----------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """Asked by a caller that waits: exactly one ``Reply(req_id, ...)`` or ``Failed(req_id, ...)``
    reaches ``reply_to``, from whichever actor ends the chain (each hop copies both fields on). The
    bridge fills both in as it sends."""

    req_id: int = 0
    reply_to: Address | None = None


R = TypeVar("R", bound=Request)
_COPIED: dict[type, tuple[str, ...]] = {}  # each Request class's fields but the two stamped


def stamped(request: R, req_id: int, reply_to: Address) -> R:
    """``replace(request, req_id=req_id, reply_to=reply_to)`` at less than half its cost (the bridge
    does it for every message): the fields are copied as they are, and no ``__init__`` runs (no
    request defines ``__post_init__``; a test keeps it so)."""
    cls = type(request)
    names = _COPIED.get(cls)
    if names is None:
        names = _COPIED[cls] = tuple(f.name for f in fields(cls) if f.name not in ("req_id", "reply_to"))
    new = object.__new__(cls)
    put = object.__setattr__
    for name in names:
        put(new, name, getattr(request, name))
    put(new, "req_id", req_id)
    put(new, "reply_to", reply_to)
    return new


@dataclass(frozen=True, slots=True)
class Reply:
    req_id: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    req_id: int
    error: Exception


@dataclass(frozen=True, slots=True)
class Push:
    """An event for every live session of these users that the receiving sink holds: a room
    message reaches each sink once, however many members are behind it."""

    user_ids: tuple[int, ...]
    event: Message | Receipt | ReadEvent | TokenRevoked


@dataclass(frozen=True, slots=True)
class Batch:
    """Several outbound items for one address, coalesced to save hops (by a bridge, or by the
    persistence actor for what one committed batch tells each address)."""

    items: tuple[Any, ...]


# -- to the login service -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterUser(Request):
    username: str
    password: str
    client_address: str = LOCAL  # what the login throttle counts against (a gateway: the peer's IP)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginUser(Request):
    sink: Address
    session: int = 0  # the session's number at its sink: presence counts sessions, not logins
    username: str | None = None
    user_id: int | None = None
    password: str | None = None
    token: str | None = None
    client_address: str = LOCAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout(Request):
    user_id: int
    sink: Address
    session: int = 0
    token: str | None = None


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The answer to ``LoginUser``: the user's actor (``pid``) completes it with the inbox."""

    user_id: int
    username: str
    token: str
    pid: Address
    inbox: tuple[Message, ...]
    session: int = 0  # LoginUser's, handed back


@dataclass(frozen=True, slots=True)
class Hashed:
    """A hash on the LoginService's pool finished (simpleSystemBase): collect its result. Sent by the
    pool's thread through the local port, which the bridge's driver drains into the system."""

    key: int


# -- to the directory -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(Request):
    pass


@dataclass(frozen=True, slots=True)
class Stats:
    """A directory's figures. In a cluster, ``Chat.stats()`` sums them over the nodes and lists
    each node's own in ``nodes``; ``routes``: messages routed to a user or room actor (the load)."""

    live_users: int
    live_rooms: int
    online_users: int
    activations: int
    retirements: int
    crashes: int
    routes: int = 0
    nodes: tuple[tuple[str, Stats], ...] = ()

    COUNTS: ClassVar[tuple[str, ...]] = (
        "live_users",
        "live_rooms",
        "online_users",
        "activations",
        "retirements",
        "crashes",
        "routes",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoIsOnline(Request):
    user_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StopActor(Request):
    kind: Kind
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DropSink(Request):
    sink: Address


# -- to the persistence actor, answered from the database -----------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class LookupUser(Request):
    """Answered by the persistence actor with the user's ``UserInfo``, or ``UserNotFound``."""

    ref: str | int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatus(Request):
    user_id: int
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHistory(Request):
    user_id: int
    with_user: str | int | None = None
    room: str | None = None
    limit: int = 10
    before: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRooms(Request):
    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadBy(Request):
    user_id: int
    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListMembers(Request):
    """A room's members, for one of them: ``NotAMember`` for anyone else."""

    user_id: int
    room: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchNames(Request):
    """Users and rooms whose names start with ``prefix``: answered with ``SearchResults``."""

    prefix: str
    limit: int


# -- routed to the user's actor (``Route('user', user_id, ...)``) ---------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class GetInbox(Request):
    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPid(Request):
    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver(Request):
    """A direct message, routed to the recipient's actor: it decides delivery, then stores."""

    user_id: int  # the recipient
    sender: UserInfo
    body: str
    client_id: str | None = None
    recipient: UserInfo | None = None  # lets a fresh activation store it before it has loaded


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMessages(Request):
    """Read what is unread: everything, or only ``with_user``'s direct messages or one ``room``."""

    user_id: int
    with_user: int | None = None
    room: str | None = None
    up_to: int | None = None
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRoom(Request):
    user_id: int
    room: str
    body: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCommand(Request):
    user_id: int
    room: str
    action: RoomAction
