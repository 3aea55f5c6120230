"""RoomActor: a group room's live state (roadmap V0.4: ``Runtime.Room``).

It runs only while at least one member is active (logged in, with a live UserActor): members tell
it when they become active or stop, and it asks to retire (the same two-phase handshake as users)
when none is left. It knows its members and, from the directory, which sinks hold their sessions, so
a message fans out as one ``Push`` per sink carrying the member ids, not one message per member.
The message itself is stored once; read state is one cursor per member (see ``storage``).

The rules are :class:`~chatactors.core.rooms.RoomState`'s; this actor feeds it the messages and
sends what it returns.
"""

from __future__ import annotations

from typing import Any

from chatactors.actors.base import on
from chatactors.actors.virtual import VirtualActor, routed, serves
from chatactors.core.rooms import CheckRetire, Located, MarkCursor, Register, RoomState, StoreMessage
from chatactors.errors import ChatError, RoomNotFound
from chatactors.messages import (
    AdvanceCursor,
    Envelope,
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
        self.state = RoomState()

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> None:
        self.send(self.roles.persistence, LoadRoom(self.id))

    def receive_room_loaded(self, msg: RoomLoaded, sender: Any) -> None:
        if msg.room is None:
            self.fail_stash(msg.error or RoomNotFound(f"no room {self.id}"))
            return
        self._perform(self.state.loaded(msg.room, msg.members))

    def receive_room_sinks(self, msg: RoomSinks, sender: Any) -> None:
        self._perform(self.state.sinks_arrived(msg.sinks, msg.complete))

    def roles_changed(self, msg: RolesChanged) -> None:
        super().roles_changed(msg)
        if "directory" in msg.changed and not self._crashed:
            self._perform(self.state.directory_restarted())

    def may_retire(self) -> bool:
        return self.state.may_retire and self.idle.outstanding == 0

    def fail_outstanding(self, error: ChatError) -> None:
        self._perform(self.state.release_joins())

    # -- effects of the room's state --------------------------------------------------------------
    def perform(self, effect: object) -> None:
        if isinstance(effect, Register):
            self.send(self.roles.directory, RoomMembers(self.id, effect.member_ids, self.myAddress))
        elif isinstance(effect, Located):
            self.loaded()  # state and presence are both in: serve what waited
        elif isinstance(effect, StoreMessage):
            post: PostRoom = effect.request
            store = StoreRoom(
                req_id=post.req_id,
                reply_to=post.reply_to,
                room=effect.room,
                sender=post.sender,
                body=post.body,
                client_id=post.client_id,
                status=effect.status,
                fanout=effect.fanout,
            )
            self.send(self.roles.persistence, store)
        elif isinstance(effect, MarkCursor):
            read: AdvanceCursor = effect.request
            mark = MarkRoomRead(self.id, read.reader, read.up_to, effect.fanout, read.ack_to, read.token)
            self.send(self.roles.persistence, mark)
        elif isinstance(effect, CheckRetire):
            self.check_retire()
        else:
            super().perform(effect)

    # -- membership and activity ----------------------------------------------------------------
    def serve_member_presence(self, msg: MemberPresence, envelope: Envelope) -> None:
        self._perform(self.state.presence(msg.user_id, msg.active))

    def serve_member_joined(self, msg: MemberJoined, envelope: Envelope) -> None:
        self._perform(self.state.joined(msg, msg.user, msg.active))

    def serve_member_left(self, msg: MemberLeft, envelope: Envelope) -> None:
        self._perform(self.state.left(msg, msg.user_id))

    # -- messages and reads ---------------------------------------------------------------------
    def serve_post_room(self, msg: PostRoom, envelope: Envelope) -> None:
        self._perform(self.state.post(msg, msg.sender.id))

    def serve_advance_cursor(self, msg: AdvanceCursor, envelope: Envelope) -> None:
        self._perform(self.state.advance(msg))

    HANDLERS = VirtualActor.HANDLERS.extend(
        on(RoomLoaded, receive_room_loaded),
        on(RoomSinks, receive_room_sinks),
    )
    ROUTED = routed(
        serves(MemberPresence, serve_member_presence),
        serves(MemberJoined, serve_member_joined),
        serves(MemberLeft, serve_member_left),
        serves(PostRoom, serve_post_room),
        serves(AdvanceCursor, serve_advance_cursor),
    )
