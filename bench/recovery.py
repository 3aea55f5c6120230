"""Benchmark: how long the chat takes to recover from kill -9 of each core actor, under load.

For each role (persistence, login, supervisor, directory), on multiprocTCPBase with PostgreSQL and
SQLite, a fresh ``Chat`` gets ``--senders`` threads sending 1:1 messages in a closed loop, each with a
``client_id`` and retried with it on any error, as docs/api.md says. After a warm-up the role's
process is killed with SIGKILL. It prints, per role:

- ``restarted``: from the kill until the ``Chat`` holds the new actor's address (RolesChanged);
- ``recovered``: from the kill until the first send that *started after the kill* is acknowledged,
  and until every sender has had one acknowledged (``all back``);
- ``failed``: calls that raised meanwhile (retried with the same client_id), and ``dupes``: rows
  stored twice for one client_id (must be 0), ``lost``: acknowledged sends with no row (must be 0).

Only loopback is used, every wait has a deadline, every Chat is shut down in a ``finally``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import child_pids, fresh_database, wait_until  # noqa: E402
from chatactors import Chat, ChatError  # noqa: E402
from chatactors.core.supervision import ROLES  # noqa: E402

PASSWORD = "bench-password"


def count_rows(db: Any, recipient: int) -> dict[str, tuple[int, int]]:
    """client_id -> (rows, first id), read with the plain driver, not through the actors."""
    sql = "SELECT client_id, COUNT(*), MIN(id) FROM mensajes WHERE recipient_id = {} GROUP BY client_id"
    if db.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(db.url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(sql.format("?"), (recipient,)).fetchall()
    else:
        import psycopg2

        conn = psycopg2.connect(db.url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.format("%s"), (recipient,))
                rows = cur.fetchall()
        finally:
            conn.close()
    return {cid: (n, first) for cid, n, first in rows}


def run(system: str, db: Any, role: str, senders: int, warmup: float, after: float) -> dict[str, Any]:
    chat = Chat(db.url, system, password_profile="cheapest", echo=False, announce_login=False, timeout=2.0)
    try:
        sink = chat.crear("sink", PASSWORD)
        sessions = [chat.crear(f"sender{i}", PASSWORD) for i in range(senders)]
        acked: dict[str, int] = {}
        first_after: dict[int, float] = {}  # sender -> when its first post-kill send was acknowledged
        failed = [0]
        lock = threading.Lock()
        killed_at = [0.0]
        stop = threading.Event()

        def send_loop(index: int, session: Any) -> None:
            n = 0
            while not stop.is_set():
                client_id, n = f"{index}-{n}", n + 1
                started = time.monotonic()
                while True:
                    try:
                        message = session.send_message("sink", f"m {client_id}", client_id=client_id)
                        break
                    except ChatError:
                        with lock:
                            failed[0] += 1
                        if stop.is_set() and time.monotonic() - started > 30:
                            return
                done = time.monotonic()
                with lock:
                    acked[client_id] = message.id
                    if killed_at[0] and started >= killed_at[0] and index not in first_after:
                        first_after[index] = done

        threads = [
            threading.Thread(target=send_loop, args=(i, s), daemon=True) for i, s in enumerate(sessions)
        ]
        for t in threads:
            t.start()
        time.sleep(warmup)  # a benchmark's load phase: a fixed span of traffic, not a wait for an event
        old = getattr(chat.roles, role)
        pid = chat.os_pid(old)
        killed_at[0] = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: str(getattr(chat.roles, role)) != str(old), 20, f"{role} to restart", 0.001)
        restarted = time.monotonic() - killed_at[0]
        wait_until(lambda: len(first_after) == senders, 30, "every sender to be served again", 0.005)
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join(40)
        rows = count_rows(db, sink.user_id)
        return {
            "restarted": restarted,
            "first": min(first_after.values()) - killed_at[0],
            "all": max(first_after.values()) - killed_at[0],
            "acked": len(acked),
            "failed": failed[0],
            "dupes": sum(1 for n, _ in rows.values() if n != 1),
            "lost": sum(1 for cid, mid in acked.items() if rows.get(cid, (0, 0))[1] != mid),
        }
    finally:
        chat.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dbs", default="postgres,sqlite")
    parser.add_argument("--roles", default=",".join(ROLES))
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of traffic before the kill")
    parser.add_argument("--after", type=float, default=1.0, help="seconds of traffic after recovery")
    parser.add_argument("--pg-url", default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""))
    parser.add_argument("--quick", action="store_true", help="postgres only, shorter phases")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.after = 1.0, 0.5
    # kill -9 needs a process per actor: on simpleSystemBase every actor is this process (its crashes
    # are exceptions, tested in tests/test_supervision.py).
    systems = ["multiprocTCPBase"]
    failed = False
    print("kill -9 of each core actor under load: time to recover (ms)")
    print(
        f"{'base':18} {'db':9} {'role':12} {'restarted':>9} {'1st back':>9} {'all back':>9} "
        f"{'acked':>6} {'failed':>6} {'dupes':>5} {'lost':>4}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for system in systems:
            for kind in args.dbs.split(","):
                if kind == "postgres" and not args.pg_url:
                    print(f"{system:18} postgres  (skipped: no --pg-url or $CHATACTORS_TEST_DATABASE_URL)")
                    continue
                for role in args.roles.split(","):
                    with fresh_database(kind, args.pg_url, Path(tmp), f"recovery-{role}") as db:
                        try:
                            r = run(system, db, role, args.senders, args.warmup, args.after)
                        except Exception as exc:  # reported, then the next role
                            failed = True
                            print(f"{system:18} {kind:9} {role:12} error: {type(exc).__name__}: {exc}")
                            continue
                    failed = failed or r["dupes"] > 0 or r["lost"] > 0
                    print(
                        f"{system:18} {kind:9} {role:12} {r['restarted'] * 1000:9.0f} {r['first'] * 1000:9.0f} "
                        f"{r['all'] * 1000:9.0f} {r['acked']:6} {r['failed']:6} {r['dupes']:5} {r['lost']:4}",
                        flush=True,
                    )
    wait_until(lambda: not child_pids(), 15, "child processes to exit", 0.1)
    print(f"left running: {len(child_pids())} child processes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
