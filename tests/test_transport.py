"""chatactors.transport: Thespian's ports bound to the advertised address, every frame authenticated
before it is unpickled, remote code loading off. Unit tests of the signing, then a running
multiprocTCPBase system attacked from another user."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from chat_process import ChatProcess
from helpers import IN_CI, Command, listen_endpoints, process_group, socket_inodes
from thespian.actors import ActorAddress, ActorSystem, ActorTypeDispatcher
from thespian.system.transport import IPBase, TCPTransport, streamBuffer
from thespian.system.transport.IPBase import TCPv4ActorAddress

from chatactors import AdminPortInUse, Chat, transport
from chatactors.chat import free_port

transport.install()


def frame(payload: bytes) -> bytes:
    """How Thespian frames a payload on the wire."""
    return b"%d>" % len(payload) + payload


def received(data: bytes, chunk: int = 7) -> Any:
    """What a transport's receive buffer makes of ``data``, fed in small pieces as a socket would."""
    buf = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    for i in range(0, len(data), chunk):
        buf.addMore(data[i : i + chunk])
        if buf.isDone():
            break
    assert buf.isDone()
    return buf.completed()


ran: list[str] = []


def record(what: str) -> None:
    ran.append(what)


class Exploit:
    """Unpickling this runs ``record``: what an attacker's pickle would do with os.system."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (record, ("exploit ran",))


@pytest.fixture(autouse=True)
def _nothing_ran() -> Any:
    ran.clear()
    yield
    assert ran == [], "an unauthenticated pickle was unpickled"


# -- signing ----------------------------------------------------------------------------------------------
def test_a_signed_frame_is_read_back() -> None:
    message = ("address", {"body": "hola", "n": 1})
    got = received(streamBuffer.toSendBuffer(message, TCPTransport.serializer.dumps))
    assert got == (message, b"")


def test_what_thespian_sends_is_signed_behind_a_tag_of_its_length() -> None:
    payload = TCPTransport.serializer.dumps("x")
    tag, signed = payload[: transport.TAG_BYTES], payload[transport.TAG_BYTES :]
    assert tag == transport.length_tag(len(payload))
    assert transport.verify(signed) == pickle.dumps("x")
    assert signed[transport.MAC_BYTES :] == pickle.dumps("x")
    assert TCPTransport.serializer.loads(payload) == "x"
    with pytest.raises(transport.FrameRejected):
        TCPTransport.serializer.loads(transport.length_tag(len(payload) + 1) + signed)


def test_a_stranger_declaring_a_large_frame_is_refused_at_its_first_bytes() -> None:
    """Without the length tag, this frame would be buffered to its end (16 MiB) before its MAC failed."""
    buf = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    buf.addMore(b"%d>" % transport.MAX_FRAME_BYTES + b"x" * (transport.TAG_BYTES - 1))
    assert not buf.isDone()  # the tag is not all in yet
    buf.addMore(b"x")
    assert buf.isDone() and buf.completed() is None
    buf.addMore(b"x" * 100_000)
    assert len(buf._buf) == 0  # nothing more is kept for it


def test_the_buffer_asks_for_no_more_than_the_tag_until_it_has_checked_it() -> None:
    """Thespian reads ``remainingAmount()`` next (up to 1 MB a read otherwise)."""
    buf = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    buf.addMore(b"%d>" % transport.MAX_FRAME_BYTES + b"x" * 11)
    assert buf.remainingAmount() == transport.TAG_BYTES - 11
    good = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    payload = TCPTransport.serializer.dumps("x" * 100_000)
    good.addMore(frame(payload)[: 20 + transport.TAG_BYTES])  # the tag is in and checked
    assert good.remainingAmount() == len(frame(payload)) - 20 - transport.TAG_BYTES


def test_a_stranger_who_never_ends_the_length_is_refused_past_its_longest_form() -> None:
    buf = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    buf.addMore(b"1" * transport.LENGTH_DIGITS)
    assert not buf.isDone()  # a length may be that long
    buf.addMore(b"1")
    assert buf.isDone() and buf.completed() is None
    buf.addMore(b"1" * 100_000)
    assert len(buf._buf) == 0


def test_a_frame_too_short_to_hold_a_tag_and_a_mac_is_refused() -> None:
    assert received(frame(b"x" * (transport.MIN_FRAME_BYTES - 1))) is None


def test_thespian_processes_start_only_where_the_patches_were_inherited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'spawn' or 'forkserver' would start a fresh interpreter whose transport unpickles anything."""
    assert transport.system_capabilities(1900)["Process Startup Method"] == "fork"
    monkeypatch.setattr(transport, "_installed", False)
    for start in (transport._start_child, transport._start_logger):
        with pytest.raises(RuntimeError, match="'fork' start method"):
            start()
    with pytest.raises(RuntimeError, match="'fork' start method"):
        transport._start_admin(object)


def test_a_broken_pipe_while_sending_is_retried_and_only_a_refused_connection_is_a_dead_target() -> None:
    """The receiver closed a connection it had accepted (the cap, an expiry, idle) while a frame too
    large for one send() was on its way: Thespian made the live actor a dead letter."""
    assert TCPTransport.err_send_connrefused is transport._send_refused
    assert not TCPTransport.err_send_connrefused(OSError(errno.EPIPE, "Broken pipe"))
    assert TCPTransport.err_send_connrefused(OSError(errno.ECONNREFUSED, "Connection refused"))


def test_connections_that_carry_a_peer_address_are_never_counted_as_waiting() -> None:
    with socket.socket() as sock:
        known = TCPTransport.TCPIncomingPersistent(transport.tcp_address("127.0.0.1", 1900), sock)
        fresh = TCPTransport.TCPIncomingPersistent(ActorAddress(None), sock)
        assert not transport._unidentified(known) and transport._unidentified(fresh)


def test_a_length_tag_cannot_be_moved_to_a_frame_of_another_length() -> None:
    signed = transport.dumps(Exploit())
    tag = transport.length_tag(transport.TAG_BYTES + len(signed) + 1)  # a real tag, of another size
    assert received(frame(tag + signed)) is None


def test_an_unsigned_pickle_is_dropped_unread_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        transport, "_drops", transport.DropLog(3600)
    )  # a fresh limiter: this drop is the first
    assert received(frame(pickle.dumps(Exploit()))) is None
    assert [r.name for r in caplog.records] == ["chatactors.transport"]
    assert "failed authentication" in caplog.records[0].getMessage()


def test_a_tampered_frame_is_dropped() -> None:
    signed = bytearray(transport.ThespianSerializer.dumps(("address", "hola")))
    signed[-3] ^= 1
    assert received(frame(bytes(signed))) is None
    other_key = transport.sign(b"x")[: transport.MAC_BYTES]
    tagged = transport.ThespianSerializer.dumps  # a frame with a valid tag but a MAC of something else:
    size = transport.TAG_BYTES + transport.MAC_BYTES + len(pickle.dumps(Exploit()))
    assert received(frame(transport.length_tag(size) + other_key + pickle.dumps(Exploit()))) is None
    assert received(frame(tagged("x"))) == ("x", b"")


def test_a_frame_signed_with_another_secret_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_secret", b"another chat system's secret")
    foreign = frame(transport.ThespianSerializer.dumps(Exploit()))
    monkeypatch.undo()
    assert received(foreign) is None


@pytest.mark.parametrize(
    "header", [b"99999999999>", b"%d>" % (transport.MAX_FRAME_BYTES + 1), b"-5>", b"abc>"]
)
def test_a_frame_with_a_huge_or_bad_length_is_dropped_at_once(header: bytes) -> None:
    buf = TCPTransport.ReceiveBuffer(TCPTransport.serializer.loads)
    buf.addMore(header + b"x" * 10)
    assert buf.isDone() and buf.completed() is None  # done: nothing more is read or buffered
    buf.addMore(b"x" * 100_000)
    assert len(buf._buf) == 0


def test_acks_are_signed_and_unsigned_acks_are_refused() -> None:
    assert received(TCPTransport.ackMsg) == (streamBuffer.ackPacket, b"")
    assert received(TCPTransport.ackDataErrMsg) == (streamBuffer.ackDataErrPacket, b"")
    assert received(streamBuffer.ackMsg) is None  # Thespian's own, unsigned


def test_a_flood_of_bad_frames_logs_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "_drops", transport.DropLog(3600))
    for _ in range(200):
        assert received(frame(pickle.dumps("junk"))) is None
    assert len(caplog.records) == 1
    transport._drops._next = 0.0  # the interval has passed: the next line counts what was dropped
    received(frame(pickle.dumps("junk")))
    assert "199 more dropped" in caplog.records[-1].getMessage()


# -- secret, install, addresses ---------------------------------------------------------------------------
def test_install_patches_once() -> None:
    secret = transport._secret
    init = IPBase.IPActorAddress.__init__
    assert transport.install() == "127.0.0.1"
    assert transport._secret is secret and IPBase.IPActorAddress.__init__ is init
    assert TCPTransport.serializer is transport.ThespianSerializer
    assert TCPTransport.ReceiveBuffer is transport.CheckedReceiveBuffer


def test_the_secret_is_random_unless_the_cluster_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(transport.SECRET_ENV, raising=False)
    first, second = transport._load_secret(), transport._load_secret()
    assert len(first) >= 32 and first != second and first.decode().isprintable()  # a peer can be given it
    monkeypatch.setenv(transport.SECRET_ENV, "a shared secret for every host")
    assert transport._load_secret() == b"a shared secret for every host"
    monkeypatch.setenv(transport.SECRET_ENV, "short")
    with pytest.raises(ValueError, match=transport.SECRET_ENV):
        transport._load_secret()


def test_every_address_binds_the_advertised_address(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IPBase.TCPv4ActorAddress(None, 0, external=True).bindname == ("127.0.0.1", 0)
    assert IPBase.TCPv4ActorAddress(None, 1950, external=("127.0.0.1", 1950)).bindname == ("127.0.0.1", 1950)
    monkeypatch.setenv("THESPIAN_BASE_IPADDR", "127.0.0.2")  # the operator names an interface
    assert IPBase.TCPv4ActorAddress(None, 0, external=True).bindname == ("127.0.0.2", 0)


def test_remote_actor_sources_are_not_allowed() -> None:
    assert transport.system_capabilities(1950)["AllowRemoteActorSources"] == "No"


def test_a_port_still_taken_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(AdminPortInUse, match=f"admin port {port} .*in use"):
            transport.wait_for_free_port("127.0.0.1", port, timeout=0.2)
    transport.wait_for_free_port("127.0.0.1", port, timeout=0.2)  # free again


# -- a running system ------------------------------------------------------------------------------------
def chat_endpoints(pids: set[int]) -> dict[tuple[str, int], set[int]]:
    """(address, port) of every listening TCP socket these processes hold -> the pids holding it."""
    held = {pid: socket_inodes(pid) for pid in pids}
    return {
        (address, port): {pid for pid, inodes in held.items() if inode in inodes}
        for address, port, inode in listen_endpoints()
        if any(inode in inodes for inodes in held.values())
    }


@pytest.mark.parametrize("system", ["multiprocTCPBase"])
def test_no_port_of_a_chat_listens_on_every_interface(chat: Chat) -> None:
    group = os.getpgid(chat.os_pid(chat.roles.directory))
    endpoints = chat_endpoints(process_group(group) | {os.getpid()})
    assert ("127.0.0.1", chat.admin_port) in endpoints
    assert len(endpoints) >= 6  # admin, logger, the four core actors, this process
    assert {address for address, _ in endpoints} == {"127.0.0.1"}


@pytest.mark.parametrize("system", ["multiprocTCPBase"])
def test_connections_that_send_nothing_are_capped_oldest_first(chat: Chat, wait_until: Any) -> None:
    """Thespian watched every connection for 7 minutes and re-registered each on every turn of its
    loop: anyone on the machine could hold thousands open to a port and slow its actors."""
    extra = 20
    idle = [
        socket.create_connection(("127.0.0.1", chat.admin_port))
        for _ in range(transport.MAX_UNIDENTIFIED + extra)
    ]
    try:
        for s in idle:
            s.setblocking(False)

        def closed_by_the_admin(s: socket.socket) -> bool:
            try:
                return s.recv(1) == b""
            except BlockingIOError:
                return False  # still open, nothing to read
            except OSError:
                return True  # reset

        closed: list[bool] = []

        def capped_oldest_first() -> bool:
            closed[:] = [closed_by_the_admin(s) for s in idle]
            first_open = closed.index(False) if False in closed else len(closed)
            return sum(closed) >= extra - 2 and not any(closed[first_open:])

        # Past the cap the admin closes the connection silent longest: ours, in the order we opened
        # them (give or take two: a connection of the chat's own waiting for its first frame then is
        # closed instead of one of ours if older, adds one more of ours if newer).
        wait_until(capped_oldest_first, timeout=30)
        assert sum(closed) <= extra + 2
        juan, maria = chat.crear("juan_cap", "secreto123"), chat.crear("maria_cap", "secreto123")
        juan.send_message(maria, "still serving")
        assert [m.body for m in maria.read_messages()] == ["still serving"]
    finally:
        for s in idle:
            s.close()


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses outside 127.0.0.0/8."""
    import fcntl
    import struct

    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(
                    s.fileno(), 0x8915, struct.pack("256s", name[:15].encode())
                )  # SIOCGIFADDR
            except OSError:
                continue  # no IPv4 address
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            found.append(address)
    return found


ATTACKER = r"""
import json, socket, sys
payload = bytes.fromhex(sys.argv[1])
results = []
for host, port in json.loads(sys.argv[2]):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"%d>" % len(payload) + payload)
            s.settimeout(2)
            try:
                s.recv(100)
            except OSError:
                pass
        results.append([host, port, "sent"])
    except ConnectionRefusedError:
        results.append([host, port, "refused"])
print(json.dumps(results))
"""


def run_as_nobody(endpoints: list[tuple[str, int]], payload: bytes) -> list[list[Any]]:
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"  # one user nobody can run
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", python, "-c", ATTACKER, payload.hex(), json.dumps(endpoints)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_a_pickle_sent_to_every_port_by_another_user_runs_nothing(
    tmp_path: Path, sqlite_url: str, wait_until: Any
) -> None:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        if IN_CI:
            pytest.fail("CI=true: this test must run, as root with runuser (it attacks as user nobody)")
        pytest.skip("needs root and runuser to attack as the unprivileged user nobody")
    marker = tmp_path / "code-ran"  # tmp_path is root's, mode 0700: only the chat's processes could write it
    server = ChatProcess(sqlite_url, tmp_path / "server.log")
    try:
        endpoints = chat_endpoints(server.group_pids | {server.info["server"]})
        assert server.info["admin_port"] in {port for _, port in endpoints} and len(endpoints) >= 7
        targets = [("127.0.0.1", port) for _, port in endpoints]
        elsewhere = [(address, port) for address in other_addresses() for _, port in endpoints]
        results = run_as_nobody(targets + elsewhere, pickle.dumps(Command(f"touch {marker}")))

        assert not marker.exists()
        assert {tuple(r[:2]) for r in results if r[2] == "sent"} == set(targets)
        assert {tuple(r[:2]) for r in results if r[2] == "refused"} == set(elsewhere)  # nothing listens there
        assert server.check()  # login, send, read: still serving (and the server read its own socket)
        assert not marker.exists()

        def every_port_logged_its_drop() -> bool:
            logged = {
                int(line.rsplit(" in pid ", 1)[1].split()[0])
                for line in server.log().splitlines()
                if "dropped a Thespian frame" in line
            }
            return all(holders & logged for holders in endpoints.values())

        wait_until(every_port_logged_its_drop, what=f"a warning from every attacked process: {server.log()}")
        assert server.check()
        assert not marker.exists()
    finally:
        server.close()


# -- 5. a send whose connection closed before its ack ----------------------------------------------------
class Relay(ActorTypeDispatcher):  # type: ignore[misc]
    """Sends what it is told to a raw address, in the order told."""

    def receiveMsg_tuple(self, message: tuple[Any, ...], sender: Any) -> None:
        address, *items = message
        for item in items:
            self.send(address, item)
        self.send(sender, items[-1])  # sent (handed to the transport): the test goes on


class ClosingPeer:
    """A raw TCP endpoint that speaks Thespian's framing: it reads the first frame and closes that
    connection without acking (as an idle connection closed by the peer at the moment a send arrives),
    then acks every frame on later connections, recording their messages in arrival order."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received: list[Any] = []
        self.first_dropped = threading.Event()
        self._changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()
            first = False

    def _serve(self, conn: socket.socket, drop_first: bool) -> None:
        with conn:
            buffer = transport.CheckedReceiveBuffer()
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                while data:
                    buffer.addMore(data)
                    if not buffer.isDone():
                        break
                    done = buffer.completed()
                    assert done is not None, "a frame from our own system failed its check"
                    (_, message), data = done
                    buffer = transport.CheckedReceiveBuffer()
                    if drop_first:
                        self.first_dropped.set()
                        return  # closed, never acked: the sender must send it again
                    conn.sendall(TCPTransport.ackMsg)
                    with self._changed:
                        self.received.append(message)
                        self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Any]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


def test_a_send_met_by_a_closing_connection_is_sent_again_within_seconds_and_in_order() -> None:
    transport.install()
    peer = ClosingPeer()
    asys = ActorSystem("multiprocTCPBase", transport.system_capabilities(free_port()), transientUnique=True)
    try:
        relay = asys.createActor(Relay)
        target = ActorAddress(TCPv4ActorAddress("127.0.0.1", peer.port, external=True))
        assert asys.ask(relay, (target, "first"), 10) == "first"
        assert peer.first_dropped.wait(10)
        for item in ("second", "third"):
            assert asys.ask(relay, (target, item), 10) == item
        # Thespian alone resent "first" only after 35 s, and "second" overtook it.
        assert peer.wait_for(3, timeout=10) == ["first", "second", "third"]
    finally:
        asys.shutdown()
        peer.server.close()


def test_sends_queued_behind_one_met_by_a_closing_connection_follow_it() -> None:
    """Both queued at once: the second waits for the first's connection when that one is closed."""
    transport.install()
    peer = ClosingPeer()
    asys = ActorSystem("multiprocTCPBase", transport.system_capabilities(free_port()), transientUnique=True)
    try:
        relay = asys.createActor(Relay)
        target = ActorAddress(TCPv4ActorAddress("127.0.0.1", peer.port, external=True))
        assert asys.ask(relay, (target, "first", "second"), 10) == "second"
        assert peer.wait_for(2, timeout=10) == ["first", "second"]
    finally:
        asys.shutdown()
        peer.server.close()


def test_a_free_port_for_an_admin_is_below_the_ephemeral_range_and_bindable() -> None:
    # A port from the ephemeral range, free when picked, can go to any outgoing connection before the
    # admin binds it (Thespian then fails to start the system after 11 s).
    low = transport._ephemeral_low()
    for _ in range(50):
        port = transport.free_port()
        assert port < low
        with socket.socket() as s:
            s.bind((transport.advertised_address(), port))
