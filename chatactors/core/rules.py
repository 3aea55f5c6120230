"""Input rules, checked at the edge and again in the actors (a gateway may be a different program)."""

from __future__ import annotations

import re

from chatactors.errors import InvalidMessage

MAX_BODY = 4096
USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{3,32}")  # used with fullmatch: "$" would let "\n" in
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
HISTORY_MAX = 200


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
    if not body.strip():
        raise InvalidMessage("message body is empty")
    if len(body) > MAX_BODY:
        raise InvalidMessage(f"message body is over {MAX_BODY} characters ({len(body)})")
    return body


def check_limit(limit: object, maximum: int = HISTORY_MAX) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise InvalidMessage(f"limit must be 1 to {maximum}")
    return limit
