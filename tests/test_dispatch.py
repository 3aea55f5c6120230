"""Each actor class has one dispatch table, and it handles what is sent to that actor.

``RECEIVES`` and ``SERVES`` are who-receives-what as the ``messages`` modules' docstrings tell it;
the tables must match them exactly (a handler nobody sends to is as wrong as a message nobody
handles). What the actors send each other is also read from their source with ``ast``, so a new
``self.send(self.roles.directory, New(...))`` fails here until the directory's table has ``New``.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import Addr
from thespian.actors import ActorExitRequest, ChildActorExited, DeadEnvelope, WakeupMessage

import chatactors.actors
import chatactors.messages as m
from chatactors.actors.base import ChatActor, Handlers, on
from chatactors.actors.directory import DirectoryActor
from chatactors.actors.login import LoginService
from chatactors.actors.persistence import PersistenceActor
from chatactors.actors.room import RoomActor
from chatactors.actors.root import CoreSupervisor
from chatactors.actors.supervisor import SupervisorActor
from chatactors.actors.user import UserActor
from chatactors.actors.virtual import VirtualActor
from chatactors.errors import InternalError

ACTORS = Path(chatactors.actors.__file__).parent

# Every actor: the root's Configure and Ping, RolesChanged, Batch, and Thespian's exit.
EVERY = {m.Configure, m.Ping, m.RolesChanged, m.Batch, ActorExitRequest}
# A user's or a room's: Init, what the directory routes, its retiring handshake and a hand-over.
ACTIVATION = EVERY | {m.Init, m.Envelope, m.IdleCheck, m.HandOver, m.RetireApproved, m.RetireDenied}

RECEIVES: dict[type[ChatActor], set[type]] = {
    CoreSupervisor: EVERY | {m.StartCore, m.Watch, m.WhoAmI, m.Reply, ChildActorExited},
    SupervisorActor: EVERY | {m.StartChild, m.Assigned, ChildActorExited},
    DirectoryActor: EVERY
    | {
        m.Route,
        m.Detach,
        m.DropSink,
        m.Notify,
        m.RoomMembers,
        m.RetireRequest,
        m.RetireCancelled,
        m.Spares,
        m.ChildStarted,
        m.ChildExited,
        m.Adopt,
        m.Reattach,
        m.WhoIsOnline,
        m.StopActor,
        m.GetStats,
        m.ClusterView,
        m.Forwarded,
        m.WatchMembers,
        m.MemberSinks,
        WakeupMessage,
        DeadEnvelope,
    },
    LoginService: EVERY | {m.RegisterUser, m.LoginUser, m.Logout, m.Hashed, WakeupMessage},
    PersistenceActor: EVERY
    | {
        m.LoadUser,
        m.LoadRoom,
        m.LoadInbox,
        m.DeliverWaiting,
        m.RelayCatchUp,
        m.StoreDirect,
        m.StoreRoom,
        m.FetchUnread,
        m.MarkRead,
        m.MarkRoomRead,
        m.RoomOp,
        m.Flush,
        m.LookupUser,
        m.GetStatus,
        m.GetHistory,
        m.ListRooms,
        m.ReadBy,
        m.ListMembers,
        m.SearchNames,
    },
    UserActor: ACTIVATION | {m.UserLoaded, m.UnreadFetched, m.ReadAck, m.RoomOpDone},
    RoomActor: ACTIVATION | {m.RoomLoaded, m.RoomSinks},
}
SERVES: dict[type[VirtualActor], set[type]] = {
    UserActor: {
        m.Attach,
        m.CatchUp,
        m.Offline,
        m.GetInbox,
        m.GetPid,
        m.Deliver,
        m.ReadMessages,
        m.SendRoom,
        m.RoomCommand,
        m.ConfirmRead,
    },
    RoomActor: {m.MemberPresence, m.MemberJoined, m.MemberLeft, m.PostRoom, m.AdvanceCursor},
}
ROLE = {
    "directory": DirectoryActor,
    "supervisor": SupervisorActor,
    "persistence": PersistenceActor,
    "login": LoginService,
}
KIND = {"user": UserActor, "room": RoomActor}
MODULE = {
    "root": CoreSupervisor,
    "supervisor": SupervisorActor,
    "directory": DirectoryActor,
    "login": LoginService,
    "persistence": PersistenceActor,
    "user": UserActor,
    "room": RoomActor,
    "virtual": VirtualActor,
}
# Thespian's own messages, and the call that makes it send one to the actor.
THESPIAN = {"wakeupAfter": WakeupMessage, "createActor": ChildActorExited, "handleDeadLetters": DeadEnvelope}


@pytest.mark.parametrize("cls", RECEIVES, ids=lambda c: c.__name__)
def test_each_table_handles_what_is_sent_to_its_actor(cls: type[ChatActor]) -> None:
    assert set(cls.HANDLERS) == RECEIVES[cls]


@pytest.mark.parametrize("cls", SERVES, ids=lambda c: c.__name__)
def test_each_user_or_room_serves_what_is_routed_to_it(cls: type[VirtualActor]) -> None:
    assert set(cls.ROUTED) == SERVES[cls]


def _sent(tree: ast.AST) -> list[tuple[type[ChatActor], str, str]]:
    """(receiving class, "HANDLERS" or "ROUTED", message class name) for each send read in ``tree``."""

    def message(node: ast.expr, assigned: dict[str, str]) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
        return assigned.get(node.id) if isinstance(node, ast.Name) else None

    found: list[tuple[type[ChatActor], str, str]] = []
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assigned = {
            target.id: name
            for node in ast.walk(function)
            if isinstance(node, ast.Assign) and (name := message(node.value, {}))
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
            func, args = call.func, call.args
            name = ast.unparse(func)
            if name == "self.send" and len(args) == 2:
                to = ast.unparse(args[0])
                sent = message(args[1], assigned)
                if sent and to.startswith("self.roles."):
                    found.append((ROLE[to.removeprefix("self.roles.")], "HANDLERS", sent))
            elif name in ("Route", "self._route") and len(args) == 3 and isinstance(args[0], ast.Constant):
                sent = message(args[2], assigned)
                if sent:
                    found.append((KIND[args[0].value], "ROUTED", sent))
            elif name == "self._persist" and len(args) == 1:
                sent = message(args[0], assigned)
                if sent:
                    found.append((PersistenceActor, "HANDLERS", sent))
    return found


def test_the_source_reader_sees_each_form_of_send() -> None:
    source = """
def f(self):
    self.send(self.roles.directory, Notify(1, e))
    store = StoreRoom(x)
    self.send(self.roles.persistence, store)
    self.send(address, Init(1))
    self.send(self.roles.login, variable_from_elsewhere)
    self._route("room", 3, AdvanceCursor(r))
    self.send(d, Envelope(Route("user", 2, Offline(2))))
    self._persist(LoadUser(1))
"""
    assert set(_sent(ast.parse(source))) == {
        (DirectoryActor, "HANDLERS", "Notify"),
        (PersistenceActor, "HANDLERS", "StoreRoom"),
        (RoomActor, "ROUTED", "AdvanceCursor"),
        (UserActor, "ROUTED", "Offline"),
        (PersistenceActor, "HANDLERS", "LoadUser"),
    }


@pytest.mark.parametrize("module", sorted(MODULE))
def test_what_an_actor_sends_is_in_its_receivers_table(module: str) -> None:
    tree = ast.parse((ACTORS / f"{module}.py").read_text())
    missing = [
        f"{receiver.__name__}.{table} lacks {sent}"
        for receiver, table, sent in _sent(tree)
        if getattr(m, sent) not in getattr(receiver, table)
    ]
    to_self = {
        ast.unparse(call.args[1].func)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and ast.unparse(call.func) == "self.send"
        and ast.unparse(call.args[0]) == "self.myAddress"
        and isinstance(call.args[1], ast.Call)
    }
    to_self |= {
        THESPIAN[call.func.attr].__name__
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in THESPIAN
    }
    handled = {t.__name__ for t in MODULE[module].HANDLERS}
    missing += [f"{MODULE[module].__name__} sends itself {name}, unhandled" for name in to_self - handled]
    assert not missing


def test_an_unknown_message_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    actor = DirectoryActor()
    with caplog.at_level(logging.WARNING, "chatactors"):
        actor.receiveMessage(object(), None)
    assert "DirectoryActor dropped unknown message 'object'" in caplog.text


def test_an_unknown_routed_body_is_logged_and_its_caller_refused(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = RoomActor()
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(actor, "send", lambda to, message: sent.append((to, message)))
    caller = Addr("caller")
    request = m.GetInbox(req_id=7, reply_to=caller, user_id=3)  # a user's, not a room's
    with caplog.at_level(logging.WARNING, "chatactors"):
        actor._serve(m.Envelope(m.Route("room", 1, request)))
        actor._serve(m.Envelope(m.Route("room", 1, m.Offline(3))))  # nobody waits: only logged
    assert caplog.text.count("RoomActor dropped unknown message") == 2
    [(to, failed)] = sent
    assert to is caller and failed.req_id == 7 and isinstance(failed.error, InternalError)


def test_a_message_is_dispatched_by_its_bases_when_its_own_type_has_no_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Special(m.Ping):
        pass

    actor = DirectoryActor()
    sent: list[Any] = []
    monkeypatch.setattr(actor, "send", lambda to, message: sent.append(message))
    actor.receiveMessage(Special(req_id=4, reply_to=Addr("caller")), None)
    assert [type(r) for r in sent] == [m.Reply] and sent[0].req_id == 4


def test_an_override_left_out_of_the_table_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="receive_ping"):

        class Forgetful(ChatActor):
            def receive_ping(self, message: m.Ping, sender: Any) -> None:
                pass

    class Careful(ChatActor):
        def receive_ping(self, message: m.Ping, sender: Any) -> None:
            pass

        HANDLERS = ChatActor.HANDLERS.extend(on(m.Ping, receive_ping))

    assert Careful.HANDLERS.find(m.Ping) is Careful.receive_ping
    assert isinstance(Careful.HANDLERS, Handlers)


def test_a_configured_value_read_before_configure_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="DirectoryActor used its roles before it was configured"):
        _ = DirectoryActor().roles
    with pytest.raises(InternalError, match="PersistenceActor used its store"):
        _ = PersistenceActor().store
