"""A client of a running chatactors server, with the API of the embedded :class:`~chatactors.Chat`.

``chatactors.connect("ws://127.0.0.1:8765")`` gives a :class:`Client`: ``register``/``login``/``crear``
return a :class:`ClientSession` with the methods of a :class:`~chatactors.Session`, raising the same
exceptions. ``await chatactors.connect_async(url)`` gives the asyncio flavour, :class:`AsyncClient`.

One implementation: :class:`AsyncClient` and :class:`AsyncSession` speak the protocol
(``docs/protocol.md``) on an asyncio loop; the synchronous classes run that loop on a background
thread and wait on its futures. Each session is one WebSocket (the protocol holds one session per
connection), so two users in one script are two sockets, as they would be two browsers.

The server answers a connection's frames in the order they came, so a request's answer is the next
non-push frame: requests wait in a FIFO, pushes (``message``, ``receipt``, ``read_sync``, an unasked
``logged_out``) go to the callbacks. A dropped connection is resumed with the session's token, and the
requests that are safe to repeat are sent again in order: a ``send`` always carries a ``client_id``
(one is made up when none is given), which the server stores once per sender, so a send whose answer
was lost is stored exactly once. Callbacks of the synchronous flavour run on one dispatcher thread, in
arrival order, so they may call the API again; the asyncio flavour calls them on the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from chatactors.core.model import Message, ReadEvent, Receipt, RoomSummary, Status, UserInfo
from chatactors.errors import (
    AuthenticationError,
    ChatClosed,
    ChatError,
    ChatTimeout,
    InvalidMessage,
    SessionEnded,
    TooManyAttempts,
    Unavailable,
    UsernameTaken,
)
from chatactors.gateway.frames import (
    MAX_READ_IDS,
    Frame,
    error_from_frame,
    message_from_dict,
    receipts_from_frames,
    room_from_dict,
)
from chatactors.gateway.limits import Limits, TokenBucket

log = logging.getLogger("chatactors.client")

T = TypeVar("T")
DEFAULT_URL = "ws://127.0.0.1:8765"
MessageCallback = Callable[[Message], Any]
ReceiptCallback = Callable[[Receipt], Any]
ReadCallback = Callable[[ReadEvent], Any]
EndCallback = Callable[[str], Any]
ConnectionCallback = Callable[[str, str], Any]  # ("lost" | "resumed" | "gone", what happened)
Deliver = Callable[[Callable[[Any], Any], Any], None]  # runs one callback with one event

PUSHES = frozenset({"message", "receipt", "read_sync", "typing"})  # typing: for pages; dropped here
# Requests repeated after a resume: a send (its client_id makes it store once), reads of state,
# and join (joining twice changes nothing). A 'read', 'leave' or 'create_room' whose answer was lost
# fails with Unavailable instead: repeating it would not give the answer the first one had.
RETRYABLE = frozenset(
    {"send", "send_room", "history", "inbox", "status", "rooms", "read_by", "members", "join", "ping"}
)
# What each request is answered with (or an ``error``): an answer of another type means the answers
# are no longer in step with the requests (a server that dropped or added one), as does an error
# naming no request.
ANSWERS = {
    "register": "logged_in",
    "login": "logged_in",
    "logout": "logged_out",
    "ping": "pong",
    "send": "sent",
    "send_room": "sent",
    "read": "marked_read",
    "history": "history",
    "inbox": "inbox",
    "status": "status",
    "presence": "presence",
    "create_room": "joined",
    "join": "joined",
    "leave": "left",
    "rooms": "rooms",
    "read_by": "read_by",
    "members": "members",
    "search": "results",
}
SEEN = 512  # message ids a session remembers, so one listed again after a resume is not handed on twice
GIVE_UP = frozenset({1008, 1009})  # flood, slow reader, frame too big: resuming would repeat it
RESUME_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, *(5.0,) * 10)  # about a minute, then give up
RECEIPT_WINDOW = 0.05  # seconds a receipt waits for the rest of its burst (one frame per message id)
LIMITS = Limits()  # the server's default rate: the client keeps under it, so no frame is dropped


def _keepalive(timeout: float) -> float:
    """Seconds between pings, and for a pong or a close to come: a fifth of a request's ``timeout``
    (at least a second, so a pause of the server is not taken for a loss).

    A server that goes silent (its host cut off or powered down: no reset, no close) is noticed only
    by this: so a lost socket is seen, and resumed on another node, before a request's timeout runs
    out. websockets' defaults (20 s, 20 s, 10 s) outlast it: the request failed with ChatTimeout and
    the socket was noticed lost some 50 s later."""
    return max(1.0, timeout / 5)


def _delivered_here(callback: Callable[[Any], Any], event: Any) -> None:
    """The asyncio flavour's way to run a callback: on the loop, its failure logged, not raised."""
    try:
        callback(event)
    except Exception:
        log.exception("a chatactors client callback failed")


@dataclass(eq=False)
class _Request:
    frame: Frame
    future: asyncio.Future[Frame]
    sent: bool = False
    data: bytes = b""  # the frame as sent: encoded before it joins the queue (see _encode)


def _encode(frame: Frame) -> bytes:
    """The frame as JSON, or InvalidMessage as the embedded chat raises for text no database can hold
    (a lone surrogate) or too long a text: raised before the request is queued, so the answers keep
    their order. A frame over the server's size limit would close the socket (1009) for good."""
    try:
        data = orjson.dumps(frame)
    except orjson.JSONEncodeError as exc:
        raise InvalidMessage(f"{frame.get('type')!r} cannot be sent: {exc}") from None
    if len(data) > LIMITS.max_frame:
        raise InvalidMessage(f"{frame.get('type')!r} is {len(data)} bytes; a frame holds {LIMITS.max_frame}")
    return data


@dataclass(frozen=True, slots=True)
class _Lost:
    """The reader saw the socket close: handled in order, after the frames that came before it."""

    code: int
    reason: str
    handled: asyncio.Future[None] = field(compare=False)


class _Link:
    """One WebSocket holding one session: requests answered in order, pushes handed on, resumed by token."""

    def __init__(self, url: str, timeout: float) -> None:
        # Several URLs, comma-separated (the nodes of a cluster): the first that answers; a resume
        # tries the one in use first, then the others in turn.
        self.urls = tuple(u.strip() for u in url.split(",") if u.strip()) or (url,)
        self.url, self.timeout = self.urls[0], timeout
        self.ws: ClientConnection | None = None
        self.token: str | None = None  # set once logged in: what a resume logs in with
        self.pending: deque[_Request] = deque()
        self.ready = False  # requests go out at once; else they wait for the resume to send them
        self.gone: ChatError | None = None  # why nothing more can be asked
        self.on_push: Callable[[list[Frame]], None] = self._hold
        self.on_state: Callable[[str, str], None] = lambda state, detail: None
        self._held: list[Frame] = []
        self._frames: asyncio.Queue[Frame | _Lost] = asyncio.Queue()
        self._send_lock = asyncio.Lock()  # FIFO: the order requests are sent is the order of `pending`
        self._bucket = TokenBucket(LIMITS.rate, LIMITS.burst)
        self._tasks: list[asyncio.Task[None]] = []
        self._resuming: _Request | None = None  # the token login of a resume, until it is answered
        self._unmatched = False  # frames were dropped unanswered: answers cannot be matched until resumed
        self._closing: asyncio.Task[None] | None = None
        self._hold_resume = 0.0  # seconds the server asked the next resume to wait (too_many_attempts)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def _connect(self, open_timeout: float | None = None) -> ClientConnection:
        start = self.urls.index(self.url)
        order = self.urls[start:] + self.urls[:start]
        error: Exception | None = None
        beat = _keepalive(self.timeout)
        for url in order:
            try:
                ws = await ws_connect(
                    url,
                    open_timeout=open_timeout or self.timeout,
                    ping_interval=beat,
                    ping_timeout=beat,
                    close_timeout=beat,
                    max_size=2**22,
                    compression=None,
                    proxy=None,
                )
            except InvalidURI as exc:
                raise InvalidMessage(f"not a WebSocket URL: {url!r}") from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                error = exc
                continue
            self.url = url
            return ws
        raise Unavailable(f"no chatactors server answers at {', '.join(order)}: {error}") from error

    async def open(self) -> None:
        self.ws = await self._connect()
        self.ready = True
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._dispatch())]

    def attach(self, on_push: Callable[[list[Frame]], None], on_state: Callable[[str, str], None]) -> None:
        """Hand pushes to the session from now on (those that came with ``logged_in`` first)."""
        self.on_push, self.on_state = on_push, on_state
        held, self._held = self._held, []
        if held:
            self._hand_on(held)

    def _hold(self, frames: list[Frame]) -> None:
        self._held.extend(frames)

    def _stop(self, why: ChatError) -> None:
        """Nothing more is asked: whatever still waits for an answer gets ``why``."""
        if self.gone is None:
            self.gone = why
        self.ready = False
        self._fail(lambda r: True, self.gone)

    async def close(self, why: ChatError | None = None) -> None:
        """Close the socket; whatever still waits for an answer gets ``why`` (ChatClosed by default)."""
        self._stop(why or ChatClosed("this client session is closed"))
        tasks = [*self._tasks, *([self._closing] if self._closing else [])]
        others = [task for task in tasks if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()

    # -- requests -----------------------------------------------------------------------------------
    async def request(self, frame: Frame) -> Frame:
        """The answer to ``frame``; an ``error`` answer is raised as its chatactors exception."""
        if self.gone is not None:
            raise self.gone
        r = _Request(frame, asyncio.get_running_loop().create_future(), data=_encode(frame))
        try:
            async with asyncio.timeout(self.timeout):
                async with self._send_lock:
                    self.pending.append(r)
                    if self.ready:
                        await self._send(r)
                return await r.future  # a timeout cancels it: its answer, when it comes, is dropped
        except TimeoutError:
            raise ChatTimeout(
                f"the server did not answer {frame['type']!r} within {self.timeout:g} s"
            ) from None

    async def _send(self, r: _Request) -> None:
        while not self._bucket.allow():
            await asyncio.sleep(1 / LIMITS.rate)
        r.sent = True
        assert self.ws is not None
        try:
            await self.ws.send(r.data or _encode(r.frame), text=True)
        except ConnectionClosed:
            pass  # the reader sees it too, and the resume sends it again if it may be repeated

    # -- incoming -----------------------------------------------------------------------------------
    async def _read(self) -> None:
        while True:
            ws = self.ws
            assert ws is not None
            try:
                async for raw in ws:
                    try:
                        frame = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        frame = None
                    if isinstance(frame, dict):
                        self._frames.put_nowait(frame)
                    else:  # dropped here: a list or a number would stop the dispatcher
                        log.warning("%s sent a frame that is not a JSON object: dropped", self.url)
            except ConnectionClosed:
                pass
            if self.gone is not None:
                return
            self.ready = False
            lost = _Lost(ws.close_code or 1006, ws.close_reason or "connection lost", asyncio.Future())
            self._frames.put_nowait(lost)
            await lost.handled
            detail = f"{lost.code} {lost.reason}"
            self.on_state("lost", detail)
            if self.token is None or lost.code in GIVE_UP or not await self._resume():
                await self.close(Unavailable(f"the connection to {self.url} was lost ({detail})"))
                self.on_state("gone", detail)
                return

    async def _dispatch(self) -> None:
        from chatactors.bridge import drain

        while True:
            batch = [await self._frames.get(), *drain(self._frames)]
            if any(f.get("type") == "receipt" for f in batch if isinstance(f, dict)):
                await asyncio.sleep(RECEIPT_WINDOW)  # a read's receipts come as a burst: make one Receipt
                batch += drain(self._frames)
            pushes: list[Frame] = []
            for item in batch:
                if isinstance(item, _Lost) or not _is_push(item):
                    if pushes:  # pushes that came before an answer are handed on first
                        self._hand_on(pushes)
                        pushes = []
                if isinstance(item, _Lost):
                    self._lost(item)
                elif _is_push(item):
                    pushes.append(item)
                else:
                    self._answer(item)
            if pushes:
                self._hand_on(pushes)

    def _hand_on(self, pushes: list[Frame]) -> None:
        """A push the session cannot read is logged and dropped: it must not stop the answers."""
        try:
            self.on_push(pushes)
        except Exception:
            log.exception("%s: pushes that could not be read were dropped", self.url)

    def _answer(self, frame: Frame) -> None:
        if self._unmatched:
            return  # the request it answers is not known: _lost fails or repeats what waits
        if self.pending and not self._fits(self.pending[0], frame):
            self._drop_unmatched(frame)
            return
        if not self.pending:
            if self.gone is None:  # once ended, the answers to what was pipelined behind it are moot
                log.warning("an answer nobody asked for: %.40r", frame.get("type"))
            return
        r = self.pending.popleft()
        if r.future.done():
            return  # its caller timed out
        if frame.get("type") == "error":
            r.future.set_exception(error_from_frame(frame))
        else:
            r.future.set_result(frame)  # read by the caller, where a malformed answer raises
        if r is self._resuming:  # settled now, before the answers pipelined behind it are read
            self._resumed(r.future)

    @staticmethod
    def _fits(r: _Request, frame: Frame) -> bool:
        """``frame`` can answer ``r``: its answer's type, or an error that names a request."""
        kind = frame.get("type")
        if kind == "error":
            return "request" in frame
        return kind == ANSWERS.get(r.frame["type"])

    def _drop_unmatched(self, frame: Frame) -> None:
        """A frame that cannot answer the oldest request: an error naming no request (the server
        dropped frames it read, for its rate limit, which a network that bunches frames can trip; a
        dropped frame is never answered) or an answer of another type. From here answers cannot be
        matched by order: the socket is closed and resumed like a lost one, a send or a read of
        state is sent again, anything else raises Unavailable, and no answer goes to a request it
        does not belong to."""
        log.warning(
            "%s answered out of step (%.40r %.60s): reconnecting",
            self.url,
            frame.get("type"),
            frame.get("detail", ""),
        )
        self._drop_connection()

    def _drop_connection(self) -> None:
        """Close the socket and resume as for a lost one; answers from here on are not matched."""
        self._unmatched, self.ready = True, False  # new requests wait for the resume
        if self.ws is not None:
            self._closing = asyncio.get_running_loop().create_task(self.ws.close())

    def _lost(self, lost: _Lost) -> None:
        """Everything answered before the loss is settled: what may be repeated waits for the resume."""
        self._unmatched = False
        may_resume = self.token is not None and lost.code not in GIVE_UP
        error = Unavailable(f"the connection was lost ({lost.code}) before the answer came")
        # Not sent yet (asked while the socket was down or unmatched): as safe to send later as a read.
        self._fail(lambda r: not (may_resume and (r.frame["type"] in RETRYABLE or not r.sent)), error)
        for r in self.pending:
            r.sent = False
        lost.handled.set_result(None)

    def _fail(self, which: Callable[[_Request], bool], error: ChatError) -> None:
        kept: deque[_Request] = deque()
        for r in self.pending:
            if r.future.done():
                continue
            if which(r):
                r.future.set_exception(error)
            else:
                kept.append(r)
        self.pending = kept

    async def _resume(self) -> bool:
        """Log in again with the token, then send what waited, in order. False: the server is gone."""
        hold, self._hold_resume = self._hold_resume, 0.0
        for delay in RESUME_DELAYS:
            await asyncio.sleep(max(delay, hold))
            hold = 0.0
            try:  # a silent node (the one just lost, tried first) must not take the request's time
                ws = await self._connect(_keepalive(self.timeout))
            except Unavailable:
                continue
            login = _Request(
                {"type": "login", "token": self.token}, asyncio.get_running_loop().create_future()
            )
            self._resuming = login
            async with self._send_lock:
                self.ws = ws
                self.pending.appendleft(login)
                for r in list(self.pending):  # the lock holds new requests back: nothing is added
                    await self._send(r)
                self.ready = True
            return True
        return False

    def _resumed(self, login: asyncio.Future[Frame]) -> None:
        self._resuming = None
        error = login.exception()
        if error is None:
            self.on_state("resumed", self.url)
            # What came while the socket was down was stored, not pushed: 'logged_in' lists the last
            # 10 received, and the session hands on those it has not seen (a bot answers them too).
            self._hand_on([{"type": "message", **m} for m in login.result().get("inbox", ())])
        elif isinstance(error, TooManyAttempts):
            # Token logins from this address are held back a while (made-up tokens from behind the
            # same address, say): the token is fine. Reconnect once the wait is over and try again;
            # what was sent behind the login is repeated or failed as for a lost socket.
            log.warning("%s: resuming held back for %.0f s: %s", self.url, error.retry_after, error.detail)
            self._hold_resume = max(error.retry_after, RESUME_DELAYS[0])
            self._drop_connection()
        elif isinstance(error, AuthenticationError):
            self._ended(f"could not resume: {error.detail}")
        # else: lost again before the answer; the reader resumes once more

    def _ended(self, reason: str) -> None:
        """The session is over on the server's side: nothing more is asked, nothing is resumed."""
        self._stop(SessionEnded(f"the session ended ({reason}); log in again"))
        asyncio.get_running_loop().create_task(self.close())
        self._hand_on([{"type": "logged_out", "reason": reason}])


def _is_push(frame: Frame) -> bool:
    kind = frame.get("type")
    return kind in PUSHES or (kind == "logged_out" and "reason" in frame)


def _user_ref(user: object, what: str = "to") -> str | int:
    if isinstance(user, AsyncSession | ClientSession):
        return user.user_id
    if isinstance(user, bool) or not isinstance(user, str | int):
        raise InvalidMessage(f"{what}: a username or a user id")
    return user


# -- the asyncio flavour ------------------------------------------------------------------------------
class AsyncSession:
    """One logged-in user on a server: the methods of :class:`~chatactors.Session`, awaited.

    ``await session.inbox()`` is a method here (an attribute cannot be awaited)."""

    def __init__(self, link: _Link, logged_in: Frame, deliver: Deliver, echo: bool) -> None:
        self._link = link
        self._deliver = deliver
        self.user_id: int = int(logged_in["user_id"])
        self.username: str = str(logged_in["username"])
        self.token: str = str(logged_in["token"])
        self.login_inbox: tuple[Message, ...] = tuple(
            message_from_dict(m) for m in logged_in.get("inbox", ())
        )
        self.active = True
        self.ended = ""
        self._message_callbacks: list[MessageCallback] = [print] if echo else []
        self._seen: deque[int] = deque((m.id for m in self.login_inbox), maxlen=SEEN)  # no message twice
        self._receipt_callbacks: list[ReceiptCallback] = []
        self._read_callbacks: list[ReadCallback] = []
        self._end_callbacks: list[EndCallback] = []
        self._connection_callbacks: list[ConnectionCallback] = []
        link.token = self.token

    def __repr__(self) -> str:
        state = "active" if self.active else f"ended: {self.ended}"
        return f"<AsyncSession {self.username} id={self.user_id} {self._link.url} {state}>"

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.active:  # as Session: logged out at the end of the block unless it ended already
            await self.logout()

    def _check_active(self) -> None:
        if not self.active:
            raise SessionEnded(f"{self.username}'s session has ended ({self.ended}); log in again")

    async def _ask(self, kind: str, **fields: Any) -> Frame:
        self._check_active()
        frame = {"type": kind, **{k: v for k, v in fields.items() if v is not None}}
        return await self._link.request(frame)

    # -- state --------------------------------------------------------------------------------------
    async def inbox(self) -> list[Message]:
        """The last 10 messages received, newest last."""
        return _messages(await self._ask("inbox"))

    async def history(
        self,
        limit: int = 10,
        before: int | None = None,
        with_user: str | int | None = None,
        room: str | None = None,
    ) -> list[Message]:
        """Messages newest last: direct ones (all, or ``with_user`` only), or a ``room``'s."""
        other = None if with_user is None else _user_ref(with_user, "with_user")
        return _messages(await self._ask("history", limit=limit, before=before, room=room, **{"with": other}))

    async def status(self, message_id: int) -> Status:
        """'enviado', 'entregado' or 'leido'."""
        return Status((await self._ask("status", id=message_id))["status"])

    # -- messaging ----------------------------------------------------------------------------------
    async def send_message(
        self, to: str | int | AsyncSession | ClientSession, body: str, *, client_id: str | None = None
    ) -> Message:
        """Send ``body`` to a user (name, id or session) or a room (``"#room"``); the stored message.

        Without a ``client_id`` one is made up, so a send repeated after a dropped connection is
        stored once."""
        if isinstance(to, str) and to.startswith("#"):
            return await self.send_room(to[1:], body, client_id=client_id)
        reply = await self._ask("send", to=_user_ref(to), body=body, client_id=client_id or _new_client_id())
        return message_from_dict(reply["message"])

    async def send_room(self, name: str, body: str, *, client_id: str | None = None) -> Message:
        """Post to a room one is a member of."""
        reply = await self._ask("send_room", room=name, body=body, client_id=client_id or _new_client_id())
        return message_from_dict(reply["message"])

    async def read_messages(
        self,
        *,
        with_user: str | int | None = None,
        room: str | None = None,
        up_to: int | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[Message]:
        """Unread messages, oldest first, now 'leido' (their senders are told)."""
        other = None if with_user is None else _user_ref(with_user, "with_user")
        wanted = None if ids is None else list(ids)
        if wanted is not None and len(wanted) > MAX_READ_IDS:  # the embedded chat takes any number
            if other is not None or room is not None or up_to is not None:
                raise InvalidMessage("read exact ids, or a conversation or room, not both")
            read: list[Message] = []
            for start in range(0, len(wanted), MAX_READ_IDS):
                read += await self.read_messages(ids=wanted[start : start + MAX_READ_IDS])
            return sorted(read, key=lambda m: m.id)
        return _messages(await self._ask("read", room=room, up_to=up_to, ids=wanted, **{"with": other}))

    # -- rooms --------------------------------------------------------------------------------------
    async def create_room(self, name: str) -> str:
        """Create a room and join it. Raises RoomExists."""
        return str((await self._ask("create_room", room=name))["room"])

    async def join(self, name: str) -> str:
        """Join a room. Raises RoomNotFound."""
        return str((await self._ask("join", room=name))["room"])

    async def leave(self, name: str) -> str:
        """Leave a room. Raises NotAMember or RoomNotFound."""
        return str((await self._ask("leave", room=name))["room"])

    async def rooms(self) -> list[RoomSummary]:
        """The rooms this user is in, with member and unread counts."""
        return [room_from_dict(r) for r in (await self._ask("rooms"))["rooms"]]

    async def read_by(self, message_id: int) -> list[str]:
        """Who has read a message."""
        return [str(name) for name in (await self._ask("read_by", id=message_id))["by"]]

    async def members(self, room: str) -> list[UserInfo]:
        """A room's members, sorted by name (for members only: NotAMember, RoomNotFound)."""
        return [
            UserInfo(int(u["id"]), str(u["username"]))
            for u in (await self._ask("members", room=room))["members"]
        ]

    # -- pushes -------------------------------------------------------------------------------------
    def on_message(self, callback: MessageCallback | None) -> None:
        """Call ``callback(message)`` the moment a message arrives; None stops it."""
        self._message_callbacks = [] if callback is None else [callback]

    def on_receipt(self, callback: ReceiptCallback | None) -> None:
        """Call ``callback(receipt)`` when messages this user sent change status (one Receipt for the
        receipts that came together: reading 70 messages is one receipt of 70 ids)."""
        self._receipt_callbacks = [] if callback is None else [callback]

    def on_read(self, callback: ReadCallback | None) -> None:
        """Call ``callback(read_event)`` when any session of this user has read messages."""
        self._read_callbacks = [] if callback is None else [callback]

    def on_end(self, callback: EndCallback | None) -> None:
        """Call ``callback(reason)`` when the session is ended from elsewhere (its token revoked)."""
        self._end_callbacks = [] if callback is None else [callback]

    def on_connection(self, callback: ConnectionCallback | None) -> None:
        """Call ``callback(state, detail)`` as the connection comes and goes: ``"lost"`` (detail: close
        code and reason), ``"resumed"`` (logged in again by token), ``"gone"`` (resuming gave up)."""
        self._connection_callbacks = [] if callback is None else [callback]

    def _on_push(self, frames: list[Frame]) -> None:
        run: list[Frame] = []  # consecutive receipts, merged as the core made them
        for frame in [*frames, {}]:
            if frame.get("type") == "receipt":
                run.append(frame)
                continue
            for receipt in receipts_from_frames(run):
                self._run(self._receipt_callbacks, receipt)
            run = []
            kind = frame.get("type")
            if kind == "message" and frame.get("id") not in self._seen:
                self._seen.append(frame["id"])
                self._run(self._message_callbacks, message_from_dict(frame))
            elif kind == "read_sync":
                self._run(self._read_callbacks, ReadEvent(tuple(int(i) for i in frame["ids"])))
            elif kind == "logged_out":
                self._end(str(frame.get("reason", "logged out elsewhere")))

    def _on_state(self, state: str, detail: str) -> None:
        for callback in self._connection_callbacks:
            self._deliver(_both(callback), (state, detail))

    def _run(self, callbacks: list[Callable[[Any], Any]], event: Any) -> None:
        for callback in callbacks:
            self._deliver(callback, event)

    def _end(self, reason: str) -> None:
        if not self.active:
            return
        self.active, self.ended = False, reason
        asyncio.get_running_loop().create_task(
            self._link.close(SessionEnded(f"the session ended ({reason})"))
        )
        self._run(self._end_callbacks, reason)

    # -- end ----------------------------------------------------------------------------------------
    async def logout(self, *, revoke_token: bool = True) -> None:
        """Close this session; ``revoke_token=False`` keeps its token valid for a later login.
        Raises SessionEnded if it has ended already, as :meth:`Session.logout` does."""
        self._check_active()
        try:
            if revoke_token:
                await self._ask("logout")
        finally:
            self.active, self.ended = False, "logged out"
            await self._link.close()

    enviar_mensaje = send_message
    leer_mensajes = read_messages


def _both(callback: ConnectionCallback) -> Callable[[tuple[str, str]], Any]:
    """A two-argument callback run with one event, as every callback is delivered."""
    return lambda pair: callback(*pair)


def _messages(frame: Frame) -> list[Message]:
    return [message_from_dict(m) for m in frame["messages"]]


def _new_client_id() -> str:
    return uuid.uuid4().hex


class AsyncClient:
    """A chatactors server, as :class:`~chatactors.Chat` is an embedded chat: ``register``,
    ``login`` and ``create`` (``crear``) give sessions, each on its own WebSocket.

    ``timeout``: seconds a request may wait for its answer (then ChatTimeout). ``echo``: print arriving
    messages. ``announce_login``: print 'usuario logeado' on each login, as the Chat does."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 15.0,
        echo: bool = False,
        announce_login: bool = False,
        deliver: Deliver = _delivered_here,
    ) -> None:
        self.url, self.timeout, self.echo, self.announce_login = url, timeout, echo, announce_login
        self._deliver = deliver
        self._sessions: list[AsyncSession] = []

    def __repr__(self) -> str:
        return f"<AsyncClient {self.url} sessions={sum(s.active for s in self._sessions)}>"

    async def ping(self) -> None:
        """Raises Unavailable unless a chatactors server answers at ``url``."""
        link = _Link(self.url, self.timeout)
        await link.open()
        try:
            await link.request({"type": "ping"})
        finally:
            await link.close()

    async def register(self, username: str, password: str) -> int:
        """Create an account; its user id. Raises UsernameTaken or InvalidMessage."""
        link = _Link(self.url, self.timeout)
        await link.open()
        try:
            logged_in = await link.request({"type": "register", "username": username, "password": password})
            await link.request({"type": "logout"})  # the protocol logs a new account in: not wanted here
        finally:
            await link.close()
        return int(logged_in["user_id"])

    async def login(
        self,
        user: str | int | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        on_message: MessageCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
        on_read: ReadCallback | None = None,
        on_end: EndCallback | None = None,
    ) -> AsyncSession:
        """Log in by username, user id or token. Raises AuthenticationError, TooManyAttempts or Busy."""
        if token is not None:
            hello: Frame = {"type": "login", "token": token}
        elif isinstance(user, bool) or not isinstance(user, str | int) or password is None:
            raise InvalidMessage("login(username or user id, password) or login(token=...)")
        else:
            hello = {
                "type": "login",
                "password": password,
                ("user_id" if isinstance(user, int) else "username"): user,
            }
        return await self._open([hello], on_message, on_receipt, on_read, on_end)

    async def create(self, username: str, password: str) -> AsyncSession:
        """Register if the name is new, then log in; a taken name with the wrong password raises
        AuthenticationError."""
        register = {"type": "register", "username": username, "password": password}
        return await self._open([register, {"type": "login", "username": username, "password": password}])

    crear = create

    async def _open(
        self,
        hellos: list[Frame],
        on_message: MessageCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
        on_read: ReadCallback | None = None,
        on_end: EndCallback | None = None,
    ) -> AsyncSession:
        """A new socket, logged in by the first of ``hellos`` that works (the next is tried only when
        the name was taken: ``create``)."""
        link = _Link(self.url, self.timeout)
        await link.open()
        try:
            for i, hello in enumerate(hellos):
                try:
                    logged_in = await link.request(hello)
                    break
                except UsernameTaken:
                    if i == len(hellos) - 1:
                        raise
        except BaseException:
            await link.close()
            raise
        session = AsyncSession(link, logged_in, self._deliver, self.echo)
        if on_message is not None:
            session.on_message(on_message)
        if on_receipt is not None:
            session.on_receipt(on_receipt)
        session.on_read(on_read)
        session.on_end(on_end)
        link.attach(session._on_push, session._on_state)
        self._sessions.append(session)
        if self.announce_login:
            print("usuario logeado")
        return session

    async def close(self) -> None:
        """Close every session's socket (their tokens stay valid)."""
        for session in self._sessions:
            session.active, session.ended = False, session.ended or "client closed"
        await asyncio.gather(*(session._link.close() for session in self._sessions), return_exceptions=True)
        self._sessions.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_async(url: str = DEFAULT_URL, **options: Any) -> AsyncClient:
    """An :class:`AsyncClient` for the server at ``url``, once it answered a ``ping``."""
    client = AsyncClient(url, **options)
    await client.ping()
    return client


# -- the synchronous flavour ----------------------------------------------------------------------------
class Client:
    """A chatactors server with the blocking API of :class:`~chatactors.Chat` (for the REPL and scripts).

    The protocol runs on an asyncio loop in a background thread; callbacks run on a dispatcher
    thread, in arrival order, and a push that came before a call's answer is handled before the call
    returns (so in a REPL the message prints before the prompt comes back)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 15.0,
        echo: bool | None = None,
        announce_login: bool = True,
    ) -> None:
        from chatactors.chat import _interactive

        self.url, self.timeout = url, timeout
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="chatactors-client-loop", daemon=True
        )
        self._calls: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="chatactors-client-callbacks", daemon=True
        )
        self._loop_thread.start()
        self._dispatcher.start()
        self._closed = False
        self._async = AsyncClient(
            url,
            timeout=timeout,
            echo=_interactive() if echo is None else echo,
            announce_login=announce_login,
            deliver=self._enqueue,
        )
        try:
            self._run(self._async.ping())
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    def __repr__(self) -> str:
        return f"<Client {self.url}{' closed' if self._closed else ''}>"

    # -- plumbing -----------------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise ChatClosed("this client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            result = future.result(self.timeout * 2 + 5)  # the request's own timeout comes first
        except TimeoutError:
            future.cancel()
            raise ChatTimeout(f"no answer from {self.url}") from None
        finally:
            self._settle()
        return result

    def _settle(self) -> None:
        """Wait until the callbacks of pushes that came before now have run (not from a callback)."""
        if threading.current_thread() is self._dispatcher or not self._dispatcher.is_alive():
            return
        done = threading.Event()
        self._calls.put(done.set)
        done.wait(self.timeout)

    def _enqueue(self, callback: Callable[[Any], Any], event: Any) -> None:
        self._calls.put(lambda: callback(event))

    def _dispatch(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call()
            except Exception:
                log.exception("a chatactors client callback failed")

    # -- the API ------------------------------------------------------------------------------------
    def register(self, username: str, password: str) -> int:
        """Create an account; its user id. Raises UsernameTaken or InvalidMessage."""
        return self._run(self._async.register(username, password))

    def login(
        self,
        user: str | int | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        on_message: MessageCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
        on_read: ReadCallback | None = None,
        on_end: EndCallback | None = None,
    ) -> ClientSession:
        """Log in by username, user id or token (see :meth:`Chat.login <chatactors.Chat.login>`)."""
        login = self._async.login(
            user,
            password,
            token=token,
            on_message=on_message,
            on_receipt=on_receipt,
            on_read=on_read,
            on_end=on_end,
        )
        return ClientSession(self, self._run(login))

    def create(self, username: str, password: str) -> ClientSession:
        """Register if the name is new, then log in (the roadmap's ``crear``)."""
        return ClientSession(self, self._run(self._async.create(username, password)))

    crear = create

    def close(self) -> None:
        """Close every session's socket and stop the threads. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._loop.is_running():
                asyncio.run_coroutine_threadsafe(self._wind_down(), self._loop).result(self.timeout)
        except (TimeoutError, ChatError) as exc:
            log.warning("%s: closing took too long (%r); stopped anyway", self.url, exc)
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(self.timeout)
        self._loop.close()
        self._calls.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join(self.timeout)
        atexit.unregister(self.close)

    async def _wind_down(self) -> None:
        """Close the sessions, then end whatever task is left, so the loop stops with none pending."""
        await self._async.close()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    shutdown = close  # the Chat's name for it

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClientSession:
    """One logged-in user on a server, with the blocking API of :class:`~chatactors.Session`."""

    def __init__(self, client: Client, session: AsyncSession) -> None:
        self._client = client
        self._session = session
        self.user_id, self.username, self.token = session.user_id, session.username, session.token
        self.login_inbox = session.login_inbox

    def __repr__(self) -> str:
        state = "active" if self.active else f"ended: {self.ended}"
        return f"<ClientSession {self.username} id={self.user_id} {self._client.url} {state}>"

    def __enter__(self) -> ClientSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:  # as Session: logged out at the end of the block unless it ended already
            self.logout()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._client._run(coro)

    # -- state --------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._session.active

    @property
    def ended(self) -> str:
        return self._session.ended

    @property
    def inbox(self) -> list[Message]:
        """The last 10 messages received, newest last."""
        return self._run(self._session.inbox())

    def history(
        self,
        limit: int = 10,
        before: int | None = None,
        with_user: str | int | None = None,
        room: str | None = None,
    ) -> list[Message]:
        """Messages newest last: direct ones (all, or ``with_user`` only), or a ``room``'s."""
        return self._run(self._session.history(limit, before, with_user, room))

    def status(self, message_id: int) -> Status:
        """'enviado', 'entregado' or 'leido'."""
        return self._run(self._session.status(message_id))

    # -- messaging ----------------------------------------------------------------------------------
    def send_message(
        self, to: str | int | ClientSession, body: str, *, client_id: str | None = None
    ) -> Message:
        """Send to a user (name, id or session) or a room (``"#room"``); the stored message."""
        return self._run(self._session.send_message(to, body, client_id=client_id))

    def send_room(self, name: str, body: str, *, client_id: str | None = None) -> Message:
        """Post to a room one is a member of."""
        return self._run(self._session.send_room(name, body, client_id=client_id))

    def read_messages(
        self,
        *,
        with_user: str | int | None = None,
        room: str | None = None,
        up_to: int | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[Message]:
        """Unread messages, oldest first, now 'leido' (their senders are told)."""
        return self._run(self._session.read_messages(with_user=with_user, room=room, up_to=up_to, ids=ids))

    # -- rooms --------------------------------------------------------------------------------------
    def create_room(self, name: str) -> str:
        """Create a room and join it. Raises RoomExists."""
        return self._run(self._session.create_room(name))

    def join(self, name: str) -> str:
        """Join a room. Raises RoomNotFound."""
        return self._run(self._session.join(name))

    def leave(self, name: str) -> str:
        """Leave a room. Raises NotAMember or RoomNotFound."""
        return self._run(self._session.leave(name))

    def rooms(self) -> list[RoomSummary]:
        """The rooms this user is in, with member and unread counts."""
        return self._run(self._session.rooms())

    def read_by(self, message_id: int) -> list[str]:
        """Who has read a message."""
        return self._run(self._session.read_by(message_id))

    def members(self, room: str) -> list[UserInfo]:
        """A room's members, sorted by name (for members only: NotAMember, RoomNotFound)."""
        return self._run(self._session.members(room))

    # -- pushes (callbacks run on the client's dispatcher thread) -------------------------------------
    def on_message(self, callback: MessageCallback | None) -> None:
        """Call ``callback(message)`` the moment a message arrives; None stops it."""
        self._session.on_message(callback)

    def on_receipt(self, callback: ReceiptCallback | None) -> None:
        """Call ``callback(receipt)`` when messages this user sent change status."""
        self._session.on_receipt(callback)

    def on_read(self, callback: ReadCallback | None) -> None:
        """Call ``callback(read_event)`` when any session of this user has read messages."""
        self._session.on_read(callback)

    def on_end(self, callback: EndCallback | None) -> None:
        """Call ``callback(reason)`` when the session is ended from elsewhere."""
        self._session.on_end(callback)

    def on_connection(self, callback: ConnectionCallback | None) -> None:
        """Call ``callback(state, detail)``: ``"lost"``, ``"resumed"`` or ``"gone"`` (see AsyncSession)."""
        self._session.on_connection(callback)

    # -- end ----------------------------------------------------------------------------------------
    def logout(self, *, revoke_token: bool = True) -> None:
        """Close this session (and revoke its token unless ``revoke_token=False``)."""
        self._run(self._session.logout(revoke_token=revoke_token))

    enviar_mensaje = send_message
    leer_mensajes = read_messages


def connect(url: str = DEFAULT_URL, **options: Any) -> Client:
    """A :class:`Client` for the server at ``url``; raises Unavailable if none answers there.

    ``url`` may list several servers, comma-separated (a cluster's nodes): each connection takes the
    first that answers, and a lost one resumes (by token) on the next that does.

    ``options``: ``timeout``, ``echo``, ``announce_login`` (see :class:`Client`)."""
    return Client(url, **options)


__all__ = [
    "AsyncClient",
    "AsyncSession",
    "Client",
    "ClientSession",
    "DEFAULT_URL",
    "connect",
    "connect_async",
]
