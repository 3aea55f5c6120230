"""Shared fixtures: databases (SQLite and a real PostgreSQL), chats on both system bases.

PostgreSQL comes from ``$CHATACTORS_TEST_DATABASE_URL`` (``make test`` finds or starts a server and
sets it). Without it PostgreSQL tests are skipped, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from chatactors import Chat
from chatactors.storage import MODELS

PG_URL = os.environ.get("CHATACTORS_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI") == "true"
# One database per pytest process: several runs on one server (developers, CI) never collide.
TEST_DB = f"chatactors_test_{os.getpid()}"
_created = False


def _drop_test_database() -> None:
    import psycopg2

    try:
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        admin.close()
    except psycopg2.Error:
        pass  # the server is gone already; nothing to clean


def postgres_url() -> str:
    """The URL of a dedicated, emptied test database on the PostgreSQL server."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but CHATACTORS_TEST_DATABASE_URL is not set: PostgreSQL tests must run")
        pytest.skip("no PostgreSQL (set CHATACTORS_TEST_DATABASE_URL or run `make test`)")
    import atexit

    import psycopg2

    global _created
    parts = urlsplit(PG_URL)
    url = urlunsplit(parts._replace(path="/" + TEST_DB))
    if not _created:
        admin = psycopg2.connect(PG_URL)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {TEST_DB}")
            cur.execute(f"CREATE DATABASE {TEST_DB}")
        admin.close()
        _created = True
        atexit.register(_drop_test_database)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        tables = ", ".join(m._meta.table_name for m in MODELS)
        cur.execute(f"DROP TABLE IF EXISTS {tables} CASCADE")
    conn.close()
    return url


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


ChatFactory = Callable[..., Chat]


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


class Inbox:
    """Collects pushes from callbacks so a test can wait for them (an event, never a sleep)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"waited {timeout} s for {count} items, got {len(self.items)}")
            return list(self.items)


@pytest.fixture
def collector() -> Callable[[], Inbox]:
    return Inbox


# -- leftovers: what the last test file (test_zz_no_leftovers.py) checks --------------------------------
# Thespian daemonizes its admin (setsid + double fork), so its processes are not descendants of pytest.
# To recognize them anyway, the session holds an (unlinked) marker file open on a high descriptor:
# every process forked from this one inherits it (Thespian closes only descriptors 3 to 254 in its
# children), and subprocesses that should be tracked get it through ``pass_fds=(SESSION_MARKER_FD,)``.
def _open_session_marker() -> tuple[int, tuple[int, int]]:
    import resource
    import tempfile

    handle, path = tempfile.mkstemp(prefix=f"chatactors-test-session-{os.getpid()}-")
    os.unlink(path)  # nothing left on disk; the open descriptor is the marker
    info = os.fstat(handle)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(1000, soft - 1)
    while target > 255:
        try:
            os.fstat(target)  # taken: try the next lower number
        except OSError:
            os.dup2(handle, target, inheritable=True)
            os.close(handle)
            return target, (info.st_dev, info.st_ino)
        target -= 1
    return handle, (info.st_dev, info.st_ino)  # no high descriptor free: plain forks still carry it


SESSION_MARKER_FD, SESSION_MARKER_ID = _open_session_marker()
USED_ADMIN_PORTS: set[int] = set()  # every multiprocTCPBase admin port a Chat of this session used


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


def poll_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
    """Check ``condition`` until it returns something truthy, failing after ``timeout`` seconds.

    For states with no event to wait on (a directory's counters, a process gone): it waits on the
    condition, never a fixed time.
    """
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is the interval between two checks
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        pause.wait(0.01)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(condition, timeout=10, what="...")``: see :func:`poll_until`."""
    return poll_until


def _proc_net_address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host byte order) -> text."""
    import socket
    import struct

    words = b"".join(
        struct.pack("=I", int(hex_address[i : i + 8], 16)) for i in range(0, len(hex_address), 8)
    )
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def listen_endpoints() -> Iterator[tuple[str, int, str]]:
    """(address, port, socket inode) of every TCP socket in LISTEN state on this host, from /proc/net."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        address, port = fields[1].rsplit(":", 1)
                        yield _proc_net_address(address), int(port, 16), fields[9]
        except FileNotFoundError:
            continue


def listen_sockets() -> Iterator[tuple[int, str]]:
    """(port, socket inode) of every TCP socket in LISTEN state on this host."""
    for _, port, inode in listen_endpoints():
        yield port, inode


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open (empty if it is gone)."""
    found = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def process_group(group: int) -> set[int]:
    """Pids of the live (not zombie) processes in process group ``group``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    """A zombie is dead for our purposes (its parent may not have reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this host (IPv4 and IPv6)."""
    return {port for port, _ in listen_sockets()}
