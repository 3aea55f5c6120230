"""The WebSocket gateway end to end: real ``websockets`` clients against a real server on a free port.

The gateway runs on its own event loop in a thread of this process (``ServerThread``); the CLI tests
start ``python -m chatactors serve`` as a separate process and stop it with a signal. Every wait is
on a frame with a timeout, never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import SESSION_MARKER_FD
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chatactors import Chat, Session
from chatactors.chat import free_port
from chatactors.core.model import Message, Receipt, Status
from chatactors.gateway import Gateway, Limits, TokenBucket, message_frame, parse_frame, receipt_frames
from chatactors.gateway.frames import GUESTS_REASON, SESSIONS_REASON, message_from_dict

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "secreto123"


# -- harness ------------------------------------------------------------------------------------------
class ServerThread:
    """A Gateway on 127.0.0.1:0, served by its own event loop in a thread."""

    def __init__(self, chat: Chat, limits: Limits | None = None, clock: Callable[[], float] | None = None):
        options: dict[str, Any] = {"limits": limits}
        if clock is not None:
            options["clock"] = clock
        self.gateway = Gateway(chat, "127.0.0.1", 0, **options)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="test-gateway", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.gateway.start()
        self._ready.set()
        await self._stop.wait()
        await self.gateway.stop()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(15), "the gateway did not start"
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the gateway did not stop"

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"


class Client:
    """A protocol client: send frames, wait for the next frame of a type (others are kept for later)."""

    def __init__(self, url: str, **options: Any) -> None:
        self._stack = contextlib.ExitStack()
        options = {"open_timeout": 10, "max_size": 2**22, **options}
        self.ws: ClientConnection = self._stack.enter_context(connect(url, **options))
        self.frames: list[dict[str, Any]] = []
        self.user_id = 0
        self.token = ""

    def send(self, type: str, **fields: Any) -> None:
        self.ws.send(json.dumps({"type": type, **fields}))

    def expect(self, type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def fits(frame: dict[str, Any]) -> bool:
            return frame.get("type") == type and all(frame.get(k) == v for k, v in match.items())

        for i, frame in enumerate(self.frames):
            if fits(frame):
                return self.frames.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                frame = json.loads(self.ws.recv(timeout=max(left, 0.001)))
            except TimeoutError:
                raise AssertionError(
                    f"no {type!r} frame {match} within {timeout} s; got {self.frames}"
                ) from None
            if fits(frame):
                return frame  # type: ignore[no-any-return]
            self.frames.append(frame)

    def error(self, code: str, **match: Any) -> dict[str, Any]:
        return self.expect("error", code=code, **match)

    def register(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        self.send("register", username=username, password=password)
        return self._logged_in()

    def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        self.send("login", username=username, password=password)
        return self._logged_in()

    def resume(self, token: str) -> dict[str, Any]:
        self.send("login", token=token)
        return self._logged_in()

    def _logged_in(self) -> dict[str, Any]:
        frame = self.expect("logged_in")
        self.user_id, self.token = frame["user_id"], frame["token"]
        return frame

    def alive(self) -> None:
        """The connection still answers."""
        self.send("ping")
        self.expect("pong")

    def closed_with(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """Read until the server closes; the close code and reason it sent."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.frames.append(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.001))))
        except ConnectionClosed:
            return self.ws.close_code, self.ws.close_reason

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    """``make_server(database_url, limits=..., clock=..., **chat_options)``: stopped afterwards."""
    started: list[tuple[ServerThread, Chat]] = []

    def make(
        database_url: str,
        limits: Limits | None = None,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> ServerThread:
        options.setdefault("system", "simpleSystemBase")
        options.setdefault("password_profile", "cheapest")
        chat = Chat(database_url=database_url, echo=False, announce_login=False, **options)
        server = ServerThread(chat, limits, clock)
        started.append((server, chat))
        return server.start()

    yield make
    for server, chat in started:
        server.stop()
        chat.shutdown()


@pytest.fixture
def clients() -> Iterator[Callable[[str], Client]]:
    opened: list[Client] = []

    def open_client(url: str) -> Client:
        client = Client(url)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def server(make_server: Callable[..., ServerThread], db_url: str) -> ServerThread:
    """A gateway on SQLite and on PostgreSQL."""
    return make_server(db_url)


@pytest.fixture
def lite(make_server: Callable[..., ServerThread], sqlite_url: str) -> ServerThread:
    """A gateway on SQLite only: for the bad-input cases, which do not depend on the database."""
    return make_server(sqlite_url)


# -- the page -----------------------------------------------------------------------------------------
def test_the_page_is_served_over_http(lite: ServerThread) -> None:
    with urllib.request.urlopen(lite.http + "/", timeout=10) as page:
        assert page.headers["Content-Type"].startswith("text/html")
        assert '<script src="/app.js"' in page.read().decode()
    with urllib.request.urlopen(lite.http + "/app.js", timeout=10) as script:
        assert "javascript" in script.headers["Content-Type"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(lite.http + "/../setup.cfg", timeout=10)
    assert missing.value.code == 404
    missing.value.close()


# -- chatting -----------------------------------------------------------------------------------------
def test_two_clients_chat_with_receipts(server: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, maria = clients(server.url), clients(server.url)
    juan.register("juan")
    maria.register("maria")

    juan.send("send", to="maria", body="hola", client_id="c1")
    sent = juan.expect("sent", client_id="c1")
    assert sent["status"] == "entregado"  # maria is online
    pushed = maria.expect("message")
    assert (pushed["id"], pushed["sender"], pushed["recipient"], pushed["body"]) == (
        sent["id"],
        "juan",
        "maria",
        "hola",
    )

    maria.send("send", to=juan.user_id, body="hola juan", client_id="c2")  # to a user id works too
    assert juan.expect("message")["body"] == "hola juan"

    maria.send("read")
    assert maria.expect("marked_read")["ids"] == [sent["id"]]
    receipt = juan.expect("receipt", id=sent["id"])
    assert (receipt["status"], receipt["by"]) == ("leido", "maria")

    juan.send("history", limit=10, **{"with": "maria"})
    history = juan.expect("history")
    assert [m["body"] for m in history["messages"]] == ["hola", "hola juan"]
    assert history["messages"][0]["status"] == "leido"


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_a_status_goes_on_the_wire_as_its_plain_value(status: Status) -> None:
    """A Status is a str: the frames carry the roadmap's text, exactly as before it was an enum."""
    sent_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    message = Message(1, 1, "juan", 2, None, "hola", sent_at, status, "maria")
    frames = [message_frame(message), *receipt_frames(Receipt((1,), status, "maria", 2))]
    wire = [orjson.dumps(frame).decode() for frame in frames]  # as Connection sends them
    assert all(f'"status":"{status.value}"' in text for text in wire)
    assert [type(json.loads(text)["status"]) for text in wire] == [str, str]


@pytest.mark.parametrize("microsecond", [0, 1, 999_999])
def test_sent_at_goes_on_the_wire_as_isoformat_writes_it(microsecond: int) -> None:
    """orjson writes the datetime (no microseconds when there are none, ``+00:00`` for UTC), and the
    client reads it back to the same time."""
    sent_at = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)
    message = Message(1, 1, "juan", 2, None, "hola", sent_at, Status.ENVIADO, "maria")
    wire = json.loads(orjson.dumps(message_frame(message)))
    assert wire["sent_at"] == sent_at.isoformat()
    assert message_from_dict(wire).sent_at == sent_at


def test_ten_clients_chat(server: ServerThread, clients: Callable[[str], Client]) -> None:
    people = [clients(server.url) for _ in range(10)]
    names = [f"user{i}" for i in range(10)]
    for person, name in zip(people, names, strict=True):
        person.register(name)
    for i, person in enumerate(people):
        for j, name in enumerate(names):
            if i != j:
                person.send("send", to=name, body=f"{i}->{j}", client_id=f"{i}-{j}")
    for i, person in enumerate(people):
        for j in range(10):
            if i != j:
                person.expect("sent", client_id=f"{i}-{j}")
        got = sorted(person.expect("message")["body"] for _ in range(9))
        assert got == sorted(f"{j}->{i}" for j in range(10) if j != i)


def test_offline_delivery(server: ServerThread, clients: Callable[[str], Client]) -> None:
    server.gateway.chat.register("maria", PASSWORD)  # maria exists, never connected
    juan = clients(server.url)
    juan.register("juan")
    juan.send("send", to="maria", body="para cuando vuelvas", client_id="c1")
    sent = juan.expect("sent", client_id="c1")
    assert sent["status"] == "enviado"

    maria = clients(server.url)
    inbox = maria.login("maria")["inbox"]
    assert [(m["id"], m["body"], m["status"]) for m in inbox] == [
        (sent["id"], "para cuando vuelvas", "entregado")
    ]


def test_resume_by_token_after_a_dropped_connection(
    server: ServerThread, clients: Callable[[str], Client]
) -> None:
    juan, maria = clients(server.url), clients(server.url)
    first = juan.register("juan")
    maria.register("maria")
    juan.close()  # the connection drops: the token must still work

    maria.send("send", to="juan", body="mientras no estabas", client_id="c1")
    maria.expect("sent", client_id="c1")

    again = clients(server.url)
    resumed = again.resume(first["token"])
    assert (resumed["user_id"], resumed["username"]) == (first["user_id"], "juan")
    assert resumed["inbox"][-1]["body"] == "mientras no estabas"
    maria.send("send", to="juan", body="ya volviste", client_id="c2")
    assert again.expect("message")["body"] == "ya volviste"

    again.close()  # dropped a second time: the same token resumes again
    third = clients(server.url)
    assert third.resume(first["token"])["user_id"] == first["user_id"]
    third.send("logout")  # an explicit logout, unlike a drop, revokes it
    third.expect("logged_out")
    late = clients(server.url)
    late.send("login", token=first["token"])
    assert late.error("auth_failed", request="login")


def test_logout_revokes_the_token(lite: ServerThread, clients: Callable[[str], Client]) -> None:
    juan = clients(lite.url)
    token = juan.register("juan")["token"]
    juan.send("logout")
    juan.expect("logged_out")
    juan.send("login", token=token)
    assert juan.error("auth_failed", request="login")
    juan.login("juan")  # the same socket can log in again


def test_duplicate_client_id_is_stored_once(server: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, juans_phone, maria = clients(server.url), clients(server.url), clients(server.url)
    juan.register("juan")
    juans_phone.login("juan")
    maria.register("maria")
    juan.send("send", to="maria", body="una vez", client_id="same")
    juan.send("send", to="maria", body="una vez", client_id="same")  # a retry after a timeout
    first, second = juan.expect("sent", client_id="same"), juan.expect("sent", client_id="same")
    assert first["id"] == second["id"]
    juan.send("send", to="maria", body="otra", client_id="next")
    juan.expect("sent", client_id="next")
    assert maria.expect("message")["body"] == "una vez"
    assert maria.expect("message")["body"] == "otra"  # nothing in between: no second copy pushed
    # juan's other session is shown what he sent (mirrored by the gateway), once too
    assert [juans_phone.expect("message")["body"] for _ in range(2)] == ["una vez", "otra"]
    juans_phone.alive()
    assert not [f for f in juans_phone.frames if f["type"] == "message"]
    juan.send("history", limit=10, **{"with": "maria"})
    assert [m["body"] for m in juan.expect("history")["messages"]] == ["una vez", "otra"]


def test_no_push_is_lost_around_a_login(lite: ServerThread, clients: Callable[[str], Client]) -> None:
    """Messages sent while maria logs in are in her inbox or pushed after 'logged_in', once each."""
    lite.gateway.chat.register("maria", PASSWORD)
    juan, maria = clients(lite.url), clients(lite.url)
    juan.register("juan")
    for i in range(10):  # at most 10: the inbox holds every message stored before the login
        juan.send("send", to="maria", body=f"m{i}", client_id=f"c{i}")
    maria.send("login", username="maria", password=PASSWORD)  # while those are on their way
    sent = [juan.expect("sent", client_id=f"c{i}") for i in range(10)]
    inbox = {m["id"] for m in maria.expect("logged_in")["inbox"]}
    reached_her = {s["id"] for s in sent if s["status"] == "entregado"}  # routed to her new session
    for message_id in sorted(reached_her - inbox):
        maria.expect("message", id=message_id)
    maria.alive()
    assert not [f for f in maria.frames if f["type"] == "message"]  # nothing twice, nothing stray


def test_several_sessions_of_one_user_all_get_pushes(
    server: ServerThread, clients: Callable[[str], Client]
) -> None:
    terminal, browser, maria = clients(server.url), clients(server.url), clients(server.url)
    terminal.register("juan")
    browser.login("juan")
    maria.register("maria")

    maria.send("send", to="juan", body="a las dos", client_id="m1")
    assert terminal.expect("message")["body"] == "a las dos"
    assert browser.expect("message")["body"] == "a las dos"

    terminal.send("send", to="maria", body="desde la terminal", client_id="t1")
    sent = terminal.expect("sent", client_id="t1")
    mirrored = browser.expect("message")  # the user's other session shows what they sent
    assert (mirrored["id"], mirrored["sender"], mirrored["recipient"]) == (sent["id"], "juan", "maria")
    assert maria.expect("message")["body"] == "desde la terminal"


def test_a_read_on_one_session_clears_it_on_the_others(
    server: ServerThread, clients: Callable[[str], Client]
) -> None:
    phone, laptop, juan = clients(server.url), clients(server.url), clients(server.url)
    phone.register("maria")
    laptop.login("maria")
    juan.register("juan")
    juan.send("send", to="maria", body="hola", client_id="j1")
    sent = juan.expect("sent", client_id="j1")
    phone.expect("message")
    laptop.expect("message")
    phone.send("read", ids=[sent["id"]])
    assert phone.expect("marked_read")["ids"] == [sent["id"]]
    assert laptop.expect("read_sync")["ids"] == [sent["id"]]
    assert phone.expect("read_sync")["ids"] == [sent["id"]]


def test_read_marks_only_what_it_names(server: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, pedro, maria = clients(server.url), clients(server.url), clients(server.url)
    juan.register("juan")
    pedro.register("pedro")
    maria.register("maria")
    juan.send("create_room", room="general")
    juan.expect("joined", room="general")
    maria.send("join", room="general")
    maria.expect("joined", room="general")
    pedro.send("create_room", room="privada")
    pedro.expect("joined", room="privada")

    ids = {}
    for who, kind, fields in [
        (juan, "send", {"to": "maria", "body": "uno"}),
        (juan, "send", {"to": "maria", "body": "dos"}),
        (pedro, "send", {"to": "maria", "body": "de pedro"}),
        (juan, "send_room", {"room": "general", "body": "en la sala"}),
    ]:
        who.send(kind, client_id=fields["body"], **fields)
        ids[fields["body"]] = who.expect("sent", client_id=fields["body"])["id"]
    for _ in ids:
        maria.expect("message")

    maria.send("read", **{"with": "pedro"})  # one conversation: juan's and the room's stay unread
    read = maria.expect("marked_read")
    assert (read["with"], read["ids"]) == ("pedro", [ids["de pedro"]])
    assert read["messages"][0]["status"] == "leido"
    assert pedro.expect("receipt", id=ids["de pedro"])["status"] == "leido"

    maria.send("read", up_to=ids["uno"], **{"with": juan.user_id})  # only up to what she has seen
    assert maria.expect("marked_read")["ids"] == [ids["uno"]]
    assert juan.expect("receipt", id=ids["uno"])["status"] == "leido"
    juan.send("history", **{"with": "maria"})
    statuses = [m["status"] for m in juan.expect("history")["messages"]]
    assert statuses == ["leido", "entregado"]  # "dos" is still unread

    maria.send("rooms")
    assert maria.expect("rooms")["rooms"] == [{"name": "general", "members": 2, "unread": 1}]
    maria.send("read", room="general")
    read = maria.expect("marked_read")
    assert (read["room"], read["ids"]) == ("general", [ids["en la sala"]])
    maria.send("read")  # everything: only "dos" was left
    assert maria.expect("marked_read")["ids"] == [ids["dos"]]
    maria.send("read")
    assert maria.expect("marked_read")["ids"] == []

    for fields, code in [
        ({"with": "juan", "room": "general"}, "invalid"),
        ({"ids": [ids["dos"]], "with": "juan"}, "invalid"),
        ({"ids": [ids["dos"]], "up_to": 3}, "invalid"),
        ({"ids": "todos"}, "invalid"),
        ({"up_to": "9"}, "invalid"),
        ({"room": "privada"}, "not_a_member"),
        ({"with": "nadie"}, "user_not_found"),
    ]:
        maria.send("read", **fields)
        assert maria.error(code, request="read"), fields
    maria.alive()


def test_read_ids_reads_their_conversations_only(
    lite: ServerThread, clients: Callable[[str], Client]
) -> None:
    juan, pedro, maria = clients(lite.url), clients(lite.url), clients(lite.url)
    juan.register("juan")
    pedro.register("pedro")
    maria.register("maria")
    juan.send("create_room", room="general")
    juan.expect("joined", room="general")
    maria.send("join", room="general")
    maria.expect("joined", room="general")
    ids = {}
    for who, kind, fields in [
        (juan, "send", {"to": "maria", "body": "uno"}),
        (juan, "send", {"to": "maria", "body": "dos"}),
        (pedro, "send", {"to": "maria", "body": "de pedro"}),
        (juan, "send_room", {"room": "general", "body": "en la sala"}),
        (maria, "send", {"to": "juan", "body": "mío"}),
    ]:
        who.send(kind, client_id=fields["body"], **fields)
        ids[fields["body"]] = who.expect("sent", client_id=fields["body"])["id"]
    for _ in range(4):
        maria.expect("message")

    # her own message and an unknown id mark nothing; "uno" reads juan's conversation up to it
    maria.send("read", ids=[ids["de pedro"], ids["uno"], ids["mío"], 999_999])
    assert maria.expect("marked_read")["ids"] == [ids["uno"], ids["de pedro"]]
    assert juan.expect("receipt", id=ids["uno"])["status"] == "leido"
    maria.send("read", ids=[ids["en la sala"]])
    assert maria.expect("marked_read")["ids"] == [ids["en la sala"]]
    maria.send("read", ids=[])
    assert maria.expect("marked_read")["ids"] == []
    maria.send("read")
    assert maria.expect("marked_read")["ids"] == [ids["dos"]]  # the one no read named


def test_entregado_receipt_when_an_offline_recipient_logs_in(
    server: ServerThread, clients: Callable[[str], Client]
) -> None:
    server.gateway.chat.register("maria", PASSWORD)
    juan = clients(server.url)
    juan.register("juan")
    juan.send("send", to="maria", body="¿estás?", client_id="c1")
    sent = juan.expect("sent", client_id="c1")
    assert sent["status"] == "enviado"  # maria is offline: one tick

    maria = clients(server.url)
    assert maria.login("maria")["inbox"][0]["id"] == sent["id"]
    receipt = juan.expect("receipt", id=sent["id"])  # she logged in: two ticks
    assert (receipt["status"], receipt["by"], receipt["by_id"]) == ("entregado", "maria", maria.user_id)
    maria.send("read", **{"with": "juan"})
    maria.expect("marked_read")
    assert juan.expect("receipt", id=sent["id"])["status"] == "leido"  # read: blue ticks


def test_read_by_a_message_that_is_not_yours(lite: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, maria, pedro = clients(lite.url), clients(lite.url), clients(lite.url)
    juan.register("juan")
    maria.register("maria")
    pedro.register("pedro")
    juan.send("send", to="maria", body="privado", client_id="c1")
    message_id = juan.expect("sent", client_id="c1")["id"]
    pedro.send("read_by", id=message_id)
    assert pedro.error("message_not_found", request="read_by")
    pedro.send("read_by", id=999_999)
    assert pedro.error("message_not_found", request="read_by")
    maria.send("read_by", id=message_id)  # the recipient may ask
    assert maria.expect("read_by") == {"type": "read_by", "id": message_id, "by": []}


def test_presence(lite: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, maria = clients(lite.url), clients(lite.url)
    juan.register("juan")
    maria.register("maria")
    pedro = lite.gateway.chat.register("pedro", PASSWORD)
    juan.send("presence", user_ids=[maria.user_id, pedro])
    assert juan.expect("presence") == {"type": "presence", "online": [maria.user_id], "offline": [pedro]}
    maria.send("logout")
    maria.expect("logged_out")
    juan.send("presence", user_ids=[maria.user_id])
    assert juan.expect("presence")["online"] == []


def test_rooms(server: ServerThread, clients: Callable[[str], Client]) -> None:
    juan, maria, pedro = clients(server.url), clients(server.url), clients(server.url)
    juan.register("juan")
    maria.register("maria")
    pedro.register("pedro")
    juan.send("create_room", room="general")
    assert juan.expect("joined", room="general")["created"] is True
    maria.send("join", room="general")
    maria.expect("joined", room="general")
    pedro.send("send_room", room="general", body="no soy miembro", client_id="p1")
    assert pedro.error("not_a_member", request="send_room", client_id="p1")
    pedro.send("join", room="nowhere")
    assert pedro.error("room_not_found", request="join", room="nowhere")

    juan.send("send_room", room="general", body="hola a todos", client_id="r1")
    sent = juan.expect("sent", client_id="r1")
    pushed = maria.expect("message", id=sent["id"])
    assert (pushed["room"], pushed["sender"], pushed["body"]) == ("general", "juan", "hola a todos")

    maria.send("rooms")
    assert maria.expect("rooms")["rooms"] == [{"name": "general", "members": 2, "unread": 1}]
    maria.send("history", room="general", limit=5)
    assert [m["body"] for m in maria.expect("history", room="general")["messages"]] == ["hola a todos"]
    maria.send("read", room="general")
    assert maria.expect("marked_read")["ids"] == [sent["id"]]
    assert juan.expect("receipt", id=sent["id"])["status"] == "leido"  # every member has read it
    juan.send("read_by", id=sent["id"])
    assert juan.expect("read_by")["by"] == ["maria"]

    maria.send("leave", room="general")
    maria.expect("left", room="general")
    juan.send("send_room", room="general", body="ya no estás", client_id="r2")
    juan.expect("sent", client_id="r2")
    maria.alive()
    assert not [f for f in maria.frames if f["type"] == "message"]


# -- bad input: every case answers with an error (or closes only that socket); the server lives on --
@pytest.fixture
def bystanders(lite: ServerThread, clients: Callable[[str], Client]) -> Callable[[], None]:
    """Two users chatting on the same server; calling it checks they are still fine."""
    ana, bea = clients(lite.url), clients(lite.url)
    ana.register("ana")
    bea.register("bea")
    counter = iter(range(1_000_000))

    def still_fine() -> None:
        n = next(counter)
        ana.send("send", to="bea", body=f"sigo aquí {n}", client_id=f"ok{n}")
        ana.expect("sent", client_id=f"ok{n}")
        assert bea.expect("message")["body"] == f"sigo aquí {n}"

    return still_fine


def logged(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    """The gateway's log lines that match ``pattern``."""
    lines = [r.getMessage() for r in caplog.records if r.name == "chatactors.server"]
    return [line for line in lines if re.search(pattern, line)]


def test_not_json(
    lite: ServerThread, clients: Callable[[str], Client], bystanders: Callable[[], None]
) -> None:
    bad = clients(lite.url)
    for raw in ("{not json", "[1, 2]", '"text"', "{}", '{"type": 7}'):
        bad.ws.send(raw)
        assert bad.expect("error", code="invalid")["detail"]
    bad.ws.send(b'{"type": "ping"}')  # binary frames are refused too
    assert "binary" in bad.error("invalid")["detail"]
    bad.alive()
    bystanders()


# Hostile frames, as an attacker sends them: each gets an `error` with a plain detail (no exception text,
# nothing logged as an error) and the server stays healthy for everyone else. "anon" frames come from a
# socket that never logged in, "zoe" frames from a logged-in one.
BIG = str(2**63)  # one past the largest 64-bit id: SQLite raised OverflowError
LONE = "\\ud800"  # a lone surrogate, as JSON writes it: Python decodes it, UTF-8 cannot encode it
NUL = "\\u0000"
DEEP = "[" * 20_000 + "]" * 20_000  # 40 KB, under the size limit; json raised RecursionError
HOSTILE: list[tuple[str, str | bytes, str]] = [
    # not a frame
    ("anon", "{not json", "invalid"),
    ("anon", "", "invalid"),
    ("anon", "[1, 2]", "invalid"),
    ("anon", '"text"', "invalid"),
    ("anon", "null", "invalid"),
    ("anon", "123", "invalid"),
    ("anon", "{}", "invalid"),
    ("anon", '{"type": 7}', "invalid"),
    ("anon", '{"type": null}', "invalid"),
    ("anon", '{"type": ["ping"]}', "invalid"),
    ("anon", '{"type": {"ping": 1}}', "invalid"),
    ("anon", f'{{"type": "{LONE}"}}', "invalid"),
    ("anon", f'{{"type": "pi{NUL}ng"}}', "invalid"),
    ("anon", '{"type": "launch_missiles"}', "invalid"),
    ("anon", '{"type": "' + "x" * 10_000 + '"}', "invalid"),
    ("anon", '{"type": "ping"', "invalid"),
    ("anon", '{"type": "ping"} {"type": "ping"}', "invalid"),
    ("anon", b'{"type": "ping"}', "invalid"),  # a binary frame
    ("anon", b"\x00\xff\xfe", "invalid"),
    ("anon", DEEP, "invalid"),
    ("anon", '{"type": "ping", "x": ' + DEEP + "}", "invalid"),
    ("anon", '{"a": ' * 5_000 + "1" + "}" * 5_000, "invalid"),
    ("anon", '{"type": "read_by", "id": ' + "9" * 5_000 + "}", "invalid"),  # over Python's 4,300 digits
    # identity
    ("anon", '{"type": "login", "username": "zoe"}', "invalid"),
    ("anon", '{"type": "login", "password": "secreto123"}', "invalid"),
    ("anon", f'{{"type": "login", "user_id": {BIG}, "password": "secreto123"}}', "invalid"),
    ("anon", '{"type": "login", "user_id": -1, "password": "secreto123"}', "invalid"),
    ("anon", '{"type": "login", "user_id": 0, "password": "secreto123"}', "invalid"),
    ("anon", '{"type": "login", "user_id": true, "password": "secreto123"}', "invalid"),
    ("anon", '{"type": "login", "user_id": 1.5, "password": "secreto123"}', "invalid"),
    ("anon", f'{{"type": "login", "username": {BIG}, "password": "secreto123"}}', "invalid"),
    ("anon", f'{{"type": "login", "username": "zo{LONE}e", "password": "secreto123"}}', "invalid"),
    ("anon", f'{{"type": "login", "username": "zo{NUL}e", "password": "secreto123"}}', "invalid"),
    ("anon", f'{{"type": "login", "username": "zoe", "password": "secreto123{LONE}"}}', "invalid"),
    ("anon", '{"type": "login", "username": "zoe", "password": 12345678}', "invalid"),
    ("anon", '{"type": "login", "username": ["zoe"], "password": "secreto123"}', "invalid"),
    ("anon", '{"type": "login", "token": 12345}', "invalid"),
    ("anon", f'{{"type": "login", "token": "{LONE}"}}', "invalid"),
    ("anon", f'{{"type": "login", "token": "t{NUL}"}}', "invalid"),
    ("anon", '{"type": "login", "token": "not-a-token"}', "auth_failed"),
    ("anon", '{"type": "register", "username": "mallory"}', "invalid"),
    ("anon", f'{{"type": "register", "username": "mal{LONE}", "password": "secreto123"}}', "invalid"),
    ("anon", f'{{"type": "register", "username": "mallory", "password": "{LONE * 9}"}}', "invalid"),
    ("anon", '{"type": "register", "username": "mallory", "password": "corta"}', "invalid"),
    ("anon", '{"type": "register", "username": "<script>", "password": "secreto123"}', "invalid"),
    ("anon", '{"type": "send", "to": "ana", "body": "hola", "client_id": "x"}', "not_logged_in"),
    ("anon", f'{{"type": "history", "before": {BIG}}}', "not_logged_in"),
    # send
    ("zoe", '{"type": "send", "body": "sin destinatario"}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana"}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": 42}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": ["hola"]}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": {"text": "hola"}}', "invalid"),
    ("zoe", f'{{"type": "send", "to": "ana", "body": "hola {LONE}"}}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "   "}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "' + "x" * 4097 + '"}', "invalid"),
    ("zoe", '{"type": "send", "to": true, "body": "hola"}', "invalid"),
    ("zoe", '{"type": "send", "to": 1.0, "body": "hola"}', "invalid"),
    ("zoe", f'{{"type": "send", "to": {BIG}, "body": "hola"}}', "invalid"),
    ("zoe", '{"type": "send", "to": -1, "body": "hola"}', "invalid"),
    ("zoe", '{"type": "send", "to": 0, "body": "hola"}', "invalid"),
    ("zoe", f'{{"type": "send", "to": "a{LONE}", "body": "hola"}}', "invalid"),
    ("zoe", f'{{"type": "send", "to": "a{NUL}na", "body": "hola"}}', "invalid"),
    ("zoe", '{"type": "send", "to": {"id": 1}, "body": "hola"}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "hola", "client_id": 5}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "hola", "client_id": ""}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "hola", "client_id": "' + "c" * 129 + '"}', "invalid"),
    ("zoe", f'{{"type": "send", "to": "ana", "body": "hola", "client_id": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "send", "to": "ana", "body": "hola", "client_id": "c{NUL}"}}', "invalid"),
    ("zoe", '{"type": "send", "to": "ana", "body": "hola", "client_id": ["c"]}', "invalid"),
    ("zoe", '{"type": "send", "to": "nadie", "body": "hola"}', "user_not_found"),
    ("zoe", f'{{"type": "send", "to": "#{LONE}", "body": "hola"}}', "invalid"),
    # rooms
    ("zoe", '{"type": "send_room", "body": "hola"}', "invalid"),
    ("zoe", '{"type": "send_room", "room": 7, "body": "hola"}', "invalid"),
    ("zoe", f'{{"type": "send_room", "room": "{LONE}", "body": "hola"}}', "invalid"),
    ("zoe", f'{{"type": "send_room", "room": "gen{NUL}", "body": "hola"}}', "invalid"),
    ("zoe", f'{{"type": "send_room", "room": "general", "body": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "create_room", "room": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "create_room", "room": "gen{NUL}"}}', "invalid"),
    ("zoe", '{"type": "create_room", "room": ["general"]}', "invalid"),
    ("zoe", '{"type": "create_room", "room": "<img src=x onerror=alert(1)>"}', "invalid"),
    ("zoe", '{"type": "join"}', "invalid"),
    ("zoe", f'{{"type": "join", "room": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "leave", "room": "gen{NUL}"}}', "invalid"),
    ("zoe", '{"type": "leave", "room": 3}', "invalid"),
    # read
    ("zoe", '{"type": "read", "ids": "todos"}', "invalid"),
    ("zoe", f'{{"type": "read", "ids": [{BIG}]}}', "invalid"),
    ("zoe", '{"type": "read", "ids": [true]}', "invalid"),
    ("zoe", '{"type": "read", "ids": [1.5]}', "invalid"),
    ("zoe", '{"type": "read", "ids": [-1]}', "invalid"),
    ("zoe", '{"type": "read", "ids": [[1]]}', "invalid"),
    ("zoe", '{"type": "read", "ids": [' + ", ".join(["1"] * 1001) + "]}", "invalid"),
    ("zoe", f'{{"type": "read", "up_to": {BIG}}}', "invalid"),
    ("zoe", '{"type": "read", "up_to": -1}', "invalid"),
    ("zoe", '{"type": "read", "up_to": "9"}', "invalid"),
    ("zoe", '{"type": "read", "up_to": NaN}', "invalid"),
    ("zoe", f'{{"type": "read", "with": {BIG}}}', "invalid"),
    ("zoe", f'{{"type": "read", "with": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "read", "room": "{LONE}"}}', "invalid"),
    ("zoe", '{"type": "read", "with": "ana", "room": "general"}', "invalid"),
    ("zoe", '{"type": "read", "ids": [1], "with": "ana"}', "invalid"),
    # history
    ("zoe", '{"type": "history", "limit": 0}', "invalid"),
    ("zoe", '{"type": "history", "limit": -1}', "invalid"),
    ("zoe", '{"type": "history", "limit": 201}', "invalid"),
    ("zoe", f'{{"type": "history", "limit": {BIG}}}', "invalid"),
    ("zoe", '{"type": "history", "limit": "10"}', "invalid"),
    ("zoe", '{"type": "history", "limit": 1.5}', "invalid"),
    ("zoe", '{"type": "history", "limit": true}', "invalid"),
    ("zoe", f'{{"type": "history", "before": {BIG}}}', "invalid"),
    ("zoe", '{"type": "history", "before": -1}', "invalid"),
    ("zoe", '{"type": "history", "before": "120"}', "invalid"),
    ("zoe", '{"type": "history", "before": Infinity}', "invalid"),
    ("zoe", f'{{"type": "history", "with": {BIG}}}', "invalid"),
    ("zoe", f'{{"type": "history", "with": "{LONE}"}}', "invalid"),
    ("zoe", f'{{"type": "history", "room": "gen{NUL}"}}', "invalid"),
    # presence and read_by
    ("zoe", '{"type": "presence"}', "invalid"),
    ("zoe", '{"type": "presence", "user_ids": "ana"}', "invalid"),
    ("zoe", f'{{"type": "presence", "user_ids": [{BIG}]}}', "invalid"),
    ("zoe", '{"type": "presence", "user_ids": [true]}', "invalid"),
    ("zoe", '{"type": "presence", "user_ids": [-1]}', "invalid"),
    ("zoe", '{"type": "presence", "user_ids": [1.5]}', "invalid"),
    ("zoe", '{"type": "presence", "user_ids": [' + ", ".join(["1"] * 1001) + "]}", "invalid"),
    ("zoe", '{"type": "read_by"}', "invalid"),
    ("zoe", f'{{"type": "read_by", "id": {BIG}}}', "invalid"),
    ("zoe", '{"type": "read_by", "id": -1}', "invalid"),
    ("zoe", '{"type": "read_by", "id": "1"}', "invalid"),
    ("zoe", '{"type": "read_by", "id": false}', "invalid"),
    ("zoe", '{"type": "read_by", "id": 1e3}', "invalid"),
    ("zoe", '{"type": "read_by", "id": 999999}', "message_not_found"),
    ("zoe", '{"type": "login", "username": "zoe", "password": "secreto123"}', "invalid"),  # already in
]
# Exception names, tracebacks, driver messages: what a client must never read in a detail.
LEAK = re.compile(r"Error\b|Traceback|internal|sqlite|psycopg|peewee|codec|surrogates|int too large", re.I)


def test_hostile_frames_get_a_plain_error_and_the_server_stays_healthy(
    make_server: Callable[..., ServerThread],
    db_url: str,
    clients: Callable[[str], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(HOSTILE) >= 87  # at least as many as the attack that found the faults
    server = make_server(db_url, limits=Limits(rate=10_000, burst=10_000))
    ana, bea, zoe, anon = (clients(server.url) for _ in range(4))
    ana.register("ana")
    bea.register("bea")
    zoe.register("zoe")
    connection = {"anon": anon, "zoe": zoe}
    wrong = []
    with caplog.at_level(logging.INFO, logger="chatactors"):
        for who, raw, code in HOSTILE:
            connection[who].ws.send(raw)
            error = connection[who].expect("error")
            shown = raw[:80] if isinstance(raw, str) else repr(raw)
            if error["code"] != code or not error["detail"] or LEAK.search(error["detail"]):
                wrong.append((who, shown, error))
            json.dumps(error, ensure_ascii=False).encode()  # everything echoed is valid UTF-8
        big = clients(server.url)
        big.send("send", to="ana", body="x" * (server.gateway.limits.max_frame + 1))
        assert big.closed_with()[0] == 1009  # over the size limit: only that socket closes
    assert wrong == []
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert faults == [], [r.getMessage() for r in faults]
    for c in (anon, zoe):
        c.alive()
    ana.send("send", to="bea", body="seguimos", client_id="after")
    ana.expect("sent", client_id="after")
    assert bea.expect("message")["body"] == "seguimos"
    zoe.send("send", to="ana", body="yo también", client_id="z1")
    assert zoe.expect("sent", client_id="z1")["id"] > 0
    assert ana.expect("message")["body"] == "yo también"


def test_unknown_type(
    lite: ServerThread, clients: Callable[[str], Client], bystanders: Callable[[], None]
) -> None:
    bad = clients(lite.url)
    bad.send("launch_missiles")
    assert bad.error("invalid", request="launch_missiles")["detail"] == "unknown type 'launch_missiles'"
    bystanders()


def test_missing_and_wrong_fields(
    lite: ServerThread, clients: Callable[[str], Client], bystanders: Callable[[], None]
) -> None:
    bad = clients(lite.url)
    bad.send("login", username="ana")
    assert "password" in bad.error("invalid", request="login")["detail"]
    bad.send("register", username="zoe")
    assert bad.error("invalid", request="register")
    bad.register("zoe")
    for frame in (
        {"type": "send", "body": "sin destinatario", "client_id": "a"},
        {"type": "send", "to": "ana", "client_id": "b"},
        {"type": "send", "to": "ana", "body": 42, "client_id": "c"},
        {"type": "send", "to": True, "body": "x", "client_id": "d"},
        {"type": "send", "to": "ana", "body": "x", "client_id": ["e"]},
        {"type": "send", "to": "ana", "body": "   ", "client_id": "f"},
        {"type": "send", "to": "ana", "body": "x" * 4097, "client_id": "g"},
        {"type": "history", "limit": "ten"},
        {"type": "history", "limit": 100000},
        {"type": "presence", "user_ids": "ana"},
        {"type": "read_by"},
    ):
        bad.ws.send(json.dumps(frame))
        error = bad.expect("error")
        assert error["code"] == "invalid" and error["request"] == frame["type"], (frame, error)
    bad.send("send", to="nadie", body="hola", client_id="h")
    assert bad.error("user_not_found", client_id="h")
    bad.send("login", username="zoe", password=PASSWORD)
    assert "already logged in" in bad.error("invalid", request="login")["detail"]
    bad.alive()
    bystanders()


def test_actions_before_login(
    lite: ServerThread, clients: Callable[[str], Client], bystanders: Callable[[], None]
) -> None:
    bad = clients(lite.url)
    for kind, fields in [
        ("send", {"to": "ana", "body": "hola", "client_id": "x"}),
        ("read", {}),
        ("history", {}),
        ("presence", {"user_ids": [1]}),
        ("join", {"room": "general"}),
        ("logout", {}),
    ]:
        bad.send(kind, **fields)
        assert bad.error("not_logged_in", request=kind)
    bad.alive()  # ping needs no login
    bystanders()


def test_wrong_password_and_unknown_user_look_the_same(
    lite: ServerThread, clients: Callable[[str], Client], bystanders: Callable[[], None]
) -> None:
    bad = clients(lite.url)
    bad.send("login", username="ana", password="wrong-password")
    wrong = bad.error("auth_failed")
    bad.send("login", username="nobody", password="wrong-password")
    unknown = bad.error("auth_failed")
    assert wrong["detail"] == unknown["detail"]
    bystanders()


def test_expired_token(
    make_server: Callable[..., ServerThread], sqlite_url: str, clients: Callable[[str], Client]
) -> None:
    server = make_server(sqlite_url, token_ttl=0.0)  # every token is born expired
    juan = clients(server.url)
    token = juan.register("juan")["token"]
    late = clients(server.url)
    late.send("login", token=token)
    assert "expired" in late.error("auth_failed", request="login")["detail"]
    late.send("login", token="not-a-token")
    assert late.error("auth_failed")
    late.alive()
    juan.alive()  # the session that holds the token is not cut off


def test_frame_over_the_size_limit_closes_only_that_socket(
    lite: ServerThread,
    clients: Callable[[str], Client],
    bystanders: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
    wait_until: Any,
) -> None:
    caplog.set_level(logging.INFO, logger="chatactors")
    big = clients(lite.url)
    big.send("send", to="ana", body="x" * (lite.gateway.limits.max_frame + 1), client_id="big")
    assert big.closed_with()[0] == 1009  # message too big
    bystanders()
    line = r"#\d+ 127\.0\.0\.1:\d+ disconnected \(1009 'frame with \d+ bytes exceeds limit of 65536 bytes'\)"
    wait_until(lambda: logged(caplog, line), what="the cut-off to be logged")


def test_rate_limit(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chatactors")
    now = [1000.0]
    server = make_server(sqlite_url, limits=Limits(rate=5, burst=5, flood=50), clock=lambda: now[0])
    fast, calm = clients(server.url), clients(server.url)
    for _ in range(8):
        fast.send("ping")
    for _ in range(5):
        fast.expect("pong")
    error = fast.error("rate_limited")
    assert "5 frames per second" in error["detail"]
    calm.alive()  # another connection has its own allowance
    assert len(logged(caplog, r"#\d+ 127\.0\.0\.1:\d+ rate limited: frames dropped")) == 1  # once per run
    now[0] += 1.0  # a second later the allowance is back
    fast.alive()
    assert not [f for f in fast.frames if f["type"] in ("pong", "error")]  # the extra frames were dropped


def test_a_flood_closes_the_socket(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chatactors")
    server = make_server(sqlite_url, limits=Limits(rate=5, burst=5, flood=10), clock=lambda: 0.0)
    flood, calm = clients(server.url), clients(server.url)
    try:
        for _ in range(100):
            flood.send("ping")
    except ConnectionClosed:
        pass
    assert flood.closed_with() == (1008, "rate limit exceeded")
    calm.alive()
    assert len(logged(caplog, r"flooding: closed \(10 frames dropped in a row\)")) == 1


def connected(clients: Callable[[str], Client], url: str) -> Client:
    """A new connection the server holds (connections count in the order they got there)."""
    client = clients(url)
    client.alive()
    return client


def test_past_max_guests_the_oldest_connection_not_logged_in_is_closed(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connections nobody has logged in on cost memory and a descriptor each: at most ``max_guests``
    wait at once, the oldest closed first; a logged-in one is never counted, a logged-out one again."""
    caplog.set_level(logging.INFO, logger="chatactors")
    server = make_server(sqlite_url, limits=Limits(max_guests=2))

    member = clients(server.url)
    member.register("ana")
    first, second, third = (
        connected(clients, server.url),
        connected(clients, server.url),
        connected(clients, server.url),
    )
    assert first.closed_with() == (1008, GUESTS_REASON)
    member.send("logout")  # a guest again, the newest: the oldest guest goes
    member.expect("logged_out")
    assert second.closed_with() == (1008, GUESTS_REASON)
    third.register("bea")  # no longer a guest
    fourth, fifth = connected(clients, server.url), connected(clients, server.url)
    assert member.closed_with() == (1008, GUESTS_REASON)
    for client in (third, fourth, fifth):
        client.alive()
    assert len(logged(caplog, r"#\d+ 127\.0\.0\.1:\d+ closed: over 2 connections not logged in")) == 3


def test_a_guest_whose_login_is_in_flight_is_not_closed_for_a_newer_one_and_a_failed_login_keeps_its_place(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password login takes an argon2 hash (~0.1 s): a flood of new connections meanwhile must not
    cut it short. It still counts: when every other guest has a login in flight, the newcomer goes.
    A login that fails does not make a guest younger (that would be a free way to stay)."""
    server = make_server(sqlite_url, limits=Limits(max_guests=2))
    chat = server.gateway.chat
    chat.register("ana", PASSWORD)
    entered: queue.SimpleQueue[None] = queue.SimpleQueue()
    release = threading.Event()
    login = chat.login

    def slow_login(*args: Any, **kwargs: Any) -> Any:
        entered.put(None)
        assert release.wait(30), "the test never released the login"
        return login(*args, **kwargs)

    failing, waiting = connected(clients, server.url), connected(clients, server.url)
    failing.send("login", username="ana", password="not-the-password")
    failing.error("auth_failed")  # still the oldest guest: [failing, waiting]
    monkeypatch.setattr(chat, "login", slow_login)
    waiting.send("login", username="ana", password=PASSWORD)
    entered.get(timeout=30)  # in flight: [failing, waiting*]
    third = connected(clients, server.url)  # the oldest guest with no login in flight goes
    assert failing.closed_with() == (1008, GUESTS_REASON)
    third.send("login", username="ana", password=PASSWORD)
    entered.get(timeout=30)  # [waiting*, third*]
    newcomer = clients(server.url)  # every other guest is logging in: the newcomer goes
    assert newcomer.closed_with() == (1008, GUESTS_REASON)
    release.set()
    for client in (waiting, third):
        client.expect("logged_in")
        client.alive()


def test_past_max_sessions_a_users_oldest_session_is_logged_out_and_may_log_in_again(
    make_server: Callable[..., ServerThread], sqlite_url: str, clients: Callable[[str], Client]
) -> None:
    """One user's sockets on a server are at most ``max_sessions``: each message to them is a frame
    on every one, so logging in by token again and again must not multiply them."""
    server = make_server(sqlite_url, limits=Limits(max_sessions=2))
    first, second, third, bea = (clients(server.url) for _ in range(4))
    token = first.register("ana")["token"]
    second.resume(token)
    bea.register("bea")
    third.resume(token)  # the third session of ana: the oldest is logged out
    assert first.expect("logged_out") == {
        "type": "logged_out",
        "reason": SESSIONS_REASON,
        "token_valid": True,
    }
    first.send("send", to="bea", body="from the first")
    assert first.error("session_ended")["detail"].startswith(f"your session ended ({SESSIONS_REASON})")
    bea.send("send", to="ana", body="hola", client_id="b1")
    bea.expect("sent", client_id="b1")
    for client in (second, third):  # pushed on the two that are logged in
        assert client.expect("message", body="hola")["sender"] == "bea"
    first.resume(token)  # its token still works: now the second session is the oldest
    assert second.expect("logged_out")["reason"] == SESSIONS_REASON
    bea.send("send", to="ana", body="otra", client_id="b2")
    for client in (third, first):
        assert client.expect("message", body="otra")["sender"] == "bea"
    assert not [f for f in first.frames if f.get("body") == "hola"]  # sent while it was logged out


def test_a_session_logged_out_past_max_sessions_may_log_in_again_while_its_logout_is_answered(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its socket is told and becomes a guest before the logout is answered, so a login meanwhile
    is a login like any other (it was once told "logged out" after it had logged in again)."""
    server = make_server(sqlite_url, limits=Limits(max_sessions=1))
    entered, release = threading.Event(), threading.Event()
    logout = Session.logout

    def slow_logout(self: Session, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30), "the test never released the logout"
        return logout(self, *args, **kwargs)

    first, second = clients(server.url), clients(server.url)
    token = first.register("ana")["token"]
    monkeypatch.setattr(Session, "logout", slow_logout)
    second.resume(token)  # past max_sessions: first is logged out, and its logout waits
    assert first.expect("logged_out")["reason"] == SESSIONS_REASON
    assert entered.wait(30)
    first.resume(token)  # while the logout is answered (and now second is the oldest)
    assert second.expect("logged_out")["reason"] == SESSIONS_REASON
    release.set()
    first.send("inbox")
    first.expect("inbox")  # it has a session
    assert not [f for f in first.frames if f["type"] == "logged_out"]
    guests = list(server.gateway.guests)  # the loop has answered everything sent: nothing moves now
    assert len(guests) == 1 and guests[0].session is None  # second's socket; first's is logged in
    assert [c.session is not None for c in server.gateway.connections].count(True) == 1


def _reader_left_behind(
    server: ServerThread, clients: Callable[[str], Client], name: str, histories: int
) -> tuple[Client, Client]:
    """``name`` on a socket with a small receive buffer, reading nothing: 50 big messages from
    ``writer``, then ``histories`` requests for them (about 200 KB of answer each)."""
    tiny = socket.create_connection(("127.0.0.1", server.gateway.port))
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning to 32 MB
    reader = Client(server.url, sock=tiny, max_queue=1)
    writer = clients(server.url)
    reader.register(name)
    writer.register("writer")
    for i in range(50):
        big = base64.b64encode(os.urandom(3000)).decode()  # 4,000 characters that do not compress
        writer.send("send", to=name, body=big, client_id=f"w{i}")
        writer.expect("sent", client_id=f"w{i}")
    for _ in range(histories):
        reader.send("history", limit=50)
    return reader, writer


def test_a_client_that_does_not_read_is_closed(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chatactors")
    server = make_server(sqlite_url, limits=Limits(max_pending=3, rate=1000, burst=1000))
    sleepy, writer = _reader_left_behind(server, clients, "sleepy", histories=80)

    def given_up() -> bool:
        return any(
            c.closed for c in server.gateway.connections if c.session and c.session.username == "sleepy"
        )

    try:
        wait_until(given_up, timeout=20, what="the gateway to give up on the sleepy reader")
        writer.alive()  # meanwhile everyone else is served
        assert sleepy.closed_with(timeout=20) == (1008, "client too slow: too many unread frames")

        assert logged(caplog, r"#\d+ 127\.0\.0\.1:\d+ sleepy reads too slowly: closed \(\d+ frames unread\)")
    finally:
        sleepy.close()


def test_a_reader_that_falls_behind_then_catches_up_gets_every_frame_in_order(
    make_server: Callable[..., ServerThread],
    sqlite_url: str,
    clients: Callable[[str], Client],
    wait_until: Any,
) -> None:
    """Frames for a peer whose buffer is full wait for a writer task; once it has caught up the
    flusher writes each loop turn again, and nothing was dropped or reordered on the way."""
    server = make_server(sqlite_url, limits=Limits(rate=1000, burst=1000))
    slow, writer = _reader_left_behind(server, clients, "slow", histories=60)
    [conn] = [c for c in server.gateway.connections if c.session and c.session.username == "slow"]
    try:
        wait_until(lambda: conn.ws.paused, timeout=20, what="the socket's buffer to fill")
        bodies = [f"after {i}" for i in range(30)]
        for i, body in enumerate(bodies):
            writer.send("send", to="slow", body=body, client_id=f"a{i}")
            writer.expect("sent", client_id=f"a{i}")
        assert conn.writer is not None  # these frames wait for the writer task
        assert [slow.expect("history", timeout=20)["type"] for _ in range(60)] == ["history"] * 60
        got = [slow.expect("message", timeout=20)["body"] for _ in range(80)]
        assert got[50:] == bodies  # every push, in the order sent
        wait_until(lambda: conn.writer is None, timeout=20, what="the writer task to hand back")
        writer.send("send", to="slow", body="fast again", client_id="last")
        assert slow.expect("message", body="fast again")["body"] == "fast again"
        assert conn.writer is None and not conn.closed
    finally:
        slow.close()


def test_the_log_says_what_happened_and_keeps_secrets(
    lite: ServerThread, clients: Callable[[str], Client], caplog: pytest.LogCaptureFixture, wait_until: Any
) -> None:
    """One line per event for an operator; never a password, a token or a message body."""
    caplog.set_level(logging.INFO, logger="chatactors")
    juan, maria = clients(lite.url), clients(lite.url)
    juan.register("juan")
    maria.register("maria")
    juan.send("send", to="maria", body="cuerpo-privado", client_id="c1")
    juan.expect("sent", client_id="c1")
    juan.send("logout")
    juan.expect("logged_out")
    maria.close()
    again = clients(lite.url)
    again.resume(maria.token)
    attacker = clients(lite.url)
    for attempt in range(30):  # until the throttle answers (its policy may change; its answer not)
        attacker.send("login", username="maria", password=f"adivina-{attempt}")
        if attacker.expect("error")["code"] == "too_many_attempts":
            break
    else:
        raise AssertionError("30 wrong passwords were never throttled")
    attacker.send("send", to="maria", body="sin sesión")
    attacker.error("not_logged_in")
    attacker.send("launch_missiles")
    attacker.error("invalid")

    peer = r"#\d+ 127\.0\.0\.1:\d+"
    expected = [
        rf"{peer} connected",
        rf"{peer} registered 'juan' \(id \d+\)",
        rf"{peer} juan logged in \(id \d+\) by password",
        rf"{peer} juan logged out",
        rf"{peer} maria disconnected \(1000\)",
        rf"{peer} maria logged in \(id \d+\) by token",
        rf"{peer} login as 'maria' refused: auth_failed",
        rf"{peer} login as 'maria' refused: too_many_attempts",
        rf"{peer} bad frame 'send': log in first",
        rf"{peer} bad frame 'launch_missiles': unknown type 'launch_missiles'",
    ]
    for line in expected:
        wait_until(lambda line=line: logged(caplog, line), timeout=5, what=f"a log line {line!r}")
    throttled = logged(caplog, "refused: too_many_attempts")
    assert [r.levelname for r in caplog.records if r.getMessage() in throttled] == ["WARNING"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, "adivina-", "cuerpo-privado", "sin sesión", juan.token, maria.token):
        assert secret not in text


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5
    assert [bucket.allow(), bucket.allow()] == [True, False]
    now[0] = 100.0
    assert sum(bucket.allow() for _ in range(10)) == 3  # never more than the burst


def test_parse_frame() -> None:
    assert parse_frame('{"type": "ping"}') == {"type": "ping"}
    for raw in ("", "nope", "[]", "{}", '{"type": null}', b"{}"):
        with pytest.raises(Exception) as error:
            parse_frame(raw)
        assert getattr(error.value, "code", None) == "invalid"


# -- the command line: graceful shutdown, no process left -------------------------------------------
class Marker:
    """An open file every process forked from the server inherits (on a descriptor Thespian keeps):
    whoever still holds it after the server exits was left behind."""

    FD = 900

    def __init__(self) -> None:
        handle, path = tempfile.mkstemp(prefix="chatactors-server-test-")
        os.unlink(path)
        info = os.fstat(handle)
        self.identity = (info.st_dev, info.st_ino)
        os.dup2(handle, self.FD, inheritable=True)
        os.close(handle)

    def holders(self) -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                for fd in fds:
                    info = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (info.st_dev, info.st_ino) == self.identity:
                        found.append(int(pid))
                        break
            except OSError:
                continue  # gone meanwhile, or not ours to look at
        return found

    def close(self) -> None:
        os.close(self.FD)


def _serve(args: list[str], marker: Marker) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m chatactors serve``; returns it and the WebSocket URL it printed."""
    fds = [marker.FD, SESSION_MARKER_FD]  # the session's own leftover check tracks it too
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "THESPLOG_FILE": os.devnull}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatactors", "serve", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=fds,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "terminal:" in line:
            return proc, line.split("--url", 1)[1].strip()
    raise AssertionError("the server did not start:\n" + "".join(lines))


@pytest.mark.multiproc
@pytest.mark.parametrize(
    ("system", "stop"),
    [("simpleSystemBase", signal.SIGINT), ("multiprocTCPBase", signal.SIGTERM)],
    ids=["simpleSystemBase-SIGINT", "multiprocTCPBase-SIGTERM"],
)
def test_serve_chats_then_stops_gracefully(
    tmp_path: Path, system: str, stop: signal.Signals, wait_until: Any
) -> None:
    marker = Marker()
    args = [
        "--system",
        system,
        "--database-url",
        f"sqlite:///{tmp_path}/chat.db",
        "--password-profile",
        "cheapest",
    ]
    if system == "multiprocTCPBase":
        args += ["--admin-port", str(free_port())]
    proc, url = _serve(args, marker)
    try:
        juan, maria = Client(url), Client(url)
        juan.register("juan")
        maria.register("maria")
        juan.send("send", to="maria", body="antes de cerrar", client_id="c1")
        assert maria.expect("message")["body"] == "antes de cerrar"
        juan.expect("sent", client_id="c1")

        proc.send_signal(stop)
        assert juan.closed_with() == (1001, "server shutting down")
        assert maria.closed_with() == (1001, "server shutting down")
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "chatactors server stopped" in out
        for line in (  # the default --log-level INFO, on stderr
            r"INFO chatactors\.server: #\d+ 127\.0\.0\.1:\d+ maria logged in \(id 2\) by password",
            r"INFO chatactors\.server: stopping: closing 2 connections \(server shutting down\)",
            r"INFO chatactors\.server: #\d+ 127\.0\.0\.1:\d+ juan disconnected \(1001 'server shutting down'\)",
        ):
            assert re.search(line, out), (line, out)
        assert PASSWORD not in out and "antes de cerrar" not in out and juan.token not in out
        wait_until(lambda: not marker.holders(), timeout=10, what="the server's processes to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in marker.holders():
            os.kill(pid, signal.SIGKILL)
        marker.close()
