"""Benchmark of a cluster on one machine: one node against ``chatactors serve --nodes 2``.

Run ``make bench`` or ``.venv/bin/python bench/cluster.py --help``. The same 1:1 load goes through
``chatactors serve --nodes 1`` (one plain node) and ``--nodes 2`` (two cluster nodes on one
SO_REUSEPORT port), each on a fresh PostgreSQL database. The load is ``bench/gateway.py``'s open-loop
step-up generator, in a process of its own: pairs of users on a fixed schedule, each user at most
``--per-user`` msg/s (the server's default limit is 20 frames/s per connection), offered rates stepped
up until delivered < 95 % of offered or p99 > 1 s. Printed for each configuration: every step, the
CPU each process group used in it (nodes, generator, PostgreSQL, the rest of the machine), and the
highest step held; then the ratio 2 nodes / 1 node against the 1.5x target, PASS or FAIL.

Where messages cross nodes. The protocol does not say which node a client landed on, so the nodes'
own log lines say it: each node logs ``... u00042 logged in (id 43)`` and the supervisor leads each
line with the node's id. A user's owner is computed as the nodes compute it (``chatactors.core.ring``
over the node ids of the ``node ... ready`` lines). A message from user i (socket on node S) to its
partner j (socket on R, owned by O) crosses the link ``[S != O] + [O != R]`` times on its way (its
route to the owner's directory, the push to the socket's node); the ``sent`` reply crosses once more
when ``O != S``. Latency is grouped by those crossings, so the cost of a hop is the difference of the
medians at the lowest offered rate, where queueing adds least.

Everything listens on loopback; every step is bounded in messages and time; each ``serve`` is sent
SIGTERM in a ``finally`` and killed by its pid (and its nodes by theirs) if it has not stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import fresh_database, percentile, wait_until  # noqa: E402
from bench.gateway import (  # noqa: E402
    HEADER,
    PASSWORD,
    LoadGenerator,
    Plan,
    StepResult,
    drive,
    proc_cpu,
    raise_open_files,
)
from chatactors.core.ring import Node, Ring  # noqa: E402
from chatactors.transport import MIN_SECRET_LENGTH, SECRET_ENV  # noqa: E402

TARGET = 1.5  # 2 nodes on 2 cores should deliver this many times what one node does
READY = re.compile(r"^node (\S+) ready on \S+ \(pid (\d+)\)$")
SUMMARY = re.compile(r"^chatactors: \d+ nodes serving (ws://\S+) ")
SINGLE = re.compile(r"^chatactors server on (\S+):(\d+) ")
LOGIN = re.compile(r"^(?:\[(\S+)\] )?.*: #\d+ \S+ (u\d+) logged in \(id (\d+)\)")
LEVEL = re.compile(r"^(?:\[\S+\] )?\S+ \S+ (WARNING|ERROR|CRITICAL) ")
ONE_NODE = "the-node"  # the plain node's name here: it has no cluster id
STOP_WAIT = 30.0  # seconds `serve` gets to stop (its nodes get 20 from it) before kills


# -- the server: `chatactors serve --nodes N` and what its output says ---------------------------------
class Serve:
    """``chatactors serve --nodes N`` on a free port; its output is read on a thread of its own."""

    def __init__(self, nodes: int, database_url: str) -> None:
        self.count = nodes
        argv = [sys.executable, "-m", "chatactors", "serve", "--nodes", str(nodes), "--port", "0"]
        argv += ["--database-url", database_url, "--password-profile", "cheapest"]
        argv += ["--idle-timeout", "300", "--log-level", "INFO"]  # INFO: the login lines place users
        secret = os.environ.get(SECRET_ENV, "")
        env = {**os.environ, "THESPLOG_FILE": os.devnull, "THESPIAN_BASE_IPADDR": "127.0.0.1"}
        if len(secret) < MIN_SECRET_LENGTH:
            env[SECRET_ENV] = secrets.token_hex(16)  # the bench's own cluster, on loopback
        self.node_pids: dict[str, int] = {}
        self.users: dict[str, tuple[str, int]] = {}  # username -> (node, user id)
        self.levels: Counter[str] = Counter()  # warnings and errors the nodes logged
        self.tail: deque[str] = deque(maxlen=30)
        self.url = ""
        self.serving = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.reader = threading.Thread(target=self._read, name="serve-output", daemon=True)
        self.reader.start()
        if not self.serving.wait(120):
            self.stop()
            raise RuntimeError("serve did not start in 120 s:\n  " + "\n  ".join(self.tail))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when every writer of the pipe has exited
            line = line.rstrip()
            self.tail.append(line)
            if found := LOGIN.match(line):
                node, user, user_id = found.groups()
                self.users[user] = (node or ONE_NODE, int(user_id))
            elif found := LEVEL.match(line):
                self.levels[found.group(1)] += 1
            elif found := READY.match(line):
                self.node_pids[found.group(1)] = int(found.group(2))
            elif found := SUMMARY.match(line):
                self.url = found.group(1)
                self.serving.set()
            elif found := SINGLE.match(line):
                self.url = f"ws://{found.group(1)}:{found.group(2)}"
                self.node_pids[ONE_NODE] = self.proc.pid
                self.serving.set()

    def owner(self, user_id: int) -> str:
        """The node that owns the user, as the nodes compute it (every node joined with epoch 1 here;
        ``epochs`` after the run says whether that held)."""
        ring = Ring(frozenset(Node(n, 1) for n in self.node_pids))
        return ring.owner(("user", user_id)).node_id if self.count > 1 else ONE_NODE

    def stop(self) -> None:
        """SIGTERM to ``serve`` (it passes it on to its nodes), then kills by pid what is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            print(f"  serve (pid {self.proc.pid}) did not stop in {STOP_WAIT:g} s: killed", flush=True)
            self.proc.kill()
            self.proc.wait(10)
        for node in self.node_pids:
            for pid in self.processes(node):
                print(f"  node {node}: pid {pid} outlived serve: killed", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.reader.join(10)

    def processes(self, node: str) -> list[int]:
        """The node's processes: every live one with the node's command line (the node; before the
        link ran on sockets, also its link's Thespian admin, a daemon child of init)."""
        if node == ONE_NODE:
            return [self.proc.pid] if self.proc.poll() is None else []
        return _with_argument(f"--node-id={node}")

    def left(self) -> int:
        """Processes of this ``serve`` still running: itself and its nodes (and any admin of theirs)."""
        return sum(len(self.processes(n)) for n in self.node_pids) + (self.proc.poll() is None)


def _with_argument(argument: str) -> list[int]:
    """Live (not zombie) processes with ``argument`` among their command-line arguments."""
    wanted, found = argument.encode(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if wanted not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry))
    return found


def epochs(database_url: str) -> list[tuple[str, int, str]]:
    """The ``nodes`` table: (node id, epoch, status); an epoch above 1 means a node rejoined mid-run."""
    import psycopg2

    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT node_id, epoch, status FROM nodes ORDER BY node_id")
            return [(str(n), int(e), str(s)) for n, e, s in cur.fetchall()]
    finally:
        conn.close()


def register(database_url: str, users: int) -> None:
    """The generator's users, registered before ``serve`` starts (argon2's cheapest profile)."""
    from chatactors import Chat

    chat = Chat(database_url=database_url, password_profile="cheapest", echo=False, announce_login=False)
    try:
        for i in range(users):
            chat.register(LoadGenerator.name(i), PASSWORD)
    finally:
        chat.shutdown()


# -- where the CPU went, per step ---------------------------------------------------------------------
def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every CPU, idle and iowait excluded)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() in ("postgres", "postmaster"):
                    found.append(int(entry))
    return found


def _cpu(pids: list[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = sum(proc_cpu(pid))
    return out


@dataclass
class CpuSplit:
    """Cores used during one step by each node, the supervisor, the generator, PostgreSQL, the rest."""

    rate: float
    nodes: dict[str, float]
    supervisor: float  # `serve --nodes N`'s parent (relays the nodes' output); 0 for one plain node
    generator: float
    postgres: float
    machine: float

    @property
    def other(self) -> float:
        """The rest of the machine: this script, and whatever else runs on it (the machine is shared)."""
        return self.machine - sum(self.nodes.values()) - self.supervisor - self.generator - self.postgres

    def line(self) -> str:
        nodes = " + ".join(f"{c:.2f}" for c in self.nodes.values())
        total = f" = {sum(self.nodes.values()):.2f}" if len(self.nodes) > 1 else ""
        return (
            f"cpu at {self.rate:g} msg/s (cores): nodes {nodes}{total}, supervisor {self.supervisor:.2f}, "
            f"generator {self.generator:.2f}, "
            f"postgres {self.postgres:.2f}, other {self.other:.2f}; machine {self.machine:.2f} "
            f"of {os.cpu_count()}"
        )


class CpuMeter:
    """Snapshots of /proc when a step starts and when it is reported: per-pid deltas, so a process
    that started meanwhile (a PostgreSQL backend) counts from zero."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.splits: list[CpuSplit] = []
        self._start: tuple[float, float, dict[int, float], float] | None = None
        self._members: dict[str, list[int]] = {}  # node -> its processes (found once)

    def _groups(self) -> dict[int, float]:
        generator = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
        return _cpu([self.serve.proc.pid, *self._nodes(), *generator, *_postgres_pids()])

    def _nodes(self) -> list[int]:
        if not self._members:
            self._members = {n: self.serve.processes(n) for n in self.serve.node_pids}
        return [pid for pids in self._members.values() for pid in pids]

    def started(self, rate: float) -> None:
        self._start = (rate, time.monotonic(), self._groups(), _machine_busy())

    def stepped(self) -> None:
        if self._start is None:
            return
        rate, t0, before, busy0 = self._start
        after, busy1, wall = self._groups(), _machine_busy(), time.monotonic() - t0
        self._start = None
        used = {pid: (cpu - before.get(pid, 0.0)) / wall for pid, cpu in after.items()}
        supervisor = 0.0 if self.serve.count == 1 else used.pop(self.serve.proc.pid, 0.0)
        nodes = {node: sum(used.pop(pid, 0.0) for pid in pids) for node, pids in self._members.items()}
        generator = sum(used.pop(p.pid, 0.0) for p in multiprocessing.active_children() if p.pid)
        postgres = sum(used.values())
        self.splits.append(CpuSplit(rate, nodes, supervisor, generator, postgres, (busy1 - busy0) / wall))


# -- crossings: which messages went from node to node ------------------------------------------------
@dataclass
class Crossings:
    """One step's messages grouped by how often their delivery crossed the link (0, 1, 2)."""

    rate: float
    latency: dict[int, list[float]] = field(default_factory=dict)  # crossings -> latencies (s)
    lost: Counter[int] = field(default_factory=Counter)
    replies: int = 0  # messages whose `sent` reply crossed back to the sender's node
    unplaced: int = 0  # messages whose users' nodes the log did not say

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latency.values()) + sum(self.lost.values())

    def share(self, crossings: int) -> float:
        return (len(self.latency.get(crossings, [])) + self.lost[crossings]) / max(1, self.total)

    def p50(self, crossings: int) -> float:
        return percentile(self.latency.get(crossings, []), 50)

    def line(self) -> str:
        parts = []
        for n in sorted(set(self.latency) | set(self.lost)):
            lat = self.latency.get(n, [])
            parts.append(
                f"{n} crossings {self.share(n):4.0%} (p50 {1000 * self.p50(n):.2f} ms, "
                f"p99 {1000 * percentile(lat, 99):.2f} ms, lost {self.lost[n]})"
            )
        mean = sum(n * self.share(n) for n in self.latency) + self.replies / max(1, self.total)
        unplaced = f"; {self.unplaced} not placed" if self.unplaced else ""
        return (
            f"at {self.rate:g} msg/s: " + ", ".join(parts) + f"; link crossings a message, reply "
            f"included: {mean:.2f}{unplaced}"
        )


def classify(serve: Serve, arrivals: dict[str, Any]) -> Crossings:
    """Message k was sent by user k mod users to its partner (the generator's schedule)."""
    users, out = int(arrivals["users"]), Crossings(float(arrivals["rate"]))
    for k, late in enumerate(arrivals["latency"]):
        i = k % users
        sender, partner = serve.users.get(LoadGenerator.name(i)), serve.users.get(LoadGenerator.name(i ^ 1))
        if sender is None or partner is None:
            out.unplaced += 1
            continue
        owner = serve.owner(partner[1])
        crossings = (sender[0] != owner) + (owner != partner[0])
        out.replies += owner != sender[0]
        if math.isnan(late):
            out.lost[crossings] += 1
        else:
            out.latency.setdefault(crossings, []).append(late)
    return out


# -- one configuration ----------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    steps: list[StepResult] = field(default_factory=list)
    cpu: list[CpuSplit] = field(default_factory=list)
    crossings: list[Crossings] = field(default_factory=list)
    per_node: Counter[str] = field(default_factory=Counter)  # users per node
    epochs: list[tuple[str, int, str]] = field(default_factory=list)
    error: str = ""
    left: int = 0  # processes of its `serve` still running after the stop

    def best(self) -> StepResult | None:
        """The held step with the highest delivered rate (None if no step held)."""
        held = [s for s in self.steps if s.held]
        return max(held, key=lambda s: s.delivered_per_s) if held else None

    def held_line(self) -> str:
        best = self.best()
        shown = best or (self.steps[0] if self.steps else None)
        if shown is None:
            return f"held {self.label}: no step ran ({self.error})"
        note = "" if best else " (no step held: the first step shown)"
        return (
            f"held {self.label}: offered {shown.offered:.0f} msg/s, delivered {shown.delivered_per_s:.1f} "
            f"msg/s, p50 {shown.p50_ms:.2f} ms, p99 {shown.p99_ms:.2f} ms, lost {shown.lost}, "
            f"duplicated {shown.duplicated}{note}"
        )


def run_config(nodes: int, plan: Plan, pg_url: str, tmp: Path) -> Run:
    label = "1 node" if nodes == 1 else f"{nodes} nodes"
    run = Run(label)
    users = plan.users(max(plan.rates))
    print(f"\n{label}: chatactors serve --nodes {nodes} ({users} users)", flush=True)
    pg_db = f"chatactors_bench_cluster_{os.getpid()}"
    with fresh_database("postgres", pg_url, tmp, "cluster", pg_db=pg_db) as db:
        t0 = time.monotonic()
        register(db.url, users)
        print(f"  {users} users registered in {time.monotonic() - t0:.1f} s", flush=True)
        serve = Serve(nodes, db.url)
        try:
            meter = CpuMeter(serve)
            print(f"  serving {serve.url}: nodes {serve.node_pids}", flush=True)
            print(HEADER, flush=True)
            arrivals: list[dict[str, Any]] = []
            try:
                run.steps = drive(
                    label,
                    serve.url,
                    tuple(pid for node in serve.node_pids for pid in serve.processes(node)),
                    plan,
                    meter.started,
                    meter.stepped,
                    on_arrivals=arrivals.append,
                )
            except RuntimeError as exc:
                run.error = str(exc)
                print(f"  {label}: {exc}", flush=True)
            run.cpu = meter.splits
            for split in run.cpu:
                print(f"  {split.line()}", flush=True)
            if nodes > 1:
                run.epochs = epochs(db.url)
            logged_in = max((int(a["users"]) for a in arrivals), default=0)
            with contextlib.suppress(TimeoutError):  # users the log did not place are counted apart
                wait_until(lambda: len(serve.users) >= logged_in, 10, "the login lines", 0.05)
            run.crossings = [classify(serve, a) for a in arrivals]
            run.per_node = Counter(node for node, _ in serve.users.values())
        finally:
            serve.stop()
            run.left = serve.left()
        levels = ", ".join(f"{n} {level}" for level, n in serve.levels.items()) or "none"
        print(f"  users per node: {dict(run.per_node)}; warnings/errors logged: {levels}", flush=True)
        if run.epochs:
            print("  membership after the run: " + ", ".join(f"{n} epoch {e} {s}" for n, e, s in run.epochs))
        if nodes > 1:
            for c in run.crossings:
                print(f"  crossings {c.line()}", flush=True)
    return run


def report(runs: list[Run]) -> None:
    print("\nsummary (held: the highest delivered rate of a step that held)")
    for run in runs:
        print(f"  {run.held_line()}")
        best = run.best()
        split = next((c for c in run.cpu if best is not None and c.rate == best.offered), None)
        if split is not None:
            print(f"    {split.line()}")
    one = next((r for r in runs if r.label == "1 node"), None)
    for run in runs:
        if run is one or one is None:
            continue
        a, b = one.best(), run.best()
        if a is None or b is None:
            print(f"  ratio {run.label} / 1 node: - (a configuration held no step): FAIL")
        else:
            ratio = b.delivered_per_s / a.delivered_per_s
            verdict = "PASS" if ratio >= TARGET else "FAIL"
            print(f"  ratio {run.label} / 1 node: {ratio:.2f}x (target >= {TARGET:g}x): {verdict}")
        hop(run)


def hop(run: Run) -> None:
    """The cost of a crossing from the lowest step (least queueing), and the share that crossed."""
    if not run.crossings:
        print(f"  cross-node hop ({run.label}): - (no step measured)")
        return
    low = run.crossings[0]
    base, one, two = low.p50(0), low.p50(1), low.p50(2)
    print(
        f"  cross-node hop ({run.label}, at {low.rate:g} msg/s): p50 {1000 * base:.2f} ms with 0 crossings, "
        f"{1000 * one:.2f} ms with 1, {1000 * two:.2f} ms with 2: +{1000 * (one - base):.2f} ms a crossing "
        f"(2 crossings: +{500 * (two - base):.2f} ms each)"
    )
    for c in run.crossings:
        print(
            f"  crossed nodes ({run.label}, at {c.rate:g} msg/s): {1 - c.share(0):.0%} of messages "
            f"(1 crossing {c.share(1):.0%}, 2 crossings {c.share(2):.0%}); replies crossing back "
            f"{c.replies / max(1, c.total):.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: two low steps of 2 s (under a minute)")
    p.add_argument("--nodes", default="1,2", help="the configurations, in order (1,2)")
    p.add_argument(
        "--step-rates",
        default=None,
        help="offered msg/s, in order (500,1000,1500,2000,2500,3000,3500,4000,5000,6000; quick 100,200)",
    )
    p.add_argument("--step-seconds", type=float, default=None, help="seconds per step (10; quick 2)")
    p.add_argument(
        "--step-drain", type=float, default=None, help="seconds to wait for stragglers (5; quick 2)"
    )
    p.add_argument("--per-user", type=float, default=10.0, help="msg/s per user at most (the limit is 20)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""),
        help="PostgreSQL admin URL (a database chatactors_bench_cluster_PID is created there and dropped); "
        "default $CHATACTORS_TEST_DATABASE_URL",
    )
    args = p.parse_args(argv)
    if not args.pg_url:
        print("cluster bench: no PostgreSQL URL ($CHATACTORS_TEST_DATABASE_URL or --pg-url): skipped")
        return 0
    quick = args.quick
    default_rates = "100,200" if quick else "500,1000,1500,2000,2500,3000,3500,4000,5000,6000"
    plan = Plan(
        rates=tuple(float(r) for r in (args.step_rates or default_rates).split(",") if r),
        seconds=args.step_seconds or (2.0 if quick else 10.0),
        drain=args.step_drain or (2.0 if quick else 5.0),
        per_user=args.per_user,
        login_parallel=4,  # what `serve`'s default login policy lets one address hash at once
        arrivals=True,
    )
    configs = [int(n) for n in args.nodes.split(",") if n]
    raise_open_files(plan.users(max(plan.rates)) * 4 + 1024)  # the nodes inherit it
    print(
        f"cluster bench: {' vs '.join(f'--nodes {n}' for n in configs)} on {os.cpu_count()} CPUs, loopback; "
        f"open loop, offered {', '.join(f'{r:g}' for r in plan.rates)} msg/s, {plan.seconds:g} s a step "
        f"(+ up to {plan.drain:g} s drain), users sending <= {plan.per_user:g} msg/s each; a step holds "
        f"while delivered >= {plan.held_share:.0%} of offered and p99 <= {plan.held_p99:g} s",
        flush=True,
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="chatactors-bench-") as tmp:
        for nodes in configs:
            runs.append(run_config(nodes, plan, args.pg_url, Path(tmp)))
    report(runs)
    # (multiprocessing's resource tracker, started with the generator, lives until this process exits)
    left = sum(r.left for r in runs) + len(multiprocessing.active_children())
    print(f"left running: {left} processes")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
