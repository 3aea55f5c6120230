"""RoomActor: a group room's live state (roadmap V0.4: ``Runtime.Room``).

It runs only while at least one member is active (logged in, with a live UserActor): members tell
it when they become active or stop, and it asks to retire (the same two-phase handshake as users)
when none is left. It knows its members and, from the directory, which sinks hold their sessions, so
a message fans out as one ``Push`` per sink carrying the member ids, not one message per member.
The message itself is stored once; read state is one cursor per member (see ``storage``).
"""

from __future__ import annotations

from typing import Any

from chatactors.actors.virtual import VirtualActor
from chatactors.core.model import ENTREGADO, ENVIADO, RoomInfo, UserInfo
from chatactors.errors import NotAMember, RoomNotFound
from chatactors.messages import (
    AdvanceCursor,
    Envelope,
    Fanout,
    LoadRoom,
    MarkRoomRead,
    MemberJoined,
    MemberLeft,
    MemberPresence,
    PostRoom,
    RolesChanged,
    RoomLoaded,
    RoomMembers,
    RoomSinks,
    StoreRoom,
)


class RoomActor(VirtualActor):
    kind = "room"

    def __init__(self) -> None:
        super().__init__()
        self.room: RoomInfo | None = None
        self.members: dict[int, UserInfo] = {}
        self.active: set[int] = set()
        self.sinks: dict[int, tuple[Any, ...]] = {}
        self.pending_replies: list[MemberJoined] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> None:
        assert self.roles is not None
        self.send(self.roles.persistence, LoadRoom(self.id))

    def receiveMsg_RoomLoaded(self, msg: RoomLoaded, sender: Any) -> None:
        if msg.room is None:
            self.fail_stash(msg.error or RoomNotFound(f"no room {self.id}"))
            return
        self.room = msg.room
        self.members = {u.id: u for u in msg.members}
        self._register()

    def _register(self) -> None:
        assert self.roles is not None
        self.send(self.roles.directory, RoomMembers(self.id, tuple(self.members), self.myAddress))

    def receiveMsg_RoomSinks(self, msg: RoomSinks, sender: Any) -> None:
        if msg.complete:
            self.sinks = {}
        for user_id, sinks in msg.sinks:
            if sinks:
                self.sinks[user_id] = sinks
            else:
                self.sinks.pop(user_id, None)
        if msg.complete and not self.ready:
            self.loaded()  # state and presence are both in: serve what waited
        if msg.complete and self.pending_replies:
            assert self.room is not None
            replies, self.pending_replies = self.pending_replies, []
            for request in replies:
                self.reply(request, self.room.name)

    def roles_changed(self, msg: RolesChanged) -> None:
        super().roles_changed(msg)
        if "directory" in msg.changed and self.room is not None and not self._crashed:
            self._register()  # the new directory learns the members; RoomSinks answers

    def may_retire(self) -> bool:
        # A join waiting for the directory's RoomSinks is a reply still owed: retiring now loses it.
        return not self.active and self.idle.outstanding == 0 and not self.pending_replies

    # -- membership and activity ----------------------------------------------------------------
    def on_MemberPresence(self, msg: MemberPresence, envelope: Envelope) -> None:
        if msg.active and msg.user_id in self.members:
            self.active.add(msg.user_id)
        else:
            self.active.discard(msg.user_id)
            self.check_retire()

    def on_MemberJoined(self, msg: MemberJoined, envelope: Envelope) -> None:
        self.members[msg.user.id] = msg.user
        if msg.active:
            self.active.add(msg.user.id)
        # Answered once the directory has said where the new member's sessions are: a message
        # posted after join() returns must reach them.
        self.pending_replies.append(msg)
        self._register()

    def on_MemberLeft(self, msg: MemberLeft, envelope: Envelope) -> None:
        self.members.pop(msg.user_id, None)
        self.active.discard(msg.user_id)
        self.sinks.pop(msg.user_id, None)
        self._register()
        assert self.room is not None
        self.reply(msg, self.room.name)
        self.check_retire()

    # -- messages and reads ---------------------------------------------------------------------
    def _fanout(self, exclude: int | None = None) -> Fanout:
        """One entry per sink, with the members it holds sessions of."""
        by_sink: dict[str, tuple[Any, list[int]]] = {}
        for user_id, sinks in self.sinks.items():
            if user_id == exclude or user_id not in self.members:
                continue
            for sink in sinks:
                by_sink.setdefault(str(sink), (sink, []))[1].append(user_id)
        return tuple((sink, tuple(users)) for sink, users in by_sink.values())

    def on_PostRoom(self, msg: PostRoom, envelope: Envelope) -> None:
        assert self.room is not None and self.roles is not None
        if msg.sender.id not in self.members:
            raise NotAMember(f"you are not in {self.room.name!r}")
        fanout = self._fanout(exclude=msg.sender.id)
        store = StoreRoom(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            room=self.room,
            sender=msg.sender,
            body=msg.body,
            client_id=msg.client_id,
            status=ENTREGADO if fanout else ENVIADO,
            fanout=fanout,
        )
        self.send(self.roles.persistence, store)

    def on_AdvanceCursor(self, msg: AdvanceCursor, envelope: Envelope) -> None:
        assert self.roles is not None
        mark = MarkRoomRead(self.id, msg.reader, msg.up_to, self._fanout(), msg.ack_to, msg.token)
        self.send(self.roles.persistence, mark)
