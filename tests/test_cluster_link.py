"""The node link (chatactors/cluster/link.py) between real processes, over TCP sockets.

Every node is a process of its own (tests/link_peer.py), driven over stdin and stdout. Loopback
only; the processes are the test's children, killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Command, send_unsigned

from chatactors import transport
from chatactors.cluster import link as link_module
from chatactors.cluster.link import MAX_FRAME_BYTES, MAX_HELLO_BYTES, NONCE_BYTES, Link, frame, link_address
from chatactors.errors import ClusterNeedsSecret
from chatactors.messages import LinkBatch, LinkHello

PEER = Path(__file__).parent / "link_peer.py"
SECRET = "a-cluster-secret-for-the-link-tests"
WAIT = 20.0


class Node:
    """A link in a child process: what it prints is read on a thread and waited on, never slept on."""

    def __init__(self, *args: str, secret: str = SECRET) -> None:
        env = {**os.environ, transport.SECRET_ENV: secret, "THESPLOG_FILE": os.devnull}
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.errors: queue.SimpleQueue[str] = queue.SimpleQueue()
        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()
        self.name = args[0]
        self.address = self.line("ADDR") if args[0] != "--stranger" else ""

    @staticmethod
    def _read(stream: Any, into: queue.SimpleQueue[str]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))

    def line(self, prefix: str, source: queue.SimpleQueue[str] | None = None) -> str:
        source = source or self.lines
        while True:
            line = source.get(timeout=WAIT)
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()

    def batch(self, kind: str = "GOT") -> tuple[str, list[Any]]:
        node, _, body = self.line(kind).partition(" ")
        return node, json.loads(body)

    def lost(self) -> tuple[str, str, list[Any]]:
        """What the link handed back: the peer, its verdict ("gone" or "unanswered"), the messages."""
        node, why, body = self.line("LOST").split(" ", 2)
        return node, why, json.loads(body)

    def dropped_frame(self) -> str:
        """The next warning of a frame the link dropped, from this node's log (its stderr)."""
        while True:
            warning = self.line("", self.errors)
            if "dropped a link frame" in warning:
                return warning

    def command(self, *parts: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(parts) + "\n")
        self.proc.stdin.flush()

    def send(self, to: Node, message: Any) -> None:
        self.command("SEND", to.name, to.address, json.dumps(message))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


@pytest.fixture
def same_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Links in this process sign with the secret it has (a full run installs the transport early)."""
    monkeypatch.setenv(transport.SECRET_ENV, transport.installed_secret() or SECRET)


def start(nodes: list[Node], *args: str, **kw: str) -> Node:
    node = Node(*args, **kw)
    nodes.append(node)
    return node


def test_a_link_needs_the_cluster_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(transport.SECRET_ENV, raising=False)
    link = Link("a", 1, lambda n, m: None, lambda n, m, r: None)
    with pytest.raises(ClusterNeedsSecret, match=transport.SECRET_ENV):
        link.start()


def test_a_link_address_is_built_from_host_and_port_never_unpickled() -> None:
    assert link_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    for bad in ("127.0.0.1", ":4000", "host:0", "host:65536", "host:x", "gASV..."):
        with pytest.raises(ValueError, match="not a link address"):
            link_address(bad)


def test_messages_cross_in_order_once_batched_both_ways(nodes: list[Node]) -> None:
    a, b = start(nodes, "a"), start(nodes, "b")
    count = 300
    a.command("SENDMANY", b.name, b.address, str(count))
    got: list[int] = []
    batches = 0
    while len(got) < count:
        sender, messages = b.batch()
        assert sender == "a"
        got.extend(messages)
        batches += 1
    assert got == list(range(count))  # each once, in the order sent
    assert batches < count  # what queued while a batch was in flight went together
    b.send(a, "back to a")
    assert a.batch() == ("b", ["back to a"])


def test_a_killed_peer_is_unreachable_and_what_it_was_owed_comes_back(nodes: list[Node]) -> None:
    a, b = start(nodes, "a"), start(nodes, "b")
    a.send(b, "before")
    assert b.batch() == ("a", ["before"])
    b.kill()  # kill -9: no goodbye
    a.send(b, "after 1")
    a.send(b, "after 2")
    lost: list[Any] = []
    while lost[-2:] != ["after 1", "after 2"]:
        node, why, messages = a.lost()
        assert (node, why) == ("b", "gone")  # b's address refuses: nothing listens there, dead at once
        lost.extend(messages)
    # Everything not acknowledged comes back, in order. "before" too if b was killed after taking
    # it but before its ack left: the link is at least once, and the node dedupes (client_id).
    assert lost in (["after 1", "after 2"], ["before", "after 1", "after 2"])


def test_membership_can_give_a_silent_peer_up_at_once(nodes: list[Node]) -> None:
    a, b = start(nodes, "a"), start(nodes, "b")
    a.send(b, "first")
    assert b.batch() == ("a", ["first"])
    b.proc.send_signal(signal.SIGSTOP)  # alive but silent, as behind a cut link
    try:
        a.send(b, "held")
        a.command("FORGET", "b")  # the membership table says b is dead
        node, why, lost = a.lost()
        assert (node, why) == ("b", "unanswered")
        assert lost in (["held"], ["first", "held"])  # "first": if its ack was not in
    finally:
        b.proc.send_signal(signal.SIGCONT)


def test_a_silent_peer_is_unanswered_until_it_has_been_given_up_three_times_in_a_row(
    nodes: list[Node],
) -> None:
    """Alive and silent (a cut link, an overloaded node, a flooded port): each give-up (after 2
    attempts of 0.5 s, tests/link_peer.py) hands the messages back; only the third in a row, with
    nothing acknowledged in between, says the peer is gone, so a moment's silence is left to the
    heartbeats and a lasting one still ends."""
    a, b = start(nodes, "a"), start(nodes, "b")
    a.send(b, "first")
    assert b.batch() == ("a", ["first"])
    b.proc.send_signal(signal.SIGSTOP)
    try:
        verdicts = []
        for attempt in range(3):
            a.send(b, f"held {attempt}")
            node, why, lost = a.lost()
            assert node == "b" and lost[-1] == f"held {attempt}"
            verdicts.append(why)
        assert verdicts == ["unanswered", "unanswered", "gone"]
    finally:
        b.proc.send_signal(signal.SIGCONT)


def test_an_address_nobody_listens_on_is_given_up_at_the_first_refusal(same_secret: None) -> None:
    """With a minute of timeouts to wait for, the refusal alone ends it: dead at once."""
    lost: queue.SimpleQueue[tuple[str, tuple[Any, ...], str | None]] = queue.SimpleQueue()
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # closed on leaving the block: nothing listens there now
    a = Link("a", 1, lambda n, m: None, lambda n, m, refused: lost.put((n, m, refused)), ack_timeout=30)
    a.start()
    try:
        a.send("gone", f"127.0.0.1:{port}", "to nobody")
        assert lost.get(timeout=WAIT) == ("gone", ("to nobody",), f"127.0.0.1:{port}")
    finally:
        a.stop()


def test_a_batch_signed_with_another_secret_is_dropped_unread(nodes: list[Node]) -> None:
    a = start(nodes, "a")
    start(nodes, "--stranger", a.address, secret="not-the-cluster-secret-at-all")
    assert "failed authentication" in a.dropped_frame()
    b = start(nodes, "b")  # the link still works for members
    b.send(a, "member")
    assert a.batch() == ("b", ["member"])  # and the stranger's batch was never delivered


def test_an_unsigned_pickle_on_a_link_port_runs_nothing(nodes: list[Node], tmp_path: Path) -> None:
    """A raw pickle, no MAC at all, from a process outside the cluster (this one): read, dropped,
    logged, never unpickled; the link goes on serving its members."""
    a = start(nodes, "a")
    marker = tmp_path / "code-ran"  # unpickling the payload would create it, in a's process
    host, _, port = a.address.rpartition(":")
    send_unsigned(host, int(port), Command(f"touch {marker}"))  # returns once a has read and closed
    assert not marker.exists()
    assert "failed authentication" in a.dropped_frame()
    b = start(nodes, "b")
    b.send(a, "member")
    assert a.batch() == ("b", ["member"])
    assert not marker.exists()


def test_a_link_refuses_to_start_when_this_process_signs_with_another_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport.install()  # this process's secret is fixed now (from the environment, or made up)
    monkeypatch.setenv(transport.SECRET_ENV, "x" * 8 + (transport.installed_secret() or "")[:24] + "-other")
    with pytest.raises(ClusterNeedsSecret, match="signs its frames with another secret"):
        Link("n", 1, lambda n, m: None, lambda n, m, r: None).start()


def test_a_stopped_link_leaves_no_thread_and_no_socket(same_secret: None) -> None:
    descriptors = set(os.listdir("/proc/self/fd"))
    got: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
    a = Link("a", 1, lambda n, m: None, lambda n, m, r: None)
    b = Link("b", 1, lambda n, m: got.put((n, m)), lambda n, m, r: None)
    at_b = b.start()
    a.start()
    a.send("b", at_b, "hello")
    assert got.get(timeout=WAIT) == ("a", ("hello",))
    a.forget("b")  # a forgotten peer's thread is joined too
    a.stop()
    b.stop()
    assert [t.name for t in threading.enumerate() if t.name.startswith("link-")] == []
    assert set(os.listdir("/proc/self/fd")) <= descriptors


def knock(address: str) -> tuple[socket.socket, bytes]:
    """A connection to a link, and the nonce the link sent on it."""
    s = socket.create_connection(link_address(address), timeout=WAIT)
    head = b""
    while len(head) < 4 + NONCE_BYTES:
        chunk = s.recv(4 + NONCE_BYTES - len(head))
        assert chunk, "the link closed before it sent its nonce"
        head += chunk
    assert int.from_bytes(head[:4], "big") == NONCE_BYTES
    return s, head[4:]


def closed_by_the_link(s: socket.socket) -> bool:
    """Whether the link closed ``s`` (read to the end; a socket left open fails on the timeout)."""
    with s:
        while chunk := s.recv(4096):
            assert not chunk, f"the link wrote {chunk!r}"
    return True


@pytest.fixture
def fresh_drop_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refused frame is logged (the link's rate limit starts afresh)."""
    monkeypatch.setattr(link_module, "_drops", transport.DropLog(0, "link"))


REFUSED = {
    # a member (it knows the secret and says hello), then a frame longer than any batch may be
    "over the limit after the hello": (
        lambda nonce: frame(LinkHello("member", 1, "a", nonce)) + (MAX_FRAME_BYTES + 1).to_bytes(4, "big"),
        f"declared {MAX_FRAME_BYTES + 1} bytes (limit {MAX_FRAME_BYTES})",
    ),
    # a stranger cannot make the link buffer a 64 MiB frame before a MAC is checked
    "over a hello's size before it": (
        lambda nonce: (MAX_HELLO_BYTES + 1).to_bytes(4, "big") + b"x" * 100,
        f"declared {MAX_HELLO_BYTES + 1} bytes (limit {MAX_HELLO_BYTES}), before any hello",
    ),
    # half a frame and then nothing: a slow loris
    "no hello in time": (lambda nonce: (100).to_bytes(4, "big") + b"half a frame", "no hello within 0.3 s"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_connection_that_breaks_the_rules_is_closed_unread_and_logged(
    case: str, same_secret: None, fresh_drop_log: None, caplog: pytest.LogCaptureFixture
) -> None:
    sends, logged = REFUSED[case]
    hello_seconds = 0.3 if case == "no hello in time" else 30.0  # the others must not time out
    link = Link("a", 1, lambda n, m: None, lambda n, m, r: None, hello_seconds=hello_seconds)
    try:
        s, nonce = knock(link.start())
        s.sendall(sends(nonce))
        assert closed_by_the_link(s)  # nothing read past the length, nothing written
    finally:
        link.stop()
    assert logged in caplog.text


def test_a_hello_recorded_on_one_connection_is_refused_on_another(
    same_secret: None, fresh_drop_log: None, caplog: pytest.LogCaptureFixture
) -> None:
    got: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
    link = Link("a", 1, lambda n, m: got.put((n, m)), lambda n, m, r: None)
    try:
        address = link.start()
        first, nonce = knock(address)
        second, _ = knock(address)
        hello = frame(LinkHello("member", 1, "a", nonce))
        second.sendall(hello)  # signed, but for the first connection's nonce: a replay
        assert closed_by_the_link(second)
        with first:  # where it belongs, the same hello opens the link; a batch may follow at once
            first.sendall(hello + frame(LinkBatch("member", 1, 1, ("after the hello",))))
            assert got.get(timeout=WAIT) == ("member", ("after the hello",))
    finally:
        link.stop()
    assert "was no hello: signed, but not a hello to this connection's nonce" in caplog.text


def test_connections_without_a_hello_hold_no_thread_and_past_the_cap_the_oldest_goes(
    same_secret: None, fresh_drop_log: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent connections cost the link a socket each, no thread; past ``max_strangers`` the oldest
    is closed, so a member's new connection (which says hello at once) still gets in."""
    got: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
    a = Link("a", 1, lambda n, m: got.put((n, m)), lambda n, m, r: None, max_strangers=3)
    b = Link("b", 1, lambda n, m: None, lambda n, m, r: None)
    before = threading.active_count()
    address = a.start()
    silent: list[socket.socket] = []
    try:
        silent += [knock(address)[0] for _ in range(4)]
        assert threading.active_count() == before + 1  # a's accepting thread, and no reader
        assert closed_by_the_link(silent.pop(0))  # the oldest of four, past the cap of three
        assert "the oldest of 4 without a hello" in caplog.text
        b.start()
        b.send("a", address, "a member gets in")  # the cap is full again, of silent ones
        assert got.get(timeout=WAIT) == ("b", ("a member gets in",))
        assert closed_by_the_link(silent.pop(0))  # the member's connection pushed out the oldest
    finally:
        b.stop()
        a.stop()
        for s in silent:
            s.close()


def test_a_hello_to_another_node_is_refused(
    same_secret: None, fresh_drop_log: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever a node connects to (a stale address, a port reused since) cannot pass its hello on."""
    link = Link("a", 1, lambda n, m: None, lambda n, m, r: None)
    try:
        s, nonce = knock(link.start())
        s.sendall(frame(LinkHello("member", 1, "c", nonce)))
        assert closed_by_the_link(s)
    finally:
        link.stop()
    assert "was no hello: a hello from member to c, not to a (passed on?)" in caplog.text


def test_strangers_that_come_and_go_as_fast_as_they_can_leave_the_door_open(same_secret: None) -> None:
    """Each new connection closes the oldest stranger (max_strangers=2) while that one sends a
    byte: a stranger ready in the same round as the listener was once heard after it had been
    closed, and the KeyError ended the accepting thread, and with it the node's link."""
    got: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
    a = Link("a", 1, lambda n, m: got.put((n, m)), lambda n, m, r: None, max_strangers=2)
    b = Link("b", 1, lambda n, m: None, lambda n, m, r: None)
    address = a.start()
    held = [knock(address)[0] for _ in range(2)]
    try:
        for _ in range(300):
            held.append(socket.create_connection(link_address(address), timeout=WAIT))
            with contextlib.suppress(OSError):  # closed by the link already
                held[0].send(b"\x00")
            held.pop(0).close()
        assert a._acceptor is not None and a._acceptor.is_alive()
        b.start()
        b.send("a", address, "still open")
        assert got.get(timeout=WAIT) == ("b", ("still open",))
    finally:
        for s in held:
            s.close()
        b.stop()
        a.stop()


def test_a_node_id_that_comes_back_elsewhere_gets_a_new_peer_and_the_old_address_is_not_blamed_on_it(
    same_secret: None,
) -> None:
    """Node b restarts on another port (a new incarnation): what is sent to its new address goes
    there at once, not down the old connection, and nothing is judged gone at the new address."""
    lost: queue.SimpleQueue[tuple[str, tuple[Any, ...], str | None]] = queue.SimpleQueue()
    got: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
    a = Link("a", 1, lambda n, m: None, lambda n, m, gone: lost.put((n, m, gone)))
    first = Link("b", 1, lambda n, m: got.put((n, m)), lambda n, m, r: None)
    again = Link("b", 2, lambda n, m: got.put((n, m)), lambda n, m, r: None)
    a.start()
    try:
        at_first = first.start()
        a.send("b", at_first, "to the first")
        assert got.get(timeout=WAIT) == ("a", ("to the first",))
        first.stop()
        at_again = again.start()
        assert at_again != at_first
        a.send("b", at_again, "to the one that came back")
        assert got.get(timeout=WAIT) == ("a", ("to the one that came back",))
        judged = []
        while not lost.empty():
            judged.append(lost.get_nowait())
        assert all(gone != at_again for _, _, gone in judged)
    finally:
        a.stop()
        again.stop()
