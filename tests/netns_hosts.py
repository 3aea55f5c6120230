"""Simulated hosts for the cluster tests: network namespaces on a bridge, as root.

Each host is a namespace with a veth pair on a bridge the test creates (addresses 10.213.x.0/24, used
only inside them). The bridge itself has an address on that subnet in the test's own namespace, so the
test process reaches every host directly (WebSocket clients, raw sockets), and PostgreSQL is reached
from the hosts through a :class:`Relay` the test runs on that address. Taking a host's link down
(:meth:`Hosts.cut`) answers nothing, not even a reset, unlike a killed process whose host refuses the
connection at once.

Without root or ``ip netns`` no host can be built: with CI=true that fails the test (CI runs as root),
else it is skipped (:func:`hosts_or_skip`). :func:`built_hosts` removes every namespace, link and
process it made, and checks that they are gone. The ``hosts`` fixture (conftest.py) wraps it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import IN_CI, poll_until

from chatactors.storage import close_database, open_database

PREFIX = f"ca{os.getpid() % 10000:04d}"  # names unique per test process: parallel runs never meet
SUBNET = f"10.213.{os.getpid() % 200 + 20}"
BRIDGE, BRIDGE_IP = f"{PREFIX}b", f"{SUBNET}.1"
GONE_WAIT = 15.0  # seconds a host's processes have to exit once their starter is killed


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def namespaces_left() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def links_left() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if f" {PREFIX}" in line]


def pids_in(netns: str) -> list[int]:
    """The processes running in a namespace (a node, the link's Thespian admin and its logger)."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=30).stdout
    return [int(pid) for pid in out.split()]


class Hosts:
    """A bridge, and one namespace per host with a veth pair on it."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.addresses = {name: f"{SUBNET}.{11 + i}" for i, name in enumerate(names)}
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for name in names:
            ns, outside, inside = self.netns(name), f"{PREFIX}{name}h", f"{PREFIX}{name}n"
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "master", BRIDGE)
            ip("link", "set", outside, "up")
            ip("addr", "add", f"{self.addresses[name]}/24", "dev", inside, netns=ns)
            ip("link", "set", inside, "up", netns=ns)
            ip("link", "set", "lo", "up", netns=ns)

    @staticmethod
    def netns(name: str) -> str:
        return f"{PREFIX}{name}"

    def wrap(self, name: str) -> list[str]:
        """The command prefix that runs a program on host ``name``."""
        return ["ip", "netns", "exec", self.netns(name)]

    def cut(self, name: str) -> None:
        """The host's link goes down: its packets are dropped, nothing answers, no reset."""
        ip("link", "set", f"{PREFIX}{name}n", "down", netns=self.netns(name))

    def processes_left(self) -> dict[str, list[int]]:
        """Each host's processes still running, once they had :data:`GONE_WAIT` seconds to exit (a
        killed node's Thespian admin notices its starter is gone and stops its group on its own)."""

        def left() -> dict[str, list[int]]:
            return {name: pids for name in self.names if (pids := pids_in(self.netns(name)))}

        try:
            poll_until(lambda: not left(), GONE_WAIT, "every host's processes to exit")
        except AssertionError:
            return left()
        return {}

    def remove(self) -> None:
        for name in self.names:
            for pid in pids_in(self.netns(name)):  # ours: only what the test started runs in there
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.netns(name)], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", f"{PREFIX}{name}h"], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=30)


class Relay:
    """PostgreSQL on the bridge's address: bytes relayed to the real server (which listens on loopback)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the PostgreSQL relay did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, BRIDGE_IP, 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self.loop)  # the pipes of connections still open: ended, awaited
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _can_make_hosts() -> str:
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    probe = subprocess.run(
        ["ip", "netns", "add", f"{PREFIX}probe"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", f"{PREFIX}probe"], capture_output=True, timeout=30)
    return ""


def hosts_or_skip() -> None:
    """Skip the test when no host can be built here; fail it with CI=true, where it must run."""
    why = _can_make_hosts()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true: the network-namespace tests must run, but {why}")
        pytest.skip(why)


@contextmanager
def built_hosts(pg_url: str, names: list[str]) -> Iterator[tuple[Hosts, str]]:
    """Hosts ``names`` on a fresh bridge and the database URL they reach PostgreSQL by; afterwards
    nothing of theirs is left on the machine: no process in a namespace, no namespace, no link."""
    hosts_or_skip()
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    close_database(pg_url)
    made = Hosts(names)
    relay: Relay | None = None
    left: dict[str, list[int]] = {}
    try:
        parts = urlsplit(pg_url)
        relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
        netloc = (
            f"{parts.username}@{BRIDGE_IP}:{relay.port}" if parts.username else f"{BRIDGE_IP}:{relay.port}"
        )
        yield made, urlunsplit(parts._replace(netloc=netloc))
        left = made.processes_left()
    finally:
        if relay is not None:
            relay.stop()
        made.remove()
    assert left == {}, f"processes still running in the hosts after the test: {left}"
    assert namespaces_left() == [] and links_left() == []  # nothing of ours is left on the machine
