"""Virtual-actor lifecycle (V0.8): hibernation, the retire race, crashes and restarts.

Every wait here is on a condition (a push, a reply, the directory's counters) with a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from chatactors import ENTREGADO, Chat, ChatTimeout, Session

PASSWORD = "secreto123"


def crear(chat: Chat, *names: str) -> list[Session]:
    return [chat.crear(name, PASSWORD) for name in names]


def test_idle_users_hibernate_and_a_message_wakes_them(
    make_chat: Any, collector: Any, wait_until: Any
) -> None:
    chat = make_chat(idle_timeout=0.05)
    juan, maria = crear(chat, "juan", "maria")
    pushed = collector()
    maria.on_message(pushed)
    first = juan.send_message("maria", "antes de dormir")

    wait_until(lambda: chat.stats().live_users == 0, what="every user actor to hibernate")
    stats = chat.stats()
    assert stats.retirements >= 2 and stats.crashes == 0
    assert stats.online_users == 2  # hibernating is not logging out
    activations = stats.activations

    m = juan.send_message("maria", "despierta")  # maria's actor is activated on demand
    assert m.status == ENTREGADO  # maria is still online: pushed at once
    assert pushed.wait_for(2)[1] == m
    assert chat.stats().activations > activations
    assert [x.body for x in maria.inbox] == ["antes de dormir", "despierta"]  # rebuilt from the database
    assert [x.id for x in maria.read_messages()] == [first.id, m.id]


def test_a_hibernated_offline_user_gets_messages_at_next_login(make_chat: Any, wait_until: Any) -> None:
    chat = make_chat(idle_timeout=0.05)
    juan, maria = crear(chat, "juan", "maria")
    maria.logout()
    wait_until(lambda: chat.stats().live_users == 0, what="every user actor to hibernate")
    m = juan.send_message(maria.user_id, "guardado")
    back = chat.login(maria.user_id, PASSWORD)
    assert [x.id for x in back.login_inbox] == [m.id]


def test_the_retire_race_loses_nothing_and_stores_nothing_twice(make_chat: Any, collector: Any) -> None:
    """Senders keep writing to maria while her actor keeps asking to retire (idle_timeout ~0)."""
    chat = make_chat(idle_timeout=0.002, timeout=10.0)
    maria, *senders = crear(chat, "maria", "juan", "pedro", "ana")
    pushed = collector()
    maria.on_message(pushed)
    per_sender = 15
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def stream(sender: Session) -> None:
        try:
            for i in range(per_sender):
                m = sender.send_message("maria", f"{sender.username}-{i}")
                with lock:
                    acknowledged.append(m.id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    total = per_sender * len(senders)
    assert len(acknowledged) == total and len(set(acknowledged)) == total

    stored = maria.history(limit=200)
    bodies = [m.body for m in stored]
    assert len(bodies) == total, "a message was lost or stored twice"
    assert sorted(bodies) == sorted(f"{s.username}-{i}" for s in senders for i in range(per_sender))
    assert sorted(m.id for m in stored) == sorted(acknowledged)
    # Each sender's messages were stored in the order they were sent.
    for s in senders:
        mine = [b for b in bodies if b.startswith(s.username + "-")]
        assert mine == [f"{s.username}-{i}" for i in range(per_sender)]
    # Every one was pushed to maria exactly once, and the read returns each once.
    assert sorted(m.id for m in pushed.wait_for(total)) == sorted(acknowledged)
    assert sorted(m.id for m in maria.read_messages()) == sorted(acknowledged)
    assert chat.stats().retirements > 0, "the actors never retired: the race was not exercised"


def test_reads_while_the_reader_keeps_retiring(make_chat: Any) -> None:
    chat = make_chat(idle_timeout=0.002)
    juan, maria = crear(chat, "juan", "maria")
    seen: list[int] = []
    sent: list[int] = []
    for i in range(10):
        sent.append(juan.send_message("maria", f"m{i}").id)
        seen.extend(m.id for m in maria.read_messages())
    assert seen == sent  # each once, in order
    assert maria.read_messages() == []


def _kill_user_actor(chat: Chat, session: Session) -> None:
    """A real crash: SIGKILL to the actor's own process (no ActorExitRequest, no last words).

    Only multiprocTCPBase can crash one actor alone; on simpleSystemBase the actors share the test's
    process, and test_chat.py covers their stop and restart through ``chat.stop_actor``.
    """
    pid = chat.os_pid(session.pid)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)


multiproc_only = pytest.mark.parametrize("system", ["multiprocTCPBase"])


@multiproc_only
def test_a_crashed_user_actor_is_restarted_and_nothing_acknowledged_is_lost(
    make_chat: Any, collector: Any, wait_until: Any
) -> None:
    chat = make_chat()
    juan, maria = crear(chat, "juan", "maria")
    acknowledged = [juan.send_message("maria", f"antes {i}") for i in range(3)]
    maria.read_messages()
    acknowledged.append(juan.send_message("maria", "sin leer"))
    old_pid = str(maria.pid)
    before = chat.stats()

    _kill_user_actor(chat, maria)
    # maria is online, so the supervisor restarts her actor at once (not on the next message).
    wait_until(lambda: chat.stats().crashes > before.crashes, what="the crash to be noticed")
    wait_until(
        lambda: chat.stats().activations > before.activations and chat.stats().live_users >= 2,
        what="the restart",
    )
    assert str(maria.pid) != old_pid

    assert [m.id for m in maria.inbox] == [m.id for m in acknowledged]
    assert [m.id for m in maria.history(limit=50)] == [m.id for m in acknowledged]
    assert [m.id for m in maria.read_messages()] == [acknowledged[-1].id]
    pushed = collector()
    maria.on_message(pushed)
    after = juan.send_message("maria", "despues del crash")
    assert pushed.wait_for(1) == [after]


@multiproc_only
def test_a_crashed_sender_actor_is_restarted_on_its_next_request(make_chat: Any) -> None:
    chat = make_chat(timeout=10.0)
    juan, maria = crear(chat, "juan", "maria")
    first = juan.send_message("maria", "uno")
    _kill_user_actor(chat, juan)
    second = juan.send_message("maria", "dos")  # routed to the dead actor or a fresh one: answered
    assert second.id > first.id
    assert [m.body for m in maria.history(limit=10)] == ["uno", "dos"]


@multiproc_only
def test_a_killed_actor_with_requests_in_flight_loses_nothing_acknowledged(
    make_chat: Any, wait_until: Any
) -> None:
    """SIGKILL maria's process under a stream of sends: whatever was acknowledged is stored once."""
    chat = make_chat(timeout=3.0)
    juan, maria = crear(chat, "juan", "maria")
    acknowledged: list[int] = []
    failures: list[BaseException] = []
    started = threading.Event()

    def stream() -> None:
        for i in range(40):
            try:
                acknowledged.append(juan.send_message("maria", f"m{i}", client_id=f"c{i}").id)
            except ChatTimeout as exc:  # in flight in the killed process: not acknowledged
                failures.append(exc)
            started.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(10)
    _kill_user_actor(chat, maria)
    thread.join(150)
    assert not thread.is_alive()
    stored = maria.history(limit=200)
    ids = [m.id for m in stored]
    assert len(ids) == len(set(ids))
    assert set(acknowledged) <= set(ids), "an acknowledged message was lost"
    assert len(failures) <= 2, f"{len(failures)} sends timed out: only those in flight may"
