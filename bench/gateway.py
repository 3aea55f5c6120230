"""Benchmark of the WebSocket gateway (roadmap V0.5, docs/server.md): throughput, latency, memory per idle connection.

Run ``make bench`` or ``.venv/bin/python bench/gateway.py --help``. The server runs in its own
process (this script with ``--serve``: a ``Chat`` and a ``Gateway`` on 127.0.0.1, a free port); the
clients run here, on one asyncio loop, with the ``websockets`` client. Two phases:

- load: N clients, each sending 1:1 messages to the next one at a fixed rate for a fixed time, on
  each system base. Printed: offered and delivered messages/s, p50/p99 send-to-receive latency (the
  sender and the receiver are both in this process, so one clock measures both ends).
- idle: 1,000 and 10,000 clients connect, log in and stay idle. Printed: the server's RSS per
  connection (its growth over the connections), live user actors right after the logins and after
  the idle timeout (idle users hold no actor: the directory reports ``live_users == 0``).

Everything listens on loopback; each phase has a deadline; the server is told to quit (and killed
if it does not) in a ``finally``. The open-files limit is raised to its hard limit in both processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

PASSWORD = "bench-password"
BASES = {"simple": "simpleSystemBase", "tcp": "multiprocTCPBase"}


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
    from chatactors.server import Gateway, Limits

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
        limits = Limits(rate=100_000, burst=100_000, max_pending=1_000_000)
        gateway = Gateway(chat, "127.0.0.1", 0, limits=limits, workers=64)
        asyncio.run(_serve(gateway))
    finally:
        chat.shutdown()
    return 0


async def _serve(gateway: Any) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    await gateway.start()
    _say({"port": gateway.port, "pid": os.getpid()})

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stats":
                _say(dataclasses.asdict(gateway.chat.stats()))
            elif line.strip() == "quit":
                break
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=commands, daemon=True).start()
    await done.wait()
    await gateway.stop()


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class ServerProcess:
    """This script in ``--serve`` mode, as a child process."""

    def __init__(self, system: str, database_url: str, users: int, idle_timeout: float) -> None:
        argv = [sys.executable, __file__, "--serve", "--system", system, "--database-url", database_url]
        argv += ["--users", str(users), "--idle-timeout", str(idle_timeout)]
        env = {**os.environ, "THESPLOG_FILE": os.devnull, "THESPIAN_BASE_IPADDR": "127.0.0.1"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read(timeout=300)
        self.port, self.pid = int(hello["port"]), int(hello["pid"])
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
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
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
def server(system: str, database_url: str, users: int, idle_timeout: float) -> Iterator[ServerProcess]:
    proc = ServerProcess(system, database_url, users, idle_timeout)
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


async def load_phase(url: str, clients: int, rate: float, seconds: float) -> dict[str, Any]:
    """Each client sends to the next at ``rate / clients`` msg/s for ``seconds``; all receive."""
    names = [f"u{i:05d}" for i in range(clients)]
    sockets = await log_in_all(url, names)
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


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--system", default="simpleSystemBase", help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    p.add_argument("--bases", default="simple,tcp", help="system bases of the load phase (simple,tcp)")
    p.add_argument("--clients", type=int, default=50, help="clients in the load phase")
    p.add_argument(
        "--rates", default="250,1000", help="simpleSystemBase: offered messages/s in all, one run each"
    )
    p.add_argument("--tcp-rates", default="50,100", help="multiprocTCPBase: offered messages/s, one run each")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each load run")
    p.add_argument("--idle", default="1000,10000", help="idle connection counts")
    p.add_argument("--idle-timeout", type=float, default=3.0, help="user actor idle timeout (s)")
    args = p.parse_args(argv)
    if args.serve:
        return serve_main(args)

    idle_counts = [int(n) for n in args.idle.split(",") if n]
    raise_open_files(max(idle_counts + [0]) * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="chatactors-bench-") as tmp:
        print(f"gateway bench: {args.clients} clients, {args.seconds:g} s per load run, loopback only")
        for key in filter(None, args.bases.split(",")):
            system = BASES[key]
            url = args.database_url or f"sqlite:///{tmp}/load-{key}.db"
            with server(system, url, args.clients, 300.0) as srv:
                rates = args.tcp_rates if key == "tcp" else args.rates
                for rate in (float(r) for r in rates.split(",")):
                    r = asyncio.run(load_phase(srv.url, args.clients, rate, args.seconds))
                    print(
                        f"  load {system:17} offered {r['offered']:6.0f} msg/s: delivered "
                        f"{r['delivered_per_s']:7.1f} msg/s ({r['received']}/{r['sent']}{_errors(r['errors'])}), "
                        f"latency p50 {r['p50_ms']:6.2f} ms, p99 {r['p99_ms']:7.2f} ms"
                    )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
