"""The node link: this node's messages to the other nodes, over Thespian's TCP transport.

A node runs its chat on simpleSystemBase; beside it, the link starts a transient multiprocTCPBase
system of its own and talks **context to context** (``bench/link_probe.py``, docs/cluster.md): a
private context listens for batches, and one thread per peer, with a context of its own, sends that
peer's batches and waits for their acks. No actor and no admin is on the path, and frames are signed
by :mod:`chatactors.transport` with the shared ``CHATACTORS_CLUSTER_SECRET``, so a stranger's pickle
is dropped unread.

Why a thread per peer: a ``tell`` blocks its caller until the frame is written, up to seconds for a
dead or cut-off peer; on its own thread, one bad peer stalls only its own queue. Why batches and
acks: a frame costs ~0.35 ms of CPU each way, so what queues while a batch is in flight leaves in the
next one; a context is told of no dead letter, so the ack is how the link knows a peer is gone
(:mod:`chatactors.core.link` has the rules). The link delivers what it receives to ``on_batch`` and
hands back what a peer never acknowledged to ``on_unreachable``; routing is the node's business.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from thespian.actors import ActorSystem

from chatactors import transport
from chatactors.core.clock import Clock, MonotonicClock
from chatactors.core.link import ACK_TIMEOUT, ATTEMPTS, Effect, Inbox, Outbox, Send, Unreachable
from chatactors.errors import ClusterNeedsSecret
from chatactors.messages import LinkAck, LinkBatch

log = logging.getLogger("chatactors.cluster")

OnBatch = Callable[[str, tuple[Any, ...]], None]
"""``(node, messages)``: what a peer sent, in its order; called on the link's receiving thread."""
OnUnreachable = Callable[[str, tuple[Any, ...]], None]
"""``(node, messages)``: a peer stopped acknowledging these; some may have arrived (at least once)."""

POLL = 0.2  # seconds a thread listens before it looks at its stop flag


def link_address(text: str) -> Any:
    """The Thespian address of a link, from the ``host:port`` the nodes table holds.

    Built, not unpickled: a row of the database is not trusted to run code."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a link address: {text!r}")
    return transport.tcp_address(host, int(port))


class Link:
    """Start with :meth:`start` (returns this link's ``host:port``), stop with :meth:`stop`."""

    def __init__(
        self,
        node: str,
        epoch: int,
        on_batch: OnBatch,
        on_unreachable: OnUnreachable,
        *,
        ack_timeout: float = ACK_TIMEOUT,
        attempts: int = ATTEMPTS,
        clock: Clock | None = None,
    ) -> None:
        self.node, self.epoch = node, epoch
        self.on_batch, self.on_unreachable = on_batch, on_unreachable
        self.ack_timeout, self.attempts = ack_timeout, attempts
        self.clock: Clock = clock or MonotonicClock()
        self.address = ""
        self.inbox = Inbox()
        self._system: Any = None
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._receiver: threading.Thread | None = None
        self.batches_received = 0

    def start(self) -> str:
        if not os.environ.get(transport.SECRET_ENV):
            raise ClusterNeedsSecret(
                f"set {transport.SECRET_ENV} (the same, at least {transport.MIN_SECRET_LENGTH} characters, "
                "on every node): the link signs every frame with it"
            )
        transport.install()
        if transport.installed_secret() != os.environ[transport.SECRET_ENV]:
            raise ClusterNeedsSecret(
                f"this process signs its frames with another secret: {transport.SECRET_ENV} was set "
                "after a multiprocTCPBase system had started in it; set it before anything starts"
            )
        capabilities = transport.system_capabilities(transport.free_port())
        self._system = ActorSystem("multiprocTCPBase", capabilities, transientUnique=True)
        self._receiver = threading.Thread(target=self._receive, name=f"link-{self.node}-in", daemon=True)
        self._receiver.start()
        if not self._ready.wait(10):
            raise RuntimeError("the link's receiving context did not start")
        return self.address

    def send(self, node: str, link: str, message: Any) -> None:
        """Queue ``message`` for ``node`` whose link is at ``link`` (``host:port``)."""
        with self._lock:
            peer = self._peers.get(node)
            if peer is None or peer.done:
                peer = self._peers[node] = _Peer(self, node, link_address(link))
                peer.start()
        peer.put(message)

    def forget(self, node: str) -> None:
        """Membership says ``node`` is dead: hand back what it was owed now, stop its thread."""
        with self._lock:
            peer = self._peers.pop(node, None)
        if peer is not None:
            peer.give_up()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            peer.wake()
        for thread in (*peers, self._receiver):
            if thread is not None:
                thread.join(5)
        if self._system is not None:
            self._system.shutdown()
            self._system = None

    # -- the receiving thread -----------------------------------------------------------------------
    def _receive(self) -> None:
        with self._system.private() as ctx:
            host, port = transport.context_address(ctx)
            self.address = f"{host}:{port}"
            self._ready.set()
            while not self._stopping.is_set():
                msg = ctx.listen(timedelta(seconds=POLL))
                if not isinstance(msg, LinkBatch):
                    continue  # a timeout, or something that is not ours to read
                if self.inbox.accept(msg.node, msg.epoch, msg.seq):
                    self.batches_received += 1
                    try:
                        self.on_batch(msg.node, msg.messages)
                    except Exception:  # the node's bug must not end the link
                        log.exception("link %s: a batch from %s failed", self.node, msg.node)
                ctx.tell(msg.reply_to, LinkAck(self.node, msg.seq))


class _Peer(threading.Thread):
    """One peer's queue and its sending thread: stop and wait, batch by batch."""

    def __init__(self, link: Link, node: str, address: Any) -> None:
        super().__init__(name=f"link-{link.node}-to-{node}", daemon=True)
        self.link, self.node, self.target = link, node, address
        self.outbox = Outbox(link.clock, link.ack_timeout, link.attempts)
        self.cond = threading.Condition()
        self.sends: list[Send] = []
        self.done = False

    def put(self, message: Any) -> None:
        self._apply(self.outbox.put, message)

    def give_up(self) -> None:
        self._apply(self.outbox.give_up)
        self.wake()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def _apply(self, step: Callable[..., list[Effect]], *args: Any) -> None:
        """Run a step of the outbox under the lock; hand back what it gave up outside it."""
        with self.cond:
            effects = step(*args)
            self.sends.extend(e for e in effects if isinstance(e, Send))
            self.done = self.done or self.outbox.closed
            self.cond.notify()
        for effect in effects:
            if isinstance(effect, Unreachable):
                log.warning(
                    "link %s: %s unreachable, %d messages handed back",
                    self.link.node,
                    self.node,
                    len(effect.messages),
                )
                self.link.on_unreachable(self.node, effect.messages)

    def run(self) -> None:
        with self.link._system.private() as ctx:
            me = transport.tcp_address(*transport.context_address(ctx))
            while not self.link._stopping.is_set() and not self.done:
                with self.cond:
                    if not self.sends and self.outbox.in_flight is None and not self.done:
                        self.cond.wait(POLL)
                    sends, self.sends = self.sends, []
                for send in sends:
                    batch = LinkBatch(self.link.node, self.link.epoch, send.seq, send.messages, me)
                    ctx.tell(self.target, batch)
                with self.cond:
                    deadline = self.outbox.deadline()
                if deadline is None:
                    continue
                wait = max(0.0, min(deadline - self.link.clock.now(), POLL))
                answer = ctx.listen(timedelta(seconds=wait))
                if isinstance(answer, LinkAck) and answer.node == self.node:
                    self._apply(self.outbox.acked, answer.seq)
                else:
                    self._apply(self.outbox.tick)
