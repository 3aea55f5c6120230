"""Every message the actors exchange, as frozen dataclasses (they must pickle on multiprocTCPBase).

Naming: commands are verbs (``SendDirect``), events and replies are past or nouns (``Stored``,
``Reply``, ``Failed``). A *request* carries ``req_id`` and ``reply_to``: whatever actor ends the chain
answers ``Reply``/``Failed`` straight to ``reply_to`` (the caller's bridge), however many hops it took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.core.model import Message, Receipt, UserInfo

Address = Any  # a thespian ActorAddress; opaque here

FROZEN = {"frozen": True, "slots": True}
KW = {"frozen": True, "slots": True, "kw_only": True}


# -- configuration ----------------------------------------------------------------------------------
@dataclass(**FROZEN)
class Config:
    database_url: str
    idle_timeout: float = 300.0
    password_profile: str = "default"  # "default" (RFC 9106 low memory) or "cheapest" (tests, benches)
    token_ttl: float = 7 * 24 * 3600.0
    batch_max: int = 500


@dataclass(**FROZEN)
class Roles:
    directory: Address
    supervisor: Address
    persistence: Address
    login: Address


@dataclass(**FROZEN)
class Configure:
    config: Config
    roles: Roles


@dataclass(**FROZEN)
class Init:
    """From the supervisor to a fresh activation."""

    kind: str
    id: int
    config: Config
    roles: Roles


# -- replies to the outside ---------------------------------------------------------------------------
@dataclass(**FROZEN)
class Reply:
    req_id: int
    value: Any = None


@dataclass(**FROZEN)
class Failed:
    req_id: int
    error: Exception


@dataclass(**FROZEN)
class Push:
    """An event for every live session of ``user_id`` that the receiving sink holds."""

    user_id: int
    event: Message | Receipt


@dataclass(**FROZEN)
class Batch:
    """Several outbound items for one address, coalesced to save hops."""

    items: tuple[Any, ...]


@dataclass(**FROZEN)
class LoginResult:
    user_id: int
    username: str
    token: str
    pid: Address
    inbox: tuple[Message, ...]


@dataclass(**FROZEN)
class Stats:
    live_users: int
    live_rooms: int
    online_users: int
    activations: int
    retirements: int
    crashes: int


# -- requests from the outside -------------------------------------------------------------------------
@dataclass(**KW)
class Request:
    req_id: int = 0
    reply_to: Address = None


@dataclass(**KW)
class RegisterUser(Request):
    username: str
    password: str


@dataclass(**KW)
class LoginUser(Request):
    sink: Address
    username: str | None = None
    user_id: int | None = None
    password: str | None = None
    token: str | None = None


@dataclass(**KW)
class Logout(Request):
    user_id: int
    sink: Address
    token: str | None = None


@dataclass(**KW)
class WhoAmI(Request):
    pass


@dataclass(**KW)
class GetStats(Request):
    pass


@dataclass(**KW)
class DropSink(Request):
    sink: Address


# bodies routed to a UserActor (through the directory, which wraps them in an Envelope)
@dataclass(**KW)
class Attach(Request):
    user_id: int
    sink: Address
    token: str


@dataclass(**KW)
class Detach(Request):
    user_id: int
    sink: Address


@dataclass(**KW)
class SendDirect(Request):
    user_id: int  # the sender
    to: str | int
    body: str
    client_id: str | None = None


@dataclass(**KW)
class ReadMessages(Request):
    user_id: int


@dataclass(**KW)
class GetInbox(Request):
    user_id: int


@dataclass(**KW)
class GetPid(Request):
    user_id: int


@dataclass(**KW)
class Deliver(Request):
    """From the sender's actor to the recipient's: decide delivery, then store."""

    user_id: int  # the recipient
    sender: UserInfo
    body: str
    client_id: str | None = None


@dataclass(**KW)
class ConfirmRead:
    """From the reader's actor to the sender's: record 'leido', then ack the reader's actor."""

    user_id: int  # the original sender, who owns the status
    reader: UserInfo
    message_ids: tuple[int, ...]
    ack_to: Address
    token: int


# requests answered by the persistence actor
@dataclass(**KW)
class GetStatus(Request):
    user_id: int
    message_id: int


@dataclass(**KW)
class GetHistory(Request):
    user_id: int
    with_user: str | int | None = None
    limit: int = 10
    before: int | None = None


# -- directory, supervisor, lifecycle ------------------------------------------------------------------
@dataclass(**FROZEN)
class Route:
    """To the directory: deliver ``body`` to the live actor for (kind, id), activating it if needed."""

    kind: str
    id: int
    body: Any


@dataclass(**FROZEN)
class Envelope:
    """From the directory to a live actor: the route (kept so a dead letter can be routed again),
    plus where the owner's sessions can be reached."""

    body: Route
    sinks: tuple[Address, ...] = ()


@dataclass(**FROZEN)
class StartChild:
    kind: str
    id: int


@dataclass(**FROZEN)
class ChildStarted:
    kind: str
    id: int
    address: Address


@dataclass(**FROZEN)
class ChildExited:
    kind: str
    id: int
    address: Address


@dataclass(**FROZEN)
class RetireRequest:
    kind: str
    id: int
    address: Address


@dataclass(**FROZEN)
class RetireApproved:
    pass


@dataclass(**FROZEN)
class RetireDenied:
    pass


@dataclass(**FROZEN)
class RetireCancelled:
    kind: str
    id: int
    address: Address


# -- persistence ---------------------------------------------------------------------------------------
@dataclass(**FROZEN)
class LoadUser:
    user_id: int


@dataclass(**FROZEN)
class UserLoaded:
    user: UserInfo | None
    inbox: tuple[Message, ...]
    error: Exception | None = None


@dataclass(**FROZEN)
class Resolve:
    token: int
    ref: str | int


@dataclass(**FROZEN)
class Resolved:
    token: int
    user: UserInfo | None
    error: Exception | None = None


@dataclass(**KW)
class StoreDirect(Request):
    sender: UserInfo
    recipient: UserInfo
    body: str
    client_id: str | None
    status: str
    sinks: tuple[Address, ...] = ()
    notify: Address = None


@dataclass(**FROZEN)
class Stored:
    message: Message | None  # None: the write failed and the caller was told


@dataclass(**FROZEN)
class FetchUnread:
    user_id: int
    token: int


@dataclass(**FROZEN)
class UnreadFetched:
    token: int
    messages: tuple[Message, ...]
    error: Exception | None = None


@dataclass(**FROZEN)
class MarkRead:
    reader: UserInfo
    sender_id: int
    message_ids: tuple[int, ...]
    sinks: tuple[Address, ...]
    ack_to: Address
    token: int


@dataclass(**FROZEN)
class ReadAck:
    token: int
    sender_id: int
    error: Exception | None = None


@dataclass(**FROZEN)
class MarkDelivered:
    user_id: int


@dataclass(**FROZEN)
class Flush:
    pass


@dataclass(**KW)
class Ping(Request):
    """Answered with the OS process id of the actor: for tests of process layout and crashes."""


@dataclass(**KW)
class WhoIsOnline(Request):
    user_ids: tuple[int, ...]
