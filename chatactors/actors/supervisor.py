"""SupervisorActor: the lifecycle layer (an OTP DynamicSupervisor).

It is the parent of every UserActor and RoomActor: it starts one when the directory asks, and reports
every exit to the directory, which knows whether that exit was an approved retirement or a crash and
asks for a restart when one is due. Children die with it (Thespian kills an actor's children).
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ChildActorExited

from chatactors.actors.base import ChatActor, on
from chatactors.core.children import Children, Exited
from chatactors.core.model import Kind
from chatactors.messages import (
    Adopt,
    Assigned,
    ChildExited,
    ChildStarted,
    Configure,
    Init,
    RolesChanged,
    Spares,
    StartChild,
)


def _child_class(kind: Kind) -> type:
    # Imported late: the supervisor module must not import its children at load time in every process.
    if kind == "user":
        from chatactors.actors.user import UserActor

        return UserActor
    if kind == "room":
        from chatactors.actors.room import RoomActor

        return RoomActor
    raise ValueError(f"unknown child kind {kind!r}")


class SupervisorActor(ChatActor):
    crash_on_error = True

    def __init__(self) -> None:
        super().__init__()
        self.children = Children()

    # Per kind, started ahead of need: an activation then waits for no process to start. Eight keep
    # a burst of wake-ups (50 hibernated users messaged back to back) under 25 ms p99 on 2 cores;
    # an idle spare costs ~6 MB PSS on multiprocTCPBase, next to nothing embedded. Rooms wake rarely.
    SPARES: dict[Kind, int] = {"user": 8, "room": 2}

    def configure(self, msg: Configure) -> None:
        for kind in self.SPARES:
            self._top_up(kind)

    def _top_up(self, kind: Kind) -> None:
        """Start spares until there are enough of this kind, and hand the new ones to the directory,
        which assigns them itself (two hops fewer than asking here for each activation)."""
        new = []
        for _ in range(self.children.missing_spares(kind, self.SPARES[kind])):
            address = self.createActor(_child_class(kind))
            self.children.add_spare(kind, address)
            new.append(address)
        if new:
            self.send(self.roles.directory, Spares(kind, tuple(new), self.myAddress))

    def roles_changed(self, msg: RolesChanged) -> None:
        if "directory" in msg.changed:  # the new directory's table starts from what lives here
            adopt = Adopt(tuple(self.children.serving), self.children.all_spares(), self.myAddress)
            self.send(self.roles.directory, adopt)

    def receive_assigned(self, msg: Assigned, sender: Any) -> None:
        self._report(self.children.assigned((msg.kind, msg.id), msg.address))
        self._top_up(msg.kind)

    def receive_start_child(self, msg: StartChild, sender: Any) -> None:
        """The directory ran out of spares: start one for this activation now."""
        address = self.createActor(_child_class(msg.kind))
        self.children.started((msg.kind, msg.id), address)
        self.send(address, Init(msg.kind, msg.id, self.config, self.roles))
        self.send(self.roles.directory, ChildStarted(msg.kind, msg.id, address))
        self._top_up(msg.kind)

    def receive_child_actor_exited(self, msg: ChildActorExited, sender: Any) -> None:
        self._report(self.children.exited(msg.childAddress))

    def _report(self, exits: list[Exited]) -> None:
        for exited in exits:
            kind, ident = exited.key
            self.send(self.roles.directory, ChildExited(kind, ident, exited.address))

    HANDLERS = ChatActor.HANDLERS.extend(
        on(Assigned, receive_assigned),
        on(StartChild, receive_start_child),
        on(ChildActorExited, receive_child_actor_exited),
    )
