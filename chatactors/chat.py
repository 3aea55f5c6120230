"""The REPL facade: :class:`Chat` is the chat's API, its sessions and what a REPL prints.

Configuration is :class:`chatactors.settings.ChatSettings`, start-up and stop are
:class:`chatactors.node.ChatNode`, and a logged-in user is :class:`chatactors.session.Session`
(re-exported here, as are the names that used to live here). Every call is synchronous for the
caller and asynchronous inside: it becomes one request to the actors and waits for the reply (see
:mod:`chatactors.bridge`). Errors come back as the exceptions of :mod:`chatactors.errors`.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from chatactors.bridge import Bridge, LoopPost
from chatactors.core.model import Address, Kind, TokenRevoked, UserInfo
from chatactors.core.rules import check_id, check_key, check_text, check_user_ref
from chatactors.core.throttle import LOCAL, LoginPolicy
from chatactors.errors import AuthenticationError, InvalidMessage, UsernameTaken
from chatactors.messages import (
    Config,
    GetPid,
    HeldSessions,
    LoginResult,
    LoginUser,
    Logout,
    LookupUser,
    Push,
    RegisterUser,
    Request,
    Roles,
    Stats,
    StopActor,
)
from chatactors.node import ChatNode
from chatactors.session import (
    EndCallback,
    MessageCallback,
    Pid,
    ReadCallback,
    ReceiptCallback,
    Session,
    SessionHost,
)
from chatactors.settings import DEFAULT_DATABASE_URL, SYSTEMS, ChatSettings, resolve_database_url
from chatactors.transport import free_port

__all__ = [  # what importers of chatactors.chat have used, wherever it lives now
    "DEFAULT_DATABASE_URL",
    "SYSTEMS",
    "Chat",
    "ChatSettings",
    "EndCallback",
    "MessageCallback",
    "Pid",
    "ReadCallback",
    "ReceiptCallback",
    "Session",
    "SessionHost",
    "free_port",
    "resolve_database_url",
]

REVOKED_REMEMBERED = 1024  # revoked token hashes kept, for a token login that crossed a revocation


def _interactive() -> bool:
    return bool(getattr(sys, "ps1", None)) or bool(sys.flags.interactive)


class Chat:
    """A running chat: its API, the sessions opened from here and what a REPL prints. The arguments
    become ``self.settings`` (:meth:`ChatSettings.from_env`); a :class:`ChatNode` started from them
    runs the actors until :meth:`shutdown`.

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
    ``cluster``: join the other nodes that share this PostgreSQL database (docs/cluster.md) as node
    ``node_id`` (default: made up), its link on ``advertise``; a REPL so joined shares their live state.
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
        cluster: bool = False,
        node_id: str | None = None,
        advertise: str = "127.0.0.1",
        gateway_url: str = "",
    ) -> None:
        self.settings = ChatSettings.from_env(
            database_url,
            system,
            admin_port=admin_port,
            idle_timeout=idle_timeout,
            password_profile=password_profile,
            token_ttl=token_ttl,
            echo=echo,
            announce_login=announce_login,
            timeout=timeout,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            login_policy=login_policy,
            cluster=cluster,
            node_id=node_id,
            advertise=advertise,
            gateway_url=gateway_url,
        )
        self.database_url, self.system = self.settings.database_url, self.settings.system
        self.timeout = timeout
        self.echo = _interactive() if echo is None else echo
        self.announce_login = announce_login
        self._sessions: dict[int, list[Session]] = {}
        self._sessions_lock = threading.Lock()
        self._session_numbers = itertools.count(1)  # each login here: its number at this sink
        self._users: dict[str | int, UserInfo] = {}
        self._revoked: deque[str] = deque(maxlen=REVOKED_REMEMBERED)
        self._closed = False
        self._node = ChatNode(self.settings, self._on_push, self._attached)
        self._bridge: Bridge = self._node.bridge
        self.admin_port = self._node.admin_port
        self.node_id = self._node.node_id  # in a cluster, this node's id; else None

    @property
    def roles(self) -> Roles:
        """The core actors' addresses now (a restarted one has a new address)."""
        return self._node.roles

    @property
    def config(self) -> Config:
        """What the actors were configured with."""
        return self._node.config

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, target: Address, request: Request, route: tuple[Kind, int] | None = None) -> Any:
        return self._node.call(target, request, route)

    async def _call_async(
        self, post: LoopPost, target: Address, request: Request, route: tuple[Kind, int] | None = None
    ) -> Any:
        return await self._node.call_async(post, target, request, route)

    def _attached(self) -> HeldSessions:
        """Each user with sessions opened here, and their numbers: for a restarted directory."""
        with self._sessions_lock:
            return tuple((u, tuple(s._number for s in ss)) for u, ss in self._sessions.items() if ss)

    def _on_push(self, push: Push) -> None:
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
        sink, where, number = self._bridge.address, client_address, next(self._session_numbers)
        if token is not None:
            request = LoginUser(
                sink=sink, token=check_key(token, "token"), client_address=where, session=number
            )
        elif isinstance(user, bool) or not isinstance(user, (str, int)) or password is None:
            raise InvalidMessage("login(username or user id, password) or login(token=...)")
        else:
            ref, password = check_user_ref(user), check_text(password, "password")
            by = {"user_id": ref} if isinstance(ref, int) else {"username": ref}
            request = LoginUser(sink=sink, password=password, client_address=where, session=number, **by)

        generation = self._node.ring_generation()

        def open_session(result: LoginResult) -> Session:
            session = Session(self, result, on_message, on_receipt)
            session.on_read(on_read)
            session.on_end(on_end)
            if session._token_hash in self._revoked:  # revoked while this login was on its way
                session._end("token revoked")
                raise AuthenticationError("invalid or expired token")
            with self._sessions_lock:
                self._sessions.setdefault(session.user_id, []).append(session)
            if self._node.ring_generation() != generation:  # its owner may be new: tell it
                self._node.reattach(session.user_id, number)
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
        request = Logout(
            user_id=session.user_id, sink=self._bridge.address, session=session._number, token=revoke_token
        )
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
        """How many user and room actors are live, how many users online, lifecycle counters; in a
        cluster, summed over the nodes, each node's own in ``nodes``."""
        return self._node.stats()

    def whereis(self, user_id: int) -> Pid:
        """The address of the user's live actor, activating it if it hibernates."""
        address = self.ask_user(user_id, GetPid(user_id=user_id))
        node, name = self._node.elsewhere(address)
        return Pid("user", user_id, address, node, name)

    def online(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these users have at least one live session anywhere (presence)."""
        ids = tuple(check_id(i, "a user id") for i in user_ids)
        return self._node.online(ids)

    def stop_actor(self, user_id: int) -> bool:
        """Stop the user's live actor, as ``GenServer.stop`` would (roadmap V0.7).

        Nothing is lost: its state is in the database, and whatever is sent to the user meanwhile
        waits in the directory for the next activation. False if no actor was running.
        """
        return bool(self._call(self.roles.directory, StopActor(kind="user", id=user_id)))

    def os_pid(self, address: Address | Pid) -> int:
        """The OS process id an actor runs in (the caller's own on simpleSystemBase)."""
        return self._node.os_pid(address.address if isinstance(address, Pid) else address)

    # -- lifecycle --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every actor (and, on multiprocTCPBase, every process). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._sessions_lock:
            for session in (s for sessions in self._sessions.values() for s in sessions):
                session._chat_closed()
        self._node.stop()

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        """What, where and in which state: the sessions counted are the ones opened from here."""
        if self._closed or self._node.stopped_reason is not None:
            state = "closed" if self._closed else f"stopped: {self._node.stopped_reason}"
        else:
            with self._sessions_lock:
                users = sum(1 for sessions in self._sessions.values() if sessions)
            state = f"open, {users} user{'' if users == 1 else 's'} logged in here"
        return f"<Chat {self.system} {self.database_url} {state}>"

    # -- the roadmap's Spanish verbs ----------------------------------------------------------------
    # Aliases, and only aliases, of the English methods above, which are canonical: they keep the
    # roadmap's REPL session (docs/roadmap.md, V0.1) running as written. Nothing new goes here.
    crear = create
