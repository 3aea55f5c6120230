"""UserActor: one user's live state (an OTP GenServer per user, activated on demand).

It holds the user's identity, the last messages received (its inbox) and the reads in progress,
all rebuilt from the database on activation, so a retired or crashed actor loses nothing. It asks to
retire when idle (two-phase: the directory approves and buffers, then it exits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thespian.actors import ActorExitRequest, WakeupMessage

from chatactors.actors.base import ChatActor, as_chat_error
from chatactors.core.clock import MonotonicClock
from chatactors.core.idle import IdlePolicy
from chatactors.core.inbox import Inbox
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, Message, UserInfo
from chatactors.core.rules import check_body
from chatactors.errors import ChatError, UserNotFound
from chatactors.messages import (
    Attach,
    ConfirmRead,
    Deliver,
    Envelope,
    FetchUnread,
    GetInbox,
    GetPid,
    Init,
    LoadUser,
    LoginResult,
    MarkDelivered,
    MarkRead,
    ReadAck,
    ReadMessages,
    Request,
    Resolve,
    Resolved,
    RetireApproved,
    RetireCancelled,
    RetireDenied,
    RetireRequest,
    Roles,
    Route,
    SendDirect,
    Stored,
    StoreDirect,
    UnreadFetched,
    UserLoaded,
)


@dataclass
class _Read:
    request: ReadMessages
    messages: tuple[Message, ...]
    waiting: set[int]
    error: ChatError | None = None


@dataclass
class _State:
    stash: list[Envelope] = field(default_factory=list)
    resolving: dict[int, tuple[SendDirect, str | int]] = field(default_factory=dict)
    reads: dict[int, _Read] = field(default_factory=dict)
    queued_reads: list[ReadMessages] = field(default_factory=list)


class UserActor(ChatActor):
    def __init__(self) -> None:
        super().__init__()
        self.user_id = 0
        self.user: UserInfo | None = None
        self.roles: Roles | None = None
        self.inbox = Inbox()
        self.idle = IdlePolicy(MonotonicClock(), 300.0)
        self.state = _State()
        self.contacts: dict[str | int, UserInfo] = {}
        self.loaded = False
        self.retiring = False
        self._tokens = 0

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    # -- lifecycle ------------------------------------------------------------------------------
    def receiveMsg_Init(self, msg: Init, sender: Any) -> None:
        self.user_id, self.roles = msg.id, msg.roles
        self.idle = IdlePolicy(MonotonicClock(), msg.config.idle_timeout)
        self.idle.started()
        self.send(self.roles.persistence, LoadUser(msg.id))

    def receiveMsg_UserLoaded(self, msg: UserLoaded, sender: Any) -> None:
        self.idle.finished()
        stash, self.state.stash = self.state.stash, []
        if msg.user is None:
            error = msg.error or UserNotFound(f"no user {self.user_id}")
            for envelope in stash:
                request = envelope.body.body
                if isinstance(request, Request) and request.reply_to is not None:
                    self.fail(request, error)
            self._ask_to_retire()
            return
        self.user, self.loaded = msg.user, True
        self.inbox = Inbox(msg.inbox)
        for envelope in stash:
            self.receiveMessage(envelope, None)
        self.wakeupAfter(self.idle.next_check())

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        if self.retiring:
            return
        if self.idle.should_retire() and not self.state.stash:
            self._ask_to_retire()
        else:
            self.wakeupAfter(self.idle.next_check())

    def _ask_to_retire(self) -> None:
        assert self.roles is not None
        self.retiring = True
        self.send(self.roles.directory, RetireRequest("user", self.user_id, self.myAddress))

    def receiveMsg_RetireApproved(self, msg: RetireApproved, sender: Any) -> None:
        if self.idle.outstanding or self.state.stash:
            # Work arrived between asking and the approval: stay.
            assert self.roles is not None
            self.retiring = False
            self.send(self.roles.directory, RetireCancelled("user", self.user_id, self.myAddress))
            self.wakeupAfter(self.idle.next_check())
            return
        self.send(self.myAddress, ActorExitRequest())

    def receiveMsg_RetireDenied(self, msg: RetireDenied, sender: Any) -> None:
        self.retiring = False
        self.idle.touch()
        self.wakeupAfter(self.idle.next_check())

    # -- routed work ----------------------------------------------------------------------------
    def receiveMsg_Envelope(self, msg: Envelope, sender: Any) -> None:
        if not self.loaded:
            self.state.stash.append(msg)
            return
        self.idle.touch()
        body = msg.body.body
        try:
            handler = getattr(self, "on_" + type(body).__name__)
            handler(body, msg.sinks)
        except Exception as exc:
            if isinstance(body, Request) and body.reply_to is not None:
                self.fail(body, exc)
            else:
                raise

    def _route(self, user_id: int, body: Any) -> None:
        assert self.roles is not None
        self.send(self.roles.directory, Route("user", user_id, body))

    def on_Attach(self, msg: Attach, sinks: tuple[Any, ...]) -> None:
        assert self.user is not None and self.roles is not None
        waiting = [m.id for m in self.inbox.messages() if m.status == ENVIADO]
        self.inbox.mark(waiting, ENTREGADO)
        result = LoginResult(
            self.user.id, self.user.username, msg.token, self.myAddress, self.inbox.messages()
        )
        self.reply(msg, result)
        self.send(self.roles.persistence, MarkDelivered(self.user.id))

    def on_GetInbox(self, msg: GetInbox, sinks: tuple[Any, ...]) -> None:
        self.reply(msg, self.inbox.messages())

    def on_GetPid(self, msg: GetPid, sinks: tuple[Any, ...]) -> None:
        self.reply(msg, self.myAddress)

    # sending: I am the sender
    def on_SendDirect(self, msg: SendDirect, sinks: tuple[Any, ...]) -> None:
        assert self.roles is not None
        check_body(msg.body)
        ref = msg.to
        if ref in self.contacts:
            self._deliver(msg, self.contacts[ref])
            return
        token = self._token()
        self.state.resolving[token] = (msg, ref)
        self.idle.started()
        self.send(self.roles.persistence, Resolve(token, ref))

    def receiveMsg_Resolved(self, msg: Resolved, sender: Any) -> None:
        self.idle.finished()
        request, ref = self.state.resolving.pop(msg.token)
        if msg.error is not None:
            self.fail(request, msg.error)
        elif msg.user is None:
            self.fail(request, UserNotFound(f"no user {ref!r}"))
        else:
            self.contacts[ref] = msg.user
            self._deliver(request, msg.user)

    def _deliver(self, msg: SendDirect, recipient: UserInfo) -> None:
        assert self.user is not None
        deliver = Deliver(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            user_id=recipient.id,
            sender=self.user,
            body=msg.body,
            client_id=msg.client_id,
        )
        self._route(recipient.id, deliver)

    # receiving: I am the recipient
    def on_Deliver(self, msg: Deliver, sinks: tuple[Any, ...]) -> None:
        assert self.user is not None and self.roles is not None
        store = StoreDirect(
            req_id=msg.req_id,
            reply_to=msg.reply_to,
            sender=msg.sender,
            recipient=self.user,
            body=msg.body,
            client_id=msg.client_id,
            status=ENTREGADO if sinks else ENVIADO,
            sinks=sinks,
            notify=self.myAddress,
        )
        self.idle.started()
        self.send(self.roles.persistence, store)

    def receiveMsg_Stored(self, msg: Stored, sender: Any) -> None:
        self.idle.finished()
        if msg.message is not None:
            self.inbox.add(msg.message)

    # reading: I am the reader
    def on_ReadMessages(self, msg: ReadMessages, sinks: tuple[Any, ...]) -> None:
        assert self.roles is not None
        if self.state.reads:
            self.state.queued_reads.append(msg)  # one read at a time: none returns a message twice
            return
        token = self._token()
        self.state.reads[token] = _Read(msg, (), set())
        self.idle.started()
        self.send(self.roles.persistence, FetchUnread(self.user_id, token))

    def receiveMsg_UnreadFetched(self, msg: UnreadFetched, sender: Any) -> None:
        assert self.user is not None
        self.idle.finished()
        read = self.state.reads[msg.token]
        if msg.error is not None or not msg.messages:
            read.error = as_chat_error(msg.error) if msg.error is not None else None
            self._finish_read(msg.token)
            return
        read.messages = msg.messages
        by_sender: dict[int, list[int]] = {}
        for m in msg.messages:
            by_sender.setdefault(m.sender_id, []).append(m.id)
        read.waiting = set(by_sender)
        for sender_id, ids in by_sender.items():
            self.idle.started()
            confirm = ConfirmRead(
                user_id=sender_id,
                reader=self.user,
                message_ids=tuple(ids),
                ack_to=self.myAddress,
                token=msg.token,
            )
            self._route(sender_id, confirm)

    def receiveMsg_ReadAck(self, msg: ReadAck, sender: Any) -> None:
        self.idle.finished()
        read = self.state.reads.get(msg.token)
        if read is None:
            return
        read.waiting.discard(msg.sender_id)
        if msg.error is not None:
            read.error = as_chat_error(msg.error)
        if not read.waiting:
            self._finish_read(msg.token)

    def _finish_read(self, token: int) -> None:
        read = self.state.reads.pop(token)
        if read.error is not None:
            self.fail(read.request, read.error)
        else:
            ids = [m.id for m in read.messages]
            self.inbox.mark(ids, LEIDO)
            self.reply(read.request, tuple(m.with_status(LEIDO) for m in read.messages))
        if self.state.queued_reads:
            self.on_ReadMessages(self.state.queued_reads.pop(0), ())

    # confirming: I am the sender of what was read
    def on_ConfirmRead(self, msg: ConfirmRead, sinks: tuple[Any, ...]) -> None:
        assert self.roles is not None
        mark = MarkRead(msg.reader, self.user_id, msg.message_ids, sinks, msg.ack_to, msg.token)
        self.send(self.roles.persistence, mark)
