"""Every error chatactors raises, rooted at :class:`ChatError`.

::

    ChatError
    ├── AuthenticationError      wrong password, unknown user, bad or expired token, throttled
    │   ├── TooManyAttempts      too many failures from this address: wait ``retry_after`` seconds
    │   ├── SessionEnded         the session was logged out, or its token revoked elsewhere
    │   └── NotLoggedIn          (gateway) a frame that needs a session came before ``login``
    ├── UserNotFound             a recipient that does not exist
    ├── MessageNotFound          a message id that does not exist, or is not one's to see
    ├── UsernameTaken            register() with a name already in use
    ├── RoomNotFound             a room that does not exist
    ├── RoomExists               create_room() with a name already in use
    ├── NotAMember               acting in a room one has not joined
    ├── InvalidMessage           bad body, bad username, bad request
    ├── Unavailable              not done, nothing acknowledged: retry (with the same ``client_id``)
    │   ├── StorageUnavailable   the database cannot be reached
    │   ├── Restarting           a core actor crashed and is being restarted
    │   └── ChatTimeout          an actor did not answer in time
    ├── Busy                     too many logins in progress; try again in a moment
    ├── RateLimited              (gateway) more frames than the connection's rate; that frame dropped
    ├── ChatClosed               a call on a chat that was shut down, or whose core stopped
    ├── AdminPortInUse           multiprocTCPBase: another system or program holds the admin port
    ├── DatabaseInUse            (server) another chatactors server runs on this SQLite database
    ├── ClusterNeedsPostgres     clustering asked for on a database other than PostgreSQL (a ValueError too)
    └── InternalError            a bug: an unexpected exception, translated at the actor's edge

Bad configuration (an unknown system base, a short cluster secret, a second database URL in one
process) raises :class:`ValueError`: it is the caller's code to fix, not a condition to handle.
:class:`ClusterNeedsPostgres` is such a mistake too, and also a ChatError: it is the one a user meets
when trying clustering out on the default SQLite database, so it says what to do instead.

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


class NotLoggedIn(AuthenticationError):
    """A gateway frame that needs a session arrived before ``login``/``register``."""

    code = "not_logged_in"


class Unavailable(ChatError):
    """The chat could not do it now; nothing was acknowledged. Retry, with the same ``client_id``:
    at most one message is stored. Catch this one parent rather than each reason."""

    code = "unavailable"


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"


class Restarting(Unavailable):
    """A core actor crashed and is being restarted."""

    code = "restarting"


class ChatTimeout(Unavailable):
    code = "timeout"


class Busy(ChatError):
    code = "busy"


class RateLimited(ChatError):
    """More gateway frames than the connection's rate allows; the frame was dropped, the connection
    stays."""

    code = "rate_limited"


class ChatClosed(ChatError):
    """A call on a :class:`~chatactors.Chat` after ``shutdown()``, or after its core stopped (a crash
    loop beyond the restart intensity)."""

    code = "error"  # what a gateway client was always sent for it: the wire protocol is unchanged


class AdminPortInUse(ChatError):
    """multiprocTCPBase: the admin port is still held (a stale actor system, or another program);
    a chat never attaches to a system it did not start."""

    code = "admin_port_in_use"


class DatabaseInUse(ChatError):
    """A server asked for an SQLite database another chatactors server holds: two servers on one
    file would share its messages but not presence or delivery (see :mod:`chatactors.dblock`)."""

    code = "database_in_use"


class ClusterNeedsPostgres(ChatError, ValueError):
    """A cluster's nodes share their membership and their data through one PostgreSQL database;
    SQLite is one process's file and cannot be shared by several machines."""

    code = "cluster_needs_postgres"


class ClusterNeedsSecret(ChatError, ValueError):
    """Nodes of a cluster must share ``CHATACTORS_CLUSTER_SECRET`` (at least 16 characters): every
    frame between them is signed with it, and without it a node could talk to no other."""

    code = "cluster_needs_secret"


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
    "NotLoggedIn",
    "UserNotFound",
    "MessageNotFound",
    "UsernameTaken",
    "RoomNotFound",
    "RoomExists",
    "NotAMember",
    "InvalidMessage",
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
