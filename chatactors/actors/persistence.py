"""PersistenceActor: owns the database connection and commits writes in batches (group commit).

A write is queued and a ``Flush`` is sent to self; everything already in the mailbox is handled
before that ``Flush`` arrives, so a burst becomes one transaction while a lone write waits for no
timer. Nothing is acknowledged, pushed or reported stored before its batch has committed. Reads
flush first, so they see every write queued before them.
"""

from __future__ import annotations

from typing import Any

from chatactors.actors.base import ChatActor, Outbox, as_chat_error
from chatactors.core.model import LEIDO, Receipt
from chatactors.core.rules import check_limit
from chatactors.messages import (
    Configure,
    Failed,
    FetchUnread,
    Flush,
    GetHistory,
    GetStatus,
    LoadUser,
    MarkDelivered,
    MarkRead,
    Push,
    ReadAck,
    Reply,
    Resolve,
    Resolved,
    Stored,
    StoreDirect,
    UnreadFetched,
    UserLoaded,
)
from chatactors.storage import Store


class PersistenceActor(ChatActor):
    def __init__(self) -> None:
        super().__init__()
        self.store: Store | None = None
        self.pending: list[Any] = []
        self.flush_scheduled = False
        self.batch_max = 500
        self.batches = 0

    def configure(self, msg: Configure) -> None:
        self.store = Store(msg.config.database_url)
        self.batch_max = msg.config.batch_max

    # -- writes, batched ------------------------------------------------------------------------
    def _queue(self, msg: Any, sender: Any = None) -> None:
        self.pending.append(msg)
        if len(self.pending) >= self.batch_max:
            self._flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.send(self.myAddress, Flush())

    receiveMsg_StoreDirect = _queue
    receiveMsg_MarkRead = _queue

    def on_exit(self) -> None:
        self._flush()  # nothing queued is dropped by a shutdown

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
            results = self.store.run(lambda: [self._apply(m) for m in batch])
        except Exception as exc:
            error = as_chat_error(exc)
            for m in batch:
                self._failed(out, m, error)
        else:
            self.batches += 1
            for m, result in zip(batch, results, strict=True):
                self._done(out, m, result)
        out.send_all(self)

    def _apply(self, m: Any) -> Any:
        assert self.store is not None
        if isinstance(m, StoreDirect):
            return self.store.insert_direct(m.sender, m.recipient, m.body, m.client_id, m.status)
        if isinstance(m, MarkRead):
            return self.store.mark_read(m.reader.id, m.sender_id, m.message_ids)
        raise TypeError(type(m).__name__)

    def _done(self, out: Outbox, m: Any, result: Any) -> None:
        if isinstance(m, StoreDirect):
            for sink in m.sinks:
                out.add(sink, Push(m.recipient.id, result))
            out.add(m.reply_to, Reply(m.req_id, result))
            out.add(m.notify, Stored(result))
        elif isinstance(m, MarkRead):
            receipt = Receipt(m.message_ids, LEIDO, m.reader.username, m.reader.id)
            for sink in m.sinks:
                out.add(sink, Push(m.sender_id, receipt))
            out.add(m.ack_to, ReadAck(m.token, m.sender_id))

    def _failed(self, out: Outbox, m: Any, error: Exception) -> None:
        if isinstance(m, StoreDirect):
            out.add(m.reply_to, Failed(m.req_id, error))
            out.add(m.notify, Stored(None))
        elif isinstance(m, MarkRead):
            out.add(m.ack_to, ReadAck(m.token, m.sender_id, error))

    # -- reads, after a flush -------------------------------------------------------------------
    def _read(self) -> Store:
        self._flush()
        assert self.store is not None
        return self.store

    def receiveMsg_LoadUser(self, msg: LoadUser, sender: Any) -> None:
        store = self._read()
        try:
            user = store.user(msg.user_id)
            inbox = tuple(store.inbox(msg.user_id)) if user is not None else ()
        except Exception as exc:
            self.send(sender, UserLoaded(None, (), as_chat_error(exc)))
        else:
            self.send(sender, UserLoaded(user, inbox))

    def receiveMsg_Resolve(self, msg: Resolve, sender: Any) -> None:
        try:
            self.send(sender, Resolved(msg.token, self._read().user(msg.ref)))
        except Exception as exc:
            self.send(sender, Resolved(msg.token, None, as_chat_error(exc)))

    def receiveMsg_FetchUnread(self, msg: FetchUnread, sender: Any) -> None:
        try:
            self.send(sender, UnreadFetched(msg.token, tuple(self._read().unread(msg.user_id))))
        except Exception as exc:
            self.send(sender, UnreadFetched(msg.token, (), as_chat_error(exc)))

    def receiveMsg_MarkDelivered(self, msg: MarkDelivered, sender: Any) -> None:
        self._read().mark_delivered(msg.user_id)

    def receiveMsg_GetStatus(self, msg: GetStatus, sender: Any) -> None:
        self.reply(msg, self._read().status(msg.user_id, msg.message_id))

    def receiveMsg_GetHistory(self, msg: GetHistory, sender: Any) -> None:
        limit = check_limit(msg.limit)
        self.reply(msg, tuple(self._read().history(msg.user_id, msg.with_user, limit, msg.before)))
