"""Where a node's actors meet the other nodes' actors: addresses rewritten at the border.

The chat actors know nothing of the cluster but the directory's routing: they send to addresses
(``reply_to``, sinks, ``ack_to``) as they always have. A message that leaves this node has every
actor address inside it rewritten to a :class:`~chatactors.messages.RemoteRef` (node id, name); the
node that receives it turns each one back into its own actor's address, or, for an actor on a third
node or on the sender, into a local *proxy*: an address in its actor system whose mail is sent on to
that node. So a reply travels back to the bridge that asked, a push to the gateway that holds the
socket, whatever node the actor that answers runs on, and no simpleSystemBase address ever crosses.

Everything here runs on the thread that drives the node's actors (the bridge's driver), except the
link's and the membership's callbacks, which only post work to it: no locks around the tables.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from thespian.actors import ActorAddress

from chatactors.bridge import SimpleBridge
from chatactors.core.clock import LogEvery
from chatactors.core.model import Address
from chatactors.core.ring import Ring
from chatactors.messages import (
    ClusterView,
    Delivery,
    DropSink,
    Forwarded,
    HeldSessions,
    Reattach,
    RemoteRef,
)

log = logging.getLogger("chatactors.cluster")

DIRECTORY = "directory"  # the one name a node exports by role: whichever actor is its directory now
PARK_FIRST = 0.25  # seconds routing a node did not take waits before it is routed again, at first
PARK_RETRY = 5.0  # and at most: the wait doubles while the node keeps not taking it
HOLD = 10.0  # seconds a push or reply waits for a node not in our ring yet
MAX_HELD = 10_000  # and how many, per node
MAX_PARKED = 10_000  # requests waiting for the ring at most; past this the oldest are dropped
MAX_EXPORTS = 200_000
MAX_PROXIES = 100_000  # names of local actors handed out; the oldest half is forgotten past this

Send = Callable[[str, Any], None]
Attached = Callable[[], HeldSessions]


_ATOMS = frozenset({str, int, float, bool, type(None), bytes, datetime})  # never hold an address
_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, looked up once per class


def rewrite(value: Any, address: Callable[[Any], Any], is_address: Callable[[Any], bool]) -> Any:
    """``value`` with every address inside it (in dataclass fields, tuples, lists) replaced by
    ``address(it)``; unchanged parts are the same objects, so a message with no address costs a walk
    (every message that crosses is walked twice: kept cheap, ~10 us for a routed send)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if is_address(value):
        return address(value)
    if kind is tuple or kind is list:
        items = [rewrite(item, address, is_address) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return kind(items)
    if isinstance(value, tuple):  # a named tuple
        items = [rewrite(item, address, is_address) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return kind(*items)
    names = _FIELDS.get(kind)
    if names is None:
        dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value)) if dataclass else ()
    changes: dict[str, Any] | None = None
    for name in names:
        old = getattr(value, name)
        new = rewrite(old, address, is_address)
        if new is not old:
            if changes is None:
                changes = {}
            changes[name] = new
    return dataclasses.replace(value, **changes) if changes else value


class Peering:
    """The border of one node: exports, proxies, and the cluster view its directory routes by."""

    def __init__(
        self, me: str, bridge: SimpleBridge, directory: Callable[[], Address], attached: Attached
    ) -> None:
        self.me = me
        self.bridge = bridge
        self._directory = directory  # the current directory (a restarted one has a new address)
        self._attached = attached
        self.send: Send | None = None  # the cluster node's send, set once it exists
        self.ring = Ring()
        self.generation = 0  # rings seen: a login across a change sends its session again (Chat.login)
        self.exports: dict[str, Address] = {}
        self.proxies: OrderedDict[tuple[str, str], Address] = OrderedDict()
        self._proxied: dict[str, tuple[str, str]] = {}
        self.directories: dict[str, Address] = {}  # node id -> the proxy to its directory (read by the edge)
        self._out: list[tuple[Any, Any]] = []
        self._parked: deque[Delivery] = deque()
        self._drop_log = LogEvery(PARK_RETRY)  # dropping parked requests: one line at most
        self._parked_at = 0.0  # when the oldest of them was parked
        self._park_wait = PARK_FIRST  # how long they wait for a ring change before going again
        self._held: dict[str, tuple[float, list[Any]]] = {}  # node -> (until, what it did not take yet)
        self.dropped = 0  # pushes and replies for nodes that went away
        bridge.after_run = self.flush

    # -- the link's and the membership's callbacks (other threads): post to the driver ----------------
    def received(self, node: str, message: Any) -> None:
        self.bridge.post(lambda: self._deliver(message))

    def undelivered(self, node: str, messages: tuple[Any, ...]) -> None:
        self.bridge.post(lambda: self._park(node, messages))

    def ring_changed(self, ring: Ring) -> None:
        self.bridge.post(lambda: self._new_ring(ring))

    # -- addresses across the border -------------------------------------------------------------
    @staticmethod
    def is_address(value: Any) -> bool:
        return isinstance(value, ActorAddress)

    def export(self, address: Any) -> RemoteRef:
        name = str(address)
        known = self._proxied.get(name)
        if known is not None:
            return RemoteRef(*known)
        if name == str(self._directory()):
            return RemoteRef(self.me, DIRECTORY)
        if name not in self.exports and len(self.exports) >= MAX_EXPORTS:
            for old in list(self.exports)[: MAX_EXPORTS // 2]:
                del self.exports[old]
        self.exports[name] = address
        return RemoteRef(self.me, name)

    def resolve(self, ref: RemoteRef) -> Address:
        if ref.node != self.me:
            return self.proxy(ref.node, ref.name)
        if ref.name == DIRECTORY:
            return self._directory()
        local = self.exports.get(ref.name)
        # Forgotten (or never ours): a dead letter, as a message to a gone actor would be.
        return local if local is not None else Address(ActorAddress(f"gone:{ref.name}"))

    def proxy(self, node: str, name: str) -> Address:
        """The local stand-in for actor ``name`` on ``node``; the least recently used are closed past
        MAX_PROXIES (every login's user actor gets one on the node that asked: they would pile up)."""
        key = (node, name)
        address = self.proxies.get(key)
        if address is not None:
            self.proxies.move_to_end(key)
            return address
        address = self.bridge.system.open_outlet(key, self._out)
        self.proxies[key] = address
        self._proxied[str(address)] = key
        while len(self.proxies) > MAX_PROXIES:
            old_key, old = self.proxies.popitem(last=False)
            del self._proxied[str(old)]
            self.bridge.system.close_outlet(old)
        return address

    def stands_for(self, address: Any) -> tuple[str | None, str | None]:
        """The (node, name) a proxy stands for; (None, None) for a local address. Any thread."""
        return self._proxied.get(str(address), (None, None))

    # -- out and in -------------------------------------------------------------------------------
    def flush(self) -> None:
        """After each run of the actors: what they sent to proxies leaves, one link message each."""
        if self._parked or self._held:
            self._retry()
        if not self._out:
            return
        out = self._out[:]
        self._out.clear()  # in place: every outlet appends to this very list
        for (node, name), message in out:
            if self.send is None:
                continue
            try:
                wire = rewrite(message, self.export, self.is_address)
            except Exception:
                log.exception("could not send %s to node %s", type(message).__name__, node)
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %s/%s: %r", self.me, node, name, wire)
            self.send(node, Delivery(name, wire))

    def _deliver(self, message: Any) -> None:
        if not isinstance(message, Delivery):
            log.warning("a peer sent %r, not a Delivery: dropped", type(message).__name__)
            return
        target = self.resolve(RemoteRef(self.me, message.to))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s <- %s: %r", self.me, message.to, message.message)
        self.bridge.system.tell(target, rewrite(message.message, self._resolve_any, self._is_ref))

    def _resolve_any(self, ref: Any) -> Any:
        return self.resolve(ref)

    @staticmethod
    def _is_ref(value: Any) -> bool:
        return isinstance(value, RemoteRef)

    def _park(self, node: str, messages: tuple[Any, ...]) -> None:
        """What a node did not take. Routing goes again once the ring has changed (the directory
        then finds the key's new owner), or after a wait if it has not (the node is still in the
        ring: its link was not up yet or gave up under load, say, and a message must not wait for a
        ring change that may never come). The wait starts at PARK_FIRST and doubles up to PARK_RETRY
        while routing keeps coming back, so a node that is slow to take costs few retries and a
        moment's hiccup costs a quarter of a second, not five. Pushes and replies wait a little for
        a node this one has not seen join yet (it answered a node that joined a moment ago); for a
        node that went away they are dropped then, as its sockets and its callers are gone with it."""
        for message in messages:
            if isinstance(message, Delivery) and message.to == DIRECTORY:
                if not self._parked:
                    now = time.monotonic()
                    if now - self._parked_at > 2 * PARK_RETRY:  # a new episode: retry soon again
                        self._park_wait = PARK_FIRST
                    self._parked_at = now
                if len(self._parked) >= MAX_PARKED:  # the ring has not moved for a long time
                    self._drop_parked()
                self._parked.append(message)
            else:
                held = self._held.setdefault(node, (time.monotonic() + HOLD, []))[1]
                if len(held) < MAX_HELD:
                    held.append(message)
                else:
                    self.dropped += 1
        if node not in self.ring.node_ids:
            self._unpark()

    def _drop_parked(self) -> None:
        """The oldest parked request goes: its caller times out, as it would have anyway by now."""
        self._parked.popleft()
        self.dropped += 1
        if self._drop_log.due() is not None:
            log.warning(
                "%d requests wait for the ring: the oldest are dropped (%d so far)", MAX_PARKED, self.dropped
            )

    def _release_held(self) -> None:
        """Held messages for nodes in the ring go (again); those for others held too long are dropped."""
        now = time.monotonic()
        for node, (deadline, held) in list(self._held.items()):
            if node in self.ring.node_ids and self.send is not None:
                del self._held[node]
                for message in held:
                    self.send(node, message)
            elif now > deadline:
                del self._held[node]
                self.dropped += len(held)

    def _unpark(self) -> None:
        parked, self._parked = self._parked, deque()
        for message in parked:
            inner = message.message
            if isinstance(inner, Forwarded):  # routed afresh: its hops count from here again
                inner = inner.message
            target = self._directory()
            self.bridge.system.tell(target, rewrite(inner, self._resolve_any, self._is_ref))

    def _retry(self) -> None:
        """After each run: what waited too long for a ring change goes again (see :meth:`_park`)."""
        now = time.monotonic()
        if self._parked and now - self._parked_at > self._park_wait:
            self._park_wait = min(2 * self._park_wait, PARK_RETRY)
            self._unpark()
        if any(now > deadline for deadline, _ in self._held.values()):
            self._release_held()

    # -- the ring --------------------------------------------------------------------------------
    def _new_ring(self, ring: Ring) -> None:
        before, self.ring = self.ring, ring
        alive = set(ring.node_ids)
        for node in set(before.node_ids) - alive:
            self._forget(node)
        self.directories = {n: self.proxy(n, DIRECTORY) for n in ring.node_ids if n != self.me}
        directory = self._directory()
        self.bridge.system.tell(directory, ClusterView(self.me, ring, tuple(self.directories.items())))
        self.generation += 1  # before reading the sessions: see Chat.login
        if len(before):
            # Users with sessions here whose owner changed: their new owner learns these sessions
            # (the old one, if alive, forgets them when it sees the same ring). Before what was
            # parked or held goes again, on the same link: a message to them finds their sessions.
            # An owner back with a new epoch counts as new: it forgot them while it was out.
            moved = tuple(
                (user_id, numbers)
                for user_id, numbers in self._attached()
                if before.owner(("user", user_id)) != ring.owner(("user", user_id))
            )
            if moved:
                self.bridge.system.tell(directory, Reattach(self.bridge.address, moved))
        self._park_wait = PARK_FIRST
        self._unpark()
        self._release_held()

    def _forget(self, node: str) -> None:
        """``node`` left the ring: the sessions it held are gone, and so are its proxies."""
        directory = self._directory()
        for (peer, name), address in list(self.proxies.items()):
            if peer != node:
                continue
            del self.proxies[peer, name]
            del self._proxied[str(address)]
            if name != DIRECTORY:  # any of its addresses may be a sink in our directory
                self.bridge.system.tell(directory, DropSink(sink=address, reply_to=self.bridge.address))
            self.bridge.system.close_outlet(address)

    def view(self) -> ClusterView:
        return ClusterView(self.me, self.ring, tuple(self.directories.items()))
