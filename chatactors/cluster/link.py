"""The node link: this node's messages to the other nodes, over plain TCP sockets.

A node runs its chat on simpleSystemBase; beside it, the link listens on one TCP port (the
advertised address) and keeps one connection to each peer it sends to. A frame is a 4-byte
big-endian length and a payload signed by :mod:`chatactors.transport` with the shared
``CHATACTORS_CLUSTER_SECRET`` (HMAC, then pickle): the MAC is checked before anything is unpickled,
so a stranger's pickle is dropped unread and its connection closed. A batch's ack comes back on the
connection the batch came in on.

Before that, a new connection proves it knows the secret: the listening side sends a random nonce,
and the first frame back must be a signed :class:`LinkHello` carrying it, at most
:data:`MAX_HELLO_BYTES` long and within ``hello_seconds``. Until then the connection has no thread of
its own (the accepting thread watches all of them with a selector), holds at most a hello's bytes,
and is one of at most ``max_strangers``, the oldest closed first. Without that, anyone who could
reach the port got a thread per connection and a 64 MiB buffer each before a MAC was checked.

Why not Thespian's transport (as before): a frame through a multiprocTCPBase context cost ~1.2 ms of
CPU (both ends) and a round trip 2.6 ms; a node's link threads took 47 % of its samples and two nodes
delivered less than one (docs/cluster.md has the figures). Over a socket it is a ``sendall`` and a
``recv`` each way, and no admin process per node.

Why a thread per peer: a send to a dead or black-holed peer blocks until its socket times out; on
its own thread, one bad peer stalls only its own queue. Why batches and acks: a frame's cost is
shared by what queued while the last one was in flight, and the ack is how the link knows a peer is
gone (:mod:`chatactors.core.link` has the rules). The link delivers what it receives to
``on_batch`` (one batch at a time) and hands back what a peer never acknowledged to
``on_unreachable``; routing is the node's business.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from chatactors import transport
from chatactors.core.clock import Clock, LogEvery, MonotonicClock
from chatactors.core.link import ACK_TIMEOUT, ATTEMPTS, Effect, Inbox, Outbox, Send, Unreachable
from chatactors.errors import ClusterNeedsSecret
from chatactors.messages import LinkAck, LinkBatch, LinkHello

log = logging.getLogger("chatactors.cluster")

OnBatch = Callable[[str, tuple[Any, ...]], None]
"""``(node, messages)``: what a peer sent, in its order; called one batch at a time."""
OnUnreachable = Callable[[str, tuple[Any, ...], str | None], None]
"""``(node, messages, gone)``: a peer stopped acknowledging these; some may have arrived (at least
once). ``gone`` is the link's verdict that the peer at that address (``host:port``, None if not) is
dead: the address refused a connection (nothing listens there: the process is gone), or it went
unanswered :data:`UNANSWERED_LIMIT` times in a row (~9 s) with nothing acknowledged in between. A
single timeout is not enough: a dead host, a cut link and an overloaded or flooded node look alike
for a few seconds. The address says which incarnation: a node id that came back listens elsewhere."""

POLL = 0.2  # seconds a thread waits on a socket before it looks at its stop flag
LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a batch of 1,000 chat messages is well under 10 MB
READ_CHUNK = 1024 * 1024
NONCE_BYTES = 16
MAX_HELLO_BYTES = 1024  # a signed hello is ~200 bytes; before it, no frame may be longer
HELLO_SECONDS = 2.0  # a connection that has not said hello by then is closed
MAX_STRANGERS = 256  # connections still to say hello; past this, the oldest is closed
UNANSWERED_LIMIT = 3  # give-ups in a row, nothing acknowledged, before a live-looking peer is gone
ACCEPTS_PER_ROUND = 64  # then the hellos that came meanwhile are heard, before more are accepted
BACKLOG = 1024  # connections the kernel holds for the accepting thread (a flood must not fill it at once)

_drops = transport.DropLog(transport.LOG_INTERVAL_SECONDS, "link")


def link_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of a link, from the ``host:port`` the nodes table holds (checked: a row of
    the database is not trusted)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a link address: {text!r}")
    return host, int(port)


def frame(obj: Any) -> bytes:
    """``obj`` as it goes on a link's socket: length, then the signed pickle."""
    data = transport.dumps(obj)
    return LENGTH.pack(len(data)) + data


class FrameTooLarge(ValueError):
    """A frame declared more than :data:`MAX_FRAME_BYTES`: its connection is closed."""


def _cut(buf: bytearray, limit: int) -> bytes | None:
    """The first whole frame's payload off ``buf`` (removed from it), or None if it is not all
    there yet; FrameTooLarge as soon as its length says more than ``limit``."""
    if len(buf) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack_from(buf)
    if size > limit:
        raise FrameTooLarge(f"declared {size} bytes (limit {limit})")
    if len(buf) < LENGTH.size + size:
        return None
    data = bytes(buf[LENGTH.size : LENGTH.size + size])
    del buf[: LENGTH.size + size]
    return data


class _Frames:
    """Frames read off one connection: bytes arrive split anywhere, and a read that times out
    mid-frame keeps what came so far."""

    def __init__(self, sock: socket.socket, buf: bytes = b"", limit: int = MAX_FRAME_BYTES) -> None:
        self.sock = sock
        self.buf = bytearray(buf)
        self.limit = limit

    def next(self) -> bytes | None:
        """The next whole frame's payload (not verified yet), or None if the socket's timeout passed
        first. Raises ConnectionError when the peer closed, FrameTooLarge on a declared size over
        the limit."""
        while True:
            data = _cut(self.buf, self.limit)
            if data is not None:
                return data
            need = (
                LENGTH.size if len(self.buf) < LENGTH.size else LENGTH.size + LENGTH.unpack_from(self.buf)[0]
            )
            try:
                chunk = self.sock.recv(min(max(need - len(self.buf), 4096), READ_CHUNK))
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("closed by the peer")
            self.buf += chunk


class _Stranger:
    """A connection that has not said hello yet: the nonce it must sign, what it sent so far (at
    most a hello's worth) and when it must be done."""

    def __init__(self, nonce: bytes, deadline: float) -> None:
        self.nonce, self.deadline = nonce, deadline
        self.buf = bytearray()

    def hello(self, chunk: bytes, me: str) -> Any:
        """The verified hello to node ``me`` once its frame is whole (None until then). Raises
        FrameTooLarge, transport.FrameRejected (no valid MAC), or ValueError (signed, but not this
        connection's)."""
        self.buf += chunk
        data = _cut(self.buf, MAX_HELLO_BYTES)
        if data is None:
            return None
        msg = transport.loads(data)
        if not isinstance(msg, LinkHello) or msg.nonce != self.nonce:
            raise ValueError("signed, but not a hello to this connection's nonce (replayed?)")
        if msg.to != me:
            raise ValueError(f"a hello from {msg.node} to {msg.to}, not to {me} (passed on?)")
        return msg


class _Door:
    """The accepting thread's side: new connections, and those still to say hello, watched with one
    selector; a connection that says hello is handed to :meth:`Link._member`."""

    def __init__(self, link: Link, listener: socket.socket) -> None:
        self.link, self.listener = link, listener
        self.watch = selectors.DefaultSelector()
        self.watch.register(listener, selectors.EVENT_READ)
        self.strangers: dict[socket.socket, _Stranger] = {}  # oldest first: each waits as long
        # Out of descriptors, say, lasts: one line every few seconds.
        self.accept_failures = LogEvery(transport.LOG_INTERVAL_SECONDS, link.clock)

    def __enter__(self) -> _Door:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.strangers:
            sock.close()
        self.watch.close()

    def serve(self) -> None:
        """One round. Never raises: the thread it runs on is this node's only way in."""
        try:
            self._round()
        except Exception:
            log.exception("link %s: a round of the accepting thread failed", self.link.node)
            self.link._stopping.wait(POLL)  # whatever it was, do not spin on it

    def _round(self) -> None:
        """Wait up to :data:`POLL` (less if a hello is due sooner); hear the strangers, then accept
        (so a member whose hello is in is never closed as the oldest by connections accepted after
        it); then close the late."""
        clock = self.link.clock
        wait = POLL
        if self.strangers:
            wait = min(POLL, max(0.0, next(iter(self.strangers.values())).deadline - clock.now()))
        knocked = False
        for key, _ in self.watch.select(wait):
            if key.fileobj is self.listener:
                knocked = True
            elif key.fileobj in self.strangers:  # not closed earlier in this round
                self._hear(key.fileobj)
        if knocked:
            self._admit()
        now = clock.now()
        while self.strangers:  # oldest first, and all wait as long: the late are at the front
            sock, first = next(iter(self.strangers.items()))
            if first.deadline > now:
                break
            self._refuse(sock, f"never came: no hello within {self.link.hello_seconds} s")

    def _admit(self) -> None:
        """Accept what waits (at most :data:`ACCEPTS_PER_ROUND`: the rest wait in the backlog, behind
        the hellos of the next round) and send each its nonce."""
        for _ in range(ACCEPTS_PER_ROUND):
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if self.accept_failures.due() is not None:
                    log.error("link %s: accept failed: %s", self.link.node, exc)
                self.link._stopping.wait(POLL)  # do not spin on it
                return
            nonce = os.urandom(NONCE_BYTES)
            try:
                conn.setblocking(False)
                conn.sendall(LENGTH.pack(NONCE_BYTES) + nonce)  # 20 bytes into an empty buffer
            except OSError:
                conn.close()
                continue
            self.watch.register(conn, selectors.EVENT_READ)
            self.strangers[conn] = _Stranger(nonce, self.link.clock.now() + self.link.hello_seconds)
            if len(self.strangers) > self.link.max_strangers:
                count, oldest = len(self.strangers), next(iter(self.strangers))
                self._hear(oldest)  # one last look: its hello may be in by now
                self._refuse(oldest, f"never came: the oldest of {count} without a hello")

    def _hear(self, conn: socket.socket) -> None:
        """Bytes from a connection that has not said hello yet."""
        try:
            chunk = conn.recv(MAX_HELLO_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._refuse(conn, None)  # gone before its hello: nothing to report
            return
        try:
            hello = self.strangers[conn].hello(chunk, self.link.node)
        except FrameTooLarge as exc:
            self._refuse(conn, f"{exc}, before any hello")
            return
        except transport.FrameRejected:
            self._refuse(conn, "failed authentication (no valid HMAC)")
            return
        except Exception as exc:  # signed, so a member's: a replayed hello, or a bug
            self._refuse(conn, f"was no hello: {exc}")
            return
        if hello is not None:
            rest = bytes(self.strangers.pop(conn).buf)
            self.watch.unregister(conn)
            try:
                self.link._member(conn, rest)
            except BaseException:  # no thread for it (out of memory, say): it must not stay open
                conn.close()
                raise

    def _refuse(self, conn: socket.socket, reason: str | None) -> None:
        """Close a stranger (once: a later call for the same socket does nothing)."""
        if self.strangers.pop(conn, None) is None:
            return
        if reason is not None:
            _drops.dropped(reason)  # before the close: whoever sees it closed finds it logged
        self.watch.unregister(conn)
        conn.close()


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
        hello_seconds: float = HELLO_SECONDS,
        max_strangers: int = MAX_STRANGERS,
    ) -> None:
        self.node, self.epoch = node, epoch
        self.on_batch, self.on_unreachable = on_batch, on_unreachable
        self.ack_timeout, self.attempts = ack_timeout, attempts
        self.hello_seconds, self.max_strangers = hello_seconds, max_strangers
        self.clock: Clock = clock or MonotonicClock()
        self.address = ""
        self.inbox = Inbox()
        self._listener: socket.socket | None = None
        self._peers: dict[str, _Peer] = {}
        self._retired: list[_Peer] = []  # given up or forgotten, perhaps still closing: joined at stop
        self._readers: list[threading.Thread] = []
        self._unanswered: dict[str, int] = {}  # link address -> give-ups in a row, nothing acknowledged
        self._lock = threading.Lock()
        self._deliver = threading.Lock()  # one batch at a time into the Inbox and on_batch
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.batches_received = 0

    def start(self) -> str:
        if not os.environ.get(transport.SECRET_ENV):
            raise ClusterNeedsSecret(
                f"set {transport.SECRET_ENV} (the same, at least {transport.MIN_SECRET_LENGTH} characters, "
                "on every node): the link signs every frame with it"
            )
        transport.install()  # loads the secret the frames are signed with
        if transport.installed_secret() != os.environ[transport.SECRET_ENV]:
            raise ClusterNeedsSecret(
                f"this process signs its frames with another secret: {transport.SECRET_ENV} was set "
                "after the transport was installed in it (a multiprocTCPBase system started); "
                "set it before anything starts"
            )
        listener = socket.create_server((transport.advertised_address(), 0), backlog=BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._acceptor = threading.Thread(target=self._accept, name=f"link-{self.node}-in", daemon=True)
        self._acceptor.start()
        return self.address

    def send(self, node: str, link: str, message: Any) -> None:
        """Queue ``message`` for ``node`` whose link is at ``link`` (``host:port``)."""
        stale = None
        with self._lock:
            peer = self._peers.get(node)
            if peer is None or peer.done or peer.address != link:
                if peer is not None and not peer.done:
                    stale = peer  # the id came back elsewhere: what the old one was owed goes back
                self._retire(peer)
                peer = self._peers[node] = _Peer(self, node, link)
                peer.start()
        if stale is not None:
            self._let_go(stale)
        peer.put(message)

    def forget(self, node: str) -> None:
        """Membership says ``node`` is dead: hand back what it was owed now, stop its thread."""
        with self._lock:
            peer = self._peers.pop(node, None)
            self._retire(peer)
        if peer is not None:
            self._let_go(peer)

    def _let_go(self, peer: _Peer) -> None:
        """Hand back what ``peer`` was owed; nobody sends to its address any more, nor counts for it."""
        peer.give_up()
        with self._lock:
            self._unanswered.pop(peer.address, None)

    def _answered(self, address: str) -> None:
        if address in self._unanswered:
            with self._lock:
                self._unanswered.pop(address, None)

    def _gone(self, address: str, refused: bool) -> bool:
        """A give-up: whether it says the peer at ``address`` is dead (see :data:`OnUnreachable`)."""
        with self._lock:
            count = self._unanswered[address] = self._unanswered.get(address, 0) + 1
        return refused or count >= UNANSWERED_LIMIT

    def _retire(self, peer: _Peer | None) -> None:
        """Keep a peer that is going for :meth:`stop` to join (under the lock)."""
        self._retired = [p for p in self._retired if p.is_alive()]
        if peer is not None:
            self._retired.append(peer)

    def stop(self) -> None:
        """Close every socket and join every thread the link started."""
        self._stopping.set()
        with self._lock:
            peers, self._peers = [*self._peers.values(), *self._retired], {}
            self._retired = []
        for peer in peers:
            peer.wake()
        for thread in (*peers, self._acceptor):
            if thread is not None:
                thread.join(5)
        with self._lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.join(5)

    # -- receiving: an accepting thread that also hears hellos, a reading thread per member ----------
    def _accept(self) -> None:
        assert self._listener is not None
        with self._listener, _Door(self, self._listener) as door:
            while not self._stopping.is_set():
                door.serve()

    def _member(self, conn: socket.socket, rest: bytes) -> None:
        """A connection that said hello: batches in, acks out, on a thread of its own."""
        conn.setblocking(True)
        conn.settimeout(POLL)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an ack leaves at once
        frames = _Frames(conn, rest)  # a batch may follow the hello in the same segment
        reader = threading.Thread(
            target=self._read, args=(conn, frames), name=f"link-{self.node}-read", daemon=True
        )
        with self._lock:
            self._readers = [r for r in self._readers if r.is_alive()]
            self._readers.append(reader)
        reader.start()

    def _read(self, conn: socket.socket, frames: _Frames) -> None:
        """Batches in, acks out, on one member's connection; a frame that fails its MAC (or is too
        large) closes it, unread."""
        with conn:
            try:
                while not self._stopping.is_set():
                    data = frames.next()
                    if data is None:
                        continue
                    try:
                        msg = transport.loads(data)
                    except transport.FrameRejected:
                        _drops.dropped("failed authentication (no valid HMAC)")
                        return
                    if isinstance(msg, LinkBatch):
                        conn.sendall(frame(LinkAck(self.node, self._received(msg))))
            except FrameTooLarge as exc:
                _drops.dropped(str(exc))
            except OSError:
                pass  # the peer closed or reset: its sending thread reconnects
            except Exception:  # a signed frame that does not unpickle here: a member's bug
                log.exception("link %s: an unreadable frame", self.node)

    def _received(self, msg: LinkBatch) -> int:
        """Deliver a new batch (once per sender incarnation); the number to acknowledge."""
        with self._deliver:
            if self.inbox.accept(msg.node, msg.epoch, msg.seq):
                self.batches_received += 1
                try:
                    self.on_batch(msg.node, msg.messages)
                except Exception:  # the node's bug must not end the link
                    log.exception("link %s: a batch from %s failed", self.node, msg.node)
        return msg.seq


class _Peer(threading.Thread):
    """One peer's queue and its sending thread: stop and wait, batch by batch, over one connection
    that is opened on demand and closed on any error (the outbox's resends open it again)."""

    def __init__(self, link: Link, node: str, address: str) -> None:
        super().__init__(name=f"link-{link.node}-to-{node}", daemon=True)
        self.link, self.node, self.address = link, node, address
        self.target = link_address(address)
        self.outbox = Outbox(link.clock, link.ack_timeout, link.attempts)
        self.cond = threading.Condition()
        self.sends: list[Send] = []
        self.done = False
        self.sock: socket.socket | None = None
        self.frames: _Frames | None = None
        self.refused = False  # the peer's address refused a connection (see OnUnreachable)

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
                gone = self.link._gone(self.address, self.refused)
                self.link.on_unreachable(self.node, effect.messages, self.address if gone else None)

    def run(self) -> None:
        try:
            while not self.link._stopping.is_set() and not self.done:
                with self.cond:
                    if not self.sends and self.outbox.in_flight is None and not self.done:
                        self.cond.wait(POLL)
                    sends, self.sends = self.sends, []
                for send in sends:
                    self._write(LinkBatch(self.link.node, self.link.epoch, send.seq, send.messages))
                with self.cond:
                    deadline = self.outbox.deadline()
                if deadline is None:
                    continue
                ack = self._ack(max(0.0, min(deadline - self.link.clock.now(), POLL)))
                if isinstance(ack, LinkAck) and ack.node == self.node:
                    self.link._answered(self.address)
                    self._apply(self.outbox.acked, ack.seq)
                else:
                    self._apply(self.outbox.tick)
        finally:
            self._close()

    def _write(self, batch: LinkBatch) -> None:
        """Send a batch; on failure the connection is closed and the ack will not come: the outbox
        sends it again (on a new connection) or gives the peer up."""
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.target, timeout=self.link.ack_timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.frames = _Frames(self.sock, limit=NONCE_BYTES)
                self._say_hello(self.frames)
            self.sock.settimeout(self.link.ack_timeout)
            self.sock.sendall(frame(batch))
        except ConnectionRefusedError:
            # Nothing listens there: that incarnation is gone (a new one listens on a new port).
            # Give up at once rather than after ``attempts`` timeouts.
            log.debug("link %s: %s refused the connection", self.link.node, self.node)
            self._close()
            self.refused = True
            self._apply(self.outbox.give_up)
        except OSError as exc:
            log.debug("link %s: sending to %s failed: %s", self.link.node, self.node, exc)
            self._close()

    def _say_hello(self, frames: _Frames) -> None:
        """Sign the nonce the peer sent on this new connection (within ``ack_timeout``)."""
        try:
            nonce = frames.next()
        except FrameTooLarge as exc:
            raise ConnectionError(f"{self.node} sent no nonce but a frame that {exc}") from None
        if nonce is None or len(nonce) != NONCE_BYTES:
            raise ConnectionError(f"no challenge from {self.node} within {self.link.ack_timeout} s")
        frames.limit = MAX_FRAME_BYTES
        frames.sock.sendall(frame(LinkHello(self.link.node, self.link.epoch, self.node, nonce)))

    def _ack(self, wait: float) -> Any:
        """The next frame from the peer within ``wait`` seconds (an ack), or None."""
        if self.sock is None or self.frames is None:
            with self.cond:  # no connection: wait for the resend (or for a stop)
                self.cond.wait(wait)
            return None
        try:
            self.sock.settimeout(max(wait, 0.001))
            data = self.frames.next()
            return None if data is None else transport.loads(data)
        except Exception as exc:  # closed, reset, or a frame we refuse: start afresh
            log.debug("link %s: the connection to %s failed: %s", self.link.node, self.node, exc)
            self._close()
            return None

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.frames = None
