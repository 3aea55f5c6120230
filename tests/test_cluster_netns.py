"""Cluster nodes on three simulated hosts: network namespaces on a bridge, as root.

Each host is a namespace with a veth pair on a bridge the test creates (addresses 10.213.x.0/24, used
only inside them); each runs a node (tests/cluster_node_peer.py) bound to its own address. PostgreSQL
is reached through a relay the test runs on the bridge's address. This is how a cut network looks to
a node: taking a host's link down answers nothing, not even a reset, unlike a killed process whose
host refuses the connection at once.

Without root or ``ip netns`` these tests cannot build hosts; with CI=true that fails them (CI runs as
root), else they are skipped. Every namespace, link and process the test made is removed afterwards,
and checked to be gone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from test_cluster_node import Process

from chatactors.storage import close_database, open_database

IN_CI = os.environ.get("CI") == "true"
PREFIX = f"ca{os.getpid() % 10000:04d}"  # names unique per test process: parallel runs never meet
SUBNET = f"10.213.{os.getpid() % 200 + 20}"
BRIDGE, BRIDGE_IP = f"{PREFIX}b", f"{SUBNET}.1"


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def namespaces_left() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def links_left() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if f" {PREFIX}" in line]


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

    def cut(self, name: str) -> None:
        """The host's link goes down: its packets are dropped, nothing answers, no reset."""
        ip("link", "set", f"{PREFIX}{name}n", "down", netns=self.netns(name))

    def remove(self) -> None:
        for name in self.names:
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


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[Hosts, str]]:
    why = _can_make_hosts()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true: the network-namespace tests must run, but {why}")
        pytest.skip(why)
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    close_database(pg_url)
    made = Hosts(["n1", "n2", "n3"])
    relay: Relay | None = None
    try:
        parts = urlsplit(pg_url)
        relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
        netloc = (
            f"{parts.username}@{BRIDGE_IP}:{relay.port}" if parts.username else f"{BRIDGE_IP}:{relay.port}"
        )
        yield made, urlunsplit(parts._replace(netloc=netloc))
    finally:
        if relay is not None:
            relay.stop()
        made.remove()
    assert namespaces_left() == [] and links_left() == []  # nothing of ours is left on the machine


def start(hosts: Hosts, url: str, name: str, started: list[Process]) -> Process:
    node = Process(
        name,
        url,
        wrap=["ip", "netns", "exec", hosts.netns(name)],
        env={"THESPIAN_BASE_IPADDR": hosts.addresses[name]},
    )
    started.append(node)
    return node


@pytest.fixture
def nodes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for node in started:
        node.kill()


def test_three_hosts_form_one_ring_and_talk(hosts: tuple[Hosts, str], nodes: list[Process]) -> None:
    made, url = hosts
    n1, n2, n3 = (start(made, url, name, nodes) for name in ("n1", "n2", "n3"))
    for node in (n1, n2, n3):
        node.ring("n1", "n2", "n3")
    n1.send("n3", "across hosts")
    assert n3.got() == ("n1", "across hosts")


def test_a_host_cut_off_is_dropped_and_the_others_keep_talking(
    hosts: tuple[Hosts, str], nodes: list[Process]
) -> None:
    made, url = hosts
    n1, n2, n3 = (start(made, url, name, nodes) for name in ("n1", "n2", "n3"))
    for node in (n1, n2, n3):
        node.ring("n1", "n2", "n3")
    made.cut("n2")  # no reset, no answer: a black hole
    n1.send("n2", "into the hole")
    n1.send("n3", "meanwhile")  # n2's stuck queue must not hold n3's up
    assert n3.got() == ("n1", "meanwhile")
    n1.ring("n1", "n3")  # missed heartbeats, or the link's unanswered batch, whichever is first
    n3.ring("n1", "n3")
    assert n1.line("UNDELIVERED") == 'n2 ["into the hole"]'  # handed back, for the node to route again
    n3.send("n1", "still here")
    assert n1.got() == ("n3", "still here")
