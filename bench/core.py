"""Benchmark of the 1:1 chat core (roadmap V0.1-V0.3, V0.7-V0.9): throughput, latency, activation and memory.

Run ``make bench`` or ``.venv/bin/python bench/core.py --help``. For each system base it first measures
the raw Thespian actor-to-actor rate (two bare actors in a burst), then, on each database, N users
exchange 1:1 messages through the REPL API (``Chat``, ``Session.send_message``, pushes through
``Session.on_message``) for a fixed time, each user sending from its own thread. It prints:

- persisted messages/s (confirmed by counting the rows of ``mensajes``) and its ratio to the raw rate;
- send-to-push latency: from calling ``send_message`` to the recipient's ``on_message`` callback;
- activation: the first message to a user whose actor has hibernated (small ``idle_timeout``);
- RSS per live UserActor (its process's smaps on multiprocTCPBase, this process's growth on
  simpleSystemBase).

Everything listens on loopback, every phase has a deadline, and every ``Chat`` is shut down in a
``finally``; the script checks at the end that no actor process is left.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # actor classes are created as "bench.core.X" in every process

os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")

from thespian.actors import Actor, ActorExitRequest, ActorSystem  # noqa: E402

from chatactors import Chat, LoginPolicy, Session  # noqa: E402

BASES = {"simple": "simpleSystemBase", "tcp": "multiprocTCPBase"}
DATABASES = ("sqlite", "postgres")
PASSWORD = "bench-password"
PG_BENCH_DB = "chatactors_bench"
RSS_PROBE = "--rss-probe"  # internal: run as a child process to measure simpleSystemBase RSS


# -- raw Thespian: two bare actors -------------------------------------------------------------------
class RawReceiver(Actor):  # type: ignore[misc]
    """Counts ticks; tells whoever announced the burst when the last one arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.expect = -1
        self.notify: Any = None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, int):
            self.count += 1
            if self.count == self.expect:
                self.send(self.notify, "done")
        elif isinstance(message, tuple) and message[0] == "expect":
            self.count, self.expect, self.notify = 0, message[1], sender


class RawSender(Actor):  # type: ignore[misc]
    """On ``("burst", n, receiver)`` sends n ticks to the receiver, answers when all arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.requester: Any = None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, tuple) and message[0] == "burst":
            _, n, receiver = message
            self.requester = sender
            self.send(receiver, ("expect", n))
            for i in range(n):
                self.send(receiver, i)
        elif message == "done":
            self.send(self.requester, "done")


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_rate(system: str, n: int, runs: int) -> list[float]:
    """Messages/s of bursts of ``n`` messages between two bare actors, one figure per run."""
    if system == "multiprocTCPBase":
        port = free_port()
        capabilities = {"Admin Port": port, "Convention Address.IPv4": ("127.0.0.1", port)}
        asys = ActorSystem(system, capabilities, transientUnique=True)
    else:
        asys = ActorSystem(system, transientUnique=True)
    rates: list[float] = []
    try:
        sender = asys.createActor("bench.core.RawSender")
        receiver = asys.createActor("bench.core.RawReceiver")
        asys.ask(sender, ("burst", 10, receiver), 30)  # warm up both processes
        for _ in range(runs):
            start = time.perf_counter()
            answer = asys.ask(sender, ("burst", n, receiver), 120)
            elapsed = time.perf_counter() - start
            if answer != "done":
                raise RuntimeError(f"raw burst on {system} did not finish: {answer!r}")
            rates.append(n / elapsed)
        for actor in (sender, receiver):
            asys.tell(actor, ActorExitRequest())
    finally:
        asys.shutdown()
    return rates


# -- databases ---------------------------------------------------------------------------------------
@dataclass
class Database:
    """A fresh database for one Chat: a SQLite file in a temp dir, or a dedicated PostgreSQL db."""

    kind: str
    url: str
    admin_url: str = ""

    def count_messages(self) -> int:
        """Rows in ``mensajes``, read with the plain driver (not through the actors)."""
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT count(*) FROM mensajes").fetchone()[0])
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM mensajes")
                row = cur.fetchone()
                return int(row[0]) if row else 0
        finally:
            conn.close()


def _pg_admin(admin_url: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextmanager
def fresh_database(
    kind: str, pg_url: str, tmp: Path, name: str, pg_db: str = PG_BENCH_DB
) -> Iterator[Database]:
    """An empty database of ``kind``, removed afterwards (on PostgreSQL, ``pg_db`` on ``pg_url``'s server)."""
    if kind == "sqlite":
        path = tmp / f"{name}.db"
        yield Database("sqlite", f"sqlite:///{path}")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    parts = urlsplit(pg_url)
    url = urlunsplit(parts._replace(path="/" + pg_db))
    _pg_admin(pg_url, f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
    _pg_admin(pg_url, f"CREATE DATABASE {pg_db}")
    try:
        yield Database("postgres", url, pg_url)
    finally:
        _pg_admin(pg_url, f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")


# -- helpers ---------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.2f}"


def kib(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(poll)


def parallel(fn: Callable[[int], Any], count: int, threads: int) -> list[Any]:
    """``[fn(i) for i in range(count)]`` on ``threads`` threads (each call blocks on the actors)."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    lock = threading.Lock()
    next_index = iter(range(count))

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or errors:
                return
            try:
                results[i] = fn(i)
            except BaseException as exc:  # re-raised in the caller
                errors.append(exc)
                return

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(threads, count)))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return results


def new_users(chat: Chat, prefix: str, count: int, login: bool, threads: int = 8) -> list[Any]:
    """Register ``count`` users; returns their Sessions (``login``) or their user ids."""

    def one(i: int) -> Any:
        name = f"{prefix}{i}"
        uid = chat.register(name, PASSWORD)
        return chat.login(name, PASSWORD) if login else uid

    return parallel(one, count, threads)


def rss_kb() -> int:
    """This process's resident set size in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss and USS (private clean + dirty) of a process in KiB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                values[parts[0][:-1]] = int(parts[1])
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def child_pids() -> list[int]:
    """Live processes whose parent is this one."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().split(") ")[-1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.append(int(entry))
    return found


def make_chat(system: str, db: Database, **options: Any) -> Chat:
    """A Chat set up as the benchmark wants it: cheapest hashes, silent, loopback."""
    options.setdefault("timeout", 30.0)
    # Many users logging in at once from this one process are a benchmark, not a login storm.
    options.setdefault("login_policy", LoginPolicy(hash_queue=100_000, hashes_per_address=100_000))
    return Chat(
        database_url=db.url,
        system=system,
        password_profile="cheapest",
        echo=False,
        announce_login=False,
        **options,
    )


# -- 1:1 traffic -------------------------------------------------------------------------------------
@dataclass
class Traffic:
    users: int
    seconds: float
    acked: int
    rows: int
    pushed: int
    errors: int
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class PushClock:
    """The recipient's callback: the body carries the send time, the push gives the arrival time."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.recording = False
        self._lock = threading.Lock()

    def __call__(self, message: Any) -> None:
        now = time.perf_counter_ns()
        sent = int(message.body.split()[-1])
        with self._lock:
            self.count += 1
            if self.recording:
                self.latencies.append((now - sent) / 1e9)


def exchange(chat: Chat, db: Database, sessions: list[Session], seconds: float) -> Traffic:
    """Each user sends to its partner (0<->1, 2<->3, ...) from its own thread for ``seconds``."""
    clock = PushClock()
    for session in sessions:
        session.on_message(clock)
    partner = [sessions[i ^ 1] for i in range(len(sessions))]
    # Warm-up: every sender resolves its partner once (a contact lookup), every actor is live.
    for i, session in enumerate(sessions):
        session.send_message(partner[i], f"warm-up {time.perf_counter_ns()}")
    wait_until(lambda: clock.count >= len(sessions), 30, "warm-up pushes")
    before_rows = db.count_messages()
    before_pushes = clock.count

    acked = [0] * len(sessions)
    errors = [0] * len(sessions)
    barrier = threading.Barrier(len(sessions) + 1)
    deadline = [0.0]

    def run(i: int) -> None:
        me, to = sessions[i], partner[i]
        barrier.wait()
        end = deadline[0]
        while time.perf_counter() < end:
            try:
                me.send_message(to, f"m {time.perf_counter_ns()}")
                acked[i] += 1
            except Exception:
                errors[i] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(sessions))]
    for t in threads:
        t.start()
    clock.recording = True
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - start
    total = sum(acked)
    wait_until(lambda: clock.count - before_pushes >= total, 30, "every push", 0.05)
    clock.recording = False
    rows = db.count_messages() - before_rows
    return Traffic(
        len(sessions), elapsed, total, rows, clock.count - before_pushes, sum(errors), clock.latencies
    )


# -- activation of a hibernated user ------------------------------------------------------------------
@dataclass
class Activation:
    samples: int
    activations: int  # activations the directory counted during the cold sends (should equal samples)
    cold_ack: list[float]
    cold_push: list[float]
    warm_push: list[float]


def activation(system: str, db: Database, samples: int, idle: float) -> Activation:
    """The first message to each of ``samples`` hibernated users, then a second one to compare.

    Every target is logged in (its pushes are timed) but its actor has retired: the send activates
    it. The sender's actor is kept busy meanwhile, so only the target's activation is timed.
    """
    chat = make_chat(system, db, idle_timeout=idle)
    try:
        sender = new_users(chat, "sender", 1, login=True)[0]
        targets: list[Session] = new_users(chat, "target", samples, login=True)
        arrived: dict[int, float] = {}
        events = {t.user_id: threading.Event() for t in targets}

        def on_push(message: Any) -> None:
            arrived[message.recipient_id] = time.perf_counter()
            events[message.recipient_id].set()

        for t in targets:
            t.on_message(on_push)

        def send(target: Session) -> tuple[float, float]:
            """(send -> send_message returned, send -> the target's callback), in seconds."""
            events[target.user_id].clear()
            start = time.perf_counter()
            sender.send_message(target, f"ping {time.perf_counter_ns()}")
            acked = time.perf_counter() - start
            if not events[target.user_id].wait(30):
                raise TimeoutError(f"no push to {target.username}")
            return acked, arrived[target.user_id] - start

        for t in targets:
            send(t)  # every contact is known, every target has been live once
        stop = threading.Event()

        def keep_sender_alive() -> None:
            while not stop.wait(idle / 4):
                sender.inbox  # noqa: B018  (a request to the sender's actor keeps it live)

        keeper = threading.Thread(target=keep_sender_alive, daemon=True)
        keeper.start()
        cold_ack: list[float] = []
        cold_push: list[float] = []
        warm_push: list[float] = []
        try:
            wait_until(lambda: chat.stats().live_users <= 1, idle * 20 + 30, "the targets to hibernate", 0.05)
            before = chat.stats().activations
            for t in targets:
                ack, push = send(t)  # cold: the target's actor is started by this message
                cold_ack.append(ack)
                cold_push.append(push)
                warm_push.append(send(t)[1])  # the same target at once: live now
            activated = chat.stats().activations - before
        finally:
            stop.set()
            keeper.join()
        return Activation(samples, activated, cold_ack, cold_push, warm_push)
    finally:
        chat.shutdown()


# -- memory ------------------------------------------------------------------------------------------
@dataclass
class Memory:
    method: str
    actors: int
    rss_kb: float
    pss_kb: float = math.nan
    uss_kb: float = math.nan
    pids: list[int] = field(default_factory=list)


def memory_simple(db: Database, count: int) -> Memory:
    """Growth of a fresh process's RSS per user actor activated (every actor lives in that process).

    Measured in a child interpreter: this one has freed memory from earlier phases that the new
    actors would reuse, hiding their cost.
    """
    out = subprocess.run(
        [sys.executable, __file__, RSS_PROBE, db.url, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    per_actor = float(out.stdout.strip().splitlines()[-1])
    return Memory("fresh process RSS growth / actor", count, per_actor)


def rss_probe(url: str, count: int) -> None:
    """The child side of :func:`memory_simple`: prints KiB of RSS per activated user."""
    db = Database("sqlite" if url.startswith("sqlite") else "postgres", url)
    chat = make_chat("simpleSystemBase", db, idle_timeout=3600.0)
    try:
        uids = new_users(chat, "idle", count, login=False)
        chat.whereis(uids[0])  # the first activation loads code once; not an actor's cost
        gc.collect()
        before = rss_kb()
        parallel(lambda i: chat.whereis(uids[i]), count, 8)
        wait_until(lambda: chat.stats().live_users >= count, 60, "the activations")
        gc.collect()
        print((rss_kb() - before) / (count - 1))
    finally:
        chat.shutdown()


def memory_processes(chat: Chat, sessions: list[Session], extra: int) -> Memory:
    """Mean RSS/PSS/USS of the UserActor processes (the traffic's users plus ``extra`` idle ones)."""
    uids = [s.user_id for s in sessions] + new_users(chat, "idle", extra, login=False)
    addresses = parallel(lambda i: chat.whereis(uids[i]), len(uids), 8)
    pids = parallel(lambda i: chat.os_pid(addresses[i]), len(addresses), 8)
    figures = [smaps(pid) for pid in pids if pid != os.getpid()]
    if not figures:
        return Memory("UserActor process smaps", 0, math.nan)
    return Memory(
        "UserActor process smaps (mean)",
        len(figures),
        statistics.fmean(f["rss"] for f in figures),
        statistics.fmean(f["pss"] for f in figures),
        statistics.fmean(f["uss"] for f in figures),
        pids,
    )


# -- one base x database -----------------------------------------------------------------------------
@dataclass
class Result:
    system: str
    db: str
    traffic: Traffic | None = None
    memory: Memory | None = None
    activation: Activation | None = None
    error: str = ""


def run_combination(system: str, kind: str, args: argparse.Namespace, tmp: Path, pids: set[int]) -> Result:
    result = Result(system, kind)
    tcp = system == "multiprocTCPBase"
    if "traffic" in args.phases or ("rss" in args.phases and tcp):
        with fresh_database(kind, args.pg_url, tmp, f"traffic-{system}") as db:
            chat = make_chat(system, db, idle_timeout=3600.0)
            try:
                sessions = new_users(chat, "user", args.users, login=True)
                if "traffic" in args.phases:
                    print(f"  {system} + {kind}: {args.users} users for {args.duration:g} s", flush=True)
                    result.traffic = exchange(chat, db, sessions, args.duration)
                if "rss" in args.phases and tcp:
                    result.memory = memory_processes(chat, sessions, args.rss_processes)
                    pids.update(result.memory.pids)
            finally:
                chat.shutdown()
    if "rss" in args.phases and not tcp:
        with fresh_database(kind, args.pg_url, tmp, f"rss-{system}") as db:
            print(f"  {system} + {kind}: RSS of {args.rss_users} actors (a child process)", flush=True)
            result.memory = memory_simple(db, args.rss_users)
    if "activation" in args.phases:
        with fresh_database(kind, args.pg_url, tmp, f"activation-{system}") as db:
            print(f"  {system} + {kind}: activation, {args.samples} samples", flush=True)
            result.activation = activation(system, db, args.samples, args.idle_timeout)
    return result


# -- output ------------------------------------------------------------------------------------------
def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def report(raw: dict[str, list[float]], raw_n: dict[str, int], results: list[Result], args: Any) -> None:
    if raw:
        table(
            "Raw Thespian actor-to-actor burst (two bare actors)",
            ["base", "burst", "runs (msg/s)", "median msg/s"],
            [
                [s, str(raw_n[s]), ", ".join(f"{r:,.0f}" for r in rates), f"{statistics.median(rates):,.0f}"]
                for s, rates in raw.items()
            ],
        )
    rows = []
    for r in results:
        t = r.traffic
        if t is None:
            continue
        base_rate = statistics.median(raw[r.system]) if raw.get(r.system) else math.nan
        ratio = f"{100 * t.rate / base_rate:.1f} %" if not math.isnan(base_rate) else "-"
        rows.append(
            [
                r.system,
                r.db,
                str(t.users),
                f"{t.seconds:.1f}",
                str(t.acked),
                str(t.rows),
                f"{t.rate:,.0f}",
                ratio,
                ms(percentile(t.latencies, 50)),
                ms(percentile(t.latencies, 99)),
                str(t.errors),
            ]
        )
    if rows:
        table(
            "1:1 messages through the REPL API (targets: simple+sqlite >= 5,000 msg/s; tcp >= 50 % of raw)",
            [
                "base",
                "db",
                "users",
                "s",
                "acked",
                "rows",
                "persisted/s",
                "% raw",
                "push p50 ms",
                "p99 ms",
                "errors",
            ],
            rows,
        )
    rows = []
    for r in results:
        a = r.activation
        if a is None:
            continue
        rows.append(
            [
                r.system,
                r.db,
                str(a.samples),
                str(a.activations),
                ms(percentile(a.cold_ack, 50)),
                ms(percentile(a.cold_ack, 99)),
                ms(percentile(a.cold_push, 50)),
                ms(percentile(a.cold_push, 99)),
                ms(percentile(a.warm_push, 50)),
                ms(percentile(a.warm_push, 99)),
            ]
        )
    if rows:
        table(
            f"First message to a hibernated user (idle_timeout {args.idle_timeout:g} s; target push p99 <= 25 ms)",
            [
                "base",
                "db",
                "samples",
                "activations",
                "ack p50 ms",
                "ack p99",
                "push p50 ms",
                "push p99",
                "warm push p50",
                "warm p99",
            ],
            rows,
        )
    rows = []
    for r in results:
        m = r.memory
        if m is None:
            continue
        rows.append([r.system, r.db, m.method, str(m.actors), kib(m.rss_kb), kib(m.pss_kb), kib(m.uss_kb)])
    if rows:
        table(
            "Memory per live UserActor (KiB)",
            ["base", "db", "method", "actors", "RSS", "PSS", "USS"],
            rows,
        )
    for r in results:
        if r.error:
            print(f"\n{r.system} + {r.db} failed: {r.error}")


# -- main --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (a few seconds per figure)")
    p.add_argument("--duration", type=float, help="seconds of 1:1 traffic per base x database (10)")
    p.add_argument("--users", type=int, help="users exchanging messages, an even number (20)")
    p.add_argument("--bases", default="simple,tcp", help="comma list of: simple, tcp")
    p.add_argument("--dbs", default="sqlite,postgres", help="comma list of: sqlite, postgres")
    p.add_argument(
        "--phases", default="raw,traffic,activation,rss", help="comma list of the figures to measure"
    )
    p.add_argument("--samples", type=int, help="hibernated users messaged for the activation figure (50)")
    p.add_argument(
        "--idle-timeout", type=float, default=0.5, help="idle_timeout of the activation chat (0.5)"
    )
    p.add_argument("--rss-users", type=int, help="users activated for simpleSystemBase RSS growth (3000)")
    p.add_argument(
        "--rss-processes", type=int, help="extra idle UserActor processes on multiprocTCPBase (80)"
    )
    p.add_argument("--raw-runs", type=int, default=5, help="bursts per base for the raw rate (5)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""),
        help="PostgreSQL admin URL; the bench creates and drops a database chatactors_bench there",
    )
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "duration": 3.0 if quick else 10.0,
        "users": 10 if quick else 20,
        "samples": 20 if quick else 50,
        "rss_users": 500 if quick else 3000,
        "rss_processes": 10 if quick else 80,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.users < 2 or args.users % 2:
        p.error("--users must be an even number >= 2")
    args.bases = [BASES.get(b.strip(), b.strip()) for b in args.bases.split(",") if b.strip()]
    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    args.phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    for b in args.bases:
        if b not in BASES.values():
            p.error(f"unknown base {b!r}")
    for d in args.dbs:
        if d not in DATABASES:
            p.error(f"unknown database {d!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [RSS_PROBE]:
        rss_probe(argv[1], int(argv[2]))
        return 0
    args = parse_args(argv)
    if "postgres" in args.dbs and not args.pg_url:
        print("no PostgreSQL URL ($CHATACTORS_TEST_DATABASE_URL or --pg-url): postgres is skipped")
        args.dbs = [d for d in args.dbs if d != "postgres"]
    print(
        f"chatactors core bench: bases {', '.join(args.bases)}; databases {', '.join(args.dbs)}; "
        f"{args.users} users x {args.duration:g} s; {os.cpu_count()} CPUs",
        flush=True,
    )
    began = time.perf_counter()
    raw: dict[str, list[float]] = {}
    raw_n: dict[str, int] = {}
    results: list[Result] = []
    pids: set[int] = set()
    failed = False
    with tempfile.TemporaryDirectory(prefix="chatactors-bench-") as tmpdir:
        for system in args.bases:
            if "raw" in args.phases:
                n = 500 if system == "multiprocTCPBase" else 20000
                print(f"  {system}: raw burst of {n}", flush=True)
                raw[system], raw_n[system] = raw_rate(system, n, args.raw_runs), n
            for kind in args.dbs:
                try:
                    results.append(run_combination(system, kind, args, Path(tmpdir), pids))
                except Exception as exc:  # report it and go on with the next combination
                    failed = True
                    results.append(Result(system, kind, error=f"{type(exc).__name__}: {exc}"))
    report(raw, raw_n, results, args)
    try:
        wait_until(
            lambda: not any(map(pid_alive, pids)) and not child_pids(), 15, "actor processes to exit", 0.1
        )
    except TimeoutError:
        failed = True
    left = [p for p in pids if pid_alive(p)] + child_pids()
    print(
        f"\nleft running: {len(left)} processes {left or ''}; total time {time.perf_counter() - began:.0f} s"
    )
    return 1 if failed else 0
    print(
        f"\nleft running: {len(child_pids())} child processes; total time {time.perf_counter() - began:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
