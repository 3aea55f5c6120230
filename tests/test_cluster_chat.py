"""Chat across cluster nodes: three node processes (tests/cluster_chat_peer.py) on one PostgreSQL,
each a Chat(cluster=True) with its gateway, and WebSocket clients on different nodes.

Ownership is computed here with the ring's own hash, so each case puts the sender's socket, the
recipient's owner and the recipient's socket where it means to. Loopback only; children killed by pid.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Inbox, PeerProcess, poll_until

from chatactors import ENTREGADO, ENVIADO, LEIDO, transport
from chatactors.client import Client, ClientSession, connect
from chatactors.core.ring import score
from chatactors.storage import close_database, open_database

PEER = Path(__file__).parent / "cluster_chat_peer.py"
SECRET = "a-cluster-secret-for-the-chat-tests"


def secret() -> str:
    """The nodes' secret: this process's own once its transport is installed (another test module
    may have done that, with a secret of its own), so a REPL node started here can join them."""
    return transport.installed_secret() or SECRET


WAIT = 30.0
PASSWORD = "secreto123"


class Node(PeerProcess):
    """A node process; its stdout read line by line on a thread. ``wrap`` prefixes its command (``ip
    netns exec HOST``); its gateway listens on ``$THESPIAN_BASE_IPADDR`` of ``env`` (127.0.0.1 if unset)."""

    def __init__(
        self, name: str, url: str, env: dict[str, str] | None = None, wrap: list[str] | None = None
    ) -> None:
        env = {**os.environ, transport.SECRET_ENV: secret(), "THESPLOG_FILE": os.devnull, **(env or {})}
        super().__init__(PEER, [name, url], env, wrap)
        self.name = name
        info = json.loads(self.next("READY"))
        self.port, self.pid = info["port"], info["pid"]
        self.host = env.get(transport.ADDRESS_ENV) or transport.DEFAULT_ADDRESS
        self.url = f"ws://{self.host}:{self.port}"

    def next(self, prefix: str) -> str:
        while True:
            line = self.lines.get(timeout=WAIT)
            if line.startswith(prefix + " "):
                return line.removeprefix(prefix + " ")

    def ask(self, command: str, prefix: str) -> str:
        self.command(command)
        return self.next(prefix)

    def ring(self) -> set[str]:
        return set(filter(None, self.ask("ring", "RING").split(",")))

    def quit(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(20)


def owner(user_id: int, nodes: list[str]) -> str:
    return max(nodes, key=lambda n: score(("user", user_id), n))


@pytest.fixture
def nodes(pg_url: str) -> Iterator[Callable[..., list[Node]]]:
    open_database(pg_url).execute_sql("DROP TABLE IF EXISTS nodes")
    close_database(pg_url)
    started: list[Node] = []
    clients: list[Client] = []

    def start(*names: str) -> list[Node]:
        new = [Node(name, pg_url) for name in names]
        started.extend(new)
        everyone = {n.name for n in started if n.proc.poll() is None}
        for n in started:
            if n.proc.poll() is None:
                poll_until(lambda n=n: n.ring() == everyone, WAIT, f"{n.name} to see {sorted(everyone)}")
        return new

    start.clients = clients  # type: ignore[attr-defined]
    yield start
    for client in clients:
        client.close()
    for n in started:
        n.quit() if n.proc.poll() is None else None
    for n in started:
        n.kill()


def client(nodes: Any, node: Node | str) -> Client:
    c = connect(node if isinstance(node, str) else node.url)
    nodes.clients.append(c)
    return c


def users_owned(nodes: Any, via: Node, names: list[str], ring: list[str]) -> dict[str, tuple[int, str]]:
    """Register ``names`` through ``via``: each name's id and owner node."""
    c = client(nodes, via)
    return {name: (uid, owner(uid, ring)) for name in names for uid in [c.register(name, PASSWORD)]}


def test_a_direct_message_across_three_nodes_is_stored_once_pushed_once_and_read(
    nodes: Any, pg_url: str
) -> None:
    a, b, c = nodes("a", "b", "c")
    ring = ["a", "b", "c"]
    owned = users_owned(nodes, a, [f"user{i}" for i in range(12)], ring)
    # The recipient is owned by b; its socket is on c; the sender's socket is on a.
    recipient = next(name for name, (_, node) in owned.items() if node == "b")
    sender = next(name for name, (_, node) in owned.items() if name != recipient)
    ana: ClientSession = client(nodes, a).login(sender, PASSWORD)
    bruno: ClientSession = client(nodes, c).login(recipient, PASSWORD)
    arrived, receipts = Inbox(), Inbox()
    bruno.on_message(arrived)
    ana.on_receipt(receipts)

    sent = ana.send_message(recipient, "hola across three nodes")
    [got] = arrived.wait_for(1, WAIT)
    assert (got.id, got.body, got.sender) == (sent.id, "hola across three nodes", sender)
    assert ana.status(sent.id) == ENTREGADO
    marker = ana.send_message(recipient, "marker")  # pushes arrive in order: the first was not repeated
    assert [m.body for m in arrived.wait_for(2, WAIT)] == ["hola across three nodes", "marker"]
    assert [m.id for m in bruno.read_messages()] == [sent.id, marker.id]
    poll_until(lambda: ana.status(sent.id) == LEIDO, WAIT, "leido")
    poll_until(
        lambda: any(sent.id in r.message_ids and r.status == LEIDO for r in receipts.items),
        WAIT,
        "a leido receipt",
    )
    assert all(r.by == recipient for r in receipts.items)
    rows = (
        open_database(pg_url)
        .execute_sql("SELECT count(*) FROM mensajes WHERE body = %s", ("hola across three nodes",))
        .fetchone()
    )
    close_database(pg_url)
    assert rows[0] == 1


def test_a_room_with_members_on_three_nodes_reaches_each_once(nodes: Any) -> None:
    a, b, c = nodes("a", "b", "c")
    names = ["ana", "bruno", "carla"]
    owned = users_owned(nodes, a, names, ["a", "b", "c"])
    sessions = {
        name: client(nodes, node).login(name, PASSWORD) for name, node in zip(names, (a, b, c), strict=True)
    }
    inboxes = {name: Inbox() for name in names}
    for name, s in sessions.items():
        s.on_message(inboxes[name])
    sessions["ana"].create_room("sala")
    sessions["bruno"].join("sala")
    sessions["carla"].join("sala")
    for name, s in sessions.items():
        s.send_room("sala", f"from {name}")
    for name in names:
        bodies = sorted(m.body for m in inboxes[name].wait_for(2, WAIT))
        assert bodies == sorted(f"from {other}" for other in names if other != name), (name, owned)
    marker = sessions["ana"].send_room("sala", "marker")
    for name in ("bruno", "carla"):
        got = inboxes[name].wait_for(3, WAIT)
        assert [m.id for m in got].count(marker.id) == 1 and len(got) == 3  # once each, nothing doubled


def test_kill_9_of_a_node_under_load_loses_nothing_and_stores_each_send_once(nodes: Any, pg_url: str) -> None:
    """The first node started dies mid-stream: its clients resume on the others by token and repeat
    what was unanswered (client_id); its users are activated again on the survivors."""
    a, b, c = nodes("a", "b", "c")
    ring = ["a", "b", "c"]
    owned = users_owned(nodes, b, [f"user{i}" for i in range(16)], ring)
    by_owner = {n: [name for name, (_, o) in owned.items() if o == n] for n in ring}
    # Senders whose sockets are on a (they resume on b, then c); one of them is also owned by a.
    # Recipients: one owned by a (reactivated elsewhere), one owned by c; their sockets on b and c.
    senders = [by_owner["a"][0], by_owner["b"][0]]
    recipients = [by_owner["a"][1], by_owner["c"][0]]
    cluster_url = ",".join(n.url for n in (a, b, c))
    out = {name: client(nodes, cluster_url).login(name, PASSWORD) for name in senders}
    resumed: dict[str, list[str]] = {name: [] for name in senders}
    for name, session in out.items():
        session.on_connection(
            lambda state, detail, name=name: state == "resumed" and resumed[name].append(detail)
        )
    inbound = {}
    for name, node in zip(recipients, (b, c), strict=True):
        session = client(nodes, node).login(name, PASSWORD)
        inbound[name] = (session, Inbox())
        session.on_message(inbound[name][1])
    # A live pair on the survivors (owned by b and c, sockets on b and c), talking throughout.
    left, right = by_owner["b"][1], by_owner["c"][1]
    talker = client(nodes, b).login(left, PASSWORD)
    listener = client(nodes, c).login(right, PASSWORD)
    arrivals: dict[int, float] = {}
    listener.on_message(lambda m: arrivals.setdefault(m.id, time.monotonic()))
    departures: dict[int, float] = {}
    sent: dict[str, list[int]] = {name: [] for name in senders}
    errors: list[BaseException] = []
    half, done = threading.Event(), threading.Event()
    per_sender = 40

    def pair() -> None:
        try:
            for i in range(400):  # bounded: at most 400 messages, 10 ms apart, until the load ends
                if done.wait(0.01):
                    return
                start = time.monotonic()
                departures[talker.send_message(right, f"live {i}").id] = start
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def load(name: str) -> None:
        try:
            for i in range(per_sender):
                for to in recipients:
                    sent[name].append(out[name].send_message(to, f"{name} {to} {i}").id)
                if i == per_sender // 4:
                    half.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(name,)) for name in senders]
    live = threading.Thread(target=pair)
    for t in (*threads, live):
        t.start()
    assert half.wait(WAIT)
    a.kill()  # kill -9, mid-stream
    for t in threads:
        t.join(120)
    done.set()
    live.join(30)
    assert errors == []
    poll_until(lambda: departures.keys() <= arrivals.keys(), WAIT, "the live pair's messages")
    latencies = sorted(arrivals[i] - departures[i] for i in departures)
    p99 = latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0] * 1000
    print(
        f"live pair during the kill: {len(latencies)} messages, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99:.1f} ms"
    )
    for name in senders:  # each moved to a survivor (a socket can be lost twice: a resume cut short)
        assert resumed[name] and a.url not in resumed[name], resumed
    poll_until(lambda: set(b.ring()) == {"b", "c"}, WAIT, "b to drop a")
    expected = per_sender * len(recipients)
    db = open_database(pg_url)
    for name in senders:
        assert len(sent[name]) == expected and len(set(sent[name])) == expected
        rows = db.execute_sql(
            "SELECT body, count(*) FROM mensajes m JOIN users u ON u.id = m.sender_id "
            "WHERE u.username = %s GROUP BY body HAVING count(*) > 1",
            (name,),
        ).fetchall()
        assert rows == []  # each send stored exactly once
        stored = db.execute_sql(
            "SELECT count(*) FROM mensajes m JOIN users u ON u.id = m.sender_id WHERE u.username = %s",
            (name,),
        ).fetchone()[0]
        assert stored == expected
    close_database(pg_url)
    # Nothing acknowledged is lost: every recipient has every message, live or in its history.
    for name, (session, _) in inbound.items():
        for sender in senders:
            ids = {m.id for m in session.history(limit=100, with_user=sender)}
            mine = [m for i, m in enumerate(sent[sender]) if recipients[i % 2] == name]
            assert len(mine) == per_sender and set(mine) <= ids


def test_a_repl_joins_the_cluster_as_a_node_and_shares_its_live_state(
    nodes: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iex --remsh: Chat(cluster=True) in this process is one more node; its sessions chat live
    with users whose sockets are on the servers, and its stats list every node."""
    a, b = nodes("a", "b")
    web = client(nodes, b).create("bruno", PASSWORD)
    arrived = Inbox()
    web.on_message(arrived)
    monkeypatch.setenv(transport.SECRET_ENV, secret())
    from chatactors import Chat

    with Chat(pg_url, cluster=True, node_id="repl", password_profile="cheapest", echo=False) as chat:
        assert chat.node_id == "repl"
        assert repr(chat.whereis(web.user_id)).startswith(f"#PID<user:{web.user_id} @")
        poll_until(lambda: a.ring() == b.ring() == {"a", "b", "repl"}, WAIT, "the servers to see the REPL")
        ana = chat.crear("ana", PASSWORD)
        answers = Inbox()
        ana.on_message(answers)
        sent = ana.send_message("bruno", "hola desde el REPL")
        assert [m.id for m in arrived.wait_for(1, WAIT)] == [sent.id]
        reply = web.send_message("ana", "hola, REPL")
        assert [m.id for m in answers.wait_for(1, WAIT)] == [reply.id]
        assert chat.online([web.user_id, ana.user_id]) == {web.user_id, ana.user_id}
        pid = chat.whereis(web.user_id)  # bruno's actor lives on its owner, which may be this node
        home = owner(web.user_id, ["a", "b", "repl"])
        assert pid.node == (None if home == "repl" else home)
        if pid.node is not None:
            assert repr(pid).startswith(f"#PID<user:{web.user_id} @{home}/")
        stats = chat.stats()
        assert {node for node, _ in stats.nodes} == {"a", "b", "repl"}
        assert stats.online_users == 2 == sum(s.online_users for _, s in stats.nodes)
    poll_until(lambda: a.ring() == {"a", "b"}, WAIT, "the REPL to leave the ring")


def test_a_returning_node_owns_its_users_again_and_their_sessions_follow(nodes: Any) -> None:
    """A node killed and started again with its id: a new epoch, its keys back through the ring, and
    the sessions other nodes hold for its users attached to it again (pushes still arrive); the
    activation its user had on a survivor meanwhile is handed over, not left to idle out."""
    a, b, c = nodes("a", "b", "c")
    owned = users_owned(nodes, b, [f"user{i}" for i in range(12)], ["a", "b", "c"])
    on_a = next(name for name, (_, node) in owned.items() if node == "a")
    sender = next(name for name, (_, node) in owned.items() if node == "c")
    target = client(nodes, b).login(on_a, PASSWORD)  # socket on b, owned by a
    arrived = Inbox()
    target.on_message(arrived)
    writer = client(nodes, c).login(sender, PASSWORD)
    first = writer.send_message(on_a, "before")
    a.kill()
    poll_until(lambda: b.ring() == c.ring() == {"b", "c"}, WAIT, "a to be dropped")
    second = writer.send_message(on_a, "while a is away")  # its user now owned by b or c
    stand_in = b if owner(owned[on_a][0], ["b", "c"]) == "b" else c

    def retired() -> int:
        return int(json.loads(stand_in.ask("stats", "STATS"))["retired"][stand_in.name])

    before = retired()  # nothing retires when idle here: the idle timeout is 300 s
    [again] = nodes("a")  # same id: a new epoch, and the ring gives it its users back
    third = writer.send_message(on_a, "a is back")
    got = [m.id for m in arrived.wait_for(3, WAIT)]
    assert got == [first.id, second.id, third.id]
    assert again.ring() == {"a", "b", "c"}
    poll_until(lambda: retired() > before, WAIT, f"{stand_in.name} to hand {on_a}'s actor over")


def test_a_cluster_on_sqlite_or_on_multiproc_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from chatactors import Chat, ClusterNeedsPostgres

    with pytest.raises(ClusterNeedsPostgres, match="clustering needs PostgreSQL"):
        Chat(f"sqlite:///{tmp_path}/x.db", cluster=True)
    assert not (tmp_path / "x.db").exists()  # nothing was opened
    with pytest.raises(ValueError, match="simpleSystemBase"):
        Chat("postgresql://127.0.0.1/x", system="multiprocTCPBase", cluster=True)


def test_a_room_keeps_reaching_its_members_when_their_owner_dies(nodes: Any) -> None:
    """The room's owner asks the members' new owners where they are once the ring changed."""
    a, b, c = nodes("a", "b", "c")
    owned = users_owned(nodes, b, [f"user{i}" for i in range(12)], ["a", "b", "c"])
    on_a = next(name for name, (_, node) in owned.items() if node == "a")  # owned by the node to die
    poster = next(name for name, (_, node) in owned.items() if node != "a")
    member = client(nodes, c).login(on_a, PASSWORD)  # its socket on c
    arrived = Inbox()
    member.on_message(arrived)
    writer = client(nodes, b).login(poster, PASSWORD)
    writer.create_room("sala")
    member.join("sala")
    first = writer.send_room("sala", "before")
    assert [m.id for m in arrived.wait_for(1, WAIT)] == [first.id]
    a.kill()
    poll_until(lambda: b.ring() == c.ring() == {"b", "c"}, WAIT, "a to be dropped")
    second = writer.send_room("sala", "after")
    assert [m.id for m in arrived.wait_for(2, WAIT)] == [first.id, second.id]


def test_a_message_routed_before_the_new_owner_knew_the_session_is_pushed_once_it_does(nodes: Any) -> None:
    """Nodes see a ring change up to a period apart. Here c, which holds the recipient's socket, is
    slow to see that a died, so it has not told the recipient's new owner b about the session when
    a message reaches b: stored 'enviado', pushed nowhere. When c tells b, b pushes it, and the
    sender's tick moves to 'entregado'."""
    a, b, c = nodes("a", "b", "c")
    owned = users_owned(nodes, b, [f"user{i}" for i in range(40)], ["a", "b", "c"])
    target = next(n for n, (uid, node) in owned.items() if node == "a" and owner(uid, ["b", "c"]) == "b")
    sender = next(n for n in owned if n != target)
    member = client(nodes, c).login(target, PASSWORD)  # its socket on c, its owner a
    arrived = Inbox()
    member.on_message(arrived)
    writer = client(nodes, b).login(sender, PASSWORD)
    ticks = Inbox()
    writer.on_receipt(ticks)
    c.ask("pause-ring", "PAUSED")
    a.kill()
    poll_until(lambda: b.ring() == {"b", "c"}, WAIT, "b to drop a")
    assert c.ring() == {"a", "b", "c"}  # c has not seen it
    late = writer.send_message(target, "before b knew where its recipient is")
    assert late.status == ENVIADO  # b owns the recipient now, and knows no session of theirs
    c.ask("resume-ring", "RESUMED")
    assert [m.id for m in arrived.wait_for(1, WAIT)] == [late.id]
    [tick] = ticks.wait_for(1, WAIT)
    assert tick.message_ids == (late.id,) and tick.status == ENTREGADO


def test_a_message_stored_by_an_owner_that_was_never_told_the_session_is_pushed_by_the_new_one(
    nodes: Any, pg_url: str
) -> None:
    """d joins and takes the recipient from b. c, which sees it, attaches the recipient's new login
    to d; a and b have not seen d yet, so a routes a message to b, which stores it for no session
    (it never knew this one). When b sees the new ring it has d catch up, once its write is
    committed: the message is pushed, and the sender's tick moves to 'entregado'."""
    a, b, c = nodes("a", "b", "c")
    owned = users_owned(nodes, c, [f"user{i}" for i in range(60)], ["a", "b", "c"])
    target = next(
        n for n, (uid, node) in owned.items() if node == "b" and owner(uid, ["a", "b", "c", "d"]) == "d"
    )
    sender = next(n for n in owned if n != target)
    writer = client(nodes, a).login(sender, PASSWORD)
    ticks = Inbox()
    writer.on_receipt(ticks)
    a.ask("pause-ring", "PAUSED")
    b.ask("pause-ring", "PAUSED")
    d = Node("d", pg_url)
    try:
        poll_until(lambda: c.ring() == d.ring() == {"a", "b", "c", "d"}, WAIT, "c and d to see d")
        assert a.ring() == b.ring() == {"a", "b", "c"}
        member = client(nodes, c).login(target, PASSWORD)  # attached to d
        arrived = Inbox()
        member.on_message(arrived)
        late = writer.send_message(target, "to an owner that never knew the session")
        assert late.status == ENVIADO  # stored by b, for no session
        b.ask("resume-ring", "RESUMED")
        assert [m.id for m in arrived.wait_for(1, WAIT)] == [late.id]
        [tick] = ticks.wait_for(1, WAIT)
        assert tick.message_ids == (late.id,) and tick.status == ENTREGADO
        a.ask("resume-ring", "RESUMED")
    finally:
        d.quit()
        d.kill()
