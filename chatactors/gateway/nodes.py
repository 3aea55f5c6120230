"""Several nodes on one machine: ``chatactors serve --nodes N``, an OTP-style supervisor of N nodes.

Each node is a child process, ``python -m chatactors serve --cluster --reuse-port ...``: a gateway
and its own actors, one member of the cluster that shares the PostgreSQL database. Every node
listens on the same port with SO_REUSEPORT and the kernel spreads new connections over them. The
parent serves nothing: it holds the port bound but never listening (a socket that does not listen
is given no connection), so that no other program takes it while a node restarts.

The parent supervises as OTP does: nodes start one after another, each once the previous one
serves (two schemas created at once on a fresh database would collide); a node that cannot start
the first time stops everything (starting again would fail the same way); a node that served and
then exits abnormally is restarted, unless more than ``max_restarts`` happened within
``max_seconds``: restarting is not helping, so everything stops and the parent exits 1. A node
that exits 0 was stopped on purpose (someone sent it SIGTERM): OTP's transient child, not
restarted. SIGINT or SIGTERM to the parent is passed on to every node; a node still running after
:data:`STOP_TIMEOUT` is killed by its pid.

A node learns it is supervised from ``--supervised FD``: it writes its URL to ``FD`` once it serves
(its own banner would be N copies of the same), and it stops when its stdin, a pipe from the parent,
ends: a parent killed with -9 leaves no node behind.

What decides (which refusal, which node id, what an exit means) is pure and comes first; the
processes and threads are the shell after it.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from chatactors.cluster.membership_table import MAX_NODE_ID, check_postgres
from chatactors.core.supervision import RestartIntensity
from chatactors.errors import ClusterNeedsPostgres
from chatactors.settings import DEFAULT_SYSTEM
from chatactors.transport import MIN_SECRET_LENGTH, SECRET_ENV

MAX_RESTARTS = 5  # restarts of nodes ...
MAX_SECONDS = 60.0  # ... within this many seconds, else everything stops
STOP_TIMEOUT = 20.0  # seconds the nodes get to stop (a gateway's close takes up to 5) before a kill
WILDCARDS = ("", "0.0.0.0", "::")


# -- the decisions (pure) ---------------------------------------------------------------------------
def node_count(text: str) -> int:
    """``--nodes``: a number of nodes, or ``auto`` for one per CPU."""
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"a number of nodes or auto, not {text!r}") from None
    if count < 1:
        raise ValueError(f"a number of nodes from 1 up, or auto, not {count}")
    return count


def refusal(database_url: str, system: str | None, environ: Mapping[str, str]) -> str | None:
    """Why a cluster node cannot run with these settings, in one line; None if it can.

    Checked before anything starts: a node that found out later would fail N times over."""
    try:
        check_postgres(database_url)
    except ClusterNeedsPostgres as exc:
        return exc.detail
    if system not in (None, DEFAULT_SYSTEM):
        return f"a cluster node runs its actors on {DEFAULT_SYSTEM} (one node is one process), not {system}"
    secret = environ.get(SECRET_ENV, "")
    if len(secret) < MIN_SECRET_LENGTH:
        return (
            f"clustering needs {SECRET_ENV}: the same secret, at least {MIN_SECRET_LENGTH} characters, "
            f"on every node ({'it is too short' if secret else 'it is not set'}); the nodes sign every "
            "frame between them with it"
        )
    return None


def node_ids(prefix: str, count: int) -> tuple[str, ...]:
    """``prefix-1`` .. ``prefix-N``: the same ids on every restart, so that a restarted node takes
    its row back with a new epoch (docs/cluster.md) instead of leaving a dead one behind."""
    room = MAX_NODE_ID - len(f"-{count}")
    return tuple(f"{prefix[:room]}-{i}" for i in range(1, count + 1))


def public_host(host: str, advertise: str) -> str:
    """Where clients reach a gateway bound to ``host``: a wildcard is reached on ``advertise``."""
    return advertise if host in WILDCARDS else host


def exit_reason(returncode: int) -> str:
    """``exit code 1``, or ``killed by SIGKILL`` (Popen's negative return codes)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(frozen=True, slots=True)
class RestartNode:
    node: str
    why: str


@dataclass(frozen=True, slots=True)
class LeaveNode:
    """The node is gone for good; the others serve on."""

    node: str
    why: str


@dataclass(frozen=True, slots=True)
class StopNodes:
    """Stop every node and exit 1."""

    why: str


Decision = RestartNode | LeaveNode | StopNodes


def on_exit(node: str, returncode: int, *, served: bool, intensity: RestartIntensity) -> Decision:
    """What the exit of a node nobody asked to stop means (once the supervisor stops them all, exits
    are only waited for). ``served``: the node served at least once. Records a restart in
    ``intensity`` when it decides one."""
    why = f"node {node} exited ({exit_reason(returncode)})"
    if not served:
        return StopNodes(f"{why} before it served: stopping every node")
    if returncode == 0:
        return LeaveNode(node, f"{why}: it was stopped, so it is not restarted")
    if not intensity.allow():
        return StopNodes(
            f"{why}, more than {intensity.max_restarts} restarts within {intensity.max_seconds:g} s:"
            " restarting is not helping, stopping every node"
        )
    return RestartNode(node, f"{why}: restarting it")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What every node is started with; ``options`` are more ``serve`` arguments, passed as they are."""

    host: str
    port: int
    database_url: str
    advertise: str = "127.0.0.1"
    options: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"ws://{public_host(self.host, self.advertise)}:{self.port}"

    def argv(self, node_id: str, ready_fd: int) -> list[str]:
        """The command line of node ``node_id``, which writes its URL to ``ready_fd`` once it serves."""
        return [
            sys.executable,
            "-m",
            "chatactors",
            "serve",
            "--cluster",
            "--reuse-port",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--database-url={self.database_url}",
            f"--advertise={self.advertise}",
            f"--node-id={node_id}",
            f"--supervised={ready_fd}",
            *self.options,
        ]


# -- a supervised node's side ----------------------------------------------------------------------
def stop_with_supervisor() -> None:
    """SIGTERM this process once stdin, the supervisor's pipe, ends (the supervisor is gone); the
    server then stops as it does on any SIGTERM."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds the buffer's lock,
        # and the interpreter aborts at exit ("could not acquire lock ... at interpreter shutdown").
        try:
            while os.read(0, 4096):  # nothing is ever written: b"" is the pipe's end
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="chatactors-supervisor-watch", daemon=True).start()


def announce_ready(fd: int, url: str) -> None:
    """Tell the supervisor this node serves at ``url`` (one line on ``fd``, then closed)."""
    try:
        with open(fd, "w", closefd=True) as pipe:
            pipe.write(url + "\n")
    except BrokenPipeError:
        pass  # the supervisor is gone: stdin's end stops this node


# -- the supervisor (processes and threads) ----------------------------------------------------------
def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (``port`` 0: a free one) without listening, for the nodes to share.

    Refused (OSError EADDRINUSE) when anything else has the port, even another supervisor's nodes,
    which a socket with SO_REUSEPORT alone would silently join."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port:
        with socket.socket(family, kind, proto) as alone:
            # As asyncio binds a server: connections of an earlier server in TIME_WAIT do not count.
            alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            alone.bind(address)
    held = socket.socket(family, kind, proto)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(address)
    except BaseException:
        held.close()
        raise
    return held


@dataclass(frozen=True, slots=True)
class _Ready:
    node: str
    pid: int
    url: str


@dataclass(frozen=True, slots=True)
class _Exited:
    node: str
    pid: int
    returncode: int


@dataclass(frozen=True, slots=True)
class _Signalled:
    signum: int


class Supervisor:
    """Runs the nodes ``ids`` of ``spec`` until a signal, or until it gives up; see the module."""

    def __init__(
        self,
        spec: NodeSpec,
        ids: Sequence[str],
        *,
        intensity: RestartIntensity | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.spec, self.ids = spec, tuple(ids)
        self.intensity = intensity or RestartIntensity(MAX_RESTARTS, MAX_SECONDS)
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.served: set[str] = set()  # nodes that served at least once
        self.serving: set[str] = set()  # nodes whose current process serves
        self.announced = False  # the summary line is printed once, when every node first serves
        self._events: queue.SimpleQueue[_Ready | _Exited | _Signalled] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def run(self) -> int:
        """Start the nodes and supervise them; the exit code: 0 after a signal, 1 when it gave up."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code, forward = 1, int(signal.SIGTERM)
        try:
            code, forward = self._supervise()
        finally:
            self._stop_all(forward)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.say("chatactors nodes stopped")
        return code

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._events.put(_Signalled(signum))  # SimpleQueue.put may be called from a signal handler

    def _supervise(self) -> tuple[int, int]:
        """(exit code, the signal to pass on to the nodes)."""
        waiting = list(self.ids)  # not started yet: each starts once the one before it serves
        self._spawn(waiting.pop(0))
        while True:
            event = self._events.get()
            if isinstance(event, _Signalled):
                name = signal.Signals(event.signum).name
                self.say(f"chatactors serve: {name}: stopping every node")
                return 0, event.signum
            child = self.children.get(event.node)
            if child is None or child.pid != event.pid:
                continue  # from a process already replaced
            if isinstance(event, _Ready):
                self._ready(event, waiting)
                continue
            outcome = self._exited(event, child, waiting)
            if outcome is not None:
                return outcome

    def _ready(self, event: _Ready, waiting: list[str]) -> None:
        self.served.add(event.node)
        self.serving.add(event.node)
        self.say(f"node {event.node} ready on {event.url} (pid {event.pid})")
        if waiting:
            self._spawn(waiting.pop(0))
        elif not self.announced and len(self.serving) == len(self.ids):
            self.announced = True
            self._summary()

    def _exited(
        self, event: _Exited, child: subprocess.Popen[bytes], waiting: list[str]
    ) -> tuple[int, int] | None:
        """Restart the node, or let it go; (exit code, signal) when the supervisor is done."""
        del self.children[event.node]
        self.serving.discard(event.node)
        if child.stdin is not None:
            child.stdin.close()
        decision = on_exit(
            event.node,
            event.returncode,
            served=event.node in self.served,
            intensity=self.intensity,
        )
        if isinstance(decision, StopNodes):
            self.say(f"chatactors serve: {decision.why}", error=True)
            return 1, signal.SIGTERM
        self.say(decision.why)
        if isinstance(decision, RestartNode):
            self._spawn(decision.node)
        elif not self.children and not waiting:
            self.say("chatactors serve: every node has stopped")
            return 0, signal.SIGTERM
        return None

    def _summary(self) -> None:
        where = self.spec.url.removeprefix("ws://")
        self.say(
            f"chatactors: {len(self.ids)} nodes serving ws://{where} (browser: http://{where}/,"
            f" {self.spec.database_url}); Ctrl-C (or SIGTERM) stops them"
        )

    def say(self, line: str, *, error: bool = False) -> None:
        self._write(self.err if error else self.out, line + "\n")

    def _write(self, stream: IO[str], text: str) -> None:
        with self._write_lock:
            stream.write(text)
            stream.flush()

    # -- one node --------------------------------------------------------------------------------
    def _spawn(self, node: str) -> None:
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(
                self.spec.argv(node, write_end),
                stdin=subprocess.PIPE,  # never written: its end tells the node we are gone
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,  # a Ctrl-C reaches us, and the nodes only through us: once
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.children[node] = proc
        assert proc.stdout is not None and proc.stderr is not None
        self._thread(self._pump, node, proc.stdout, self.out)
        self._thread(self._pump, node, proc.stderr, self.err)
        self._thread(self._await_ready, node, proc.pid, read_end)
        self._thread(self._await_exit, node, proc)

    def _thread(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"chatactors-nodes-{args[0]}", daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _pump(self, node: str, source: IO[bytes], sink: IO[str]) -> None:
        """The node's output, line by line, each line led by the node's id."""
        with source:
            for raw in source:
                self._write(sink, f"[{node}] {raw.decode(errors='replace').rstrip()}\n")

    def _await_ready(self, node: str, pid: int, fd: int) -> None:
        with open(fd, encoding="utf-8", errors="replace") as pipe:
            url = pipe.readline().strip()
        if url:  # else the node ended first: its exit says so
            self._events.put(_Ready(node, pid, url))

    def _await_exit(self, node: str, proc: subprocess.Popen[bytes]) -> None:
        self._events.put(_Exited(node, proc.pid, proc.wait()))

    # -- stopping --------------------------------------------------------------------------------
    def _stop_all(self, signum: int) -> None:
        """Pass ``signum`` on to every node, wait for them (at most STOP_TIMEOUT), kill the rest."""
        running = list(self.children.items())
        for _, proc in running:
            if proc.poll() is None:
                proc.send_signal(signum)
        deadline = time.monotonic() + STOP_TIMEOUT
        for node, proc in running:
            try:
                proc.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                self.say(
                    f"chatactors serve: node {node} (pid {proc.pid}) did not stop: killing it", error=True
                )
                proc.kill()
                proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        for thread in self._threads:
            thread.join(2)  # the last lines of the nodes' output; none of them can block for long
        self.children.clear()


def supervise(spec: NodeSpec, count: int, prefix: str | None = None) -> int:
    """Serve with ``count`` nodes until SIGINT/SIGTERM; the exit code (see :class:`Supervisor`).

    Raises OSError (EADDRINUSE) if the port is taken."""
    held = reserve_port(spec.host, spec.port)
    try:
        port = int(held.getsockname()[1])
        spec = NodeSpec(spec.host, port, spec.database_url, spec.advertise, spec.options)
        ids = node_ids(prefix or f"{socket.gethostname()}-{port}", count)
        return Supervisor(spec, ids).run()
    finally:
        held.close()
