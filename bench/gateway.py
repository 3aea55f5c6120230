"""Benchmark of the WebSocket gateway (roadmap V0.5, docs/server.md, docs/performance.md).

Run ``make bench`` or ``.venv/bin/python bench/gateway.py --help``. Every server runs in its own
process (this script with ``--serve``: a ``Chat`` and a ``Gateway``, or with ``--serve --relay``: a bare
``websockets`` relay), on 127.0.0.1 and a free port. Phases (``--phases``):

- load: N clients, each sending 1:1 messages to the next one at a fixed rate for a fixed time, on
  each system base (the clients run in this process, per-connection limits lifted). Printed: offered
  and delivered messages/s, p50/p99 send-to-receive latency.
- idle: 1,000 and 10,000 clients connect, log in and stay idle. Printed: the server's RSS per
  connection, live user actors right after the logins and after the idle timeout.
- stepup: an open-loop load generator, in a process of its own, drives pairs of users (each sends 1:1
  to its partner on a fixed schedule, whatever the answers) at offered rates stepped up until delivered
  falls below 95 % of offered or p99 passes 1 s; against the bare relay first, then chatactors
  (simpleSystemBase, default per-connection limits) on SQLite and PostgreSQL. Printed per rate and
  server: delivered/s, p50/p99, lost and duplicated, the ratio to the relay, the server's CPU per
  message; a PNG plot goes to ``bench/results/``.
- ``--profile``: chatactors at one offered rate (1,000 msg/s) under ``py-spy record``; the summary of
  the profile (``bench/pyspy.py``) is printed, the raw stacks are kept in ``bench/results/``.

Everything listens on loopback; each phase and each step has a deadline; servers are told to quit (and
killed if they do not) in a ``finally``. The open-files limit is raised to its hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.core import fresh_database, percentile  # noqa: E402
from bench.pyspy import Profile, summary  # noqa: E402

PASSWORD = "bench-password"
BASES = {"simple": "simpleSystemBase", "tcp": "multiprocTCPBase"}
RESULTS = ROOT / "bench" / "results"


def raise_open_files(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- the server process --------------------------------------------------------------------------------
def serve_main(args: argparse.Namespace) -> int:
    """``--serve``: a Chat and a Gateway; stdin takes ``stats`` and ``quit``, stdout answers in JSON."""
    from chatactors import Chat, LoginPolicy
    from chatactors.chat import free_port
    from chatactors.gateway import Gateway, Limits

    raise_open_files(args.users * 2 + 1024)
    options: dict[str, Any] = {}
    if args.system == "multiprocTCPBase":
        options["admin_port"] = free_port()
    chat = Chat(
        database_url=args.database_url,
        system=args.system,
        idle_timeout=args.idle_timeout,
        password_profile="cheapest",
        # Thousands of clients logging in at once from 127.0.0.1 are a benchmark, not a login storm.
        login_policy=LoginPolicy(hash_queue=100_000, hashes_per_address=100_000),
        echo=False,
        announce_login=False,
        **options,
    )
    try:
        for i in range(args.users):
            chat.register(f"u{i:05d}", PASSWORD)
        if args.default_limits:  # what `chatactors serve` runs with
            gateway = Gateway(chat, "127.0.0.1", 0)
        else:
            limits = Limits(rate=100_000, burst=100_000, max_pending=1_000_000)
            gateway = Gateway(chat, "127.0.0.1", 0, limits=limits, workers=64)
        # multiprocTCPBase: the admin detaches into a process group of its own, with every actor in it
        directory = chat.os_pid(chat.roles.directory)
        group = os.getpgid(directory) if directory != os.getpid() else None
        asyncio.run(
            _serve(gateway.start, gateway.stop, lambda: gateway.port, lambda: gateway.chat.stats(), group)
        )
    finally:
        chat.shutdown()
    return 0


async def _serve(
    start: Callable[[], Any],
    stop: Callable[[], Any],
    port: Callable[[], int],
    stats: Callable[[], Any],
    group: int | None = None,
) -> None:
    from chatactors.gateway.runner import tune_collector

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    await start()
    tune_collector()  # as `chatactors serve` does, for the relay too: a process setting, not a feature
    _say({"port": port(), "pid": os.getpid(), "group": group or 0})

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stats":
                _say(dataclasses.asdict(stats()))
            elif line.strip() == "threads":  # which OS thread is which, for the profile's CPU per thread
                _say({str(t.native_id): t.name for t in threading.enumerate()})
            elif line.strip() == "quit":
                break
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=commands, daemon=True).start()
    await done.wait()
    await stop()


# -- the bare relay --------------------------------------------------------------------------------------
@dataclass
class RelayStats:
    online_users: int = 0
    live_users: int = 0
    retirements: int = 0


class Relay:
    """The transport alone: the same frames as chatactors for login and send, no database, no actors.

    A ``send`` is answered with ``sent`` and pushed to the partner as ``message``, both shaped as the
    gateway shapes them (ids, ISO times, the message nested in ``sent``), so both cost the same JSON.
    """

    def __init__(self) -> None:
        self.users: dict[str, tuple[int, ServerConnection]] = {}
        self.ids = itertools.count(1)
        self.user_ids = itertools.count(1)
        self.server: Any = None
        self.port = 0

    async def start(self) -> None:
        self.server = await serve(
            self.handle, "127.0.0.1", 0, max_size=64 * 1024, max_queue=32, compression=None
        )
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    def stats(self) -> RelayStats:
        return RelayStats(online_users=len(self.users))

    async def handle(self, ws: ServerConnection) -> None:
        me: tuple[str, int] | None = None
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "send" and me is not None:
                    await self._send(ws, me, frame)
                elif kind == "login":
                    me = (frame["username"], next(self.user_ids))
                    self.users[me[0]] = (me[1], ws)
                    reply = {
                        "type": "logged_in",
                        "user_id": me[1],
                        "username": me[0],
                        "token": "-",
                        "inbox": [],
                    }
                    await ws.send(json.dumps(reply, ensure_ascii=False))
                else:
                    await ws.send(json.dumps({"type": "error", "code": "invalid", "detail": "relay"}))
        except ConnectionClosed:
            pass
        finally:
            if me is not None:
                self.users.pop(me[0], None)

    async def _send(self, ws: ServerConnection, me: tuple[str, int], frame: dict[str, Any]) -> None:
        to = self.users.get(frame["to"])
        if to is None:
            await ws.send(json.dumps({"type": "error", "code": "user_not_found", "detail": "offline"}))
            return
        now = datetime.now(UTC).isoformat()
        message = {
            "id": next(self.ids),
            "sender": me[0],
            "sender_id": me[1],
            "body": frame["body"],
            "sent_at": now,
            "status": "entregado",
            "recipient": frame["to"],
            "recipient_id": to[0],
        }
        with contextlib.suppress(ConnectionClosed):  # the partner left: the sender is still answered
            await to[1].send(json.dumps({"type": "message", **message}, ensure_ascii=False))
        sent = {
            "type": "sent",
            "client_id": frame.get("client_id"),
            "id": message["id"],
            "status": "entregado",
        }
        sent.update(sent_at=now, message=message)
        await ws.send(json.dumps(sent, ensure_ascii=False))


def relay_main() -> int:
    """``--serve --relay``: the bare relay; stdin takes ``stats`` and ``quit`` as for a Chat."""
    raise_open_files(1 << 16)
    relay = Relay()
    asyncio.run(_serve(relay.start, relay.stop, lambda: relay.port, relay.stats))
    return 0


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class ServerProcess:
    """This script in ``--serve`` mode, as a child process."""

    def __init__(
        self, system: str, database_url: str, users: int, idle_timeout: float, extra: tuple[str, ...] = ()
    ) -> None:
        argv = [sys.executable, __file__, "--serve", "--system", system, "--database-url", database_url]
        argv += ["--users", str(users), "--idle-timeout", str(idle_timeout), *extra]
        env = {**os.environ, "THESPLOG_FILE": os.devnull, "THESPIAN_BASE_IPADDR": "127.0.0.1"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read(timeout=300)
        self.port, self.pid, self.group = int(hello["port"]), int(hello["pid"]), int(hello["group"])
        self.url = f"ws://127.0.0.1:{self.port}"

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise RuntimeError("the bench server did not answer")
        return json.loads(box[0])  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read(timeout=60)

    def rss(self) -> float:
        return rss_mib(self.pid)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def server(
    system: str, database_url: str, users: int, idle_timeout: float, extra: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    proc = ServerProcess(system, database_url, users, idle_timeout, extra)
    try:
        yield proc
    finally:
        proc.close()


# -- clients ----------------------------------------------------------------------------------------------
async def log_in(url: str, username: str) -> ClientConnection:
    ws = await connect(url, open_timeout=60, ping_interval=None, max_size=2**22)
    await ws.send(json.dumps({"type": "login", "username": username, "password": PASSWORD}))
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "logged_in":
            return ws
        if frame["type"] == "error":
            raise RuntimeError(f"{username} could not log in: {frame}")


async def log_in_all(url: str, names: list[str], parallel: int = 100) -> list[ClientConnection]:
    gate = asyncio.Semaphore(parallel)

    async def one(name: str) -> ClientConnection:
        async with gate:
            return await log_in(url, name)

    return list(await asyncio.gather(*(one(n) for n in names)))


@dataclass
class Load:
    sent: int = 0
    acked: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    last_receive: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


async def load_phase(
    url: str, clients: int, rate: float, seconds: float, server: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Each client sends to the next at ``rate / clients`` msg/s for ``seconds``; all receive.

    With ``server`` (its pid and process group), the server's CPU (every process of it) is read once every client has
    logged in and again when the last message has arrived: logins are not charged to the messages.
    """
    names = [f"u{i:05d}" for i in range(clients)]
    sockets = await log_in_all(url, names)
    cpu_before = tree_cpu(*server)[0] if server else 0.0
    load = Load()
    run = os.urandom(4).hex()  # client ids are unique per run: a repeated one is (rightly) stored once
    start = time.monotonic()
    stop_at = start + seconds
    interval = clients / rate

    async def sender(i: int, ws: ClientConnection) -> None:
        to = names[(i + 1) % clients]
        due = start + interval * i / clients  # spread the clients over one interval
        n = 0
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            n += 1
            body = f"{time.monotonic():.9f} {i}"
            await ws.send(json.dumps({"type": "send", "to": to, "body": body, "client_id": f"{run}-{i}-{n}"}))
            load.sent += 1
            due += interval

    async def receiver(ws: ClientConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "message":
                now = time.monotonic()
                load.latencies.append(now - float(frame["body"].split()[0]))
                load.received += 1
                load.last_receive = now
            elif frame["type"] == "sent":
                load.acked += 1
            elif frame["type"] == "error":
                load.errors[frame["code"]] = load.errors.get(frame["code"], 0) + 1

    readers = [asyncio.create_task(receiver(ws)) for ws in sockets]
    await asyncio.gather(*(sender(i, ws) for i, ws in enumerate(sockets)))
    drain_until = time.monotonic() + 15
    while load.received < load.sent and time.monotonic() < drain_until:
        await asyncio.sleep(0.05)
    cpu, processes = tree_cpu(*server) if server else (0.0, 0)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    elapsed = max(load.last_receive, stop_at) - start
    lat = sorted(load.latencies) or [float("nan")]
    return {
        "offered": rate,
        "sent": load.sent,
        "acked": load.acked,
        "errors": load.errors,
        "received": load.received,
        "delivered_per_s": load.received / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "cpu_ms_per_msg": 1000 * (cpu - cpu_before) / max(1, load.received),
        "processes": processes,
    }


async def idle_phase(srv: ServerProcess, count: int, idle_timeout: float) -> dict[str, Any]:
    """``count`` clients log in and stay idle: RSS per connection, live actors before and after."""
    before = srv.rss()
    t0 = time.monotonic()
    sockets = await log_in_all(srv.url, [f"u{i:05d}" for i in range(count)], parallel=200)
    login_s = time.monotonic() - t0
    peak = srv.stats()
    after = srv.rss()
    deadline = time.monotonic() + idle_timeout + 60
    stats = peak
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        stats = srv.stats()
        if stats["live_users"] == 0:
            break
    resting = srv.rss()
    for ws in sockets:
        await ws.close()
    return {
        "connections": count,
        "login_s": login_s,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "kib_per_connection": (after - before) * 1024 / count,
        "kib_per_connection_resting": (resting - before) * 1024 / count,
        "live_users_peak": peak["live_users"],
        "online_users": stats["online_users"],
        "live_users_after_idle": stats["live_users"],
        "retirements": stats["retirements"],
    }


def _errors(errors: dict[str, int]) -> str:
    return "".join(f", {n} {code}" for code, n in errors.items())


# -- the open-loop step-up: its load generator runs in a process of its own ---------------------------------
ACK = '{"type": "sent"'  # both servers start a 'sent' frame so: counted without parsing it
SEND = '{{"type": "send", "to": "{to}", "body": "{body}", "client_id": "{run}-{step}-{k}"}}'


@dataclass(frozen=True)
class Plan:
    """One server's step-up; every step is bounded in messages (rate x seconds) and in time."""

    rates: tuple[float, ...]
    seconds: float = 10.0
    drain: float = 5.0  # seconds after the last send to wait for what is still on its way
    per_user: float = 10.0  # msg/s each user sends at most: half the default 20 frames/s per connection
    min_users: int = 20
    body: int = 48  # characters per message body
    held_share: float = 0.95  # a step holds while delivered >= this share of offered...
    held_p99: float = 1.0  # ...and p99 <= this many seconds
    uvloop: bool = True  # the generator's loop (when installed): it must not be the bottleneck
    login_parallel: int = 100  # logins at once; `chatactors serve` allows 4 password hashes per address
    arrivals: bool = False  # also report each message's latency (NaN: lost), for per-pair figures

    def users(self, rate: float) -> int:
        n = max(self.min_users, math.ceil(rate / self.per_user))
        return n + n % 2


@dataclass
class StepResult:
    server: str
    offered: float
    users: int
    planned: int
    sent: int
    received: int
    duplicated: int
    lost: int
    acked: int
    errors: dict[str, int]
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float  # how late the generator itself sent (p99): high means it was the bottleneck
    gen_cpu: float  # the generator's CPU, in cores
    server_cpu: float  # the server's CPU, in cores
    server_us_per_msg: float  # the server's CPU per delivered message
    server_system: float  # the share of it in the kernel (syscalls: sockets, futexes, the database)
    server_switches_per_msg: float  # context switches of all the server's threads per delivered message
    held: bool
    round: int = 1

    @property
    def label(self) -> str:
        return self.server if self.round == 1 else f"{self.server} #{self.round}"

    def row(self, relay: StepResult | None) -> str:
        ratio = (
            f"{self.delivered_per_s / relay.delivered_per_s:5.2f}"
            if relay and relay.delivered_per_s
            else "    -"
        )
        errors = ",".join(f"{n} {code}" for code, n in self.errors.items()) or "-"
        return (
            f"  {self.label:11} {self.offered:7.0f} {self.users:5} {self.delivered_per_s:9.1f} "
            f"{self.p50_ms:8.2f} {self.p99_ms:8.2f} {self.lost:6} {self.duplicated:4}  {ratio} "
            f"{self.server_us_per_msg:6.0f} {self.server_system:4.0%} {self.server_switches_per_msg:6.1f} {self.server_cpu:5.2f} "
            f"{self.gen_cpu:5.2f} {self.send_lag_p99_ms:7.1f}  {'yes' if self.held else 'NO '}  {errors}"
        )


HEADER = (
    "  server      offered users  delivered   p50 ms   p99 ms   lost  dup  ratio  srv us  sys "
    "cs/msg srv c gen c lag p99  held errors\n"
    "              (msg/s)          (msg/s)                                relay  /msg"
)


def proc_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds a process has used, all its threads: (user, system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def server_pids(pid: int, group: int) -> set[int]:
    """The server and its actors: on multiprocTCPBase the admin detaches into a process group of its
    own (``group``) with its logger and every actor; 0 is simpleSystemBase, one process."""
    found = {pid}
    for entry in os.listdir("/proc") if group else ():
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) == group:
                    found.add(int(entry))
    return found


def tree_cpu(pid: int, group: int) -> tuple[float, int]:
    """CPU seconds (user + system) of the server's processes, and how many there are."""
    total, pids = 0.0, server_pids(pid, group)
    for one in pids:
        with contextlib.suppress(OSError):
            total += sum(proc_cpu(one))
    return total, len(pids)


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds per live thread of a process, (user, system): syscalls and GIL-free C count too."""
    out: dict[int, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            out[int(task)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def pids_cpu(pids: tuple[int, ...]) -> tuple[float, float]:
    """CPU seconds (user, system) of several processes together: a server may be several nodes."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a node that exited (and was restarted) counts no more
            one = proc_cpu(pid)
            user, system = user + one[0], system + one[1]
    return user, system


def proc_switches(pid: int) -> int:
    """Context switches (voluntary and not) of every live thread of a process: hand-offs show here."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as f:
            total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
    return total


class _Step:
    """The state of one step: when each message was due, when (and how often) it arrived."""

    def __init__(self, number: int, rate: float, users: int, planned: int) -> None:
        self.number, self.rate, self.users, self.planned = number, rate, users, planned
        self.start = 0.0
        self.arrived = array("d", [math.nan]) * planned
        self.sent = self.unique = self.duplicated = self.acked = 0
        self.lag: list[float] = []
        self.errors: dict[str, int] = {}
        self.last = 0.0

    def due(self, k: int) -> float:
        return self.start + k / self.rate


class LoadGenerator:
    """Pairs of users (0-1, 2-3, ...) on one asyncio loop; message k of a step is due at start + k/rate
    and is sent by user k mod users to its partner. Latency runs from the due time, not the actual send,
    so a generator or a server that falls behind shows in the figures (no coordinated omission)."""

    def __init__(
        self, url: str, server_pids: tuple[int, ...], plan: Plan, report: Callable[[str, Any], None]
    ) -> None:
        self.url, self.server_pids, self.plan, self.report = url, server_pids, plan, report
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.step: _Step | None = None
        self.steps = itertools.count(1)
        self.run = os.urandom(3).hex()  # client ids are unique per run (a repeated one is stored once)
        self.stray = 0  # messages of an earlier step that came after it ended
        self.filler = "x" * max(0, plan.body - 14)

    @staticmethod
    def name(i: int) -> str:
        return f"u{i:05d}"

    def body(self, step: int, k: int) -> str:
        return f"S{step:03d}K{k:09d} {self.filler}"

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                step = self.step
                if step is None:
                    continue
                assert isinstance(raw, str)
                if raw.startswith(ACK):
                    step.acked += 1
                    continue
                frame = json.loads(raw)
                if frame["type"] == "message":
                    now = time.perf_counter()
                    body = frame["body"]
                    if int(body[1:4]) != step.number:
                        self.stray += 1
                        continue
                    k = int(body[5:14])
                    if math.isnan(step.arrived[k]):
                        step.arrived[k] = now
                        step.unique += 1
                        step.last = now
                    else:
                        step.duplicated += 1
                elif frame["type"] == "error":
                    step.errors[frame["code"]] = step.errors.get(frame["code"], 0) + 1

    async def grow(self, users: int) -> None:
        """Log in users up to ``users``; each new pair exchanges one message first (not counted), so
        its user actors are active and its names resolved before a step measures anything."""
        have = len(self.sockets)
        if users <= have:
            return
        names = [self.name(i) for i in range(have, users)]
        fresh = await log_in_all(self.url, names, parallel=self.plan.login_parallel)
        self.sockets += fresh
        self.readers += [asyncio.create_task(self._read(ws)) for ws in fresh]
        warm = _Step(next(self.steps), 1.0, users, users)
        self.step = warm
        for i in range(have, users):
            to = self.name(i ^ 1)
            await self.sockets[i].send(
                SEND.format(to=to, body=self.body(warm.number, i), run=self.run, step=0, k=i)
            )
        deadline = time.monotonic() + 60
        while warm.unique < users - have and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if warm.unique < users - have:
            raise RuntimeError(f"warm-up: {warm.unique} of {users - have} messages arrived in 60 s")

    async def _send(self, step: _Step, i: int, stop_at: float) -> None:
        ws, to = self.sockets[i], self.name(i ^ 1)
        for k in range(i, step.planned, step.users):
            due = step.due(k)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            if now > stop_at:
                return  # the generator (or the socket) fell too far behind: the rest is not sent
            step.lag.append(now - due)
            try:
                await ws.send(
                    SEND.format(to=to, body=self.body(step.number, k), run=self.run, step=step.number, k=k)
                )
            except ConnectionClosed:
                return
            step.sent += 1

    async def _progress(self, step: _Step, server: str) -> None:
        while True:
            await asyncio.sleep(1.0)
            elapsed = time.perf_counter() - step.start
            self.report(
                "progress",
                f"{server} {step.rate:.0f} msg/s: {elapsed:4.1f}/{self.plan.seconds:g} s, sent {step.sent}, "
                f"delivered {step.unique}, {step.users} users",
            )

    async def measure(self, rate: float, server: str) -> StepResult:
        plan = self.plan
        users = plan.users(rate)
        await self.grow(users)
        planned = max(1, round(rate * plan.seconds))
        step = _Step(next(self.steps), rate, users, planned)
        cpu0, gen0, sw0 = pids_cpu(self.server_pids), time.process_time(), self._switches()
        step.start = time.perf_counter() + 0.05
        self.step = step
        self.report("started", {"rate": rate})
        ticker = asyncio.create_task(self._progress(step, server))
        stop_at = step.start + plan.seconds + plan.drain
        await asyncio.gather(*(self._send(step, i, stop_at) for i in range(users)))
        end = max(time.perf_counter(), step.due(planned))
        deadline = end + plan.drain
        while step.unique < step.sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        ticker.cancel()
        wall = time.perf_counter() - step.start
        (user1, sys1), gen = pids_cpu(self.server_pids), time.process_time() - gen0
        cpu, system = user1 + sys1 - sum(cpu0), sys1 - cpu0[1]
        switches = self._switches() - sw0
        latencies = sorted(a - step.due(k) for k, a in enumerate(step.arrived) if not math.isnan(a))
        elapsed = max(step.last, step.due(planned)) - step.start
        delivered = step.unique / elapsed if elapsed > 0 else 0.0
        p99 = percentile(latencies, 99)
        result = StepResult(
            server=server,
            offered=rate,
            users=users,
            planned=planned,
            sent=step.sent,
            received=step.unique,
            duplicated=step.duplicated,
            lost=planned - step.unique,
            acked=step.acked,
            errors=step.errors,
            delivered_per_s=delivered,
            p50_ms=1000 * percentile(latencies, 50),
            p99_ms=1000 * p99,
            max_ms=1000 * (latencies[-1] if latencies else math.nan),
            send_lag_p99_ms=1000 * percentile(step.lag, 99),
            gen_cpu=gen / wall,
            server_cpu=cpu / wall,
            server_us_per_msg=1e6 * cpu / max(1, step.unique),
            server_system=system / cpu if cpu > 0 else 0.0,
            server_switches_per_msg=switches / max(1, step.unique),
            held=delivered >= plan.held_share * rate and not (p99 > plan.held_p99) and bool(latencies),
        )
        self.step = None
        if plan.arrivals:
            late = [a - step.due(k) for k, a in enumerate(step.arrived)]
            self.report("arrivals", {"rate": rate, "users": users, "latency": late})
        return result

    def _switches(self) -> int:
        return sum(proc_switches(pid) for pid in self.server_pids)

    async def stepup(self, server: str) -> None:
        try:
            for rate in self.plan.rates:
                result = await self.measure(rate, server)
                self.report("step", dataclasses.asdict(result))
                if not result.held:
                    break
        finally:
            for ws in self.sockets:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)
            for task in self.readers:
                task.cancel()
            await asyncio.gather(*self.readers, return_exceptions=True)


def loadgen_main(pipe: Pipe, url: str, server_pids: tuple[int, ...], plan: Plan, server: str) -> None:
    """The load generator's process: runs the plan, reports progress and each step on ``pipe``."""
    raise_open_files(1 << 16)

    def report(kind: str, payload: Any) -> None:
        pipe.send((kind, payload))

    try:
        run: Callable[[Any], Any] = asyncio.run
        if plan.uvloop:
            with contextlib.suppress(ImportError):
                import uvloop

                run = uvloop.run
        run(LoadGenerator(url, server_pids, plan, report).stepup(server))
        report("done", None)
    except BaseException as exc:  # told to the parent, which prints it
        report("error", f"{type(exc).__name__}: {exc}")


def drive(
    server: str,
    url: str,
    pids: tuple[int, ...],
    plan: Plan,
    on_started: Callable[[float], None] | None = None,
    on_step: Callable[[], None] | None = None,
    round_: int = 1,
    on_arrivals: Callable[[dict[str, Any]], None] | None = None,
) -> list[StepResult]:
    """Run the load generator against the server at ``url`` (its processes: ``pids``) in a process of
    its own; print a progress line meanwhile. ``on_arrivals``: each step's latencies (``plan.arrivals``)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=loadgen_main, args=(child, url, pids, plan, server), daemon=True)
    proc.start()
    results: list[StepResult] = []
    tty = sys.stdout.isatty()
    shown = 0.0
    silent_for = plan.seconds + plan.drain + 180  # a step, its drain, and logging users in
    try:
        silent_since = time.monotonic()
        while True:
            if not parent.poll(1.0):
                if not proc.is_alive():
                    raise RuntimeError(f"the load generator exited ({proc.exitcode})")
                if time.monotonic() - silent_since > silent_for:
                    raise RuntimeError(f"the load generator said nothing for {silent_for:.0f} s")
                continue
            silent_since = time.monotonic()
            kind, payload = parent.recv()
            if kind == "progress":
                if tty:
                    print(f"\r  ... {payload}\033[K", end="", flush=True)
                elif time.monotonic() - shown >= 5:
                    print(f"  ... {payload}", flush=True)
                    shown = time.monotonic()
            elif kind == "started" and on_started is not None:
                on_started(payload["rate"])
            elif kind == "arrivals" and on_arrivals is not None:
                on_arrivals(payload)
            elif kind == "step":
                if on_step is not None:
                    on_step()
                result = StepResult(**payload)
                result.round = round_
                results.append(result)
                print(("\r\033[K" if tty else "") + result.row(None), flush=True)
            elif kind == "error":
                raise RuntimeError(f"load generator: {payload}")
            elif kind == "done":
                return results
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


@contextlib.contextmanager
def stepup_server(kind: str, pg_url: str, tmp: Path, users: int) -> Iterator[ServerProcess]:
    """``relay``, or chatactors on simpleSystemBase with ``sqlite`` or ``postgres`` (a database of its own)."""
    if kind == "relay":
        with server("none", "", 0, 300.0, ("--relay",)) as srv:
            yield srv
        return
    with fresh_database(kind, pg_url, tmp, f"stepup-{kind}", pg_db=f"chatactors_bench_{os.getpid()}") as db:
        with server("simpleSystemBase", db.url, users, 300.0, ("--default-limits",)) as srv:
            yield srv


def stepup_phase(servers: list[str], plan: Plan, pg_url: str, tmp: Path, rounds: int = 1) -> list[StepResult]:
    print(
        f"\ngateway step-up (open loop): offered {', '.join(f'{r:g}' for r in plan.rates)} msg/s, "
        f"{plan.seconds:g} s per step (+ up to {plan.drain:g} s drain), users sending <= {plan.per_user:g} "
        f"msg/s each (at least {plan.min_users}); chatactors on simpleSystemBase with default limits; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    print(HEADER, flush=True)
    results: list[StepResult] = []
    for round_ in range(1, rounds + 1):  # rounds interleave the servers: a noisy minute hits all alike
        for kind in servers:
            t0 = time.monotonic()
            with stepup_server(kind, pg_url, tmp, plan.users(max(plan.rates))) as srv:
                try:
                    results += drive(kind, srv.url, (srv.pid,), plan, round_=round_)
                except RuntimeError as exc:
                    print(f"  {kind}: {exc}", flush=True)
            print(f"  ({kind}, round {round_}: {time.monotonic() - t0:.0f} s in all)", flush=True)
    return results


def stepup_report(results: list[StepResult]) -> None:
    relay = {(r.round, r.offered): r for r in results if r.server == "relay"}
    print(
        "\nstep-up, by offered rate (ratio: delivered / the relay's delivered at the same rate, same round)"
    )
    print(HEADER)
    for rate in sorted({r.offered for r in results}):
        for r in results:
            if r.offered == rate:
                print(r.row(relay.get((r.round, rate))))
    held: dict[tuple[int, str], float] = {}
    for r in results:
        held.setdefault((r.round, r.server), 0.0)
        if r.held:
            held[(r.round, r.server)] = max(held[(r.round, r.server)], r.delivered_per_s)
    print("\nheld (highest delivered rate of a step that held):")
    for (round_, s), rate in sorted(held.items(), key=lambda kv: (kv[0][0], -kv[1])):
        top = held.get((round_, "relay"), 0.0)
        ratio = f", {rate / top:.0%} of the relay" if top and s != "relay" else ""
        label = s if round_ == 1 else f"{s} #{round_}"
        print(f"  {label:11} {rate:8.1f} msg/s{ratio}")


def plot(results: list[StepResult], path: Path) -> Path | None:
    """Delivered rate and p99 against offered rate, one line per server (needs the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing (pip install -e '.[bench]')")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(r.server for r in results))}
    for s in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == s]
        x = [r.offered for r in rows]
        style = {"marker": "o", "label": s, "color": colours[rows[0].server]}
        style["linestyle"] = ("-", "--", ":", "-.")[(rows[0].round - 1) % 4]
        left.plot(x, [r.delivered_per_s for r in rows], **style)
        right.plot(x, [r.p99_ms for r in rows], **style)
    rates = sorted({r.offered for r in results})
    left.plot(rates, rates, linestyle=":", color="grey", label="offered")
    path.with_suffix(".json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    for ax, title, unit in ((left, "delivered", "msg/s"), (right, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.minorticks_off()
        ax.set_xlabel("offered (msg/s)")
        ax.set_ylabel(f"{title} ({unit})")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    right.axhline(1000, linestyle=":", color="grey")
    fig.suptitle(f"gateway step-up, {time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPUs, shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- profile: py-spy on the server at one offered rate ----------------------------------------------------
THREAD_ROLES = (
    ("MainThread", "event loop"),
    ("chatactors-gateway", "thread pool (executor)"),
    ("chatactors-driver", "actor driver"),
    ("chatactors-push", "push dispatcher"),
)


class Spy:
    """``py-spy record`` on the server, from 2 s after a step starts to 2 s before it ends (the steady
    state), and the CPU each of its threads used meanwhile (from /proc: exact, syscalls included).

    Only samples of the thread holding the GIL are kept (``--gil``): on a busy 2-core machine a thread
    that has just been woken waits its turn in the run queue, and py-spy would count that as running.
    Time outside the GIL (socket syscalls, SQLite's C, waiting on PostgreSQL) is in the CPU per thread.
    """

    def __init__(
        self, exe: str, srv: ServerProcess, seconds: float, out: Path, flags: tuple[str, ...]
    ) -> None:
        self.srv, self.seconds = srv, seconds
        self.argv = [exe, "record", "--pid", str(srv.pid), "--format", "raw", "--rate", "200", *flags]
        self.argv += ["--nonblocking", "--duration", f"{seconds - 4:.0f}", "--output", str(out)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu0: dict[int, tuple[float, float]] = {}
        self.cpu1: dict[int, tuple[float, float]] = {}
        self.t0 = self.t1 = 0.0

    def start(self, _rate: float) -> None:
        script = 'sleep 2; exec "$@"'
        self.proc = subprocess.Popen(["sh", "-c", script, "sh", *self.argv], stdout=subprocess.DEVNULL)
        self.cpu0, self.t0 = thread_cpu(self.srv.pid), time.monotonic()

    def stop(self) -> None:
        if self.cpu0 and not self.cpu1:
            self.cpu1, self.t1 = thread_cpu(self.srv.pid), time.monotonic()

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def per_role(self) -> dict[str, tuple[float, float]]:
        """CPU seconds per thread role over the step, (user, system); roles not named here are "other"."""
        names = self.srv.ask("threads")
        out: dict[str, tuple[float, float]] = {}
        for tid, (user, system) in self.cpu1.items():
            name = str(names.get(str(tid), "?"))
            role = next((r for prefix, r in THREAD_ROLES if name.startswith(prefix)), "other")
            user0, system0 = self.cpu0.get(tid, (0.0, 0.0))
            had = out.get(role, (0.0, 0.0))
            out[role] = (had[0] + user - user0, had[1] + system - system0)
        return out


def profile_phase(
    dbs: list[str], rate: float, seconds: float, pg_url: str, tmp: Path, plan: Plan, flags: tuple[str, ...]
) -> None:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("no profile: py-spy is missing (pip install -e '.[bench]')")
        return
    plan = dataclasses.replace(plan, rates=(rate,), seconds=seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for kind in dbs:
        out = RESULTS / f"profile-{kind}-{rate:.0f}.txt"
        out.unlink(missing_ok=True)
        print(
            f"\nprofile: chatactors (simpleSystemBase, {kind}) at {rate:g} msg/s, py-spy for {seconds - 4:g} s"
        )
        with stepup_server(kind, pg_url, tmp, plan.users(rate)) as srv:
            spy = Spy(exe, srv, seconds, out, flags)
            try:
                results = drive(kind, srv.url, (srv.pid,), plan, on_started=spy.start, on_step=spy.stop)
                roles = spy.per_role()
            finally:
                spy.wait()
        if not out.exists() or not results:
            print(f"  py-spy wrote no profile to {out}")
            continue
        r = results[0]
        profile = Profile.read(out)
        busy = profile.total / (200 * (seconds - 4))  # samples kept / samples taken
        thread_us: dict[str, float] = {}
        split = ["CPU per message per thread, user + system (/proc):"]
        for role, (user, system) in sorted(roles.items(), key=lambda kv: -sum(kv[1])):
            thread_us[role] = 1e6 * (user + system) / max(1, r.received)
            split.append(
                f"  {thread_us[role]:6.0f} us = {1e6 * user / max(1, r.received):5.0f} user "
                f"+ {1e6 * system / max(1, r.received):5.0f} system  {role}"
            )
        text = [
            f"{r.offered:g} msg/s offered, {r.delivered_per_s:.0f} delivered (p50 {r.p50_ms:.1f} ms, p99 "
            f"{r.p99_ms:.1f} ms); server {r.server_cpu:.2f} cores, {r.server_us_per_msg:.0f} us CPU and "
            f"{r.server_switches_per_msg:.1f} context switches per message; "
            + (f"GIL held {busy:.0%} of the time" if "--gil" in flags else f"{busy:.2f} threads running"),
            "",
            *split,
            "",
            summary(profile, thread_us=thread_us),
        ]
        report = "\n".join(text)
        out.with_suffix(".summary.txt").write_text(report + "\n")
        print(
            f"  raw stacks: {out.relative_to(ROOT)}; summary: {out.with_suffix('.summary.txt').relative_to(ROOT)}"
        )
        print("  " + report.replace("\n", "\n  "))


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--default-limits", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--system", default="simpleSystemBase", help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="a short run of every phase (a minute or two)")
    p.add_argument("--phases", default="load,idle,stepup", help="any of load,idle,stepup (all)")
    p.add_argument(
        "--database-url", default=None, help="load and idle: default SQLite in a temporary directory"
    )
    p.add_argument("--bases", default="simple,tcp", help="system bases of the load phase (simple,tcp)")
    p.add_argument("--clients", type=int, default=50, help="clients in the load phase")
    p.add_argument(
        "--rates", default="250,1000", help="simpleSystemBase: offered messages/s in all, one run each"
    )
    p.add_argument("--tcp-rates", default="50,100", help="multiprocTCPBase: offered messages/s, one run each")
    p.add_argument("--seconds", type=float, default=None, help="duration of each load run (5; quick 2)")
    p.add_argument("--idle", default=None, help="idle connection counts (1000,10000; quick 1000)")
    p.add_argument("--idle-timeout", type=float, default=3.0, help="user actor idle timeout (s)")
    p.add_argument(
        "--step-rates",
        default=None,
        help="step-up: offered msg/s, in order (250,500,1000,2000,4000,8000; quick up to 4000)",
    )
    p.add_argument("--step-seconds", type=float, default=None, help="step-up: seconds per step (10; quick 3)")
    p.add_argument("--step-drain", type=float, default=5.0, help="step-up: seconds to wait for stragglers")
    p.add_argument(
        "--per-user",
        type=float,
        default=10.0,
        help="step-up: msg/s per user at most (default limit: 20 frames/s)",
    )
    p.add_argument(
        "--servers",
        default="relay,sqlite,postgres",
        help="step-up: any of relay,sqlite,postgres (in this order)",
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""),
        help="PostgreSQL admin URL for the step-up and the profile (a database chatactors_bench_PID is "
        "created there and dropped); default $CHATACTORS_TEST_DATABASE_URL",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="step-up: run the servers this many times, interleaved"
    )
    p.add_argument(
        "--gen-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="step-up: the generator's event loop (uvloop when installed: the bench extra has it)",
    )
    p.add_argument("--plot", default=str(RESULTS / "gateway-stepup.png"), help="step-up: where the PNG goes")
    p.add_argument(
        "--profile",
        default="",
        help="instead of the phases: py-spy on chatactors under load, for these databases (sqlite,postgres)",
    )
    p.add_argument("--profile-rate", type=float, default=1000.0, help="profile: offered msg/s (1000)")
    p.add_argument("--profile-seconds", type=float, default=24.0, help="profile: seconds of load (24)")
    p.add_argument(
        "--profile-threads",
        choices=("gil", "running"),
        default="gil",
        help="profile: sample the thread holding the GIL (default), or every thread the OS has running or "
        "runnable (on a busy machine that includes threads waiting for a CPU)",
    )
    p.add_argument("--profile-lines", action="store_true", help="profile: keep line numbers (not --function)")
    args = p.parse_args(argv)
    if args.serve:
        return relay_main() if args.relay else serve_main(args)

    quick = args.quick
    seconds = args.seconds or (2.0 if quick else 5.0)
    idle_counts = [int(n) for n in (args.idle or ("1000" if quick else "1000,10000")).split(",") if n]
    step_rates = args.step_rates or ("250,500,1000,2000,4000" if quick else "250,500,1000,2000,4000,8000")
    plan = Plan(
        rates=tuple(float(r) for r in step_rates.split(",") if r),
        seconds=args.step_seconds or (3.0 if quick else 10.0),
        drain=args.step_drain,
        per_user=args.per_user,
        uvloop=args.gen_loop == "uvloop",
    )
    phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    if not args.pg_url and "postgres" in servers + args.profile.split(","):
        print("no PostgreSQL URL ($CHATACTORS_TEST_DATABASE_URL or --pg-url): postgres is skipped")
        servers = [x for x in servers if x != "postgres"]
    raise_open_files(max(idle_counts + [plan.users(max(plan.rates))]) * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="chatactors-bench-") as tmp:
        if args.profile:
            dbs = [d for d in args.profile.split(",") if d and (d != "postgres" or args.pg_url)]
            flags = ("--gil",) if args.profile_threads == "gil" else ("--threads",)
            flags += () if args.profile_lines else ("--function",)
            profile_phase(dbs, args.profile_rate, args.profile_seconds, args.pg_url, Path(tmp), plan, flags)
            return 0
        if "load" in phases:
            print(f"gateway bench: {args.clients} clients, {seconds:g} s per load run, loopback only")
            for key in filter(None, args.bases.split(",")):
                system = BASES[key]
                url = args.database_url or f"sqlite:///{tmp}/load-{key}.db"
                with server(system, url, args.clients, 300.0) as srv:
                    rates = args.tcp_rates if key == "tcp" else args.rates
                    for rate in (float(r) for r in rates.split(",")):
                        r = asyncio.run(
                            load_phase(srv.url, args.clients, rate, seconds, (srv.pid, srv.group))
                        )
                        print(
                            f"  load {system:17} offered {r['offered']:6.0f} msg/s: delivered "
                            f"{r['delivered_per_s']:7.1f} msg/s ({r['received']}/{r['sent']}{_errors(r['errors'])}), "
                            f"latency p50 {r['p50_ms']:6.2f} ms, p99 {r['p99_ms']:7.2f} ms; "
                            f"server CPU {r['cpu_ms_per_msg']:.2f} ms/msg over {r['processes']} processes"
                        )
        if "idle" in phases:
            for count in idle_counts:
                url = args.database_url or f"sqlite:///{tmp}/idle-{count}.db"
                with server("simpleSystemBase", url, count, args.idle_timeout) as srv:
                    r = asyncio.run(idle_phase(srv, count, args.idle_timeout))
                    print(
                        f"  idle {count:6} connections (logged in in {r['login_s']:.1f} s): server RSS "
                        f"{r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} MiB, "
                        f"{r['kib_per_connection']:.1f} KiB per connection "
                        f"({r['kib_per_connection_resting']:.1f} KiB once actors hibernated); live user actors "
                        f"{r['live_users_peak']} after login -> {r['live_users_after_idle']} after "
                        f"{args.idle_timeout:g} s idle ({r['online_users']} users online)"
                    )
        if "stepup" in phases:
            results = stepup_phase(servers, plan, args.pg_url, Path(tmp), args.rounds)
            stepup_report(results)
            if results:
                path = plot(results, Path(args.plot))
                if path is not None:
                    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
