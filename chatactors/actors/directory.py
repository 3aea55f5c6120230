"""DirectoryActor: the location layer (an OTP Registry that also activates, Orleans-style).

Everything addressed to a user or a room goes through here as ``Route(kind, id, body)``; the
:class:`~chatactors.core.registry.Registry` decides whether to forward, buffer, or start an
activation. It also knows which sinks (bridges, gateways) hold each user's live sessions, and hands
them to the actor with every message, so no sink list lives in an actor that may hibernate.
It is the dead-letter handler too: a message that reached a gone actor is routed again.
"""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorExitRequest, DeadEnvelope, WakeupMessage

from chatactors.actors.base import ChatActor, on
from chatactors.core.model import Address, Kind, TokenRevoked
from chatactors.core.registry import Approve, Deny, Effect, Forward, Key, Registry, Start
from chatactors.messages import (
    Adopt,
    Assigned,
    Attach,
    ChildExited,
    ChildStarted,
    Configure,
    Detach,
    DropSink,
    Envelope,
    GetStats,
    IdleCheck,
    Init,
    Notify,
    Offline,
    Push,
    Reattach,
    RetireApproved,
    RetireCancelled,
    RetireDenied,
    RetireRequest,
    RolesChanged,
    RoomMembers,
    RoomSinks,
    Route,
    Spares,
    StartChild,
    Stats,
    StopActor,
    WhoIsOnline,
)


class DirectoryActor(ChatActor):
    crash_on_error = True

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()
        # Names the forwards of this incarnation: after a restart, the adopted actors' counts of the
        # old directory's forwards are not mistaken for this one's.
        self.stream = os.urandom(8).hex()
        self.idle_timeout = 300.0
        # Actors the supervisor started ahead of need, as (supervisor, address): a restarted
        # supervisor's replace the dead one's, whichever message comes first.
        self.spares: dict[Kind, list[tuple[str, Address]]] = {}
        self.roles_restarted = False  # a core actor was replaced since this directory started
        # Members of live rooms, so a room learns at once where its members' sessions are.
        self.room_members: dict[int, set[int]] = {}
        self.user_rooms: dict[int, set[int]] = {}

    def configure(self, msg: Configure) -> None:
        self.idle_timeout = msg.config.idle_timeout
        self.handleDeadLetters()
        self.wakeupAfter(self._tick())

    def _tick(self) -> float:
        return max(0.005, min(self.idle_timeout / 4, 5.0))

    def receive_wakeup_message(self, msg: WakeupMessage, sender: Any) -> None:
        for _, address in self.registry.idle(self.idle_timeout):
            self.send(address, IdleCheck())
        self.wakeupAfter(self._tick())

    def receive_route(self, msg: Route, sender: Any) -> None:
        key = (msg.kind, msg.id)
        if isinstance(msg.body, Attach):
            self.registry.attach(key, msg.body.sink)
            self._presence_changed(msg.id)
        self._apply(self.registry.route(key, msg.body))

    def receive_detach(self, msg: Detach, sender: Any) -> None:
        key: Key = ("user", msg.user_id)
        self.registry.detach(key, msg.sink)
        if msg.revoked is not None:  # before the reply: the caller's other sessions end first
            for sink in self.registry.sinks(key):
                self.send(sink, Push((msg.user_id,), TokenRevoked(msg.revoked)))
        self._presence_changed(msg.user_id)
        self.reply(msg)

    def receive_drop_sink(self, msg: DropSink, sender: Any) -> None:
        for _, user_id in self.registry.drop_sink(msg.sink):
            self._presence_changed(user_id)
        self.reply(msg)

    def _presence_changed(self, user_id: int) -> None:
        """Tell the user's live rooms where its sessions are now, and its actor if it went offline."""
        sinks = self.registry.sinks(("user", user_id))
        for room_id in self.user_rooms.get(user_id, ()):
            address = self.registry.address(("room", room_id))
            if address is not None:
                self.send(address, RoomSinks(((user_id, sinks),), complete=False))
        if not sinks:
            self._apply(self.registry.notify(("user", user_id), Offline(user_id)))

    def receive_notify(self, msg: Notify, sender: Any) -> None:
        for sink in self.registry.sinks(("user", msg.user_id)):
            self.send(sink, Push((msg.user_id,), msg.event))

    def receive_spares(self, msg: Spares, sender: Any) -> None:
        owner = str(msg.supervisor or sender)
        self.spares.setdefault(msg.kind, []).extend((owner, a) for a in msg.addresses)

    # -- supervision: a core actor was replaced ---------------------------------------------------
    def roles_changed(self, msg: RolesChanged) -> None:
        self.roles_restarted = True
        if "supervisor" in msg.changed:
            # Every user and room actor died with it (its spares too: _start skips them). Rooms
            # activated again register their members afresh.
            self.room_members.clear()
            self.user_rooms.clear()
            self._apply(self.registry.supervisor_lost())
        if "directory" not in msg.changed:  # a new directory tells its adopted actors itself
            for _, address in self.registry.addresses():
                self.send(address, msg)

    def receive_adopt(self, msg: Adopt, sender: Any) -> None:
        """This directory replaced a crashed one: the supervisor says which actors live."""
        for kind, address in msg.spares:
            self.spares.setdefault(kind, []).append((str(msg.supervisor), address))
        changed = RolesChanged(self.roles, ("directory",))
        for kind, ident, address in msg.children:
            if self.registry.adopt((kind, ident), address):
                self.send(address, changed)  # rooms register their members again
            else:
                self.send(address, ActorExitRequest())  # a newer activation took its place

    def receive_reattach(self, msg: Reattach, sender: Any) -> None:
        """This directory replaced a crashed one: a bridge says which sessions it holds."""
        for user_id, count in msg.sessions:
            for _ in range(count):
                self.registry.attach(("user", user_id), msg.sink)
            self._presence_changed(user_id)

    def _start(self, key: Key) -> None:
        """Activate with a spare if there is one (Init, then what waited, straight to it), else ask
        the supervisor to start an actor."""
        kind, ident = key
        current = str(self.roles.supervisor)
        spares = self.spares.get(kind, [])
        while spares and spares[0][0] != current:
            spares.pop(0)  # a dead supervisor's: they died with it (the one place they are dropped)
        if not spares:
            self.send(self.roles.supervisor, StartChild(kind, ident))
            return
        _, address = spares.pop(0)
        self.send(address, Init(kind, ident, self.config, self.roles))
        self.send(self.roles.supervisor, Assigned(kind, ident, address))
        self._apply(self.registry.started(key, address))

    def receive_room_members(self, msg: RoomMembers, sender: Any) -> None:
        for user_id in self.room_members.get(msg.room_id, set()) - set(msg.member_ids):
            self.user_rooms.get(user_id, set()).discard(msg.room_id)
        self.room_members[msg.room_id] = set(msg.member_ids)
        for user_id in msg.member_ids:
            self.user_rooms.setdefault(user_id, set()).add(msg.room_id)
        online = tuple(
            (u, self.registry.sinks(("user", u)))
            for u in msg.member_ids
            if self.registry.is_online(("user", u))
        )
        self.send(msg.address, RoomSinks(online, complete=True))

    def receive_child_started(self, msg: ChildStarted, sender: Any) -> None:
        if self.roles_restarted:  # its Init may carry an address that was replaced meanwhile
            self.send(msg.address, RolesChanged(self.roles, ()))
        self._apply(self.registry.started((msg.kind, msg.id), msg.address))

    def receive_retire_request(self, msg: RetireRequest, sender: Any) -> None:
        received = dict(msg.received).get(self.stream, 0)
        self._apply(self.registry.retire_request((msg.kind, msg.id), msg.address, received))

    def receive_retire_cancelled(self, msg: RetireCancelled, sender: Any) -> None:
        self._apply(self.registry.cancel_retire((msg.kind, msg.id), msg.address))

    def receive_child_exited(self, msg: ChildExited, sender: Any) -> None:
        self._apply(self.registry.exited((msg.kind, msg.id), msg.address))
        if msg.kind == "room" and self.registry.address(("room", msg.id)) is None:
            self._forget_room(msg.id)

    def _forget_room(self, room_id: int) -> None:
        for user_id in self.room_members.pop(room_id, set()):
            self.user_rooms.get(user_id, set()).discard(room_id)

    def receive_dead_envelope(self, msg: DeadEnvelope, sender: Any) -> None:
        dead = msg.deadMessage
        if isinstance(dead, Envelope) and isinstance(dead.body, Route):
            route = dead.body
            key: Key = (route.kind, route.id)
            # The actor died before its supervisor told us: forget it, then route afresh.
            self._apply(self.registry.exited(key, msg.deadAddress))
            self._apply(self.registry.route(key, route.body))

    def receive_who_is_online(self, msg: WhoIsOnline, sender: Any) -> None:
        self.reply(msg, tuple(u for u in msg.user_ids if self.registry.is_online(("user", u))))

    def receive_stop_actor(self, msg: StopActor, sender: Any) -> None:
        """GenServer.stop: what is routed from now on waits here for the next activation."""
        address = self.registry.stop((msg.kind, msg.id))
        if address is not None:
            self.send(address, ActorExitRequest())
        self.reply(msg, address is not None)

    def receive_get_stats(self, msg: GetStats, sender: Any) -> None:
        r = self.registry
        self.reply(
            msg,
            Stats(
                live_users=r.live("user"),
                live_rooms=r.live("room"),
                online_users=r.online(),
                activations=r.activations,
                retirements=r.retirements,
                crashes=r.crashes,
            ),
        )

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Forward):
                kind, ident = effect.key
                route = Route(kind, ident, effect.message)
                envelope = Envelope(route, self.registry.sinks(effect.key), self.stream, effect.seq)
                self.send(effect.address, envelope)
            elif isinstance(effect, Start):
                self._start(effect.key)
            elif isinstance(effect, Approve):
                self.send(effect.address, RetireApproved())
            elif isinstance(effect, Deny):
                self.send(effect.address, RetireDenied())

    HANDLERS = ChatActor.HANDLERS.extend(
        on(WakeupMessage, receive_wakeup_message),
        on(Route, receive_route),
        on(Detach, receive_detach),
        on(DropSink, receive_drop_sink),
        on(Notify, receive_notify),
        on(Spares, receive_spares),
        on(Adopt, receive_adopt),
        on(Reattach, receive_reattach),
        on(RoomMembers, receive_room_members),
        on(ChildStarted, receive_child_started),
        on(RetireRequest, receive_retire_request),
        on(RetireCancelled, receive_retire_cancelled),
        on(ChildExited, receive_child_exited),
        on(DeadEnvelope, receive_dead_envelope),
        on(WhoIsOnline, receive_who_is_online),
        on(StopActor, receive_stop_actor),
        on(GetStats, receive_get_stats),
    )
