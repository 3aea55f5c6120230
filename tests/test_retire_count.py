"""The retire handshake counts forwards: the directory approves only when nothing is on its way.

The actor shells of the directory and a user, wired by hand (no actor system): what each sends is
captured and handed to the other in the order a test chooses, including the order multiprocTCPBase
can produce, where a forward is still in flight when the actor asks to retire.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from helpers import Addr

import chatactors.messages as m
from chatactors.actors.directory import DirectoryActor
from chatactors.actors.user import UserActor
from chatactors.core.activation import AskRetire
from chatactors.core.model import UserInfo

ADDRESS = Addr("user-7")


class Wired:
    """A directory and a user actor whose sends are captured, not delivered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.user = UserActor()
        self.user_sent = self.capture(self.user)
        monkeypatch.setattr(UserActor, "myAddress", ADDRESS, raising=False)
        self.user._roles = SimpleNamespace(directory=Addr("directory"))  # type: ignore[assignment]
        self.user.id = 7
        self.directory = self.new_directory()
        self.route()  # the first message activates the user...
        self.directory.receive_child_started(m.ChildStarted("user", 7, ADDRESS), None)  # ...and goes to it

    def new_directory(self) -> DirectoryActor:
        directory = DirectoryActor()
        directory._roles = SimpleNamespace(supervisor=Addr("supervisor"))  # type: ignore[assignment]
        self.directory_sent = self.capture(directory)
        return directory

    def capture(self, actor: Any) -> list[Any]:
        sent: list[Any] = []
        self.monkeypatch.setattr(actor, "send", lambda to, message: sent.append(message))
        return sent

    def route(self) -> None:
        self.directory.receive_route(m.Route("user", 7, m.Offline(7)), None)

    def envelopes(self) -> list[m.Envelope]:
        return [msg for msg in self.directory_sent if isinstance(msg, m.Envelope)]

    def ask(self) -> type:
        """The user asks to retire; the directory's answer."""
        self.user_sent.clear()
        self.user._perform([AskRetire()])
        [request] = self.user_sent
        assert isinstance(request, m.RetireRequest)
        del self.directory_sent[:]
        self.directory.receive_retire_request(request, ADDRESS)
        [answer] = self.directory_sent
        return type(answer)


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> Wired:
    return Wired(monkeypatch)


def test_a_forward_still_in_flight_denies_the_retire_until_it_arrives(wired: Wired) -> None:
    wired.route()
    first, second = wired.envelopes()
    assert (first.stream, first.seq, second.seq) == (wired.directory.stream, 1, 2)
    wired.user.receive_envelope(first, None)
    # "second" is still on the wire when the user asks: approving now could lose it.
    assert wired.ask() is m.RetireDenied
    wired.user.receive_envelope(second, None)
    assert wired.ask() is m.RetireApproved


def test_a_redelivered_envelope_is_not_counted_twice(wired: Wired) -> None:
    [first] = wired.envelopes()
    wired.user.receive_envelope(first, None)
    wired.user.receive_envelope(first, None)  # out of the stash, or a resend
    assert wired.user.received == {wired.directory.stream: 1}


def test_a_restarted_directory_counts_only_its_own_forwards(wired: Wired) -> None:
    [first] = wired.envelopes()
    wired.user.receive_envelope(first, None)
    old = wired.directory
    wired.directory = wired.new_directory()
    assert wired.directory.stream != old.stream
    assert wired.directory.registry.adopt(("user", 7), ADDRESS)
    assert wired.ask() is m.RetireApproved  # the old directory's count is not the new one's
    wired.directory.registry.cancel_retire(("user", 7), ADDRESS)
    wired.route()  # the new directory's first forward, not yet arrived
    assert wired.ask() is m.RetireDenied


def test_an_offline_notice_is_a_counted_forward(wired: Wired) -> None:
    [first] = wired.envelopes()
    wired.user.receive_envelope(first, None)
    sink = Addr("gateway")
    wired.directory.registry.attach(("user", 7), sink, 1)
    wired.directory.registry.detach(("user", 7), sink, 1)
    wired.directory._presence_changed(7)  # the last session went: the actor is told it is offline
    offline = wired.envelopes()[-1]
    assert isinstance(offline.body.body, m.Offline) and offline.seq == 2
    assert wired.ask() is m.RetireDenied
    wired.user.receive_envelope(offline, None)
    assert wired.ask() is m.RetireApproved


@pytest.mark.parametrize("shortcut", ["deliver", "catch_up"])
def test_a_forward_an_unloaded_actor_serves_at_once_is_counted(wired: Wired, shortcut: str) -> None:
    """A direct message to a hibernated user is stored before the user's state has loaded, and a
    catch-up never waits in the stash: both are forwards, so the actor has had them all when it asks
    (uncounted, every retire was denied: the actor a message woke never hibernated again)."""
    [first] = wired.envelopes()
    wired.user.receive_envelope(first, None)  # stashed: the state has not loaded
    wired.user._roles = SimpleNamespace(directory=Addr("directory"), persistence=Addr("db"))  # type: ignore[assignment]
    body: Any = (
        m.Deliver(
            req_id=1,
            reply_to=Addr("caller"),
            user_id=7,
            sender=UserInfo(1, "juan"),
            body="hola",
            recipient=UserInfo(7, "maria"),
        )
        if shortcut == "deliver"
        else m.CatchUp(7, relay=True)
    )
    if shortcut == "deliver":
        wired.directory.receive_route(m.Route("user", 7, body), None)
    else:  # as a hand-over sends it, straight to the actor
        wired.directory._apply(wired.directory.registry.route(("user", 7), body))
    second = wired.envelopes()[-1]
    assert second.seq == 2 and not wired.user.ready
    wired.user.receive_envelope(second, None)
    assert wired.user_sent and type(wired.user_sent[-1]).__name__ in ("StoreDirect", "RelayCatchUp")
    assert wired.ask() is m.RetireApproved
