"""The database's ceiling for chat messages: group commit's inserts, with no actor and no socket.

Runs the persistence actor's own write path (``Store.insert_messages_fresh`` in one transaction per
batch: ``BEGIN``, a multi-row ``INSERT ... ON CONFLICT DO NOTHING`` whose unique index is the
``client_id`` check, ``COMMIT``) as fast as it goes, for batch sizes
from 1 (a quiet chat: each message its own commit) to 1,000 (a loaded one), with 1 writer (one node)
and with several writer processes at once (several nodes sharing one PostgreSQL). Prints rows/s and
commits/s. docs/scaling.md uses these figures.

    .venv/bin/python bench/storage.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/storage.py --quick

Each run uses a database of its own (``chatactors_bench_storage`` on PostgreSQL, dropped afterwards;
a temporary SQLite file). Every loop is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import fresh_database  # noqa: E402  (the bench's own helper, beside this file)

from chatactors.core.model import ENVIADO, NewMessage  # noqa: E402
from chatactors.storage import Store, close_database  # noqa: E402

PG_DB = "chatactors_bench_storage"


def writer(url: str, batch: int, seconds: float, start_at: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One writer process (as one node's persistence actor): batches until ``seconds`` are up."""
    store = Store(url)
    sender = store.user(f"s{os.getpid() % 1000:03d}") or store.create_user(f"s{os.getpid() % 1000:03d}", "x")
    recipient = store.user("r000") or store.create_user("r000", "x")
    run = uuid.uuid4().hex[:8]
    while time.time() < start_at:
        time.sleep(0.001)
    rows = commits = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        new = [
            NewMessage(sender, recipient, None, f"message {rows + i}", f"{run}-{rows + i}", ENVIADO)
            for i in range(batch)
        ]
        store.run(lambda: store.insert_messages_fresh(new))  # noqa: B023  (run at once, inside the loop)
        rows += batch
        commits += 1
    close_database(url)
    out.put((rows, commits))


def measure(url: str, batch: int, writers: int, seconds: float) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 3.0  # every writer connected and ready before the clock starts
    procs = [ctx.Process(target=writer, args=(url, batch, seconds, start_at, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    rows = sum(r for r, _ in results)
    commits = sum(c for _, c in results)
    return rows / seconds, commits / seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg-url", default=os.environ.get("CHATACTORS_TEST_DATABASE_URL", ""))
    p.add_argument("--dbs", default="postgres,sqlite")
    p.add_argument("--batches", default="1,10,100,1000")
    p.add_argument("--writers", default="1,2,4")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="2 s per figure, batches 1,100, writers 1,2")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.batches, args.writers = 2.0, "1,100", "1,2"
    print(f"storage ceiling: group commit's write path, {args.seconds:g} s a figure, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.dbs.split(","):
            if kind == "postgres" and not args.pg_url:
                print("  postgres: skipped (no --pg-url or $CHATACTORS_TEST_DATABASE_URL)")
                continue
            with fresh_database(kind, args.pg_url, Path(tmp), "storage", PG_DB) as db:
                store = Store(db.url)
                store.create_schema()
                close_database(db.url)
                for writers in (int(w) for w in args.writers.split(",")):
                    if kind == "sqlite" and writers > 1:
                        continue  # one file, one writer at a time: more writers only wait on its lock
                    for batch in (int(b) for b in args.batches.split(",")):
                        rows, commits = measure(db.url, batch, writers, args.seconds)
                        print(
                            f"  {kind:8} writers {writers}  batch {batch:5}: {rows:9,.0f} rows/s  "
                            f"{commits:7,.0f} commits/s"
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
