"""The error tree: one root, precise leaves, the retryable ones under one parent, wire codes unchanged."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import chatactors
from chatactors import errors
from chatactors.storage import close_database, open_database

PACKAGE = Path(chatactors.__file__).parent

# The ``code`` each error puts in a gateway error frame: the wire protocol, so it must not change.
WIRE_CODES = {
    "ChatError": "error",
    "AuthenticationError": "auth_failed",
    "TooManyAttempts": "too_many_attempts",
    "SessionEnded": "session_ended",
    "NotLoggedIn": "not_logged_in",
    "UserNotFound": "user_not_found",
    "MessageNotFound": "message_not_found",
    "UsernameTaken": "username_taken",
    "RoomNotFound": "room_not_found",
    "RoomExists": "room_exists",
    "NotAMember": "not_a_member",
    "InvalidMessage": "invalid",
    "Unavailable": "unavailable",
    "StorageUnavailable": "storage_unavailable",
    "Restarting": "restarting",
    "ChatTimeout": "timeout",
    "Busy": "busy",
    "RateLimited": "rate_limited",
    "ChatClosed": "error",  # a gateway client never told a stopped chat apart
    "AdminPortInUse": "admin_port_in_use",
    "DatabaseInUse": "database_in_use",
    "ClusterNeedsPostgres": "cluster_needs_postgres",
    "ClusterNeedsSecret": "cluster_needs_secret",
    "InternalError": "internal_error",
}

# Exceptions defined outside the tree on purpose, each with why.
OUTSIDE_THE_TREE = {
    # Raised inside Thespian's receive path to drop an unsigned frame; it never reaches a caller.
    "chatactors.transport.FrameRejected",
    # Raised inside the node link's reader on an oversized length: it closes that connection, unread.
    "chatactors.cluster.link.FrameTooLarge",
}


def _modules() -> list[str]:
    found = pkgutil.walk_packages(chatactors.__path__, "chatactors.")
    return sorted(m.name for m in found if m.name != "chatactors.__main__")  # that one runs the CLI


def test_every_exception_the_package_defines_is_in_the_error_tree() -> None:
    stray = []
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
                and name != errors.__name__
                and f"{name}.{obj.__qualname__}" not in OUTSIDE_THE_TREE
            ):
                stray.append(f"{name}.{obj.__qualname__}")
    assert stray == []


def test_the_gateway_errors_are_the_trees() -> None:
    from chatactors import gateway

    assert gateway.NotLoggedIn is errors.NotLoggedIn
    assert gateway.RateLimited is errors.RateLimited


def test_every_error_keeps_its_wire_code() -> None:
    defined = {
        name: cls.code
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.ChatError)
    }
    assert defined == WIRE_CODES
    assert sorted(errors.__all__) == sorted(WIRE_CODES)


@pytest.mark.parametrize("cls", [errors.StorageUnavailable, errors.Restarting, errors.ChatTimeout])
def test_the_retryable_errors_share_the_unavailable_parent(cls: type[errors.ChatError]) -> None:
    assert issubclass(cls, errors.Unavailable)
    with pytest.raises(errors.Unavailable):
        raise cls("try again")


@pytest.mark.parametrize("cls", [errors.Busy, errors.InvalidMessage, errors.ChatClosed, errors.InternalError])
def test_errors_a_retry_would_not_fix_are_not_unavailable(cls: type[errors.ChatError]) -> None:
    assert not issubclass(cls, errors.Unavailable)


# One bare ``ChatError(...)`` is left in actors/user.py, whose rules are moving into core/ in a change
# of their own: its fallback for a failed reply that carries no error.
BARE_ALLOWED = {"actors/user.py"}


def test_nothing_constructs_a_bare_chat_error() -> None:
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where == "errors.py" or where in BARE_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ChatError":
                bare.append(f"{where}:{node.lineno}")
    assert bare == []


def test_a_second_database_in_one_process_is_a_value_error(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"
    open_database(first)
    try:
        with pytest.raises(ValueError, match="one database per process") as raised:
            open_database(second)
        assert not isinstance(raised.value, errors.ChatError)
    finally:
        close_database(first)
