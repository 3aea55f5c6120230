"""SupervisorActor: the lifecycle layer (an OTP DynamicSupervisor).

It is the parent of every UserActor and RoomActor: it starts one when the directory asks, and reports
every exit to the directory, which knows whether that exit was an approved retirement or a crash and
asks for a restart when one is due. Children die with it (Thespian kills an actor's children).
"""

from __future__ import annotations

from typing import Any

from chatactors.actors.base import ChatActor
from chatactors.messages import ChildExited, ChildStarted, Configure, Init, StartChild


def _child_class(kind: str) -> type:
    # Imported late: the supervisor module must not import its children at load time in every process.
    if kind == "user":
        from chatactors.actors.user import UserActor

        return UserActor
    if kind == "room":
        from chatactors.actors.room import RoomActor

        return RoomActor
    raise ValueError(f"unknown child kind {kind!r}")


class SupervisorActor(ChatActor):
    def __init__(self) -> None:
        super().__init__()
        self.configured: Configure | None = None
        self.children: list[tuple[str, int, Any]] = []
        self.spares: dict[str, list[Any]] = {}
        self.started = 0

    def configure(self, msg: Configure) -> None:
        self.configured = msg

    SPARES = 4  # started ahead of need: an activation then skips the fork and the imports

    def _spare(self, kind: str) -> Any:
        spares = self.spares.setdefault(kind, [])
        address = spares.pop(0) if spares else self.createActor(_child_class(kind))
        while len(spares) < self.SPARES:
            spares.append(self.createActor(_child_class(kind)))
        return address

    def receiveMsg_StartChild(self, msg: StartChild, sender: Any) -> None:
        assert self.configured is not None
        address = self._spare(msg.kind)
        self.children.append((msg.kind, msg.id, address))
        self.started += 1
        self.send(address, Init(msg.kind, msg.id, self.configured.config, self.configured.roles))
        self.send(self.configured.roles.directory, ChildStarted(msg.kind, msg.id, address))

    def receiveMsg_ChildActorExited(self, msg: Any, sender: Any) -> None:
        # Compared with ==, not by str: on multiprocTCPBase createActor returns a local placeholder
        # whose str changes once the child's process is up. Each exit is reported twice there:
        # removing the child makes the second report a no-op.
        for index, (kind, ident, address) in enumerate(self.children):
            if address == msg.childAddress:
                del self.children[index]
                assert self.configured is not None
                self.send(self.configured.roles.directory, ChildExited(kind, ident, address))
                return
