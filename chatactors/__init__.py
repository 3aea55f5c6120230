"""chatactors: a chat system as an actor-model library on Thespian.

>>> from chatactors import Chat
>>> chat = Chat()
>>> juan = chat.crear("juan", "secreto123")
usuario logeado
"""

from chatactors.chat import Chat, Session
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, Message, ReadEvent, Receipt, RoomSummary
from chatactors.errors import (
    AuthenticationError,
    ChatError,
    ChatTimeout,
    InternalError,
    InvalidMessage,
    MessageNotFound,
    NotAMember,
    RoomExists,
    RoomNotFound,
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
    "ENVIADO",
    "ENTREGADO",
    "LEIDO",
    "ChatError",
    "AuthenticationError",
    "TooManyAttempts",
    "UserNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
    "MessageNotFound",
    "StorageUnavailable",
    "ChatTimeout",
    "InternalError",
]
