"""Shared fixtures: databases (SQLite and a real PostgreSQL), chats on both system bases, and the
check at the end of the session that nothing it started is still running.

PostgreSQL comes from ``$CHATACTORS_TEST_DATABASE_URL`` (``make test`` finds or starts a server and
sets it). Without it PostgreSQL tests are skipped, except with ``CI=true``, where they fail. What tests
share besides fixtures is in helpers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import USED_ADMIN_PORTS, ChatFactory, Inbox, leftovers, poll_until, postgres_url
from netns_hosts import Hosts, built_hosts

from chatactors import Chat


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/chat.db"
    return postgres_url()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/chat.db"


@pytest.fixture
def pg_url() -> str:
    return postgres_url()


@pytest.fixture(params=["simpleSystemBase", "multiprocTCPBase"])
def system(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_chat(db_url: str, system: str) -> Iterator[ChatFactory]:
    """``make_chat(**options)``: a Chat on this test's database and base, shut down afterwards."""
    chats: list[Chat] = []

    def make(**options: Any) -> Chat:
        options.setdefault("database_url", db_url)
        options.setdefault("system", system)
        options.setdefault("password_profile", "cheapest")
        options.setdefault("echo", False)
        chat = Chat(**options)
        chats.append(chat)
        return chat

    yield make
    for chat in chats:
        chat.shutdown()


@pytest.fixture
def chat(make_chat: ChatFactory) -> Chat:
    return make_chat()


@pytest.fixture
def collector() -> Callable[[], Inbox]:
    return Inbox


@pytest.fixture(autouse=True, scope="session")
def _record_admin_ports() -> Iterator[None]:
    """Remember each Chat's admin port (a pass-through wrapper: nothing is faked)."""
    original = Chat.__init__

    def recording_init(self: Chat, *args: Any, **kwargs: Any) -> None:
        try:
            original(self, *args, **kwargs)
        finally:
            port = getattr(self, "admin_port", None)
            if port:
                USED_ADMIN_PORTS.add(int(port))

    Chat.__init__ = recording_init  # type: ignore[method-assign]
    yield
    Chat.__init__ = original  # type: ignore[method-assign]


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[Hosts, str]]:
    """Three simulated hosts n1, n2, n3 (netns_hosts.py) and the database URL they reach PostgreSQL by;
    skipped without root or ``ip netns`` (failed with CI=true), checked to leave nothing behind."""
    with built_hosts(pg_url, ["n1", "n2", "n3"]) as made:
        yield made


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(condition, timeout=10, what="...")``: see :func:`poll_until`."""
    return poll_until


# -- leftovers ---------------------------------------------------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing the test session started may still be running: processes (Thespian daemonizes its admin,
    so descendants of pytest and holders of the session marker both count) and admin ports.

    Runs after every test and fixture of the session, whichever tests were selected; what is left
    fails the run."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return  # Ctrl-C: tests were cut short on purpose; their teardown may not have run
    found = leftovers()
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "left behind by the test session", red=True)
            for line in found:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
