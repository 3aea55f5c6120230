"""One logged-in user: :class:`Session`, and :class:`SessionHost`, all it asks of the chat it came from.

Apart from :mod:`chatactors.chat` so a session depends on a small protocol, not on how its chat was
started: an embedded ``Chat`` and a gateway hand out the same sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from chatactors.actors.login import token_hash
from chatactors.bridge import LoopPost
from chatactors.core.model import (
    Address,
    Kind,
    Message,
    ReadEvent,
    Receipt,
    RoomAction,
    RoomSummary,
    SearchResults,
    Status,
    UserInfo,
)
from chatactors.core.recent import RecentIds
from chatactors.core.rules import (
    SEARCH_MAX,
    check_body,
    check_client_id,
    check_id,
    check_key,
    check_limit,
    check_prefix,
    check_room_name,
    check_user_ref,
)
from chatactors.errors import ChatClosed, ChatError, InvalidMessage, SessionEnded
from chatactors.messages import (
    Deliver,
    GetHistory,
    GetInbox,
    GetStatus,
    ListMembers,
    ListRooms,
    LoginResult,
    ReadBy,
    ReadMessages,
    Request,
    RoomCommand,
    SearchNames,
    SendRoom,
)

MessageCallback = Callable[[Message], Any]
ReceiptCallback = Callable[[Receipt], Any]
ReadCallback = Callable[[ReadEvent], Any]
EndCallback = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Pid:
    """A user actor's address as a REPL shows it, ``#PID<user:7 @127.0.0.1:40215>``, in the spirit of
    Elixir's ``#PID<0.123.0>``. ``address`` is the Thespian address itself; each activation of the
    actor has its own, so a hibernated and restarted actor has a new Pid."""

    kind: Kind
    id: int
    address: Address
    node: str | None = None  # in a cluster, the node the actor runs on when it is not this one
    name: str | None = None  # and its address there (``address`` is then a local stand-in)

    def __repr__(self) -> str:
        if self.node is not None:  # #PID<user:7 @node-b/ActorAddr-/A~a~c~a>
            return f"#PID<{self.kind}:{self.id} @{self.node}/{self.name}>"
        # multiprocTCPBase: the actor's own socket; simpleSystemBase: Thespian's in-process path.
        details = getattr(self.address, "addressDetails", self.address)
        where = getattr(details, "sockname", None)
        shown = f"{where[0]}:{where[1]}" if isinstance(where, tuple) and len(where) == 2 else str(details)
        return f"#PID<{self.kind}:{self.id} @{shown}>"

    __str__ = __repr__


SEEN = 512  # message ids a session remembers, to deliver each once (chatactors.core.recent)


class SessionHost(Protocol):
    """All a :class:`Session` uses of its :class:`Chat`: public names only, so the two can change
    apart (the request plumbing, the bridge and the roles stay the chat's own)."""

    echo: bool

    def lookup(self, user: str | int) -> UserInfo: ...

    def whereis(self, user_id: int) -> Pid: ...

    def ask_user(self, user_id: int, request: Request) -> Any: ...

    def ask_persistence(self, request: Request) -> Any: ...

    async def lookup_async(self, post: LoopPost, user: str | int) -> UserInfo: ...

    async def ask_user_async(self, post: LoopPost, user_id: int, request: Request) -> Any: ...

    def detach(self, session: Session, *, revoke_token: str | None = None) -> None: ...


class Session:
    """One logged-in user, as returned by :meth:`Chat.login`.

    A context manager: ``with chat.login(...) as s:`` logs out at the end of the block, so a second
    session opened for a look does not keep receiving (and, in a REPL, printing) every message. Once
    logged out, or ended from elsewhere, every call raises :class:`SessionEnded`.
    """

    def __init__(
        self,
        chat: SessionHost,
        result: LoginResult,
        on_message: MessageCallback | None = None,
        on_receipt: ReceiptCallback | None = None,
    ) -> None:
        self._chat: SessionHost = chat
        self.user_id = result.user_id
        self.username = result.username
        self._me = UserInfo(result.user_id, result.username)  # the sender of every message sent here
        self.token = result.token
        self._number = result.session  # its number at this chat's sink (presence counts by it)
        self.login_inbox: tuple[Message, ...] = result.inbox
        self._seen = RecentIds(SEEN, (m.id for m in result.inbox))  # a message is delivered once
        default: list[MessageCallback] = [print] if chat.echo else []
        self._message_callbacks: list[MessageCallback] = [on_message] if on_message else default
        self._receipt_callbacks: list[ReceiptCallback] = [on_receipt] if on_receipt else []
        self._read_callbacks: list[ReadCallback] = []
        self._end_callbacks: list[EndCallback] = []
        self._token_hash = token_hash(result.token)
        self.active = True
        self.ended = ""  # why the session ended: "logged out", its token revoked elsewhere, its chat shut
        self._ended_error: type[ChatError] = SessionEnded  # what a call on it raises once it has ended

    def __repr__(self) -> str:
        state = "open" if self.active else f"closed: {self.ended}"
        return f"<Session {self.username} id={self.user_id} {state}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:  # logged out inside the block, or ended from elsewhere: nothing left to do
            try:
                self.logout()
            except ChatClosed:
                pass  # the chat was shut down inside the block: no session outlives it anyway

    # -- state --------------------------------------------------------------------------------
    @property
    def pid(self) -> Pid:
        """The address of this user's actor (V0.2); a hibernated actor is started again to answer."""
        self._check_active()
        return self._chat.whereis(self.user_id)

    @property
    def inbox(self) -> list[Message]:
        """The last 10 messages received, newest last (V0.7)."""
        self._check_active()
        return list(self._chat.ask_user(self.user_id, GetInbox(user_id=self.user_id)))

    def history(
        self,
        limit: int = 10,
        before: int | None = None,
        with_user: str | int | None = None,
        room: str | None = None,
    ) -> list[Message]:
        """Messages newest last: direct ones (all, or ``with_user`` only), or a ``room``'s.

        ``before`` (a message id) pages further back. One person or one room, not both.
        """
        self._check_active()
        if with_user is not None and room is not None:  # else the room would win without a word
            raise InvalidMessage("history of one conversation or one room, not both")
        check_limit(limit)
        if before is not None:
            check_id(before, "before")
        if with_user is not None:
            check_user_ref(with_user, "with_user")
        if room is not None:
            check_key(room, "room name")
        request = GetHistory(user_id=self.user_id, with_user=with_user, room=room, limit=limit, before=before)
        return list(self._chat.ask_persistence(request))

    def status(self, message_id: int) -> Status:
        """'enviado', 'entregado' or 'leido' (a :class:`Status`, a ``str``)."""
        self._check_active()
        check_id(message_id, "message id")
        request = GetStatus(user_id=self.user_id, message_id=message_id)
        return Status(self._chat.ask_persistence(request))

    # -- messaging ----------------------------------------------------------------------------
    def send_message(self, to: str | int | Session, body: str, *, client_id: str | None = None) -> Message:
        """Send ``body`` to a user (username, id or Session) or to a room (``"#room"``).

        Returns the stored message. ``client_id`` makes a retry safe: the same id from the same
        sender is stored once.
        """
        self._check_send(body, client_id)
        if isinstance(to, str) and to.startswith("#"):
            return self.send_room(to[1:], body, client_id=client_id)
        recipient = self._chat.lookup(to.user_id if isinstance(to, Session) else to)
        # Like Registry.lookup + GenServer.cast: the directory finds (or starts) the recipient's actor.
        return self._chat.ask_user(recipient.id, self._direct_request(recipient, body, client_id))  # type: ignore[no-any-return]

    async def send_message_async(
        self, post: LoopPost, to: str | int, body: str, *, client_id: str | None = None
    ) -> Message:
        """:meth:`send_message` from an asyncio loop (the gateway): the reply settles a future through
        ``post``, so no thread is held per message in flight."""
        self._check_send(body, client_id)
        if isinstance(to, str) and to.startswith("#"):
            return await self.send_room_async(post, to[1:], body, client_id=client_id)
        recipient = await self._chat.lookup_async(post, to)
        request = self._direct_request(recipient, body, client_id)
        return await self._chat.ask_user_async(post, recipient.id, request)  # type: ignore[no-any-return]

    def _check_send(self, body: str, client_id: str | None) -> None:
        self._check_active()
        check_body(body)
        check_client_id(client_id)

    def _direct_request(self, recipient: UserInfo, body: str, client_id: str | None) -> Deliver:
        return Deliver(
            user_id=recipient.id, sender=self._me, body=body, client_id=client_id, recipient=recipient
        )

    def read_messages(
        self,
        *,
        with_user: str | int | None = None,
        room: str | None = None,
        up_to: int | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[Message]:
        """Unread messages, oldest first; marks them 'leido' and tells their senders (V0.6).

        By default everything unread; or only one conversation (``with_user``) or one ``room``,
        only up to message id ``up_to`` (what a reader has actually seen), or exactly ``ids``.
        In a room, reading moves the member's cursor: messages before one read are read too.
        """
        self._check_active()
        if with_user is not None and room is not None:
            raise InvalidMessage("read one conversation or one room, not both")
        wanted = tuple(check_id(i, "a message id") for i in ids) if ids is not None else None
        if up_to is not None:
            check_id(up_to, "up_to")
        if room is not None:
            check_key(room, "room name")
        if wanted is not None and (with_user is not None or room is not None or up_to is not None):
            raise InvalidMessage("read exact ids, or a conversation or room, not both")
        other = self._chat.lookup(with_user).id if with_user is not None else None
        request = ReadMessages(user_id=self.user_id, with_user=other, room=room, up_to=up_to, ids=wanted)
        return list(self._chat.ask_user(self.user_id, request))

    # -- rooms ----------------------------------------------------------------------------------
    def _room(self, action: RoomAction, name: str) -> str:
        self._check_active()
        check_key(name, "room name")
        request = RoomCommand(user_id=self.user_id, room=name, action=action)
        return str(self._chat.ask_user(self.user_id, request))

    def create_room(self, name: str) -> str:
        """Create a room and join it; returns its name. Raises RoomExists."""
        return self._room("create", name)

    def join(self, name: str) -> str:
        """Join a room (joining twice changes nothing); returns its name as it was created (names are
        case-insensitive). Raises RoomNotFound."""
        return self._room("join", name)

    def leave(self, name: str) -> str:
        """Leave a room. Raises NotAMember or RoomNotFound."""
        return self._room("leave", name)

    def send_room(self, name: str, body: str, *, client_id: str | None = None) -> Message:
        """Post to a room: stored once, pushed at once to every online member (V0.4)."""
        return self._chat.ask_user(self.user_id, self._room_request(name, body, client_id))  # type: ignore[no-any-return]

    async def send_room_async(
        self, post: LoopPost, name: str, body: str, *, client_id: str | None = None
    ) -> Message:
        """:meth:`send_room` from an asyncio loop (see :meth:`send_message_async`)."""
        request = self._room_request(name, body, client_id)
        return await self._chat.ask_user_async(post, self.user_id, request)  # type: ignore[no-any-return]

    def _room_request(self, name: str, body: str, client_id: str | None) -> SendRoom:
        self._check_active()
        check_body(body)
        check_key(name, "room name")
        check_client_id(client_id)
        return SendRoom(user_id=self.user_id, room=name, body=body, client_id=client_id)

    def rooms(self) -> list[RoomSummary]:
        """The rooms this user is in, with member and unread counts."""
        self._check_active()
        return list(self._chat.ask_persistence(ListRooms(user_id=self.user_id)))

    def members(self, room: str) -> list[UserInfo]:
        """A room's members, sorted by name (for members only: NotAMember, RoomNotFound)."""
        self._check_active()
        request = ListMembers(user_id=self.user_id, room=check_room_name(room))
        return list(self._chat.ask_persistence(request))

    def search(self, prefix: str, limit: int = 10) -> SearchResults:
        """Users and rooms whose names start with ``prefix`` (any case), at most ``limit`` (up to
        20) of each: to find someone to write to or a room to join."""
        self._check_active()
        request = SearchNames(prefix=check_prefix(prefix), limit=check_limit(limit, SEARCH_MAX))
        return self._chat.ask_persistence(request)  # type: ignore[no-any-return]

    def read_by(self, message_id: int) -> list[str]:
        """Who has read a message (for a room message, every member whose cursor passed it)."""
        self._check_active()
        check_id(message_id, "message id")
        request = ReadBy(user_id=self.user_id, message_id=message_id)
        return list(self._chat.ask_persistence(request))

    # -- pushes -------------------------------------------------------------------------------
    def on_message(self, callback: MessageCallback | None) -> None:
        """Call ``callback(message)`` the moment a message arrives (V0.9); None stops it."""
        self._check_active()
        self._message_callbacks = [] if callback is None else [callback]

    def on_receipt(self, callback: ReceiptCallback | None) -> None:
        """Call ``callback(receipt)`` when messages this user sent change status."""
        self._check_active()
        self._receipt_callbacks = [] if callback is None else [callback]

    def on_read(self, callback: ReadCallback | None) -> None:
        """Call ``callback(read_event)`` when any session of this user (this one included) has read
        messages: what another device read can stop showing as unread here."""
        self._check_active()
        self._read_callbacks = [] if callback is None else [callback]

    def on_end(self, callback: EndCallback | None) -> None:
        """Call ``callback(reason)`` when this session is ended from elsewhere: a logout that revoked
        its token (every session holding a revoked token ends, and its next call raises SessionEnded)."""
        self._check_active()
        self._end_callbacks = [] if callback is None else [callback]

    def _deliver(self, event: Message | Receipt | ReadEvent) -> None:
        callbacks: list[Callable[[Any], Any]]
        if isinstance(event, Message):
            if not self._seen.add(event.id):  # its login's inbox had it, or it came twice
                return
            callbacks = self._message_callbacks
        elif isinstance(event, Receipt):
            callbacks = self._receipt_callbacks
        else:
            callbacks = self._read_callbacks
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                logging.getLogger("chatactors").exception("callback of %s failed", self.username)

    # -- end ----------------------------------------------------------------------------------
    def logout(self, *, revoke_token: bool = True) -> None:
        """Close this session; the user is offline once no other session of theirs is open.

        ``revoke_token=False`` keeps the token valid (a dropped connection that will resume). Raises
        SessionEnded if the session has already ended: a second logout is a mistake worth seeing.
        """
        self._check_active()
        self.active, self.ended = False, "logged out"
        self._chat.detach(self, revoke_token=self.token if revoke_token else None)

    def _check_active(self) -> None:
        if not self.active:
            again = "; log in again" if self._ended_error is SessionEnded else ""
            raise self._ended_error(f"{self.username}'s session has ended ({self.ended}){again}")

    def _chat_closed(self) -> None:
        """Its chat was shut down: nothing to detach from, and no logging in again there."""
        self.active, self.ended, self._ended_error = False, "its chat was shut down", ChatClosed

    def _end(self, reason: str) -> None:
        """Ended from elsewhere (its token was revoked): inactive, detached, and its owner told."""
        if not self.active:
            return
        self.active, self.ended = False, reason
        try:
            self._chat.detach(self)
        except ChatError as exc:
            logging.getLogger("chatactors").warning("could not detach %s: %s", self.username, exc)
        for callback in self._end_callbacks:
            try:
                callback(reason)
            except Exception:
                logging.getLogger("chatactors").exception("on_end callback of %s failed", self.username)

    # -- the roadmap's Spanish verbs ----------------------------------------------------------------
    # Aliases, and only aliases, of the English methods above, which are canonical: they keep the
    # roadmap's REPL session (docs/roadmap.md, V0.1) running as written. Nothing new goes here.
    enviar_mensaje = send_message
    leer_mensajes = read_messages
