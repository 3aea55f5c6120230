"""LoginService: the identity layer. Passwords (argon2id), session tokens, throttling.

It owns its own connection to the identity tables (users, session_tokens): hashing is slow on
purpose, and doing it here keeps the persistence actor's batches of messages moving meanwhile.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from thespian.actors import WakeupMessage

from chatactors.actors.base import ChatActor, given, on
from chatactors.core.clock import MonotonicClock
from chatactors.core.model import UserInfo
from chatactors.core.rules import check_password, check_username
from chatactors.core.throttle import HashSlots, LoginPolicy, LoginThrottle, client_key
from chatactors.errors import AuthenticationError, Busy, InvalidMessage, TooManyAttempts, UsernameTaken
from chatactors.messages import (
    Attach,
    Configure,
    Detach,
    Hashed,
    LoginUser,
    Logout,
    RegisterUser,
    Request,
    Route,
)
from chatactors.ports import local_port
from chatactors.storage import Store, utcnow

PROFILES = {
    "default": profiles.RFC_9106_LOW_MEMORY,  # argon2id, t=3, m=64 MiB
    "cheapest": profiles.CHEAPEST,  # for tests and benchmarks only
}


BAD_TOKEN = "token:invalid"  # the account a failed token login counts against (with its address)
# Bad tokens have a throttle of their own, apart from passwords': a stale tab or an expired token is
# not a guess, so 20 are free per address, and the delay stops at 10 s (clients wait it out and
# resume). It bounds what made-up tokens cost (a database read each) without locking out everyone
# behind the same address for minutes; password failures never hold a token back.
TOKEN_POLICY = LoginPolicy(account_attempts=20, address_attempts=20, base_delay=1.0, max_delay=10.0)


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a leaked table does not let anyone log in."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class _Hash:
    """A hash on the pool, and what to do with its result back in the actor."""

    request: Request
    address: str
    then: Callable[[Any], None]
    future: Future[Any]


def _busy() -> Busy:
    return Busy("too many logins in progress; try again in a moment")


POLL = timedelta(milliseconds=5)  # multiprocTCPBase: how often finished hashes are collected
_POLL = "hashes"


class LoginService(ChatActor):
    crash_on_error = True

    def __init__(self) -> None:
        super().__init__()
        self._store: Store | None = None
        self.hasher = PasswordHasher()
        self.throttle = LoginThrottle(MonotonicClock())
        self.token_throttle = LoginThrottle(MonotonicClock(), TOKEN_POLICY)
        self.slots = HashSlots()
        self.token_ttl = 0.0
        self._dummy_hash = ""
        self._rehash = False
        self._pool: ThreadPoolExecutor | None = None
        self._port: Any = None
        self._keys = itertools.count(1)
        self._waiting: dict[int, _Hash] = {}
        self._polling = False

    @property
    def store(self) -> Store:
        return given(self, self._store, "store")

    def configure(self, msg: Configure) -> None:
        self._store = Store(msg.config.database_url)
        self.hasher = PasswordHasher.from_parameters(PROFILES[msg.config.password_profile])
        self.token_ttl = msg.config.token_ttl
        self._rehash = msg.config.password_profile == "default"  # upgrade old hashes, never downgrade
        # Unknown users are checked against this so both failures cost one argon2 verify.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        policy = msg.config.login_policy
        self.throttle = LoginThrottle(MonotonicClock(), policy)
        self.slots = HashSlots(policy)
        self._pool = ThreadPoolExecutor(
            max_workers=policy.hash_workers, thread_name_prefix="chatactors-argon2"
        )
        if msg.config.local_port:
            self._port = local_port(msg.config.local_port)

    # -- hashing off the actor's thread, on a bounded pool ------------------------------------------
    def _hash_then(
        self,
        request: Request,
        address: str,
        work: Callable[[], Any],
        then: Callable[[Any], None],
        known: bool = False,
    ) -> None:
        """Run ``work`` (argon2: ~0.1 s of CPU on purpose) on the pool, then ``then(result)`` here.

        The pool takes ``hash_workers + hash_queue`` hashes at most (``hashes_per_address`` per
        address; ``hash_reserved`` of them only for ``known`` logins); past that a login is refused
        at once with ``Busy``, so a storm of logins never builds a queue that real users wait behind,
        and this actor (and, on simpleSystemBase, every actor) keeps answering meanwhile. Results come back as ``Hashed`` through the local port on
        simpleSystemBase; on multiprocTCPBase a timer collects them (actors are not thread-safe).
        """
        assert self._pool is not None
        if not self.slots.take(address, known):
            raise _busy()
        key = next(self._keys)
        future = self._pool.submit(work)
        self._waiting[key] = _Hash(request, address, then, future)
        if self._port is not None:
            port, me = self._port, self.myAddress
            future.add_done_callback(lambda _: port.put((me, Hashed(key))))
        elif not self._polling:
            self._polling = True
            self.wakeupAfter(POLL, payload=_POLL)

    def receive_hashed(self, msg: Hashed, sender: Any) -> None:
        self._finish(msg.key)

    def receive_wakeup_message(self, msg: WakeupMessage, sender: Any) -> None:
        if msg.payload != _POLL:
            return
        for key in [k for k, h in self._waiting.items() if h.future.done()]:
            self._finish(key)
        self._polling = bool(self._waiting)
        if self._polling:
            self.wakeupAfter(POLL, payload=_POLL)

    def _finish(self, key: int) -> None:
        job = self._waiting.pop(key)
        self.slots.release(job.address)
        try:
            job.then(job.future.result())
        except Exception as exc:
            self.fail(job.request, exc)

    def on_exit(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- identity -------------------------------------------------------------------------------
    def receive_register_user(self, msg: RegisterUser, sender: Any) -> None:
        username = check_username(msg.username)
        password = check_password(msg.password)
        address = client_key(msg.client_address)
        if not self.slots.free(address):  # a storm is refused before it costs a database read
            raise _busy()
        store = self.store
        if store.user(username) is not None:  # fail fast, before paying for a hash
            raise UsernameTaken(f"username {username!r} is taken")
        self._hash_then(
            msg,
            address,
            lambda: self.hasher.hash(password),
            lambda hashed: self.reply(msg, store.create_user(username, hashed).id),
        )

    def receive_login_user(self, msg: LoginUser, sender: Any) -> None:
        if msg.token is not None:
            # Nobody guesses 32 random bytes, but every try costs a database read: bad tokens are
            # counted per address (TOKEN_POLICY), and past that tokens from there wait a little.
            address = client_key(msg.client_address)
            wait = self.token_throttle.retry_after(BAD_TOKEN, address)
            if wait > 0:
                raise TooManyAttempts(f"too many invalid tokens; try again in {math.ceil(wait)} s", wait)
            user = self.store.token_user(token_hash(msg.token))
            if user is None:
                self.token_throttle.failed(BAD_TOKEN, address)
                raise AuthenticationError("invalid or expired token")
            self._attach(msg, user, msg.token)
            return
        ref: str | int | None = msg.user_id if msg.user_id is not None else msg.username
        if ref is None or msg.password is None:
            raise InvalidMessage("login needs a username or user id, and a password")
        address = client_key(msg.client_address)
        # An account logging in where it logged in before may use the slots kept free in a storm.
        known = self.throttle.known(f"user:{ref}" if isinstance(ref, int) else f"name:{ref.lower()}", address)
        if not self.slots.free(address, known):  # a storm is refused before it costs a database read
            raise _busy()
        found = self.store.credentials(ref)
        # The account, however it was named (username or id); an unknown name is throttled too.
        account = f"user:{found[0].id}" if found is not None else f"unknown:{str(ref).lower()}"
        password = msg.password
        wait = self.throttle.retry_after(account, address)
        if wait > 0:
            raise TooManyAttempts(f"too many failed logins; try again in {math.ceil(wait)} s", wait)
        stored_hash = found[1] if found is not None else self._dummy_hash

        def verify() -> tuple[bool, str | None]:
            try:
                self.hasher.verify(stored_hash, password)
            except (VerificationError, InvalidHashError):
                return False, None
            rehash = self._rehash and self.hasher.check_needs_rehash(stored_hash)
            return True, self.hasher.hash(password) if rehash else None

        def checked(outcome: tuple[bool, str | None]) -> None:
            ok, new_hash = outcome
            if not ok or found is None:
                self.throttle.failed(account, address)
                raise AuthenticationError("wrong username or password")
            user = found[0]
            self.throttle.succeeded(account, address, f"name:{user.username.lower()}")
            if new_hash is not None:
                self.store.set_password_hash(user.id, new_hash)
            token = secrets.token_urlsafe(32)
            self.store.add_token(user.id, token_hash(token), utcnow() + timedelta(seconds=self.token_ttl))
            self._attach(msg, user, token)

        self._hash_then(msg, address, verify, checked, known)

    def _attach(self, msg: LoginUser, user: UserInfo, token: str) -> None:
        """Logged in: the directory marks the session online and the user's actor answers."""
        attach = Attach(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            user_id=user.id,
            sink=msg.sink,
            token=token,
            session=msg.session,
        )
        self.send(self.roles.directory, Route("user", user.id, attach))

    def receive_logout(self, msg: Logout, sender: Any) -> None:
        if msg.token is not None:
            self.store.revoke_token(token_hash(msg.token))
        # Every session holding a revoked token ends, wherever it is: the directory tells the user's sinks.
        revoked = token_hash(msg.token) if msg.token is not None else None
        detach = Detach(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            user_id=msg.user_id,
            sink=msg.sink,
            session=msg.session,
            revoked=revoked,
        )
        self.send(self.roles.directory, detach)

    HANDLERS = ChatActor.HANDLERS.extend(
        on(Hashed, receive_hashed),
        on(WakeupMessage, receive_wakeup_message),
        on(RegisterUser, receive_register_user),
        on(LoginUser, receive_login_user),
        on(Logout, receive_logout),
    )
