"""One user's or room's actor to another, always routed by the directory (``Route(kind, id, ...)``).

Sent by a user's actor to another user's (``ConfirmRead``: I read what you sent) or to a room's
(``AdvanceCursor``, ``MemberPresence``, ``MemberJoined``, ``MemberLeft``, ``PostRoom``). The
``Request`` ones carry the edge caller's ``req_id``/``reply_to`` one hop further (the room's actor, or
the persistence actor after it, answers the caller); ``ConfirmRead`` and ``AdvanceCursor`` are steps of
the reader's read, acknowledged to ``ack_to`` under its ``token`` (package docstring: Correlation).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatactors.core.model import Address, UserInfo
from chatactors.messages.edge import Request


# -- steps of a read, acknowledged to the reader's actor ------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmRead:
    """From the reader's actor to the sender's: record 'leido', then ack the reader's actor."""

    user_id: int  # the original sender, who owns the status
    reader: UserInfo
    message_ids: tuple[int, ...]
    ack_to: Address
    token: int


@dataclass(frozen=True, slots=True)
class AdvanceCursor:
    """From the reader's actor to a room's: move the reader's cursor to ``up_to``, then ack the
    reader's actor."""

    reader: UserInfo
    up_to: int
    ack_to: Address
    token: int


# -- membership and posting -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MemberPresence:
    """A member became active (logged in, with a live UserActor) or stopped being so."""

    user_id: int
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberJoined(Request):
    """From the new member's actor, once the database has the membership: answered when the room
    knows where the member's sessions are."""

    user: UserInfo
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLeft(Request):
    """From the leaving member's actor, once the database has dropped the membership."""

    user_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PostRoom(Request):
    """From the sender's actor (which checked membership by name): the room stores and fans it out."""

    sender: UserInfo
    body: str
    client_id: str | None = None
