"""Sessions an owner learns of late: after a ring change (or a directory's restart) the node holding
a user's socket tells the user's new owner, and a message routed there before that found no session.
It was stored 'enviado' and pushed nowhere; the owner has it pushed once it learns of the session
(``CatchUp``, ``DeliverWaiting``). The cluster case end to end is in test_cluster_chat.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from thespian.actors import ActorSystem

from chatactors import Chat
from chatactors.actors.directory import DirectoryActor
from chatactors.actors.persistence import PersistenceActor
from chatactors.bridge import SimpleBridge, SimpleSystem
from chatactors.core.model import ENTREGADO, ENVIADO, Receipt, UserInfo
from chatactors.core.ring import Node, Ring, score
from chatactors.messages import (
    Attach,
    Batch,
    CatchUp,
    ChildExited,
    ChildStarted,
    ClusterView,
    Config,
    Configure,
    Deliver,
    DeliverWaiting,
    Delivery,
    HandOver,
    MemberSinks,
    Notify,
    Reattach,
    RelayCatchUp,
    Roles,
    RoomSinks,
    Route,
    StopActor,
    StoreDirect,
)
from chatactors.peering import DIRECTORY, Peering
from chatactors.storage import Mensaje, NewMessage, Store, close_database


class Probe:
    """A simpleSystemBase system with ``actor`` in it, and outlets standing for everyone else."""

    def __init__(self, asys: Any, actor: Any) -> None:
        self.system = SimpleSystem(asys)
        self.actor = actor
        self.out: list[tuple[str, Any]] = []
        self._outlets: dict[str, Any] = {}

    def outlet(self, name: str) -> Any:
        if name not in self._outlets:
            self._outlets[name] = self.system.open_outlet(name, self.out)
        return self._outlets[name]

    def tell(self, message: Any) -> None:
        self.system.tell(self.actor, message)
        self.system.run()  # until no actor has anything left to send

    def seen(self, name: str) -> list[Any]:
        """What ``name`` got so far, batches opened, and forgotten."""
        got: list[Any] = []
        for key, message in self.out:
            if key == name:
                got += message.items if isinstance(message, Batch) else [message]
        self.out[:] = [(k, m) for k, m in self.out if k != name]
        return got


@pytest.fixture
def asys() -> Iterator[Any]:
    system = ActorSystem("simpleSystemBase", transientUnique=True)
    yield system
    system.shutdown()


def _roles(probe: Probe, **actors: Any) -> Roles:
    names = {"directory": "directory", "supervisor": "supervisor", "persistence": "db", "login": "login"}
    return Roles(**{role: actors.get(role) or probe.outlet(name) for role, name in names.items()})


def _deliver(to: int, body: str) -> Deliver:
    return Deliver(req_id=1, reply_to=None, user_id=to, sender=UserInfo(1, "juan"), body=body)


def test_a_session_learned_of_late_catches_up_behind_what_its_actor_was_storing(asys: Any) -> None:
    """A direct message routed while no session of its recipient was known here is stored for no
    one; when a Reattach names the recipient's sessions, a CatchUp follows it to the same actor.
    Nothing for a user no message missed, for a login (its inbox delivers what waits), or twice."""
    directory = asys.createActor(DirectoryActor)
    probe = Probe(asys, directory)
    probe.tell(Configure(Config("sqlite://"), _roles(probe, directory=directory)))
    for user in (7, 8, 9):
        probe.tell(ChildStarted("user", user, probe.outlet(f"actor{user}")))
    sink = probe.system.address
    probe.tell(Route("user", 7, _deliver(7, "for no one")))
    probe.tell(Route("user", 9, _deliver(9, "for no one either")))
    login = Attach(req_id=2, reply_to=None, user_id=9, sink=sink, token="t", session=3)
    probe.tell(Route("user", 9, login))
    probe.tell(Reattach(sink, ((7, (1,)), (8, (4,)), (9, (3,)))))
    stored, catch_up = probe.seen("actor7")
    assert stored.sinks == () and stored.body.body.body == "for no one"
    assert catch_up.body.body == CatchUp(7) and catch_up.sinks == (sink,)
    assert probe.seen("actor8") == []
    assert [type(e.body.body) for e in probe.seen("actor9")] == [Deliver, Attach]  # no CatchUp
    probe.tell(Reattach(sink, ((7, (1, 2)),)))
    probe.tell(Route("user", 7, _deliver(7, "pushed")))  # its session is known: not for no one
    probe.tell(Reattach(sink, ((7, (1, 2)),)))
    assert [e.body.body for e in probe.seen("actor7")] == [_deliver(7, "pushed")]


def _stored_for_no_one_on_node_a(asys: Any) -> tuple[Probe, int, Any]:
    """Node a's directory, alone in the ring: a user's actor (an outlet) has been handed a message
    while no session of theirs was known. (probe, the user, the actor); b will own the user."""
    directory = asys.createActor(DirectoryActor)
    probe = Probe(asys, directory)
    probe.tell(Configure(Config("sqlite://"), _roles(probe, directory=directory)))
    user = next(u for u in range(1, 200) if score(("user", u), "b") > score(("user", u), "a"))
    probe.tell(ClusterView("a", Ring(frozenset({Node("a", 1)})), ()))
    actor = probe.outlet("actor")
    probe.tell(ChildStarted("user", user, actor))
    probe.tell(Route("user", user, _deliver(user, "stored for no one")))
    return probe, user, actor


def _b_joins(probe: Probe) -> None:
    probe.tell(ClusterView("a", Ring(frozenset({Node("a", 1), Node("b", 1)})), (("b", probe.outlet("b")),)))


def test_a_node_that_lost_a_user_relays_the_catch_up_behind_what_it_stored(asys: Any) -> None:
    """The ring moved a user away from this node after a message to them was stored here for no
    one (their owner's sessions were never known here). The actor is told to relay a CatchUp, through
    this node's persistence actor once its writes are committed, to the new owner; then it goes."""
    probe, user, _ = _stored_for_no_one_on_node_a(asys)
    _b_joins(probe)
    stored, relay, gone = probe.seen("actor")
    assert stored.body.body.body == "stored for no one"
    assert relay.body.body == CatchUp(user, relay=True) and gone == HandOver("user", user)
    assert probe.seen("db") == []


def test_a_node_whose_actor_for_the_user_has_gone_has_its_persistence_actor_relay(asys: Any) -> None:
    probe, user, actor = _stored_for_no_one_on_node_a(asys)
    probe.tell(ChildExited("user", user, actor))  # it crashed (or retired) since
    _b_joins(probe)
    assert probe.seen("db") == [RelayCatchUp(user)]


def test_a_catch_up_for_a_user_with_no_session_starts_nothing_and_waits_for_one(
    asys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A former owner's catch-up reaches an owner that knows no session of the user (offline, or
    not told yet): no actor is started for it. A Reattach naming a session within UNSEEN_FOR
    seconds catches up then (no actor runs: straight to the persistence actor); after that, not."""
    from chatactors.core import registry as registry_module

    directory = asys.createActor(DirectoryActor)
    probe = Probe(asys, directory)
    probe.tell(Configure(Config("sqlite://"), _roles(probe, directory=directory)))
    sink = probe.system.address
    probe.tell(Route("user", 7, CatchUp(7)))
    assert probe.seen("supervisor") == []  # nothing started
    probe.tell(Reattach(sink, ((7, (1,)),)))
    assert probe.seen("db") == [DeliverWaiting(7, (sink,))]
    monkeypatch.setattr(registry_module, "UNSEEN_FOR", 0.0)
    probe.tell(Route("user", 8, CatchUp(8)))
    probe.tell(Reattach(sink, ((8, (1,)),)))  # past the window: a ring change is long over
    assert probe.seen("db") == []


def test_only_a_users_owner_by_this_ring_changes_where_a_room_reaches_them(asys: Any) -> None:
    """A node that saw a ring change first says its sessions for a user it no longer owns are gone:
    that must not stop the room pushing to the user, whose new owner has already said where they are."""
    directory = asys.createActor(DirectoryActor)
    probe = Probe(asys, directory)
    probe.tell(Configure(Config("sqlite://"), _roles(probe, directory=directory)))
    ours, theirs = (
        next(u for u in range(1, 200) if (score(("user", u), "b") > score(("user", u), "a")) == b)
        for b in (False, True)
    )
    probe.tell(ClusterView("a", Ring(frozenset({Node("a", 1), Node("b", 1)})), (("b", probe.outlet("b")),)))
    room = next(r for r in range(1, 200) if score(("room", r), "a") > score(("room", r), "b"))
    probe.tell(ChildStarted("room", room, probe.outlet("room")))
    probe.seen("room")
    elsewhere = probe.outlet("a-socket-on-b")
    probe.tell(MemberSinks(room, ((ours, ()), (theirs, (elsewhere,))), node="b"))
    assert probe.seen("room") == [RoomSinks(((theirs, (elsewhere,)),), complete=False)]
    probe.tell(MemberSinks(room, ((ours, ()),), node="b"))  # nothing b may say
    assert probe.seen("room") == []


def test_the_persistence_actor_pushes_what_waited_and_tells_each_sender_once(db_url: str, asys: Any) -> None:
    store = Store(db_url)
    try:
        store.create_schema()
        juan, maria, pedro = (store.create_user(n, "h") for n in ("juan", "maria", "pedro"))
        with store.transaction():
            rows = [
                (juan, maria, "uno", ENVIADO),
                (pedro, maria, "dos", ENVIADO),
                (juan, maria, "tres", ENVIADO),
                (juan, maria, "pushed already", ENTREGADO),
                (juan, pedro, "for someone else", ENVIADO),
            ]
            stored = store.insert_messages(
                [NewMessage(s, r, None, body, None, st) for s, r, body, st in rows]
            )
        persistence = asys.createActor(PersistenceActor)
        probe = Probe(asys, persistence)
        probe.tell(Configure(Config(db_url), _roles(probe, persistence=persistence)))
        probe.tell(DeliverWaiting(maria.id, (probe.outlet("socket"),)))
        pushed = probe.seen("socket")
        assert [(p.user_ids, p.event.body, p.event.status) for p in pushed] == [
            ((maria.id,), body, ENTREGADO) for body in ("uno", "dos", "tres")
        ]
        assert sorted(probe.seen("directory"), key=lambda n: n.user_id) == sorted(
            [
                Notify(juan.id, Receipt((stored[0].id, stored[2].id), ENTREGADO, "maria", maria.id)),
                Notify(pedro.id, Receipt((stored[1].id,), ENTREGADO, "maria", maria.id)),
            ],
            key=lambda n: n.user_id,
        )
        statuses = {m.body: m.status for m in Mensaje.select()}
        assert statuses == {"uno": "entregado", "dos": "entregado", "tres": "entregado"} | {
            "pushed already": "entregado",
            "for someone else": "enviado",
        }
        probe.tell(DeliverWaiting(maria.id, (probe.outlet("socket"),)))  # a second catch-up: nothing
        assert probe.seen("socket") == [] and probe.seen("directory") == []
    finally:
        store.close()
        close_database(db_url)


@pytest.fixture
def node_a(asys: Any) -> Iterator[Callable[[int], tuple[Peering, list[tuple[str, Any]]]]]:
    """Node a's border, holding a session of ``user``, in the ring {a, b}: (its peering, what its
    directory, an outlet, is told from then on)."""
    bridge = SimpleBridge(asys, lambda push: None)

    def make(user: int) -> tuple[Peering, list[tuple[str, Any]]]:
        out: list[tuple[str, Any]] = []
        directory = bridge.run_in_driver(lambda: bridge.system.open_outlet("directory", out))
        p = Peering("a", bridge, lambda: directory, lambda: ((user, (1,)),))
        p.send = lambda node, message: None
        p.ring_changed(Ring(frozenset({Node("a", 1), Node("b", 1)})))
        bridge.run_in_driver(lambda: None)
        out.clear()
        return p, out

    yield make
    bridge.run_in_driver(asys.shutdown)
    bridge.close()


def test_the_new_owner_learns_of_sessions_before_what_waited_for_the_ring_goes_again(node_a: Any) -> None:
    """A node's requests parked while the ring changed go again after its Reattach, on the same way
    to the new owner: the owner knows where the user's sessions are when those messages reach it."""
    user = next(
        u
        for u in range(1, 500)
        if score(("user", u), "b") > score(("user", u), "a")
        and score(("user", u), "c") > score(("user", u), "a")
    )
    p, out = node_a(user)
    routed = Route("user", user, "sent while b was going")
    p.undelivered("b", (Delivery(DIRECTORY, routed),))  # b took nothing: it is dying
    p.bridge.run_in_driver(lambda: None)
    out.clear()
    p.ring_changed(Ring(frozenset({Node("a", 1), Node("c", 1)})))
    p.bridge.run_in_driver(lambda: None)
    p.bridge.run_in_driver(lambda: None)
    kinds = [type(m).__name__ for _, m in out]
    assert kinds == ["ClusterView", "Reattach", "Route"], kinds
    assert out[1][1] == Reattach(p.bridge.address, ((user, (1,)),)) and out[2][1] == routed


def test_a_login_that_spans_a_ring_change_tells_the_new_owner_of_its_session(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Reattach sent at a ring change names the sessions open then; a login whose reply had not
    come back is not among them, and its Attach went by the old ring. Once it opens, it is sent again."""
    chat = Chat(sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    try:
        chat.register("juan", "secreto123")
        sent: list[tuple[int, int]] = []
        monkeypatch.setattr(chat._node, "reattach", lambda user_id, number: sent.append((user_id, number)))
        steady = chat.login("juan", "secreto123")
        assert sent == []  # no ring change meanwhile
        rings = iter(range(10))
        monkeypatch.setattr(chat._node, "ring_generation", lambda: next(rings))
        spanning = chat.login("juan", "secreto123")
        assert sent == [(spanning.user_id, spanning._number)] and spanning._number != steady._number
    finally:
        chat.shutdown()


def test_a_relayed_catch_up_goes_to_the_owner_once_what_was_queued_is_committed(
    db_url: str, asys: Any
) -> None:
    store = Store(db_url)
    try:
        store.create_schema()
        juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
        persistence = asys.createActor(PersistenceActor)
        probe = Probe(asys, persistence)
        probe.tell(Configure(Config(db_url), _roles(probe, persistence=persistence)))
        queued = StoreDirect(
            req_id=1,
            reply_to=probe.outlet("caller"),
            sender=juan,
            recipient=maria,
            body="hola",
            client_id=None,
            status=ENVIADO,
        )
        probe.system.tell(persistence, queued)  # queued for the batch, not yet committed
        probe.tell(RelayCatchUp(maria.id))
        order = [key for key, _ in probe.out if key in ("caller", "directory")]
        assert order == ["caller", "directory"]  # answered (committed) before the owner is asked
        assert probe.seen("directory") == [Route("user", maria.id, CatchUp(maria.id))]
        assert [m.body for m in Mensaje.select()] == ["hola"]
    finally:
        store.close()
        close_database(db_url)


def test_an_owner_back_with_a_new_epoch_learns_the_sessions_again(node_a: Any) -> None:
    """b was out of the ring and came back (a new epoch) between two of this node's reads of the
    membership table: b forgot every session while it was out, so it is told them again."""
    user = next(u for u in range(1, 500) if score(("user", u), "b") > score(("user", u), "a"))
    p, out = node_a(user)
    p.ring_changed(Ring(frozenset({Node("a", 1), Node("b", 2)})))
    p.bridge.run_in_driver(lambda: None)
    assert [m for _, m in out if isinstance(m, Reattach)] == [Reattach(p.bridge.address, ((user, (1,)),))]


def test_a_member_update_while_this_node_is_out_of_the_ring_is_no_crash(asys: Any) -> None:
    """Fenced (an empty ring), the directory cannot say who owns anyone: the update is applied as
    it comes, and the directory goes on routing."""
    directory = asys.createActor(DirectoryActor)
    probe = Probe(asys, directory)
    probe.tell(Configure(Config("sqlite://"), _roles(probe, directory=directory)))
    probe.tell(ClusterView("a", Ring(), ()))
    probe.tell(ChildStarted("room", 5, probe.outlet("room")))
    probe.seen("room")
    probe.tell(MemberSinks(5, ((1, ()),), node="b"))
    assert probe.seen("room") == [RoomSinks(((1, ()),), complete=False)]
    probe.tell(ChildStarted("user", 7, probe.outlet("actor")))
    probe.tell(Route("user", 7, "still routing"))
    assert [e.body.body for e in probe.seen("actor")] == ["still routing"]


def test_messages_stored_for_no_one_are_remembered_for_the_window_then_forgotten_oldest_first() -> None:
    from chatactors.core.clock import FakeClock
    from chatactors.core.registry import UNSEEN_FOR, Registry

    clock = FakeClock()
    registry = Registry(clock)
    for user in range(1, 5):
        registry.note_unseen(("user", user))
        clock.advance(1.0)
    registry.note_unseen(("user", 1))  # again, later: it is now the newest
    assert registry.unseen_keys() == [("user", u) for u in (2, 3, 4, 1)]
    clock.advance(UNSEEN_FOR - 1.5)  # past the windows of 2 and 3, within those of 4 and 1
    assert registry.unseen_keys() == [("user", 4), ("user", 1)]
    assert registry.take_unseen(("user", 1)) and not registry.take_unseen(("user", 1))
    clock.advance(2.0)
    assert not registry.take_unseen(("user", 4))  # its window is over, whoever asks first
    assert registry.unseen_keys() == []


def test_a_retiring_actor_with_a_message_for_no_one_relays_only_once_it_has_gone(asys: Any) -> None:
    """Stopped (GenServer.stop), its mailbox may still hold that message when the ring moves the
    user: relayed at its exit, after the message was stored, not at the ring change."""
    probe, user, actor = _stored_for_no_one_on_node_a(asys)
    probe.tell(StopActor(req_id=1, reply_to=probe.outlet("caller"), kind="user", id=user))  # exit follows it
    _b_joins(probe)
    assert probe.seen("db") == []
    probe.tell(ChildExited("user", user, actor))
    assert probe.seen("db") == [RelayCatchUp(user)]


def test_recent_ids_forget_the_oldest_past_their_size() -> None:
    from chatactors.core.recent import RecentIds

    seen = RecentIds(3, (1, 2))
    assert not seen.add(1) and seen.add(3) and seen.add(4)  # 1 is forgotten now
    assert 1 not in seen and {2, 3, 4} == {i for i in range(6) if i in seen}
    assert seen.add(1)


def test_a_session_delivers_a_message_once_even_if_its_login_inbox_had_it(sqlite_url: str) -> None:
    """A catch-up racing a login can push a message the login's inbox returned; any push can come
    twice. The embedded session hands each message id to its callback once, as the gateway, the
    client library and the page do."""
    from helpers import Inbox

    from chatactors.messages import Push as PushEvent

    chat = Chat(sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    try:
        juan = chat.create("juan", "secreto123")
        waiting = juan.send_message("maria", "antes") if chat.register("maria", "secreto123") else None
        maria = chat.login("maria", "secreto123")
        assert waiting is not None and [m.id for m in maria.login_inbox] == [waiting.id]
        got = Inbox()
        maria.on_message(got)
        chat._on_push(PushEvent((maria.user_id,), waiting))  # as a racing catch-up would
        fresh = juan.send_message("maria", "después")
        chat._on_push(PushEvent((maria.user_id,), fresh))  # the same push again
        assert [m.id for m in got.wait_for(1, 10)] == [fresh.id]
        juan.send_message("maria", "y otra")
        assert [m.body for m in got.wait_for(2, 10)] == ["después", "y otra"]
    finally:
        chat.shutdown()
