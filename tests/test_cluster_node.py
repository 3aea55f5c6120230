"""Cluster nodes (membership + link) as separate processes on a real PostgreSQL.

Each node is a child process (tests/cluster_node_peer.py) with a short membership period; the test
waits on what the nodes print, never on sleeps. Loopback only; the processes are killed by pid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PeerProcess

from chatactors import transport
from chatactors.cluster.node import ClusterNode
from chatactors.errors import ClusterNeedsPostgres
from chatactors.storage import close_database, open_database

PEER = Path(__file__).parent / "cluster_node_peer.py"
SECRET = "a-cluster-secret-for-the-node-tests"
WAIT = 30.0


class Process(PeerProcess):
    """A node in a child process; ``wrap`` prefixes its command (``ip netns exec HOST``)."""

    def __init__(
        self, name: str, url: str, wrap: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        env = {**os.environ, transport.SECRET_ENV: SECRET, "THESPLOG_FILE": os.devnull, **(env or {})}
        super().__init__(PEER, [name, url], env, wrap)
        self.name = name
        self.seen: list[str] = []
        self.read_up_to: dict[str, int] = {}
        self.line("STARTED")

    def line(self, prefix: str) -> str:
        """The next line of this kind: each kind is read at its own pace, so waiting for one
        (STARTED) skips no line of another (a RING printed by the membership's thread meanwhile)."""
        start = prefix + " "
        while True:
            position = self.read_up_to.get(prefix, 0)
            while position >= len(self.seen):
                self.seen.append(self.lines.get(timeout=WAIT))
            self.read_up_to[prefix] = position + 1
            if self.seen[position].startswith(start):
                return self.seen[position].removeprefix(start)

    def ring(self, *ids: str) -> None:
        """Wait until this node's ring is exactly ``ids``."""
        want = ",".join(sorted(ids))
        while self.line("RING") != want:
            pass

    def send(self, to: str, message: Any) -> None:
        self.command("SEND", to, json.dumps(message))

    def got(self) -> tuple[str, Any]:
        sender, _, body = self.line("GOT").partition(" ")
        return sender, json.loads(body)


@pytest.fixture
def cluster(pg_url: str) -> Iterator[tuple[str, list[Process]]]:
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    close_database(pg_url)
    started: list[Process] = []
    yield pg_url, started
    for p in started:
        p.kill()


def start(cluster: tuple[str, list[Process]], *names: str) -> list[Process]:
    url, started = cluster
    new = [Process(name, url) for name in names]
    started.extend(new)
    return new


def test_clustering_on_sqlite_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ClusterNeedsPostgres, match="clustering needs PostgreSQL"):
        ClusterNode(f"sqlite:///{tmp_path}/x.db", "a", "ws://a", lambda n, m: None, lambda n, m: None)


def test_nodes_agree_on_owners_and_talk_and_losing_the_first_changes_nothing(
    cluster: tuple[str, list[Process]],
) -> None:
    a, b, c = start(cluster, "a", "b", "c")
    for p in (a, b, c):
        p.ring("a", "b", "c")
    owners = []
    for p in (a, b, c):
        p.command("OWNERS", "user", "60")
        owners.append(p.line("OWNERS"))
    assert owners[0] == owners[1] == owners[2]  # every node computes the same owner for every key
    assert set(owners[0].split()) == {"a", "b", "c"}  # and the keys are spread over all three
    b.send("c", {"hello": "from b"})
    assert c.got() == ("b", {"hello": "from b"})
    a.kill()  # the first node started: nothing special about it
    b.ring("b", "c")
    c.ring("b", "c")
    c.send("b", "still here")
    assert b.got() == ("c", "still here")
    b.send("a", "to the dead")  # a is out of b's ring: handed back at once
    assert b.line("UNDELIVERED") == 'a ["to the dead"]'


def test_a_node_that_joins_others_starts_only_once_they_count_it_in_their_ring(
    cluster: tuple[str, list[Process]],
) -> None:
    """Had ``b`` served clients before ``a`` read the table again, a session on ``b`` would attach
    to ``b`` as its user's owner while ``a`` still routed that user's messages to itself."""
    (a,) = start(cluster, "a")
    a.command("RING")
    assert a.line("NOW") == "a"  # the first node has no one to wait for
    (b,) = start(cluster, "b")  # returns when b has started
    a.command("RING")
    assert a.line("NOW") == "a,b"
    b.command("RING")
    assert b.line("NOW") == "a,b"


def test_a_killed_node_leaves_the_ring_and_what_it_was_owed_comes_back(
    cluster: tuple[str, list[Process]],
) -> None:
    b, c = start(cluster, "b", "c")
    b.ring("b", "c")
    c.kill()
    for i in range(5):
        b.send("c", i)
    undelivered: list[int] = []
    while len(undelivered) < 5:
        node, _, body = b.line("UNDELIVERED").partition(" ")
        assert node == "c"
        undelivered.extend(json.loads(body))
    assert undelivered == [0, 1, 2, 3, 4]
    b.ring("b")  # dropped: by the link's dead letter or by missed heartbeats, whichever came first
