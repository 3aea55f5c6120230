"""A multiprocTCPBase Chat in a subprocess of its own, driven line by line: a server that a test can
attack, kill -9, or start twice. Its stderr (and that of every process it forks: admin, logger,
actors) goes to one file, so a test can read what they logged."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from helpers import SESSION_MARKER_FD, alive, process_group

PASSWORD = "secreto123"

SCRIPT = """
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
from chatactors import Chat

chat = Chat(sys.argv[1], system="multiprocTCPBase", admin_port=int(sys.argv[2]) or None,
            password_profile="cheapest", echo=False, announce_login=False)
sessions = {name: chat.crear(name, sys.argv[3]) for name in ("ana", "bruno")}
checks = 0

def pids():
    roles = chat.roles
    directory = chat.os_pid(roles.directory)
    return {"server": os.getpid(), "admin_port": chat.admin_port, "group": os.getpgid(directory),
            "directory": directory, "supervisor": chat.os_pid(roles.supervisor),
            "users": [chat.os_pid(s.pid) for s in sessions.values()]}

def check():
    # login, send, read: the chat still serves
    global checks
    checks += 1
    chat.login("ana", sys.argv[3]).logout(revoke_token=False)
    sent = sessions["ana"].send_message("bruno", f"check {checks}")
    return sent.id in [m.id for m in sessions["bruno"].read_messages()]

print(json.dumps(pids()), flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "check":
        print(json.dumps(check()), flush=True)
    elif command == "quit":
        break
chat.shutdown()
"""


class ChatProcess:
    """``python -c SCRIPT``: a Chat on ``database_url``; ``info`` holds its pids and admin port."""

    def __init__(self, database_url: str, log_path: Path, admin_port: int = 0) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, database_url, str(admin_port), PASSWORD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            pass_fds=(SESSION_MARKER_FD,),  # tracked by the session's leftover check
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.info: dict[str, Any] = self._reply(timeout=60)
        self.group_pids = process_group(self.info["group"])  # admin, logger and every actor

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _reply(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the chat process did not answer in {timeout} s: {self.log()}") from None
        if not line:
            raise AssertionError(f"the chat process exited ({self.proc.wait()}): {self.log()}")
        return json.loads(line)

    def check(self) -> bool:
        """Log in, send and read in the chat; True if the message sent was read."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("check\n")
        self.proc.stdin.flush()
        return bool(self._reply(timeout=60))

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """kill -9 of the server process."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        """Stop the server if it still runs; then end whatever of its system is left (all ours)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(30)
        for pid in self.group_pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()
