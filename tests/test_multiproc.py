"""A short integration suite on multiprocTCPBase: every actor its own process, users chatting at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import SESSION_MARKER_FD, alive, listening_ports

from chatactors import ENTREGADO, LEIDO, Chat, Receipt, Session, StorageUnavailable

pytestmark = pytest.mark.parametrize("system", ["multiprocTCPBase"])

NAMES = ("ana", "bruno", "carla", "dario")
PASSWORD = "secreto123"


def run_threads(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    """Run ``target`` once per args tuple in its own thread; re-raise the first failure here."""
    errors: list[BaseException] = []

    def guarded(*a: Any) -> None:
        try:
            target(*a)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]


def test_users_chat_concurrently_from_threads(chat: Chat, collector: Any) -> None:
    assert chat.admin_port and chat.admin_port != 1900  # never the shared default port
    sessions = {name: chat.crear(name, PASSWORD) for name in NAMES}
    pushes = {name: collector() for name in NAMES}
    receipts = {name: collector() for name in NAMES}
    for name, session in sessions.items():
        session.on_message(pushes[name])
        session.on_receipt(receipts[name])
    per_pair = 6
    sent: dict[str, list[int]] = {name: [] for name in NAMES}

    def talk(me: Session) -> None:
        others = [n for n in NAMES if n != me.username]
        for i in range(per_pair):
            for other in others:
                m = me.send_message(
                    other, f"{me.username}->{other} {i}", client_id=f"{me.username}-{other}-{i}"
                )
                assert m.status == ENTREGADO
                sent[me.username].append(m.id)

    run_threads(talk, [(s,) for s in sessions.values()])

    expected = per_pair * (len(NAMES) - 1)
    for name, session in sessions.items():
        got = pushes[name].wait_for(expected)
        assert len(got) == expected and all(m.recipient == name for m in got)
        read = session.read_messages()
        assert len(read) == expected and {m.status for m in read} == {LEIDO}
        assert [m.id for m in read] == sorted(m.id for m in read)  # oldest first
        for other in NAMES:
            if other != name:  # each sender's messages arrive in the order sent
                bodies = [m.body for m in read if m.sender == other]
                assert bodies == [f"{other}->{name} {i}" for i in range(per_pair)]
    for name, session in sessions.items():
        # Every message this user sent was confirmed read, by receipts pushed to them.
        def confirmed(items: list[Receipt]) -> set[int]:
            return {i for r in items for i in r.message_ids}

        receipts[name].wait_for(len(NAMES) - 1)
        assert confirmed(receipts[name].items) == set(sent[name])
        assert {session.status(i) for i in sent[name]} == {LEIDO}
    total = sum(len(ids) for ids in sent.values())
    assert total == expected * len(NAMES)
    history = sessions["ana"].history(limit=200)
    assert len(history) == 2 * expected  # sent and received, each stored once


def test_each_user_is_a_process_and_shutdown_leaves_nothing(make_chat: Any, wait_until: Any) -> None:
    chat = make_chat()
    sessions = [chat.crear(name, PASSWORD) for name in NAMES[:3]]
    pids = {chat.os_pid(s.pid) for s in sessions}
    assert len(pids) == 3 and os.getpid() not in pids
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    port = chat.admin_port
    assert port in listening_ports()
    chat.shutdown()

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") and alive(pid) for pid in pids)

    wait_until(gone, what="the user actor processes to exit")
    wait_until(lambda: port not in listening_ports(), what="the admin to stop listening")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL has row locks, not one file lock
def test_logins_while_messages_are_written(chat: Chat) -> None:
    """The login service and the persistence actor are separate processes writing one SQLite file:
    neither may make the other's writes fail (both need its single write lock, and must wait for it)."""
    juan, _maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    failures: list[str] = []
    done = threading.Event()

    def send() -> None:
        try:
            for i in range(200):
                try:
                    juan.send_message("maria", f"m{i}", client_id=f"c{i}")
                except StorageUnavailable as exc:
                    failures.append(f"send {i}: {exc}")
        finally:
            done.set()

    def login() -> None:
        while not done.is_set():
            try:
                chat.login("maria", PASSWORD).logout()
            except StorageUnavailable as exc:
                failures.append(f"login: {exc}")

    run_threads(lambda f: f(), [(send,), (login,), (login,), (login,)])
    assert failures == []
    assert len(juan.history(limit=200)) == 200


REPL_SCRIPT = """
import sys
from chatactors import Chat
chat = Chat(sys.argv[1], system="multiprocTCPBase", password_profile="cheapest", echo=False)
juan = chat.crear("juan", "secreto123")
print(chat.admin_port, chat.os_pid(juan.pid), flush=True)
# The interpreter exits here without chat.shutdown(), as a REPL session that is simply closed.
"""


def test_nothing_is_left_running_when_the_interpreter_exits(
    system: str, tmp_path: Any, wait_until: Any
) -> None:
    """A REPL closed without chat.shutdown(): the atexit hook stops every actor process and the admin."""
    result = subprocess.run(
        [sys.executable, "-c", REPL_SCRIPT, f"sqlite:///{tmp_path}/repl.db"],
        capture_output=True,
        text=True,
        timeout=60,
        pass_fds=(SESSION_MARKER_FD,),
    )
    assert result.returncode == 0, result.stderr
    port, actor_pid = (int(x) for x in result.stdout.split()[-2:])
    wait_until(lambda: not alive(actor_pid), what="the user actor's process to exit")
    wait_until(lambda: port not in listening_ports(), what="the admin to stop listening")
