"""Input rules, checked at the edge and again in the actors (a gateway may be a different program)."""

from __future__ import annotations

import re

from chatactors.errors import InvalidMessage

MAX_BODY = 4096
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{3,32}")  # used with fullmatch: "$" would let "\n" in
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
HISTORY_MAX = 200
MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in both databases
MAX_CLIENT_ID = 128


def check_username(name: object) -> str:
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise InvalidMessage("username must be 3 to 32 letters, digits, '_', '.' or '-'")
    return name


def check_room_name(name: object) -> str:
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise InvalidMessage("room name must be 3 to 32 letters, digits, '_', '.' or '-'")
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidMessage(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return check_text(password, "password")


def check_body(body: object) -> str:
    if not isinstance(body, str):
        raise InvalidMessage("message body must be text")
    if not body.strip():
        raise InvalidMessage("message body is empty")
    if len(body) > MAX_BODY:
        raise InvalidMessage(f"message body is over {MAX_BODY} characters ({len(body)})")
    return check_text(body, "message body")


def check_limit(limit: object, maximum: int = HISTORY_MAX) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise InvalidMessage(f"limit must be 1 to {maximum}")
    return limit


# -- text and ids from outside: what the database and the wire can hold ----------------------------------
def check_text(value: object, what: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate (JSON allows ``"\\ud800"``) would fail in the driver."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} is not valid Unicode text") from None
    return value


def check_key(value: object, what: str) -> str:
    """Text the database looks up (a name, a token, a client_id): no lone surrogate and no NUL,
    which PostgreSQL refuses in any string."""
    text = check_text(value, what)
    if "\x00" in text:
        raise InvalidMessage(f"{what} must not contain NUL")
    return text


def check_id(value: object, what: str = "id") -> int:
    """A database id: a positive integer that fits in 64 bits (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidMessage(f"{what} must be a positive integer below 2**63")
    return value


def check_user_ref(value: object, what: str = "user") -> str | int:
    """A user named by username or by id."""
    if isinstance(value, str):
        return check_key(value, what)
    if isinstance(value, int) and not isinstance(value, bool):
        return check_id(value, what)
    raise InvalidMessage(f"{what} must be a username or a user id")


def check_client_id(value: object) -> str | None:
    """None (no retry key) or 1 to ``MAX_CLIENT_ID`` characters of text."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID:
        raise InvalidMessage(f"client_id must be 1 to {MAX_CLIENT_ID} characters")
    return check_key(value, "client_id")
