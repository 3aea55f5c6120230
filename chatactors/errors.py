"""Every error chatactors raises, rooted at :class:`ChatError`.

::

    ChatError
    ├── AuthenticationError      wrong password, unknown user, bad or expired token, throttled
    │   ├── TooManyAttempts      too many failures from this address: wait ``retry_after`` seconds
    │   └── SessionEnded         the session was logged out, or its token revoked elsewhere
    ├── UserNotFound             a recipient that does not exist
    ├── MessageNotFound          a message id that does not exist, or is not one's to see
    ├── UsernameTaken            register() with a name already in use
    ├── RoomNotFound             a room that does not exist
    ├── RoomExists               create_room() with a name already in use
    ├── NotAMember               acting in a room one has not joined
    ├── InvalidMessage           bad body, bad username, bad request
    ├── StorageUnavailable       the database cannot be reached; nothing was acknowledged
    ├── Restarting               a core actor crashed and is being restarted; not acknowledged
    ├── Busy                     too many logins in progress; try again in a moment
    ├── ChatTimeout              an actor did not answer in time
    └── InternalError            a bug: an unexpected exception, translated at the actor's edge

Actors never let these escape a handler: they reply ``Failed(error)`` and the facade re-raises it in
the caller's thread, so a REPL user sees the same exception on every system base.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every chatactors error."""

    code = "error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # Errors cross process boundaries inside Failed replies.
        return (type(self), (self.detail,))


class AuthenticationError(ChatError):
    code = "auth_failed"


class TooManyAttempts(AuthenticationError):
    code = "too_many_attempts"

    def __init__(self, detail: str = "", retry_after: float = 0.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type, tuple[str, float]]:  # type: ignore[override]
        return (type(self), (self.detail, self.retry_after))


class SessionEnded(AuthenticationError):
    code = "session_ended"


class UserNotFound(ChatError):
    code = "user_not_found"


class MessageNotFound(ChatError):
    code = "message_not_found"


class UsernameTaken(ChatError):
    code = "username_taken"


class RoomNotFound(ChatError):
    code = "room_not_found"


class RoomExists(ChatError):
    code = "room_exists"


class NotAMember(ChatError):
    code = "not_a_member"


class InvalidMessage(ChatError):
    code = "invalid"


class StorageUnavailable(ChatError):
    code = "storage_unavailable"


class Restarting(ChatError):
    """Retry, with the same ``client_id``: the request was not acknowledged, so at most one
    message is stored."""

    code = "restarting"


class Busy(ChatError):
    code = "busy"


class ChatTimeout(ChatError):
    code = "timeout"


class InternalError(ChatError):
    """An unexpected exception inside an actor; ``detail`` names it for the REPL and the log.

    The gateway never forwards that detail to a client (it may quote input or internals).
    """

    code = "internal_error"


__all__ = [
    "ChatError",
    "AuthenticationError",
    "TooManyAttempts",
    "SessionEnded",
    "UserNotFound",
    "MessageNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
    "StorageUnavailable",
    "Restarting",
    "Busy",
    "ChatTimeout",
    "InternalError",
]
