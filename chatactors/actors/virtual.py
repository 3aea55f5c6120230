"""What UserActor and RoomActor share: activation, a stash while loading, and retiring.

The rules are :class:`~chatactors.core.activation.Activation`'s; this class feeds it the messages
and performs its effects, and offers the hooks a user or a room fills in (:meth:`load`,
:meth:`may_retire`, :meth:`on_exit`, :meth:`fail_outstanding`), and a table of what it serves
(:attr:`ROUTED`, the bodies of the ``Envelope`` the directory forwards).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from thespian.actors import ActorExitRequest

from chatactors.actors.base import ChatActor, as_chat_error, on
from chatactors.core.activation import (
    Activation,
    AskRetire,
    CancelRetire,
    Crash,
    Exit,
    FailOutstanding,
    Load,
    Redeliver,
    Reroute,
    Serve,
)
from chatactors.core.idle import IdlePolicy
from chatactors.core.model import Kind
from chatactors.core.replies import Answer, Refuse
from chatactors.errors import ChatError, InternalError
from chatactors.messages import (
    Envelope,
    HandOver,
    IdleCheck,
    Init,
    Request,
    RetireApproved,
    RetireCancelled,
    RetireDenied,
    RetireRequest,
    RolesChanged,
)

log = logging.getLogger("chatactors")

B = TypeVar("B")
V = TypeVar("V", bound="VirtualActor")

STREAMS_KEPT = 4  # directory incarnations remembered: only the newest one answers a retire request

Served = Callable[[Any, Any, Envelope], None]
"""``(actor, body, envelope)``: what a ``ROUTED`` table maps the type of an ``Envelope``'s body to."""


def serves(body_type: type[B], handler: Callable[[V, B, Envelope], None]) -> tuple[type, Served]:
    """One row of a ``ROUTED`` table; mypy checks that ``handler`` takes a ``body_type``."""
    return body_type, handler


def routed(*rows: tuple[type, Served]) -> Mapping[type, Served]:
    """A user's or a room's ``ROUTED`` table."""
    return dict(rows)


class VirtualActor(ChatActor):
    kind: ClassVar[Kind]  # set by each subclass

    # What this actor serves: the body of an Envelope (exact type) -> its handler. A second table,
    # apart from HANDLERS, because a body is handled not when it arrives but when the activation
    # serves it (loaded, or out of the stash), and its handler gets the Envelope (the owner's
    # sinks) where a message's gets its sender.
    ROUTED: ClassVar[Mapping[type, Served]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.id = 0
        self.activation = Activation()
        # The highest forward number had from each directory stream (the newest few): the retire
        # request carries it, so the directory approves only with nothing on its way here.
        self.received: dict[str, int] = {}

    @property
    def idle(self) -> IdlePolicy:
        """Replies owed to this activation (``started``/``finished``) and its last activity."""
        return self.activation.idle

    @property
    def ready(self) -> bool:
        return self.activation.ready

    @property
    def retiring(self) -> bool:
        return self.activation.retiring

    @property
    def stash(self) -> list[Any]:
        return self.activation.stash

    # -- to override ------------------------------------------------------------------------------
    def load(self) -> None:
        """Ask for the state; call :meth:`loaded` when it is in."""

    def may_retire(self) -> bool:
        return self.idle.should_retire()

    def fail_outstanding(self, error: ChatError) -> None:
        """Answer every request that waits for another actor's reply."""

    # -- effects ----------------------------------------------------------------------------------
    def _perform(self, effects: Iterable[object]) -> None:
        for effect in effects:
            if isinstance(effect, Serve):
                self._serve(effect.message)
            elif isinstance(effect, Redeliver):
                self.receiveMessage(effect.message, None)
            elif isinstance(effect, Reroute):
                self.send(self.roles.directory, effect.message.body)  # a stashed Envelope's Route
            elif isinstance(effect, Load):
                self.load()
            elif isinstance(effect, Answer):
                self.reply(effect.request, effect.value)
            elif isinstance(effect, Refuse):
                self._refuse(effect.request, effect.error)
            elif isinstance(effect, FailOutstanding):
                self.fail_outstanding(effect.error)
            elif isinstance(effect, AskRetire):
                received = tuple(self.received.items())
                self.send(self.roles.directory, RetireRequest(self.kind, self.id, self.myAddress, received))
            elif isinstance(effect, CancelRetire):
                self.send(self.roles.directory, RetireCancelled(self.kind, self.id, self.myAddress))
            elif isinstance(effect, Exit):
                self.send(self.myAddress, ActorExitRequest())
            elif isinstance(effect, Crash):
                self.crash()
            else:
                self.perform(effect)

    def perform(self, effect: object) -> None:
        """An effect of a user's or a room's own core (reads, membership)."""
        raise TypeError(f"{type(self).__name__} cannot perform {effect!r}")

    def _serve(self, msg: Envelope) -> None:
        body = msg.body.body
        handler = self.ROUTED.get(type(body))
        if handler is None:
            log.warning("%s dropped unknown message %r", type(self).__name__, type(body).__name__)
            if isinstance(body, Request) and body.reply_to is not None:  # someone waits for it
                self.fail(body, InternalError(f"{type(self).__name__} cannot serve {type(body).__name__}"))
            return
        try:
            handler(self, body, msg)
        except Exception as exc:
            if isinstance(body, Request) and body.reply_to is not None:
                self.fail(body, exc)
            else:
                raise

    # -- supervision ------------------------------------------------------------------------------
    def roles_changed(self, msg: RolesChanged) -> None:
        self._perform(self.activation.roles_changed(msg.changed))

    # -- lifecycle --------------------------------------------------------------------------------
    def receive_init(self, msg: Init, sender: Any) -> None:
        self.id, self._roles, self._config = msg.id, msg.roles, msg.config
        self._perform(self.activation.start(msg.config.idle_timeout))

    def loaded(self) -> None:
        self._perform(self.activation.loaded())
        self.check_retire()  # a room activated with no active member goes again at once

    def fail_stash(self, error: Exception) -> None:
        """The state could not be loaded: answer what waits, then go."""
        self._perform(self.activation.load_failed(as_chat_error(error)))

    def receive_envelope(self, msg: Envelope, sender: Any) -> None:
        self.count(msg)
        self._perform(self.activation.arrived(msg))

    def count(self, msg: Envelope) -> None:
        """Every envelope is counted on arrival, served, stashed or taken by a subclass's shortcut
        (the directory approves a retire only once the actor has had all it sent); a redelivery
        does not count twice."""
        if msg.stream:
            self.received[msg.stream] = max(msg.seq, self.received.pop(msg.stream, 0))
            while len(self.received) > STREAMS_KEPT:
                del self.received[next(iter(self.received))]

    def check_retire(self) -> None:
        self._perform(self.activation.check_retire(self.may_retire()))

    def receive_idle_check(self, msg: IdleCheck, sender: Any) -> None:
        self.check_retire()

    def receive_hand_over(self, msg: HandOver, sender: Any) -> None:
        effects = self.activation.handed_over()
        for effect in effects:  # each on its own: one that fails must not drop the rest, or the exit
            try:
                self._perform((effect,))
            except Exception:
                log.exception("%s %s: a step of its hand-over failed", self.kind, self.id)

    def ask_to_retire(self) -> None:
        self._perform(self.activation.ask_to_retire())

    def receive_retire_approved(self, msg: RetireApproved, sender: Any) -> None:
        self._perform(self.activation.approved(self.may_retire()))

    def receive_retire_denied(self, msg: RetireDenied, sender: Any) -> None:
        self._perform(self.activation.denied())

    HANDLERS = ChatActor.HANDLERS.extend(
        on(Init, receive_init),
        on(Envelope, receive_envelope),
        on(IdleCheck, receive_idle_check),
        on(HandOver, receive_hand_over),
        on(RetireApproved, receive_retire_approved),
        on(RetireDenied, receive_retire_denied),
    )
