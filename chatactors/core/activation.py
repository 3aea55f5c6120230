"""One activation of a virtual actor (a user's or a room's): loading, the stash, and retiring.

An activation starts (``Init``), asks for its state (:class:`Load`) and stashes whatever arrives
until the state is in; then it serves the stash in order. When it may retire (idle long enough and
owing nobody a reply, as the actor's ``may_retire`` says) it asks the directory (:class:`AskRetire`).
Between asking and the approval new work may come in, so on approval it checks again and either
exits (:class:`Exit`) or stays (:class:`CancelRetire`). A core actor restarted elsewhere may have
taken with it a reply this activation waits for: then it answers what waits with ``Restarting`` and
crashes, to be activated afresh.

The actor performs the effects in order and calls back with its own ``may_retire()`` answer, which
depends on state only it holds (reads in progress, active members).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.core.clock import Clock, MonotonicClock
from chatactors.core.idle import IdlePolicy
from chatactors.core.replies import Refuse
from chatactors.errors import ChatError, Restarting


@dataclass(frozen=True)
class Load:
    """Ask for the state; the actor calls :meth:`Activation.loaded` or :meth:`Activation.load_failed`."""


@dataclass(frozen=True)
class Serve:
    """Handle this message now (it may have waited in the stash)."""

    message: Any


@dataclass(frozen=True)
class Redeliver:
    """Receive this stashed message again, now that the state is in (as if it arrived now)."""

    message: Any


@dataclass(frozen=True)
class FailOutstanding:
    """Answer every request that waits for another actor's reply with ``error``."""

    error: ChatError


@dataclass(frozen=True)
class AskRetire:
    """Send ``RetireRequest`` to the directory."""


@dataclass(frozen=True)
class CancelRetire:
    """Send ``RetireCancelled`` to the directory: work came in after asking."""


@dataclass(frozen=True)
class Reroute:
    """Send this message (it waited in the stash) back to the directory, to be routed afresh."""

    message: Any


@dataclass(frozen=True)
class Exit:
    """Retire: exit now (the directory buffers from here on)."""


@dataclass(frozen=True)
class Crash:
    """Exit now, refusing whatever arrives before the exit: a fresh activation takes over."""


Effect = (
    Load | Serve | Redeliver | Reroute | Refuse | FailOutstanding | AskRetire | CancelRetire | Exit | Crash
)

RESTARTS_THAT_LOSE_REPLIES = frozenset({"persistence", "directory"})  # they answer activations


class Activation:
    def __init__(self, clock: Clock | None = None, idle_timeout: float = 300.0) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.idle = IdlePolicy(self.clock, idle_timeout)
        self.stash: list[Any] = []
        self.ready = False
        self.retiring = False  # asked the directory, no answer yet

    # -- loading ----------------------------------------------------------------------------------
    def start(self, idle_timeout: float) -> list[Effect]:
        """``Init``: the load is a reply owed to this activation, so it does not retire meanwhile."""
        self.idle = IdlePolicy(self.clock, idle_timeout)
        self.idle.started()
        return [Load()]

    def arrived(self, message: Any) -> list[Effect]:
        """A message for this user or room: stashed until the state is in."""
        if not self.ready:
            self.stash.append(message)
            return []
        self.idle.touch()
        return [Serve(message)]

    def loaded(self) -> list[Effect]:
        """The state is in: the stash is received again, in arrival order. The actor then calls
        :meth:`check_retire` (a room activated with no active member goes again at once)."""
        self.idle.finished()
        self.ready = True
        stash, self.stash = self.stash, []
        return [Redeliver(m) for m in stash]

    def load_failed(self, error: ChatError) -> list[Effect]:
        """The state could not be loaded (no such user or room, or the database failed): answer what
        waits, then go."""
        stash, self.stash = self.stash, []
        self.idle.finished()
        self.retiring = True
        return [*(Refuse(m, error) for m in stash), AskRetire()]

    # -- retiring ---------------------------------------------------------------------------------
    def check_retire(self, may_retire: bool) -> list[Effect]:
        """An idle check, or the actor knows it has nothing left to do."""
        if self.retiring or not self.ready or self.stash or not may_retire:
            return []
        self.retiring = True
        return [AskRetire()]

    def ask_to_retire(self) -> list[Effect]:
        """Ask whatever the state (the actor has decided to go)."""
        self.retiring = True
        return [AskRetire()]

    def approved(self, may_retire: bool) -> list[Effect]:
        """The directory buffers from now on; go unless work arrived between asking and now."""
        if self.ready and (self.idle.outstanding or self.stash or not may_retire):
            self.retiring = False  # stay, and take what the directory buffered
            return [CancelRetire()]
        return [Exit()]

    def denied(self) -> list[Effect]:
        """The directory holds work for this activation; the next idle check asks again."""
        self.retiring = False
        return []

    def handed_over(self) -> list[Effect]:
        """Another node owns this id now, and the directory routes nothing more here. What waits
        for the state goes back to be routed to the owner; a reply this activation waits for would
        reach an actor that has gone, so its caller is told to retry (a client_id keeps a retried
        send to one stored message). Staying until idle would keep a second copy of the state,
        served again if the id came back to this node before the idle timeout."""
        stash, self.stash = self.stash, []
        self.retiring = True
        error = Restarting("this user or room moved to another node; retry")
        return [*(Reroute(m) for m in stash), FailOutstanding(error), Exit()]

    # -- supervision ------------------------------------------------------------------------------
    def roles_changed(self, changed: tuple[str, ...]) -> list[Effect]:
        """Core actors (``changed``) were restarted elsewhere."""
        if "directory" in changed:
            self.retiring = False  # the directory that was to answer is gone; the idle check asks again
        if not RESTARTS_THAT_LOSE_REPLIES & set(changed) or (self.ready and not self.idle.outstanding):
            return []
        # A reply this activation waits for was lost with the dead actor: answer what waits
        # (callers retry; client_id keeps that to one stored message) and start afresh.
        error = Restarting(f"a core actor ({', '.join(changed)}) restarted; retry")
        stash, self.stash = self.stash, []
        return [*(Refuse(m, error) for m in stash), FailOutstanding(error), Crash()]
