"""Let it crash: the core actors are supervised (docs/architecture.md, Supervision).

The pure policy first (restart intensity, which exit is whose), then every core role crashing for
real: an exception injected into a handler on every base and database, and ``kill -9`` of the
role's process on multiprocTCPBase with PostgreSQL while senders keep sending. Waits are on
conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from chatactors import Chat, ChatClosed, ChatError, Restarting
from chatactors.actors.base import on
from chatactors.actors.directory import DirectoryActor
from chatactors.actors.login import LoginService
from chatactors.actors.persistence import PersistenceActor
from chatactors.actors.supervisor import SupervisorActor
from chatactors.core.clock import FakeClock
from chatactors.core.registry import Registry, Start
from chatactors.core.supervision import ROLES, CoreTree, GiveUp, Restart, RestartIntensity
from chatactors.messages import Ping

PASSWORD = "secreto123"
CLASSES = {
    "persistence": PersistenceActor,
    "login": LoginService,
    "supervisor": SupervisorActor,
    "directory": DirectoryActor,
}


# -- the policy, pure ---------------------------------------------------------------------------------
class TestRestartIntensity:
    def test_allows_max_restarts_within_the_period_then_refuses(self) -> None:
        clock = FakeClock()
        intensity = RestartIntensity(3, 10.0, clock)
        assert [intensity.allow() for _ in range(3)] == [True, True, True]
        clock.advance(9.9)
        assert intensity.allow() is False

    def test_restarts_older_than_the_period_no_longer_count(self) -> None:
        clock = FakeClock()
        intensity = RestartIntensity(2, 5.0, clock)
        assert intensity.allow() and intensity.allow()
        clock.advance(5.1)
        assert intensity.allow() is True

    def test_zero_restarts_means_the_first_crash_stops_the_tree(self) -> None:
        assert RestartIntensity(0, 1.0, FakeClock()).allow() is False

    def test_refuses_a_meaningless_setting(self) -> None:
        with pytest.raises(ValueError):
            RestartIntensity(1, 0.0)


class TestCoreTree:
    def tree(self, max_restarts: int = 5) -> tuple[CoreTree, FakeClock]:
        clock = FakeClock()
        tree = CoreTree(RestartIntensity(max_restarts, 10.0, clock))
        for role in ROLES:
            tree.assign(role, f"placeholder-{role}")
            tree.add_alias(role, f"real-{role}")
        return tree, clock

    def test_an_exit_under_either_name_restarts_that_role(self) -> None:
        tree, _ = self.tree()
        assert tree.exited("real-persistence") == Restart("persistence")
        tree.assign("persistence", "placeholder-2")
        assert tree.exited("placeholder-login") == Restart("login")
        assert tree.restarts == 2

    def test_a_second_report_of_the_same_exit_changes_nothing(self) -> None:
        tree, _ = self.tree()
        assert tree.exited("real-directory") == Restart("directory")
        assert tree.exited("real-directory") is None  # Thespian reports exits twice on multiproc
        assert tree.exited("placeholder-directory") is None

    def test_an_old_incarnation_is_not_the_current_one(self) -> None:
        tree, _ = self.tree()
        tree.exited("real-login")
        tree.assign("login", "new-login")
        assert tree.exited("real-login") is None
        assert tree.role_of("new-login") == "login"

    def test_too_many_restarts_give_up_and_stop_the_tree(self) -> None:
        tree, clock = self.tree(max_restarts=1)
        assert tree.exited("real-persistence") == Restart("persistence")
        tree.assign("persistence", "p2")
        clock.advance(1.0)
        decision = tree.exited("p2")
        assert isinstance(decision, GiveUp) and decision.role == "persistence"
        assert "more than 1 restarts" in decision.reason
        assert tree.stopping and tree.exited("real-login") is None  # exits while stopping are expected

    def test_exits_while_stopping_are_not_crashes(self) -> None:
        tree, _ = self.tree()
        tree.stopping = True
        assert tree.exited("real-supervisor") is None

    def test_unknown_roles_are_refused(self) -> None:
        tree, _ = self.tree()
        with pytest.raises(ValueError):
            tree.assign("cache", "x")


class TestRegistryAfterACoreCrash:
    def test_a_lost_supervisor_restarts_what_had_work_and_forgets_the_rest(self) -> None:
        registry = Registry(FakeClock())
        registry.route(("user", 1), "waiting")  # activating: its start request is lost
        registry.route(("user", 2), "m")
        registry.started(("user", 2), "addr-2")  # live, online
        registry.attach(("user", 2), "sink", 1)
        registry.route(("user", 3), "m")
        registry.started(("user", 3), "addr-3")  # live, offline, nothing buffered
        effects = registry.supervisor_lost()
        assert set(effects) == {Start(("user", 1)), Start(("user", 2))}
        assert registry.live("user") == 2 and registry.address(("user", 3)) is None
        assert registry.crashes == 2
        assert registry.route(("user", 1), "more") == []  # still activating: buffered

    def test_a_new_directory_adopts_live_actors_but_never_two_for_one_key(self) -> None:
        registry = Registry(FakeClock())
        assert registry.adopt(("user", 1), "old") is True
        assert registry.address(("user", 1)) == "old"
        registry.route(("user", 2), "m")  # a newer activation already started
        assert registry.adopt(("user", 2), "old-2") is False
        assert registry.adopt(("user", 1), "old") is True  # the same actor twice: harmless
        assert registry.addresses() == [(("user", 1), "old")]


# -- crashes for real -----------------------------------------------------------------------------------
def crash_once(monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    """The role's next Ping raises: an unexpected exception inside a core actor's handler."""
    calls: list[int] = []

    def boom(self: Any, message: Any, sender: Any) -> None:
        if not calls:
            calls.append(1)
            raise RuntimeError("injected fault")
        self.reply(message, os.getpid())

    monkeypatch.setattr(CLASSES[role], "HANDLERS", CLASSES[role].HANDLERS.extend(on(Ping, boom)))


def wait_new_role(chat: Chat, role: str, old: Any, wait_until: Any) -> Any:
    return wait_until(
        lambda: getattr(chat.roles, role) if str(getattr(chat.roles, role)) != str(old) else None,
        timeout=10,
        what=f"the {role} to be restarted",
    )


@pytest.fixture
def simple_chat(db_url: str) -> Iterator[Chat]:
    chat = Chat(db_url, "simpleSystemBase", password_profile="cheapest", echo=False, announce_login=False)
    yield chat
    chat.shutdown()


@pytest.mark.parametrize("role", ROLES)
def test_a_core_actor_that_raises_is_restarted_and_the_chat_keeps_serving(
    simple_chat: Chat,
    role: str,
    monkeypatch: pytest.MonkeyPatch,
    collector: Any,
    wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = simple_chat
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    pushed = collector()
    maria.on_message(pushed)
    before = juan.send_message("maria", "antes")
    crash_once(monkeypatch, role)
    old = getattr(chat.roles, role)

    with caplog.at_level(logging.WARNING, logger="chatactors"):
        with pytest.raises(ChatError, match="internal error: RuntimeError"):
            chat.os_pid(old)  # the caller is answered, not left to time out
        wait_new_role(chat, role, old, wait_until)
        wait_until(lambda: "restarted" in caplog.text, what="the restart to be logged")

    assert f"core actor {role} exited unexpectedly" in caplog.text
    assert f"core actor {role} restarted" in caplog.text
    # Every layer serves again: identity, location (sessions re-attached), lifecycle, persistence.
    after = juan.send_message("maria", "despues")
    assert pushed.wait_for(2)[-1].id == after.id  # maria's session still gets pushes
    assert chat.online([maria.user_id]) == {maria.user_id}
    chat.register("pedro", PASSWORD)
    assert chat.login("pedro", PASSWORD).user_id > 0
    assert [m.id for m in maria.read_messages()] == [before.id, after.id]
    assert chat.os_pid(getattr(chat.roles, role)) == os.getpid()


def test_a_restarted_directory_knows_live_rooms_and_their_members(
    simple_chat: Chat, monkeypatch: pytest.MonkeyPatch, collector: Any, wait_until: Any
) -> None:
    chat = simple_chat
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    juan.create_room("general")
    maria.join("general")
    pushed = collector()
    maria.on_message(pushed)
    juan.send_room("general", "uno")
    live = chat.stats().live_rooms
    crash_once(monkeypatch, "directory")
    old = chat.roles.directory
    with pytest.raises(ChatError):
        chat.os_pid(old)
    wait_new_role(chat, "directory", old, wait_until)
    assert chat.stats().live_rooms == live  # adopted, not restarted
    m = juan.send_room("general", "dos")
    assert [x.id for x in pushed.wait_for(2)][-1] == m.id


def test_past_the_restart_intensity_the_chat_stops_loudly(
    db_url: str, monkeypatch: pytest.MonkeyPatch, wait_until: Any, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Chat(
        db_url, "simpleSystemBase", password_profile="cheapest", echo=False, max_restarts=1, max_seconds=60
    )
    caplog.set_level(logging.WARNING, logger="chatactors")
    try:
        crash_once(monkeypatch, "persistence")
        old = chat.roles.persistence
        with pytest.raises(ChatError):
            chat.os_pid(old)
        wait_new_role(chat, "persistence", old, wait_until)  # the first crash: restarted
        crash_once(monkeypatch, "persistence")
        with pytest.raises(ChatError):
            chat.os_pid(chat.roles.persistence)
        wait_until(lambda: chat._node.stopped_reason, what="the chat to stop")  # the second: too many
        assert "giving up: persistence exited" in caplog.text
        with pytest.raises(ChatClosed, match="this chat stopped"):
            chat.register("tarde", PASSWORD)
    finally:
        chat.shutdown()


# -- kill -9 under load (multiprocTCPBase, PostgreSQL) ---------------------------------------------------
SENDERS = 3
PER_SENDER = 60


def _send_until_acked(session: Any, to: str, body: str, client_id: str, deadline: float) -> tuple[int, bool]:
    """Send, retrying with the same client_id (as docs/api.md says) until acknowledged."""
    retried = False
    while True:
        try:
            return session.send_message(to, body, client_id=client_id).id, retried
        except (ChatError, Restarting):
            retried = True
            if time.monotonic() > deadline:
                raise


@pytest.mark.multiproc
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_kill_9_of_a_core_actor_under_load_loses_nothing_and_stores_nothing_twice(
    pg_url: str, role: str, wait_until: Any
) -> None:
    chat = Chat(
        pg_url, "multiprocTCPBase", password_profile="cheapest", echo=False, timeout=2.0, max_restarts=3
    )
    try:
        sink = chat.crear("sink", PASSWORD)
        senders = [chat.crear(f"sender{i}", PASSWORD) for i in range(SENDERS)]
        acked: dict[str, int] = {}
        lock = threading.Lock()
        enough = threading.Event()
        errors: list[BaseException] = []
        deadline = time.monotonic() + 60

        def run(index: int, session: Any) -> None:
            try:
                for n in range(PER_SENDER):
                    client_id = f"{index}-{n}"
                    message_id, _ = _send_until_acked(session, "sink", f"m {client_id}", client_id, deadline)
                    with lock:
                        acked[client_id] = message_id
                        if len(acked) >= SENDERS * 10:
                            enough.set()
            except BaseException as exc:  # reported below, with the thread's name
                errors.append(exc)
                enough.set()

        threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(senders)]
        for t in threads:
            t.start()
        assert enough.wait(30), "the senders did not get going"
        old = getattr(chat.roles, role)
        os.kill(chat.os_pid(old), signal.SIGKILL)
        wait_new_role(chat, role, old, wait_until)
        for t in threads:
            t.join(90)
        assert not errors, errors
        assert len(acked) == SENDERS * PER_SENDER

        # Service is back for every layer, old sessions included.
        late = chat.login("sink", PASSWORD)
        assert late.user_id == sink.user_id
        assert senders[0].send_message("sink", "after", client_id="after").id > 0

        conn = psycopg2.connect(pg_url)
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT client_id, COUNT(*), MIN(id) FROM mensajes WHERE recipient_id = %s GROUP BY client_id",
                (sink.user_id,),
            )
            rows = {cid: (count, first) for cid, count, first in cur.fetchall()}
        conn.close()
        duplicated = {cid: c for cid, (c, _) in rows.items() if c != 1}
        assert not duplicated, f"stored more than once: {duplicated}"
        for client_id, message_id in acked.items():
            assert rows[client_id][1] == message_id  # each ack names the one stored row
    finally:
        chat.shutdown()
