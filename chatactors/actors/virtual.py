"""What UserActor and RoomActor share: activation, a stash while loading, and retiring.

The rules are :class:`~chatactors.core.activation.Activation`'s; this class feeds it the messages
and performs its effects, and offers the hooks a user or a room fills in (:meth:`load`,
:meth:`may_retire`, :meth:`before_exit`, :meth:`fail_outstanding`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from thespian.actors import ActorExitRequest

from chatactors.actors.base import ChatActor, as_chat_error
from chatactors.core.activation import (
    Activation,
    AskRetire,
    CancelRetire,
    Crash,
    Exit,
    FailOutstanding,
    Load,
    Redeliver,
    Serve,
)
from chatactors.core.idle import IdlePolicy
from chatactors.core.model import Kind
from chatactors.core.replies import Answer, Refuse
from chatactors.errors import ChatError
from chatactors.messages import (
    Envelope,
    IdleCheck,
    Init,
    Request,
    RetireApproved,
    RetireCancelled,
    RetireDenied,
    RetireRequest,
    Roles,
    RolesChanged,
)


class VirtualActor(ChatActor):
    kind: ClassVar[Kind]  # set by each subclass

    def __init__(self) -> None:
        super().__init__()
        self.id = 0
        self.roles: Roles | None = None
        self.activation = Activation()

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

    def before_exit(self) -> None:
        """Last messages before this activation goes (retired, stopped or shut down)."""

    def on_exit(self) -> None:
        self.before_exit()

    def fail_outstanding(self, error: ChatError) -> None:
        """Answer every request that waits for another actor's reply."""

    # -- effects ----------------------------------------------------------------------------------
    def _perform(self, effects: Iterable[object]) -> None:
        for effect in effects:
            if isinstance(effect, Serve):
                self._serve(effect.message)
            elif isinstance(effect, Redeliver):
                self.receiveMessage(effect.message, None)
            elif isinstance(effect, Load):
                self.load()
            elif isinstance(effect, Answer):
                self.reply(effect.request, effect.value)
            elif isinstance(effect, Refuse):
                self._refuse(effect.request, effect.error)
            elif isinstance(effect, FailOutstanding):
                self.fail_outstanding(effect.error)
            elif isinstance(effect, AskRetire):
                assert self.roles is not None
                self.send(self.roles.directory, RetireRequest(self.kind, self.id, self.myAddress))
            elif isinstance(effect, CancelRetire):
                assert self.roles is not None
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
        try:
            getattr(self, "on_" + type(body).__name__)(body, msg)
        except Exception as exc:
            if isinstance(body, Request) and body.reply_to is not None:
                self.fail(body, exc)
            else:
                raise

    # -- supervision ------------------------------------------------------------------------------
    def roles_changed(self, msg: RolesChanged) -> None:
        self._perform(self.activation.roles_changed(msg.changed))

    # -- lifecycle --------------------------------------------------------------------------------
    def receiveMsg_Init(self, msg: Init, sender: Any) -> None:
        self.id, self.roles = msg.id, msg.roles
        self._perform(self.activation.start(msg.config.idle_timeout))

    def loaded(self) -> None:
        self._perform(self.activation.loaded())
        self.check_retire()  # a room activated with no active member goes again at once

    def fail_stash(self, error: Exception) -> None:
        """The state could not be loaded: answer what waits, then go."""
        self._perform(self.activation.load_failed(as_chat_error(error)))

    def receiveMsg_Envelope(self, msg: Envelope, sender: Any) -> None:
        self._perform(self.activation.arrived(msg))

    def check_retire(self) -> None:
        self._perform(self.activation.check_retire(self.may_retire()))

    def receiveMsg_IdleCheck(self, msg: IdleCheck, sender: Any) -> None:
        self.check_retire()

    def ask_to_retire(self) -> None:
        self._perform(self.activation.ask_to_retire())

    def receiveMsg_RetireApproved(self, msg: RetireApproved, sender: Any) -> None:
        self._perform(self.activation.approved(self.may_retire()))

    def receiveMsg_RetireDenied(self, msg: RetireDenied, sender: Any) -> None:
        self._perform(self.activation.denied())
