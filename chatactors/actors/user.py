"""UserActor: one user's live state (an OTP GenServer per user, activated on demand).

It holds who the user is, their rooms, whether they are active (logged in with this actor live,
which keeps their rooms' actors running) and the reads in progress. A direct message is routed to the
recipient's actor, which decides whether it is delivered at once (V0.9) and has it stored. All of
it is rebuilt from the database on activation, so a retired or crashed actor loses nothing.

The rules of the rooms and the reads are :class:`~chatactors.core.rooms.Memberships`' and
:class:`~chatactors.core.reads.ReadSaga`'s; this actor feeds them the messages and sends what they
return.
"""

from __future__ import annotations

from typing import Any

from chatactors.actors.base import as_chat_error, chat_error, on
from chatactors.actors.virtual import VirtualActor, routed, serves
from chatactors.core.model import ENTREGADO, ENVIADO, Address, Kind, UserInfo
from chatactors.core.reads import Advance, Confirm, Fetch, PushRead, Query, ReadSaga
from chatactors.core.rooms import AskRoomOp, JoinRoom, LeaveRoom, Memberships, PostTo, Presence
from chatactors.core.rules import check_body
from chatactors.errors import ChatError, UserNotFound
from chatactors.messages import (
    AdvanceCursor,
    Attach,
    CatchUp,
    ConfirmRead,
    Deliver,
    DeliverWaiting,
    Envelope,
    FetchUnread,
    GetInbox,
    GetPid,
    LoadInbox,
    LoadUser,
    LoginResult,
    MarkRead,
    MemberJoined,
    MemberLeft,
    MemberPresence,
    Offline,
    PostRoom,
    Push,
    ReadAck,
    ReadMessages,
    RelayCatchUp,
    RoomCommand,
    RoomOp,
    RoomOpDone,
    Route,
    SendRoom,
    StoreDirect,
    UnreadFetched,
    UserLoaded,
)


class UserActor(VirtualActor):
    kind = "user"

    def __init__(self) -> None:
        super().__init__()
        self.user: UserInfo | None = None
        self.memberships = Memberships()
        self.reads = ReadSaga(self.memberships)
        self.online_hint = False  # sessions were seen before the state had loaded

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> None:
        self.send(self.roles.persistence, LoadUser(self.id))

    def receive_user_loaded(self, msg: UserLoaded, sender: Any) -> None:
        if msg.user is None:
            self.fail_stash(as_chat_error(msg.error or UserNotFound(f"no user {self.id}")))
            return
        self.user = msg.user
        self.memberships.load(msg.rooms)
        self.loaded()
        if self.online_hint:
            self._perform(self.memberships.set_active(True))

    def may_retire(self) -> bool:
        return not self.reads.busy and super().may_retire()

    def fail_outstanding(self, error: ChatError) -> None:
        self._perform(self.reads.fail_all(error))
        self._perform(self.memberships.fail_all(error))

    def on_exit(self) -> None:
        self._perform(self.memberships.set_active(False))

    def receive_envelope(self, msg: Envelope, sender: Any) -> None:
        body = msg.body.body
        if not self.ready and self._roles is not None and isinstance(body, Deliver) and body.recipient:
            # The first message to a hibernated user needs nothing loaded: store it now, and take
            # the database read out of its path (activation latency, V0.8).
            self.count(msg)
            self.online_hint = self.online_hint or bool(msg.sinks)
            self.serve_deliver(body, msg)
            return
        if isinstance(body, CatchUp) and self._roles is not None:
            # Needs nothing loaded either, and must not wait in the stash: it follows the stores
            # of the messages routed before it, to the same persistence actor.
            self.count(msg)
            if msg.sinks and not body.relay:  # a relay comes just before the actor is handed over
                self.online_hint = True
                if self.ready:
                    self._perform(self.memberships.set_active(True))
            self._catch_up(body, msg.sinks)
            return
        if self.ready and msg.sinks:
            self._perform(self.memberships.set_active(True))
        super().receive_envelope(msg, sender)

    def serve_offline(self, msg: Offline, envelope: Envelope) -> None:
        self._perform(self.memberships.set_active(False))

    def _route(self, kind: Kind, ident: int, body: Any) -> None:
        self.send(self.roles.directory, Route(kind, ident, body))

    def _persist(self, message: Any) -> None:
        self.send(self.roles.persistence, message)

    @property
    def _me(self) -> UserInfo:
        assert self.user is not None, "served only once loaded"
        return self.user

    # -- effects of the reads and the memberships -------------------------------------------------
    def perform(self, effect: object) -> None:
        if isinstance(effect, Fetch):
            self.idle.started()
            self._persist(FetchUnread(self.id, effect.token, effect.only))
        elif isinstance(effect, Confirm):
            self.idle.started()
            confirm = ConfirmRead(
                user_id=effect.sender_id,
                reader=self._me,
                message_ids=effect.message_ids,
                ack_to=self.myAddress,
                token=effect.token,
            )
            self._route("user", effect.sender_id, confirm)
        elif isinstance(effect, Advance):
            self.idle.started()
            advance = AdvanceCursor(self._me, effect.up_to, self.myAddress, effect.token)
            self._route("room", effect.room_id, advance)
        elif isinstance(effect, PushRead):
            self.send(effect.sink, Push((self.id,), effect.event))
        elif isinstance(effect, AskRoomOp):
            self.idle.started()
            self._persist(RoomOp(effect.token, effect.action, self._me, effect.room))
        elif isinstance(effect, PostTo):
            sent: SendRoom = effect.request
            post = PostRoom(
                req_id=sent.req_id,
                reply_to=sent.reply_to,
                sender=self._me,
                body=sent.body,
                client_id=sent.client_id,
            )
            self._route("room", effect.room_id, post)
        elif isinstance(effect, JoinRoom):
            request = effect.request
            joined = MemberJoined(
                req_id=request.req_id, reply_to=request.reply_to, user=self._me, active=effect.active
            )
            self._route("room", effect.room_id, joined)
        elif isinstance(effect, LeaveRoom):
            request = effect.request
            left = MemberLeft(req_id=request.req_id, reply_to=request.reply_to, user_id=self.id)
            self._route("room", effect.room_id, left)
        elif isinstance(effect, Presence):
            self._route("room", effect.room_id, MemberPresence(self.id, effect.active))
        else:
            super().perform(effect)

    # -- session --------------------------------------------------------------------------------
    def serve_attach(self, msg: Attach, envelope: Envelope) -> None:
        login = LoginResult(self._me.id, self._me.username, msg.token, self.myAddress, (), msg.session)
        self._persist(LoadInbox(req_id=msg.req_id, reply_to=msg.reply_to, user_id=self.id, login=login))

    def serve_catch_up(self, msg: CatchUp, envelope: Envelope) -> None:
        self._catch_up(msg, envelope.sinks)

    def _catch_up(self, msg: CatchUp, sinks: tuple[Address, ...]) -> None:
        """After the messages routed here before it, which were stored for no session: pushed to
        the sessions known now, or, on a node that no longer owns the user, the owner is asked to."""
        if msg.relay:
            self._persist(RelayCatchUp(self.id))
        elif sinks:
            self._persist(DeliverWaiting(self.id, sinks))

    def serve_get_inbox(self, msg: GetInbox, envelope: Envelope) -> None:
        self._persist(LoadInbox(req_id=msg.req_id, reply_to=msg.reply_to, user_id=self.id))

    def serve_get_pid(self, msg: GetPid, envelope: Envelope) -> None:
        self.reply(msg, self.myAddress)

    # -- direct messages: I am the recipient -----------------------------------------------------
    def serve_deliver(self, msg: Deliver, envelope: Envelope) -> None:
        recipient = self.user or msg.recipient
        assert recipient is not None
        check_body(msg.body)
        store = StoreDirect(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            sender=msg.sender,
            recipient=recipient,
            body=msg.body,
            client_id=msg.client_id,
            status=ENTREGADO if envelope.sinks else ENVIADO,
            sinks=envelope.sinks,
        )
        self._persist(store)  # persistence answers the caller and pushes; nothing comes back here

    # -- rooms ----------------------------------------------------------------------------------
    def serve_room_command(self, msg: RoomCommand, envelope: Envelope) -> None:
        self._perform(self.memberships.command(msg, msg.action, msg.room))

    def serve_send_room(self, msg: SendRoom, envelope: Envelope) -> None:
        self._perform(self.memberships.post(msg, msg.room, msg.body))

    def receive_room_op_done(self, msg: RoomOpDone, sender: Any) -> None:
        self.idle.finished()
        error = chat_error(msg.error)
        self._perform(self.memberships.done(msg.token, msg.room, error))

    # -- reading: I am the reader ----------------------------------------------------------------
    def serve_read_messages(self, msg: ReadMessages, envelope: Envelope) -> None:
        query = Query(with_user=msg.with_user, room=msg.room, up_to=msg.up_to, ids=msg.ids)
        self._perform(self.reads.read(msg, query, envelope.sinks))

    def receive_unread_fetched(self, msg: UnreadFetched, sender: Any) -> None:
        self.idle.finished()
        error = chat_error(msg.error)
        self._perform(self.reads.fetched(msg.token, msg.messages, error))

    def receive_read_ack(self, msg: ReadAck, sender: Any) -> None:
        self.idle.finished()
        error = chat_error(msg.error)
        self._perform(self.reads.acked(msg.token, msg.part, error))

    # -- confirming: I sent what was read --------------------------------------------------------
    def serve_confirm_read(self, msg: ConfirmRead, envelope: Envelope) -> None:
        self._persist(MarkRead(msg.reader, self.id, msg.message_ids, envelope.sinks, msg.ack_to, msg.token))

    HANDLERS = VirtualActor.HANDLERS.extend(
        on(UserLoaded, receive_user_loaded),
        on(Envelope, receive_envelope),
        on(RoomOpDone, receive_room_op_done),
        on(UnreadFetched, receive_unread_fetched),
        on(ReadAck, receive_read_ack),
    )
    ROUTED = routed(
        serves(Offline, serve_offline),
        serves(Attach, serve_attach),
        serves(CatchUp, serve_catch_up),
        serves(GetInbox, serve_get_inbox),
        serves(GetPid, serve_get_pid),
        serves(Deliver, serve_deliver),
        serves(RoomCommand, serve_room_command),
        serves(SendRoom, serve_send_room),
        serves(ReadMessages, serve_read_messages),
        serves(ConfirmRead, serve_confirm_read),
    )
