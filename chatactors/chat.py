"""The REPL facade: :class:`Chat` starts the actor system, :class:`Session` is one logged-in user.

Every call is synchronous for the caller and asynchronous inside: it becomes one request to the
actors and waits for the reply (see :mod:`chatactors.bridge`). Errors come back as the exceptions
of :mod:`chatactors.errors`.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from thespian.actors import ActorSystem

from chatactors import transport
from chatactors.actors.login import token_hash
from chatactors.actors.root import CoreSupervisor
from chatactors.bridge import Bridge, LoopPost, ProcessBridge, SimpleBridge
from chatactors.core.model import (
    Address,
    Kind,
    Message,
    ReadEvent,
    Receipt,
    RoomAction,
    RoomSummary,
    SearchResults,
    Status,
    TokenRevoked,
    UserInfo,
)
from chatactors.core.rules import (
    SEARCH_MAX,
    check_body,
    check_client_id,
    check_id,
    check_key,
    check_limit,
    check_prefix,
    check_room_name,
    check_text,
    check_user_ref,
)
from chatactors.core.throttle import LOCAL, LoginPolicy
from chatactors.errors import (
    AuthenticationError,
    ChatClosed,
    ChatError,
    ChatTimeout,
    InvalidMessage,
    Restarting,
    SessionEnded,
    UsernameTaken,
)
from chatactors.messages import (
    Config,
    CoreStopped,
    Deliver,
    DropSink,
    GetHistory,
    GetInbox,
    GetPid,
    GetStats,
    GetStatus,
    ListMembers,
    ListRooms,
    LoginResult,
    LoginUser,
    Logout,
    LookupUser,
    Ping,
    Push,
    ReadBy,
    ReadMessages,
    Reattach,
    RegisterUser,
    Request,
    Roles,
    RolesChanged,
    RoomCommand,
    SearchNames,
    SendRoom,
    StartCore,
    Stats,
    StopActor,
    Watch,
    WhoIsOnline,
)
from chatactors.ports import close_local_port, open_local_port
from chatactors.storage import Store, close_database

SYSTEMS = ("simpleSystemBase", "multiprocTCPBase")
DEFAULT_DATABASE_URL = "sqlite:///chatactors.db"
MessageCallback = Callable[[Message], Any]
ReceiptCallback = Callable[[Receipt], Any]
ReadCallback = Callable[[ReadEvent], Any]
EndCallback = Callable[[str], Any]
REVOKED_REMEMBERED = 1024  # revoked token hashes kept, for a token login that crossed a revocation


def resolve_database_url(given: str | None = None) -> str:
    """The database ``Chat(database_url=given)`` opens: ``given``, else ``$CHATACTORS_DATABASE_URL``,
    else ``chatactors.db`` in the working directory."""
    return given or os.environ.get("CHATACTORS_DATABASE_URL") or DEFAULT_DATABASE_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_defs() -> dict[str, Any]:
    # Actor processes log warnings to stderr; Thespian's own chatter stays in its file.
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain", "level": "WARNING"}},
        "loggers": {"chatactors": {"handlers": ["err"], "level": "WARNING"}},
    }


@dataclass(frozen=True, slots=True)
class Pid:
    """A user actor's address as a REPL shows it, ``#PID<user:7 @127.0.0.1:40215>``, in the spirit of
    Elixir's ``#PID<0.123.0>``. ``address`` is the Thespian address itself; each activation of the
    actor has its own, so a hibernated and restarted actor has a new Pid."""

    kind: Kind
    id: int
    address: Address

    def __repr__(self) -> str:
        # multiprocTCPBase: the actor's own socket; simpleSystemBase: Thespian's in-process path.
        details = getattr(self.address, "addressDetails", self.address)
        where = getattr(details, "sockname", None)
        shown = f"{where[0]}:{where[1]}" if isinstance(where, tuple) and len(where) == 2 else str(details)
        return f"#PID<{self.kind}:{self.id} @{shown}>"

    __str__ = __repr__


def _interactive() -> bool:
    return bool(getattr(sys, "ps1", None)) or bool(sys.flags.interactive)


log = logging.getLogger("chatactors")
RESTART_GRACE = 0.5  # seconds a call in flight when a core actor restarted may still be answered


class Chat:
    """A running chat: the actor system, its database, and the sessions opened from here.

    ``database_url``: ``sqlite:///file.db`` (default ``sqlite:///chatactors.db``, or
    ``$CHATACTORS_DATABASE_URL``) or ``postgresql://host/db``. ``system``: ``"simpleSystemBase"``
    (default, or ``$CHATACTORS_SYSTEM``: every actor in this process) or ``"multiprocTCPBase"`` (every
    actor its own OS process, the admin on ``admin_port``: a free port unless given or set in
    ``$CHATACTORS_ADMIN_PORT``). ``idle_timeout``: seconds before an idle user actor hibernates.
    ``echo``: print arriving messages (default: only in an interactive interpreter).
    ``announce_login``: print the roadmap's "usuario logeado" on each login (a server turns it off).
    ``max_restarts`` in ``max_seconds``: the core actors' restart intensity (OTP's); a core actor that
    crashes more often than that stops the chat, loudly, instead of restarting in a loop.
    ``login_policy``: the login throttle's and password-hash pool's settings (:class:`LoginPolicy`).
    """

    def __init__(
        self,
        database_url: str | None = None,
        system: str | None = None,
        *,
        admin_port: int | None = None,
        idle_timeout: float = 300.0,
        password_profile: str = "default",
        token_ttl: float = 7 * 24 * 3600.0,
        echo: bool | None = None,
        announce_login: bool = True,
        timeout: float = 15.0,
        max_restarts: int = 5,
        max_seconds: float = 10.0,
        login_policy: LoginPolicy | None = None,
    ) -> None:
        self.database_url = resolve_database_url(database_url)
        self.system = system or os.environ.get("CHATACTORS_SYSTEM") or "simpleSystemBase"
        if self.system not in SYSTEMS:
            raise ValueError(f"system must be one of {', '.join(SYSTEMS)}, not {self.system!r}")
        self.timeout = timeout
        self.echo = _interactive() if echo is None else echo
        self.announce_login = announce_login
        self._sessions: dict[int, list[Session]] = {}
        self._sessions_lock = threading.Lock()
        self._users: dict[str | int, UserInfo] = {}
        self._revoked: deque[str] = deque(maxlen=REVOKED_REMEMBERED)
        self._closed = False
        self._stopped_reason: str | None = None
        self._actor_group: int | None = None

        store = Store(self.database_url)
        try:
            store.create_schema()
        finally:
            store.close()  # forked actor processes open their own connections

        simple = self.system == "simpleSystemBase"
        self._port_key = f"chat-{id(self)}-{os.getpid()}" if simple else None
        work_queue = open_local_port(self._port_key) if self._port_key else None
        self.config = Config(
            database_url=self.database_url,
            idle_timeout=idle_timeout,
            password_profile=password_profile,
            token_ttl=token_ttl,
            local_port=self._port_key,
            login_policy=login_policy or LoginPolicy(),
        )
        if self.system == "multiprocTCPBase":
            port = admin_port or int(os.environ.get("CHATACTORS_ADMIN_PORT", 0)) or free_port()
            self.admin_port: int | None = port
            host = transport.install()  # bound sockets, signed frames, no orphans: see chatactors.transport
            capabilities = transport.system_capabilities(port)
            try:
                transport.wait_for_free_port(host, port)  # never attach to a stale system on this port
                self._asys = ActorSystem(self.system, capabilities, logDefs=_log_defs(), transientUnique=True)
            except BaseException:
                close_database(self.database_url)
                raise
        else:
            self.admin_port = None
            # logDefs=False: Thespian would otherwise replace the root logger's handlers with its own,
            # undoing the application's logging set-up (the server's --log-level, a REPL's basicConfig).
            self._asys = ActorSystem(self.system, logDefs=False, transientUnique=True)
        try:
            self._root, self.roles = self._start_actors(max_restarts, max_seconds)
            self._bridge: Bridge = (
                SimpleBridge(self._asys, self._on_push, work_queue)
                if simple
                else ProcessBridge(self._asys, self._root, self._on_push)
            )
            if simple:
                self._call(self._root, Watch())
            else:  # what to kill should a shutdown leave the system running (see shutdown)
                self._actor_group = transport.actor_group(self.os_pid(self._root))
        except BaseException:
            self._asys.shutdown()
            close_database(self.database_url)
            if self._port_key:
                close_local_port(self._port_key)
            raise
        atexit.register(self.shutdown)

    def _start_actors(self, max_restarts: int, max_seconds: float) -> tuple[Address, Roles]:
        """The root supervisor, which starts the core actors and keeps them running."""
        root = self._asys.createActor(CoreSupervisor, globalName="chatactors.root")
        start = StartCore(req_id=1, config=self.config, max_restarts=max_restarts, max_seconds=max_seconds)
        answer = self._asys.ask(root, start, 30)
        if answer is None or not isinstance(answer.value, Roles):
            raise ChatTimeout("the core actors did not start within 30 s")
        return root, answer.value

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, target: Address, request: Request, route: tuple[Kind, int] | None = None) -> Any:
        if self._stopped_reason is not None:
            raise ChatClosed(f"this chat stopped: {self._stopped_reason}")
        return self._bridge.call(target, request, self.timeout, route)

    async def _call_async(
        self, post: LoopPost, target: Address, request: Request, route: tuple[Kind, int] | None = None
    ) -> Any:
        if self._stopped_reason is not None:
            raise ChatClosed(f"this chat stopped: {self._stopped_reason}")
        return await self._bridge.call_async(post, target, request, self.timeout, route)

    def _on_push(self, push: Push | RolesChanged | CoreStopped) -> None:
        if isinstance(push, RolesChanged):
            self._roles_changed(push)
            return
        if isinstance(push, CoreStopped):
            self._stopped_reason = push.reason
            log.critical("the chat's core stopped: %s", push.reason)
            return
        with self._sessions_lock:
            sessions = [s for u in push.user_ids for s in self._sessions.get(u, ())]
        event = push.event
        if isinstance(event, TokenRevoked):
            self._revoked.append(event.token_hash)
            for session in sessions:
                if session._token_hash == event.token_hash:
                    session._end("token revoked: logged out elsewhere")
            return
        for session in sessions:
            session._deliver(event)

    def _roles_changed(self, event: RolesChanged) -> None:
        """A core actor was restarted: use its new address; a new directory learns our sessions;
        calls in flight that died with the old actor fail soon (``Restarting``) instead of timing out."""
        if "directory" in event.changed:
            # Before the new address is used: the bridge sends in order, so the new directory knows
            # our sessions before any call of ours reaches it, and no push is missed.
            with self._sessions_lock:
                sessions = tuple((u, len(s)) for u, s in self._sessions.items() if s)
            self._bridge.send(event.roles.directory, Reattach(self._bridge.address, sessions))
        self.roles = event.roles
        restarted = ", ".join(event.changed)
        self._bridge.fail_pending(RESTART_GRACE, Restarting(f"a core actor ({restarted}) restarted; retry"))

    # -- identity --------------------------------------------------------------------------------
    def register(self, username: str, password: str, *, client_address: str = LOCAL) -> int:
        """Create an account; returns its database id. Raises UsernameTaken or InvalidMessage, or
        Busy when too many password hashes are in progress."""
        request = RegisterUser(username=username, password=password, client_address=client_address)
        return int(self._call(self.roles.login, request))

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
        client_address: str = LOCAL,
    ) -> Session:
        """Log in by username, by database id (V0.7) or by a session token; prints 'usuario logeado'.

        ``on_message`` / ``on_receipt`` / ``on_read`` / ``on_end`` are in place before the first push
        can arrive. ``client_address`` is what the login throttle counts failures against: a gateway
        passes its peer's IP address; every login typed here counts as one address, ``"local"``.
        Raises AuthenticationError, TooManyAttempts (wait ``retry_after`` seconds) or Busy.
        """
        sink, where = self._bridge.address, client_address
        if token is not None:
            request = LoginUser(sink=sink, token=check_key(token, "token"), client_address=where)
        elif isinstance(user, bool) or not isinstance(user, (str, int)) or password is None:
            raise InvalidMessage("login(username or user id, password) or login(token=...)")
        else:
            ref, password = check_user_ref(user), check_text(password, "password")
            by = {"user_id": ref} if isinstance(ref, int) else {"username": ref}
            request = LoginUser(sink=sink, password=password, client_address=where, **by)

        def open_session(result: LoginResult) -> Session:
            session = Session(self, result, on_message, on_receipt)
            session.on_read(on_read)
            session.on_end(on_end)
            if session._token_hash in self._revoked:  # revoked while this login was on its way
                session._end("token revoked")
                raise AuthenticationError("invalid or expired token")
            with self._sessions_lock:
                self._sessions.setdefault(session.user_id, []).append(session)
            return session

        session: Session = self._bridge.call(self.roles.login, request, self.timeout, on_reply=open_session)
        if self.announce_login:
            print("usuario logeado")
        return session

    def create(self, username: str, password: str) -> Session:
        """Register if the name is new, then log in (the roadmap's ``crear``). A taken name with
        the wrong password raises AuthenticationError: it never takes over an account."""
        try:
            self.register(username, password)
        except UsernameTaken:
            pass
        return self.login(username, password)

    # -- what a Session asks of its Chat (the SessionHost protocol; not for applications) ---------
    def ask_user(self, user_id: int, request: Request) -> Any:
        """The reply of the user's actor to ``request``: the directory routes it there, activating the
        actor if it hibernates (Registry.lookup + GenServer.call)."""
        return self._call(self.roles.directory, request, ("user", user_id))

    async def ask_user_async(self, post: LoopPost, user_id: int, request: Request) -> Any:
        """:meth:`ask_user` from an asyncio loop: the reply settles a future, no thread waits."""
        return await self._call_async(post, self.roles.directory, request, ("user", user_id))

    def ask_persistence(self, request: Request) -> Any:
        """The persistence actor's reply to ``request``: reads that need no user actor."""
        return self._call(self.roles.persistence, request)

    def detach(self, session: Session, *, revoke_token: str | None = None) -> None:
        """Push nothing more to ``session`` and tell the login actor it closed (revoking
        ``revoke_token`` with it when given). Raises what that request raises."""
        with self._sessions_lock:
            sessions = self._sessions.get(session.user_id, [])
            if session in sessions:
                sessions.remove(session)
        request = Logout(user_id=session.user_id, sink=self._bridge.address, token=revoke_token)
        self._call(self.roles.login, request)

    # -- observation -----------------------------------------------------------------------------
    def lookup(self, user: str | int) -> UserInfo:
        """A user by name or id (cached: users are never renamed or deleted). Raises UserNotFound."""
        found = self._known_user(user)
        if found is None:
            found = self._remember_user(self._call(self.roles.persistence, LookupUser(ref=user)))
        return found

    async def lookup_async(self, post: LoopPost, user: str | int) -> UserInfo:
        """:meth:`lookup` from an asyncio loop."""
        found = self._known_user(user)
        if found is None:
            found = self._remember_user(
                await self._call_async(post, self.roles.persistence, LookupUser(ref=user))
            )
        return found

    def _known_user(self, user: str | int) -> UserInfo | None:
        check_user_ref(user, "user")
        return self._users.get(user.lower() if isinstance(user, str) else user)  # names are case-insensitive

    def _remember_user(self, found: UserInfo) -> UserInfo:
        self._users[found.id] = self._users[found.username.lower()] = found
        return found

    def stats(self) -> Stats:
        """How many user and room actors are live, how many users online, lifecycle counters."""
        return self._call(self.roles.directory, GetStats())  # type: ignore[no-any-return]

    def whereis(self, user_id: int) -> Pid:
        """The address of the user's live actor, activating it if it hibernates."""
        return Pid("user", user_id, self.ask_user(user_id, GetPid(user_id=user_id)))

    def online(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these users have at least one live session anywhere (presence)."""
        ids = tuple(check_id(i, "a user id") for i in user_ids)
        return set(self._call(self.roles.directory, WhoIsOnline(user_ids=ids)))

    def stop_actor(self, user_id: int) -> bool:
        """Stop the user's live actor, as ``GenServer.stop`` would (roadmap V0.7).

        Nothing is lost: its state is in the database, and whatever is sent to the user meanwhile
        waits in the directory for the next activation. False if no actor was running.
        """
        return bool(self._call(self.roles.directory, StopActor(kind="user", id=user_id)))

    def os_pid(self, address: Address | Pid) -> int:
        """The OS process id an actor runs in (the caller's own on simpleSystemBase)."""
        return int(self._call(address.address if isinstance(address, Pid) else address, Ping()))

    # -- lifecycle --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every actor (and, on multiprocTCPBase, every process). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._sessions_lock:
            for session in (s for sessions in self._sessions.values() for s in sessions):
                session._chat_closed()
        try:
            if not self._bridge.closed:
                try:
                    self._call(self.roles.directory, DropSink(sink=self._bridge.address))
                except ChatError:
                    pass  # shutting down anyway
            if isinstance(self._bridge, SimpleBridge):
                self._bridge.run_in_driver(self._asys.shutdown)
                self._bridge.close()
            else:
                self._bridge.close()
                self._asys.shutdown()
                assert self.admin_port is not None
                transport.stop_leftovers(self._actor_group, transport.advertised_address(), self.admin_port)
        finally:
            close_database(self.database_url)
            if self._port_key:
                close_local_port(self._port_key)
            atexit.unregister(self.shutdown)

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        """What, where and in which state: the sessions counted are the ones opened from here."""
        if self._closed or self._stopped_reason is not None:
            state = "closed" if self._closed else f"stopped: {self._stopped_reason}"
        else:
            with self._sessions_lock:
                users = sum(1 for sessions in self._sessions.values() if sessions)
            state = f"open, {users} user{'' if users == 1 else 's'} logged in here"
        return f"<Chat {self.system} {self.database_url} {state}>"

    # -- the roadmap's Spanish verbs ----------------------------------------------------------------
    # Aliases, and only aliases, of the English methods above, which are canonical: they keep the
    # roadmap's REPL session (docs/roadmap.md, V0.1) running as written. Nothing new goes here.
    crear = create


class SessionHost(Protocol):
    """All a :class:`Session` uses of its :class:`Chat`: public names only, so the two can change
    apart (the request plumbing, the bridge and the roles stay the chat's own)."""

    echo: bool

    def lookup(self, user: str | int) -> UserInfo: ...

    def whereis(self, user_id: int) -> Pid: ...

    def ask_user(self, user_id: int, request: Request) -> Any: ...

    def ask_persistence(self, request: Request) -> Any: ...

    async def lookup_async(self, post: LoopPost, user: str | int) -> UserInfo: ...

    async def ask_user_async(self, post: LoopPost, user_id: int, request: Request) -> Any: ...

    def detach(self, session: Session, *, revoke_token: str | None = None) -> None: ...


class Session:
    """One logged-in user, as returned by :meth:`Chat.login`.

    A context manager: ``with chat.login(...) as s:`` logs out at the end of the block, so a second
    session opened for a look does not keep receiving (and, in a REPL, printing) every message. Once
    logged out, or ended from elsewhere, every call raises :class:`SessionEnded`.
    """

    def __init__(
        self,
        chat: Chat,
        result: LoginResult,
        on_message: MessageCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
    ) -> None:
        self._chat: SessionHost = chat
        self.user_id = result.user_id
        self.username = result.username
        self.token = result.token
        self.login_inbox: tuple[Message, ...] = result.inbox
        default: list[MessageCallback] = [print] if chat.echo else []
        self._message_callbacks: list[MessageCallback] = [on_message] if on_message else default
        self._receipt_callbacks: list[ReceiptCallback] = [on_receipt] if on_receipt else []
        self._read_callbacks: list[ReadCallback] = []
        self._end_callbacks: list[EndCallback] = []
        self._token_hash = token_hash(result.token)
        self.active = True
        self.ended = ""  # why the session ended: "logged out", its token revoked elsewhere, its chat shut
        self._ended_error: type[ChatError] = SessionEnded  # what a call on it raises once it has ended

    def __repr__(self) -> str:
        state = "open" if self.active else f"closed: {self.ended}"
        return f"<Session {self.username} id={self.user_id} {state}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:  # logged out inside the block, or ended from elsewhere: nothing left to do
            try:
                self.logout()
            except ChatClosed:
                pass  # the chat was shut down inside the block: no session outlives it anyway

    # -- state --------------------------------------------------------------------------------
    @property
    def pid(self) -> Pid:
        """The address of this user's actor (V0.2); a hibernated actor is started again to answer."""
        self._check_active()
        return self._chat.whereis(self.user_id)

    @property
    def inbox(self) -> list[Message]:
        """The last 10 messages received, newest last (V0.7)."""
        self._check_active()
        return list(self._chat.ask_user(self.user_id, GetInbox(user_id=self.user_id)))

    def history(
        self,
        limit: int = 10,
        before: int | None = None,
        with_user: str | int | None = None,
        room: str | None = None,
    ) -> list[Message]:
        """Messages newest last: direct ones (all, or ``with_user`` only), or a ``room``'s.

        ``before`` (a message id) pages further back. One person or one room, not both.
        """
        self._check_active()
        if with_user is not None and room is not None:  # else the room would win without a word
            raise InvalidMessage("history of one conversation or one room, not both")
        check_limit(limit)
        if before is not None:
            check_id(before, "before")
        if with_user is not None:
            check_user_ref(with_user, "with_user")
        if room is not None:
            check_key(room, "room name")
        request = GetHistory(user_id=self.user_id, with_user=with_user, room=room, limit=limit, before=before)
        return list(self._chat.ask_persistence(request))

    def status(self, message_id: int) -> Status:
        """'enviado', 'entregado' or 'leido' (a :class:`Status`, a ``str``)."""
        self._check_active()
        check_id(message_id, "message id")
        request = GetStatus(user_id=self.user_id, message_id=message_id)
        return Status(self._chat.ask_persistence(request))

    # -- messaging ----------------------------------------------------------------------------
    def send_message(self, to: str | int | Session, body: str, *, client_id: str | None = None) -> Message:
        """Send ``body`` to a user (username, id or Session) or to a room (``"#room"``).

        Returns the stored message. ``client_id`` makes a retry safe: the same id from the same
        sender is stored once.
        """
        self._check_send(body, client_id)
        if isinstance(to, str) and to.startswith("#"):
            return self.send_room(to[1:], body, client_id=client_id)
        recipient = self._chat.lookup(to.user_id if isinstance(to, Session) else to)
        # Like Registry.lookup + GenServer.cast: the directory finds (or starts) the recipient's actor.
        return self._chat.ask_user(recipient.id, self._direct_request(recipient, body, client_id))  # type: ignore[no-any-return]

    async def send_message_async(
        self, post: LoopPost, to: str | int, body: str, *, client_id: str | None = None
    ) -> Message:
        """:meth:`send_message` from an asyncio loop (the gateway): the reply settles a future through
        ``post``, so no thread is held per message in flight."""
        self._check_send(body, client_id)
        if isinstance(to, str) and to.startswith("#"):
            return await self.send_room_async(post, to[1:], body, client_id=client_id)
        recipient = await self._chat.lookup_async(post, to)
        request = self._direct_request(recipient, body, client_id)
        return await self._chat.ask_user_async(post, recipient.id, request)  # type: ignore[no-any-return]

    def _check_send(self, body: str, client_id: str | None) -> None:
        self._check_active()
        check_body(body)
        check_client_id(client_id)

    def _direct_request(self, recipient: UserInfo, body: str, client_id: str | None) -> Deliver:
        sender = UserInfo(self.user_id, self.username)
        return Deliver(
            user_id=recipient.id, sender=sender, body=body, client_id=client_id, recipient=recipient
        )

    def read_messages(
        self,
        *,
        with_user: str | int | None = None,
        room: str | None = None,
        up_to: int | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[Message]:
        """Unread messages, oldest first; marks them 'leido' and tells their senders (V0.6).

        By default everything unread; or only one conversation (``with_user``) or one ``room``,
        only up to message id ``up_to`` (what a reader has actually seen), or exactly ``ids``.
        In a room, reading moves the member's cursor: messages before one read are read too.
        """
        self._check_active()
        if with_user is not None and room is not None:
            raise InvalidMessage("read one conversation or one room, not both")
        wanted = tuple(check_id(i, "a message id") for i in ids) if ids is not None else None
        if up_to is not None:
            check_id(up_to, "up_to")
        if room is not None:
            check_key(room, "room name")
        if wanted is not None and (with_user is not None or room is not None or up_to is not None):
            raise InvalidMessage("read exact ids, or a conversation or room, not both")
        other = self._chat.lookup(with_user).id if with_user is not None else None
        request = ReadMessages(user_id=self.user_id, with_user=other, room=room, up_to=up_to, ids=wanted)
        return list(self._chat.ask_user(self.user_id, request))

    # -- rooms ----------------------------------------------------------------------------------
    def _room(self, action: RoomAction, name: str) -> str:
        self._check_active()
        check_key(name, "room name")
        request = RoomCommand(user_id=self.user_id, room=name, action=action)
        return str(self._chat.ask_user(self.user_id, request))

    def create_room(self, name: str) -> str:
        """Create a room and join it; returns its name. Raises RoomExists."""
        return self._room("create", name)

    def join(self, name: str) -> str:
        """Join a room (joining twice changes nothing); returns its name as it was created (names are
        case-insensitive). Raises RoomNotFound."""
        return self._room("join", name)

    def leave(self, name: str) -> str:
        """Leave a room. Raises NotAMember or RoomNotFound."""
        return self._room("leave", name)

    def send_room(self, name: str, body: str, *, client_id: str | None = None) -> Message:
        """Post to a room: stored once, pushed at once to every online member (V0.4)."""
        return self._chat.ask_user(self.user_id, self._room_request(name, body, client_id))  # type: ignore[no-any-return]

    async def send_room_async(
        self, post: LoopPost, name: str, body: str, *, client_id: str | None = None
    ) -> Message:
        """:meth:`send_room` from an asyncio loop (see :meth:`send_message_async`)."""
        request = self._room_request(name, body, client_id)
        return await self._chat.ask_user_async(post, self.user_id, request)  # type: ignore[no-any-return]

    def _room_request(self, name: str, body: str, client_id: str | None) -> SendRoom:
        self._check_active()
        check_body(body)
        check_key(name, "room name")
        check_client_id(client_id)
        return SendRoom(user_id=self.user_id, room=name, body=body, client_id=client_id)

    def rooms(self) -> list[RoomSummary]:
        """The rooms this user is in, with member and unread counts."""
        self._check_active()
        return list(self._chat.ask_persistence(ListRooms(user_id=self.user_id)))

    def members(self, room: str) -> list[UserInfo]:
        """A room's members, sorted by name (for members only: NotAMember, RoomNotFound)."""
        self._check_active()
        request = ListMembers(user_id=self.user_id, room=check_room_name(room))
        return list(self._chat.ask_persistence(request))

    def search(self, prefix: str, limit: int = 10) -> SearchResults:
        """Users and rooms whose names start with ``prefix`` (any case), at most ``limit`` (up to
        20) of each: to find someone to write to or a room to join."""
        self._check_active()
        request = SearchNames(prefix=check_prefix(prefix), limit=check_limit(limit, SEARCH_MAX))
        return self._chat.ask_persistence(request)  # type: ignore[no-any-return]

    def read_by(self, message_id: int) -> list[str]:
        """Who has read a message (for a room message, every member whose cursor passed it)."""
        self._check_active()
        check_id(message_id, "message id")
        request = ReadBy(user_id=self.user_id, message_id=message_id)
        return list(self._chat.ask_persistence(request))

    # -- pushes -------------------------------------------------------------------------------
    def on_message(self, callback: MessageCallback | None) -> None:
        """Call ``callback(message)`` the moment a message arrives (V0.9); None stops it."""
        self._check_active()
        self._message_callbacks = [] if callback is None else [callback]

    def on_receipt(self, callback: ReceiptCallback | None) -> None:
        """Call ``callback(receipt)`` when messages this user sent change status."""
        self._check_active()
        self._receipt_callbacks = [] if callback is None else [callback]

    def on_read(self, callback: ReadCallback | None) -> None:
        """Call ``callback(read_event)`` when any session of this user (this one included) has read
        messages: what another device read can stop showing as unread here."""
        self._check_active()
        self._read_callbacks = [] if callback is None else [callback]

    def on_end(self, callback: EndCallback | None) -> None:
        """Call ``callback(reason)`` when this session is ended from elsewhere: a logout that revoked
        its token (every session holding a revoked token ends, and its next call raises SessionEnded)."""
        self._check_active()
        self._end_callbacks = [] if callback is None else [callback]

    def _deliver(self, event: Message | Receipt | ReadEvent) -> None:
        callbacks: list[Callable[[Any], Any]]
        if isinstance(event, Message):
            callbacks = self._message_callbacks
        elif isinstance(event, Receipt):
            callbacks = self._receipt_callbacks
        else:
            callbacks = self._read_callbacks
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                logging.getLogger("chatactors").exception("callback of %s failed", self.username)

    # -- end ----------------------------------------------------------------------------------
    def logout(self, *, revoke_token: bool = True) -> None:
        """Close this session; the user is offline once no other session of theirs is open.

        ``revoke_token=False`` keeps the token valid (a dropped connection that will resume). Raises
        SessionEnded if the session has already ended: a second logout is a mistake worth seeing.
        """
        self._check_active()
        self.active, self.ended = False, "logged out"
        self._chat.detach(self, revoke_token=self.token if revoke_token else None)

    def _check_active(self) -> None:
        if not self.active:
            again = "; log in again" if self._ended_error is SessionEnded else ""
            raise self._ended_error(f"{self.username}'s session has ended ({self.ended}){again}")

    def _chat_closed(self) -> None:
        """Its chat was shut down: nothing to detach from, and no logging in again there."""
        self.active, self.ended, self._ended_error = False, "its chat was shut down", ChatClosed

    def _end(self, reason: str) -> None:
        """Ended from elsewhere (its token was revoked): inactive, detached, and its owner told."""
        if not self.active:
            return
        self.active, self.ended = False, reason
        try:
            self._chat.detach(self)
        except ChatError as exc:
            logging.getLogger("chatactors").warning("could not detach %s: %s", self.username, exc)
        for callback in self._end_callbacks:
            try:
                callback(reason)
            except Exception:
                logging.getLogger("chatactors").exception("on_end callback of %s failed", self.username)

    # -- the roadmap's Spanish verbs ----------------------------------------------------------------
    # Aliases, and only aliases, of the English methods above, which are canonical: they keep the
    # roadmap's REPL session (docs/roadmap.md, V0.1) running as written. Nothing new goes here.
    enviar_mensaje = send_message
    leer_mensajes = read_messages
