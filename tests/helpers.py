"""What the tests share besides fixtures: the test database, waiting on conditions, pushes collected
from callbacks, a stand-in for an actor's address, and the process and socket views of /proc that the leftover check and the process
tests use. Tests import it as ``helpers``; fixtures stay in conftest.py."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from chatactors import AuthenticationError, Chat, TooManyAttempts
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


ChatFactory = Callable[..., Chat]


class Addr:
    """Like a Thespian ActorAddress: compared by value, and unhashable (the core keys addresses by str)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Addr) and other.name == self.name

    def __str__(self) -> str:
        return f"Addr({self.name})"

    __repr__ = __str__


class PeerProcess:
    """A test's child process, driven line by line over its stdin, its stdout read on a thread into
    ``lines``. ``wrap`` prefixes its command (``ip netns exec HOST``). Killed by its pid."""

    def __init__(
        self, script: Path, args: Sequence[str], env: dict[str, str], wrap: list[str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [*(wrap or []), sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def command(self, *parts: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(parts) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


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


class Command:
    """Unpickling this runs a shell command: the attack an unsigned pickle transport allows."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def send_unsigned(host: str, port: int, obj: Any, timeout: float = 10.0) -> bytes:
    """``obj`` pickled, unsigned, in a node link's framing (4-byte length, payload), written to
    ``host:port`` as a stranger would; returns what came back until the peer closed (a link closes
    the connection of a refused frame, so once this returns the frame has been read)."""
    import pickle
    import socket

    payload = pickle.dumps(obj)
    answer = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(len(payload).to_bytes(4, "big") + payload)
        while chunk := s.recv(4096):
            answer += chunk
    return answer


# -- leftovers: what the check at the end of the session (conftest.pytest_sessionfinish) looks for ------
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


def _descriptors(pid: int) -> Iterator[str]:
    """Paths of the open descriptors of process ``pid`` under /proc (none if it is gone)."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in descriptors:
        yield f"/proc/{pid}/fd/{fd}"


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open (empty if it is gone)."""
    found = set()
    for path in _descriptors(pid):
        try:
            target = os.readlink(path)
        except OSError:
            continue  # closed while we looked
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


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) for every process we can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # it exited while we looked
        fields = stat.rsplit(")", 1)[1].split()
        found[pid] = (int(fields[1]), fields[0], cmdline)
    return found


def _holds_marker(pid: int) -> bool:
    for path in _descriptors(pid):
        try:
            info = os.stat(path)
        except OSError:
            continue  # closed while we looked
        if (info.st_dev, info.st_ino) == SESSION_MARKER_ID:
            return True
    return False


def leftover_processes() -> list[str]:
    """Processes this session started (descendants, or holders of its marker) that still run."""
    me = os.getpid()
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    descendants: set[int] = set()
    stack = [me]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in descendants:
                descendants.add(child)
                stack.append(child)
    marked = {pid for pid in processes if pid != me and _holds_marker(pid)}
    report = []
    for pid in sorted(descendants | marked):
        ppid, state, cmdline = processes.get(pid, (0, "?", "?"))
        if state == "Z":
            continue  # already dead; its parent just has not reaped it
        if pid in descendants and not cmdline:
            continue  # a kernel helper thread of ours
        report.append(f"pid {pid} (parent {ppid}, state {state}): {cmdline}")
    return report


def _listeners(ports: set[int]) -> dict[int, set[int]]:
    """port -> pids of the processes listening on it, for the given ports."""
    inodes = {inode: port for port, inode in listen_sockets() if port in ports}
    owners: dict[int, set[int]] = {}
    if not inodes:
        return owners
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for inode in socket_inodes(int(entry)) & inodes.keys():
                owners.setdefault(inodes[inode], set()).add(int(entry))
    return owners


def admin_ports_still_listening() -> dict[int, set[int]]:
    """An admin port of ours still open by a process of ours is a leftover. Other programs on this
    host (other test runs) may have been given one of those ports since: no concern of ours."""
    listening = _listeners(USED_ADMIN_PORTS & listening_ports())
    return {
        port: pids
        for port, pids in listening.items()
        if any(pid == os.getpid() or _holds_marker(pid) for pid in pids)
    }


def leftovers(timeout: float = 10.0) -> list[str]:
    """What the test session left running, once whatever was asked to stop had ``timeout`` seconds
    to go (waiting for that, not for a fixed time); empty when nothing is left."""
    found: list[str] = []

    def none_left() -> bool:
        found[:] = [f"left running: {p}" for p in leftover_processes()]
        found.extend(
            f"admin port {port} still listening in pids {sorted(pids)}"
            for port, pids in admin_ports_still_listening().items()
        )
        return not found

    try:
        poll_until(none_left, timeout=timeout, what="leftover processes to exit")
    except AssertionError:
        pass
    return found


def hold_tokens_back(chat: Chat, address: str) -> TooManyAttempts:
    """Made-up tokens from ``address`` until the server holds token logins from there back; its refusal."""
    for attempt in range(50):
        try:
            chat.login(token=f"made-up-{attempt:035d}", client_address=address)
        except TooManyAttempts as exc:
            return exc
        except AuthenticationError:
            continue
    raise AssertionError("made-up tokens were never held back")
