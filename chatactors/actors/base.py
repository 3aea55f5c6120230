"""What every chatactors actor shares: a dispatch table per class, replies, errors turned into ``Failed``."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from thespian.actors import Actor, ActorExitRequest

from chatactors.core.model import Address
from chatactors.errors import ChatError, InternalError, Restarting
from chatactors.messages import (
    Batch,
    Config,
    Configure,
    Envelope,
    Failed,
    Ping,
    Reply,
    Request,
    Roles,
    RolesChanged,
)

log = logging.getLogger("chatactors")


def as_chat_error(exc: BaseException) -> ChatError:
    if isinstance(exc, ChatError):
        return exc
    return InternalError(f"internal error: {type(exc).__name__}: {exc}")


def chat_error(exc: BaseException | None) -> ChatError | None:
    """A reply's optional error, as the core takes it."""
    return None if exc is None else as_chat_error(exc)


M = TypeVar("M")
A = TypeVar("A", bound="ChatActor")
T = TypeVar("T")

Handler = Callable[[Any, Any, Address], None]
"""``(actor, message, sender)``: what a :class:`Handlers` table maps a message type to."""


def on(message_type: type[M], handler: Callable[[A, M, Address], None]) -> tuple[type, Handler]:
    """One row of a dispatch table; mypy checks that ``handler`` takes a ``message_type``."""
    return message_type, handler


class Handlers(Mapping[type, Handler]):
    """An actor's dispatch table: message type -> handler, one per actor class, read top to bottom.

    Written out (rather than found by method name) so that go-to-definition leads from a message
    type to its handler, and a test can check the table against what is sent to the actor.
    A type not in the table is looked up by its bases, as Thespian's ``receiveMsg_`` dispatch did.
    """

    def __init__(self, *rows: tuple[type, Handler]) -> None:
        self._rows: dict[type, Handler] = dict(rows)

    def extend(self, *rows: tuple[type, Handler]) -> Handlers:
        """A subclass's table: this one's rows, plus or replaced by ``rows``."""
        return Handlers(*self._rows.items(), *rows)

    def find(self, message_type: type) -> Handler | None:
        handler = self._rows.get(message_type)
        if handler is None:
            for base in message_type.__mro__[1:]:
                handler = self._rows.get(base)
                if handler is not None:
                    break
        return handler

    def __getitem__(self, message_type: type) -> Handler:
        return self._rows[message_type]

    def __iter__(self) -> Iterator[type]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def given(actor: ChatActor, value: T | None, what: str) -> T:
    """``value``, set by ``Configure`` (or ``Init``): an actor is configured after it is constructed."""
    if value is None:
        raise InternalError(f"{type(actor).__name__} used its {what} before it was configured")
    return value


class ChatActor(Actor):  # type: ignore[misc]
    # A core actor (directory, supervisor, persistence, login) crashes on an unexpected exception:
    # its state may be inconsistent, and its supervisor (actors/root.py) restarts it from a clean
    # one. ChatErrors are the caller's mistake or the database's, never a reason to crash.
    crash_on_error = False
    _crashed = False  # set by crash(): what arrives before the exit is refused
    # What Configure (or, for a user or a room, Init) delivers; read through ``roles`` and ``config``.
    _roles: Roles | None = None
    _config: Config | None = None

    HANDLERS: ClassVar[Handlers]  # every subclass extends its base's; the last one is below

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for message_type, handler in cls.HANDLERS.items():
            name = getattr(handler, "__name__", "")
            if getattr(cls, name, handler) is not handler:  # overridden, and the table not told
                raise TypeError(
                    f"{cls.__name__}.{name} overrides a handler: put it in HANDLERS for {message_type}"
                )

    @property
    def roles(self) -> Roles:
        """Where the core actors are (``Configure``, ``Init``; replaced by ``RolesChanged``)."""
        return given(self, self._roles, "roles")

    @property
    def config(self) -> Config:
        return given(self, self._config, "config")

    def receiveMessage(self, message: Any, sender: Any) -> None:
        # A raising handler would be retried by Thespian (side effects twice) and then poison the
        # sender; instead we answer the request with Failed, then keep going or crash.
        if self._crashed and not isinstance(message, ActorExitRequest):
            self._refuse(message, Restarting(f"{type(self).__name__} is restarting; retry"))
            return
        try:
            handler = self.HANDLERS.find(type(message))
            if handler is None:
                log.warning("%s dropped unknown message %r", type(self).__name__, type(message).__name__)
            else:
                handler(self, message, sender)
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

    def crash(self) -> None:
        """Exit now, refusing whatever arrives before the exit: the supervisor starts a fresh one."""
        self._crashed = True
        self.send(self.myAddress, ActorExitRequest())

    def _refuse(self, message: Any, exc: BaseException) -> None:
        request = message.body.body if isinstance(message, Envelope) else message
        if isinstance(request, Request) and request.reply_to is not None:
            self.fail(request, exc)

    # -- to override ------------------------------------------------------------------------------
    def configure(self, message: Configure) -> None:
        """Take the configuration; runs once, before any request (``roles`` and ``config`` are set)."""

    def roles_changed(self, message: RolesChanged) -> None:
        """A core actor was restarted elsewhere (``message.changed``); ``self.roles`` is updated."""

    def on_exit(self) -> None:
        """Last words before the actor exits, however it goes (retired, stopped, crashed, shut down):
        Thespian delivers ActorExitRequest first."""

    # -- handlers ---------------------------------------------------------------------------------
    def receive_configure(self, message: Configure, sender: Any) -> None:
        self._roles, self._config = message.roles, message.config
        self.configure(message)
        self.send(sender, Reply(0, type(self).__name__))  # the starter waits for every actor's

    def receive_roles_changed(self, message: RolesChanged, sender: Any) -> None:
        self._roles = message.roles
        self.roles_changed(message)

    def receive_ping(self, message: Ping, sender: Any) -> None:
        self.reply(message, os.getpid())

    def receive_batch(self, message: Batch, sender: Any) -> None:
        for item in message.items:
            self.receiveMessage(item, sender)

    def receive_exit_request(self, message: ActorExitRequest, sender: Any) -> None:
        self.on_exit()

    HANDLERS = Handlers(
        on(Configure, receive_configure),
        on(RolesChanged, receive_roles_changed),
        on(Ping, receive_ping),
        on(Batch, receive_batch),
        on(ActorExitRequest, receive_exit_request),
    )

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
