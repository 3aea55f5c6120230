"""The WebSocket gateway: JSON frames in (``docs/protocol.md``), ``Chat``/``Session`` calls out, pushes back.

Threads, and why: the asyncio loop owns every socket and never waits on an actor. Sends, the frames
that come by the thousand, are asked of the actors from the loop itself: the request is queued for the
actor driver and its reply settles a future, so no thread is held per message in flight. The rarer
calls (login, reads, rooms) run on a :class:`~concurrent.futures.ThreadPoolExecutor`. Pushes and
replies arrive on the Chat's dispatcher thread and reach the loop through one
:class:`~chatactors.bridge.LoopPost`, which wakes it once per burst, in arrival order; each connection
has one writer task, so replies and pushes leave in the order they reached the loop.

One :class:`~chatactors.chat.Chat` per server process; each connection that logs in holds its own
``Session``, so several sessions of one user (two terminals, a terminal and a browser) all get pushes.
The same port serves the chat page (``chatactors/static``) to plain HTTP GETs.

Bad input never ends the server or another session: every frame is checked, every failure becomes an
``error`` frame with the ``code`` of a :mod:`chatactors.errors` class, and only a frame over the size
limit (1009), a flood (1008) or a reader too slow to keep up (1008) closes that one connection.

What happens is logged on ``chatactors.server``, one line per event, each starting with the
connection's number and peer address (``#3 127.0.0.1:40312``): connections opened and closed, logins,
registrations and logouts, refused logins, rate limiting, floods and slow readers cut off, bad frames,
a database that cannot be reached. Passwords, tokens and message bodies are never logged.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import math
import mimetypes
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from importlib import resources
from typing import Any, TypeVar

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chatactors.bridge import LoopPost, drain
from chatactors.chat import Chat, Session
from chatactors.core.model import Message, ReadEvent, Receipt
from chatactors.core.rules import (
    check_client_id,
    check_id,
    check_key,
    check_limit,
    check_text,
    check_user_ref,
)
from chatactors.errors import (
    ChatError,
    InternalError,
    InvalidMessage,
    NotLoggedIn,
    RateLimited,
    SessionEnded,
    TooManyAttempts,
    Unavailable,
)

log = logging.getLogger("chatactors.server")

T = TypeVar("T")
Frame = dict[str, Any]
# The conversation a received message is read in: ("with", sender_id) or ("room", name).
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # flood, or a reader too slow to keep up
CLOSE_TOO_BIG = 1009  # set by websockets itself for a frame over max_size
SHUTDOWN_REASON = "server shutting down"
CUT_AFTER = 5.0  # seconds a closing socket may take to flush before its TCP connection is cut


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may do; the defaults suit people typing, not bots."""

    max_frame: int = 64 * 1024  # bytes per incoming frame; larger closes with 1009
    rate: float = 20.0  # frames per second, sustained
    burst: int = 40  # frames accepted at once before the rate applies
    flood: int = 200  # dropped frames in a row before the connection is closed (1008)
    max_pending: int = 2000  # outgoing frames queued for a slow reader before it is closed (1008)


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; the clock is a parameter so tests need no sleep."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens = float(burst)
        self.stamp = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# -- frames ---------------------------------------------------------------------------------------
def message_dict(m: Message) -> Frame:
    """A message as the protocol shows it: ``room`` for group messages, else ``recipient``."""
    out: Frame = {
        "id": m.id,
        "sender": m.sender,
        "sender_id": m.sender_id,
        "body": m.body,
        "sent_at": _iso(m.sent_at),
        "status": m.status,
    }
    if m.room is not None:
        out["room"] = m.room
    else:
        out["recipient"] = m.recipient
        out["recipient_id"] = m.recipient_id
    return out


def message_frame(m: Message) -> Frame:
    return {"type": "message", **message_dict(m)}


def receipt_frames(r: Receipt) -> list[Frame]:
    """One ``receipt`` frame per message id (the core batches them; the protocol does not)."""
    return [
        {"type": "receipt", "id": i, "status": r.status, "by": r.by, "by_id": r.by_id} for i in r.message_ids
    ]


INTERNAL_DETAIL = "internal error; the server logged it"


def error_frame(error: ChatError, request: Frame | None = None) -> Frame:
    """An ``error`` frame; it names the request it answers so a client can match it.

    Only fields that were valid are repeated (a lone surrogate could not even be sent back), and an
    :class:`InternalError`'s detail stays in the server's log.
    """
    detail = INTERNAL_DETAIL if isinstance(error, InternalError) else error.detail or str(error)
    frame: Frame = {"type": "error", "code": error.code, "detail": detail}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:  # too_many_attempts: seconds until a login may be tried again
        frame["retry_after"] = math.ceil(retry_after)
    if request is not None:
        frame["request"] = _echo(request.get("type"))
        for key in ("client_id", "room", "to", "with"):
            value = _echo(request.get(key))
            if value is not None:
                frame[key] = value
    return frame


def _echo(value: Any) -> str | int | None:
    """``value`` if it is safe to repeat to the client: a short valid text or an id."""
    try:
        if isinstance(value, str) and len(value) <= 128:
            return check_key(value, "")
        return check_id(value) if isinstance(value, int) else None
    except InvalidMessage:
        return None


def _iso(value: datetime) -> str:
    return value.isoformat()


def _plain(value: Any) -> Any:
    """Whatever the core returns (dataclasses, Messages, tuples) as JSON-ready values."""
    if isinstance(value, Message):
        return message_dict(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def parse_frame(raw: str | bytes) -> Frame:
    """A client frame: one JSON object with a string ``type``, else InvalidMessage."""
    if isinstance(raw, bytes):
        raise InvalidMessage("send JSON text frames, not binary")
    try:
        frame = json.loads(raw)
    except ValueError:  # integers of over 4,300 digits too
        raise InvalidMessage("not JSON") from None
    except RecursionError:
        raise InvalidMessage("JSON nested too deeply") from None
    if not isinstance(frame, dict):
        raise InvalidMessage("a frame is a JSON object")
    if not isinstance(frame.get("type"), str):
        raise InvalidMessage("a frame needs a string 'type'")
    check_key(frame["type"], "'type'")
    return frame


def _field(frame: Frame, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """A field of the right JSON type; text must be valid Unicode and every integer is an id."""
    value = frame.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"'{frame['type']}' needs '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidMessage(f"'{name}' has the wrong type")
    if isinstance(value, str):
        return check_text(value, f"'{name}'")
    if isinstance(value, int):
        return check_id(value, f"'{name}'")
    return value


def _key(frame: Frame, name: str, *, required: bool = True) -> str | None:
    """A name, token or client_id: text the database looks up (no NUL either)."""
    value = _field(frame, name, str, required=required)
    return None if value is None else check_key(value, f"'{name}'")


def _user_ref(frame: Frame, name: str, *, required: bool = True) -> str | int | None:
    value = _field(frame, name, (str, int), required=required)
    return None if value is None else check_user_ref(value, f"'{name}'")


def _client_id(frame: Frame) -> str | None:
    _field(frame, "client_id", str, required=False)
    return check_client_id(frame.get("client_id"))


def _limit(frame: Frame) -> int:
    """``limit``: 10 when absent; 0, negative or over the maximum is invalid, never a default."""
    limit = frame.get("limit")
    return 10 if limit is None else check_limit(limit)


MAX_READ_IDS = 1000


def _id_list(frame: Frame, name: str, what: str) -> list[int]:
    ids = _field(frame, name, list)
    if len(ids) > MAX_READ_IDS:
        raise InvalidMessage(f"'{name}' must be a list of at most {MAX_READ_IDS} {what}s")
    return [check_id(i, f"each of '{name}'") for i in ids]


# -- log lines ------------------------------------------------------------------------------------
def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


def _kind(frame: Frame | None) -> str:
    """A frame's type for a log line: quoted and cut short, so a client cannot forge lines."""
    return repr(str(frame.get("type"))[:40]) if frame is not None else "frame"


def _close_info(ws: ServerConnection) -> str:
    """The close code and reason of whichever side closed first (1006: the TCP connection just ended)."""
    proto = ws.protocol
    first = proto.close_rcvd if proto.close_rcvd_then_sent else proto.close_sent or proto.close_rcvd
    if first is None:
        return "1006"
    return f"{first.code} {first.reason!r}" if first.reason else str(first.code)


def _log_refusal(conn: Connection, frame: Frame | None, exc: ChatError) -> None:
    """One line per refused frame; logins say who tried (by name or id), never with what."""
    if frame is not None and frame.get("type") in ("login", "register"):
        who = frame.get("username", frame.get("user_id"))
        name = "by token" if frame.get("token") is not None else f"as {str(who)[:40]!r}"
        level = logging.WARNING if isinstance(exc, TooManyAttempts) else logging.INFO
        log.log(level, "%s %s %s refused: %s", conn.who, frame["type"], name, exc.code)
    elif isinstance(exc, InvalidMessage | NotLoggedIn):
        log.info("%s bad frame %s: %s", conn.who, _kind(frame), exc.detail[:120])
    elif isinstance(exc, Unavailable):
        log.warning("%s %s failed: %s", conn.who, _kind(frame), exc.code)
    else:
        log.debug("%s %s refused: %s", conn.who, _kind(frame), exc.code)


# -- static files ---------------------------------------------------------------------------------
class StaticFiles:
    """The chat page, read once at start-up (a handful of small files, no build step)."""

    def __init__(self, package: str = "chatactors", folder: str = "static") -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        root = resources.files(package) / folder
        if not root.is_dir():
            return
        for entry in root.iterdir():
            if entry.is_file():
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind == "application/javascript":
                    kind += "; charset=utf-8"
                self.files["/" + entry.name] = (entry.read_bytes(), kind)

    def response(self, path: str) -> Response:
        path = path.split("?", 1)[0]
        found = self.files.get("/index.html" if path == "/" else path)
        if found is None:
            return _http(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        return _http(http.HTTPStatus.OK, *found)


def _http(status: http.HTTPStatus, body: bytes, kind: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", kind),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


# -- one connection ---------------------------------------------------------------------------------
_CLOSE = object()


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
        self.peer = _peer(ws)
        self.session: Session | None = None
        self.ended = ""  # why the last session ended from elsewhere (its token was revoked)
        peer = ws.remote_address
        self.address = str(peer[0]) if peer else "unknown"  # what the login throttle counts against
        limits = gateway.limits
        self.bucket = TokenBucket(limits.rate, limits.burst, gateway.clock)
        self.dropped = 0  # frames dropped in a row by the rate limit
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        self.held: list[Frame] | None = None  # pushes that reached the loop before 'logged_in'
        self._seen: deque[int] = deque(maxlen=self.SEEN)
        self._seen_set: set[int] = set()
        self._close_args: tuple[int, str] = (CLOSE_GOING_AWAY, SHUTDOWN_REASON)
        self.writer = asyncio.create_task(self._write())

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
        if self.out.qsize() >= self.gateway.limits.max_pending:
            log.warning("%s reads too slowly: closed (%d frames unread)", self.who, self.out.qsize())
            self.abort(CLOSE_POLICY, "client too slow: too many unread frames")
            return
        self.out.put_nowait(frame)

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
        if frame["id"] in self._seen_set:
            return
        self.remember(frame["id"])
        self.push(frame)

    def remember(self, message_id: int) -> None:
        if message_id in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(message_id)
        self._seen_set.add(message_id)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``: pending writes are flushed, not dropped."""
        if self.closed:
            return
        self.closed = True
        self._close_args = (code, reason)
        self.out.put_nowait(_CLOSE)

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued: the writer is stuck behind a peer that does not read."""
        self.closed = True
        self.writer.cancel()
        self.writer = asyncio.create_task(self._close_or_cut(code, reason))

    async def _close_or_cut(self, code: int, reason: str) -> None:
        # The close frame waits behind what the peer has not read; if it never reads, cut the TCP
        # connection rather than hold a task (and its buffers) forever.
        try:
            async with asyncio.timeout(CUT_AFTER):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                frames = [await self.out.get(), *drain(self.out)]  # what this loop turn queued: one write
                closing = _CLOSE in frames
                texts = [orjson.dumps(f) for f in frames if f is not _CLOSE]  # UTF-8, as text frames
                if len(texts) == 1:
                    await self.ws.send(texts[0], text=True)
                elif texts:
                    await self._send_together(texts)
                if closing:
                    break
            await self._close_or_cut(*self._close_args)
        except ConnectionClosed:
            pass

    async def _send_together(self, texts: list[bytes]) -> None:
        """Several frames, one ``send()`` syscall: websockets writes each frame on its own."""
        ws = self.ws
        async with ws.send_context():  # checks the state on entry, waits for the buffer on exit
            for text in texts:
                ws.protocol.send_text(text)
            # Taken here, so send_context's own flush finds nothing. Only frames were queued: the
            # reader flushes what it makes (pongs, a close) at once, and sending makes no end of stream.
            ws.transport.write(b"".join(ws.protocol.data_to_send()))

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
            self.close(CLOSE_POLICY, "rate limit exceeded")
        return False


# -- the gateway --------------------------------------------------------------------------------------
Handler = Callable[[Connection, Frame], Awaitable[None]]


class Gateway:
    """Serves the protocol for one :class:`Chat` on ``host:port`` (port 0: a free one, see ``port``).

    ``await start()``, then ``await stop()``; :func:`run` adds signals and the Chat's lifecycle.
    """

    def __init__(
        self,
        chat: Chat,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        limits: Limits | None = None,
        workers: int = 32,
        compression: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = chat
        # permessage-deflate holds two zlib contexts per socket (about 33 KiB): chat frames are short,
        # and idle connections should stay cheap, so it is off unless asked for.
        self.compression = compression
        self.clock = clock  # for the rate limit; tests pass one they can move
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.static = StaticFiles()
        self.connections: set[Connection] = set()
        self.by_user: dict[int, set[Connection]] = {}
        self.closing = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatactors-gateway")
        self._server: Server | None = None
        self._numbers = 0  # connections so far: their number in log lines
        self._post: LoopPost | None = None  # hands pushes and replies to the loop; set by start()
        self._handlers: dict[str, Handler] = {
            "register": self.on_register,
            "login": self.on_login,
            "logout": self.on_logout,
            "ping": self.on_ping,
            "send": self.on_send,
            "send_room": self.on_send_room,
            "read": self.on_read,
            "history": self.on_history,
            "presence": self.on_presence,
            "create_room": self.on_create_room,
            "join": self.on_join,
            "leave": self.on_leave,
            "rooms": self.on_rooms,
            "read_by": self.on_read_by,
        }

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._post = LoopPost(asyncio.get_running_loop())
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=self.limits.max_frame,
            max_queue=32,
            compression="deflate" if self.compression else None,
            close_timeout=2,  # a peer that never answers a close (or an HTTP reply) cannot stall a shutdown
            server_header="chatactors",
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("listening on %s", self.url)

    async def stop(self, reason: str = SHUTDOWN_REASON) -> None:
        """Stop accepting, flush what each socket has queued, close it with 1001 and ``reason``."""
        if self.closing or self._server is None:
            return
        self.closing = True
        self._server.server.close()  # no new TCP connections
        connections = list(self.connections)
        log.info("stopping: closing %d connections (%s)", len(connections), reason)
        for conn in connections:
            conn.close(CLOSE_GOING_AWAY, reason)
        if connections:
            _, stuck = await asyncio.wait([conn.writer for conn in connections], timeout=3)
            for conn in connections:
                if conn.writer in stuck:  # a peer that does not read cannot hold the shutdown up
                    conn.abort(CLOSE_GOING_AWAY, reason)
        self._server.close(close_connections=True, code=CLOSE_GOING_AWAY, reason=reason)  # stragglers
        await self._server.wait_closed()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Chat/Session call off the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _loop_post(self) -> LoopPost:
        assert self._post is not None, "start() first"
        return self._post

    # -- HTTP ---------------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.closing:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTDOWN_REASON + "\n")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # the WebSocket handshake goes on
        return self.static.response(request.path)

    # -- one socket -----------------------------------------------------------------------------------
    async def _serve_connection(self, ws: ServerConnection) -> None:
        self._numbers += 1
        conn = Connection(self, ws, self._numbers)
        self.connections.add(conn)
        log.info("%s connected", conn.who)
        try:
            async for raw in ws:
                if conn.closed:
                    continue  # closing: keep reading, or the peer's close frame would never arrive
                if conn.admit():
                    await self._handle(conn, raw)
        except ConnectionClosed:
            pass  # over the size limit (1009) or dropped by the peer: only this socket ends
        finally:
            self.connections.discard(conn)
            conn.close(CLOSE_GOING_AWAY, "")
            await asyncio.wait([conn.writer])  # never raises, even for an aborted (cancelled) writer
            log.info("%s disconnected (%s)", conn.who, _close_info(ws))
            if conn.session is not None and not self.closing:
                await self._end_session(conn, revoke=False)

    async def _handle(self, conn: Connection, raw: str | bytes) -> None:
        frame: Frame | None = None
        try:
            frame = parse_frame(raw)
            handler = self._handlers.get(frame["type"])
            if handler is None:
                raise InvalidMessage(f"unknown type {frame['type'][:64]!r}")
            await handler(conn, frame)
        except InternalError as exc:  # a bug behind the gateway: logged here once, hidden from the client
            log.error("%s %s failed: %s", conn.who, _kind(frame), exc.detail)
            conn.push(error_frame(exc, frame))
        except ChatError as exc:
            _log_refusal(conn, frame, exc)
            conn.push(error_frame(exc, frame))
        except Exception:  # a bug here must not end the connection, let alone the server
            log.exception("%s %s failed", conn.who, _kind(frame))
            conn.push(error_frame(InternalError(), frame))

    def _session(self, conn: Connection) -> Session:
        if conn.session is None:
            if conn.ended:
                raise SessionEnded(f"your session ended ({conn.ended}); log in again")
            raise NotLoggedIn("log in first: send 'login' or 'register'")
        return conn.session

    # -- pushes (dispatcher thread -> loop) ---------------------------------------------------------
    def _from_thread(self, fn: Callable[..., None], *args: Any) -> None:
        post = self._post
        if post is None or post.loop.is_closed():
            return
        post(fn, *args)

    # -- identity -----------------------------------------------------------------------------------
    async def on_register(self, conn: Connection, frame: Frame) -> None:
        """Create the account, then log in: a page or terminal goes straight to chatting."""
        username = _key(frame, "username")
        password = _field(frame, "password", str)
        self._not_logged_in(conn)
        user_id = await self._blocking(self.chat.register, username, password, client_address=conn.address)
        log.info("%s registered %r (id %d)", conn.who, username, user_id)
        await self._login(conn, username, password)

    async def on_login(self, conn: Connection, frame: Frame) -> None:
        self._not_logged_in(conn)
        token = _key(frame, "token", required=False)
        if token is not None:
            await self._login(conn, token=token)
            return
        password = _field(frame, "password", str)
        user = _user_ref(frame, "username", required=False)
        if user is None:
            user = _field(frame, "user_id", int, required=False)
        if user is None:
            raise InvalidMessage("'login' needs 'username' or 'user_id', and 'password'; or 'token'")
        await self._login(conn, user, password)

    def _not_logged_in(self, conn: Connection) -> None:
        if conn.session is not None:
            raise InvalidMessage(f"already logged in as {conn.session.username}; send 'logout' first")

    async def _login(
        self, conn: Connection, user: str | int | None = None, password: str | None = None, **kw: Any
    ) -> None:
        # The callbacks run on the Chat's dispatcher thread. chat.login registers them in order with
        # the pushes, so none is missed; those that reach the loop before 'logged_in' wait in conn.held.
        def on_message(m: Message) -> None:
            self._from_thread(conn.deliver, message_frame(m))

        def on_receipt(r: Receipt) -> None:
            for frame in receipt_frames(r):
                self._from_thread(conn.deliver, frame)

        def on_read(r: ReadEvent) -> None:  # read on any of this user's sessions: badges follow
            self._from_thread(conn.deliver, {"type": "read_sync", "ids": list(r.message_ids)})

        def on_end(reason: str) -> None:  # its token was revoked: a logout on another session
            self._from_thread(self._session_ended, conn, session_box, reason)

        session_box: list[Session] = []
        conn.held = []
        try:
            session = await self._blocking(
                self.chat.login,
                user,
                password,
                on_message=on_message,
                on_receipt=on_receipt,
                on_read=on_read,
                on_end=on_end,
                client_address=conn.address,
                **kw,
            )
        except BaseException:
            conn.held = None
            raise
        if conn.closed:  # the socket went away while we waited: the client may still resume
            await self._blocking(session.logout, revoke_token=False)
            return
        if not session.active:  # revoked while the login was answered
            conn.held = None
            raise SessionEnded(f"session ended: {session.ended}")
        session_box.append(session)
        conn.session, conn.ended = session, ""
        log.info(
            "%s logged in (id %d) by %s",
            conn.who,
            session.user_id,
            "token" if kw.get("token") else "password",
        )
        self.by_user.setdefault(session.user_id, set()).add(conn)
        inbox = [message_dict(m) for m in session.login_inbox]
        for m in session.login_inbox:
            conn.remember(m.id)
        conn.push(
            {
                "type": "logged_in",
                "user_id": session.user_id,
                "username": session.username,
                "token": session.token,
                "inbox": inbox,
            }
        )
        conn.release()

    def _session_ended(self, conn: Connection, box: list[Session], reason: str) -> None:
        """The connection's session ended elsewhere: it is told, and stays open for a new login."""
        if not box or conn.session is not box[0]:
            return
        session, conn.session, conn.ended = box[0], None, reason
        self._forget_peer(conn, session)
        conn.push({"type": "logged_out", "reason": reason})

    def _forget_peer(self, conn: Connection, session: Session) -> None:
        peers = self.by_user.get(session.user_id, set())
        peers.discard(conn)
        if not peers:
            self.by_user.pop(session.user_id, None)

    async def on_logout(self, conn: Connection, frame: Frame) -> None:
        """Ends the session and revokes its token; the socket stays open for another login."""
        self._session(conn)
        log.info("%s logged out", conn.who)
        await self._end_session(conn, revoke=True)
        conn.push({"type": "logged_out"})

    async def _end_session(self, conn: Connection, *, revoke: bool) -> None:
        """Log the connection's session out; ``revoke=False`` (a dropped socket) keeps its token."""
        session, conn.session = conn.session, None
        if session is None:
            return
        self._forget_peer(conn, session)
        try:
            await self._blocking(session.logout, revoke_token=revoke)
        except ChatError as exc:
            log.warning("could not log %s out: %s", session.username, exc)

    async def on_ping(self, conn: Connection, frame: Frame) -> None:
        conn.push({"type": "pong"})

    # -- messages -----------------------------------------------------------------------------------
    async def on_send(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        to = _user_ref(frame, "to")
        body = _field(frame, "body", str)
        client_id = _client_id(frame)
        assert to is not None  # a required field
        m = await session.send_message_async(self._loop_post(), to, body, client_id=client_id)
        self._sent(conn, session, m, client_id)

    async def on_send_room(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = _key(frame, "room")
        body = _field(frame, "body", str)
        client_id = _client_id(frame)
        assert room is not None  # a required field
        m = await session.send_room_async(self._loop_post(), room, body, client_id=client_id)
        self._sent(conn, session, m, client_id)

    def _sent(self, conn: Connection, session: Session, m: Message, client_id: str | None) -> None:
        """Answer the sender; the sender's other sessions see the message too (multi-device)."""
        conn.remember(m.id)
        shown = message_dict(m)  # built once: the 'sent' carries it, the mirrors copy it
        conn.push(
            {
                "type": "sent",
                "client_id": client_id,
                "id": m.id,
                "status": m.status,
                "sent_at": shown["sent_at"],
                "message": shown,
            }
        )
        for peer in self.by_user.get(session.user_id, ()):
            if peer is not conn:
                peer.push_message({"type": "message", **shown})

    async def on_read(self, conn: Connection, frame: Frame) -> None:
        """Marks what the frame names read and answers ``marked_read`` with what was marked.

        ``{}``: everything unread; ``{with}`` / ``{room}``: one conversation; ``up_to``: only up to that
        message id. ``{ids}``: exactly those messages (in a room, the member's cursor moves up to them).
        """
        session = self._session(conn)
        up_to = _field(frame, "up_to", int, required=False)
        with_user = _user_ref(frame, "with", required=False)
        room = _key(frame, "room", required=False)
        reply: Frame = {"type": "marked_read"}
        if frame.get("ids") is not None:
            ids = _id_list(frame, "ids", "message id")
            if up_to is not None or with_user is not None or room is not None:
                raise InvalidMessage("'read' takes 'ids' alone, or 'up_to' with 'with' or 'room'")
            read = await self._blocking(session.read_messages, ids=ids)
        else:
            if with_user is not None and room is not None:
                raise InvalidMessage("'read' takes 'with' or 'room', not both")
            read = await self._blocking(session.read_messages, with_user=with_user, room=room, up_to=up_to)
            for key, value in (("with", with_user), ("room", room), ("up_to", up_to)):
                if value is not None:
                    reply[key] = value
        reply.update(ids=[m.id for m in read], messages=[message_dict(m) for m in read])
        conn.push(reply)

    async def on_history(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        with_user = _user_ref(frame, "with", required=False)
        room = _key(frame, "room", required=False)
        before = _field(frame, "before", int, required=False)
        limit = _limit(frame)
        messages = await self._blocking(
            session.history, limit=limit, before=before, with_user=with_user, room=room
        )
        reply: Frame = {"type": "history", "messages": [message_dict(m) for m in messages]}
        reply.update({"with": with_user} if with_user is not None else {})
        reply.update({"room": room} if room is not None else {})
        conn.push(reply)

    async def on_presence(self, conn: Connection, frame: Frame) -> None:
        """Which of these users have a live session anywhere in this chat."""
        self._session(conn)
        ids = _id_list(frame, "user_ids", "user id")
        online = await self._blocking(self.chat.online, ids)
        conn.push({"type": "presence", "online": sorted(online), "offline": sorted(set(ids) - online)})

    # -- rooms --------------------------------------------------------------------------------------
    async def on_create_room(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = _key(frame, "room")
        await self._blocking(session.create_room, room)
        conn.push({"type": "joined", "room": room, "created": True})

    async def on_join(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = _key(frame, "room")
        await self._blocking(session.join, room)
        conn.push({"type": "joined", "room": room, "created": False})

    async def on_leave(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = _key(frame, "room")
        await self._blocking(session.leave, room)
        conn.push({"type": "left", "room": room})

    async def on_rooms(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        rooms = await self._blocking(session.rooms)
        conn.push({"type": "rooms", "rooms": [_room(r) for r in rooms]})

    async def on_read_by(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        message_id = _field(frame, "id", int)
        readers = await self._blocking(session.read_by, message_id)
        conn.push({"type": "read_by", "id": message_id, "by": _plain(readers)})


def _room(room: Any) -> Any:
    """A room as JSON: a name becomes ``{"name": ...}``; records keep their fields."""
    return {"name": room} if isinstance(room, str) else _plain(room)


# -- running it -----------------------------------------------------------------------------------------
async def serve_until_signalled(gateway: Gateway, on_ready: Callable[[Gateway], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop the gateway gracefully."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await gateway.start()
    if on_ready is not None:
        on_ready(gateway)
    try:
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await gateway.stop()


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    chat_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
    on_ready: Callable[[Gateway], None] | None = None,
) -> None:
    """Start a Chat and a Gateway, serve until SIGINT/SIGTERM, then shut both down (no process left)."""
    options = {"announce_login": False, "echo": False, **(chat_options or {})}
    chat = Chat(**options)
    try:
        gateway = Gateway(chat, host, port, limits=limits)
        asyncio.run(serve_until_signalled(gateway, on_ready))
    finally:
        chat.shutdown()


__all__ = [
    "Gateway",
    "Limits",
    "NotLoggedIn",
    "RateLimited",
    "TokenBucket",
    "message_frame",
    "parse_frame",
    "run",
]
