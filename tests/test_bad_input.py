"""Bad input and a database that goes away through the public API.

The outages are real: on SQLite another connection holds an exclusive lock; on PostgreSQL the chat
talks to the server through a TCP proxy (a thread here) that is cut and restored.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from chatactors import (
    AuthenticationError,
    Chat,
    ChatError,
    InvalidMessage,
    MessageNotFound,
    StorageUnavailable,
    UsernameTaken,
    UserNotFound,
)

PASSWORD = "secreto123"


# -- bad input ----------------------------------------------------------------------------------------
def facade_only(test: Any) -> Any:
    """For checks the facade makes before any request leaves the caller: one base, one database."""
    test = pytest.mark.parametrize("system", ["simpleSystemBase"])(test)
    return pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)(test)


def test_unknown_recipient(chat: Chat) -> None:
    juan = chat.crear("juan", PASSWORD)
    with pytest.raises(UserNotFound):
        juan.send_message("nadie", "hola")
    with pytest.raises(UserNotFound):
        juan.send_message(juan.user_id + 1000, "hola")
    assert juan.history() == []
    assert juan.send_message("juan", "a mi mismo").body == "a mi mismo"  # the actor still works


@facade_only
def test_bad_bodies_are_refused(chat: Chat) -> None:
    juan = chat.crear("juan", PASSWORD)
    for body in ["", "   ", "\n", "x" * 4097, None, 42, b"bytes", ["hola"]]:
        with pytest.raises(InvalidMessage):
            juan.send_message("juan", body)  # type: ignore[arg-type]
    assert juan.history() == []


def test_the_longest_body_is_accepted_and_one_more_is_not(chat: Chat) -> None:
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    m = juan.send_message("maria", "x" * 4096)
    with pytest.raises(InvalidMessage):
        juan.send_message("maria", "x" * 4097)
    assert [r.body for r in maria.read_messages()] == [m.body]
    assert len(m.body) == 4096


@facade_only
def test_a_recipient_must_be_a_name_an_id_or_a_session(chat: Chat) -> None:
    juan = chat.crear("juan", PASSWORD)
    for to in [None, True, 1.5, ["maria"]]:
        with pytest.raises(InvalidMessage):
            juan.send_message(to, "hola")  # type: ignore[arg-type]


def test_bad_usernames_and_passwords_are_refused(chat: Chat) -> None:
    """Checked by the login service, whatever the caller is (a gateway may skip the facade)."""
    bad_names = ["", "ab", "x" * 33, "juan perez", "juan!", "ñandú", "a/b", "juan\n"]
    accepted = []
    for name in bad_names:
        try:
            chat.register(name, PASSWORD)
        except InvalidMessage:
            continue
        accepted.append(name)
    assert accepted == [], f"bad usernames were registered: {accepted!r}"
    for password in ["", "corta", "x" * 1025]:
        with pytest.raises(InvalidMessage):
            chat.register("juan", password)
    assert chat.register("juan", PASSWORD) > 0  # the refusals left nothing behind


def test_a_taken_username(chat: Chat) -> None:
    chat.register("juan", PASSWORD)
    with pytest.raises(UsernameTaken):
        chat.register("juan", "otra-clave-123")
    with pytest.raises(UsernameTaken):
        chat.register("JUAN", "otra-clave-123")  # names are unique whatever their case
    assert chat.login("juan", PASSWORD).username == "juan"  # the first owner keeps it


@facade_only
def test_bad_history_limits_and_login_arguments(chat: Chat) -> None:
    juan = chat.crear("juan", PASSWORD)
    for limit in [0, -1, 201, True, "10"]:
        with pytest.raises(InvalidMessage):
            juan.history(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        chat.login("juan")  # no password
    with pytest.raises(InvalidMessage):
        chat.login(None, PASSWORD)
    with pytest.raises(InvalidMessage):
        chat.login(True, PASSWORD)


BIG = 2**63  # one past the largest id a 64-bit column holds (SQLite raised OverflowError)
LONE = "\ud800"  # a lone surrogate: valid in JSON and in a Python str, not encodable as UTF-8


def test_out_of_range_ids_and_unencodable_text_are_invalid(chat: Chat) -> None:
    """Every argument of the API that reaches the database is checked first: a plain InvalidMessage,
    never an OverflowError, UnicodeEncodeError or a driver's error quoted in an 'internal error'."""
    juan = chat.crear("juan", PASSWORD)
    juan.create_room("general")
    calls: dict[str, Callable[[], Any]] = {
        "send to a huge id": lambda: juan.send_message(BIG, "hola"),
        "send to a negative id": lambda: juan.send_message(-1, "hola"),
        "send to id 0": lambda: juan.send_message(0, "hola"),
        "send to a float": lambda: juan.send_message(1.0, "hola"),  # type: ignore[arg-type]
        "send a lone surrogate": lambda: juan.send_message("juan", "hola " + LONE),
        "send to a lone surrogate": lambda: juan.send_message(LONE, "hola"),
        "send to a name with NUL": lambda: juan.send_message("ju\x00an", "hola"),
        "client_id with a lone surrogate": lambda: juan.send_message("juan", "hola", client_id=LONE),
        "client_id with NUL": lambda: juan.send_message("juan", "hola", client_id="c\x00"),
        "client_id not text": lambda: juan.send_message("juan", "hola", client_id=7),  # type: ignore[arg-type]
        "client_id too long": lambda: juan.send_message("juan", "hola", client_id="x" * 129),
        "room named with a lone surrogate": lambda: juan.send_message("#gen" + LONE, "hola"),
        "send_room with NUL": lambda: juan.send_room("gene\x00ral", "hola"),
        "send_room lone surrogate body": lambda: juan.send_room("general", LONE),
        "read a huge id": lambda: juan.read_messages(ids=[BIG]),
        "read a bool id": lambda: juan.read_messages(ids=[True]),
        "read up_to huge": lambda: juan.read_messages(up_to=BIG),
        "read with a huge id": lambda: juan.read_messages(with_user=BIG),
        "read a room with a lone surrogate": lambda: juan.read_messages(room=LONE),
        "history before huge": lambda: juan.history(before=BIG),
        "history before negative": lambda: juan.history(before=-5),
        "history before a float": lambda: juan.history(before=2.5),  # type: ignore[arg-type]
        "history limit 0": lambda: juan.history(limit=0),
        "history with a lone surrogate": lambda: juan.history(with_user=LONE),
        "history of a room with NUL": lambda: juan.history(room="gen\x00"),
        "status of a huge id": lambda: juan.status(BIG),
        "read_by of a huge id": lambda: juan.read_by(BIG),
        "join a lone surrogate": lambda: juan.join(LONE),
        "leave a name with NUL": lambda: juan.leave("gen\x00"),
        "login by a huge id": lambda: chat.login(BIG, PASSWORD),
        "login by id 0": lambda: chat.login(0, PASSWORD),
        "login by a lone surrogate": lambda: chat.login(LONE, PASSWORD),
        "login by a name with NUL": lambda: chat.login("ju\x00an", PASSWORD),
        "login with a lone surrogate password": lambda: chat.login("juan", PASSWORD + LONE),
        "login with a password not text": lambda: chat.login("juan", 12345678),  # type: ignore[arg-type]
        "login by a token with a lone surrogate": lambda: chat.login(token=LONE),
        "login by a token with NUL": lambda: chat.login(token="t\x00"),
        "register a lone surrogate password": lambda: chat.register("pedro", LONE * 9),
        "presence of a huge id": lambda: chat.online([BIG]),
        "lookup of a huge id": lambda: chat.lookup(BIG),
    }
    wrong = {}
    for what, call in calls.items():
        try:
            call()
        except InvalidMessage:
            continue
        except Exception as exc:  # noqa: BLE001 - what the test is about
            wrong[what] = f"{type(exc).__name__}: {exc}"
        else:
            wrong[what] = "accepted"
    assert wrong == {}
    assert juan.history() == [] and juan.send_message("juan", "sigo").body == "sigo"


def test_an_empty_username_cannot_log_in(chat: Chat) -> None:
    chat.register("juan", PASSWORD)
    with pytest.raises(AuthenticationError):
        chat.login("", PASSWORD)


@pytest.mark.parametrize("system", ["simpleSystemBase"])  # actors log in this process: caplog sees them
def test_refusals_are_not_logged_as_errors(chat: Chat, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password or a taken name is an answer, not a fault: no ERROR traceback in the REPL."""
    juan = chat.crear("juan", PASSWORD)
    refusals = [
        lambda: chat.login("juan", "incorrecta"),
        lambda: chat.login("nadie", "incorrecta"),
        lambda: chat.register("juan", PASSWORD),
        lambda: chat.register("a", PASSWORD),
        lambda: juan.send_message("nadie", "hola"),
    ]
    with caplog.at_level(logging.WARNING, logger="chatactors"):
        for refusal in refusals:
            with pytest.raises(ChatError):
                refusal()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors


def test_status_of_someone_elses_message(chat: Chat) -> None:
    juan, maria, pedro = (chat.crear(n, PASSWORD) for n in ("juan", "maria", "pedro"))
    m = juan.send_message("maria", "privado")
    assert maria.status(m.id) == juan.status(m.id)
    with pytest.raises(MessageNotFound):
        pedro.status(m.id)  # the same answer as for a message that does not exist
    with pytest.raises(MessageNotFound):
        juan.status(m.id + 1000)


def test_a_retry_with_the_same_client_id_is_stored_and_pushed_once(chat: Chat, collector: Any) -> None:
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    pushed = collector()
    maria.on_message(pushed)
    first = juan.send_message("maria", "una vez", client_id="c-1")
    again = juan.send_message("maria", "una vez", client_id="c-1")
    assert again.id == first.id
    marker = juan.send_message("maria", "marca")
    pushed.wait_for(2)
    # Pushes reach a Chat in order and are dispatched before the reply that follows them returns,
    # so once "marca" was answered every push before it is in.
    assert [m.body for m in maria.history(limit=10)] == ["una vez", "marca"]
    assert [m.id for m in pushed.items] == [first.id, marker.id], "the retried message was pushed twice"


# -- the database going away ------------------------------------------------------------------------------
class TcpProxy:
    """A TCP proxy on 127.0.0.1 that can be cut (every connection dropped, new ones refused) and
    restored, as a database server restart or a network cut looks to the chat."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept, name="pg-proxy", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # the server is "down": the connection is refused at once
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()
        self._accepter.join(5)


@pytest.fixture
def start_chat(system: str) -> Iterator[Callable[..., Chat]]:
    """A Chat on a database this module chooses (an outage needs its own URL), shut down afterwards."""
    chats: list[Chat] = []

    def start(database_url: str, **options: Any) -> Chat:
        options = {"system": system, "password_profile": "cheapest", "echo": False, **options}
        chats.append(Chat(database_url=database_url, **options))
        return chats[-1]

    yield start
    for chat in chats:
        chat.shutdown()


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    parts = urlsplit(pg_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    yield proxy, urlunsplit(parts._replace(netloc=netloc))
    proxy.close()


def _bodies_in_postgres(pg_url: str) -> list[str]:
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM mensajes ORDER BY id")
        rows = [r[0] for r in cur.fetchall()]
    conn.close()
    return rows


def _outage_then_recovery(chat: Chat, go_down: Any, come_back: Any) -> None:
    """The same story on both databases: acknowledged messages survive, failed ones are not stored,
    a retry with the same client_id after the outage is stored once."""
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    before = juan.send_message("maria", "antes del corte", client_id="c-0")

    go_down()
    try:
        with pytest.raises(StorageUnavailable):
            juan.send_message("maria", "durante el corte", client_id="c-1")
    finally:
        come_back()

    # Nothing that failed was stored, nothing acknowledged was lost.
    assert [m.body for m in maria.history(limit=10)] == ["antes del corte"]
    retried = juan.send_message("maria", "durante el corte", client_id="c-1")
    again = juan.send_message("maria", "durante el corte", client_id="c-1")
    assert again.id == retried.id
    assert [m.body for m in maria.history(limit=10)] == ["antes del corte", "durante el corte"]
    assert [m.id for m in maria.read_messages()] == [before.id, retried.id]
    assert juan.status(retried.id) == "leido"


def test_sqlite_locked_by_another_writer(sqlite_url: str, start_chat: Any) -> None:
    chat = start_chat(sqlite_url, timeout=20.0)
    path = sqlite_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    locked = threading.Event()

    def go_down() -> None:
        blocker.execute("BEGIN EXCLUSIVE")  # every other writer now fails after its busy timeout
        locked.set()

    def come_back() -> None:
        if locked.is_set():
            blocker.execute("ROLLBACK")

    try:
        _outage_then_recovery(chat, go_down, come_back)
    finally:
        blocker.close()


def test_postgres_cut_off_and_back(pg_proxy: tuple[TcpProxy, str], pg_url: str, start_chat: Any) -> None:
    proxy, proxied_url = pg_proxy
    chat = start_chat(proxied_url)
    _outage_then_recovery(chat, proxy.cut, proxy.restore)
    assert _bodies_in_postgres(pg_url) == ["antes del corte", "durante el corte"]


def test_postgres_down_refuses_logins_and_registrations(
    pg_proxy: tuple[TcpProxy, str], start_chat: Any
) -> None:
    proxy, proxied_url = pg_proxy
    chat = start_chat(proxied_url)
    juan = chat.crear("juan", PASSWORD)
    proxy.cut()
    try:
        with pytest.raises(StorageUnavailable):
            chat.login("juan", PASSWORD)
        with pytest.raises(StorageUnavailable):
            chat.login(token=juan.token)
        with pytest.raises(StorageUnavailable):
            chat.register("maria", PASSWORD)
        with pytest.raises(StorageUnavailable):
            juan.history()
    finally:
        proxy.restore()
    assert chat.login(token=juan.token).user_id == juan.user_id
    assert chat.crear("maria", PASSWORD).username == "maria"


def test_the_server_rides_out_a_postgres_outage_by_itself(
    pg_proxy: tuple[TcpProxy, str], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL goes away under the WebSocket server (as with ``pg_ctl stop -m immediate``: every
    connection dropped, new ones refused) and comes back: the same server process answers
    ``storage_unavailable`` meanwhile, logs it, and serves again with no restart; the client's retry
    with the same client_id is stored once."""
    from test_server import Client, ServerThread

    proxy, proxied_url = pg_proxy
    caplog.set_level(logging.INFO, logger="chatactors")
    chat = Chat(database_url=proxied_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat).start()
    juan, maria = Client(server.url), Client(server.url)
    try:
        juan.register("juan")
        maria.register("maria")
        juan.send("send", to="maria", body="antes", client_id="c0")
        before = juan.expect("sent", client_id="c0")["id"]

        proxy.cut()
        try:
            juan.send("send", to="maria", body="durante", client_id="c1")
            assert juan.expect("error", client_id="c1", timeout=30)["code"] == "storage_unavailable"
            maria.alive()  # the connections themselves live on
        finally:
            proxy.restore()

        juan.send("send", to="maria", body="durante", client_id="c1")  # the documented retry
        retried = juan.expect("sent", client_id="c1", timeout=30)["id"]
        juan.send("send", to="maria", body="durante", client_id="c1")
        assert juan.expect("sent", client_id="c1")["id"] == retried
        assert [m["id"] for m in (maria.expect("message"), maria.expect("message"))] == [before, retried]
        late = Client(server.url)  # and a fresh login works: nothing had to be restarted
        try:
            assert late.login("maria")["inbox"][-1]["id"] == retried
        finally:
            late.close()
    finally:
        juan.close()
        maria.close()
        server.stop()
        chat.shutdown()
    assert _bodies_in_postgres(pg_url) == ["antes", "durante"]
    assert [r for r in caplog.records if "'send' failed: storage_unavailable" in r.getMessage()]
