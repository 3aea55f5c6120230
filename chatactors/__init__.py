"""chatactors: a chat system as an actor-model library on Thespian.

>>> from chatactors import Chat
>>> chat = Chat()
>>> juan = chat.crear("juan", "secreto123")
usuario logeado
"""

from chatactors.chat import Chat, Pid, Session
from chatactors.client import AsyncClient, AsyncSession, Client, ClientSession, connect, connect_async
from chatactors.core.model import (
    ENTREGADO,
    ENVIADO,
    LEIDO,
    Message,
    ReadEvent,
    Receipt,
    RoomSummary,
    SearchResults,
    Status,
)
from chatactors.core.throttle import LoginPolicy
from chatactors.errors import (
    AdminPortInUse,
    AuthenticationError,
    Busy,
    ChatClosed,
    ChatError,
    ChatTimeout,
    ClusterNeedsPostgres,
    ClusterNeedsSecret,
    DatabaseInUse,
    InternalError,
    InvalidMessage,
    MessageNotFound,
    NotAMember,
    NotLoggedIn,
    RateLimited,
    Restarting,
    RoomExists,
    RoomNotFound,
    SessionEnded,
    StorageUnavailable,
    TooManyAttempts,
    Unavailable,
    UsernameTaken,
    UserNotFound,
)
from chatactors.settings import ChatSettings

__version__ = "0.1.0"

__all__ = [
    "Chat",
    "ChatSettings",
    "Session",
    "connect",
    "connect_async",
    "Client",
    "ClientSession",
    "AsyncClient",
    "AsyncSession",
    "Message",
    "Receipt",
    "ReadEvent",
    "RoomSummary",
    "SearchResults",
    "Pid",
    "LoginPolicy",
    "Status",
    "ENVIADO",
    "ENTREGADO",
    "LEIDO",
    "ChatError",
    "AuthenticationError",
    "TooManyAttempts",
    "SessionEnded",
    "NotLoggedIn",
    "UserNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
    "MessageNotFound",
    "Unavailable",
    "StorageUnavailable",
    "Restarting",
    "ChatTimeout",
    "Busy",
    "RateLimited",
    "ChatClosed",
    "AdminPortInUse",
    "DatabaseInUse",
    "ClusterNeedsPostgres",
    "ClusterNeedsSecret",
    "InternalError",
]
