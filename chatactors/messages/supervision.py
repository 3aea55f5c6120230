"""The supervision tree: starting, configuring and restarting actors, and telling who needs to know.

Sent by the ``Chat`` and its bridges to the root (``StartCore``, ``Watch``, ``WhoAmI``) and by the root
to its four core actors and to the watching bridges (``Ping``, ``Configure``, ``RolesChanged``,
``CoreStopped``); between the supervisor of user and room actors and the directory (spares, starts,
exits, ``Adopt`` after a directory restart); by a bridge to a restarted directory (``Reattach``); and
by the supervisor or the directory to a fresh user or room actor (``Init``).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatactors.core.model import Address, Kind
from chatactors.core.supervision import Role
from chatactors.core.throttle import LoginPolicy
from chatactors.messages.edge import Request


# -- configuration --------------------------------------------------------------------------------------
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
    """Where each core actor is: every actor's address book, replaced whole on ``RolesChanged``."""

    directory: Address
    supervisor: Address
    persistence: Address
    login: Address


# -- the root and the core actors -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StartCore(Request):
    """From the Chat to the root: start the core actors; answered with their :class:`Roles`."""

    config: Config
    max_restarts: int = 5
    max_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Configure:
    """From the root to a core actor it started: acknowledged with ``Reply(0, class name)``, which the
    root matches by its sender."""

    config: Config
    roles: Roles


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Request):
    """Answered with the OS process id of the actor. The root pings each child it starts (the answer's
    sender is the child's real address); tests use it for process layout and crashes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch(Request):
    """From a bridge to the root: tell me when a core actor is replaced, or the tree gives up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoAmI(Request):
    """From a process bridge to the root: answered with the bridge's own address; it watches from then on."""


@dataclass(frozen=True, slots=True)
class RolesChanged:
    """A core actor was restarted: its role has a new address. Sent to every core actor, every
    bridge, and (by the directory) every live user and room actor."""

    roles: Roles
    changed: tuple[Role, ...]


@dataclass(frozen=True, slots=True)
class CoreStopped:
    """The root gave up (restart intensity exceeded): the chat no longer serves."""

    reason: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """From the supervisor to a restarted directory: the actors that are still live, so the new
    directory's table starts where the old one's ended."""

    children: tuple[tuple[Kind, int, Address], ...]
    spares: tuple[tuple[Kind, Address], ...]
    supervisor: Address


HeldSessions = tuple[tuple[int, tuple[int, ...]], ...]
"""What a bridge holds: ``(user_id, the numbers of that user's sessions at the bridge)`` per user."""


@dataclass(frozen=True, slots=True)
class Reattach:
    """From a bridge to a restarted directory, or in a cluster to a user's new owner: the sessions
    it holds, ``(user_id, session numbers)``. Numbers, not counts: a session the directory already
    knows (its Attach got there first) is not counted twice."""

    sink: Address
    sessions: HeldSessions


# -- the supervisor of user and room actors, and the directory ------------------------------------------
@dataclass(frozen=True, slots=True)
class StartChild:
    """From the directory to the supervisor, out of spares: start an actor for (kind, id) now."""

    kind: Kind
    id: int


@dataclass(frozen=True, slots=True)
class Spares:
    """From the supervisor to the directory: actors started ahead of need, for it to hand out.

    ``supervisor`` says whose they are: a restarted supervisor's spares replace the dead one's, which
    died with it, whichever of the two messages reaches the directory first."""

    kind: Kind
    addresses: tuple[Address, ...]
    supervisor: Address | None = None


@dataclass(frozen=True, slots=True)
class Assigned:
    """From the directory to the supervisor: a spare now serves (kind, id)."""

    kind: Kind
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """From the supervisor to the directory: the actor for (kind, id) it started on ``StartChild``."""

    kind: Kind
    id: int
    address: Address


@dataclass(frozen=True, slots=True)
class Init:
    """From the supervisor (or, handing out a spare, the directory) to a fresh activation."""

    kind: Kind
    id: int
    config: Config
    roles: Roles


@dataclass(frozen=True, slots=True)
class ChildExited:
    """From the supervisor to the directory: a user or room actor exited (retired or crashed: the
    directory knows which)."""

    kind: Kind
    id: int
    address: Address
