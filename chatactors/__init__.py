"""chatactors: a chat system as an actor-model library on Thespian.

>>> from chatactors import Chat
>>> chat = Chat()
>>> juan = chat.crear("juan", "secreto123")
usuario logeado
"""

from chatactors.chat import Chat, Session
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, Message, ReadEvent, Receipt, RoomSummary
from chatactors.core.throttle import LoginPolicy
from chatactors.errors import (
    AuthenticationError,
    Busy,
    ChatError,
    ChatTimeout,
    InternalError,
    InvalidMessage,
    MessageNotFound,
    NotAMember,
    Restarting,
    RoomExists,
    RoomNotFound,
    SessionEnded,
    StorageUnavailable,
    TooManyAttempts,
    UsernameTaken,
    UserNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "Chat",
    "Session",
    "Message",
    "Receipt",
    "ReadEvent",
    "RoomSummary",
    "LoginPolicy",
    "ENVIADO",
    "ENTREGADO",
    "LEIDO",
    "ChatError",
    "AuthenticationError",
    "TooManyAttempts",
    "SessionEnded",
    "UserNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
    "MessageNotFound",
    "StorageUnavailable",
    "Restarting",
    "Busy",
    "ChatTimeout",
    "InternalError",
]
