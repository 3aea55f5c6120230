"""Every message the actors exchange, as frozen dataclasses (they must pickle on multiprocTCPBase).

Naming: commands are verbs (``Deliver``), events and replies are past or nouns (``Reply``,
``Failed``, ``UserLoaded``). A *request* carries ``req_id`` and ``reply_to``: whatever actor ends the chain
answers ``Reply``/``Failed`` straight to ``reply_to`` (the caller's bridge), however many hops it took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.core.model import Message, Only, ReadEvent, Receipt, RoomInfo, Status, TokenRevoked, UserInfo
from chatactors.core.throttle import LOCAL, LoginPolicy

Address = Any  # a thespian ActorAddress; opaque here


# -- configuration ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    idle_timeout: float = 300.0
    password_profile: str = "default"  # "default" (RFC 9106 low memory) or "cheapest" (tests, benches)
    token_ttl: float = 7 * 24 * 3600.0
    batch_max: int = 500
    local_port: str | None = None  # simpleSystemBase: where worker threads hand results back
    login_policy: LoginPolicy = LoginPolicy()


@dataclass(frozen=True, slots=True)
class Roles:
    directory: Address
    supervisor: Address
    persistence: Address
    login: Address


@dataclass(frozen=True, slots=True)
class Configure:
    config: Config
    roles: Roles


@dataclass(frozen=True, slots=True)
class Init:
    """From the supervisor to a fresh activation."""

    kind: str
    id: int
    config: Config
    roles: Roles


# -- replies to the outside ---------------------------------------------------------------------------
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
    """Several outbound items for one address, coalesced to save hops."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: int
    username: str
    token: str
    pid: Address
    inbox: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Stats:
    live_users: int
    live_rooms: int
    online_users: int
    activations: int
    retirements: int
    crashes: int


# -- requests from the outside -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    req_id: int = 0
    reply_to: Address = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterUser(Request):
    username: str
    password: str
    client_address: str = LOCAL  # what the login throttle counts against (a gateway: the peer's IP)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginUser(Request):
    sink: Address
    username: str | None = None
    user_id: int | None = None
    password: str | None = None
    token: str | None = None
    client_address: str = LOCAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout(Request):
    user_id: int
    sink: Address
    token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoAmI(Request):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(Request):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DropSink(Request):
    sink: Address


# bodies routed to a UserActor (through the directory, which wraps them in an Envelope)
@dataclass(frozen=True, slots=True, kw_only=True)
class Attach(Request):
    user_id: int
    sink: Address
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Detach(Request):
    user_id: int
    sink: Address
    revoked: str | None = None  # a revoked token's hash: the user's sinks end the sessions holding it


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupUser(Request):
    """Answered by the persistence actor with the user's ``UserInfo``, or ``UserNotFound``."""

    ref: str | int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMessages(Request):
    """Read what is unread: everything, or only ``with_user``'s direct messages or one ``room``."""

    user_id: int
    with_user: int | None = None
    room: str | None = None
    up_to: int | None = None
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    """To the directory: push ``event`` to the user's live sessions, if any; never starts an actor."""

    user_id: int
    event: Message | Receipt


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
class ConfirmRead:
    """From the reader's actor to the sender's: record 'leido', then ack the reader's actor."""

    user_id: int  # the original sender, who owns the status
    reader: UserInfo
    message_ids: tuple[int, ...]
    ack_to: Address
    token: int


# requests answered by the persistence actor
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


# rooms: from the outside to the member's UserActor
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
    action: str  # "create" | "join" | "leave"


# rooms: from a UserActor to the persistence actor and back
@dataclass(frozen=True, slots=True)
class RoomOp:
    token: int
    action: str  # "create" | "join" | "leave" | "find"
    user: UserInfo
    room: str


@dataclass(frozen=True, slots=True)
class RoomOpDone:
    token: int
    room: RoomInfo | None
    error: Exception | None = None


# rooms: routed to a RoomActor
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberJoined(Request):
    user: UserInfo
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLeft(Request):
    user_id: int


@dataclass(frozen=True, slots=True)
class MemberPresence:
    """A member became active (logged in, with a live UserActor) or stopped being so."""

    user_id: int
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PostRoom(Request):
    sender: UserInfo
    body: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdvanceCursor:
    reader: UserInfo
    up_to: int
    ack_to: Address
    token: int


# rooms: RoomActor <-> persistence, RoomActor <-> directory
@dataclass(frozen=True, slots=True)
class LoadRoom:
    room_id: int


@dataclass(frozen=True, slots=True)
class RoomLoaded:
    room: RoomInfo | None
    members: tuple[UserInfo, ...] = ()
    error: Exception | None = None


Fanout = tuple[tuple[Address, tuple[int, ...]], ...]  # (sink, the users it holds sessions of)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRoom(Request):
    room: RoomInfo
    sender: UserInfo
    body: str
    client_id: str | None
    status: Status
    fanout: Fanout = ()


@dataclass(frozen=True, slots=True)
class MarkRoomRead:
    room_id: int
    reader: UserInfo
    up_to: int
    fanout: Fanout
    ack_to: Address
    token: int


@dataclass(frozen=True, slots=True)
class RoomMembers:
    """From a RoomActor to the directory: who its members are, so their sinks follow them."""

    room_id: int
    member_ids: tuple[int, ...]
    address: Address


@dataclass(frozen=True, slots=True)
class RoomSinks:
    """From the directory to a live RoomActor: where members' sessions are (all, or one user's)."""

    sinks: tuple[tuple[int, tuple[Address, ...]], ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class Offline:
    """From the directory to a live UserActor: its user's last session closed."""

    user_id: int


# -- the core supervision tree (see actors/root.py) -----------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StartCore(Request):
    """From the Chat to the root: start the core actors; answered with their :class:`Roles`."""

    config: Config
    max_restarts: int = 5
    max_seconds: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch(Request):
    """From a bridge to the root: tell me when a core actor is replaced, or the tree gives up."""


@dataclass(frozen=True, slots=True)
class RolesChanged:
    """A core actor was restarted: its role has a new address. Sent to every core actor, every
    bridge, and (by the directory) every live user and room actor."""

    roles: Roles
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CoreStopped:
    """The root gave up (restart intensity exceeded): the chat no longer serves."""

    reason: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """From the supervisor to a restarted directory: the actors that are still live, so the new
    directory's table starts where the old one's ended."""

    children: tuple[tuple[str, int, Address], ...]
    spares: tuple[tuple[str, Address], ...]
    supervisor: Address


@dataclass(frozen=True, slots=True)
class Reattach:
    """From a bridge to a restarted directory: the sessions it holds, ``(user_id, count)``."""

    sink: Address
    sessions: tuple[tuple[int, int], ...]


# -- directory, supervisor, lifecycle ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    """To the directory: deliver ``body`` to the live actor for (kind, id), activating it if needed."""

    kind: str
    id: int
    body: Any


@dataclass(frozen=True, slots=True)
class Envelope:
    """From the directory to a live actor: the route (kept so a dead letter can be routed again),
    plus where the owner's sessions can be reached."""

    body: Route
    sinks: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class StartChild:
    kind: str
    id: int


@dataclass(frozen=True, slots=True)
class Spares:
    """From the supervisor to the directory: actors started ahead of need, for it to hand out.

    ``supervisor`` says whose they are: a restarted supervisor's spares replace the dead one's, which
    died with it, whichever of the two messages reaches the directory first."""

    kind: str
    addresses: tuple[Address, ...]
    supervisor: Address = None


@dataclass(frozen=True, slots=True)
class Assigned:
    """From the directory to the supervisor: a spare now serves (kind, id)."""

    kind: str
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class ChildStarted:
    kind: str
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class ChildExited:
    kind: str
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class RetireRequest:
    kind: str
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class IdleCheck:
    """From the directory: nothing was routed to you for a while; retire if you may."""


@dataclass(frozen=True, slots=True)
class RetireApproved:
    pass


@dataclass(frozen=True, slots=True)
class RetireDenied:
    pass


@dataclass(frozen=True, slots=True)
class RetireCancelled:
    kind: str
    id: int
    address: Address


# -- persistence ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadUser:
    user_id: int


@dataclass(frozen=True, slots=True)
class UserLoaded:
    user: UserInfo | None
    rooms: tuple[RoomInfo, ...] = ()
    error: Exception | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadInbox(Request):
    """Answered with the inbox, or with ``login`` completed by it (messages waiting become 'entregado')."""

    user_id: int
    login: LoginResult | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreDirect(Request):
    sender: UserInfo
    recipient: UserInfo
    body: str
    client_id: str | None
    status: Status
    sinks: tuple[Address, ...] = ()


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
    reader: UserInfo
    sender_id: int
    message_ids: tuple[int, ...]
    sinks: tuple[Address, ...]
    ack_to: Address
    token: int


@dataclass(frozen=True, slots=True)
class ReadAck:
    token: int
    part: tuple[str, int]  # ("user", sender id) or ("room", room id): which confirmation this is
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Hashed:
    """A hash on the LoginService's pool finished (simpleSystemBase): collect its result."""

    key: int


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Request):
    """Answered with the OS process id of the actor: for tests of process layout and crashes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopActor(Request):
    kind: str
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoIsOnline(Request):
    user_ids: tuple[int, ...]
