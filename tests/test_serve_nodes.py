"""``chatactors serve --nodes N``: a supervisor of N cluster nodes on one port (chatactors.gateway.nodes).

The supervisor's decisions (refusals, node ids, what an exit means under the restart intensity) are
tested without processes, on a fake clock; then the command itself: refusals as one line and exit
code 2, and two nodes on PostgreSQL, one killed with -9 and restarted, all stopped by SIGTERM. The
tests wait on the lines the supervisor prints, never on sleeps; every process is killed by its pid.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import SESSION_MARKER_FD, Inbox, alive, listen_endpoints, poll_until, socket_inodes

from chatactors import Client
from chatactors.cluster.membership_table import MAX_NODE_ID
from chatactors.core.clock import FakeClock
from chatactors.core.supervision import RestartIntensity
from chatactors.gateway.nodes import (
    MAX_RESTARTS,
    MAX_SECONDS,
    LeaveNode,
    NodeSpec,
    RestartNode,
    StopNodes,
    exit_reason,
    node_count,
    node_ids,
    on_exit,
    public_host,
    refusal,
)
from chatactors.storage import close_database, open_database
from chatactors.transport import SECRET_ENV

SECRET = "a-cluster-secret-for-the-nodes-tests"
SERVE = [sys.executable, "-m", "chatactors", "serve", "--password-profile", "cheapest"]
WAIT = 60.0  # seconds for a node to start (or restart) on a loaded 2-core machine
READY = re.compile(r"^node (\S+) ready on (\S+) \(pid (\d+)\)$")
SUMMARY = re.compile(r"^chatactors: (\d+) nodes serving ws://127\.0\.0\.1:(\d+) ")


# -- the decisions ----------------------------------------------------------------------------------
def test_nodes_is_a_number_or_one_per_cpu() -> None:
    assert node_count("3") == 3
    assert node_count("auto") == (os.cpu_count() or 1)
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="a number of nodes"):
            node_count(bad)


def test_a_cluster_needs_postgres_simple_system_base_and_the_secret() -> None:
    pg = "postgresql://chat@db.example/chat"
    good = {SECRET_ENV: SECRET}
    assert refusal(pg, None, good) is None
    assert refusal(pg, "simpleSystemBase", good) is None
    sqlite = refusal("sqlite:///chat.db", None, good)
    assert sqlite is not None and sqlite.startswith("clustering needs PostgreSQL")
    assert "multiprocTCPBase" in (refusal(pg, "multiprocTCPBase", good) or "")
    missing = refusal(pg, None, {})
    assert missing is not None and SECRET_ENV in missing and "it is not set" in missing
    short = refusal(pg, None, {SECRET_ENV: "short"})
    assert short is not None and "too short" in short


def test_node_ids_are_numbered_and_fit_the_nodes_table() -> None:
    assert node_ids("box-8765", 3) == ("box-8765-1", "box-8765-2", "box-8765-3")
    long = node_ids("h" * 100, 12)
    assert all(len(node) <= MAX_NODE_ID for node in long)
    assert len(set(long)) == 12 and long[-1].endswith("-12")


def test_a_wildcard_host_is_reached_on_the_advertised_address() -> None:
    assert public_host("0.0.0.0", "10.0.0.5") == "10.0.0.5"
    assert public_host("192.168.1.2", "10.0.0.5") == "192.168.1.2"
    assert NodeSpec("0.0.0.0", 9000, "postgresql://x/y", "10.0.0.5").url == "ws://10.0.0.5:9000"


def test_a_node_is_started_as_a_supervised_cluster_node_on_the_shared_port() -> None:
    spec = NodeSpec("127.0.0.1", 9000, "postgresql://x/y", options=("--log-level=DEBUG",))
    argv = spec.argv("box-9000-2", 7)
    assert argv[:4] == [sys.executable, "-m", "chatactors", "serve"]
    for part in ("--cluster", "--reuse-port", "--port=9000", "--node-id=box-9000-2", "--supervised=7"):
        assert part in argv
    assert "--database-url=postgresql://x/y" in argv and argv[-1] == "--log-level=DEBUG"


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(1) == "exit code 1"
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"


class TestWhatAnExitMeans:
    def decide(self, returncode: int, intensity: RestartIntensity, **flags: bool) -> object:
        options = {"served": True, **flags}
        return on_exit("n-1", returncode, intensity=intensity, **options)

    def test_a_crash_is_restarted_within_the_intensity_then_everything_stops(self) -> None:
        clock = FakeClock()
        intensity = RestartIntensity(2, 10.0, clock)
        assert self.decide(-9, intensity) == RestartNode(
            "n-1", "node n-1 exited (killed by SIGKILL): restarting it"
        )
        clock.advance(1)
        assert isinstance(self.decide(1, intensity), RestartNode)
        clock.advance(1)
        third = self.decide(1, intensity)
        assert isinstance(third, StopNodes)
        assert "more than 2 restarts within 10 s" in third.why and "stopping every node" in third.why

    def test_restarts_older_than_the_period_are_forgotten(self) -> None:
        clock = FakeClock()
        intensity = RestartIntensity(1, 5.0, clock)
        assert isinstance(self.decide(-9, intensity), RestartNode)
        clock.advance(6)
        assert isinstance(self.decide(-9, intensity), RestartNode)

    def test_a_node_that_never_served_stops_everything_at_once(self) -> None:
        intensity = RestartIntensity(5, 10.0, FakeClock())
        decision = self.decide(1, intensity, served=False)
        assert decision == StopNodes("node n-1 exited (exit code 1) before it served: stopping every node")
        assert isinstance(self.decide(0, intensity, served=False), StopNodes)

    def test_a_clean_exit_is_not_restarted_and_costs_no_restart(self) -> None:
        intensity = RestartIntensity(1, 10.0, FakeClock())
        assert isinstance(self.decide(0, intensity), LeaveNode)  # someone sent that node SIGTERM
        assert isinstance(self.decide(-9, intensity), RestartNode)  # the one restart is still there


# -- refusals -----------------------------------------------------------------------------------------
def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``argv`` to its end (a refusal, or a supervisor that gives up), its output captured."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL
    )


def refused(argv: list[str], env: dict[str, str]) -> str:
    """The one line a refused ``serve`` prints: exit code 2, nothing else printed, no node started."""
    done = run(argv, env)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr  # no "node ... ready", no node's lines
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def env_with(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def test_nodes_on_sqlite_are_refused(tmp_path: Path) -> None:
    argv = [*SERVE, "--nodes", "2", "--port", "0", "--database-url", f"sqlite:///{tmp_path}/chat.db"]
    line = refused(argv, env_with(**{SECRET_ENV: SECRET}))
    assert line.startswith("chatactors serve: clustering needs PostgreSQL (a postgresql://... database URL)")
    assert not (tmp_path / "chat.db").exists()


def test_nodes_without_the_secret_are_refused() -> None:
    # Refused before any connection: no server needs to answer at this URL.
    argv = [*SERVE, "--nodes", "2", "--port", "0", "--database-url", "postgresql://chat@127.0.0.1:1/none"]
    line = refused(argv, env_with(**{SECRET_ENV: None}))
    assert line.startswith(f"chatactors serve: clustering needs {SECRET_ENV}")


def test_one_cluster_node_is_refused_the_same_way(tmp_path: Path) -> None:
    argv = [*SERVE, "--cluster", "--port", "0", "--database-url", f"sqlite:///{tmp_path}/chat.db"]
    assert "clustering needs PostgreSQL" in refused(argv, env_with(**{SECRET_ENV: SECRET}))


def test_a_node_that_cannot_start_stops_everything_with_exit_code_1() -> None:
    # No database answers at this URL: the first node fails while starting, and the supervisor gives
    # up at once rather than restarting what would fail the same way.
    argv = [*SERVE, "--nodes", "2", "--port", "0", "--node-id", "t"]
    argv += ["--database-url", "postgresql://chat@127.0.0.1:1/none?connect_timeout=5"]
    done = run(argv, env_with(**{SECRET_ENV: SECRET}))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert (
        "chatactors serve: node t-1 exited (exit code 1) before it served: stopping every node" in done.stderr
    )
    assert "[t-1] chatactors server could not start: " in done.stderr  # the node's own line, led by its id
    assert "t-2" not in done.stdout + done.stderr  # the second node never started
    assert done.stdout.splitlines()[-1] == "chatactors nodes stopped"


# -- two nodes on PostgreSQL --------------------------------------------------------------------------
@dataclass
class Nodes:
    """A running ``serve --nodes N``: its lines, and each node's pid as the lines announce them."""

    proc: subprocess.Popen[str]
    lines: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)
    output: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # node id -> its current pid
    every_pid: set[int] = field(default_factory=set)  # every node process ever started
    port: int = 0

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # the end: the supervisor has exited

    def line(self, pattern: re.Pattern[str] | str) -> re.Match[str]:
        """Wait for the next line that matches (the lines before it are kept in ``output``)."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"waited {WAIT} s for {pattern!r}; got {self.output}") from None
            if line is None:
                raise AssertionError(f"the supervisor exited before {pattern!r}: {self.output}")
            self.output.append(line)
            ready = READY.match(line)
            if ready:  # every node started is remembered, to be checked (and cleaned up) by pid
                self.pids[ready[1]] = int(ready[3])
                self.every_pid.add(int(ready[3]))
            found = re.search(pattern, line)
            if found is not None:
                return found

    def said(self) -> list[str]:
        """Every line so far, those not waited for included (for a failure's message)."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.output
            if line is not None:
                self.output.append(line)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def listeners(port: int) -> set[str]:
    return {inode for _, p, inode in listen_endpoints() if p == port}


@pytest.fixture
def nodes(pg_url: str) -> Iterator[Nodes]:
    """``serve --nodes 2`` on a fresh PostgreSQL database, up once both nodes serve."""
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")  # the membership table, if any
    close_database(pg_url)
    argv = [*SERVE, "--nodes", "2", "--port", "0", "--database-url", pg_url, "--node-id", "t"]
    env = env_with(**{SECRET_ENV: SECRET, "THESPLOG_FILE": os.devnull})
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        pass_fds=(SESSION_MARKER_FD,),
    )
    running = Nodes(proc)
    threading.Thread(target=running.read, daemon=True).start()
    try:
        running.line(r"^node t-1 ready")
        running.line(r"^node t-2 ready")
        summary = running.line(SUMMARY)
        assert summary[1] == "2"
        running.port = int(summary[2])
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for pid in running.every_pid:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_nodes_share_one_port_restart_after_kill_9_and_stop_on_sigterm(nodes: Nodes) -> None:
    first, second = nodes.pids["t-1"], nodes.pids["t-2"]
    port = listeners(nodes.port)
    for pid in (first, second):
        assert socket_inodes(pid) & port, f"node pid {pid} does not listen on {nodes.port}"
    assert not socket_inodes(nodes.proc.pid) & port  # the supervisor holds the port but serves nothing

    os.kill(first, signal.SIGKILL)
    nodes.line(r"^node t-1 exited \(killed by SIGKILL\): restarting it$")
    nodes.line(r"^node t-1 ready")
    again = nodes.pids["t-1"]
    assert again != first and alive(again) and not alive(first)
    assert socket_inodes(again) & listeners(nodes.port)
    with Client(nodes.url, echo=False, announce_login=False) as client:  # the port still answers
        client.create("ana", "secreto123").logout()

    nodes.proc.send_signal(signal.SIGTERM)
    assert nodes.proc.wait(60) == 0
    nodes.line(r"^chatactors nodes stopped$")
    assert [line for line in nodes.output if line == "chatactors serve: SIGTERM: stopping every node"]
    poll_until(lambda: not any(alive(pid) for pid in nodes.every_pid), what="every node to exit")
    assert not listeners(nodes.port)


def test_users_on_different_nodes_chat(nodes: Nodes) -> None:
    # The kernel spreads connections over the nodes by their addresses: with 8 pairs of connections,
    # some pair almost surely has one user on each node (all 16 on one node: 1 chance in 2**15).
    clients: list[Client] = []
    try:
        pairs = []
        for i in range(8):
            sender, recipient = (Client(nodes.url, echo=False, announce_login=False) for _ in range(2))
            clients += [sender, recipient]
            inbox = Inbox()
            session = recipient.create(f"bruno{i}", "secreto123")
            session.on_message(inbox)
            pairs.append((sender.create(f"ana{i}", "secreto123"), inbox))
        for i, (session, _) in enumerate(pairs):
            session.send_message(f"bruno{i}", f"hola {i}")
        for i, (_, inbox) in enumerate(pairs):
            try:
                got = inbox.wait_for(1, timeout=5)
            except AssertionError as exc:
                raise AssertionError(f"pair {i}: {exc}; the nodes said: {nodes.said()}") from None
            assert [m.body for m in got] == [f"hola {i}"]
    finally:
        for client in clients:
            client.close()


def test_more_restarts_than_the_intensity_stop_every_node(nodes: Nodes) -> None:
    for _ in range(MAX_RESTARTS):
        os.kill(nodes.pids["t-2"], signal.SIGKILL)
        nodes.line(r"^node t-2 exited \(killed by SIGKILL\): restarting it$")
        nodes.line(r"^node t-2 ready")
    os.kill(nodes.pids["t-2"], signal.SIGKILL)  # one more within MAX_SECONDS: restarting is not helping
    assert nodes.proc.wait(60) == 1
    gave_up = nodes.line(r"^chatactors serve: node t-2 exited \(killed by SIGKILL\), more than")
    assert gave_up.string.endswith(
        f"more than {MAX_RESTARTS} restarts within {MAX_SECONDS:g} s: restarting is not helping, stopping every node"
    )
    nodes.line(r"^chatactors nodes stopped$")
    poll_until(lambda: not any(alive(pid) for pid in nodes.every_pid), what="every node to exit")
    assert len(nodes.every_pid) == 2 + MAX_RESTARTS and not listeners(nodes.port)


def test_a_second_supervisor_on_the_same_port_is_refused(nodes: Nodes, pg_url: str) -> None:
    # SO_REUSEPORT alone would let it join the first one's nodes, halving their connections.
    argv = [*SERVE, "--nodes", "2", "--port", str(nodes.port), "--database-url", pg_url]
    done = run(argv, env_with(**{SECRET_ENV: SECRET}))
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith(
        f"chatactors server could not start: 127.0.0.1:{nodes.port} is already in use"
    )
    assert all(alive(pid) for pid in nodes.pids.values())


def test_nodes_stop_when_their_supervisor_is_killed(nodes: Nodes) -> None:
    nodes.proc.kill()  # no signal to pass on: each node sees its pipe from the supervisor end
    nodes.proc.wait(10)
    poll_until(lambda: not any(alive(pid) for pid in nodes.every_pid), timeout=30, what="every node to exit")
    assert not listeners(nodes.port)
