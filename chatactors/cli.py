"""The ``chatactors`` command: ``serve`` the gateway, chat from a terminal ``client``, or open a ``repl``.

::

    python -m chatactors serve [--host 127.0.0.1] [--port 8765] [--database-url URL]
                               [--system simpleSystemBase|multiprocTCPBase] [--admin-port N]
                               [--log-level DEBUG|INFO|WARNING|ERROR]
                               [--nodes N|auto] [--cluster] [--advertise ADDR] [--node-id ID]
                               [--reuse-port]
    python -m chatactors client [--url ws://127.0.0.1:8765]
    python -m chatactors repl [--url ws://127.0.0.1:8765] [--embedded] [--database-url URL] [--system ...]
"""

from __future__ import annotations

import argparse
import errno
import getpass
import logging
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from chatactors.chat import Chat
from chatactors.client import DEFAULT_URL, Client, ClientSession
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, Message, Receipt, RoomSummary, terminal_safe
from chatactors.errors import (
    AuthenticationError,
    Busy,
    ChatError,
    InvalidMessage,
    RoomNotFound,
    TooManyAttempts,
    Unavailable,
)
from chatactors.settings import SYSTEMS, resolve_database_url

HELP = """\
commands:
  /msg USER TEXT   send TEXT to USER (later lines without a command go to USER too)
  /join ROOM       join ROOM; later lines go to the room
  /create ROOM     create ROOM and join it (a mistyped /join creates nothing)
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
    """Run the gateway until SIGINT/SIGTERM; prints where a browser and a terminal can connect.

    ``--nodes N`` (N > 1) runs N cluster nodes instead, under a supervisor (chatactors.gateway.nodes);
    a setting no cluster node could start with is refused first, exit code 2, as a bad argument is."""
    from chatactors import gateway as server
    from chatactors.gateway import nodes

    if args.cluster or args.nodes > 1:
        why = nodes.refusal(
            resolve_database_url(args.database_url),
            args.system or os.environ.get("CHATACTORS_SYSTEM"),
            os.environ,
        )
        if why is not None:
            print(f"chatactors serve: {why}", file=sys.stderr, flush=True)
            return 2
    if args.nodes > 1:
        return serve_nodes(args)

    log_to_stderr(args.log_level)

    options: dict[str, Any] = {"database_url": args.database_url, "system": args.system}
    if args.admin_port:
        options["admin_port"] = args.admin_port
    if args.idle_timeout:
        options["idle_timeout"] = args.idle_timeout
    if args.password_profile:
        options["password_profile"] = args.password_profile
    if args.cluster:
        options.update(cluster=True, node_id=args.node_id, advertise=args.advertise)
        if args.port:  # port 0: known once the gateway is bound, after the node joined
            options["gateway_url"] = f"ws://{nodes.public_host(args.host, args.advertise)}:{args.port}"
    if args.supervised is not None:
        nodes.stop_with_supervisor()

    def ready(gateway: server.Gateway) -> None:
        if args.supervised is not None:  # the supervisor prints one line for this node
            nodes.announce_ready(
                args.supervised, f"ws://{nodes.public_host(gateway.host, args.advertise)}:{gateway.port}"
            )
            return
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
        server.run(args.host, args.port, chat_options=options, on_ready=ready, reuse_port=args.reuse_port)
    except KeyboardInterrupt:  # Ctrl-C while starting, before the signal handlers were in place
        print("chatactors server interrupted while starting", flush=True)
        return 130
    except (ChatError, ValueError) as exc:  # e.g. the admin port is taken: say so, without a traceback
        print(f"chatactors server could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        port_in_use(args)
        return 1
    print("chatactors server stopped", flush=True)
    return 0


def port_in_use(args: argparse.Namespace) -> None:
    print(
        f"chatactors server could not start: {args.host}:{args.port} is already in use (another "
        f"server?); choose another port: make run PORT=9000, or chatactors serve --port 9000",
        file=sys.stderr,
        flush=True,
    )


def serve_nodes(args: argparse.Namespace) -> int:
    """``--nodes N``: N cluster nodes on one port, supervised (see chatactors.gateway.nodes)."""
    from chatactors.gateway import nodes

    options = [f"--log-level={args.log_level}"]
    if args.idle_timeout:
        options.append(f"--idle-timeout={args.idle_timeout}")
    if args.password_profile:
        options.append(f"--password-profile={args.password_profile}")
    spec = nodes.NodeSpec(
        args.host, args.port, resolve_database_url(args.database_url), args.advertise, tuple(options)
    )
    try:
        return nodes.supervise(spec, args.nodes, args.node_id)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        port_in_use(args)
        return 1


# -- repl -----------------------------------------------------------------------------------------------
def repl_chat(args: argparse.Namespace) -> tuple[Chat | Client, str]:
    """The server at ``--url`` when one answers there, else an embedded Chat; and a line saying which.

    ``--embedded``, ``--database-url`` or ``--system`` ask for the embedded chat without looking."""
    wants_embedded = args.embedded or args.database_url is not None or args.system is not None
    if not wants_embedded:
        try:
            client = Client(args.url, echo=True)
        except (Unavailable, InvalidMessage) as exc:
            why = exc.detail.split(": ", 1)[0]  # "no chatactors server answers at URL"
        else:
            return (
                client,
                f"attached to the chatactors server at {args.url}: chat = chatactors.connect({args.url!r})",
            )
    else:
        why = "asked for an embedded chat"
    chat = Chat(database_url=args.database_url, system=args.system, echo=True)
    where = f"{chat.system}, {chat.database_url}"
    return chat, f"{why}: started an embedded chat ({where}): chat = Chat()"


def cmd_repl(args: argparse.Namespace) -> int:
    """An interpreter with ``chat`` ready, as ``iex -S mix`` would be: attached to a running server
    when one answers (so messages reach its users live), else an embedded Chat."""
    import code

    import chatactors

    chat, which = repl_chat(args)
    namespace = {"chat": chat, "Chat": Chat, "chatactors": chatactors, "connect": chatactors.connect}
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # no readline on this platform: no completion
        pass
    banner = (
        f"chatactors {chatactors.__version__}: {which}\n"
        "  juan = chat.crear('juan', 'secreto123'); maria = chat.crear('maria', 'secreto456')\n"
        "  juan.enviar_mensaje('maria', 'hola'); maria.leer_mensajes()"
    )
    try:
        code.interact(banner=banner, local=namespace, exitmsg="")
    finally:
        chat.shutdown()
    return 0


# -- client ---------------------------------------------------------------------------------------------
def _clock(sent_at: datetime) -> str:
    return sent_at.astimezone().strftime("%H:%M")


def _terminal_width() -> int:
    return max(1, shutil.get_terminal_size().columns)


class Screen:
    """Prints lines above what the user is typing: clears the input line (every row it wraps onto),
    prints, redraws it; and puts a send's delivery mark on the line just entered."""

    def __init__(self, out: TextIO, interactive: bool, width: Callable[[], int] = _terminal_width) -> None:
        self.out = out
        self.interactive = interactive
        self.width = width
        self.prompt = ""
        self.reading = False  # the main thread is inside input()
        self.lock = threading.Lock()
        self.shown = 0  # lines shown so far: a mark goes on the entered line only if none came after it
        self.entered = ("", -1)  # the last line entered, as echoed (prompt included), and `shown` then
        self._buffer: Callable[[], str] = lambda: ""
        if interactive:
            try:
                import readline

                self._buffer = readline.get_line_buffer
            except ImportError:
                pass

    def show(self, text: str) -> None:
        """``text`` on a line of its own; what others wrote cannot reach the terminal as control codes."""
        text = terminal_safe(text)
        with self.lock:
            if self.interactive and self.reading:
                typed = self.prompt + self._buffer()
                # The cursor is at the end of what is typed, len // width rows below where it starts:
                # go up there and clear to the end of the screen, or a wrapped line leaves a stale copy.
                up = len(typed) // self.width()
                self._write("\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J" + text + "\n" + typed)
            else:
                self._write(text + "\n")
            self.shown += 1

    def _write(self, text: str) -> None:
        """One write to the terminal: a tty's stdout is line-buffered and would send a redraw in
        pieces, showing half of it (the message without the line being typed) for a moment."""
        raw = getattr(self.out, "buffer", None)
        if raw is None:
            self.out.write(text)
        else:
            self.out.flush()
            raw.write(text.encode(self.out.encoding or "utf-8", "replace"))
            raw.flush()
        self.out.flush()

    def mark(self, text: str) -> None:
        """``text`` at the end of the line just entered if it is still the last one, else on its own."""
        with self.lock:
            line, shown = self.entered
            if self.interactive and not self.reading and shown == self.shown:
                rows = max(1, math.ceil(len(line) / self.width()))
                self._write(f"\x1b[{rows}A\r\x1b[J{terminal_safe(line)}  {terminal_safe(text)}\n")
                return
        self.show(f"  {text}")

    def ask(self, prompt: str) -> str:
        with self.lock:
            self.prompt, self.reading = prompt, True
        try:
            typed = input(prompt)
        finally:
            with self.lock:
                self.reading = False
        with self.lock:
            self.entered = (prompt + typed, self.shown)
        return typed


MARKS = {ENVIADO: "✓ sent", ENTREGADO: "✓✓ delivered", LEIDO: "✓✓ read"}
YES = ("y", "yes", "s", "si", "sí")


class TerminalClient:
    """A person's chat in a terminal, on :class:`chatactors.Client`: log in (or register), the last
    10 messages, then chat. A command that fails says why and changes nothing (the prompt keeps its
    conversation); each send is marked on its line; receipts that come together are one line."""

    def __init__(self, url: str, screen: Screen) -> None:
        self.url = url
        self.screen = screen
        self.client: Client | None = None
        self.session: ClientSession | None = None
        self.me = ""
        self.target = ""  # "maria" or "#general": where lines without a command go
        self.bodies: dict[int, str] = {}  # message id -> body, to name a message in its receipt
        self.quitting = False
        self.left_input = threading.Event()  # set once the main thread has left the chat loop

    def run(self) -> int:
        try:
            self.client = Client(self.url, echo=False, announce_login=False)
        except (Unavailable, InvalidMessage) as exc:
            self.screen.show(f"cannot connect to {self.url}: {exc.detail}")
            return 1
        try:
            self.session = self.log_in(self.client)
            self.chat_loop(self.session)
        except (EOFError, KeyboardInterrupt):
            pass
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late interrupt must not cut the goodbye
            self.left_input.set()
            self.quitting = True
            self.client.close()  # every send was answered before its line was marked: nothing is lost
        self.screen.show("bye")
        return 0

    # -- start ----------------------------------------------------------------------------------------
    def log_in(self, client: Client) -> ClientSession:
        callbacks = {"on_message": self.on_message, "on_receipt": self.on_receipt, "on_end": self.on_end}
        while True:
            username = self.screen.ask("username: ").strip()
            if not username:
                continue
            password = getpass.getpass("password: ") if sys.stdin.isatty() else self.screen.ask("password: ")
            try:
                session = client.login(username, password, **callbacks)  # type: ignore[arg-type]
            except (TooManyAttempts, Busy) as exc:
                self.screen.show(f"! {exc.detail}")
                continue
            except AuthenticationError:
                answer = self.screen.ask(f"No user {username!r} with that password. Register it? [y/N] ")
                if answer.strip().lower() not in YES:
                    continue
                try:
                    session = client.create(username, password)
                except AuthenticationError:
                    self.screen.show(f"{username!r} is taken: the password was wrong")
                    continue
                except ChatError as exc:
                    self.screen.show(f"! {exc.detail or exc.code}")
                    continue
                session.on_message(self.on_message)
                session.on_receipt(self.on_receipt)
                session.on_end(self.on_end)
            except ChatError as exc:
                self.screen.show(f"! {exc.detail or exc.code}")
                continue
            session.on_connection(self.on_connection)
            self.logged_in(session)
            return session

    def logged_in(self, session: ClientSession) -> None:
        self.me = session.username
        inbox = session.login_inbox
        self.screen.show(f"logged in as {self.me} (id {session.user_id}). /help lists the commands.")
        self.screen.show(f"-- last {len(inbox)} messages --" if inbox else "-- no messages yet --")
        for m in inbox:
            self.screen.show(self.describe(m))

    # -- pushes (the client's callback thread) --------------------------------------------------------
    def on_message(self, m: Message) -> None:
        if not self.target and m.room is None and m.sender != self.me:
            self.target = m.sender  # nobody picked yet: the next line answers them
        self.screen.show(self.describe(m))

    def on_receipt(self, r: Receipt) -> None:
        """One line per receipt: one message by its body, a burst (a read of 70) by its count."""
        n = len(r.message_ids)
        if n == 1:
            body = self.bodies.get(r.message_ids[0], f"message {r.message_ids[0]}")
            text = f"read by {r.by}: {body}" if r.status == LEIDO else f"delivered to {r.by}: {body}"
        else:
            text = f"{r.by} read {n} messages" if r.status == LEIDO else f"{n} messages delivered to {r.by}"
        self.screen.show(f"  ✓✓ {text}")

    def on_end(self, reason: str) -> None:
        self.screen.show(f"-- logged out: {reason} --")

    def on_connection(self, state: str, detail: str) -> None:
        if state == "resumed":
            self.screen.show("-- reconnected --")
            return
        if state == "lost":
            self.screen.show(f"! disconnected ({detail})")
            if detail.split(" ", 1)[0] not in ("1001", "1008", "1009"):
                return  # the client resumes by itself
        else:
            self.screen.show("! could not reconnect")
        self.quitting = True
        self._interrupt_main()

    def _interrupt_main(self) -> None:
        """Get the main thread out of input(). A SIGINT that lands just before it enters input() is
        absorbed elsewhere, so repeat it until the main thread says it has left (``left_input``)."""
        main = threading.main_thread()
        while main.is_alive():
            signal.pthread_kill(main.ident or 0, signal.SIGINT)
            if self.left_input.wait(0.2):
                return

    # -- showing --------------------------------------------------------------------------------------
    def show_list(self, title: str, messages: list[Message]) -> None:
        self.screen.show(f"-- {title}: {len(messages)} --")
        for m in messages:
            self.screen.show(self.describe(m, status=True))

    def describe(self, m: Message, status: bool = False) -> str:
        when = _clock(m.sent_at)
        if m.room is not None:
            line = f"[{when}] #{m.room} {m.sender}: {m.body}"
        elif m.sender == self.me:
            line = f"[{when}] you -> {m.recipient}: {m.body}"
        else:
            line = f"[{when}] {m.sender}: {m.body}"
        return f"{line}  ({m.status})" if status and m.sender == self.me else line

    @staticmethod
    def room_line(room: RoomSummary) -> str:
        return f"#{room.name}" + (f" ({room.unread} unread)" if room.unread else "")

    # -- typing ---------------------------------------------------------------------------------------
    def prompt(self) -> str:
        return f"{self.target}> " if self.target else "> "

    def chat_loop(self, session: ClientSession) -> None:
        while not self.quitting:
            line = self.screen.ask(self.prompt()).strip()
            if self.quitting:
                return
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not self.command(session, line):
                        return
                else:
                    self.say(session, self.target, line)
            except ChatError as exc:  # said, and nothing changed: the prompt keeps its conversation
                self.screen.show(f"! {exc.detail or exc.code}")

    def say(self, session: ClientSession, target: str, body: str) -> None:
        if not target:
            self.screen.show("! who to? /msg USER TEXT, or /join ROOM")
            return
        m = session.send_message(target, body)
        self.bodies[m.id] = body
        if len(self.bodies) > 1000:
            self.bodies.pop(next(iter(self.bodies)))
        self.screen.mark(MARKS[m.status])

    def command(self, session: ClientSession, line: str) -> bool:
        """Run one /command; False means quit. A failure raises before the target changes."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/msg":
            user, _, body = rest.partition(" ")
            if not user:
                self.screen.show("usage: /msg USER TEXT")
            elif body.strip():
                self.say(session, user, body.strip())
                self.target = user
            else:
                session.history(with_user=user, limit=1)  # UserNotFound for a name nobody has
                self.target = user
        elif name == "/join" and rest:
            self.join(session, rest.lstrip("#"))
        elif name == "/create" and rest:
            room = session.create_room(rest.lstrip("#"))
            self.target = "#" + room
            self.screen.show(f"-- created and joined #{room} --")
        elif name == "/leave":
            room = rest.lstrip("#") or (self.target[1:] if self.target.startswith("#") else "")
            if room:
                session.leave(room)
                if self.target == "#" + room:
                    self.target = ""
                self.screen.show(f"-- left #{room} --")
            else:
                self.screen.show("usage: /leave ROOM")
        elif name == "/rooms":
            names = [self.room_line(r) for r in session.rooms()]
            self.screen.show("rooms: " + (", ".join(names) if names else "none (/join ROOM)"))
        elif name == "/read":
            self.read(session, everything=rest == "all")
        elif name == "/history":
            self.history(session, rest)
        else:
            self.screen.show(HELP)
        return True

    def join(self, session: ClientSession, room: str) -> None:
        """Join ``room``; only then does the prompt move there. Joining and creating are different
        acts: a room nobody made is not made by a typo, the user is told how to create it."""
        try:
            joined = session.join(room)
        except RoomNotFound:
            self.screen.show(f"! no room #{room}: /create {room} to create it")
            return
        self.target = "#" + joined
        self.screen.show(f"-- joined #{joined} --")

    def read(self, session: ClientSession, everything: bool) -> None:
        """Read the current conversation (a person's, or a room's); everything with no conversation."""
        if everything or not self.target:
            self.show_list("unread, now read", session.read_messages())
        elif self.target.startswith("#"):
            messages = session.read_messages(room=self.target[1:])
            self.show_list(f"unread in {self.target}, now read", messages)
        else:
            messages = session.read_messages(with_user=self.target)
            self.show_list(f"unread with {self.target}, now read", messages)

    def history(self, session: ClientSession, rest: str) -> None:
        # isdecimal, not isdigit: int() refuses "²"; and at most 3 digits, as int() refuses 4,301
        limit = int(rest) if rest.isdecimal() and len(rest) <= 3 and 0 < int(rest) <= 200 else 10
        if self.target.startswith("#"):
            messages = session.history(limit, room=self.target[1:])
        else:
            messages = session.history(limit, with_user=self.target or None)
        self.show_list(f"history with {self.target or 'everyone'}", messages)


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
    serve.add_argument(
        "--nodes",
        type=_node_count,
        default=1,
        help="N > 1: N cluster nodes on this port, supervised and restarted (PostgreSQL and "
        "$CHATACTORS_CLUSTER_SECRET needed); auto: one per CPU (default 1: one plain server)",
    )
    serve.add_argument(
        "--cluster", action="store_true", help="be one node of a cluster on this PostgreSQL database"
    )
    serve.add_argument(
        "--advertise",
        default="127.0.0.1",
        help="the address other nodes reach this one on (default 127.0.0.1: nodes of one machine)",
    )
    serve.add_argument(
        "--node-id",
        default=None,
        help="this node's id in the cluster (default: made up); with --nodes, their prefix",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the port with other servers that set it too (SO_REUSEPORT; --nodes sets it)",
    )
    serve.add_argument("--supervised", type=int, default=None, help=argparse.SUPPRESS)  # set by --nodes
    serve.set_defaults(run=cmd_serve)

    client = sub.add_parser("client", help="chat from this terminal")
    _url_option(client)
    client.set_defaults(run=cmd_client)

    repl = sub.add_parser(
        "repl", help="a Python interpreter with chat ready: the server at --url if one answers, else embedded"
    )
    _url_option(repl)
    repl.add_argument(
        "--embedded", action="store_true", help="an embedded Chat, without looking for a server"
    )
    _chat_options(repl)
    repl.set_defaults(run=cmd_repl)

    status = sub.add_parser("status", help="the cluster's nodes, from its membership table (PostgreSQL)")
    status.add_argument("--database-url", default=None, help="the cluster's postgresql://... database")
    status.set_defaults(run=cmd_status)
    return p


def _url_option(p: argparse.ArgumentParser) -> None:
    default = os.environ.get("CHATACTORS_URL", DEFAULT_URL)
    p.add_argument(
        "--url",
        default=default,
        help=f"the server's WebSocket URL (default {default}, or $CHATACTORS_URL); several, comma-separated: the first that answers, the next on a loss",
    )


def _node_count(text: str) -> int:
    from chatactors.gateway.nodes import node_count

    try:
        return node_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chat_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None, help="sqlite:///file.db (default) or postgresql://...")
    p.add_argument("--system", choices=SYSTEMS, default=None, help="Thespian base (default simpleSystemBase)")


# -- status ---------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """The cluster's nodes as its membership table has them: who is in, since when last heard of."""
    from chatactors.cluster.membership_table import MembershipTable
    from chatactors.core.membership import ACTIVE, Timing

    try:
        table = MembershipTable(resolve_database_url(args.database_url))
    except ChatError as exc:  # ClusterNeedsPostgres: one line, no traceback
        print(f"chatactors status: {exc.detail or exc}", file=sys.stderr)
        return 1
    try:
        if not table.exists():
            print("no cluster has run on this database (it has no nodes table)")
            return 0
        snapshot = table.read()
        loads = table.loads()
    except ChatError as exc:  # StorageUnavailable
        print(f"chatactors status: {exc.detail or exc}", file=sys.stderr)
        return 1
    finally:
        table.close()
    dead_after = Timing().dead_after
    print(
        f"{'node':20} {'epoch':>5}  {'state':22} {'heard':>9} {'users':>6} {'req/s':>7}  {'link':21}  gateway"
    )
    live = 0
    for row in snapshot.rows:
        age = snapshot.at - row.heartbeat
        state = row.status
        if row.status == ACTIVE and age >= dead_after:
            state = "active, no heartbeat"  # the others mark it dead on their next read
        elif row.status == ACTIVE:
            live += 1
        users, rate = loads.get(row.node.node_id, (0, 0.0)) if row.status == ACTIVE else (0, 0.0)
        print(
            f"{terminal_safe(row.node.node_id)[:20]:20} {row.node.epoch:>5}  {state:22} {age:>7.1f} s"
            f" {users:>6} {rate:>7.1f}  {terminal_safe(row.link)[:21]:21}  {terminal_safe(row.gateway)}"
        )
    print(f"{live} node{'' if live == 1 else 's'} live of {len(snapshot.rows)} known")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))
