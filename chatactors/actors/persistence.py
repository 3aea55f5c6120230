"""PersistenceActor: owns the database connection and commits writes in batches (group commit).

What is batched, when a batch is flushed, how a refused row is isolated and who is told what once
the batch has committed are the rules of :class:`~chatactors.core.commit.GroupCommit`; this actor
turns write messages into its writes, runs it against :class:`~chatactors.storage.Store`, and sends
the effects. Reads flush first, so they see every write queued before them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, TypeVar

from chatactors.actors.base import ChatActor, Outbox, as_chat_error, given, on
from chatactors.core.commit import (
    Ack,
    Answer,
    DirectRead,
    Effect,
    FlushNow,
    GroupCommit,
    Post,
    PushTo,
    Refuse,
    RoomRead,
    ScheduleFlush,
    Write,
)
from chatactors.core.model import ENTREGADO, Address, Message, NewMessage, Receipt
from chatactors.core.rules import SEARCH_MAX, check_key, check_limit, check_prefix, check_ref
from chatactors.errors import ChatError, InvalidMessage, UserNotFound
from chatactors.messages import (
    CatchUp,
    Configure,
    DeliverWaiting,
    Failed,
    FetchUnread,
    Flush,
    GetHistory,
    GetStatus,
    ListMembers,
    ListRooms,
    LoadInbox,
    LoadRoom,
    LoadUser,
    LookupUser,
    MarkRead,
    MarkRoomRead,
    Notify,
    Push,
    ReadAck,
    ReadBy,
    RelayCatchUp,
    Reply,
    RoomLoaded,
    RoomOp,
    RoomOpDone,
    Route,
    SearchNames,
    StoreDirect,
    StoreRoom,
    UnreadFetched,
    UserLoaded,
)
from chatactors.storage import IntegrityError, Store

T = TypeVar("T")
log = logging.getLogger("chatactors.persistence")


class StoreDatabase:
    """:class:`Store` as group commit's :class:`~chatactors.core.commit.Database`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def transaction(self, work: Callable[[], T]) -> T:
        try:
            return self.store.run(work)
        except IntegrityError as exc:  # a constraint the batch broke: isolated like a refused value
            raise InvalidMessage(f"the database refused the batch: {exc}") from exc
        except ChatError:
            raise
        except Exception as exc:  # a bug: every write in the batch is answered, none is lost
            raise as_chat_error(exc) from exc

    def savepoint(self) -> AbstractContextManager[None]:
        return self.store.savepoint()

    def insert(self, rows: list[NewMessage], isolated: bool) -> list[tuple[Message, bool] | InvalidMessage]:
        if isolated:
            return self.store.insert_messages_isolated(rows)
        return list(self.store.insert_messages_fresh(rows))

    def mark_read(self, write: DirectRead) -> int:
        return self.store.mark_read(write.reader.id, write.sender_id, write.message_ids)

    def mark_room_read(self, write: RoomRead) -> list[tuple[int, int]]:
        return self.store.mark_room_read(write.room_id, write.reader.id, write.up_to)


def _outbound(effect: Answer | Refuse | PushTo | Ack) -> tuple[Address | None, Any]:
    """(address, message) for an effect of a committed batch."""
    if isinstance(effect, Answer):
        return effect.to, Reply(effect.req_id, effect.value)
    if isinstance(effect, Refuse):
        return effect.to, Failed(effect.req_id, effect.error)
    if isinstance(effect, PushTo):
        return effect.sink, Push(effect.user_ids, effect.event)
    return effect.to, ReadAck(effect.token, effect.part, effect.error)


class PersistenceActor(ChatActor):
    crash_on_error = True

    def __init__(self) -> None:
        super().__init__()
        self._store: Store | None = None
        self.commit = GroupCommit()

    @property
    def store(self) -> Store:
        return given(self, self._store, "store")

    def configure(self, msg: Configure) -> None:
        self._store = Store(msg.config.database_url)
        self.commit = GroupCommit(msg.config.batch_max)

    def on_exit(self) -> None:
        self._flush()  # nothing queued is dropped by a shutdown

    # -- writes, batched ------------------------------------------------------------------------
    def receive_store_direct(self, m: StoreDirect, sender: Any) -> None:
        new = NewMessage(m.sender, m.recipient, None, m.body, m.client_id, m.status)
        self._queue(Post(new, m.req_id, m.reply_to, tuple((s, (m.recipient.id,)) for s in m.sinks)))

    def receive_store_room(self, m: StoreRoom, sender: Any) -> None:
        new = NewMessage(m.sender, None, m.room, m.body, m.client_id, m.status)
        self._queue(Post(new, m.req_id, m.reply_to, m.fanout))

    def receive_mark_read(self, m: MarkRead, sender: Any) -> None:
        self._queue(DirectRead(m.reader, m.sender_id, m.message_ids, m.sinks, m.ack_to, m.token))

    def receive_mark_room_read(self, m: MarkRoomRead, sender: Any) -> None:
        self._queue(RoomRead(m.room_id, m.reader, m.up_to, m.fanout, m.ack_to, m.token))

    def _queue(self, write: Write) -> None:
        self._perform(self.commit.queue(write))

    def receive_flush(self, msg: Flush, sender: Any) -> None:
        self._perform(self.commit.flush_arrived(StoreDatabase(self.store)))

    def _flush(self) -> None:
        if self.commit.pending:
            self._perform(self.commit.flush(StoreDatabase(self.store)))

    def _perform(self, effects: Iterable[Effect]) -> None:
        out = Outbox()  # one message per address for the whole batch
        for effect in effects:
            if isinstance(effect, ScheduleFlush):
                self.send(self.myAddress, Flush())
            elif isinstance(effect, FlushNow):
                self._flush()
            else:
                out.add(*_outbound(effect))
        out.send_all(self)

    # -- reads, after a flush -------------------------------------------------------------------
    def _read(self) -> Store:
        self._flush()
        return self.store

    def _answer(self, sender: Any, work: Callable[[Store], Any], failed: Callable[[Exception], Any]) -> None:
        """Reply to an actor (not the outside) with ``work``'s result, or with ``failed(error)``."""
        try:
            self.send(sender, work(self._read()))
        except Exception as exc:
            self.send(sender, failed(as_chat_error(exc)))

    def receive_load_user(self, msg: LoadUser, sender: Any) -> None:
        def work(store: Store) -> UserLoaded:
            user = store.user(msg.user_id)
            return UserLoaded(user, tuple(store.rooms_of(msg.user_id)) if user else ())

        self._answer(sender, work, lambda e: UserLoaded(None, (), e))

    def receive_load_room(self, msg: LoadRoom, sender: Any) -> None:
        def work(store: Store) -> RoomLoaded:
            return RoomLoaded(store.room(msg.room_id), tuple(store.room_members(msg.room_id)))

        self._answer(sender, work, lambda e: RoomLoaded(None, (), e))

    def receive_fetch_unread(self, msg: FetchUnread, sender: Any) -> None:
        self._answer(
            sender,
            lambda s: UnreadFetched(msg.token, tuple(s.unread(msg.user_id, msg.only))),
            lambda e: UnreadFetched(msg.token, (), e),
        )

    def receive_room_op(self, msg: RoomOp, sender: Any) -> None:
        def work(store: Store) -> RoomOpDone:
            check_ref(msg.room, "room name")
            if msg.action == "create":
                return RoomOpDone(msg.token, store.create_room(msg.room, msg.user.id))
            if msg.action == "join":
                return RoomOpDone(msg.token, store.join_room(msg.room, msg.user.id))
            if msg.action == "leave":
                return RoomOpDone(msg.token, store.leave_room(msg.room, msg.user.id))
            return RoomOpDone(msg.token, store.room(msg.room))

        self._answer(sender, work, lambda e: RoomOpDone(msg.token, None, e))

    # requests from the outside: answered to reply_to (errors become Failed in the base class)
    def receive_load_inbox(self, msg: LoadInbox, sender: Any) -> None:
        store = self._read()
        if msg.login is None:
            self.reply(msg, tuple(store.inbox(msg.user_id)))
            return
        login = msg.login
        delivered = store.mark_delivered_by_sender(msg.user_id)
        self.reply(msg, replace(login, inbox=tuple(store.inbox(msg.user_id))))
        self._tell_senders(delivered, login.username, login.user_id)

    def _tell_senders(self, delivered: dict[int, list[int]], recipient: str, recipient_id: int) -> None:
        """Each sender's ticks on these messages move to 'entregado' (if they are online)."""
        for sender_id, ids in delivered.items():
            receipt = Receipt(tuple(ids), ENTREGADO, recipient, recipient_id)
            self.send(self.roles.directory, Notify(sender_id, receipt))

    def receive_deliver_waiting(self, msg: DeliverWaiting, sender: Any) -> None:
        try:
            waiting = self._read().deliver_waiting(msg.user_id)
        except ChatError:  # not pushed (perhaps claimed: the outcome may be unknown); in the inbox
            log.warning("could not deliver what waited for user %d, now online", msg.user_id, exc_info=True)
            return
        out = Outbox()
        delivered: dict[int, list[int]] = {}
        for message in waiting:
            for sink in msg.sinks:
                out.add(sink, Push((msg.user_id,), message))
            delivered.setdefault(message.sender_id, []).append(message.id)
        out.send_all(self)
        if waiting:
            self._tell_senders(delivered, waiting[0].recipient or "", msg.user_id)

    def receive_relay_catch_up(self, msg: RelayCatchUp, sender: Any) -> None:
        self._flush()  # the messages stored for no session are committed before the owner looks
        self.send(self.roles.directory, Route("user", msg.user_id, CatchUp(msg.user_id)))

    def receive_lookup_user(self, msg: LookupUser, sender: Any) -> None:
        user = self._read().user(check_ref(msg.ref, "username"))
        if user is None:
            raise UserNotFound(f"no user {msg.ref!r}")
        self.reply(msg, user)

    def receive_get_status(self, msg: GetStatus, sender: Any) -> None:
        self.reply(msg, self._read().status(msg.user_id, msg.message_id))

    def receive_read_by(self, msg: ReadBy, sender: Any) -> None:
        self.reply(msg, tuple(self._read().read_by(msg.user_id, msg.message_id)))

    def receive_list_rooms(self, msg: ListRooms, sender: Any) -> None:
        self.reply(msg, tuple(self._read().room_summaries(msg.user_id)))

    def receive_list_members(self, msg: ListMembers, sender: Any) -> None:
        self.reply(msg, tuple(self._read().room_member_list(msg.user_id, check_key(msg.room, "room name"))))

    def receive_search_names(self, msg: SearchNames, sender: Any) -> None:
        prefix, limit = check_prefix(msg.prefix), check_limit(msg.limit, SEARCH_MAX)
        self.reply(msg, self._read().search(prefix, limit))

    def receive_get_history(self, msg: GetHistory, sender: Any) -> None:
        limit = check_limit(msg.limit)
        if msg.with_user is not None:
            check_ref(msg.with_user, "username")
        if msg.room is not None:
            check_ref(msg.room, "room name")
        store = self._read()
        if msg.room is not None:
            self.reply(msg, tuple(store.room_history(msg.user_id, msg.room, limit, msg.before)))
        else:
            self.reply(msg, tuple(store.history(msg.user_id, msg.with_user, limit, msg.before)))

    HANDLERS = ChatActor.HANDLERS.extend(
        on(StoreDirect, receive_store_direct),
        on(StoreRoom, receive_store_room),
        on(MarkRead, receive_mark_read),
        on(MarkRoomRead, receive_mark_room_read),
        on(Flush, receive_flush),
        on(LoadUser, receive_load_user),
        on(LoadRoom, receive_load_room),
        on(FetchUnread, receive_fetch_unread),
        on(RoomOp, receive_room_op),
        on(LoadInbox, receive_load_inbox),
        on(DeliverWaiting, receive_deliver_waiting),
        on(RelayCatchUp, receive_relay_catch_up),
        on(LookupUser, receive_lookup_user),
        on(GetStatus, receive_get_status),
        on(ReadBy, receive_read_by),
        on(ListRooms, receive_list_rooms),
        on(GetHistory, receive_get_history),
        on(ListMembers, receive_list_members),
        on(SearchNames, receive_search_names),
    )
