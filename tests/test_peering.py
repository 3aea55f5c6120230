"""The border between a node's actors and the link (chatactors/peering.py), on a real
simpleSystemBase system and a fake link: addresses out and back, proxies, what is held."""

from __future__ import annotations

import dataclasses
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorSystem

from chatactors import peering as peering_module
from chatactors.bridge import SimpleBridge, SimpleSystem
from chatactors.core.ring import Node, Ring
from chatactors.messages import Delivery, Push, RemoteRef, Reply, Route
from chatactors.messages.edge import GetInbox
from chatactors.peering import Peering, rewrite


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: tuple[Any, ...]
    plain: int


def test_rewrite_reaches_every_address_and_keeps_what_has_none() -> None:
    a, b = ActorAddress("a"), ActorAddress("b")
    value = Outer((a, (b, 3), Route("user", 1, GetInbox(user_id=1, reply_to=a))), 7)
    out = rewrite(value, lambda x: f"<{x}>", lambda x: isinstance(x, ActorAddress))
    assert out.inner[0] == f"<{a}>" and out.inner[1] == (f"<{b}>", 3)
    assert out.inner[2].body.reply_to == f"<{a}>" and out.plain == 7
    untouched = Outer((1, ("x",)), 2)
    assert rewrite(untouched, str, lambda x: isinstance(x, ActorAddress)) is untouched


@pytest.fixture
def border() -> Iterator[tuple[Peering, list[tuple[str, Any]], queue.SimpleQueue[Any]]]:
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    pushes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    bridge = SimpleBridge(asys, pushes.put)
    sent: list[tuple[str, Any]] = []
    directory = ActorAddress("no-directory-here")  # what it is told becomes a dead letter
    p = Peering("a", bridge, lambda: directory, lambda: ((7, 1),))
    p.send = lambda node, message: sent.append((node, message))
    yield p, sent, pushes
    bridge.run_in_driver(asys.shutdown)
    bridge.close()


def on_driver(p: Peering, fn: Any) -> Any:
    return p.bridge.run_in_driver(fn)


def test_an_address_leaves_as_a_ref_and_comes_back_as_itself_or_a_proxy(border: Any) -> None:
    p, sent, pushes = border
    ref = on_driver(p, lambda: p.export(p.bridge.address))
    assert ref == RemoteRef("a", str(p.bridge.address))
    assert str(on_driver(p, lambda: p.resolve(ref))) == str(p.bridge.address)
    proxy = on_driver(p, lambda: p.resolve(RemoteRef("b", "x")))
    assert on_driver(p, lambda: p.export(proxy)) == RemoteRef(
        "b", "x"
    )  # a proxy leaves as what it stands for
    # An actor (here, the bridge itself) sending to the proxy: one Delivery to b, addresses as refs.
    p.bridge.send(proxy, Reply(3, p.bridge.address))
    on_driver(p, lambda: None)  # one driver turn: run, then flush
    on_driver(p, lambda: None)
    assert sent == [("b", Delivery("x", Reply(3, RemoteRef("a", str(p.bridge.address)))))]
    # A Delivery for the bridge comes in: its refs become local addresses again.
    p.received("b", Delivery(str(p.bridge.address), Push((7,), None)))  # type: ignore[arg-type]
    assert pushes.get(timeout=5) == Push((7,), None)  # type: ignore[arg-type]


def test_proxies_past_the_limit_are_closed_oldest_first(border: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    p, _, _ = border
    monkeypatch.setattr(peering_module, "MAX_PROXIES", 2)
    first = on_driver(p, lambda: p.proxy("b", "1"))
    on_driver(p, lambda: p.proxy("b", "2"))
    on_driver(p, lambda: p.proxy("b", "1"))  # used again: now the newest
    on_driver(p, lambda: p.proxy("b", "3"))
    assert list(p.proxies) == [("b", "1"), ("b", "3")]
    assert str(on_driver(p, lambda: p.proxy("b", "1"))) == str(first)


def test_a_reply_for_a_node_not_in_the_ring_waits_for_it_and_routing_goes_again(border: Any) -> None:
    p, sent, pushes = border
    reply = Delivery("somewhere", Reply(1, None))
    p.undelivered("c", (reply,))  # c joined a moment ago: not in our ring yet
    on_driver(p, lambda: None)
    assert sent == []
    p.ring_changed(Ring(frozenset({Node("a", 1), Node("c", 1)})))
    on_driver(p, lambda: None)
    assert ("c", reply) in sent
    assert p.directories.keys() == {"c"} and p.dropped == 0


def test_held_messages_for_a_node_that_never_joins_are_dropped_after_a_while(
    border: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, sent, _ = border
    monkeypatch.setattr(peering_module, "HOLD", 0.0)
    p.undelivered("gone", (Delivery("x", Reply(1, None)), Delivery("y", Reply(2, None))))
    p.ring_changed(Ring(frozenset({Node("a", 1)})))
    on_driver(p, lambda: None)
    assert sent == [] and p.dropped == 2


def test_requests_waiting_for_the_ring_are_bounded_the_oldest_dropped(
    border: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node in the ring that takes nothing (its link never answers) sends every request routed to
    it back here to wait: at most MAX_PARKED wait, the oldest go first (their callers time out)."""
    p, _, _ = border
    monkeypatch.setattr(peering_module, "MAX_PARKED", 3)
    monkeypatch.setattr(peering_module, "PARK_FIRST", 3600.0)  # nothing goes again during the test
    p.ring_changed(Ring(frozenset({Node("a", 1), Node("b", 1)})))
    on_driver(p, lambda: None)
    routed = [Delivery(peering_module.DIRECTORY, Push((i,), None)) for i in range(5)]  # type: ignore[arg-type]
    p.undelivered("b", tuple(routed))
    assert on_driver(p, lambda: list(p._parked)) == routed[2:]
    assert p.dropped == 2


def test_a_message_bounced_between_disagreeing_rings_stops_after_max_hops() -> None:
    """Two nodes whose rings disagree for a moment would pass a key back and forth: the directory
    forwards a message at most Forwarded.MAX_HOPS times, then serves it where it is."""
    from chatactors.actors.directory import DirectoryActor
    from chatactors.core.model import Receipt, Status
    from chatactors.core.ring import score
    from chatactors.messages import ClusterView, Forwarded, Notify

    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        directory = asys.createActor(DirectoryActor)
        probe = SimpleSystem(asys)  # stands in for node b's directory; run() runs the actors

        def told(message: Any) -> list[Any]:
            probe.tell(directory, message)
            probe.run()  # until no actor has anything left to send
            return probe.received()

        user = next(u for u in range(1, 100) if score(("user", u), "b") > score(("user", u), "a"))
        ring = Ring(frozenset({Node("a", 1), Node("b", 1)}))
        assert told(ClusterView("a", ring, (("b", probe.address),))) == []
        event = Receipt((1,), Status.LEIDO, "x", 2)
        assert told(Notify(user, event)) == [Forwarded(Notify(user, event), 1)]
        assert told(Forwarded(Notify(user, event), 1)) == [Forwarded(Notify(user, event), 2)]
        assert told(Forwarded(Notify(user, event), Forwarded.MAX_HOPS)) == []  # served here: no session
    finally:
        asys.shutdown()


def test_routing_a_node_did_not_take_goes_again_without_a_ring_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node in the ring whose link did not take a routed message (not up yet, say): the message
    is routed again after PARK_FIRST, not only at the next ring change."""
    monkeypatch.setattr(peering_module, "PARK_FIRST", 0.0)
    monkeypatch.setattr(peering_module, "PARK_RETRY", 3600.0)  # the old flat wait: never, in a test
    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    pushes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    bridge = SimpleBridge(asys, pushes.put)
    try:
        # The local "directory" is the bridge itself, so what is routed again arrives as a push.
        p = Peering("a", bridge, lambda: bridge.address, lambda: ())
        p.send = lambda node, message: None
        p.ring_changed(Ring(frozenset({Node("a", 1), Node("b", 1)})))
        on_driver(p, lambda: None)
        p.undelivered("b", (Delivery(peering_module.DIRECTORY, Push((7,), None)),))  # type: ignore[arg-type]
        on_driver(p, lambda: None)  # parked, then its wait is over: routed again, here
        on_driver(p, lambda: None)
        assert pushes.get(timeout=5) == Push((7,), None)  # type: ignore[arg-type]
    finally:
        bridge.run_in_driver(asys.shutdown)
        bridge.close()


def test_a_session_named_by_both_its_attach_and_a_reattach_counts_once() -> None:
    """During a ring change a login's Attach can reach the new owner, and then the Reattach of the
    node holding its socket names the same session again: one session, offline after its logout."""
    from chatactors.actors.directory import DirectoryActor
    from chatactors.messages import Detach, Reattach, WhoIsOnline

    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        directory = asys.createActor(DirectoryActor)
        probe = SimpleSystem(asys)  # the sink, and the caller of the requests

        def told(message: Any) -> list[Any]:
            probe.tell(directory, message)
            probe.run()
            return probe.received()

        def online() -> Any:
            [reply] = told(WhoIsOnline(req_id=1, reply_to=probe.address, user_ids=(7,)))
            return reply.value

        def logout(session: int) -> None:
            told(Detach(req_id=2, reply_to=probe.address, user_id=7, sink=probe.address, session=session))

        told(Reattach(probe.address, ((7, (1,)),)))  # as session 1's Attach counted it
        told(Reattach(probe.address, ((7, (1, 2)),)))  # the socket's node: session 1 again, and 2
        logout(1)
        assert online() == (7,)  # session 2 is open
        logout(2)
        assert online() == ()  # not online with a session counted twice
    finally:
        asys.shutdown()


def test_an_actor_whose_id_moved_to_another_node_is_handed_over_and_gets_nothing_more() -> None:
    """The ring changed and another node owns a live user now: its actor here is told to go, what
    is routed for it goes to the owner, and if the id comes back before the actor has gone, what is
    routed waits for a fresh activation rather than reaching the old state."""
    from chatactors.actors.directory import DirectoryActor
    from chatactors.core.ring import score
    from chatactors.messages import ChildStarted, ClusterView, Forwarded, HandOver
    from chatactors.messages.routing import Envelope

    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        directory = asys.createActor(DirectoryActor)
        probe = SimpleSystem(asys)  # node b's directory
        out: list[tuple[Any, Any]] = []
        old = probe.open_outlet("old", out)  # the user's actor on node a
        late = probe.open_outlet("late", out)  # an actor started for a ring that changed meanwhile

        def told(message: Any) -> list[Any]:
            probe.tell(directory, message)
            probe.run()
            return probe.received()

        user, other = [u for u in range(1, 100) if score(("user", u), "b") > score(("user", u), "a")][:2]
        alone, both = Ring(frozenset({Node("a", 1)})), Ring(frozenset({Node("a", 1), Node("b", 1)}))
        told(ClusterView("a", alone, ()))
        told(ChildStarted("user", user, old))
        assert told(Route("user", user, "hola")) == []
        assert [(k, type(m)) for k, m in out] == [("old", Envelope)]

        assert told(ClusterView("a", both, (("b", probe.address),))) == []
        assert out[1:] == [("old", HandOver("user", user))]
        assert told(Route("user", user, "otra")) == [Forwarded(Route("user", user, "otra"), 1)]

        told(ClusterView("a", alone, ()))  # b left before the old actor had gone
        assert told(Route("user", user, "vuelve")) == []  # waits for the old actor's exit
        assert out[2:] == []

        told(ClusterView("a", both, (("b", probe.address),)))
        told(ChildStarted("user", other, late))  # its start was asked for under the old ring
        assert out[2:] == [("late", HandOver("user", other))]
    finally:
        asys.shutdown()


def test_every_way_an_actor_becomes_live_here_is_handed_over_when_its_id_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only a start: an actor that was retiring when the ring moved it and then stayed (it found
    work), and a start asked for what waited while an actor exited, after the ring moved its id (what
    waited goes to the owner; nothing starts here). A key served here because its message bounced
    Forwarded.MAX_HOPS times stays for PIN_GRACE, or until the next ring change."""
    from thespian.actors import DeadEnvelope, WakeupMessage

    from chatactors.actors import directory as directory_module
    from chatactors.actors.directory import DirectoryActor
    from chatactors.core.ring import score
    from chatactors.messages import (
        ChildExited,
        ChildStarted,
        ClusterView,
        Config,
        Configure,
        Forwarded,
        HandOver,
        RetireApproved,
        RetireCancelled,
        RetireRequest,
        Roles,
        StartChild,
    )
    from chatactors.messages.routing import Envelope

    asys = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        directory = asys.createActor(DirectoryActor)
        probe = SimpleSystem(asys)  # node b's directory
        out: list[tuple[Any, Any]] = []
        stays, goes, bounced, supervisor = (
            probe.open_outlet(n, out) for n in ("stays", "goes", "bounced", "sup")
        )

        def told(message: Any) -> list[Any]:
            probe.tell(directory, message)
            probe.run()
            return probe.received()

        def seen(name: str) -> list[Any]:
            return [m for k, m in out if k == name]

        roles = Roles(directory=directory, supervisor=supervisor, persistence=supervisor, login=supervisor)
        told(Configure(Config("sqlite://"), roles))
        u1, u2, u3 = [u for u in range(1, 200) if score(("user", u), "b") > score(("user", u), "a")][:3]
        alone, both = Ring(frozenset({Node("a", 1)})), Ring(frozenset({Node("a", 1), Node("b", 1)}))
        told(ClusterView("a", alone, ()))
        for user, address in ((u1, stays), (u2, goes)):
            told(ChildStarted("user", user, address))
            told(RetireRequest("user", user, address))
            assert seen("stays" if address is stays else "goes") == [RetireApproved()]
        assert told(Route("user", u2, "waited")) == []  # u2 is retiring: this waits for its exit
        told(ClusterView("a", both, (("b", probe.address),)))  # both ids are b's now

        told(RetireCancelled("user", u1, stays))  # work came in after it asked: it stays, for now
        assert seen("stays") == [RetireApproved(), HandOver("user", u1)]

        assert told(ChildExited("user", u2, goes)) == [Forwarded(Route("user", u2, "waited"), 1)]
        assert seen("goes") == [RetireApproved()] and seen("sup") == []  # nothing started here

        assert told(Forwarded(Route("user", u3, "rebota"), Forwarded.MAX_HOPS)) == []
        assert seen("sup") == [StartChild("user", u3)]  # served here: the rings disagree
        told(ChildStarted("user", u3, bounced))
        assert [type(m) for m in seen("bounced")] == [Envelope]  # served, not handed over: pinned
        told(WakeupMessage(1.0))  # a tick within PIN_GRACE: still pinned
        assert [type(m) for m in seen("bounced")] == [Envelope]
        monkeypatch.setattr(directory_module, "PIN_GRACE", 0.0)
        told(WakeupMessage(1.0))  # past it (b has caught up, and no ring change comes here): checked
        assert seen("bounced")[1:] == [HandOver("user", u3)]

        # It had gone without a word (its exit never reported): the HandOver comes back as a dead
        # letter, and what waits for the id (back here now) gets a fresh start.
        told(ClusterView("a", alone, ()))
        assert told(Route("user", u3, "vuelve")) == []
        told(DeadEnvelope(bounced, HandOver("user", u3)))
        assert seen("sup") == [StartChild("user", u3), StartChild("user", u3)]
    finally:
        asys.shutdown()
