"""What UserActor and RoomActor share: activation, a stash while loading, and retiring.

An activation starts with ``Init`` from the supervisor, loads its state, and stashes whatever
arrives meanwhile. When the directory sees it idle (``IdleCheck``), or when it knows it has nothing
left to do, it asks the directory to retire if :meth:`may_retire` agrees; between asking and the
approval new work may come in, so on approval it checks again and either exits or cancels.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorExitRequest

from chatactors.actors.base import ChatActor
from chatactors.core.clock import MonotonicClock
from chatactors.core.idle import IdlePolicy
from chatactors.errors import ChatError, Restarting
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
    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self.id = 0
        self.roles: Roles | None = None
        self.idle = IdlePolicy(MonotonicClock(), 300.0)
        self.stash: list[Envelope] = []
        self.ready = False
        self.retiring = False
        self._tokens = 0

    def token(self) -> int:
        self._tokens += 1
        return self._tokens

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

    # -- supervision ------------------------------------------------------------------------------
    def roles_changed(self, msg: RolesChanged) -> None:
        if "directory" in msg.changed:
            self.retiring = False  # the directory that was to answer is gone; the idle check asks again
        if {"persistence", "directory"} & set(msg.changed) and (not self.ready or self.idle.outstanding):
            # A reply this activation waits for was lost with the dead actor: answer what waits
            # (callers retry; client_id keeps that to one stored message) and start afresh.
            error = Restarting(f"a core actor ({', '.join(msg.changed)}) restarted; retry")
            stash, self.stash = self.stash, []
            for envelope in stash:
                self._refuse(envelope, error)
            self.fail_outstanding(error)
            self.crash()

    # -- lifecycle --------------------------------------------------------------------------------
    def receiveMsg_Init(self, msg: Init, sender: Any) -> None:
        self.id, self.roles = msg.id, msg.roles
        self.idle = IdlePolicy(MonotonicClock(), msg.config.idle_timeout)
        self.idle.started()
        self.load()

    def loaded(self) -> None:
        self.idle.finished()
        self.ready = True
        stash, self.stash = self.stash, []
        for envelope in stash:
            self.receiveMessage(envelope, None)
        self.check_retire()  # a room activated with no active member goes again at once

    def fail_stash(self, error: Exception) -> None:
        """The state could not be loaded: answer what waits, then go."""
        stash, self.stash = self.stash, []
        for envelope in stash:
            request = envelope.body.body
            if isinstance(request, Request) and request.reply_to is not None:
                self.fail(request, error)
        self.idle.finished()
        self.ask_to_retire()

    def receiveMsg_Envelope(self, msg: Envelope, sender: Any) -> None:
        if not self.ready:
            self.stash.append(msg)
            return
        self.idle.touch()
        body = msg.body.body
        try:
            getattr(self, "on_" + type(body).__name__)(body, msg)
        except Exception as exc:
            if isinstance(body, Request) and body.reply_to is not None:
                self.fail(body, exc)
            else:
                raise

    def check_retire(self) -> None:
        if not self.retiring and self.ready and not self.stash and self.may_retire():
            self.ask_to_retire()

    def receiveMsg_IdleCheck(self, msg: IdleCheck, sender: Any) -> None:
        self.check_retire()

    def ask_to_retire(self) -> None:
        assert self.roles is not None
        self.retiring = True
        self.send(self.roles.directory, RetireRequest(self.kind, self.id, self.myAddress))

    def receiveMsg_RetireApproved(self, msg: RetireApproved, sender: Any) -> None:
        assert self.roles is not None
        if self.ready and (self.idle.outstanding or self.stash or not self.may_retire()):
            # Work arrived between asking and the approval: stay, and take what was buffered.
            self.retiring = False
            self.send(self.roles.directory, RetireCancelled(self.kind, self.id, self.myAddress))
            return
        self.send(self.myAddress, ActorExitRequest())

    def receiveMsg_RetireDenied(self, msg: RetireDenied, sender: Any) -> None:
        self.retiring = False  # the directory holds work for us; it will say when we are idle again
