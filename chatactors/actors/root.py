"""CoreSupervisor: the root of the supervision tree (an OTP supervisor, strategy ``one_for_one``).

It starts the four core actors (persistence, login, the user/room supervisor, the directory) as its
own children and restarts any of them that exits without being asked to, within a restart intensity
(:class:`~chatactors.core.supervision.CoreTree`); past it, it stops the tree loudly instead of
looping. A restarted actor has a new address, so the root tells everyone who holds the old one
(:class:`RolesChanged`): the other core actors, and the bridges that watch it; the directory passes
it on to live user and room actors. What the dead actor held is rebuilt, not copied: a new directory
learns the live actors from the supervisor (``Adopt``) and the sessions from the bridges
(``Reattach``); a new supervisor's children died with the old one and come back on demand.

Starting takes two rounds because on multiprocTCPBase ``createActor`` inside an actor returns a
placeholder that only this process can use: each child first answers a ``Ping`` (its reply's sender
is its real address), then everyone is configured with the real addresses.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

from thespian.actors import ActorExitRequest, ChildActorExited

from chatactors.actors.base import ChatActor, given, on
from chatactors.core.model import Address
from chatactors.core.supervision import ROLES, CoreTree, GiveUp, Restart, RestartIntensity, Role
from chatactors.messages import (
    Configure,
    CoreStopped,
    Ping,
    Reply,
    Roles,
    RolesChanged,
    StartCore,
    Watch,
    WhoAmI,
)

log = logging.getLogger("chatactors.supervision")


def _core_class(role: Role) -> type:
    # Imported late: every process imports this module, not every core actor's dependencies.
    if role == "persistence":
        from chatactors.actors.persistence import PersistenceActor

        return PersistenceActor
    if role == "login":
        from chatactors.actors.login import LoginService

        return LoginService
    if role == "supervisor":
        from chatactors.actors.supervisor import SupervisorActor

        return SupervisorActor
    from chatactors.actors.directory import DirectoryActor

    return DirectoryActor


class CoreSupervisor(ChatActor):
    def __init__(self) -> None:
        super().__init__()
        # The root is configured by StartCore (``config``) and makes the ``roles`` itself, once every
        # child has answered its Ping; until then ``_roles`` is None.
        self.tree: CoreTree | None = None
        self.starter: tuple[StartCore, Address] | None = None  # answered once the first start is done
        self.addresses: dict[
            Role, Address
        ] = {}  # first start: role -> real address, as each child reports it
        self.hello: dict[int, Role] = {}  # Ping req_id -> role being started
        self.configuring: dict[Role, bool] = {}  # role -> a restart (True) or the first start
        self.watchers: list[Address] = []
        self._ids = itertools.count(1)

    # -- start ----------------------------------------------------------------------------------
    def receive_start_core(self, msg: StartCore, sender: Any) -> None:
        if self.tree is not None:
            self.send(sender, Reply(msg.req_id, self._roles))  # a second Chat attaching: same core
            return
        self.tree = CoreTree(RestartIntensity(msg.max_restarts, msg.max_seconds))
        self._config = msg.config
        self.starter = (msg, sender)
        for role in ROLES:
            self._spawn(role)

    def _spawn(self, role: Role) -> None:
        address = self.createActor(_core_class(role))
        given(self, self.tree, "restart intensity").assign(role, address)
        req_id = next(self._ids)
        self.hello[req_id] = role
        self.send(address, Ping(req_id=req_id, reply_to=self.myAddress))

    def receive_reply(self, msg: Reply, sender: Any) -> None:
        tree = given(self, self.tree, "restart intensity")
        role = self.hello.pop(msg.req_id, None)
        if role is not None:  # a Ping answered: ``sender`` is the child's real address
            tree.add_alias(role, sender)
            if self._roles is None:
                self.addresses[role] = sender
                if len(self.addresses) == len(ROLES):
                    self._roles = Roles(**self.addresses)
                    for each in ROLES:
                        self.configuring[each] = False
                        self.send(self.addresses[each], Configure(self.config, self.roles))
            else:
                self._roles = dataclasses.replace(self._roles, **{role: sender})
                self.configuring[role] = True
                self.send(sender, Configure(self.config, self.roles))
            return
        role = tree.role_of(sender)  # a Configure acknowledged
        if role is None or role not in self.configuring:
            return
        restarted = self.configuring.pop(role)
        if restarted:
            log.warning("core actor %s restarted at %s", role, sender)
            self._broadcast(RolesChanged(self.roles, (role,)))
        elif not self.configuring and self.starter is not None:
            request, starter = self.starter
            self.starter = None
            self.send(starter, Reply(request.req_id, self.roles))

    def _broadcast(self, message: Any) -> None:
        # Everyone who may hold the old address: the core actors (the directory passes it on to
        # live user and room actors) and the bridges, which re-attach their sessions.
        if self._roles is not None:
            for role in ROLES:
                self.send(getattr(self._roles, role), message)
        for watcher in self.watchers:
            self.send(watcher, message)

    # -- watchers -------------------------------------------------------------------------------
    def receive_watch(self, msg: Watch, sender: Any) -> None:
        if msg.reply_to is not None:
            self.watchers.append(msg.reply_to)
        self.reply(msg, True)

    def receive_who_am_i(self, msg: WhoAmI, sender: Any) -> None:
        # How a process bridge learns its own address; it is watching from then on.
        self.watchers.append(sender)
        self.send(sender, Reply(msg.req_id, sender))

    # -- exits ----------------------------------------------------------------------------------
    def receive_child_actor_exited(self, msg: ChildActorExited, sender: Any) -> None:
        if self.tree is None:
            return
        decision = self.tree.exited(msg.childAddress)
        if isinstance(decision, Restart):
            log.error(
                "core actor %s exited unexpectedly (%s); restarting it", decision.role, msg.childAddress
            )
            self.configuring.pop(decision.role, None)
            self._spawn(decision.role)
        elif isinstance(decision, GiveUp):
            log.critical("giving up: %s; the chat stops", decision.reason)
            for watcher in self.watchers:
                self.send(watcher, CoreStopped(decision.reason))
            self.send(self.myAddress, ActorExitRequest())

    def on_exit(self) -> None:
        if self.tree is not None:
            self.tree.stopping = True  # the children exit with us: that is no crash

    HANDLERS = ChatActor.HANDLERS.extend(
        on(StartCore, receive_start_core),
        on(Reply, receive_reply),
        on(Watch, receive_watch),
        on(WhoAmI, receive_who_am_i),
        on(ChildActorExited, receive_child_actor_exited),
    )
