"""Benchmark of group rooms (roadmap V0.4): one message to a room whose members are all online.

Run ``make bench`` or ``.venv/bin/python bench/rooms.py --help``. For each room size (10, 100 and
1,000 members by default) every member is logged in with an ``on_message`` callback; one member posts
50 messages with ``Session.send_room``, one at a time, and the script times, for each message, how long
until every other member's callback has it (target: 1,000 members <= 50 ms
p99, as in bench/README.md), until the first member has it, and until ``send_room`` returned.

multiprocTCPBase runs one OS process per logged-in member: by default it stops at 100 members
(``--tcp-sizes 10,100,1000`` to go further; ~6 MiB PSS and ~20 ms of start-up per member).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import (  # noqa: E402
    BASES,
    DATABASES,
    child_pids,
    fresh_database,
    make_chat,
    ms,
    new_users,
    parallel,
    percentile,
    table,
    wait_until,
)
from chatactors import Session  # noqa: E402


@dataclass
class RoomFigures:
    system: str
    db: str
    members: int
    messages: int
    all_members: list[float]  # send -> the last member's callback
    first_member: list[float]  # send -> the first member's callback
    acked: list[float]  # send -> send_room returned
    live_rooms: int = 0
    error: str = ""


class Arrivals:
    """Counts each message's arrivals over every member's callback; notes the first and the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.expected = 0
        self.body = ""
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def expect(self, body: str, count: int) -> None:
        with self._lock:
            self.body, self.expected, self.count = body, count, 0
            self.done.clear()

    def __call__(self, message: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            if message.body != self.body:
                return
            self.count += 1
            if self.count == 1:
                self.first = now
            if self.count == self.expected:
                self.last = now
                self.done.set()


def fan_out(system: str, kind: str, members: int, messages: int, pg_url: str, tmp: Path) -> RoomFigures:
    """One room of ``members`` online members; ``messages`` posts, one at a time, each timed."""
    with fresh_database(kind, pg_url, tmp, f"rooms-{system}-{members}") as db:
        chat = make_chat(system, db, idle_timeout=3600.0, timeout=60.0)
        try:
            sessions: list[Session] = new_users(chat, "member", members, login=True)
            sender, others = sessions[0], sessions[1:]
            room = f"bench{members}"
            sender.create_room(room)
            threads = 8 if system == "simpleSystemBase" else 4
            parallel(lambda i: others[i].join(room), len(others), threads)
            arrivals = Arrivals()
            for session in others:
                session.on_message(arrivals)
            # Warm-up: the room actor and every member's path are live.
            arrivals.expect("warm-up", len(others))
            sender.send_room(room, "warm-up")
            if not arrivals.done.wait(60):
                raise TimeoutError(f"warm-up reached {arrivals.count} of {len(others)} members")
            every, first, acked = [], [], []
            for i in range(messages):
                body = f"{room} message {i}"
                arrivals.expect(body, len(others))
                start = time.perf_counter()
                sender.send_room(room, body)
                returned = time.perf_counter()
                if not arrivals.done.wait(60):
                    raise TimeoutError(f"{body!r} reached {arrivals.count} of {len(others)} members")
                every.append(arrivals.last - start)
                first.append(arrivals.first - start)
                acked.append(returned - start)
            live_rooms = chat.stats().live_rooms
            return RoomFigures(system, kind, members, messages, every, first, acked, live_rooms)
        finally:
            chat.shutdown()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer messages, rooms up to 100 members")
    p.add_argument("--sizes", default="10,100,1000", help="room sizes on simpleSystemBase (10,100,1000)")
    p.add_argument("--tcp-sizes", default="10,100", help="room sizes on multiprocTCPBase (10,100)")
    p.add_argument("--messages", type=int, help="messages per room (50)")
    p.add_argument("--bases", default="simple,tcp", help="comma list of: simple, tcp")
    p.add_argument("--dbs", default="sqlite,postgres", help="comma list of: sqlite, postgres")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""),
        help="PostgreSQL admin URL; the bench creates and drops a database chatactors_bench there",
    )
    args = p.parse_args(argv)
    if args.messages is None:
        args.messages = 10 if args.quick else 50
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    tcp_sizes = [int(x) for x in args.tcp_sizes.split(",") if x.strip()]
    if args.quick:
        sizes = [s for s in sizes if s <= 100]
        tcp_sizes = [s for s in tcp_sizes if s <= 10]
    args.size_by_base = {"simpleSystemBase": sizes, "multiprocTCPBase": tcp_sizes}
    args.bases = [BASES.get(b.strip(), b.strip()) for b in args.bases.split(",") if b.strip()]
    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    for b in args.bases:
        if b not in BASES.values():
            p.error(f"unknown base {b!r}")
    for d in args.dbs:
        if d not in DATABASES:
            p.error(f"unknown database {d!r}")
    if any(s < 2 for s in sizes + tcp_sizes):
        p.error("a room needs at least 2 members")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if "postgres" in args.dbs and not args.pg_url:
        print("no PostgreSQL URL ($CHATACTORS_TEST_DATABASE_URL or --pg-url): postgres is skipped")
        args.dbs = [d for d in args.dbs if d != "postgres"]
    print(
        f"chatactors rooms bench: {args.messages} messages per room, one at a time; "
        f"bases {', '.join(args.bases)}; databases {', '.join(args.dbs)}",
        flush=True,
    )
    began = time.perf_counter()
    results: list[RoomFigures] = []
    with tempfile.TemporaryDirectory(prefix="chatactors-rooms-") as tmpdir:
        for system in args.bases:
            for kind in args.dbs:
                for size in args.size_by_base[system]:
                    print(f"  {system} + {kind}: room of {size}", flush=True)
                    try:
                        results.append(fan_out(system, kind, size, args.messages, args.pg_url, Path(tmpdir)))
                    except Exception as exc:  # report it and go on
                        results.append(
                            RoomFigures(
                                system, kind, size, 0, [], [], [], error=f"{type(exc).__name__}: {exc}"
                            )
                        )
    rows = [
        [
            r.system,
            r.db,
            str(r.members),
            str(r.messages),
            ms(percentile(r.all_members, 50)),
            ms(percentile(r.all_members, 99)),
            ms(percentile(r.first_member, 50)),
            ms(percentile(r.first_member, 99)),
            ms(percentile(r.acked, 50)),
            ms(percentile(r.acked, 99)),
            str(r.live_rooms),
        ]
        for r in results
        if not r.error
    ]
    table(
        "One message to a room, every member online (target: 1,000 members, all have it <= 50 ms p99)",
        [
            "base",
            "db",
            "members",
            "msgs",
            "all p50 ms",
            "all p99",
            "first p50",
            "first p99",
            "ack p50",
            "ack p99",
            "live rooms",
        ],
        rows,
    )
    for r in results:
        if r.error:
            print(f"\n{r.system} + {r.db}, {r.members} members failed: {r.error}")
    try:
        wait_until(lambda: not child_pids(), 15, "actor processes to exit", 0.1)
    except TimeoutError:
        pass
    left = child_pids()
    print(
        f"\nleft running: {len(left)} processes {left or ''}; total time {time.perf_counter() - began:.0f} s"
    )
    return 1 if left or any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
