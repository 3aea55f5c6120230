"""The ``chatactors`` command: ``serve`` the gateway, chat from a terminal ``client``, or open a ``repl``.

::

    python -m chatactors serve [--host 127.0.0.1] [--port 8765] [--database-url URL]
                               [--system simpleSystemBase|multiprocTCPBase] [--admin-port N]
                               [--log-level DEBUG|INFO|WARNING|ERROR]
    python -m chatactors client [--url ws://127.0.0.1:8765]
    python -m chatactors repl [--database-url URL] [--system ...]
"""

from __future__ import annotations

import argparse
import errno
import getpass
import itertools
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from chatactors.chat import SYSTEMS
from chatactors.errors import ChatError

Frame = dict[str, Any]
HELP = """\
commands:
  /msg USER TEXT   send TEXT to USER (later lines without a command go to USER too)
  /join ROOM       join ROOM (created if it does not exist); later lines go to the room
  /leave [ROOM]    leave ROOM (default: the current one)
  /rooms           the rooms you are in
  /read            show the current conversation's unread messages and mark them read
                   (their senders see 'leido'); with no conversation, or /read all: everything
  /history [N]     the last N messages of the current conversation (default 10)
  /help            this text
  /quit            leave (Ctrl-D too)"""


# -- serve ----------------------------------------------------------------------------------------------
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr(level: str) -> None:
    """chatactors' own lines at ``level``, one per event; other libraries' only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("chatactors").setLevel(level)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; prints where a browser and a terminal can connect."""
    from chatactors import gateway as server

    log_to_stderr(args.log_level)

    options: dict[str, Any] = {"database_url": args.database_url, "system": args.system}
    if args.admin_port:
        options["admin_port"] = args.admin_port
    if args.idle_timeout:
        options["idle_timeout"] = args.idle_timeout
    if args.password_profile:
        options["password_profile"] = args.password_profile

    def ready(gateway: server.Gateway) -> None:
        chat = gateway.chat
        host = "127.0.0.1" if gateway.host in ("0.0.0.0", "", "::") else gateway.host
        where = f"{host}:{gateway.port}"
        admin = f", admin port {chat.admin_port}" if chat.admin_port else ""
        print(
            f"chatactors server on {gateway.host}:{gateway.port} ({chat.system}{admin}, {chat.database_url})"
        )
        print(f"  browser:   http://{where}/")
        print(f"  terminal:  python -m chatactors client --url ws://{where}")
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)

    try:
        server.run(args.host, args.port, chat_options=options, on_ready=ready)
    except KeyboardInterrupt:  # Ctrl-C while starting, before the signal handlers were in place
        print("chatactors server interrupted while starting", flush=True)
        return 130
    except (ChatError, ValueError) as exc:  # e.g. the admin port is taken: say so, without a traceback
        print(f"chatactors server could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"chatactors server could not start: {args.host}:{args.port} is already in use (another "
            f"server?); choose another port: make run PORT=9000, or chatactors serve --port 9000",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print("chatactors server stopped", flush=True)
    return 0


# -- repl -----------------------------------------------------------------------------------------------
def cmd_repl(args: argparse.Namespace) -> int:
    """An interpreter with ``chat = Chat()`` ready, as ``iex -S mix`` would be."""
    import code

    import chatactors
    from chatactors import Chat

    chat = Chat(database_url=args.database_url, system=args.system, echo=True)
    namespace = {"chat": chat, "Chat": Chat, "chatactors": chatactors}
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # no readline on this platform: no completion
        pass
    banner = (
        f"chatactors {chatactors.__version__}: chat = Chat() is ready ({chat.system}, {chat.database_url})\n"
        "  juan = chat.crear('juan', 'secreto123'); maria = chat.crear('maria', 'secreto456')\n"
        "  juan.enviar_mensaje('maria', 'hola'); maria.leer_mensajes()"
    )
    try:
        code.interact(banner=banner, local=namespace, exitmsg="")
    finally:
        chat.shutdown()
    return 0


# -- client ---------------------------------------------------------------------------------------------
def _clock(sent_at: str) -> str:
    try:
        return datetime.fromisoformat(sent_at).astimezone().strftime("%H:%M")
    except (TypeError, ValueError):
        return "--:--"


class Screen:
    """Prints lines above what the user is typing: clears the input line, prints, redraws it."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self.prompt = ""
        self.reading = False  # the main thread is inside input()
        self.lock = threading.Lock()
        self._buffer: Callable[[], str] = lambda: ""
        if interactive:
            try:
                import readline

                self._buffer = readline.get_line_buffer
            except ImportError:
                pass

    def show(self, text: str) -> None:
        with self.lock:
            if self.interactive and self.reading:
                self.out.write("\r\x1b[2K" + text + "\n" + self.prompt + self._buffer())
            else:
                self.out.write(text + "\n")
            self.out.flush()

    def ask(self, prompt: str) -> str:
        with self.lock:
            self.prompt, self.reading = prompt, True
        try:
            return input(prompt)
        finally:
            with self.lock:
                self.reading = False


class TerminalClient:
    """A person's chat in a terminal: log in (or register), the last 10 messages, then chat."""

    RESUME_TRIES = 5

    def __init__(self, url: str, screen: Screen) -> None:
        self.url = url
        self.screen = screen
        self.ws: ClientConnection | None = None
        self.me = ""
        self.token = ""
        self.target = ""  # "maria" or "#general": where lines without a command go
        self.bodies: dict[str, str] = {}  # client_id, then message id -> body, for receipts
        self.quitting = False
        self.reader: threading.Thread | None = None
        self.pong = threading.Event()
        self.left_input = threading.Event()  # set once the main thread has left the chat loop
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()

    # plumbing
    def send(self, **frame: Any) -> None:
        with self._send_lock:
            if self.ws is None:
                raise ConnectionError("not connected")
            self.ws.send(json.dumps(frame))

    def client_id(self) -> str:
        return f"{uuid.uuid4().hex[:12]}-{next(self._ids)}"

    def _wait(self, *types: str) -> Frame:
        """The next frame of one of ``types`` or an error (used before the reader thread starts)."""
        assert self.ws is not None
        while True:
            frame = json.loads(self.ws.recv(timeout=30))
            if frame.get("type") in (*types, "error"):
                return frame  # type: ignore[no-any-return]

    # start
    def _connect(self, timeout: float) -> ClientConnection:
        # Entered as a context (websockets 17 warns otherwise); _hang_up() leaves it.
        ws = connect(self.url, open_timeout=timeout, max_size=2**20).__enter__()
        self._hang_up()
        self.ws = ws
        return ws

    def _hang_up(self) -> None:
        with self._send_lock:
            if self.ws is not None:
                self.ws.__exit__(None, None, None)

    def run(self) -> int:
        try:
            self._connect(10)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            self.screen.show(f"cannot connect to {self.url}: {exc}")
            return 1
        try:
            if not self.log_in():
                return 1
            self.reader = threading.Thread(
                target=self.read_forever, name="chatactors-client-reader", daemon=True
            )
            self.reader.start()
            self.chat_loop()
        except (EOFError, KeyboardInterrupt):
            pass
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late interrupt must not cut the goodbye
            self.left_input.set()
            self.settle()
            self.quitting = True
            self._hang_up()
        self.screen.show("bye")
        return 0

    def settle(self) -> None:
        """Before leaving, wait until the server has answered everything sent so far.

        It answers in order, so the ``pong`` to a last ``ping`` means every ``send`` was stored.
        """
        if self.reader is None or not self.reader.is_alive() or self.quitting:
            return
        self.pong.clear()
        try:
            self.send(type="ping")
        except (ConnectionClosed, ConnectionError):
            return
        self.pong.wait(5)

    def log_in(self) -> bool:
        while True:
            username = self.screen.ask("username: ").strip()
            if not username:
                continue
            password = getpass.getpass("password: ") if sys.stdin.isatty() else self.screen.ask("password: ")
            self.send(type="login", username=username, password=password)
            reply = self._wait("logged_in")
            if reply["type"] == "error" and reply["code"] == "auth_failed":
                answer = self.screen.ask(f"No user {username!r} with that password. Register it? [y/N] ")
                if answer.strip().lower() not in ("y", "yes", "s", "si", "sí"):
                    continue
                self.send(type="register", username=username, password=password)
                reply = self._wait("logged_in")
                if reply["type"] == "error" and reply["code"] == "username_taken":
                    self.screen.show(f"{username!r} is taken: the password was wrong")
                    continue
            if reply["type"] == "error":
                self.screen.show(f"! {reply['detail']}")
                continue
            self.logged_in(reply)
            return True

    def logged_in(self, frame: Frame) -> None:
        self.me, self.token = frame["username"], frame["token"]
        inbox = frame.get("inbox", [])
        self.screen.show(f"logged in as {self.me} (id {frame['user_id']}). /help lists the commands.")
        self.screen.show(f"-- last {len(inbox)} messages --" if inbox else "-- no messages yet --")
        for m in inbox:
            self.screen.show(self.describe(m))

    # reading
    def read_forever(self) -> None:
        while not self.quitting:
            ws = self.ws
            assert ws is not None
            try:
                for raw in ws:
                    self.on_frame(json.loads(raw))
            except ConnectionClosed:
                pass
            if self.quitting:
                return
            code, reason = ws.close_code or 1006, ws.close_reason or "connection lost"
            self.screen.show(f"! disconnected ({code} {reason})".rstrip())
            if code in (1001, 1008, 1009) or not self.resume():
                self.quitting = True
                self._interrupt_main()
                return

    def _interrupt_main(self) -> None:
        """Get the main thread out of input(). A SIGINT that lands just before it enters input() is
        absorbed elsewhere, so repeat it until the main thread says it has left (``left_input``)."""
        main = threading.main_thread()
        while main.is_alive():
            signal.pthread_kill(main.ident or 0, signal.SIGINT)
            if self.left_input.wait(0.2):
                return

    def resume(self) -> bool:
        """After a lost connection: log in again with the session token (no password)."""
        for attempt in range(self.RESUME_TRIES):
            threading.Event().wait(0.5 * 2**attempt)  # back off before trying again
            try:
                self._connect(5).send(json.dumps({"type": "login", "token": self.token}))
                reply = self._wait("logged_in")
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
                continue
            if reply["type"] == "logged_in":
                self.screen.show("-- reconnected --")
                return True
            self.screen.show(f"! {reply['detail']}")
            return False
        return False

    def on_frame(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "message":
            if not self.target and not frame.get("room") and frame.get("sender") != self.me:
                self.target = frame["sender"]  # nobody picked yet: the next line answers them
            self.screen.show(self.describe(frame))
        elif kind == "sent":
            self.bodies[str(frame["id"])] = self.bodies.pop(str(frame.get("client_id")), "")
        elif kind == "receipt":
            body = self.bodies.get(str(frame["id"]), f"message {frame['id']}")
            self.screen.show(f"  ✓✓ {frame['status']} by {frame['by']}: {body}")
        elif kind == "marked_read":
            where = f" in #{frame['room']}" if frame.get("room") else ""
            where = f" with {frame['with']}" if frame.get("with") is not None else where
            self.show_list(f"unread{where}, now read", frame["messages"])
        elif kind == "history":
            name = f"#{frame['room']}" if frame.get("room") else frame.get("with") or "everyone"
            self.show_list(f"history with {name}", frame["messages"])
        elif kind == "joined":
            self.screen.show(
                f"-- {'created and joined' if frame.get('created') else 'joined'} #{frame['room']} --"
            )
        elif kind == "left":
            if self.target == "#" + frame["room"]:
                self.target = ""
            self.screen.show(f"-- left #{frame['room']} --")
        elif kind == "rooms":
            names = [self.room_line(r) for r in frame["rooms"]]
            self.screen.show("rooms: " + (", ".join(names) if names else "none (/join ROOM)"))
        elif kind == "error":
            self.on_error(frame)
        elif kind == "logged_out" and frame.get("reason"):  # ended elsewhere: a logout revoked our token
            self.screen.show(f"-- logged out: {frame['reason']} --")
        elif kind == "pong":
            self.pong.set()

    def on_error(self, frame: Frame) -> None:
        if frame.get("request") == "join" and frame.get("code") == "room_not_found":
            self.send(type="create_room", room=frame["room"])  # /join creates a missing room
            return
        if frame.get("request") in ("join", "create_room") and self.target == f"#{frame.get('room')}":
            self.target = ""
        self.screen.show(f"! {frame.get('detail') or frame.get('code')}")

    def show_list(self, title: str, messages: list[Frame]) -> None:
        self.screen.show(f"-- {title}: {len(messages)} --")
        for m in messages:
            self.screen.show(self.describe(m, status=True))

    def describe(self, m: Frame, status: bool = False) -> str:
        when = _clock(m.get("sent_at", ""))
        if m.get("room"):
            line = f"[{when}] #{m['room']} {m['sender']}: {m['body']}"
        elif m.get("sender") == self.me:
            line = f"[{when}] you -> {m.get('recipient')}: {m['body']}"
        else:
            line = f"[{when}] {m['sender']}: {m['body']}"
        return f"{line}  ({m['status']})" if status and m.get("sender") == self.me else line

    @staticmethod
    def room_line(room: Any) -> str:
        if isinstance(room, dict):
            name = room.get("name", "?")
            unread = room.get("unread")
            return f"#{name}" + (f" ({unread} unread)" if unread else "")
        return f"#{room}"

    # typing
    def prompt(self) -> str:
        return f"{self.target}> " if self.target else "> "

    def chat_loop(self) -> None:
        while not self.quitting:
            line = self.screen.ask(self.prompt()).strip()
            if self.quitting:
                return
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not self.command(line):
                        return
                else:
                    self.say(self.target, line)
            except (ConnectionClosed, ConnectionError):
                self.screen.show("! not connected")

    def say(self, target: str, body: str) -> None:
        if not target:
            self.screen.show("! who to? /msg USER TEXT, or /join ROOM")
            return
        client_id = self.client_id()
        self.bodies[client_id] = body
        if len(self.bodies) > 1000:
            self.bodies.pop(next(iter(self.bodies)))
        if target.startswith("#"):
            self.send(type="send_room", room=target[1:], body=body, client_id=client_id)
        else:
            self.send(type="send", to=target, body=body, client_id=client_id)

    def command(self, line: str) -> bool:
        """Run one /command; False means quit."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/msg":
            user, _, body = rest.partition(" ")
            if not user:
                self.screen.show("usage: /msg USER TEXT")
                return True
            self.target = user
            if body.strip():
                self.say(user, body.strip())
        elif name == "/join" and rest:
            self.target = "#" + rest.lstrip("#")  # so the next prompt shows it; undone if joining fails
            self.send(type="join", room=rest.lstrip("#"))
        elif name == "/leave":
            room = rest.lstrip("#") or (self.target[1:] if self.target.startswith("#") else "")
            if room:
                self.send(type="leave", room=room)
            else:
                self.screen.show("usage: /leave ROOM")
        elif name == "/rooms":
            self.send(type="rooms")
        elif name == "/read":
            self.read(everything=rest == "all")
        elif name == "/history":
            self.history(rest)
        else:
            self.screen.show(HELP)
        return True

    def read(self, everything: bool) -> None:
        """Read the current conversation (a person's, or a room's); everything with no conversation."""
        if everything or not self.target:
            self.send(type="read")
        elif self.target.startswith("#"):
            self.send(type="read", room=self.target[1:])
        else:
            self.send(type="read", **{"with": self.target})

    def history(self, rest: str) -> None:
        limit = int(rest) if rest.isdigit() and 0 < int(rest) <= 200 else 10
        if self.target.startswith("#"):
            self.send(type="history", room=self.target[1:], limit=limit)
        elif self.target:
            self.send(type="history", limit=limit, **{"with": self.target})
        else:
            self.send(type="history", limit=limit)


def cmd_client(args: argparse.Namespace) -> int:
    screen = Screen(sys.stdout, interactive=sys.stdin.isatty())
    return TerminalClient(args.url, screen).run()


# -- entry point ----------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatactors", description="A chat system as an actor-model library.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the WebSocket server and the chat page")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    _chat_options(serve)
    serve.add_argument("--admin-port", type=int, default=None, help="Thespian admin port (multiprocTCPBase)")
    serve.add_argument(
        "--idle-timeout", type=float, default=None, help="seconds before an idle user hibernates"
    )
    serve.add_argument(
        "--password-profile",
        choices=("default", "cheapest"),
        default=None,
        help="argon2 cost (default: RFC 9106 low memory; cheapest is for tests and benchmarks only)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        default="INFO",
        help="what the server logs to stderr (default INFO: connections, logins, refusals, cut-offs)",
    )
    serve.set_defaults(run=cmd_serve)

    client = sub.add_parser("client", help="chat from this terminal")
    client.add_argument("--url", default=os.environ.get("CHATACTORS_URL", "ws://127.0.0.1:8765"))
    client.set_defaults(run=cmd_client)

    repl = sub.add_parser("repl", help="a Python interpreter with chat = Chat() ready")
    _chat_options(repl)
    repl.set_defaults(run=cmd_repl)
    return p


def _chat_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None, help="sqlite:///file.db (default) or postgresql://...")
    p.add_argument("--system", choices=SYSTEMS, default=None, help="Thespian base (default simpleSystemBase)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))
