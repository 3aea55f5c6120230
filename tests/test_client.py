"""The Python client (``chatactors.connect``) against a real server: the embedded API, over the wire.

Each test starts a real gateway on a free port (``ServerThread``) and talks to it only through the
client. What the client gets back is compared with what the embedded ``Chat`` gives for the same
call; the reconnect tests drop the socket on the server side, or restart the gateway. Waits are on
pushes and events, with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Inbox, hold_tokens_back
from test_server import PASSWORD, ServerThread

import chatactors
from chatactors import (
    ENTREGADO,
    ENVIADO,
    LEIDO,
    AuthenticationError,
    Chat,
    ChatError,
    Client,
    ClientSession,
    InvalidMessage,
    Message,
    Receipt,
    RoomSummary,
    SessionEnded,
    Unavailable,
    connect,
)
from chatactors.chat import free_port
from chatactors.cli import parser, repl_chat
from chatactors.client import _is_push
from chatactors.gateway import Limits
from chatactors.gateway.frames import ERRORS, error_from_frame, receipts_from_frames


def start_server(chat: Chat, port: int = 0) -> ServerThread:
    server = ServerThread(chat)
    server.gateway.port = port
    return server.start()


@pytest.fixture
def embedded(db_url: str) -> Iterator[Chat]:
    chat = Chat(database_url=db_url, password_profile="cheapest", echo=False, announce_login=False)
    yield chat
    chat.shutdown()


@pytest.fixture
def served(embedded: Chat) -> Iterator[ServerThread]:
    server = start_server(embedded)
    yield server
    server.stop()


@pytest.fixture
def remote(served: ServerThread) -> Iterator[Client]:
    client = connect(served.url, echo=False, announce_login=False)
    yield client
    client.close()


def test_two_users_chat_through_the_server(remote: Client, wait_until: Callable[..., Any]) -> None:
    juan, maria = remote.crear("juan", PASSWORD), remote.crear("maria", "secreto456")
    assert isinstance(juan, ClientSession) and juan.username == "juan" and juan.active
    pushed, receipts = Inbox(), Inbox()
    maria.on_message(pushed)
    juan.on_receipt(receipts)

    m = juan.send_message("maria", "hola")
    assert isinstance(m, Message) and (m.sender, m.recipient, m.body, m.status) == (
        "juan",
        "maria",
        "hola",
        ENTREGADO,
    )
    assert pushed.wait_for(1)[0] == m
    juan.enviar_mensaje(maria.user_id, "por id")
    juan.send_message(maria, "por sesión")
    pushed.wait_for(3)

    read = maria.leer_mensajes()
    assert [r.body for r in read] == ["hola", "por id", "por sesión"]
    assert {r.status for r in read} == {LEIDO}
    assert maria.read_messages() == []
    ids = tuple(r.id for r in read)
    wait_until(lambda: sum(len(r.message_ids) for r in receipts.items) == 3, what="three receipts")
    assert {(r.status, r.by, r.by_id) for r in receipts.items} == {(LEIDO, "maria", maria.user_id)}
    assert tuple(i for r in receipts.items for i in r.message_ids) == ids  # a burst is one Receipt
    assert juan.status(m.id) == LEIDO
    assert juan.read_by(m.id) == ["maria"]
    assert [h.body for h in juan.history(with_user="maria", limit=2)] == ["por id", "por sesión"]
    assert [h.id for h in maria.inbox] == list(ids)

    again = remote.login("maria", "secreto456")  # a second session of maria's: her inbox at login
    assert [h.id for h in again.login_inbox] == list(ids)
    again.logout()


def test_offline_messages_wait_and_receipts_follow(remote: Client) -> None:
    remote.register("maria", PASSWORD)
    juan = remote.crear("juan", PASSWORD)
    receipts = Inbox()
    juan.on_receipt(receipts)
    m = juan.send_message("maria", "¿estás?")
    assert m.status == ENVIADO
    maria = remote.login("maria", PASSWORD)
    assert [i.body for i in maria.login_inbox] == ["¿estás?"]
    assert receipts.wait_for(1)[0] == Receipt((m.id,), ENTREGADO, "maria", maria.user_id)


def test_rooms_through_the_server(remote: Client) -> None:
    juan, maria = remote.crear("juan", PASSWORD), remote.crear("maria", PASSWORD)
    assert juan.create_room("general") == "general"
    assert maria.join("general") == "general"
    pushed = Inbox()
    maria.on_message(pushed)
    m = juan.send_message("#general", "hola a todos")
    assert (m.room, m.body) == ("general", "hola a todos")
    assert pushed.wait_for(1)[0] == m
    assert maria.rooms() == [RoomSummary(name="general", members=2, unread=1)]
    assert [h.body for h in maria.history(room="general")] == ["hola a todos"]
    assert [r.id for r in maria.read_messages(room="general")] == [m.id]
    assert juan.read_by(m.id) == ["maria"]
    assert juan.status(m.id) == LEIDO
    assert juan.send_room("general", "otra").room == "general"
    assert [u.username for u in maria.members("general")] == ["juan", "maria"]
    assert maria.leave("general") == "general"
    with pytest.raises(chatactors.NotAMember):
        maria.send_room("general", "ya no")
    with pytest.raises(chatactors.RoomExists):
        maria.create_room("general")
    with pytest.raises(chatactors.RoomNotFound):
        maria.join("nowhere")


# Each bad call, made on the embedded Chat and through the client: the same exception class.
BAD_CALLS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("wrong password", lambda chat, juan: chat.login("juan", "not-the-password")),
    ("unknown user", lambda chat, juan: chat.login("nadie", PASSWORD)),
    ("unknown user id", lambda chat, juan: chat.login(999, PASSWORD)),
    ("bad token", lambda chat, juan: chat.login(token="no-such-token")),
    ("login with nothing", lambda chat, juan: chat.login("juan")),
    ("name taken", lambda chat, juan: chat.register("juan", PASSWORD)),
    ("taken name, other password", lambda chat, juan: chat.crear("juan", "another-password")),
    ("short password", lambda chat, juan: chat.register("pedro", "short")),
    ("send to nobody", lambda chat, juan: juan.send_message("nadie", "hola")),
    ("empty body", lambda chat, juan: juan.send_message("juan", "")),
    ("client_id too long", lambda chat, juan: juan.send_message("juan", "x", client_id="c" * 129)),
    ("status of nothing", lambda chat, juan: juan.status(999)),
    ("read_by of nothing", lambda chat, juan: juan.read_by(999)),
    ("history limit 0", lambda chat, juan: juan.history(limit=0)),
    ("history with nobody", lambda chat, juan: juan.history(with_user="nadie")),
    ("read with and room", lambda chat, juan: juan.read_messages(with_user="juan", room="general")),
    ("read ids and up_to", lambda chat, juan: juan.read_messages(ids=[1], up_to=3)),
    ("join nothing", lambda chat, juan: juan.join("nowhere")),
    ("bad room name", lambda chat, juan: juan.join("a")),
    ("leave nothing", lambda chat, juan: juan.leave("nowhere")),
    ("members of nothing", lambda chat, juan: juan.members("nowhere")),
    ("room send, not a member", lambda chat, juan: juan.send_room("nowhere", "hola")),
    ("history with and room", lambda chat, juan: juan.history(with_user="juan", room="general")),
    ("history before 0", lambda chat, juan: juan.history(before=0)),
    ("history limit over 200", lambda chat, juan: juan.history(limit=201)),
    ("history limit True", lambda chat, juan: juan.history(limit=True)),
    ("status of id 2**63", lambda chat, juan: juan.status(2**63)),
    ("status of True", lambda chat, juan: juan.status(True)),
    ("status of a text", lambda chat, juan: juan.status("1")),
    ("read_by of -1", lambda chat, juan: juan.read_by(-1)),
    ("body with NUL", lambda chat, juan: juan.send_message("juan", "a\u0000b")),
    ("body with a lone surrogate", lambda chat, juan: juan.send_message("juan", "a\ud800")),
    ("body too long", lambda chat, juan: juan.send_message("juan", "x" * 4097)),
    ("body over the frame limit", lambda chat, juan: juan.send_message("juan", "x" * 70_000)),
    ("room name over the frame limit", lambda chat, juan: juan.join("x" * 70_000)),
    ("body not text", lambda chat, juan: juan.send_message("juan", 42)),
    ("send to #nowhere", lambda chat, juan: juan.send_message("#nowhere", "hola")),
    ("send to True", lambda chat, juan: juan.send_message(True, "hola")),
    ("room name with NUL", lambda chat, juan: juan.join("ab\u0000c")),
    ("room name a surrogate", lambda chat, juan: juan.create_room("ab\udc00c")),
    ("room name not text", lambda chat, juan: juan.members(7)),
    ("members of a room not joined", lambda chat, juan: juan.members(_room_of_another(chat))),
    ("history of a room not joined", lambda chat, juan: juan.history(room=_room_of_another(chat))),
    ("read ids not ints", lambda chat, juan: juan.read_messages(ids=["1"])),
    ("login surrogate name", lambda chat, juan: chat.login("ju\udc00an", PASSWORD)),
    ("register NUL name", lambda chat, juan: chat.register("ju\u0000an", PASSWORD)),
]


def test_reading_more_ids_than_a_frame_holds(embedded: Chat, remote: Client) -> None:
    """A frame names at most 1,000 ids; the embedded chat takes any number, and so does the client."""
    for chat in (embedded, remote):
        juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
        sent = [juan.send_message("maria", f"m{i}").id for i in range(3)]
        ids = [*range(sent[-1] + 1, sent[-1] + 1500), sent[2], sent[0]]  # the real ones in the 2nd frame
        assert [m.id for m in maria.read_messages(ids=ids)] == [sent[0], sent[2]]
        assert [m.id for m in maria.read_messages(ids=ids)] == []  # read already
        with pytest.raises(InvalidMessage):
            maria.read_messages(ids=ids, up_to=5)
        juan.logout()
        maria.logout()


def _room_of_another(chat: Any) -> str:
    """A room that exists and that juan is not in (made once per chat by ana, who then logs out)."""
    try:
        chat.register("ana", PASSWORD)
    except chatactors.UsernameTaken:
        return "ajena"
    with chat.login("ana", PASSWORD) as ana:
        ana.create_room("ajena")
    return "ajena"


@pytest.mark.parametrize("call", [c for _, c in BAD_CALLS], ids=[name for name, _ in BAD_CALLS])
def test_errors_are_the_embedded_ones(
    embedded: Chat, remote: Client, call: Callable[[Any, Any], Any]
) -> None:
    embedded.register("juan", PASSWORD)
    raised: list[type[BaseException]] = []
    for chat in (embedded, remote):
        juan = chat.login("juan", PASSWORD)
        with pytest.raises(ChatError) as caught:
            call(chat, juan)
        raised.append(type(caught.value))
        juan.logout()
    assert raised[0] is raised[1], raised


def test_receipt_frames_of_one_burst_are_one_receipt() -> None:
    frames = [
        {"type": "receipt", "id": 1, "status": "leido", "by": "maria", "by_id": 2},
        {"type": "receipt", "id": 2, "status": "leido", "by": "maria", "by_id": 2},
        {"type": "receipt", "id": 3, "status": "entregado", "by": "maria", "by_id": 2},
        {"type": "receipt", "id": 4, "status": "leido", "by": "pedro", "by_id": 3},
    ]
    assert receipts_from_frames(frames) == [
        Receipt((1, 2), LEIDO, "maria", 2),
        Receipt((3,), ENTREGADO, "maria", 2),
        Receipt((4,), LEIDO, "pedro", 3),
    ]
    assert receipts_from_frames([]) == []


def test_pushes_are_told_from_answers() -> None:
    """Answers are matched to requests by order, so every frame the server sends unasked is a push."""
    for push in ("message", "receipt", "read_sync", "typing"):
        assert _is_push({"type": push})
    assert _is_push({"type": "logged_out", "reason": "token revoked"})  # ended elsewhere
    for answer in ("logged_in", "logged_out", "sent", "error", "pong", "history", "members", "results"):
        assert not _is_push({"type": answer})


def test_every_error_code_maps_to_its_class() -> None:
    for code, cls in ERRORS.items():
        error = error_from_frame({"type": "error", "code": code, "detail": "d"})
        assert type(error) is cls and error.detail == "d"
    throttled = error_from_frame(
        {"type": "error", "code": "too_many_attempts", "detail": "", "retry_after": 2}
    )
    assert isinstance(throttled, chatactors.TooManyAttempts) and throttled.retry_after == 2
    assert type(error_from_frame({"type": "error", "code": "no-such-code"})) is ChatError


def test_token_login_and_a_logout_elsewhere(remote: Client) -> None:
    juan = remote.crear("juan", PASSWORD)
    ended = Inbox()
    twin = remote.login(token=juan.token, on_end=ended)
    assert twin.user_id == juan.user_id
    juan.logout()  # revokes the token: the twin holding it ends too
    assert ended.wait_for(1) == ["token revoked: logged out elsewhere"]
    assert not twin.active
    with pytest.raises(SessionEnded):
        twin.inbox  # noqa: B018
    with pytest.raises(SessionEnded):
        juan.send_message("juan", "after logout")
    with pytest.raises(AuthenticationError):
        remote.login(token=juan.token)
    with pytest.raises(SessionEnded, match="has ended"):
        juan.logout()  # a second logout is a mistake worth seeing, as on the embedded Session


def test_a_session_is_a_context_manager_that_logs_out(remote: Client) -> None:
    remote.register("maria", PASSWORD)
    with remote.login("maria", PASSWORD) as maria:
        assert maria.active
    assert not maria.active and maria.ended == "logged out"
    with pytest.raises(SessionEnded):
        maria.inbox  # noqa: B018
    with remote.login("maria", PASSWORD) as again:
        again.logout()  # ended inside the block: leaving it does not raise
    assert not again.active


def test_a_callback_may_call_the_client(remote: Client) -> None:
    """A bot: its on_message answers through the same client (callbacks run off the client's loop)."""
    juan, bot = remote.crear("juan", PASSWORD), remote.crear("echobot", PASSWORD)
    bot.on_message(lambda m: bot.send_message(m.sender, "eco: " + m.body))
    answers = Inbox()
    juan.on_message(answers)
    juan.send_message("echobot", "hola")
    assert answers.wait_for(1)[0].body == "eco: hola"


def test_a_push_before_an_answer_is_handled_before_the_call_returns(remote: Client) -> None:
    juan, maria = remote.crear("juan", PASSWORD), remote.crear("maria", PASSWORD)
    seen: list[str] = []
    maria.on_message(lambda m: seen.append(m.body))
    juan.send_message("maria", "primero")
    assert maria.status(juan.history(limit=1)[0].id) == ENTREGADO  # a call answered after the push
    assert seen == ["primero"]


def test_nothing_listening_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no chatactors server answers"):
        connect(f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(InvalidMessage):
        connect("not a url")


def test_several_urls_the_first_that_answers_then_the_next_on_a_loss(embedded: Chat) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    first, second = start_server(embedded), start_server(embedded)
    client = connect(f"{dead}, {first.url},{second.url}", echo=False, announce_login=False)
    try:
        juan = client.crear("juan", PASSWORD)
        states = States()
        juan.on_connection(states)
        first.stop()  # the one it took: the next in the list is tried, after the dead one
        assert states.wait("resumed") == second.url
        assert juan.send_message("juan", "sigo aquí").body == "sigo aquí"
    finally:
        client.close()
        second.stop()
    with pytest.raises(Unavailable, match=f"no chatactors server answers at {dead}, ws://"):
        connect(f"{dead},{first.url}")


def test_a_closed_client_refuses_calls(served: ServerThread) -> None:
    client = connect(served.url, echo=False, announce_login=False)
    juan = client.crear("juan", PASSWORD)
    client.close()
    client.close()  # twice is fine
    with pytest.raises(chatactors.ChatClosed):
        juan.inbox  # noqa: B018
    with pytest.raises(chatactors.ChatClosed):
        client.login("juan", PASSWORD)


def test_frames_the_server_drops_never_shift_the_answers(embedded: Chat) -> None:
    """A server that drops frames (its rate limit; a network that bunches frames can trip it) answers
    one of them with an error naming no request and the rest not at all. The client cannot match
    answers by order past that point: it reconnects and asks again, so each call still gets its own
    answer, never the one meant for the call before it."""
    juan = embedded.crear("juan", PASSWORD)
    embedded.register("maria", PASSWORD)
    for i in range(6):
        juan.send_message("maria", f"m{i}")
    frozen = ServerThread(embedded, limits=Limits(rate=1.0, burst=3), clock=lambda: 0.0).start()
    states: list[str] = []

    async def main() -> None:
        async with await chatactors.connect_async(frozen.url, timeout=10) as client:
            maria = await client.login("maria", PASSWORD)  # 1 of the 3 frames each connection may send
            maria.on_connection(lambda state, detail: states.append(state))
            pages = await asyncio.gather(*(maria.history(limit=n) for n in range(1, 7)))
            assert [len(page) for page in pages] == [1, 2, 3, 4, 5, 6]
            assert [m.body for m in pages[5]] == [f"m{i}" for i in range(6)]
        assert asyncio.all_tasks() == {asyncio.current_task()}  # closing left no task behind

    try:
        asyncio.run(main())
    finally:
        frozen.stop()
    assert "resumed" in states  # it did have to reconnect


def test_frames_out_of_step_are_never_taken_for_answers() -> None:
    """A server that sends a frame that is no JSON object, or an answer of the wrong type, cannot
    stop the client or hand a call another's answer: the client reconnects and asks again."""
    from websockets.sync.server import ServerConnection, serve

    before = set(threading.enumerate())
    logged_in = {"type": "logged_in", "user_id": 1, "username": "juan", "token": "t", "inbox": []}
    asked: list[str] = []

    def handler(ws: ServerConnection) -> None:
        for raw in ws:
            kind = json.loads(raw)["type"]
            if kind == "ping":
                ws.send('{"type": "pong"}')
            elif kind == "login":
                ws.send(json.dumps(logged_in))
            elif not asked:  # the first 'inbox' is answered out of step
                asked.append(kind)
                ws.send("[1, 2]")
                ws.send('{"type": "rooms", "rooms": [{"name": "otra"}]}')
            else:
                ws.send('{"type": "inbox", "messages": []}')

    with serve(handler, "127.0.0.1", 0) as fake:
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{fake.socket.getsockname()[1]}"
        with connect(url, timeout=10, echo=False, announce_login=False) as client:
            juan = client.login("juan", PASSWORD)
            states = States()
            juan.on_connection(states)
            assert juan.inbox == []  # its own answer, on the second socket
            states.wait("resumed")
        fake.shutdown()
    assert not client_threads(before)  # closed: its loop and its dispatcher are gone


def client_threads(before: set[threading.Thread]) -> list[str]:
    """The client threads started since ``before`` that are still alive."""
    return [t.name for t in set(threading.enumerate()) - before if t.name.startswith("chatactors-client")]


def test_the_async_flavour(served: ServerThread) -> None:
    async def main() -> None:
        async with await chatactors.connect_async(served.url) as client:
            juan = await client.crear("juan", PASSWORD)
            maria = await client.crear("maria", PASSWORD)
            arrived: asyncio.Queue[Message] = asyncio.Queue()
            maria.on_message(arrived.put_nowait)  # called on the loop: no thread hop
            sent = await juan.enviar_mensaje("maria", "hola")
            assert (await asyncio.wait_for(arrived.get(), 10)) == sent
            assert [m.id for m in await maria.leer_mensajes()] == [sent.id]
            assert await juan.status(sent.id) == LEIDO
            assert [m.id for m in await maria.inbox()] == [sent.id]
            assert await juan.create_room("sala") == "sala"
            assert await juan.rooms() == [RoomSummary("sala", 1, 0)]
            with pytest.raises(chatactors.UserNotFound):
                await juan.send_message("nadie", "hola")
            with pytest.raises(AuthenticationError):
                await client.login("juan", "wrong-password")
            await maria.logout()
            with pytest.raises(SessionEnded):
                await maria.history()
            with pytest.raises(SessionEnded):
                await maria.logout()
            async with await client.login("maria", PASSWORD) as again:
                assert again.active
            assert not again.active and again.ended == "logged out"

    asyncio.run(main())


# -- reconnecting ---------------------------------------------------------------------------------------
def drop_after_first(server: ServerThread, kind: str) -> threading.Event:
    """The first ``kind`` frame is handled (stored), then its socket is cut before the answer goes out."""
    gateway = server.gateway
    original = gateway._handlers[kind]
    dropped = threading.Event()

    async def handle_then_drop(conn: Any, frame: dict[str, Any]) -> None:
        await original(conn, frame)
        if not dropped.is_set():
            dropped.set()
            conn.ws.transport.abort()  # the answer is still queued: it never leaves

    gateway._handlers[kind] = handle_then_drop
    return dropped


class States:
    """A session's connection events (``on_connection``), waited on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, state: str, detail: str) -> None:
        with self._cond:
            self.items.append((state, detail))
            self._cond.notify_all()

    def wait(self, state: str, timeout: float = 30.0) -> str:
        """The detail of the first ``state`` event, once there is one."""
        with self._cond:
            if not self._cond.wait_for(lambda: any(s == state for s, _ in self.items), timeout):
                raise AssertionError(f"no {state!r} within {timeout} s: {self.items}")
            return next(d for s, d in self.items if s == state)


def test_an_unanswered_send_is_retried_once_and_stored_once(served: ServerThread, remote: Client) -> None:
    juan, maria = remote.crear("juan", PASSWORD), remote.crear("maria", PASSWORD)
    pushed, states = Inbox(), States()
    maria.on_message(pushed)
    juan.on_connection(states)
    dropped = drop_after_first(served, "send")

    m = juan.send_message("maria", "una sola vez", client_id="retry-1")  # answered after the resume
    assert dropped.is_set()
    assert states.wait("lost").startswith("1006")
    states.wait("resumed")
    assert m.body == "una sola vez"
    juan.send_message("maria", "después")
    assert [p.body for p in pushed.wait_for(2)] == ["una sola vez", "después"]
    assert [h.body for h in juan.history(with_user="maria")] == ["una sola vez", "después"]
    embedded = served.gateway.chat.login("maria", PASSWORD)  # the database, read without the gateway
    assert [h.id for h in embedded.history(with_user="juan")][0] == m.id
    assert len(embedded.history(with_user="juan")) == 2
    embedded.logout()


def test_a_resume_held_back_by_the_token_throttle_waits_it_out_and_resumes(
    served: ServerThread, remote: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Made-up tokens from the client's address (127.0.0.1 here; behind a NAT, anyone's) hold token
    logins from there back for a moment: the client's resume is refused, waits, and resumes."""
    juan = remote.crear("juan", PASSWORD)
    states = States()
    juan.on_connection(states)
    chat = served.gateway.chat
    hold_tokens_back(chat, "127.0.0.1")
    (conn,) = [c for c in served.gateway.connections if c.session is not None]
    assert served._loop is not None
    served._loop.call_soon_threadsafe(conn.ws.transport.abort)
    assert states.wait("lost").startswith("1006")
    states.wait("resumed")
    assert "resuming held back for" in caplog.text  # the first try was refused, and waited
    juan.send_message("juan", "de vuelta")
    assert [m.body for m in juan.history(with_user="juan")] == ["de vuelta"]


def test_an_unanswered_read_is_not_repeated(served: ServerThread, remote: Client) -> None:
    """A 'read' whose answer was lost fails with Unavailable: repeating it would return nothing."""
    juan, maria = remote.crear("juan", PASSWORD), remote.crear("maria", PASSWORD)
    juan.send_message("maria", "hola")
    drop_after_first(served, "read")
    with pytest.raises(Unavailable, match="connection was lost"):
        maria.read_messages()
    assert maria.inbox[0].status == LEIDO  # it was done; the session goes on on a new socket


def test_a_restarted_server_is_resumed_by_token(embedded: Chat) -> None:
    server = start_server(embedded)
    port = server.gateway.port
    client = connect(server.url, echo=False, announce_login=False)
    try:
        juan, maria = client.crear("juan", PASSWORD), client.crear("maria", PASSWORD)
        states, pushed = States(), Inbox()
        juan.on_connection(states)
        maria.on_message(pushed)
        server.stop()
        assert states.wait("lost") == "1001 server shutting down"
        server = start_server(embedded, port)
        states.wait("resumed")
        juan.send_message("maria", "de vuelta")
        assert pushed.wait_for(1)[0].body == "de vuelta"  # maria's session came back too
    finally:
        client.close()
        server.stop()


def test_messages_that_came_while_the_socket_was_down_are_handed_on(embedded: Chat) -> None:
    """Stored while the server was away, they are not pushed: the resume's inbox lists them, and
    on_message gets each once (not those it had before)."""
    server = start_server(embedded)
    port = server.gateway.port
    client = connect(server.url, echo=False, announce_login=False)
    try:
        maria = client.crear("maria", PASSWORD)
        juan = embedded.crear("juan", PASSWORD)
        states, pushed = States(), Inbox()
        maria.on_connection(states)
        maria.on_message(pushed)
        before = juan.send_message("maria", "antes")
        assert pushed.wait_for(1) == [before]
        server.stop()
        states.wait("lost")
        missed = [juan.send_message("maria", f"mientras {i}") for i in range(2)]  # nobody to push to
        server = start_server(embedded, port)
        states.wait("resumed")
        assert pushed.wait_for(3)[1:] == [m.with_status(ENTREGADO) for m in missed]  # once, in order
        after = juan.send_message("maria", "después")
        assert pushed.wait_for(4)[3] == after  # and "antes" was not handed on again
        juan.logout()
    finally:
        client.close()
        server.stop()


# -- the REPL: attached to a server when one answers, else embedded ------------------------------------
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "juan = chat.crear('juan', 'secreto123')\nprint('kind', type(chat).__name__, juan.username)\n"


def run_repl(*args: str, env: dict[str, str] | None = None) -> str:
    """``python -m chatactors repl`` with a two-line session on its stdin; everything it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "chatactors", "repl", *args],
        input=SCRIPT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_the_repl_attaches_to_a_running_server(served: ServerThread) -> None:
    out = run_repl("--url", served.url)
    assert f"attached to the chatactors server at {served.url}" in out
    assert "kind Client juan" in out
    served.gateway.chat.login("juan", PASSWORD).logout()  # the account is the server's


def test_the_repl_falls_back_to_an_embedded_chat(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    database = f"sqlite:///{tmp_path}/repl.db"
    out = run_repl(env={"CHATACTORS_URL": url, "CHATACTORS_DATABASE_URL": database})
    assert (
        f"no chatactors server answers at {url}: started an embedded chat (simpleSystemBase, {database})"
        in out
    )
    assert "kind Chat juan" in out


def test_the_repl_is_embedded_when_asked(sqlite_url: str) -> None:
    chat, which = repl_chat(parser().parse_args(["repl", "--embedded", "--database-url", sqlite_url]))
    try:
        assert isinstance(chat, Chat)
        assert which.startswith("asked for an embedded chat: started an embedded chat")
    finally:
        chat.shutdown()


# -- the client against a stand-in server that misbehaves on purpose ------------------------------------
def with_stand_in(answer: Callable[[Any, dict[str, Any]], Any], test: Callable[[str], Any]) -> None:
    """Run ``test(url)`` against a WebSocket server whose every frame goes to ``answer(ws, frame)``;
    a ``login`` is answered as juan's."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "login":
                await ws.send(
                    json.dumps({"type": "logged_in", "user_id": 1, "username": "juan", "token": "t"})
                )
            await answer(ws, frame)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            await test(f"ws://127.0.0.1:{port}")

    asyncio.run(main())


def test_a_push_the_client_cannot_read_does_not_stop_the_answers() -> None:
    async def answer(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "login":
            await ws.send("not json")
            await ws.send(json.dumps({"type": "message", "id": 1}))  # a push missing its fields
        elif frame["type"] == "status":
            await ws.send(json.dumps({"type": "status", "id": frame["id"], "status": "leido"}))

    async def test(url: str) -> None:
        juan = await chatactors.AsyncClient(url).login("juan", PASSWORD)
        assert await juan.status(1) == LEIDO

    with_stand_in(answer, test)


def test_an_answer_that_came_too_late_is_not_taken_for_the_next() -> None:
    """Answers are matched by order: one whose caller timed out is dropped, not handed to the next call."""
    first: list[dict[str, Any]] = []

    async def answer(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] != "status":
            return
        if not first:
            first.append(frame)  # held back until the next request comes
            return
        for f in (first[0], frame):
            await ws.send(json.dumps({"type": "status", "id": f["id"], "status": "leido"}))

    async def test(url: str) -> None:
        juan = await chatactors.AsyncClient(url, timeout=0.5).login("juan", PASSWORD)
        with pytest.raises(chatactors.ChatTimeout):
            await juan.status(1)
        reply = await juan._ask("status", id=2)
        assert reply["id"] == 2

    with_stand_in(answer, test)


def send_and_catch(session: ClientSession) -> BaseException:
    try:
        session.send_message("juan", "waiting")
    except BaseException as exc:
        return exc
    raise AssertionError("the send went through")


def test_a_token_revoked_while_disconnected_ends_the_session(
    embedded: Chat, wait_until: Callable[..., Any]
) -> None:
    server = start_server(embedded)
    port = server.gateway.port
    client = connect(server.url, echo=False, announce_login=False)
    try:
        juan = client.crear("juan", PASSWORD)
        states, ended = States(), Inbox()
        juan.on_connection(states)
        juan.on_end(ended)
        server.stop()
        states.wait("lost")
        embedded.login(token=juan.token).logout()  # revoked while the client could not hear of it
        waiting: list[BaseException] = []
        sender = threading.Thread(target=lambda: waiting.append(send_and_catch(juan)))
        sender.start()  # a send made while disconnected waits for the resume
        wait_until(lambda: juan._session._link.pending, what="the send to wait for the resume")
        server = start_server(embedded, port)
        assert ended.wait_for(1) == ["could not resume: invalid or expired token"]
        sender.join(10)
        assert [type(e) for e in waiting] == [SessionEnded]
        assert not juan.active
        with pytest.raises(SessionEnded):
            juan.send_message("juan", "too late")
        assert client.login("juan", PASSWORD).active  # the password still works
    finally:
        client.close()
        server.stop()
