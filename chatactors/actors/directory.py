"""DirectoryActor: the location layer (an OTP Registry that also activates, Orleans-style).

Everything addressed to a user or a room goes through here as ``Route(kind, id, body)``; the
:class:`~chatactors.core.registry.Registry` decides whether to forward, buffer, or start an
activation. It also knows which sinks (bridges, gateways) hold each user's live sessions, and hands
them to the actor with every message, so no sink list lives in an actor that may hibernate.
It is the dead-letter handler too: a message that reached a gone actor is routed again.

In a cluster (docs/cluster.md) each node's directory is a shard: a ``ClusterView`` says which node
owns each key, and what names a key another node owns (a route, a detach, a notice) goes to that
node's directory, one hop, through a local proxy (``chatactors/peering.py``). A room's owner asks the
owners of its members where their sessions are (``WatchMembers``) and hears of changes
(``MemberSinks``), so the room still fans a message out once per sink: once per node.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from thespian.actors import ActorExitRequest, DeadEnvelope, WakeupMessage

from chatactors.actors.base import ChatActor, on
from chatactors.core.model import Address, Kind, TokenRevoked
from chatactors.core.registry import Approve, Deny, Effect, Forward, Key, Registry, Start
from chatactors.messages import (
    Adopt,
    Assigned,
    Attach,
    CatchUp,
    ChildExited,
    ChildStarted,
    ClusterView,
    Configure,
    Deliver,
    DeliverWaiting,
    Detach,
    DropSink,
    Envelope,
    Forwarded,
    GetStats,
    HandOver,
    IdleCheck,
    Init,
    MemberSinks,
    Notify,
    Offline,
    Push,
    Reattach,
    RelayCatchUp,
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
    WatchMembers,
    WhoIsOnline,
)

PIN_GRACE = 5.0  # seconds a key served here after MAX_HOPS bounces stays before it is checked again


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
        # In a cluster: who owns what, and the other shards.
        self.routes = 0
        self.hops = 0  # forwards the message being handled has had (Forwarded)
        self.view: ClusterView | None = None
        self.peers: dict[str, Address] = {}
        # Keys served here only because their message bounced Forwarded.MAX_HOPS times (rings that
        # disagree for a moment), with when: not handed over for PIN_GRACE seconds or until the next
        # ring change, or they would bounce on; then checked again (the other node may have caught up
        # while this one's ring stayed as it was, so no ring change comes here).
        self.pinned: dict[Key, float] = {}
        # Rooms owned here, waiting for their members' owners to say where their sessions are:
        # room id -> (part token, nodes still to answer, sinks so far).
        self.gathering: dict[int, tuple[int, set[str], list[tuple[int, tuple[Address, ...]]]]] = {}
        self.parts = 0
        self.watched_on: dict[int, set[str]] = {}  # room id -> nodes watching members for it
        # Users owned here whose sessions another node's room wants to follow:
        # user id -> {(watcher name, room id): (watcher, room id, watcher's node)}.
        self.watchers: dict[int, dict[tuple[str, int], tuple[Address, int, str]]] = {}

    def configure(self, msg: Configure) -> None:
        self.idle_timeout = msg.config.idle_timeout
        self.handleDeadLetters()
        self.wakeupAfter(self._tick())

    def _tick(self) -> float:
        return max(0.005, min(self.idle_timeout / 4, 5.0))

    def receive_wakeup_message(self, msg: WakeupMessage, sender: Any) -> None:
        for _, address in self.registry.idle(self.idle_timeout):
            self.send(address, IdleCheck())
        now = self.registry.clock.now()
        for key, since in list(self.pinned.items()):
            if now - since >= PIN_GRACE:
                del self.pinned[key]
                self._live_here(key)
        self.wakeupAfter(self._tick())

    # -- the cluster ----------------------------------------------------------------------------------
    def _away(self, key: Key) -> Address | None:
        """The directory of the node that owns ``key``, if another does (None: it is ours, or the
        message has bounced enough: it is served here)."""
        if self.hops >= Forwarded.MAX_HOPS or not self._elsewhere(key):
            return None
        return self.peers.get(self._owner(key))

    def _forward(self, there: Address, message: Any) -> None:
        self.send(there, Forwarded(message, self.hops + 1))

    def receive_forwarded(self, msg: Forwarded, sender: Any) -> None:
        self.hops = msg.hops
        try:
            self.receiveMessage(msg.message, sender)
        finally:
            self.hops = 0

    def _elsewhere(self, key: Key) -> bool:
        """Another node owns ``key`` by this node's ring, however many hops its message had."""
        view = self.view
        return view is not None and len(view.ring) > 0 and self._owner(key) != view.me

    def receive_cluster_view(self, msg: ClusterView, sender: Any) -> None:
        self.view, self.peers = msg, dict(msg.directories)
        self.pinned.clear()
        alive = set(msg.ring.node_ids)
        for key in self.registry.attached_keys():  # keys that moved away: their sessions are the owner's now
            if self._away(key) is not None:
                self.registry.forget_sinks(key)
                self._presence_changed(key[1])
        for key in self.registry.live_keys():  # and their actors are the owner's to start
            if self._away(key) is not None:
                self._hand_over(key)
        for key in self.registry.unseen_keys():  # stored for no one by an actor gone already (one
            self._relay_catch_up(key)  # retiring or starting relays at its exit, or its hand-over)
        for user_id, watching in list(self.watchers.items()):
            if self._away(("user", user_id)) is not None:  # its new owner is asked by the room's owner
                del self.watchers[user_id]
                continue
            for name, (_, _, node) in list(watching.items()):
                if node not in alive:
                    del watching[name]
            if not watching:
                del self.watchers[user_id]
        for room_id, (_, waiting, _) in list(self.gathering.items()):
            waiting &= alive  # a node that left will not answer
            self._gathered(room_id)
        # Members of our live rooms may have new owners: ask again where they all are.
        for room_id, members in list(self.room_members.items()):
            address = self.registry.address(("room", room_id))
            if address is not None and self._away(("room", room_id)) is None:
                self._locate(room_id, members, address)

    def receive_route(self, msg: Route, sender: Any) -> None:
        key = (msg.kind, msg.id)
        away = self._away(key)
        if away is not None:
            self._forward(away, msg)
            return
        self.routes += 1
        if isinstance(msg.body, Attach):
            self.registry.attach(key, msg.body.sink, msg.body.session)
            self._presence_changed(msg.id)
            self.registry.take_unseen(key)  # the login delivers what waits (LoadInbox)
        elif isinstance(msg.body, CatchUp):  # from a former owner, or a relay that went on ahead
            self._catch_up(msg.id)
            return
        self._apply(self.registry.route(key, msg.body))

    def _catch_up(self, user_id: int) -> None:
        """Messages were stored for no session of this user (here, or by its former owner): pushed
        to the sessions known now, behind what its actor is storing if one runs. With none known, a
        Reattach naming them later catches up; nothing is started for a user who is offline."""
        key: Key = ("user", user_id)
        sinks = self.registry.sinks(key)
        if not sinks:
            self.registry.note_unseen(key)
        elif self.registry.known(key):
            self._apply(self.registry.route(key, CatchUp(user_id)))
        else:  # no actor, so nothing of theirs is still on its way to the database
            self.send(self.roles.persistence, DeliverWaiting(user_id, sinks))

    def receive_detach(self, msg: Detach, sender: Any) -> None:
        key: Key = ("user", msg.user_id)
        away = self._away(key)
        if away is not None:
            self._forward(away, msg)
            return
        self.registry.detach(key, msg.sink, msg.session)
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
        if self.view is not None:
            for watcher, room_id, _ in self.watchers.get(user_id, {}).values():
                self.send(watcher, MemberSinks(room_id, ((user_id, sinks),), self.view.me))
        for room_id in self.user_rooms.get(user_id, ()):
            address = self.registry.address(("room", room_id))
            if address is not None:
                self.send(address, RoomSinks(((user_id, sinks),), complete=False))
        if not sinks:
            self._apply(self.registry.notify(("user", user_id), Offline(user_id)))

    def receive_notify(self, msg: Notify, sender: Any) -> None:
        away = self._away(("user", msg.user_id))
        if away is not None:
            self._forward(away, msg)
            return
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
                self._live_here((kind, ident))
            else:
                self.send(address, ActorExitRequest())  # a newer activation took its place

    def receive_reattach(self, msg: Reattach, sender: Any) -> None:
        """A bridge says which sessions it holds: to a directory that replaced a crashed one, or, in a
        cluster, to the new owner of users whose owner changed."""
        away: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        for user_id, numbers in msg.sessions:
            key: Key = ("user", user_id)
            if self._away(key) is not None:
                away.setdefault(self._owner(key), []).append((user_id, numbers))
                continue
            for number in numbers:
                self.registry.attach(key, msg.sink, number)
            self._presence_changed(user_id)
            if self.registry.take_unseen(key):  # messages were stored for no one: pushed now
                self._catch_up(user_id)
        for node, sessions in away.items():
            self._forward(self.peers[node], Reattach(msg.sink, tuple(sessions)))

    def _start(self, key: Key) -> None:
        """Activate with a spare if there is one (Init, then what waited, straight to it), else ask
        the supervisor to start an actor."""
        kind, ident = key
        away = self._away(key)
        if away is not None:  # the ring moved it while it waited (to exit, say): what waited goes there
            for message in self.registry.abandon(key):
                self._forward(away, Route(kind, ident, message))
            return
        if self._elsewhere(key):
            self.pinned[key] = self.registry.clock.now()  # bounced enough: served here for now
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
        self._locate(msg.room_id, msg.member_ids, msg.address)

    def _locate(self, room_id: int, member_ids: Iterable[int], address: Address) -> None:
        """Tell the room at ``address`` where its members' sessions are: what this shard knows at
        once, or, when other nodes own some members, once every such node has answered."""
        member_ids = tuple(member_ids)
        online = [
            (u, self.registry.sinks(("user", u)))
            for u in member_ids
            if self._away(("user", u)) is None and self.registry.is_online(("user", u))
        ]
        remote: dict[str, list[int]] = {}
        for u in member_ids:
            if self._away(("user", u)) is not None:
                remote.setdefault(self._owner(("user", u)), []).append(u)
        stale = self.watched_on.get(room_id, set()) - set(remote)
        if not remote and not stale:
            self.gathering.pop(room_id, None)
            self.send(address, RoomSinks(tuple(online), complete=True))
            return
        self.parts += 1
        for node in stale & set(self.peers):  # members there left the room (or moved): stop following
            self.send(self.peers[node], WatchMembers(room_id, (), self.myAddress, 0, self._me()))
        for node, user_ids in remote.items():
            self.send(
                self.peers[node],
                WatchMembers(room_id, tuple(user_ids), self.myAddress, self.parts, self._me()),
            )
        self.watched_on[room_id] = set(remote)
        self.gathering[room_id] = (self.parts, set(remote), online)
        self._gathered(room_id)  # nobody to wait for when only stale watches were ended

    def _me(self) -> str:
        return self.view.me if self.view is not None else ""

    def _owner(self, key: Key) -> str:
        assert self.view is not None
        return self.view.ring.owner(key).node_id

    def receive_watch_members(self, msg: WatchMembers, sender: Any) -> None:
        """Another node's room follows these members (owned here): say where they are, now and later."""
        name = (str(msg.watcher), msg.room_id)
        for watching in self.watchers.values():
            watching.pop(name, None)
        for user_id in msg.user_ids:
            self.watchers.setdefault(user_id, {})[name] = (msg.watcher, msg.room_id, msg.node)
        self.watchers = {u: w for u, w in self.watchers.items() if w}
        if msg.part:
            sinks = tuple(
                (u, self.registry.sinks(("user", u)))
                for u in msg.user_ids
                if self.registry.is_online(("user", u))
            )
            self.send(msg.watcher, MemberSinks(msg.room_id, sinks, self._me(), msg.part))

    def receive_member_sinks(self, msg: MemberSinks, sender: Any) -> None:
        if msg.part == 0:
            # Only a user's owner by this ring speaks for them: an old owner that saw a new ring
            # first says its sessions are gone. A ring this node has not seen yet is no loss: on
            # seeing it, every live room asks the new owners again (receive_cluster_view).
            sinks = tuple(
                (user_id, found)
                for user_id, found in msg.sinks
                if self.view is None or not len(self.view.ring) or self._owner(("user", user_id)) == msg.node
            )
            address = self.registry.address(("room", msg.room_id))
            if address is not None and sinks:
                self.send(address, RoomSinks(sinks, complete=False))
            return
        gathering = self.gathering.get(msg.room_id)
        if gathering is None or gathering[0] != msg.part:
            return  # an answer to a gathering since replaced
        gathering[1].discard(msg.node)
        gathering[2].extend(msg.sinks)
        self._gathered(msg.room_id)

    def _gathered(self, room_id: int) -> None:
        """Every owner asked has answered (or left): the room learns where all its members are."""
        _, waiting, sinks = self.gathering[room_id]
        if waiting:
            return
        del self.gathering[room_id]
        address = self.registry.address(("room", room_id))
        if address is not None:
            self.send(address, RoomSinks(tuple(sinks), complete=True))

    def _hand_over(self, key: Key) -> None:
        """Another node owns ``key`` now: its actor here goes (what is routed meanwhile waits here,
        for the case the id comes back before it has gone), so no second copy of its state lives on."""
        if key[0] == "user" and self.registry.address(key) is not None and self.registry.take_unseen(key):
            # What it stored for no one: its persistence actor has the new owner catch up, once
            # those writes are committed (the actor's own messages to it are in order).
            self._apply(self.registry.route(key, CatchUp(key[1], relay=True)))
        address = self.registry.stop(key)
        if address is not None:
            self.send(address, HandOver(*key))

    def _live_here(self, key: Key) -> None:
        """``key``'s actor may have just become live here (started, kept after all, adopted, no
        longer pinned): hand it over if the ring has given the key to another node meanwhile (a key
        with no live actor here has nothing to hand over: :meth:`_hand_over` does nothing)."""
        if key not in self.pinned and self._away(key) is not None:
            self._hand_over(key)

    def receive_child_started(self, msg: ChildStarted, sender: Any) -> None:
        if self.roles_restarted:  # its Init may carry an address that was replaced meanwhile
            self.send(msg.address, RolesChanged(self.roles, ()))
        key: Key = (msg.kind, msg.id)
        self._apply(self.registry.started(key, msg.address))
        self._live_here(key)  # its start may have been asked for under a ring that has changed since

    def receive_retire_request(self, msg: RetireRequest, sender: Any) -> None:
        received = dict(msg.received).get(self.stream, 0)
        self._apply(self.registry.retire_request((msg.kind, msg.id), msg.address, received))

    def receive_retire_cancelled(self, msg: RetireCancelled, sender: Any) -> None:
        key: Key = (msg.kind, msg.id)
        self._apply(self.registry.cancel_retire(key, msg.address))
        self._live_here(key)  # it was retiring when the ring moved it: it was not handed over

    def _relay_catch_up(self, key: Key) -> None:
        """``key``'s actor has gone (its mailbox served to the end): if it stored a message for no
        one and another node owns the user now, the persistence actor has that owner catch up."""
        if not self.registry.known(key) and self._away(key) is not None and self.registry.take_unseen(key):
            self.send(self.roles.persistence, RelayCatchUp(key[1]))

    def receive_child_exited(self, msg: ChildExited, sender: Any) -> None:
        self.pinned.pop((msg.kind, msg.id), None)
        self._apply(self.registry.exited((msg.kind, msg.id), msg.address))
        if msg.kind == "user":
            self._relay_catch_up(("user", msg.id))
        if msg.kind == "room" and self.registry.address(("room", msg.id)) is None:
            self._forget_room(msg.id)

    def _forget_room(self, room_id: int) -> None:
        for user_id in self.room_members.pop(room_id, set()):
            self.user_rooms.get(user_id, set()).discard(room_id)
        self.gathering.pop(room_id, None)
        for node in self.watched_on.pop(room_id, set()):
            if node in self.peers:
                self.send(self.peers[node], WatchMembers(room_id, (), self.myAddress, 0, self._me()))

    def receive_dead_envelope(self, msg: DeadEnvelope, sender: Any) -> None:
        dead = msg.deadMessage
        if isinstance(dead, Envelope) and isinstance(dead.body, Route):
            route = dead.body
            key: Key = (route.kind, route.id)
            # The actor died before its supervisor told us: forget it, then route afresh.
            self._apply(self.registry.exited(key, msg.deadAddress))
            self._apply(self.registry.route(key, route.body))
        elif isinstance(dead, HandOver):  # it had gone already (its exit not reported): no exit will be
            self._apply(self.registry.exited((dead.kind, dead.id), msg.deadAddress))
            if dead.kind == "user":
                self._relay_catch_up(("user", dead.id))

    def receive_who_is_online(self, msg: WhoIsOnline, sender: Any) -> None:
        self.reply(msg, tuple(u for u in msg.user_ids if self.registry.is_online(("user", u))))

    def receive_stop_actor(self, msg: StopActor, sender: Any) -> None:
        """GenServer.stop: what is routed from now on waits here for the next activation."""
        away = self._away((msg.kind, msg.id))
        if away is not None:
            self._forward(away, msg)
            return
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
                routes=self.routes,
            ),
        )

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Forward):
                kind, ident = effect.key
                route = Route(kind, ident, effect.message)
                sinks = self.registry.sinks(effect.key)
                if not sinks and isinstance(effect.message, Deliver):  # it is stored for no session
                    self.registry.note_unseen(effect.key)
                envelope = Envelope(route, sinks, self.stream, effect.seq)
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
        on(ClusterView, receive_cluster_view),
        on(Forwarded, receive_forwarded),
        on(WatchMembers, receive_watch_members),
        on(MemberSinks, receive_member_sinks),
    )
