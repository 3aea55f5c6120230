"""Node to node, over the link (``chatactors/cluster/link.py``): batches and their acknowledgements.

They cross processes and machines, so they carry node ids and plain values, never an actor address;
an ack goes back on the connection its batch came in on, so a batch names no address to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from chatactors.core.ring import Ring


@dataclass(frozen=True, slots=True)
class LinkHello:
    """The first frame on a new connection: ``node`` (incarnation ``epoch``) signs the random
    ``nonce`` the listening link sent it, which proves it knows the cluster's secret. A recorded hello
    carries another connection's nonce, so it cannot be replayed; it names the node it is ``to``, so
    whoever a node connects to (a stale address, a port reused since) cannot pass it on to another."""

    node: str
    epoch: int
    to: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class LinkBatch:
    """Batch ``seq`` of what ``node`` (incarnation ``epoch``) had for this node, in the order queued."""

    node: str
    epoch: int
    seq: int
    messages: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LinkAck:
    """Batch ``seq`` was delivered (or had been: a repeat is acknowledged again)."""

    node: str
    seq: int


# -- what a link batch carries between two nodes' actors ------------------------------------------------
@dataclass(frozen=True, slots=True)
class RemoteRef:
    """An actor address as it crosses the link: the node it lives on and its name there.

    Every address inside a message that leaves a node is rewritten to one (``chatactors/peering.py``);
    the receiving node turns it back into its own actor's address, or into a local proxy that sends
    on to that node. So a ``reply_to``, a sink or an ``ack_to`` works from any node, untouched by the
    actors that use it.
    """

    node: str
    name: str

    def __str__(self) -> str:
        return f"{self.name}@{self.node}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """For the actor named ``to`` on the receiving node (``"directory"``: that node's directory)."""

    to: str
    message: Any


@dataclass(frozen=True, slots=True)
class ClusterView:
    """To the directory, whenever the ring changes: who owns what now, and where each other node's
    directory is (a local proxy). ``me`` is this node's id; an empty ring routes nothing away."""

    me: str
    ring: Ring
    directories: tuple[tuple[str, Any], ...]  # (node id, address of the proxy to its directory)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """From one directory to another: ``message`` names a key the receiver owns (the sender's ring
    says so). ``hops`` counts the forwards: while two nodes' rings disagree for a moment, a message
    stops bouncing after ``MAX_HOPS`` and is served where it is."""

    message: Any
    hops: int = 1

    MAX_HOPS: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class WatchMembers:
    """From a room's owner directory to a user's: tell ``watcher`` where these members' sessions are,
    now (``MemberSinks`` with ``part``) and whenever that changes; an empty ``user_ids`` stops it."""

    room_id: int
    user_ids: tuple[int, ...]
    watcher: Any  # the room owner's directory
    part: int
    node: str  # the watcher's node: its watches end when it leaves the ring


@dataclass(frozen=True, slots=True)
class MemberSinks:
    """From a user's owner directory to a room's: where these members' sessions are. ``part``: the
    answer to that ``WatchMembers``; 0 for a later change."""

    room_id: int
    sinks: tuple[tuple[int, tuple[Any, ...]], ...]
    node: str
    part: int = 0
