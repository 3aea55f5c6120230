"""LoginService: the identity layer. Passwords (argon2id), session tokens, throttling.

It owns its own connection to the identity tables (users, session_tokens): hashing is slow on
purpose, and doing it here keeps the persistence actor's batches of messages moving meanwhile.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from chatactors.actors.base import ChatActor
from chatactors.core.clock import MonotonicClock
from chatactors.core.rules import check_password, check_username
from chatactors.core.throttle import LoginThrottle
from chatactors.errors import AuthenticationError, InvalidMessage, TooManyAttempts
from chatactors.messages import Attach, Configure, Detach, LoginUser, Logout, RegisterUser, Roles, Route
from chatactors.storage import Store, utcnow

PROFILES = {
    "default": profiles.RFC_9106_LOW_MEMORY,  # argon2id, t=3, m=64 MiB
    "cheapest": profiles.CHEAPEST,  # for tests and benchmarks only
}


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a leaked table does not let anyone log in."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginService(ChatActor):
    def __init__(self) -> None:
        super().__init__()
        self.store: Store | None = None
        self.roles: Roles | None = None
        self.hasher = PasswordHasher()
        self.throttle = LoginThrottle(MonotonicClock())
        self.token_ttl = 0.0
        self._dummy_hash = ""
        self._rehash = False

    def configure(self, msg: Configure) -> None:
        self.store = Store(msg.config.database_url)
        self.roles = msg.roles
        self.hasher = PasswordHasher.from_parameters(PROFILES[msg.config.password_profile])
        self.token_ttl = msg.config.token_ttl
        self._rehash = msg.config.password_profile == "default"  # upgrade old hashes, never downgrade
        # Unknown users are checked against this so both failures cost one argon2 verify.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    def receiveMsg_RegisterUser(self, msg: RegisterUser, sender: Any) -> None:
        assert self.store is not None
        username = check_username(msg.username)
        password = check_password(msg.password)
        user = self.store.create_user(username, self.hasher.hash(password))
        self.reply(msg, user.id)

    def receiveMsg_LoginUser(self, msg: LoginUser, sender: Any) -> None:
        assert self.store is not None and self.roles is not None
        if msg.token is not None:
            user = self.store.token_user(token_hash(msg.token))
            if user is None:
                raise AuthenticationError("invalid or expired token")
            token = msg.token
        else:
            user = self._check_password(msg)
            token = secrets.token_urlsafe(32)
            expires = utcnow() + timedelta(seconds=self.token_ttl)
            self.store.add_token(user.id, token_hash(token), expires)
        attach = Attach(req_id=msg.req_id, reply_to=msg.reply_to, user_id=user.id, sink=msg.sink, token=token)
        self.send(self.roles.directory, Route("user", user.id, attach))

    def _check_password(self, msg: LoginUser) -> Any:
        assert self.store is not None
        ref: str | int | None = msg.user_id if msg.user_id is not None else msg.username
        if ref is None or msg.password is None:
            raise InvalidMessage("login needs a username or user id, and a password")
        account = str(ref).lower()
        wait = self.throttle.retry_after(account)
        if wait > 0:
            raise TooManyAttempts(f"too many failed logins; try again in {wait:.0f} s")
        found = self.store.credentials(ref)
        stored_hash = found[1] if found is not None else self._dummy_hash
        try:
            self.hasher.verify(stored_hash, msg.password)
            if found is None:
                raise VerificationError()
        except (VerificationError, InvalidHashError):
            self.throttle.failed(account)
            raise AuthenticationError("wrong username or password") from None
        self.throttle.succeeded(account)
        user, _ = found
        if self._rehash and self.hasher.check_needs_rehash(stored_hash):
            self.store.set_password_hash(user.id, self.hasher.hash(msg.password))
        return user

    def receiveMsg_Logout(self, msg: Logout, sender: Any) -> None:
        assert self.store is not None and self.roles is not None
        if msg.token is not None:
            self.store.revoke_token(token_hash(msg.token))
        detach = Detach(req_id=msg.req_id, reply_to=msg.reply_to, user_id=msg.user_id, sink=msg.sink)
        self.send(self.roles.directory, detach)
