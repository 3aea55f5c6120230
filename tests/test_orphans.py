"""No actor process outlives its chat system (multiprocTCPBase): kill -9 of the server or of a parent
actor leaves nothing running, and a restarted server never attaches to a stale system."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from chat_process import ChatProcess
from helpers import SESSION_MARKER_FD, alive, process_group

from chatactors import AdminPortInUse, Chat

MULTIPROC = pytest.mark.parametrize("system", ["multiprocTCPBase"])

PASSWORD = "secreto123"


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_every_actor_process_exits_within_5_s_of_a_kill_9_of_the_server(
    db_url: str, tmp_path: Path, wait_until: Any
) -> None:
    server = ChatProcess(db_url, tmp_path / "server.log")
    try:
        info = server.info
        pids = server.group_pids  # the admin, its logger, every actor
        assert {info["directory"], info["supervisor"], *info["users"]} <= pids and len(pids) >= 8
        assert os.getpgid(info["server"]) != info["group"]  # the server is not in the group taken down
        server.kill()
        wait_until(
            lambda: not any(alive(pid) for pid in pids), timeout=5.0, what="every actor process to exit"
        )
        assert "is gone: stopping its processes" in server.log()
    finally:
        server.close()


@MULTIPROC
def test_kill_9_of_the_supervisor_takes_its_user_actor_processes_along(
    make_chat: Any, wait_until: Any
) -> None:
    chat: Chat = make_chat()
    sessions = [chat.crear(name, PASSWORD) for name in ("ana", "bruno", "carla")]
    users = {chat.os_pid(s.pid) for s in sessions}
    supervisor = chat.os_pid(chat.roles.supervisor)
    group = os.getpgid(supervisor)
    assert {parent(pid) for pid in users} == {supervisor}
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in users), timeout=5.0, what="the user actors to exit")
    assert alive(chat.os_pid(chat.roles.directory))  # one actor's death does not stop the system
    assert process_group(group)  # the admin and the rest still run


@MULTIPROC
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_second_system_on_a_live_admin_port_is_a_clear_error_not_an_attach(
    make_chat: Any, db_url: str, tmp_path: Path
) -> None:
    running = ChatProcess(db_url, tmp_path / "running.log")
    try:
        port = running.info["admin_port"]
        started = time.monotonic()
        with pytest.raises(AdminPortInUse, match=f"admin port {port} .*in use"):
            make_chat(admin_port=port)
        assert time.monotonic() - started < 10  # waited ~5 s, not Thespian's long attach attempts
        assert running.check()  # the running system was left alone
    finally:
        running.close()


@MULTIPROC
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_restarted_server_on_the_same_port_gets_a_fresh_system(
    make_chat: Any, db_url: str, tmp_path: Path
) -> None:
    stale = ChatProcess(db_url, tmp_path / "stale.log")
    try:
        port, old = stale.info["admin_port"], stale.group_pids
        stale.kill()  # its system is still there for a moment: the restart waits for it to go
        chat: Chat = make_chat(admin_port=port)
        assert chat.os_pid(chat.roles.directory) not in old
        assert not any(alive(pid) for pid in old)
        ana = chat.login("ana", PASSWORD)  # same database: the users are still there
        assert ana.send_message("bruno", "back").status
    finally:
        stale.close()


def test_serve_on_an_admin_port_still_in_use_exits_with_a_message_naming_it(tmp_path: Path) -> None:
    with socket.socket() as holder:  # what a stale admin looks like from outside: a listener on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        database = f"sqlite:///{tmp_path}/chat.db"
        command = ["serve", "--system", "multiprocTCPBase", "--admin-port", str(port), "--port", "0"]
        result = subprocess.run(
            [sys.executable, "-m", "chatactors", *command, "--database-url", database],
            capture_output=True,
            text=True,
            timeout=60,
            pass_fds=(SESSION_MARKER_FD,),
        )
    assert result.returncode == 1
    assert f"could not start: admin port {port} on 127.0.0.1 is still in use" in result.stderr
    assert "Traceback" not in result.stderr


@MULTIPROC
def test_a_system_still_running_after_shutdown_is_killed_as_a_group(make_chat: Any, wait_until: Any) -> None:
    """What Chat.shutdown() does should Thespian's own shutdown time out on a loaded machine."""
    from chatactors import transport

    chat: Chat = make_chat(timeout=2.0)  # its teardown finds the system gone: no long wait for an answer
    chat.crear("ana", PASSWORD)
    root = chat.os_pid(chat._node.root)
    group = transport.actor_group(root)
    assert group is not None and group != os.getpgrp() and group == chat._node.actor_group
    pids = {root, chat.os_pid(chat.roles.directory), chat.os_pid(chat.roles.persistence)}
    assert chat.admin_port is not None
    assert transport.stop_leftovers(group, transport.advertised_address(), chat.admin_port, timeout=0.1)
    wait_until(
        lambda: not any(alive(pid) for pid in pids), timeout=5.0, what="the system's processes to exit"
    )
    assert transport.stop_leftovers(group, transport.advertised_address(), chat.admin_port) is False
