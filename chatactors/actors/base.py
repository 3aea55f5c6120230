"""What every chatactors actor shares: dispatch by type, replies, errors turned into ``Failed``."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

from thespian.actors import ActorExitRequest, ActorTypeDispatcher

from chatactors.core.model import Address
from chatactors.errors import ChatError, InternalError, Restarting
from chatactors.messages import Batch, Configure, Envelope, Failed, Ping, Reply, Request, Roles, RolesChanged

log = logging.getLogger("chatactors")


def as_chat_error(exc: BaseException) -> ChatError:
    if isinstance(exc, ChatError):
        return exc
    return InternalError(f"internal error: {type(exc).__name__}: {exc}")


def chat_error(exc: BaseException | None) -> ChatError | None:
    """A reply's optional error, as the core takes it."""
    return None if exc is None else as_chat_error(exc)


class ChatActor(ActorTypeDispatcher):  # type: ignore[misc]
    # A core actor (directory, supervisor, persistence, login) crashes on an unexpected exception:
    # its state may be inconsistent, and its supervisor (actors/root.py) restarts it from a clean
    # one. ChatErrors are the caller's mistake or the database's, never a reason to crash.
    crash_on_error = False
    roles: Roles | None = None
    _crashed = False  # set by crash(): what arrives before the exit is refused

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        # A raising handler would be retried by Thespian (side effects twice) and then poison the
        # sender; instead we answer the request with Failed, then keep going or crash.
        if self._crashed and not isinstance(message, ActorExitRequest):
            self._refuse(message, Restarting(f"{type(self).__name__} is restarting; retry"))
            return None
        try:
            return super().receiveMessage(message, sender)
        except Exception as exc:
            if isinstance(exc, ChatError):  # the caller's mistake (or the database's): they are told
                log.debug("%s refused %s: %r", type(self).__name__, type(message).__name__, exc)
                self._refuse(message, exc)
            elif self.crash_on_error:
                log.error(
                    "%s crashed on %s; exiting so that its supervisor restarts it",
                    type(self).__name__,
                    type(message).__name__,
                    exc_info=True,
                )
                self._refuse(message, exc)
                self.crash()
            else:
                log.exception("%s failed on %s", type(self).__name__, type(message).__name__)
                self._refuse(message, exc)
            return None

    def crash(self) -> None:
        """Exit now, refusing whatever arrives before the exit: the supervisor starts a fresh one."""
        self._crashed = True
        self.send(self.myAddress, ActorExitRequest())

    def _refuse(self, message: Any, exc: BaseException) -> None:
        request = message.body.body if isinstance(message, Envelope) else message
        if isinstance(request, Request) and request.reply_to is not None:
            self.fail(request, exc)

    def receiveMsg_RolesChanged(self, message: RolesChanged, sender: Any) -> None:
        self.roles = message.roles
        self.roles_changed(message)

    def roles_changed(self, message: RolesChanged) -> None:
        """A core actor was restarted elsewhere (``message.changed``); ``self.roles`` is updated."""

    def receiveMsg_Configure(self, message: Configure, sender: Any) -> None:
        self.configure(message)
        self.send(sender, Reply(0, type(self).__name__))  # the starter waits for every actor's

    def configure(self, message: Configure) -> None:
        """Take the configuration; runs once, before any request."""

    def receiveMsg_Ping(self, message: Ping, sender: Any) -> None:
        self.reply(message, os.getpid())

    def receiveMsg_Batch(self, message: Batch, sender: Any) -> None:
        for item in message.items:
            self.receiveMessage(item, sender)

    def receiveMsg_ActorExitRequest(self, message: Any, sender: Any) -> None:
        self.on_exit()

    def on_exit(self) -> None:
        """Last words before the actor exits (Thespian delivers ActorExitRequest first)."""

    def receiveUnrecognizedMessage(self, message: Any, sender: Any) -> None:
        log.warning("%s dropped unknown message %r", type(self).__name__, type(message).__name__)

    def reply(self, request: Request, value: Any = None) -> None:
        self.send(request.reply_to, Reply(request.req_id, value))

    def fail(self, request: Request, exc: BaseException) -> None:
        self.send(request.reply_to, Failed(request.req_id, as_chat_error(exc)))


class Outbox:
    """Collects what a batch produced and sends one message per address (a hop costs ~1 ms)."""

    def __init__(self) -> None:
        self._items: dict[str, list[Any]] = defaultdict(list)
        self._addresses: dict[str, Address] = {}

    def add(self, address: Address | None, item: Any) -> None:
        if address is None:
            return
        self._addresses[str(address)] = address
        self._items[str(address)].append(item)

    def send_all(self, actor: ChatActor) -> None:
        for name, items in self._items.items():
            actor.send(self._addresses[name], items[0] if len(items) == 1 else Batch(tuple(items)))
        self._items.clear()
