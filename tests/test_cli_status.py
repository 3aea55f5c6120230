"""``chatactors status``: a cluster's nodes as its membership table has them (real PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import pytest

from chatactors.cluster.membership_table import MembershipTable, NodeRecord
from chatactors.core.ring import Node
from chatactors.storage import close_database, open_database


def status(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatactors", "status", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def table(pg_url: str) -> Iterator[MembershipTable]:
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    table = MembershipTable(pg_url)
    yield table
    table.close()
    close_database(pg_url)


def test_status_lists_each_node_with_its_epoch_state_and_last_heartbeat(
    pg_url: str, table: MembershipTable
) -> None:
    table.create_schema()
    table.join("n1", "10.0.0.1:4001", "ws://10.0.0.1:8765")
    table.join("n2", "10.0.0.2:4001", "ws://10.0.0.2:8765")
    assert table.join("n2", "10.0.0.2:4002", "ws://10.0.0.2:8765") == 2  # n2 restarted
    table.join("n3", "10.0.0.3:4001", "ws://10.0.0.3:8765")
    table.mark_dead(Node("n3", 1))
    table.join("n4", "10.0.0.4:4001", "ws://10.0.0.4:8765")
    NodeRecord.update(heartbeat=pw.SQL("now() - interval '60 seconds'")).where(
        NodeRecord.node_id == "n4"
    ).execute()  # silent for a minute: not marked dead yet, but not live either
    assert table.heartbeat(Node("n1", 1), sessions=3, load=12.5)  # what its gateway carries
    run = status(pg_url)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line.split() for line in run.stdout.splitlines()[1:-1]}
    assert lines["n1"][1:3] == ["1", "active"] and lines["n1"][-1] == "ws://10.0.0.1:8765"
    assert lines["n1"][5:7] == ["3", "12.5"]  # users and requests per second, after "heard ... s"
    assert lines["n2"][1:3] == ["2", "active"] and "10.0.0.2:4002" in lines["n2"]
    assert lines["n3"][1:3] == ["1", "dead"]
    assert lines["n4"][2:5] == ["active,", "no", "heartbeat"] and float(lines["n4"][5]) >= 60
    assert run.stdout.splitlines()[-1] == "2 nodes live of 4 known"


def test_status_of_a_database_no_cluster_ran_on(pg_url: str, table: MembershipTable) -> None:
    run = status(pg_url)
    assert (
        run.returncode == 0
        and run.stdout.strip() == "no cluster has run on this database (it has no nodes table)"
    )


def test_status_on_sqlite_is_one_line_saying_why(tmp_path: Path) -> None:
    run = status(f"sqlite:///{tmp_path}/chat.db")
    assert run.returncode == 1
    assert run.stderr.strip().startswith("chatactors status: clustering needs PostgreSQL")
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "chat.db").exists()  # nothing was opened


def test_status_with_the_database_down_is_one_line(tmp_path: Path) -> None:
    run = status("postgresql://postgres@127.0.0.1:1/nothing")  # port 1: nothing listens on loopback
    assert run.returncode == 1
    assert run.stderr.startswith("chatactors status: ") and "Traceback" not in run.stderr
