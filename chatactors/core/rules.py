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


def check_text(value: str, what: str) -> str:
    """Text both databases can store: PostgreSQL refuses NUL (SQLite would keep it, so the two
    would disagree), and no driver can encode a lone surrogate. Refused here, before a batch, so
    one bad row never fails the other writes committed with it."""
    if "\x00" in value:
        raise InvalidMessage(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} contains an unpaired surrogate (not valid Unicode text)") from None
    return value


def check_ref(ref: str | int, what: str) -> str | int:
    """A user or room named in a lookup: a name no row can hold is refused, not looked up."""
    return check_text(ref, what) if isinstance(ref, str) else ref


def check_client_id(client_id: object) -> str | None:
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID:
        raise InvalidMessage(f"client_id must be 1 to {MAX_CLIENT_ID} characters")
    return check_text(client_id, "client_id")


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
    return password


def check_body(body: object) -> str:
    if not isinstance(body, str):
        raise InvalidMessage("message body must be text")
    check_text(body, "message body")
    if not body.strip():
        raise InvalidMessage("message body is empty")
    if len(body) > MAX_BODY:
        raise InvalidMessage(f"message body is over {MAX_BODY} characters ({len(body)})")
    return body


def check_limit(limit: object, maximum: int = HISTORY_MAX) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise InvalidMessage(f"limit must be 1 to {maximum}")
    return limit
