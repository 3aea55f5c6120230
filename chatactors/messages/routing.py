"""The directory: routing to users' and rooms' actors, presence, and retiring.

Sent to the directory by any actor that has something for a user or a room (``Route``), by the login
service (``Attach`` routed to the user's actor, ``Detach``), by the persistence actor (``Notify``) and
by a room's actor (``RoomMembers``); sent by the directory to a live user or room actor (``Envelope``,
``Offline``, ``RoomSinks``, ``IdleCheck``). Retiring is a handshake between the two: ``RetireRequest``,
then ``RetireApproved`` or ``RetireDenied``, and ``RetireCancelled`` when work came in meanwhile. In
a cluster, ``HandOver`` tells an actor whose id another node owns now to go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.core.model import Address, Kind, Message, Receipt
from chatactors.messages.edge import Request


# -- routing --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    """To the directory: deliver ``body`` to the live actor for (kind, id), activating it if needed."""

    kind: Kind
    id: int
    body: Any


@dataclass(frozen=True, slots=True)
class Envelope:
    """From the directory to a live actor: the route (kept so a dead letter can be routed again),
    plus where the owner's sessions can be reached."""

    body: Route
    sinks: tuple[Address, ...] = ()
    # Which directory sent it (one random name per directory incarnation) and its number among that
    # directory's forwards to this activation: the retire handshake counts them (core/registry.py).
    stream: str = ""
    seq: int = 0


# -- presence -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Attach(Request):
    """From the login service, routed to the user's actor: a session logged in at ``sink`` (the
    directory counts it); the actor answers the caller with its ``LoginResult``."""

    user_id: int
    sink: Address
    token: str
    session: int = 0  # its number at ``sink`` (see LoginUser)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detach(Request):
    """From the login service to the directory: a session at ``sink`` logged out."""

    user_id: int
    sink: Address
    session: int = 0
    revoked: str | None = None  # a revoked token's hash: the user's sinks end the sessions holding it


@dataclass(frozen=True, slots=True)
class Notify:
    """To the directory: push ``event`` to the user's live sessions, if any; never starts an actor."""

    user_id: int
    event: Message | Receipt


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Routed to a user's actor, after a message that found no session of theirs (stored
    'enviado', pushed nowhere): the directory has learned of their sessions since (a ``Reattach``:
    a new owner, a restarted directory), so the actor has what waits pushed (``DeliverWaiting``).
    ``relay``: this node no longer owns the user, so it cannot know their sessions; once its own
    writes are committed (``RelayCatchUp``), a ``CatchUp`` goes to the owner, which does."""

    user_id: int
    relay: bool = False


@dataclass(frozen=True, slots=True)
class Offline:
    """From the directory to a live UserActor: its user's last session closed."""

    user_id: int


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


# -- retiring -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IdleCheck:
    """From the directory: nothing was routed to you for a while; retire if you may."""


@dataclass(frozen=True, slots=True)
class HandOver:
    """From the directory: another node owns you now (the ring changed). Send what waits for your
    state back to be routed there, answer what waits for a reply with ``Restarting``, and exit.
    Names the actor, so that coming back as a dead letter it tells the directory which has gone."""

    kind: Kind
    id: int


@dataclass(frozen=True, slots=True)
class RetireRequest:
    """From an idle user or room actor to the directory: may I go? ``received``: the highest
    forward number it has had from each directory stream, so the directory can tell if one is still
    on its way."""

    kind: Kind
    id: int
    address: Address
    received: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RetireApproved:
    """From the directory: nothing waits for you, and what comes now is held here; go (or cancel)."""


@dataclass(frozen=True, slots=True)
class RetireDenied:
    """From the directory: something waits for you; stay."""


@dataclass(frozen=True, slots=True)
class RetireCancelled:
    """From an approved actor to the directory: work came in meanwhile, I stay; send what you held."""

    kind: Kind
    id: int
    address: Address
