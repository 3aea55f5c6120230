"""The terminal client driven as a person would: in a pseudo-terminal, typing keys and reading the screen.

``Terminal`` starts ``python -m chatactors client`` on a pty (with the pty as its controlling terminal,
through util-linux ``setsid -c`` when present) and keeps a small screen model: printable text, carriage
returns, newlines, backspace and the erase/cursor sequences readline and the client use. Every wait
is for text to appear on that screen, with a timeout.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server import PASSWORD, Client, ServerThread

ROOT = Path(__file__).resolve().parent.parent
CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")


class Screen:
    """What a terminal of ``rows`` x ``cols`` shows; scrolled-off lines are kept in ``history``."""

    def __init__(self, rows: int = 40, cols: int = 120) -> None:
        self.rows, self.cols = rows, cols
        self.lines = [""] * rows
        self.history: list[str] = []
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            match = CSI.match(text, i)
            if match:
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            ch = text[i]
            i += 1
            if ch == "\x1b":  # another escape (e.g. keypad mode): skip its one following character
                i += 1
            elif ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._newline()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                self._put(ch)

    def _put(self, ch: str) -> None:
        if self.col >= self.cols:
            self._newline()
            self.col = 0
        line = self.lines[self.row].ljust(self.col)
        self.lines[self.row] = line[: self.col] + ch + line[self.col + 1 :]
        self.col += 1

    def _newline(self) -> None:
        if self.row == self.rows - 1:
            self.history.append(self.lines.pop(0))
            self.lines.append("")
        else:
            self.row += 1

    def _csi(self, args: str, final: str) -> None:
        n = int(args) if args.isdigit() else None
        line = self.lines[self.row]
        if final == "K":
            if n == 2:
                self.lines[self.row] = ""
            elif n == 1:
                self.lines[self.row] = " " * self.col + line[self.col :]
            else:
                self.lines[self.row] = line[: self.col]
        elif final == "C":
            self.col = min(self.cols - 1, self.col + (n or 1))
        elif final == "D":
            self.col = max(0, self.col - (n or 1))
        elif final == "A":
            self.row = max(0, self.row - (n or 1))
        elif final == "B":
            self.row = min(self.rows - 1, self.row + (n or 1))
        elif final == "P":  # delete characters at the cursor
            self.lines[self.row] = line[: self.col] + line[self.col + (n or 1) :]
        elif final == "J" and n == 2:
            self.lines = [""] * self.rows
        elif final == "J" and not n:  # erase from the cursor to the end of the screen
            self.lines[self.row] = line[: self.col]
            self.lines[self.row + 1 :] = [""] * (self.rows - self.row - 1)
        # colours, modes and the rest change nothing we read

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.history + self.lines).rstrip()

    def current_line(self) -> str:
        return self.lines[self.row].rstrip()


class Terminal:
    """A person at a terminal running the chat client."""

    def __init__(self, url: str, rows: int = 40, cols: int = 120) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        argv = [sys.executable, "-m", "chatactors", "client", "--url", url]
        if shutil.which("setsid"):
            argv = ["setsid", "-c", *argv]  # the pty becomes its controlling terminal, as in a real one
        env = {
            **os.environ,
            "TERM": "xterm",
            "COLUMNS": str(cols),
            "LINES": str(rows),
            "INPUTRC": "/dev/null",
        }
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.screen = Screen(rows, cols)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def enter(self, line: str) -> None:
        self.type(line + "\r")

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the client exited and the pty closed
            return False
        self.screen.feed(data.decode(errors="replace"))
        return bool(data)

    def count(self, text: str) -> int:
        return self.screen.text().count(text)

    def wait_for(self, text: str | Callable[[str], bool], timeout: float = 15.0, *, seen: int = 0) -> str:
        """Read output until ``text`` is on the screen (more than ``seen`` times); returns the screen."""
        check = text if callable(text) else (lambda screen: screen.count(text) > seen)
        deadline = time.monotonic() + timeout
        while not check(self.screen.text()):
            left = deadline - time.monotonic()
            if left <= 0 or (not self._pump(left) and self.proc.poll() is not None):
                raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen.text()}")
        return self.screen.text()

    def log_in(self, username: str, password: str = PASSWORD, *, register: bool = False) -> None:
        self.wait_for("username:")
        seen = self.count("password:")
        self.enter(username)
        self.wait_for("password:", seen=seen)  # typed earlier, getpass would flush it
        self.enter(password)
        if register:
            self.wait_for("Register it? [y/N]")
            self.enter("y")
        self.wait_for(f"logged in as {username}")

    def exit_code(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.05)
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def chat_server(sqlite_url: str) -> Iterator[ServerThread]:
    from chatactors import Chat

    chat = Chat(database_url=sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat).start()
    yield server
    server.stop()
    chat.shutdown()


@pytest.fixture
def terminal(chat_server: ServerThread) -> Iterator[Callable[..., Terminal]]:
    """``terminal(rows=40, cols=120)``: a client on the test's server, closed afterwards."""
    opened: list[Terminal] = []

    def open_terminal(rows: int = 40, cols: int = 120) -> Terminal:
        term = Terminal(chat_server.url, rows, cols)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def _seed(server: ServerThread, to: str, count: int) -> None:
    """``count`` messages from pedro to ``to`` through the protocol, before ``to`` logs in."""
    pedro = Client(server.url)
    pedro.register("pedro")
    for i in range(1, count + 1):
        pedro.send("send", to=to, body=f"mensaje {i}", client_id=f"seed{i}")
        pedro.expect("sent", client_id=f"seed{i}")
    pedro.close()


def test_two_people_chat_in_terminals(chat_server: ServerThread, terminal: Callable[[], Terminal]) -> None:
    chat_server.gateway.chat.register("juan", PASSWORD)
    _seed(chat_server, "juan", 12)

    juan = terminal()
    juan.log_in("juan")
    screen = juan.wait_for("mensaje 12")
    assert "-- last 10 messages --" in screen
    shown = [line.split("pedro: ", 1)[1] for line in screen.splitlines() if "pedro: " in line]
    assert shown == [f"mensaje {i}" for i in range(3, 13)]  # the last 10, oldest first

    maria = terminal()
    maria.log_in("maria", register=True)  # a new name: the client offers to register it
    maria.wait_for("-- no messages yet --")

    juan.enter("/msg maria hola")
    maria.wait_for("juan: hola")
    juan.wait_for(prompt_is("maria>"))  # the send was answered: juan types again

    # juan is halfway through a line when maria writes: her message shows at once, his line survives
    juan.type("que tal tu di")
    juan.wait_for("que tal tu di")
    maria.enter("/msg juan estas?")
    screen = juan.wait_for("maria: estas?")
    assert juan.screen.current_line().endswith("que tal tu di")
    juan.enter("a")
    maria.wait_for("juan: que tal tu dia")

    maria.enter("/read")  # in her conversation with juan: reads that conversation
    maria.wait_for("-- unread with juan, now read: 2 --")
    juan.wait_for("maria read 2 messages")  # one line for the two receipts of one read

    juan.enter("/read")  # maria's message only: pedro's 12 stay unread
    juan.wait_for("-- unread with maria, now read: 1 --")
    juan.enter("/read all")
    juan.wait_for("-- unread, now read: 12 --")

    juan.enter("/history")
    juan.wait_for("-- history with maria: 3 --")
    juan.wait_for("you -> maria: hola  (leido)")
    juan.wait_for("maria: estas?")

    juan.enter("/quit")
    juan.wait_for("bye")
    assert juan.exit_code() == 0
    maria.type("\x04")  # Ctrl-D leaves too
    maria.wait_for("bye")
    assert maria.exit_code() == 0


def test_rooms_in_terminals(chat_server: ServerThread, terminal: Callable[[], Terminal]) -> None:
    juan, maria = terminal(), terminal()
    juan.log_in("juan", register=True)
    maria.log_in("maria", register=True)

    maria.enter("/join sala")  # nobody made it: a typo must not create a room
    maria.wait_for("! no room #sala: /create sala to create it")
    maria.enter("/create sala")
    maria.wait_for("-- created and joined #sala --")
    juan.enter("/join sala")
    juan.wait_for("-- joined #sala --")
    maria.enter("hola sala")
    juan.wait_for("#sala maria: hola sala")
    juan.enter("/rooms")
    juan.wait_for("rooms: #sala (1 unread)")
    juan.enter("/read")  # the room he is in
    juan.wait_for("-- unread in #sala, now read: 1 --")
    juan.enter("/rooms")
    juan.wait_for(lambda screen: "rooms: #sala" in screen.splitlines())  # no unread left
    juan.enter("/leave")
    juan.wait_for("-- left #sala --")
    juan.enter("/help")
    juan.wait_for("/history [N]")
    juan.enter("/quit")
    assert juan.exit_code() == 0


def test_wrong_password_is_not_a_registration(
    chat_server: ServerThread, terminal: Callable[[], Terminal]
) -> None:
    chat_server.gateway.chat.register("juan", PASSWORD)
    juan = terminal()
    juan.wait_for("username:")
    juan.enter("juan")
    juan.wait_for("password:")
    juan.enter("not-the-password")
    juan.wait_for("Register it? [y/N]")
    juan.enter("y")
    juan.wait_for("'juan' is taken: the password was wrong")
    juan.log_in("juan")


def test_server_going_away_ends_the_client(sqlite_url: str, tmp_path: Any) -> None:
    from chatactors import Chat

    chat = Chat(database_url=sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat).start()
    term = Terminal(server.url)
    try:
        term.log_in("juan", register=True)
        server.stop()
        term.wait_for("! disconnected (1001 server shutting down)")
        assert term.exit_code() == 0
    finally:
        term.close()
        server.stop()
        chat.shutdown()


def test_client_resumes_with_its_token_after_the_server_dies(tmp_path: Path) -> None:
    """kill -9 the server (no close frame: 1006), start it again: the client logs back in by itself."""
    from chatactors.chat import free_port

    port = free_port()
    argv = [sys.executable, "-m", "chatactors", "serve", "--port", str(port)]
    argv += ["--database-url", f"sqlite:///{tmp_path}/chat.db", "--password-profile", "cheapest"]

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ctrl-C" in line:
                return proc
        raise AssertionError("the server did not start")

    server = start()
    term = Terminal(f"ws://127.0.0.1:{port}")
    try:
        term.log_in("juan", register=True)
        server.kill()
        server.wait(10)
        term.wait_for("! disconnected (1006")
        server = start()
        term.wait_for("-- reconnected --", timeout=20)
        term.enter("/msg juan nota para mí")
        term.wait_for("juan: nota para mí")  # delivered through the new connection
        term.enter("/quit")
        assert term.exit_code() == 0
    finally:
        term.close()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(20)


def prompt_is(prompt: str) -> Callable[[str], bool]:
    """The screen's last line is ``prompt`` (nothing typed after it)."""
    return lambda screen: screen.splitlines()[-1] == prompt


def test_a_failed_msg_or_join_keeps_the_conversation(
    chat_server: ServerThread, terminal: Callable[[], Terminal]
) -> None:
    chat_server.gateway.chat.register("maria", PASSWORD)
    juan = terminal()
    juan.log_in("juan", register=True)
    juan.enter("/msg maria hola")
    juan.wait_for(prompt_is("maria>"))

    juan.enter("/msg ghost hola")
    juan.wait_for("! no user 'ghost'")
    juan.wait_for(prompt_is("maria>"))
    juan.enter("/msg ghost")  # no text: the name is checked all the same
    juan.wait_for("! no user 'ghost'", seen=1)
    juan.wait_for(prompt_is("maria>"))
    juan.enter("/join a")  # not a valid room name: nothing is created, nothing changes
    juan.wait_for("! room name")
    juan.wait_for(prompt_is("maria>"))

    juan.enter("sigo aquí")  # the next line still goes to maria
    juan.wait_for("maria> sigo aquí  ✓ sent")  # maria is offline: stored, not delivered
    juan.enter("/join sala")  # a room nobody made: nothing is created, the prompt stays
    juan.wait_for("! no room #sala: /create sala to create it")
    juan.wait_for(prompt_is("maria>"))
    juan.enter("/create sala")
    juan.wait_for(prompt_is("#sala>"))
    juan.enter("/quit")
    assert juan.exit_code() == 0


def test_a_line_wider_than_the_terminal_is_redrawn_whole(
    chat_server: ServerThread, terminal: Callable[..., Terminal]
) -> None:
    """A message arriving while a two-row line is being typed clears both rows, leaving one copy."""
    chat_server.gateway.chat.register("maria", PASSWORD)
    juan = terminal(rows=30, cols=60)
    juan.log_in("juan", register=True)
    juan.enter("/msg maria hola")
    juan.wait_for(prompt_is("maria>"))
    typed = " ".join(f"w{i:02d}" for i in range(25))  # 99 characters after "maria> ": two rows
    juan.type(typed)
    juan.wait_for("w24")
    maria = Client(chat_server.url)
    maria.login("maria")
    maria.send("send", to="juan", body="interrumpo", client_id="i1")
    screen = juan.wait_for(lambda screen: "w24" in screen.partition("maria: interrumpo")[2])  # redrawn below
    assert screen.count("w00") == 1 and screen.count("w24") == 1, screen
    assert screen.index("maria: interrumpo") < screen.index("w00")  # the message above the line
    juan.type("\r")
    maria.expect("message", body=typed)
    screen = juan.wait_for("w24  ✓✓ delivered")  # the mark goes on the entered line, both rows redrawn
    assert screen.count("w00") == 1, screen
    maria.close()
    juan.enter("/quit")
    assert juan.exit_code() == 0


def test_a_send_is_marked_and_receipts_are_summed_up(
    chat_server: ServerThread, terminal: Callable[[], Terminal]
) -> None:
    chat = chat_server.gateway.chat
    chat.register("pedro", PASSWORD)
    juan = terminal()
    juan.log_in("juan", register=True)
    juan.enter("/msg pedro ¿estás?")  # pedro is offline: stored, not delivered
    juan.wait_for("> /msg pedro ¿estás?  ✓ sent")

    other = chat.login("juan", PASSWORD)  # juan on another device sends 69 more
    for i in range(69):
        other.send_message("pedro", f"n{i}")
    pedro = chat.login("pedro", PASSWORD)  # pedro comes online: 70 delivered, in one receipt
    assert len(pedro.read_messages()) == 70  # ...and reads them: 70 read, in one receipt

    def summed(pattern: str) -> Callable[[str], bool]:
        return lambda screen: sum(int(n) for n in re.findall(pattern, screen)) == 70

    juan.wait_for(summed(r"✓✓ (\d+) messages delivered to pedro"))
    screen = juan.wait_for(summed(r"✓✓ pedro read (\d+) messages"))
    receipt_lines = [line for line in screen.splitlines() if "✓✓" in line]
    assert len(receipt_lines) <= 6, receipt_lines  # a line per burst, never one per message
    juan.enter("/quit")
    assert juan.exit_code() == 0


def test_no_server_at_the_url_is_said_in_one_line() -> None:
    from chatactors.chat import free_port

    url = f"ws://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "chatactors", "client", "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"cannot connect to {url}: no chatactors server answers at {url}")
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


# -- what others write cannot drive the terminal ----------------------------------------------------------
EVIL = "antes\x1b[2J\x1b[31mrojo\x07\x9b2J\u202eodot\r\ndespués"  # clear screen, colour, bell, C1 CSI, bidi
EVIL_SHOWN = "antes\\x1b[2J\\x1b[31mrojo\\x07\\x9b2J\\u202eodot\\r\\ndespués"


def test_control_characters_in_a_body_are_shown_not_obeyed(
    chat_server: ServerThread, terminal: Callable[[], Terminal]
) -> None:
    """A body with escape sequences from another user reaches the screen as visible text on one line:
    it cannot clear the screen, recolour it, ring the bell or reorder the line."""
    chat_server.gateway.chat.register("maria", PASSWORD)
    juan = terminal()
    juan.log_in("juan", register=True)
    maria = Client(chat_server.url)
    maria.login("maria")
    maria.send("send", to="juan", body=EVIL, client_id="e1")
    maria.expect("sent", client_id="e1")
    screen = juan.wait_for(f"maria: {EVIL_SHOWN}")
    assert "logged in as juan" in screen  # nothing was cleared
    maria.close()
    juan.enter("/quit")
    assert juan.exit_code() == 0


def test_the_screen_and_a_messages_str_escape_control_characters() -> None:
    """The terminal client's Screen and the REPL's echo (``print(message)``) write no control code
    they did not make; emoji with joiners and accents are left alone."""
    import io
    from datetime import UTC, datetime

    from chatactors.cli import Screen as ClientScreen
    from chatactors.core.model import ENTREGADO, Message

    out = io.StringIO()
    ClientScreen(out, interactive=False).show(f"maria: {EVIL} 👨‍👩‍👧 ñ")
    assert out.getvalue() == f"maria: {EVIL_SHOWN} 👨‍👩‍👧 ñ\n"
    m = Message(1, 2, "maria", 3, None, EVIL, datetime.now(UTC), ENTREGADO, "juan")
    assert str(m) == f"[maria -> juan] {EVIL_SHOWN}"
    assert str(Message(1, 2, "maria", None, "sala", EVIL, datetime.now(UTC), ENTREGADO)) == (
        f"[sala] maria: {EVIL_SHOWN}"
    )


def test_odd_command_arguments_and_a_too_long_line_keep_the_client(
    chat_server: ServerThread, terminal: Callable[[], Terminal]
) -> None:
    """'/history ²' (a digit int() refuses), a number of 5,000 digits and a line over the body limit
    each get an answer on the screen; the client goes on with its conversation."""
    chat_server.gateway.chat.register("maria", PASSWORD)
    juan = terminal()
    juan.log_in("juan", register=True)
    juan.enter("/msg maria hola")
    juan.wait_for(prompt_is("maria>"))
    for argument in ("²", "9" * 5000):
        seen = juan.count("-- history with maria: 1 --")
        juan.wait_for(prompt_is("maria>"))  # readline reads it: typed ahead, the tty would cut it at 4,095
        juan.enter(f"/history {argument}")
        # the default limit, no traceback (a long time allowed: a pty echoes 5,000 keys one by one)
        juan.wait_for("-- history with maria: 1 --", timeout=60, seen=seen)
    juan.wait_for(prompt_is("maria>"))
    juan.enter("x" * 4097)
    juan.wait_for("! message body is over 4096 characters", timeout=60)
    juan.wait_for(prompt_is("maria>"))
    juan.enter("sigo")
    juan.wait_for("maria> sigo  ✓ sent")
    juan.enter("/quit")
    assert juan.exit_code() == 0
