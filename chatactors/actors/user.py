"""UserActor: one user's live state (an OTP GenServer per user, activated on demand).

It holds who the user is, their rooms, whether they are active (logged in with this actor live,
which keeps their rooms' actors running) and the reads in progress. A direct message is routed to the
recipient's actor, which decides whether it is delivered at once (V0.9) and has it stored. All of
it is rebuilt from the database on activation, so a retired or crashed actor loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.actors.base import as_chat_error
from chatactors.actors.virtual import VirtualActor
from chatactors.core.model import (
    ENTREGADO,
    ENVIADO,
    LEIDO,
    Kind,
    Message,
    Only,
    ReadEvent,
    RoomInfo,
    UserInfo,
)
from chatactors.core.rules import check_body, check_room_name
from chatactors.errors import ChatError, NotAMember, UserNotFound
from chatactors.messages import (
    AdvanceCursor,
    Attach,
    ConfirmRead,
    Deliver,
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
    Request,
    RoomCommand,
    RoomOp,
    RoomOpDone,
    Route,
    SendRoom,
    StoreDirect,
    UnreadFetched,
    UserLoaded,
)


@dataclass
class _Read:
    request: ReadMessages
    sinks: tuple[Any, ...] = ()  # the reader's sessions, told what was read
    messages: tuple[Message, ...] = ()
    waiting: frozenset[tuple[str, int]] = frozenset()
    error: ChatError | None = None


class UserActor(VirtualActor):
    kind = "user"

    def __init__(self) -> None:
        super().__init__()
        self.user: UserInfo | None = None
        self.rooms: dict[str, RoomInfo] = {}
        self.active = False
        self.online_hint = False  # sessions were seen before the state had loaded
        self.room_ops: dict[int, tuple[Request, str]] = {}  # token -> (request, action)
        self.reads: dict[int, _Read] = {}
        self.queued_reads: list[tuple[ReadMessages, tuple[Any, ...]]] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> None:
        assert self.roles is not None
        self.send(self.roles.persistence, LoadUser(self.id))

    def receiveMsg_UserLoaded(self, msg: UserLoaded, sender: Any) -> None:
        if msg.user is None:
            self.fail_stash(as_chat_error(msg.error or UserNotFound(f"no user {self.id}")))
            return
        self.user = msg.user
        self.rooms = {r.name.lower(): r for r in msg.rooms}  # names are case-insensitive
        self.loaded()
        if self.online_hint:
            self._set_active(True)

    def may_retire(self) -> bool:
        return not self.reads and super().may_retire()

    def fail_outstanding(self, error: ChatError) -> None:
        for read in self.reads.values():
            self.fail(read.request, error)
        for queued, _ in self.queued_reads:
            self.fail(queued, error)
        for request, _ in self.room_ops.values():
            self.fail(request, error)
        self.reads, self.queued_reads, self.room_ops = {}, [], {}

    def before_exit(self) -> None:
        self._set_active(False)

    def receiveMsg_Envelope(self, msg: Envelope, sender: Any) -> None:
        body = msg.body.body
        if not self.ready and self.roles is not None and isinstance(body, Deliver) and body.recipient:
            # The first message to a hibernated user needs nothing loaded: store it now, and take
            # the database read out of its path (activation latency, V0.8).
            self.online_hint = self.online_hint or bool(msg.sinks)
            self.on_Deliver(body, msg)
            return
        if self.ready and msg.sinks and not self.active:
            self._set_active(True)
        super().receiveMsg_Envelope(msg, sender)

    def _set_active(self, active: bool) -> None:
        """Active members keep their rooms' actors running (roadmap V0.4)."""
        if active != self.active:
            self.active = active
            for room in self.rooms.values():
                self._route("room", room.id, MemberPresence(self.id, active))

    def on_Offline(self, msg: Offline, envelope: Envelope) -> None:
        self._set_active(False)

    def _route(self, kind: Kind, ident: int, body: Any) -> None:
        assert self.roles is not None
        self.send(self.roles.directory, Route(kind, ident, body))

    def _persist(self, message: Any) -> None:
        assert self.roles is not None
        self.send(self.roles.persistence, message)

    # -- session --------------------------------------------------------------------------------
    def on_Attach(self, msg: Attach, envelope: Envelope) -> None:
        assert self.user is not None
        login = LoginResult(self.user.id, self.user.username, msg.token, self.myAddress, ())
        self._persist(LoadInbox(req_id=msg.req_id, reply_to=msg.reply_to, user_id=self.id, login=login))

    def on_GetInbox(self, msg: GetInbox, envelope: Envelope) -> None:
        self._persist(LoadInbox(req_id=msg.req_id, reply_to=msg.reply_to, user_id=self.id))

    def on_GetPid(self, msg: GetPid, envelope: Envelope) -> None:
        self.reply(msg, self.myAddress)

    # -- direct messages: I am the recipient -----------------------------------------------------
    def on_Deliver(self, msg: Deliver, envelope: Envelope) -> None:
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
    def on_RoomCommand(self, msg: RoomCommand, envelope: Envelope) -> None:
        assert self.user is not None
        check_room_name(msg.room)
        if msg.action == "leave" and msg.room.lower() not in self.rooms:
            self._find_room(msg)  # RoomNotFound, or NotAMember
            return
        token = self.token()
        self.room_ops[token] = (msg, msg.action)
        self.idle.started()
        self._persist(RoomOp(token, msg.action, self.user, msg.room))

    def on_SendRoom(self, msg: SendRoom, envelope: Envelope) -> None:
        assert self.user is not None
        check_body(msg.body)
        room = self.rooms.get(msg.room.lower())
        if room is None:
            self._find_room(msg)
            return
        post = PostRoom(
            req_id=msg.req_id, reply_to=msg.reply_to, sender=self.user, body=msg.body, client_id=msg.client_id
        )
        self._route("room", room.id, post)

    def _find_room(self, msg: Request) -> None:
        """Not one of mine: the answer is RoomNotFound or NotAMember, and the database knows which."""
        assert self.user is not None
        token = self.token()
        self.room_ops[token] = (msg, "find")
        self.idle.started()
        self._persist(RoomOp(token, "find", self.user, getattr(msg, "room", "")))

    def receiveMsg_RoomOpDone(self, msg: RoomOpDone, sender: Any) -> None:
        assert self.user is not None
        self.idle.finished()
        request, action = self.room_ops.pop(msg.token)
        if msg.error is not None or msg.room is None:
            self.fail(request, msg.error or ChatError(f"{action} failed"))
            return
        room = msg.room
        if action == "find":  # it exists, and it is not one of mine
            self.fail(request, NotAMember(f"you are not in {room.name!r}"))
        elif action == "leave":
            self.rooms.pop(room.name.lower(), None)
            self._route(
                "room", room.id, MemberLeft(req_id=request.req_id, reply_to=request.reply_to, user_id=self.id)
            )
        else:
            self.rooms[room.name.lower()] = room
            joined = MemberJoined(
                req_id=request.req_id, reply_to=request.reply_to, user=self.user, active=self.active
            )
            self._route("room", room.id, joined)

    # -- reading: I am the reader ----------------------------------------------------------------
    def on_ReadMessages(self, msg: ReadMessages, envelope: Envelope) -> None:
        self._read(msg, envelope.sinks)

    def _read(self, msg: ReadMessages, sinks: tuple[Any, ...]) -> None:
        if msg.room is not None and msg.room.lower() not in self.rooms:
            self.fail(msg, NotAMember(f"you are not in {msg.room!r}"))
        elif self.reads:
            self.queued_reads.append((msg, sinks))  # one read at a time: none returns a message twice
        else:
            room_id = self.rooms[msg.room.lower()].id if msg.room is not None else None
            only = Only(sender_id=msg.with_user, room_id=room_id, up_to=msg.up_to, ids=msg.ids)
            token = self.token()
            self.reads[token] = _Read(msg, sinks)
            self.idle.started()
            self._persist(FetchUnread(self.id, token, only))

    def receiveMsg_UnreadFetched(self, msg: UnreadFetched, sender: Any) -> None:
        assert self.user is not None
        self.idle.finished()
        read = self.reads[msg.token]
        if msg.error is not None or not msg.messages:
            read.error = as_chat_error(msg.error) if msg.error is not None else None
            self._finish_read(msg.token)
            return
        read.messages = msg.messages
        direct: dict[int, list[int]] = {}
        rooms: dict[int, int] = {}
        by_name = {r.name: r.id for r in self.rooms.values()}  # as stored: m.room carries it too
        for m in msg.messages:
            if m.room is None:
                direct.setdefault(m.sender_id, []).append(m.id)
            elif m.room in by_name:
                rooms[by_name[m.room]] = max(rooms.get(by_name[m.room], 0), m.id)
        read.waiting = frozenset([("user", s) for s in direct] + [("room", r) for r in rooms])
        for sender_id, ids in direct.items():
            self.idle.started()
            confirm = ConfirmRead(
                user_id=sender_id,
                reader=self.user,
                message_ids=tuple(ids),
                ack_to=self.myAddress,
                token=msg.token,
            )
            self._route("user", sender_id, confirm)
        for room_id, up_to in rooms.items():
            self.idle.started()
            self._route("room", room_id, AdvanceCursor(self.user, up_to, self.myAddress, msg.token))
        if not read.waiting:
            self._finish_read(msg.token)

    def receiveMsg_ReadAck(self, msg: ReadAck, sender: Any) -> None:
        self.idle.finished()
        read = self.reads.get(msg.token)
        if read is None:
            return
        read.waiting = read.waiting - {msg.part}
        if msg.error is not None:
            read.error = as_chat_error(msg.error)
        if not read.waiting:
            self._finish_read(msg.token)

    def _finish_read(self, token: int) -> None:
        read = self.reads.pop(token)
        if read.error is not None:
            self.fail(read.request, read.error)
        else:
            self.reply(read.request, tuple(m.with_status(LEIDO) for m in read.messages))
            if read.messages:
                event = ReadEvent(tuple(m.id for m in read.messages))
                for sink in read.sinks:
                    self.send(sink, Push((self.id,), event))
        if self.queued_reads:
            self._read(*self.queued_reads.pop(0))

    # -- confirming: I sent what was read --------------------------------------------------------
    def on_ConfirmRead(self, msg: ConfirmRead, envelope: Envelope) -> None:
        self._persist(MarkRead(msg.reader, self.id, msg.message_ids, envelope.sinks, msg.ack_to, msg.token))
