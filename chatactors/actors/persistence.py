"""PersistenceActor: owns the database connection and commits writes in batches (group commit).

A write is queued and a ``Flush`` is sent to self; everything already in the mailbox is handled
before that ``Flush`` arrives, so a burst becomes one transaction while a lone write waits for no
timer. A write that breaks a rule fails alone, and nothing is
acknowledged, pushed or reported stored before its batch has committed. Reads flush first, so they
see every write queued before them.

One bad row never fails the others: messages are checked against the input rules before they join
a batch (whoever sent them), and if the database still refuses the batch, it is run again with
each group of rows in a savepoint, halving a refused group until the refused row fails alone
(``invalid``). Only a database that cannot be reached fails a whole batch (``storage_unavailable``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chatactors.actors.base import ChatActor, Outbox, as_chat_error
from chatactors.core.model import ENTREGADO, LEIDO, Receipt
from chatactors.core.rules import check_body, check_client_id, check_limit, check_ref
from chatactors.errors import ChatError, InvalidMessage, UserNotFound
from chatactors.messages import (
    Configure,
    Failed,
    FetchUnread,
    Flush,
    GetHistory,
    GetStatus,
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
    Reply,
    Roles,
    RoomLoaded,
    RoomOp,
    RoomOpDone,
    StoreDirect,
    StoreRoom,
    UnreadFetched,
    UserLoaded,
)
from chatactors.storage import IntegrityError, NewMessage, Store

WRITES = (StoreDirect, StoreRoom, MarkRead, MarkRoomRead)
log = logging.getLogger("chatactors.persistence")


class PersistenceActor(ChatActor):
    crash_on_error = True

    def __init__(self) -> None:
        super().__init__()
        self.store: Store | None = None
        self.roles: Roles | None = None
        self.pending: list[Any] = []
        self.flush_scheduled = False
        self.batch_max = 500

    def configure(self, msg: Configure) -> None:
        self.roles = msg.roles
        self.store = Store(msg.config.database_url)
        self.batch_max = msg.config.batch_max

    def on_exit(self) -> None:
        self._flush()  # nothing queued is dropped by a shutdown

    # -- writes, batched ------------------------------------------------------------------------
    def _queue(self, msg: Any, sender: Any = None) -> None:
        if isinstance(msg, (StoreDirect, StoreRoom)):
            # Again here: a message may come from a gateway or an actor that skipped the facade.
            check_body(msg.body)
            check_client_id(msg.client_id)
        self.pending.append(msg)
        if len(self.pending) >= self.batch_max:
            self._flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.send(self.myAddress, Flush())

    receiveMsg_StoreDirect = _queue
    receiveMsg_StoreRoom = _queue
    receiveMsg_MarkRead = _queue
    receiveMsg_MarkRoomRead = _queue

    def receiveMsg_Flush(self, msg: Flush, sender: Any) -> None:
        self.flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        assert self.store is not None
        batch, self.pending = self.pending, []
        out = Outbox()
        try:
            try:
                results = self.store.run(lambda: self._apply_batch(batch))
            except (InvalidMessage, IntegrityError) as exc:  # a row the database refused: find it
                log.warning("a batch of %d writes was refused (%s); isolating the bad rows", len(batch), exc)
                results = self.store.run(lambda: self._apply_batch(batch, isolated=True))
        except Exception as exc:  # the database itself failed: the whole batch is unacknowledged
            error = as_chat_error(exc)
            for m in batch:
                self._failed(out, m, error)
        else:
            for m, (ok, result) in zip(batch, results, strict=True):
                if ok:
                    self._done(out, m, result)
                else:
                    self._failed(out, m, result)
        out.send_all(self)

    def _apply_batch(self, batch: list[Any], isolated: bool = False) -> list[tuple[bool, Any]]:
        """New messages go in as one multi-row insert; the rest one by one, in order. Once the
        database has refused the batch, it runs again ``isolated``: each write in a savepoint."""
        assert self.store is not None
        stores = [i for i, m in enumerate(batch) if isinstance(m, (StoreDirect, StoreRoom))]
        results: list[tuple[bool, Any]] = [(False, None)] * len(batch)
        if stores:
            new = [self._new_message(batch[i]) for i in stores]
            insert = self.store.insert_messages_isolated if isolated else self.store.insert_messages_fresh
            for i, outcome in zip(stores, insert(new), strict=True):
                results[i] = (not isinstance(outcome, ChatError), outcome)
        for i, m in enumerate(batch):
            if not isinstance(m, (StoreDirect, StoreRoom)):
                results[i] = self._apply_one(m, isolated)
        return results

    @staticmethod
    def _new_message(m: StoreDirect | StoreRoom) -> NewMessage:
        if isinstance(m, StoreDirect):
            return NewMessage(m.sender, m.recipient, None, m.body, m.client_id, m.status)
        return NewMessage(m.sender, None, m.room, m.body, m.client_id, m.status)

    def _apply_one(self, m: Any, isolated: bool = False) -> tuple[bool, Any]:
        """One write; a rule it breaks fails it alone. The store checks every rule before it writes
        anything (see ``Store.mark_room_read``), so a refused write leaves nothing to roll back and
        needs no savepoint (two statements saved per message) until the database has refused the
        batch once."""
        assert self.store is not None
        try:
            if not isolated:
                return True, self._apply(m)
            with self.store.savepoint():
                return True, self._apply(m)
        except ChatError as exc:
            return False, exc

    def _apply(self, m: Any) -> Any:
        assert self.store is not None
        if isinstance(m, MarkRead):
            return self.store.mark_read(m.reader.id, m.sender_id, m.message_ids)
        if isinstance(m, MarkRoomRead):
            return self.store.mark_room_read(m.room_id, m.reader.id, m.up_to)
        raise TypeError(type(m).__name__)

    def _done(self, out: Outbox, m: Any, result: Any) -> None:
        if isinstance(m, (StoreDirect, StoreRoom)):
            message, fresh = result
            if fresh:  # a retried client_id is answered again, but pushed only once
                fanout = m.fanout if isinstance(m, StoreRoom) else [(s, (m.recipient.id,)) for s in m.sinks]
                for sink, user_ids in fanout:
                    out.add(sink, Push(user_ids, message))
            out.add(m.reply_to, Reply(m.req_id, message))
        elif isinstance(m, MarkRead):
            receipt = Receipt(m.message_ids, LEIDO, m.reader.username, m.reader.id)
            for sink in m.sinks:
                out.add(sink, Push((m.sender_id,), receipt))
            out.add(m.ack_to, ReadAck(m.token, ("user", m.sender_id)))
        elif isinstance(m, MarkRoomRead):
            by_sender: dict[int, list[int]] = {}
            for message_id, sender_id in result:
                by_sender.setdefault(sender_id, []).append(message_id)
            for sink, user_ids in m.fanout:
                for sender_id in set(user_ids) & set(by_sender):
                    receipt = Receipt(tuple(by_sender[sender_id]), LEIDO, m.reader.username, m.reader.id)
                    out.add(sink, Push((sender_id,), receipt))
            out.add(m.ack_to, ReadAck(m.token, ("room", m.room_id)))

    def _failed(self, out: Outbox, m: Any, error: Exception) -> None:
        if isinstance(m, (StoreDirect, StoreRoom)):
            out.add(m.reply_to, Failed(m.req_id, error))
        elif isinstance(m, MarkRead):
            out.add(m.ack_to, ReadAck(m.token, ("user", m.sender_id), error))
        elif isinstance(m, MarkRoomRead):
            out.add(m.ack_to, ReadAck(m.token, ("room", m.room_id), error))

    # -- reads, after a flush -------------------------------------------------------------------
    def _read(self) -> Store:
        self._flush()
        assert self.store is not None
        return self.store

    def _answer(self, sender: Any, work: Callable[[Store], Any], failed: Callable[[Exception], Any]) -> None:
        """Reply to an actor (not the outside) with ``work``'s result, or with ``failed(error)``."""
        try:
            self.send(sender, work(self._read()))
        except Exception as exc:
            self.send(sender, failed(as_chat_error(exc)))

    def receiveMsg_LoadUser(self, msg: LoadUser, sender: Any) -> None:
        def work(store: Store) -> UserLoaded:
            user = store.user(msg.user_id)
            return UserLoaded(user, tuple(store.rooms_of(msg.user_id)) if user else ())

        self._answer(sender, work, lambda e: UserLoaded(None, (), e))

    def receiveMsg_LoadRoom(self, msg: LoadRoom, sender: Any) -> None:
        def work(store: Store) -> RoomLoaded:
            return RoomLoaded(store.room(msg.room_id), tuple(store.room_members(msg.room_id)))

        self._answer(sender, work, lambda e: RoomLoaded(None, (), e))

    def receiveMsg_FetchUnread(self, msg: FetchUnread, sender: Any) -> None:
        self._answer(
            sender,
            lambda s: UnreadFetched(msg.token, tuple(s.unread(msg.user_id, msg.only))),
            lambda e: UnreadFetched(msg.token, (), e),
        )

    def receiveMsg_RoomOp(self, msg: RoomOp, sender: Any) -> None:
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
    def receiveMsg_LoadInbox(self, msg: LoadInbox, sender: Any) -> None:
        store = self._read()
        if msg.login is None:
            self.reply(msg, tuple(store.inbox(msg.user_id)))
            return
        login = msg.login
        delivered = store.mark_delivered_by_sender(msg.user_id)
        self.reply(msg, replace(login, inbox=tuple(store.inbox(msg.user_id))))
        assert self.roles is not None
        for sender_id, ids in delivered.items():  # their ticks move to 'entregado' if they are online
            receipt = Receipt(tuple(ids), ENTREGADO, login.username, login.user_id)
            self.send(self.roles.directory, Notify(sender_id, receipt))

    def receiveMsg_LookupUser(self, msg: LookupUser, sender: Any) -> None:
        user = self._read().user(check_ref(msg.ref, "username"))
        if user is None:
            raise UserNotFound(f"no user {msg.ref!r}")
        self.reply(msg, user)

    def receiveMsg_GetStatus(self, msg: GetStatus, sender: Any) -> None:
        self.reply(msg, self._read().status(msg.user_id, msg.message_id))

    def receiveMsg_ReadBy(self, msg: ReadBy, sender: Any) -> None:
        self.reply(msg, tuple(self._read().read_by(msg.user_id, msg.message_id)))

    def receiveMsg_ListRooms(self, msg: ListRooms, sender: Any) -> None:
        self.reply(msg, tuple(self._read().room_summaries(msg.user_id)))

    def receiveMsg_GetHistory(self, msg: GetHistory, sender: Any) -> None:
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
