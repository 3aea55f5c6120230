"""One socket: its session, its rate limit, and its outgoing frames.

Frames pushed in one loop turn leave together at the end of it, written by one callback for every
socket that has some (:class:`Flusher`): no task wakes per socket per frame. A peer that stops reading
fills its socket's buffer; from then on its frames wait in a queue for a writer task that waits for the
buffer to drain, and the peer is cut off when that queue holds ``max_pending`` frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from chatactors.bridge import drain
from chatactors.core.recent import RecentIds
from chatactors.errors import RateLimited
from chatactors.gateway.frames import SHUTDOWN_REASON, Frame, error_frame
from chatactors.gateway.limits import TokenBucket, TypingGate
from chatactors.session import Session

if TYPE_CHECKING:
    from chatactors.gateway.server import Gateway

log = logging.getLogger("chatactors.server")
CUT_AFTER = 5.0  # seconds a closing socket may take to flush before its TCP connection is cut


def peer_name(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


def close_info(ws: ServerConnection) -> str:
    """The close code and reason of whichever side closed first (1006: the TCP connection just ended)."""
    proto = ws.protocol
    first = proto.close_rcvd if proto.close_rcvd_then_sent else proto.close_sent or proto.close_rcvd
    if first is None:
        return "1006"
    return f"{first.code} {first.reason!r}" if first.reason else str(first.code)


_CLOSE = object()


class Flusher:
    """Writes, once per loop turn, what each socket was given in that turn (one ``send()`` each)."""

    def __init__(self) -> None:
        self._dirty: list[Connection] = []

    def add(self, conn: Connection) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(conn)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:  # one socket's failure must not keep the others' frames back
                log.exception("%s write failed", conn.who)
                conn.abort(CloseCode.INTERNAL_ERROR, "internal error")


class Connection:
    """One socket: its session (once logged in), its rate limit, and its queue of outgoing frames."""

    # Message ids remembered to drop a repeated push. The core pushes a message once, but this gateway
    # also mirrors what a user sends to their other connections: a retried client_id is mirrored
    # again, and a message to oneself reaches the other connection both as a push and as a mirror.
    SEEN = 512

    def __init__(self, gateway: Gateway, ws: ServerConnection, number: int = 0) -> None:
        self.gateway = gateway
        self.ws = ws
        self.number = number
        self.peer = peer_name(ws)
        self.session: Session | None = None
        self.ended = ""  # why the last session ended from elsewhere (its token was revoked)
        peer = ws.remote_address
        self.address = str(peer[0]) if peer else "unknown"  # what the login throttle counts against
        limits = gateway.limits
        self.bucket = TokenBucket(limits.rate, limits.burst, gateway.clock)
        self.dropped = 0  # frames dropped in a row by the rate limit
        self.typing = TypingGate(limits.typing_interval, gateway.clock)
        self.pending: list[Frame] = []  # pushed this loop turn: written at its end by the flusher
        self.out: asyncio.Queue[Any] = asyncio.Queue()  # what waits for a peer that is not reading
        self.writer: asyncio.Task[None] | None = None  # the writer task while frames wait in ``out``
        self.closed = False
        self.held: list[Frame] | None = None  # pushes that reached the loop before 'logged_in'
        self.logging_in = False  # a login or register is being answered (see Gateway._guest)
        self._seen = RecentIds(self.SEEN)
        self._close_args: tuple[int, str] = (CloseCode.GOING_AWAY, SHUTDOWN_REASON)

    @property
    def who(self) -> str:
        """How log lines name it: ``#3 127.0.0.1:40312``, then the user once logged in."""
        user = f" {self.session.username}" if self.session else ""
        return f"#{self.number} {self.peer}{user}"

    def __repr__(self) -> str:
        return f"<Connection {self.who}>"

    # outgoing (loop thread only)
    def push(self, frame: Frame) -> None:
        if self.closed:
            return
        unread = len(self.pending) + self.out.qsize()
        if unread >= self.gateway.limits.max_pending:
            log.warning("%s reads too slowly: closed (%d frames unread)", self.who, unread)
            self.abort(CloseCode.POLICY_VIOLATION, "client too slow: too many unread frames")
            return
        if self.writer is not None:  # frames already wait for the peer: this one goes behind them
            self.out.put_nowait(frame)
            return
        self.pending.append(frame)
        if len(self.pending) == 1:
            self.gateway.flusher.add(self)

    def flush(self) -> None:
        """This turn's frames in one ``send()``; if the peer's buffer is full, to the writer task."""
        frames, self.pending = self.pending, []
        if not frames or self.closed:  # close() took them, abort() dropped them
            return
        ws = self.ws
        if self.writer is not None or ws.paused or ws.protocol.state is not State.OPEN:
            for frame in frames:
                self.out.put_nowait(frame)
            self._start_writer()
            return
        self._write_frames(orjson.dumps(frame) for frame in frames)  # UTF-8, as text frames

    def deliver(self, frame: Frame) -> None:
        """A push from the session: held while a login is answered, so 'logged_in' comes first."""
        if self.held is not None:
            self.held.append(frame)
        elif frame["type"] == "message":
            self.push_message(frame)
        else:
            self.push(frame)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for frame in held:
            self.deliver(frame)

    def push_message(self, frame: Frame) -> None:
        """A message push, dropped if this connection has already seen that message id."""
        if self._seen.add(frame["id"]):
            self.push(frame)

    def remember(self, message_id: int) -> None:
        self._seen.add(message_id)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``: pending writes are flushed, not dropped."""
        if self.closed:
            return
        self.closed = True
        self._close_args = (code, reason)
        for frame in self.pending:
            self.out.put_nowait(frame)
        self.pending = []
        self.out.put_nowait(_CLOSE)
        self._start_writer()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued: the writer is stuck behind a peer that does not read."""
        self.closed = True
        self.pending = []
        if self.writer is not None:
            self.writer.cancel()
        self.writer = asyncio.create_task(self._close_or_cut(code, reason))

    async def finished(self) -> None:
        """Wait until the socket is closed (after :meth:`close` or :meth:`abort`), never raising."""
        if self.writer is not None:
            await asyncio.wait([self.writer])

    def _start_writer(self) -> None:
        if self.writer is None:
            self.writer = asyncio.create_task(self._write())

    async def _close_or_cut(self, code: int, reason: str) -> None:
        # The close frame waits behind what the peer has not read; if it never reads, cut the TCP
        # connection rather than hold a task (and its buffers) forever.
        try:
            async with asyncio.timeout(CUT_AFTER):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    async def _write(self) -> None:
        """Writes what waits in ``out``, waiting for the peer to read; ends when it has caught up."""
        try:
            while True:
                frames = [await self.out.get(), *drain(self.out)]
                closing = _CLOSE in frames
                texts = [orjson.dumps(f) for f in frames if f is not _CLOSE]  # UTF-8, as text frames
                if len(texts) == 1:
                    await self.ws.send(texts[0], text=True)
                elif texts:
                    await self._send_together(texts)
                if closing:
                    break
                if self.out.empty() and not self.ws.paused:
                    self.writer = None  # caught up: the flusher writes again
                    return
            await self._close_or_cut(*self._close_args)
        except ConnectionClosed:
            pass
        except Exception:  # a frame that cannot be written (a bug): this socket ends, as in flush()
            log.exception("%s write failed", self.who)
            self.writer = None  # abort() must not cancel this task, which is ending anyway
            self.abort(CloseCode.INTERNAL_ERROR, "internal error")

    async def _send_together(self, texts: list[bytes]) -> None:
        """Several frames, one ``send()`` syscall, waiting for the peer's buffer to drain after."""
        async with self.ws.send_context():  # checks the state on entry, waits for the buffer on exit
            self._write_frames(texts)  # taken here, so send_context's own flush finds nothing

    def _write_frames(self, texts: Iterable[bytes]) -> None:
        """``texts`` as text frames in one ``send()`` syscall (websockets writes each frame on its
        own). Only frames were queued: the reader flushes what it makes (pongs, a close) at once,
        and sending makes no end of stream."""
        protocol = self.ws.protocol
        for text in texts:
            protocol.send_text(text)
        self.ws.transport.write(b"".join(protocol.data_to_send()))

    # incoming
    def admit(self) -> bool:
        """The rate limit: False drops the frame (with one error frame per run of drops)."""
        if self.bucket.allow():
            self.dropped = 0
            return True
        self.dropped += 1
        if self.dropped == 1:
            log.warning("%s rate limited: frames dropped", self.who)
            limits = self.gateway.limits
            detail = f"more than {limits.rate:g} frames per second; frames are dropped"
            self.push(error_frame(RateLimited(detail)))
        if self.dropped >= self.gateway.limits.flood:
            if not self.closed:
                log.warning("%s flooding: closed (%d frames dropped in a row)", self.who, self.dropped)
            self.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return False
