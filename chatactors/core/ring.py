"""Ownership: which node owns each user and each room, by rendezvous (highest-random-weight) hashing.

Every node scores every key with a hash of (node id, key); the highest score owns the key. Each node
computes the same owner from the same member list with no coordination, and a join or a leave moves
only the keys that node wins or held (a ``hash % n`` placement would move almost all of them); the
spread is even without virtual nodes. A lookup costs one hash per node: microseconds for tens of nodes.

The score hashes the node id, not its epoch, so a node that comes back with a new epoch gets its own
keys back and nothing else moves twice. Epochs fence instead: an entry whose epoch is not the newest
seen for its node id never owns, so a stale incarnation computes that it owns nothing.

The hash is blake2b, never ``hash()``: Python salts string hashes per process, and every node must
agree on every score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import NamedTuple

from chatactors.core.registry import Key


class Node(NamedTuple):
    """One incarnation of a node: a returning node has the same id and a greater epoch."""

    node_id: str
    epoch: int


def score(key: Key, node_id: str) -> int:
    """The node's weight for ``key``: 64 bits of blake2b; the length prefix keeps (id, key) unambiguous."""
    kind, ident = key
    data = f"{len(node_id)}:{node_id}|{kind}:{ident}".encode()
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def newest(nodes: Iterable[Node]) -> frozenset[Node]:
    """The newest epoch of each node id: older entries are stale and drop out."""
    epochs: dict[str, int] = {}
    for node_id, epoch in nodes:
        if epoch > epochs.get(node_id, epoch - 1):
            epochs[node_id] = epoch
    return frozenset(Node(n, e) for n, e in epochs.items())


def owner(key: Key, nodes: Iterable[Node]) -> str:
    """The id of the node that owns ``key`` among ``nodes`` (stale epochs ignored)."""
    return Ring(frozenset(nodes)).owner(key).node_id


@dataclass(frozen=True)
class Ring:
    """The live nodes as one node sees them; equal rings give equal owners on every node."""

    members: frozenset[Node] = frozenset()
    _ids: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _epochs: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members = newest(self.members)
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "_epochs", dict(members))
        object.__setattr__(self, "_ids", tuple(sorted(self._epochs)))

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def owner(self, key: Key) -> Node:
        """The owner of ``key``; ties (a 64-bit collision) go to the greater node id, on every node."""
        if not self._ids:
            raise ValueError("an empty ring: no live node owns anything")
        best = max(self._ids, key=lambda node_id: (score(key, node_id), node_id))
        return Node(best, self._epochs[best])

    def owns(self, node: Node, key: Key) -> bool:
        """Whether this incarnation owns ``key``: False for a stale epoch, or when the ring is empty."""
        return bool(self._ids) and self._epochs.get(node.node_id) == node.epoch and self.owner(key) == node

    def with_node(self, node: Node) -> Ring:
        return Ring(self.members | {node})

    def without(self, node_id: str) -> Ring:
        return Ring(frozenset(n for n in self.members if n.node_id != node_id))


def moved(keys: Iterable[Key], before: Ring, after: Ring) -> dict[Key, tuple[str | None, str | None]]:
    """The keys whose owner changed between two rings, with (old owner id, new owner id); None stands
    for an empty ring. What a shard hands over or takes on when the ring changes."""
    changes: dict[Key, tuple[str | None, str | None]] = {}
    for key in keys:
        old = before.owner(key).node_id if len(before) else None
        new = after.owner(key).node_id if len(after) else None
        if old != new:
            changes[key] = (old, new)
    return changes
