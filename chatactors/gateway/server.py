"""The gateway: JSON frames in (``docs/protocol.md``), ``Chat``/``Session`` calls out, pushes back.

Threads, and why: the asyncio loop owns every socket and never waits on an actor. Sends, the frames
that come by the thousand, are asked of the actors from the loop itself: the request is queued for the
actor driver and its reply settles a future, so no thread is held per message in flight. The rarer
calls (login, reads, rooms) run on a :class:`~concurrent.futures.ThreadPoolExecutor`. Pushes and
replies arrive on the Chat's dispatcher thread and reach the loop through one
:class:`~chatactors.bridge.LoopPost`, which wakes it once per burst, in arrival order; each connection
has one queue, written once per loop turn, so replies and pushes leave in the order they reached the loop.

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
import contextlib
import http
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from chatactors.bridge import LoopPost
from chatactors.chat import Chat, Session
from chatactors.core.model import Message, ReadEvent, Receipt, UserInfo
from chatactors.core.rules import SEARCH_MAX
from chatactors.errors import (
    ChatError,
    InternalError,
    InvalidMessage,
    NotLoggedIn,
    SessionEnded,
    TooManyAttempts,
    Unavailable,
)
from chatactors.gateway.connection import Connection, Flusher, close_info
from chatactors.gateway.frames import (
    GUESTS_REASON,
    SESSIONS_REASON,
    SHUTDOWN_REASON,
    Frame,
    client_id_field,
    error_frame,
    field,
    id_list,
    key_field,
    limit_field,
    message_dict,
    message_frame,
    parse_frame,
    plain,
    prefix_field,
    receipt_frames,
    room_json,
    user_ref,
)
from chatactors.gateway.limits import Limits
from chatactors.gateway.static import StaticFiles

log = logging.getLogger("chatactors.server")

T = TypeVar("T")


def _kind(frame: Frame | None) -> str:
    """A frame's type for a log line: quoted and cut short, so a client cannot forge lines."""
    return repr(str(frame.get("type"))[:40]) if frame is not None else "frame"


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
        self.by_user: dict[int, dict[Connection, None]] = {}  # each user's sockets, in login order
        self.guests: dict[Connection, None] = {}  # not logged in, oldest first (see _guest)
        self.flusher = Flusher()  # writes each loop turn's frames, one send() a socket
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
            "inbox": self.on_inbox,
            "status": self.on_status,
            "presence": self.on_presence,
            "create_room": self.on_create_room,
            "join": self.on_join,
            "leave": self.on_leave,
            "rooms": self.on_rooms,
            "read_by": self.on_read_by,
            "members": self.on_members,
            "search": self.on_search,
            "typing": self.on_typing,
        }

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port`` (SO_REUSEPORT) lets other processes that set it too listen on the
        same port, the kernel spreading new connections over them (``chatactors serve --nodes N``)."""
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
            reuse_port=reuse_port,
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
            conn.close(CloseCode.GOING_AWAY, reason)
        if connections:
            finishing = {asyncio.ensure_future(conn.finished()): conn for conn in connections}
            _, stuck = await asyncio.wait(finishing, timeout=3)
            for task in stuck:  # a peer that does not read cannot hold the shutdown up
                finishing[task].abort(CloseCode.GOING_AWAY, reason)
        self._server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason=reason)  # stragglers
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
        self._guest(conn)
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
            self.guests.pop(conn, None)
            conn.close(CloseCode.GOING_AWAY, "")
            await conn.finished()  # never raises, even for an aborted (cancelled) writer
            log.info("%s disconnected (%s)", conn.who, close_info(ws))
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

    def _guest(self, conn: Connection) -> None:
        """``conn`` has no session (new, or logged out). A connection costs ~25 KiB and a descriptor
        before anyone knows who holds it, so at most ``max_guests`` are guests at once: past that
        the oldest that has no login in flight is closed (1008), or the newcomer if every other
        one has. A guest keeps its place while it tries to log in, so failing a login does not make
        it younger; the page and the terminal client log in as soon as they connect."""
        if conn.closed:
            return  # going: nothing to keep
        self.guests.setdefault(conn, None)
        if len(self.guests) > self.limits.max_guests:
            victim = next((c for c in self.guests if not c.logging_in), conn)
            del self.guests[victim]
            log.warning("%s closed: over %d connections not logged in", victim.who, self.limits.max_guests)
            victim.close(CloseCode.POLICY_VIOLATION, GUESTS_REASON)

    @contextlib.contextmanager
    def _logging_in(self, conn: Connection) -> Iterator[None]:
        """While its login is answered a guest is not closed for a newer one: an argon2 hash takes
        ~0.1 s, and a flood of new connections must not cut a login short. It still counts."""
        conn.logging_in = True
        try:
            yield
        finally:
            conn.logging_in = False
            if conn.session is not None:
                self.guests.pop(conn, None)

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
        username = key_field(frame, "username")
        password = field(frame, "password", str)
        self._not_logged_in(conn)
        with self._logging_in(conn):
            user_id = await self._blocking(
                self.chat.register, username, password, client_address=conn.address
            )
            log.info("%s registered %r (id %d)", conn.who, username, user_id)
            await self._login(conn, username, password)

    async def on_login(self, conn: Connection, frame: Frame) -> None:
        self._not_logged_in(conn)
        with self._logging_in(conn):
            token = key_field(frame, "token", required=False)
            if token is not None:
                await self._login(conn, token=token)
                return
            password = field(frame, "password", str)
            user = user_ref(frame, "username", required=False)
            if user is None:
                user = field(frame, "user_id", int, required=False)
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
            if session.active:  # not revoked meanwhile (an ended session refuses a logout)
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
        mine = self.by_user.setdefault(session.user_id, {})
        mine[conn] = None
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
        if len(mine) > self.limits.max_sessions:
            await self._log_out_oldest(mine)

    async def _log_out_oldest(self, mine: dict[Connection, None]) -> None:
        """One user past ``max_sessions`` on this server: every message to them is a frame on each of
        their sockets, so a script logging in by token again and again would multiply them. The
        oldest session ends (its token stays valid, its socket open for a login), as a device
        signed out elsewhere would."""
        oldest = next(iter(mine))
        log.warning("%s logged out: over %d sessions of this user", oldest.who, self.limits.max_sessions)
        session = self._detach(oldest)  # all of it before the wait: the socket may log in meanwhile
        oldest.ended = SESSIONS_REASON
        oldest.push({"type": "logged_out", "reason": SESSIONS_REASON, "token_valid": True})
        self._guest(oldest)
        if session is not None:
            await self._log_out(session, revoke=False)

    def _session_ended(self, conn: Connection, box: list[Session], reason: str) -> None:
        """The connection's session ended elsewhere: it is told, and stays open for a new login."""
        if not box or conn.session is not box[0]:
            return
        session, conn.session, conn.ended = box[0], None, reason
        self._forget_socket(conn, session)
        conn.push({"type": "logged_out", "reason": reason})
        self._guest(conn)

    def _forget_socket(self, conn: Connection, session: Session) -> None:
        peers = self.by_user.get(session.user_id, {})
        peers.pop(conn, None)
        if not peers:
            self.by_user.pop(session.user_id, None)

    async def on_logout(self, conn: Connection, frame: Frame) -> None:
        """Ends the session and revokes its token; the socket stays open for another login."""
        self._session(conn)
        log.info("%s logged out", conn.who)
        await self._end_session(conn, revoke=True)
        conn.push({"type": "logged_out"})
        self._guest(conn)

    async def _end_session(self, conn: Connection, *, revoke: bool) -> None:
        """Log the connection's session out; ``revoke=False`` (a dropped socket) keeps its token."""
        session = self._detach(conn)
        if session is not None:
            await self._log_out(session, revoke=revoke)

    def _detach(self, conn: Connection) -> Session | None:
        """Take the connection's session off it, at once (what :meth:`_log_out` then ends)."""
        session, conn.session = conn.session, None
        if session is not None:
            self._forget_socket(conn, session)
        return session

    async def _log_out(self, session: Session, *, revoke: bool) -> None:
        if not session.active:  # ended elsewhere, its end not yet seen here: nothing left to log out
            return
        try:
            await self._blocking(session.logout, revoke_token=revoke)
        except ChatError as exc:
            log.warning("could not log %s out: %s", session.username, exc)

    async def on_ping(self, conn: Connection, frame: Frame) -> None:
        conn.push({"type": "pong"})

    # -- messages -----------------------------------------------------------------------------------
    async def on_send(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        to = user_ref(frame, "to")
        body = field(frame, "body", str)
        client_id = client_id_field(frame)
        assert to is not None  # a required field
        m = await session.send_message_async(self._loop_post(), to, body, client_id=client_id)
        self._sent(conn, session, m, client_id)

    async def on_send_room(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = key_field(frame, "room")
        body = field(frame, "body", str)
        client_id = client_id_field(frame)
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
        up_to = field(frame, "up_to", int, required=False)
        with_user = user_ref(frame, "with", required=False)
        room = key_field(frame, "room", required=False)
        reply: Frame = {"type": "marked_read"}
        if frame.get("ids") is not None:
            ids = id_list(frame, "ids", "message id")
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
        with_user = user_ref(frame, "with", required=False)
        room = key_field(frame, "room", required=False)
        before = field(frame, "before", int, required=False)
        limit = limit_field(frame)
        if with_user is not None and room is not None:
            raise InvalidMessage("'history' takes 'with' or 'room', not both")
        messages = await self._blocking(
            session.history, limit=limit, before=before, with_user=with_user, room=room
        )
        reply: Frame = {"type": "history", "messages": [message_dict(m) for m in messages]}
        reply.update({"with": with_user} if with_user is not None else {})
        reply.update({"room": room} if room is not None else {})
        reply.update({"before": before} if before is not None else {})  # an older page, not the newest
        conn.push(reply)

    async def on_inbox(self, conn: Connection, frame: Frame) -> None:
        """The last 10 messages received, newest last, as ``logged_in`` lists them (``Session.inbox``)."""
        session = self._session(conn)
        messages = await self._blocking(lambda: session.inbox)
        conn.push({"type": "inbox", "messages": [message_dict(m) for m in messages]})

    async def on_status(self, conn: Connection, frame: Frame) -> None:
        """A message's status, for its sender or recipient (``Session.status``)."""
        session = self._session(conn)
        message_id = field(frame, "id", int)
        status = await self._blocking(session.status, message_id)
        conn.push({"type": "status", "id": message_id, "status": status})

    async def on_presence(self, conn: Connection, frame: Frame) -> None:
        """Which of these users have a live session anywhere in this chat."""
        self._session(conn)
        ids = id_list(frame, "user_ids", "user id")
        online = await self._blocking(self.chat.online, ids)
        conn.push({"type": "presence", "online": sorted(online), "offline": sorted(set(ids) - online)})

    # -- rooms --------------------------------------------------------------------------------------
    async def on_create_room(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = key_field(frame, "room")
        await self._blocking(session.create_room, room)
        conn.push({"type": "joined", "room": room, "created": True})

    async def on_join(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = key_field(frame, "room")
        name = await self._blocking(session.join, room)
        conn.push(
            {"type": "joined", "room": name, "created": False}
        )  # as it was created: "#Sala" finds "sala"

    async def on_leave(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        room = key_field(frame, "room")
        await self._blocking(session.leave, room)
        conn.push({"type": "left", "room": room})

    async def on_rooms(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        rooms = await self._blocking(session.rooms)
        conn.push({"type": "rooms", "rooms": [room_json(r) for r in rooms]})

    async def on_read_by(self, conn: Connection, frame: Frame) -> None:
        session = self._session(conn)
        message_id = field(frame, "id", int)
        readers = await self._blocking(session.read_by, message_id)
        conn.push({"type": "read_by", "id": message_id, "by": plain(readers)})

    async def on_members(self, conn: Connection, frame: Frame) -> None:
        """A room's members with their presence, for one of its members."""
        session = self._session(conn)
        room = key_field(frame, "room")
        members = await self._blocking(session.members, room)
        conn.push({"type": "members", "room": room, "members": await self._with_presence(members)})

    # -- finding people and rooms, typing -----------------------------------------------------------
    async def on_search(self, conn: Connection, frame: Frame) -> None:
        """Users and rooms whose names start with ``prefix``: what a page offers as one types a name."""
        session = self._session(conn)
        prefix = prefix_field(frame)
        limit = limit_field(frame, SEARCH_MAX)
        found = await self._blocking(session.search, prefix, limit)
        users = await self._with_presence(found.users)
        conn.push(
            {
                "type": "results",
                "prefix": prefix,
                "users": users,
                "rooms": [{"name": r.name} for r in found.rooms],
            }
        )

    async def _with_presence(self, users: Sequence[UserInfo]) -> list[Frame]:
        online = await self._blocking(self.chat.online, [u.id for u in users]) if users else set()
        return [{"id": u.id, "username": u.username, "online": u.id in online} for u in users]

    async def on_typing(self, conn: Connection, frame: Frame) -> None:
        """Tell the peer (or the room's other members) on this server that this user is typing.

        Ephemeral: never stored, not answered, one per conversation every ``typing_interval`` seconds
        (the rest dropped); a peer who is not connected here simply misses it.
        """
        session = self._session(conn)
        to = user_ref(frame, "to", required=False)
        room = key_field(frame, "room", required=False)
        if (to is None) == (room is None):
            raise InvalidMessage("'typing' takes 'to' or 'room'")
        target = room if room is not None else to
        assert target is not None
        if not conn.typing.allow((room is not None, target.lower() if isinstance(target, str) else target)):
            return
        notice: Frame = {"type": "typing", "from": session.username, "from_id": session.user_id}
        if room is not None:
            members = await self._blocking(session.members, room)  # members only
            notice["room"] = room
            peers = [m.id for m in members if m.id != session.user_id]
        else:
            assert to is not None
            peer_id = (await self.chat.lookup_async(self._loop_post(), to)).id
            peers = [peer_id] if peer_id != session.user_id else []
        for user_id in peers:
            for peer in self.by_user.get(user_id, ()):
                peer.push(notice)
