"""Input rules, checked at the edge and again in the actors (a gateway may be a different program)."""

from __future__ import annotations

import re

from chatactors.errors import InvalidMessage

MAX_BODY = 4096
MAX_CLIENT_ID = 128  # the protocol's limit, and the width of mensajes.client_id
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{3,32}")  # used with fullmatch: "$" would let "\n" in
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
HISTORY_MAX = 200
SEARCH_MAX = 20  # names a search answers, per kind: a page shows a short list, never a directory
PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}")  # what a name can start with
MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in both databases


def check_ref(ref: str | int, what: str) -> str | int:
    """A user or room named in a lookup: a name no row can hold is refused, not looked up."""
    return check_text(ref, what) if isinstance(ref, str) else ref


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


def check_prefix(prefix: object) -> str:
    """A name prefix to search for: 1 to 32 characters a username or room name may hold (any other
    could match nothing, so it is refused rather than looked up)."""
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        raise InvalidMessage("prefix must be 1 to 32 letters, digits, '_', '.' or '-'")
    return prefix


# -- text and ids from outside: what the database and the wire can hold ----------------------------------
def check_text(value: object, what: str) -> str:
    """Text both databases can store and the driver can encode: PostgreSQL refuses NUL (SQLite
    would keep it, so the two would disagree) and a lone surrogate (JSON allows ``"\\ud800"``)
    cannot be encoded. Refused here, before a batch, so one bad row never fails the writes
    committed with it."""
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be text")
    if "\x00" in value:
        raise InvalidMessage(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} is not valid Unicode text (an unpaired surrogate)") from None
    return value


check_key = check_text  # a name, token or client_id the database looks up: the same rule


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
