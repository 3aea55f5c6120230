"""The protocol's frames (``docs/protocol.md``): JSON in, checked; Messages and errors out.

Pure: no socket, no actor, no thread. The gateway and the Python client both speak through it, so a
frame is encoded and validated in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from chatactors import errors
from chatactors.core.model import Message, Receipt, RoomSummary, Status
from chatactors.core.rules import (
    HISTORY_MAX,
    check_client_id,
    check_id,
    check_key,
    check_limit,
    check_prefix,
    check_text,
    check_user_ref,
)
from chatactors.errors import ChatError, InternalError, InvalidMessage, TooManyAttempts

Frame = dict[str, Any]
SHUTDOWN_REASON = "server shutting down"
GUESTS_REASON = "too many connections waiting to log in: connect again and log in"
SESSIONS_REASON = "logged in on too many connections at once: this one, the oldest, was logged out"
# The close codes are websockets' CloseCode: GOING_AWAY (the server shuts down), POLICY_VIOLATION (a
# flood, a reader too slow to keep up, or the oldest of too many guests), MESSAGE_TOO_BIG (websockets' own, for a frame over the limit).


def message_dict(m: Message) -> Frame:
    """A message as the protocol shows it: ``room`` for group messages, else ``recipient``.

    ``sent_at`` stays a datetime: orjson writes it as ``isoformat()`` would (the same text for these
    UTC times, tested), in C, where ``isoformat()`` twice a message was a thirtieth of the loop's time."""
    out: Frame = {
        "id": m.id,
        "sender": m.sender,
        "sender_id": m.sender_id,
        "body": m.body,
        "sent_at": m.sent_at,
        "status": m.status,
    }
    if m.room is not None:
        out["room"] = m.room
    else:
        out["recipient"] = m.recipient
        out["recipient_id"] = m.recipient_id
    return out


def message_frame(m: Message) -> Frame:
    return {"type": "message", **message_dict(m)}


def receipt_frames(r: Receipt) -> list[Frame]:
    """One ``receipt`` frame per message id (the core batches them; the protocol does not)."""
    return [
        {"type": "receipt", "id": i, "status": r.status, "by": r.by, "by_id": r.by_id} for i in r.message_ids
    ]


INTERNAL_DETAIL = "internal error; the server logged it"


def error_frame(error: ChatError, request: Frame | None = None) -> Frame:
    """An ``error`` frame; it names the request it answers so a client can match it.

    Only fields that were valid are repeated (a lone surrogate could not even be sent back), and an
    :class:`InternalError`'s detail stays in the server's log.
    """
    detail = INTERNAL_DETAIL if isinstance(error, InternalError) else error.detail or str(error)
    frame: Frame = {"type": "error", "code": error.code, "detail": detail}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:  # too_many_attempts: seconds until a login may be tried again
        frame["retry_after"] = math.ceil(retry_after)
    if request is not None:
        frame["request"] = echo(request.get("type"))
        for key in ("client_id", "room", "to", "with"):
            value = echo(request.get(key))
            if value is not None:
                frame[key] = value
    return frame


def echo(value: Any) -> str | int | None:
    """``value`` if it is safe to repeat to the client: a short valid text or an id."""
    try:
        if isinstance(value, str) and len(value) <= 128:
            return check_key(value, "")
        return check_id(value) if isinstance(value, int) else None
    except InvalidMessage:
        return None


def iso(value: datetime) -> str:
    return value.isoformat()


def plain(value: Any) -> Any:
    """Whatever the core returns (dataclasses, Messages, tuples) as JSON-ready values."""
    if isinstance(value, Message):
        return message_dict(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def parse_frame(raw: str | bytes) -> Frame:
    """A client frame: one JSON object with a string ``type``, else InvalidMessage."""
    if isinstance(raw, bytes):
        raise InvalidMessage("send JSON text frames, not binary")
    try:
        frame = json.loads(raw)
    except ValueError:  # integers of over 4,300 digits too
        raise InvalidMessage("not JSON") from None
    except RecursionError:
        raise InvalidMessage("JSON nested too deeply") from None
    if not isinstance(frame, dict):
        raise InvalidMessage("a frame is a JSON object")
    if not isinstance(frame.get("type"), str):
        raise InvalidMessage("a frame needs a string 'type'")
    check_key(frame["type"], "'type'")
    return frame


def field(frame: Frame, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """A field of the right JSON type; text must be valid Unicode and every integer is an id."""
    value = frame.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"'{frame['type']}' needs '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidMessage(f"'{name}' has the wrong type")
    if isinstance(value, str):
        return check_text(value, f"'{name}'")
    if isinstance(value, int):
        return check_id(value, f"'{name}'")
    return value


def key_field(frame: Frame, name: str, *, required: bool = True) -> str | None:
    """A name, token or client_id: text the database looks up (no NUL either)."""
    value = field(frame, name, str, required=required)
    return None if value is None else check_key(value, f"'{name}'")


def user_ref(frame: Frame, name: str, *, required: bool = True) -> str | int | None:
    value = field(frame, name, (str, int), required=required)
    return None if value is None else check_user_ref(value, f"'{name}'")


def client_id_field(frame: Frame) -> str | None:
    field(frame, "client_id", str, required=False)
    return check_client_id(frame.get("client_id"))


def limit_field(frame: Frame, maximum: int = HISTORY_MAX) -> int:
    """``limit``: 10 when absent; 0, negative or over the maximum is invalid, never a default."""
    limit = frame.get("limit")
    return 10 if limit is None else check_limit(limit, maximum)


def prefix_field(frame: Frame) -> str:
    """``prefix``: the start of a user or room name (1 to 32 characters a name may hold)."""
    return check_prefix(field(frame, "prefix", str))


MAX_READ_IDS = 1000


def id_list(frame: Frame, name: str, what: str) -> list[int]:
    ids = field(frame, name, list)
    if len(ids) > MAX_READ_IDS:
        raise InvalidMessage(f"'{name}' must be a list of at most {MAX_READ_IDS} {what}s")
    return [check_id(i, f"each of '{name}'") for i in ids]


def room_json(room: Any) -> Any:
    """A room as JSON: a name becomes ``{"name": ...}``; records keep their fields."""
    return {"name": room} if isinstance(room, str) else plain(room)


# -- decoding (the client) ------------------------------------------------------------------------
def message_from_dict(d: Frame) -> Message:
    """The :class:`Message` a ``message`` push, a ``sent`` or a list of messages carries."""
    return Message(
        id=int(d["id"]),
        sender_id=int(d["sender_id"]),
        sender=str(d["sender"]),
        recipient_id=d.get("recipient_id"),
        room=d.get("room"),
        body=str(d["body"]),
        sent_at=datetime.fromisoformat(d["sent_at"]),
        status=Status(d["status"]),
        recipient=d.get("recipient"),
    )


def receipts_from_frames(frames: list[Frame]) -> list[Receipt]:
    """``receipt`` frames that came together, as the core made them: one :class:`Receipt` per run of
    frames with the same status and reader (reading 70 messages is one receipt, not 70)."""
    out: list[Receipt] = []
    for f in frames:
        status, by, by_id = Status(f["status"]), str(f["by"]), int(f["by_id"])
        last = out[-1] if out else None
        if last is not None and (last.status, last.by_id) == (status, by_id):
            out[-1] = Receipt((*last.message_ids, int(f["id"])), status, by, by_id)
        else:
            out.append(Receipt((int(f["id"]),), status, by, by_id))
    return out


def room_from_dict(d: Frame) -> RoomSummary:
    return RoomSummary(name=str(d["name"]), members=int(d.get("members", 0)), unread=int(d.get("unread", 0)))


# The error classes by their ``code``. Two share "error" (ChatError, and ChatClosed, which keeps the
# wire's old code): a client gets the base class for it.
ERRORS: dict[str, type[ChatError]] = {
    getattr(errors, name).code: getattr(errors, name) for name in errors.__all__
}
ERRORS["error"] = ChatError


def error_from_frame(frame: Frame) -> ChatError:
    """The exception an ``error`` frame stands for: the same class the embedded Chat raises."""
    code, detail = str(frame.get("code", "error")), str(frame.get("detail", ""))
    if code == TooManyAttempts.code:
        return TooManyAttempts(detail, float(frame.get("retry_after", 0)))
    return ERRORS.get(code, ChatError)(detail)
