"""The one adaptation chatactors makes to Thespian (``multiprocTCPBase``), patched once per process.

Thespian 4.0.1 as shipped binds every admin and actor socket to ``('', port)`` (every interface), and
unpickles whatever arrives on it: anyone who reaches a port runs code as the server's user. Its actor
processes also outlive the process that started the system. :func:`install` patches, once per process
and before the ``ActorSystem`` is created (``Chat.__init__``); the admin and every actor process are
forked from that process (Thespian's default ``fork`` start method), so they inherit the patches:

1. **Bind where we advertise.** ``IPBase.IPActorAddress`` binds ``('', port)`` for every "external"
   address; here it binds the address it advertises: ``$THESPIAN_BASE_IPADDR``, 127.0.0.1 unless the
   operator names an interface.
2. **Authenticate before unpickling.** TCPTransport frames ``b"%d>" % len(p) + p`` with ``p`` its module
   global ``serializer`` (pickle). Here ``p`` is ``HMAC-SHA256(secret, pickle) + pickle``, and its
   ``ReceiveBuffer`` checks the MAC (``hmac.compare_digest``) before ``pickle.loads``. Acks are frames
   too (``ackMsg``, ``ackDataErrMsg``, pickled once at import): they are signed and verified the same
   way, or a fake peer could answer a send with a malicious "ack". ``p`` starts with a 16-byte MAC of
   its own length (:func:`length_tag`), and the buffer asks Thespian to read no more than those bytes
   until it has checked them: a stranger who declares a large frame is refused after at most
   :data:`LENGTH_DIGITS` + 1 + :data:`TAG_BYTES` bytes (without the tag it could make the process hold
   up to :data:`MAX_FRAME_BYTES` per connection before the MAC at the end failed), and one who never
   sends the ``>`` after the length after :data:`LENGTH_DIGITS` + 1 bytes (Thespian would buffer it
   for ever). A frame that fails, or declares more than :data:`MAX_FRAME_BYTES`, is dropped: Thespian
   answers it with ACK+DATAERR and closes the socket (or retries a send whose ack failed); one
   WARNING per :data:`LOG_INTERVAL_SECONDS` per process goes to the logger ``chatactors.transport``,
   counting the drops in between.
3. **No actor outlives its system.** Each actor and logger process asks Linux for SIGKILL when its
   parent dies (``prctl(PR_SET_PDEATHSIG)``), so killing a parent actor takes its children along. The
   admin is daemonized (setsid + double fork), out of reach of that signal: it watches the process that
   started it (a pidfd) and, when that process is gone, kills its own process group (the admin, the
   logger and every actor; never the starter's group).
4. **Idle sockets closed sooner** (:data:`IDLE_SOCKET_SECONDS`, see :func:`install`).
5. **A resend is prompt and keeps its place.** Thespian reuses one connection both ways, and either end
   may close it when idle. A send that meets the close (the peer shut the socket before its ack) is
   resent, but only after ``attempts x 35 s``, and meanwhile later sends to the same actor open a new
   connection and overtake it: a ``RetireApproved`` overtook the message forwarded just before it,
   the actor retired, and the message came 35 s later (a caller's call timed out). The receiver acks
   before it handles a frame, so a frame whose ack never came was never handled: here a resend goes
   after :data:`RESEND_STEP_SECONDS` x attempts (at most :data:`RESEND_CAP_SECONDS`), and a send waits
   behind an earlier one to the same address that waits to be resent. Not at once: a resend at once
   could reach an actor that was exiting, whose socket still acked the frame, and the message was lost
   (seen ~1 run in 10 of a test whose reader retires every 2 ms); a second later a gone actor refuses
   the connection and the send comes back as a dead letter, which the directory routes again. So each
   sender's messages to an actor arrive in the order sent. Above the transport, the retire handshake
   counts the forwards an actor has received (``core/registry.py``), so the directory never lets an
   actor exit with a forward on its way.
6. **At most :data:`MAX_UNIDENTIFIED` connections waiting for their first frame** (see
   :func:`_accept_within_cap`), each waiting for data at most :data:`UNIDENTIFIED_SECONDS` (then
   Thespian closes it after 20 turns of its loop with nothing read). Thespian accepts and watches every
   connection for 7 minutes, and rebuilds its selector from every watched socket on each turn: anyone
   on the machine could hold hundreds open and slow every actor's loop by milliseconds a turn. Past the
   cap the one silent longest is closed (a read moves a connection to the back). A peer whose first
   frame was cut that way sends it again (5.): Thespian declared such a send's broken pipe a dead
   target (a live actor's messages came back as dead letters) where the frame needed more than one
   ``send()``; here only a refused connection is (:func:`_send_refused`).

The secret: ``$CHATACTORS_CLUSTER_SECRET`` (at least :data:`MIN_SECRET_LENGTH` characters) where systems
on several hosts must talk; otherwise 32 random bytes made once per process at the first
:func:`install`. Thespian's transport is per process, not per ``Chat``, so every Chat in one process
shares it, and only its forked admin and actors know it: another process (a restarted server, a
stranger) cannot talk to this system, nor this one to theirs. The MAC gives no secrecy and no replay
protection: across hosts, run on a private network.
"""

from __future__ import annotations

import ctypes
import errno
import hmac
import logging
import multiprocessing
import os
import pickle
import secrets
import select
import signal
import socket
import sys
import threading
import time
from datetime import timedelta
from hashlib import sha256
from typing import Any

from thespian.actors import ActorAddress
from thespian.system import multiprocCommon
from thespian.system.timing import ExpirationTimer
from thespian.system.transport import MAX_TRANSMIT_RETRIES, IPBase, TCPTransport, TransmitIntent, streamBuffer

from chatactors.core.clock import LogEvery
from chatactors.errors import AdminPortInUse

SECRET_ENV = "CHATACTORS_CLUSTER_SECRET"
ADDRESS_ENV = "THESPIAN_BASE_IPADDR"
DEFAULT_ADDRESS = "127.0.0.1"
MIN_SECRET_LENGTH = 16
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a full history page (200 bodies of 4,096 characters) is < 4 MB
LOG_INTERVAL_SECONDS = 10.0
IDLE_SOCKET_SECONDS = 3.0
# Connections that have not yet delivered a frame, per process (6.). Each costs every turn of the
# process's loop ~12 us (Thespian rebuilds its selector each turn: 256 made a turn ~3 ms). Legitimate
# peers have few at once: Thespian accepts one connection a turn and reads each readable one the next.
MAX_UNIDENTIFIED = 32
UNIDENTIFIED_SECONDS = 30.0  # how long such a connection may wait for data (Thespian: 7 min)
RESEND_STEP_SECONDS = 1.0
RESEND_CAP_SECONDS = 5.0
MAC_BYTES = sha256().digest_size
TAG_BYTES = 16  # the tag of a Thespian frame's length, checked before the rest is buffered
MIN_FRAME_BYTES = TAG_BYTES + MAC_BYTES + 1  # the tag, the MAC, a pickle of at least one byte
LENGTH_DIGITS = len(str(MAX_FRAME_BYTES))  # the most digits before a frame's '>'
_ANY_ADDRESS = ("", "0.0.0.0", "::")
_PR_SET_PDEATHSIG = 1

# Created at import, before any fork: in an actor process Thespian replaces logging's root and
# manager with a forwarder that sends records over the transport. A warning about the transport
# must not go through it, so this logger keeps the handlers the starting process configured.
LOG = logging.getLogger("chatactors.transport")

# Thespian's originals, taken at import (a process started with 'spawn' imports this module anew).
_thespian_ip_address_init = IPBase.IPActorAddress.__init__
_thespian_start_admin = multiprocCommon.startAdmin
_thespian_start_child = multiprocCommon.startChild
_thespian_start_logger = multiprocCommon.startupASLogger
_thespian_first_transmit_step = TCPTransport.TCPTransport._next_XMIT_1
_thespian_accept_new_incoming = TCPTransport.TCPTransport._acceptNewIncoming

_install_lock = threading.Lock()
_installed = False
_secret: bytes | None = None


# -- 2. authenticated frames ------------------------------------------------------------------------------
class FrameRejected(ValueError):
    """A frame that failed authentication (raised only by :func:`loads`)."""


def _key() -> bytes:
    if _secret is None:
        raise RuntimeError("chatactors.transport.install() has not run in this process")
    return _secret


def sign(payload: bytes) -> bytes:
    """``payload`` prefixed with its HMAC-SHA256 under this process's secret."""
    return hmac.new(_key(), payload, sha256).digest() + payload


def verify(data: bytes) -> bytes | None:
    """The payload of a signed ``data``, or None if its MAC does not match."""
    mac, payload = data[:MAC_BYTES], data[MAC_BYTES:]
    expected = hmac.new(_key(), payload, sha256).digest()
    return payload if len(mac) == MAC_BYTES and hmac.compare_digest(mac, expected) else None


def dumps(obj: Any) -> bytes:
    """Stands in for ``pickle.dumps`` as TCPTransport's ``serializer``: the pickle, signed."""
    return sign(pickle.dumps(obj))


def loads(data: bytes) -> Any:
    """Stands in for ``pickle.loads``: unpickles only what :func:`dumps` signed with our secret."""
    payload = verify(data)
    if payload is None:
        raise FrameRejected("unauthenticated frame")
    return pickle.loads(payload)


def length_tag(size: int) -> bytes:
    """What a Thespian frame of ``size`` bytes (after its ``N>`` prefix) starts with: a MAC of that
    size, so a stranger's frame is refused at its first bytes instead of once it has declared and
    sent up to :data:`MAX_FRAME_BYTES` for us to buffer."""
    return hmac.new(_key(), b"thespian frame of %d bytes" % size, sha256).digest()[:TAG_BYTES]


class ThespianSerializer:
    """TCPTransport's ``serializer``: :func:`dumps` behind the :func:`length_tag` of the whole."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        signed = dumps(obj)
        return length_tag(TAG_BYTES + len(signed)) + signed

    @staticmethod
    def loads(data: bytes) -> Any:
        if not hmac.compare_digest(data[:TAG_BYTES], length_tag(len(data))):
            raise FrameRejected("unauthenticated frame length")
        return loads(data[TAG_BYTES:])


class DropLog(LogEvery):
    """One WARNING per interval for dropped frames. ``what`` names the frames in the warning
    (Thespian's, or the node link's)."""

    def __init__(self, interval: float, what: str = "Thespian") -> None:
        super().__init__(interval)
        self.what = what

    def dropped(self, reason: str) -> None:
        more = self.due()
        if more is None:
            return
        since = f" ({more} more dropped since the last warning)" if more else ""
        LOG.warning("dropped a %s frame that %s, in pid %d%s", self.what, reason, os.getpid(), since)


_drops = DropLog(LOG_INTERVAL_SECONDS)


class CheckedReceiveBuffer(streamBuffer.ReceiveBuffer):  # type: ignore[misc]
    """Replaces TCPTransport's ``ReceiveBuffer``: refuses oversized frames and checks the MAC before
    unpickling. A refused frame reads as done with nothing usable (``completed()`` is None), which
    Thespian already handles: ACK+DATAERR and close for an incoming frame, a retry for an ack."""

    def __init__(self, _deserialize: Any = None) -> None:
        super().__init__(loads)  # Thespian passes its serializer's loads: the check is ours, below
        self._refused = False
        self._tagged = False  # the length tag has been checked

    def _refuse(self, reason: str) -> None:
        self._refused = True
        self._buf = b""
        _drops.dropped(reason)

    def addMore(self, buf: bytes) -> None:
        if self._refused:
            return
        try:
            super().addMore(buf)
        except ValueError:
            self._refuse("had no valid length")
            return
        if self._size is None:
            # Thespian keeps every byte until a '>' comes (its own guard, "more than 40", never fires:
            # it keeps _blen at 1), so a stranger who never sends one would be buffered for ever.
            if len(self._buf) > LENGTH_DIGITS:
                self._refuse("had no valid length")
            return
        if not MIN_FRAME_BYTES <= self._size <= MAX_FRAME_BYTES:
            self._refuse(f"declared {self._size} bytes ({MIN_FRAME_BYTES} to {MAX_FRAME_BYTES})")
        elif not self._tagged and self._blen >= TAG_BYTES:
            if not hmac.compare_digest(self._buf[:TAG_BYTES], length_tag(self._size)):
                self._refuse("failed authentication (no valid length tag)")
            self._tagged = True

    def isDone(self) -> bool:
        return self._refused or bool(super().isDone())

    def remainingAmount(self) -> int:
        """What Thespian reads next (``recv`` of up to this much): only the tag's missing bytes until
        the tag has been checked, so a stranger's first read after its length is at most the tag."""
        if self._refused:
            return 1
        if self._size is not None and not self._tagged:
            return max(1, TAG_BYTES - int(self._blen))
        return int(super().remainingAmount())

    def completed(self) -> tuple[Any, bytes] | None:
        if self._refused or self._size is None or self._blen != self._size or not self._tagged:
            return None
        payload = verify(self._buf[TAG_BYTES:])
        if payload is None:
            self._refuse("failed authentication (no valid HMAC)")
            return None
        return pickle.loads(payload), self._extra


# -- 1. bind where we advertise ------------------------------------------------------------------------------
def _bind_advertised_address(self: Any, *args: Any, **kwargs: Any) -> None:
    """Replaces ``IPActorAddress.__init__``, which sets ``bindname = ('', port)`` for an external
    address: bind the advertised address instead (``sockname``, from ``$THESPIAN_BASE_IPADDR``)."""
    _thespian_ip_address_init(self, *args, **kwargs)
    if self.bindname[0] in _ANY_ADDRESS:
        host = self.sockname[0]
        self.bindname = (DEFAULT_ADDRESS if host in _ANY_ADDRESS else host, *self.bindname[1:])


# -- 3. no orphans ---------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """SIGKILL this process when its parent exits. The parent forks actors from its main thread
    (PDEATHSIG follows the forking thread), and may be gone before the signal is armed: check."""
    if not sys.platform.startswith("linux"):
        return
    parent = multiprocessing.parent_process()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) != 0:
        LOG.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def _inherited() -> None:
    """A Thespian process started by 'spawn' or 'forkserver' runs in a fresh interpreter where
    :func:`install` never ran: its transport would unpickle anything. Refuse to start it."""
    if not _installed:
        raise RuntimeError(
            "chatactors needs Thespian's 'fork' start method: the transport's patches are not inherited"
        )


def _start_child(*args: Any, **kwargs: Any) -> Any:
    """Replaces ``multiprocCommon.startChild``, the target of every actor process."""
    _inherited()
    _die_with_parent()
    return _thespian_start_child(*args, **kwargs)


def _start_logger(*args: Any, **kwargs: Any) -> Any:
    """Replaces ``multiprocCommon.startupASLogger``, the target of the admin's logger process."""
    _inherited()
    _die_with_parent()
    return _thespian_start_logger(*args, **kwargs)


class _Owner:
    """The process that started the admin. Opened before Thespian daemonizes the admin (its parent
    is still the owner then); the pidfd survives the daemonizing fork, so no pid reuse can fool it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd: int | None
        try:
            self.group = os.getpgid(pid)
            self.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.group, self.pidfd = -1, None  # gone already: the watcher finds out at once
        except (AttributeError, OSError):
            self.pidfd = None  # no pidfd (old kernel, not Linux): poll

    def _alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def watch(self) -> None:
        threading.Thread(target=self._stop_group_when_gone, name="chatactors-owner", daemon=True).start()

    def _stop_group_when_gone(self) -> None:
        if self.pidfd is not None:
            select.select([self.pidfd], [], [])  # readable once the owner has exited
        else:
            pause = threading.Event()
            while self._alive():
                pause.wait(0.2)
        group = os.getpgrp()
        LOG.warning("pid %d, which started this chat system, is gone: stopping its processes", self.pid)
        if group == os.getsid(0) and group != self.group:
            os.killpg(group, signal.SIGKILL)  # the admin's own session: admin, logger, every actor
        os.kill(os.getpid(), signal.SIGKILL)  # not our own group: the admin alone; PDEATHSIG does the rest


def _start_admin(admin_class: type, *args: Any, **kwargs: Any) -> Any:
    """Replaces ``multiprocCommon.startAdmin``: runs in the process forked to become the admin, before
    it daemonizes. The admin class it is given starts watching the owner when the admin runs."""
    _inherited()
    parent = multiprocessing.parent_process()
    owner = _Owner((parent.pid if parent else None) or os.getppid())  # pid of the server, even if gone

    class OwnedAdmin(admin_class):  # type: ignore[misc]
        def run(self) -> Any:
            owner.watch()
            return super().run()

    OwnedAdmin.__name__ = OwnedAdmin.__qualname__ = admin_class.__name__  # Thespian names the process by it
    return _thespian_start_admin(OwnedAdmin, *args, **kwargs)


def wait_for_free_port(host: str, port: int, timeout: float = 5.0) -> None:
    """Return once nothing listens on ``host:port``; a system still there after ``timeout`` seconds
    (a stale one, or another program) raises AdminPortInUse; Thespian would otherwise attach to it.
    A port that cannot be bound at all (an address not on this host, a privileged port) is bad
    configuration: ValueError."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise ValueError(f"cannot use admin port {port} on {host}: {exc}") from exc
        if time.monotonic() >= deadline:
            raise AdminPortInUse(
                f"admin port {port} on {host} is still in use after {timeout:g} s: another actor system "
                "(a stale one left by a server that died?) or another program holds it; stop it or "
                "choose another admin port"
            )
        pause.wait(0.1)


# -- install -----------------------------------------------------------------------------------------------------
def actor_group(pid: int) -> int | None:
    """The process group of one of a system's actor processes: the admin's own session, which holds
    the admin, its logger and every actor. None if it is gone, or shares our group (never ours to kill)."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return None if group == os.getpgrp() else group


def stop_leftovers(group: int | None, host: str, port: int, timeout: float = 2.0) -> bool:
    """After ``ActorSystem.shutdown()``: if the admin still listens ``timeout`` seconds later (a
    shutdown that timed out on a loaded machine), kill the system's process group. True if it had to."""
    try:
        wait_for_free_port(host, port, timeout)
        return False
    except (AdminPortInUse, ValueError):  # still held, or its address can no longer be bound at all
        if group is None:
            return False
        LOG.warning(
            "the actor system on port %d did not stop within %g s: killing its processes", port, timeout
        )
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True


# -- 5. prompt, ordered resends ---------------------------------------------------------------------------
def _prompt_retry(self: Any, immediately: bool = False) -> bool:
    """``TransmitIntent.retry``: the same bounds (Thespian's attempt limit and 5-minute quit time),
    shorter waits: :data:`RESEND_STEP_SECONDS` x (attempts + 1), up to :data:`RESEND_CAP_SECONDS`."""
    if self._attempts > MAX_TRANSMIT_RETRIES or self._quitTime.view().expired():
        return False
    wait = 0.0 if immediately else min(RESEND_CAP_SECONDS, (self._attempts + 1) * RESEND_STEP_SECONDS)
    self._attempts += 1
    self._retryTime = ExpirationTimer(timedelta(seconds=wait))
    return True


def _first_transmit_step_in_order(self: Any, intent: Any) -> Any:
    """``TCPTransport._next_XMIT_1``: queue behind an earlier send to the same address that waits to
    be resent; Thespian only queues behind one that holds a socket. Only a resend counts: it goes out
    by its own timer, whereas sends queued for a free connection wait on others (counting them, a
    resend stuck behind a send queued behind it, and both waited for ever)."""
    if any(
        other is not intent and other.targetAddr == intent.targetAddr and hasattr(other, "_retryTime")
        for other in self._waitingTransmits
    ):
        intent.awaitingTXSlot()
        return True  # woken when a connection to that address is free (Thespian's own queueing)
    return _thespian_first_transmit_step(self, intent)


# -- 6. a cap on connections that have sent nothing yet --------------------------------------------------------
def _accept_within_cap(self: Any) -> None:
    """Replaces ``TCPTransport._acceptNewIncoming``: accept as Thespian does, then, past
    :data:`MAX_UNIDENTIFIED` connections that have not delivered a frame yet, close those silent
    longest (Thespian puts a connection back at the end of its dict each time it reads from it)."""
    _thespian_accept_new_incoming(self)
    incoming = self._incomingSockets
    waiting = [fd for fd, inc in incoming.items() if _unidentified(inc)]
    for fd in waiting[: max(0, len(waiting) - MAX_UNIDENTIFIED)]:
        incoming.pop(fd).close()
        _drops.dropped(f"never came: more than {MAX_UNIDENTIFIED} connections waited for their first frame")


def _send_refused(err: OSError) -> bool:
    """Replaces TCPTransport's ``err_send_connrefused``, which also counts EPIPE: what a send meets when
    the receiver closed a connection it had accepted (cut by the cap, expired, idle) while a frame too
    large for one ``send()`` was on its way. Thespian made that a dead letter for a live actor; it goes
    to Thespian's retry instead (5.), and an actor really gone refuses the new connection."""
    return err.errno == errno.ECONNREFUSED


def _unidentified(incoming: Any) -> bool:
    """Whether no frame has come on this connection yet (Thespian learns who sent it from its first)."""
    return incoming.fromAddress.addressDetails is None  # an accepted one starts as ActorAddress(None)


def _load_secret() -> bytes:
    shared = os.environ.get(SECRET_ENV)
    if shared is None:
        return secrets.token_urlsafe(32).encode()  # printable: a peer this process starts can be given it
    if len(shared) < MIN_SECRET_LENGTH:
        raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters")
    return shared.encode()


def context_address(ctx: Any) -> tuple[str, int]:
    """``(host, port)`` where a private context of a multiprocTCPBase system listens: Thespian keeps
    it on the context's transport, which has no public accessor."""
    host, port = ctx._systemBase.transport.myAddress.addressDetails.sockname
    return str(host), int(port)


def tcp_address(host: str, port: int) -> Any:
    """The Thespian address of whatever listens on ``host:port`` (an actor, or a context)."""
    return ActorAddress(IPBase.TCPv4ActorAddress(host, port))


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free now on the advertised address, for a port someone else binds later (an admin).

    Taken below the kernel's ephemeral range: a port from that range, free when picked, can be given
    to any outgoing connection (a database client, an actor's) before the admin binds it, and
    Thespian then retries the bind for 11 s and gives up. Nothing takes a port below the range unasked.
    """
    low = _ephemeral_low()
    host = advertised_address()
    for _ in range(64):
        port = 10000 + secrets.randbelow(low - 11024) if low > 12000 else 0
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket() as s:  # no luck below the range: any free port
        s.bind((host, 0))
        return int(s.getsockname()[1])


def advertised_address() -> str:
    """The address every Thespian socket binds and advertises."""
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def installed_secret() -> str | None:
    """The secret this process signs Thespian frames with, once :func:`install` ran (None before):
    what a peer it starts must be given in ``$CHATACTORS_CLUSTER_SECRET``."""
    return _secret.decode() if _secret is not None else None


def install() -> str:
    """Apply the patches above (once per process; later calls change nothing) and return the address
    every Thespian socket will bind. Call before creating a multiprocTCPBase ActorSystem."""
    global _installed, _secret
    with _install_lock:
        os.environ.setdefault(ADDRESS_ENV, DEFAULT_ADDRESS)  # else Thespian guesses an outside address
        if _installed:
            return advertised_address()
        _secret = _load_secret()
        IPBase.IPActorAddress.__init__ = _bind_advertised_address
        TCPTransport.serializer = ThespianSerializer
        TCPTransport.ReceiveBuffer = CheckedReceiveBuffer
        framed = ThespianSerializer.dumps
        TCPTransport.ackMsg = streamBuffer.toSendBuffer(streamBuffer.ackPacket, framed)
        TCPTransport.ackDataErrMsg = streamBuffer.toSendBuffer(streamBuffer.ackDataErrPacket, framed)
        # Thespian re-registers every open socket in a fresh selector on each loop turn (O(open
        # sockets) per message) and keeps an idle one 20 minutes. A hub (directory, persistence,
        # supervisor) talks to every live actor, so 300 idle users slowed 1:1 traffic from ~390 to
        # ~50 msg/s. Closing sockets idle for a few seconds keeps hubs light.
        TCPTransport.MAX_IDLE_SOCKET_PERIOD = timedelta(seconds=IDLE_SOCKET_SECONDS)
        TransmitIntent.retry = _prompt_retry
        TCPTransport.TCPTransport._next_XMIT_1 = _first_transmit_step_in_order
        TCPTransport.TCPTransport._acceptNewIncoming = _accept_within_cap
        TCPTransport.err_send_connrefused = _send_refused  # looked up as a module global when used
        TCPTransport.MAX_INCOMING_SOCKET_PERIOD = timedelta(seconds=UNIDENTIFIED_SECONDS)
        multiprocCommon.startAdmin = _start_admin
        multiprocCommon.startChild = _start_child
        multiprocCommon.startupASLogger = _start_logger
        _installed = True
        return advertised_address()


def system_capabilities(admin_port: int) -> dict[str, Any]:
    """Thespian capabilities for a chat system's admin on ``admin_port``; remote code loading is off."""
    host = advertised_address()
    return {
        "Admin Port": admin_port,
        "Convention Address.IPv4": (host, admin_port),
        "AllowRemoteActorSources": "No",
        "Process Startup Method": "fork",  # Thespian's default, pinned: children inherit install()
    }
