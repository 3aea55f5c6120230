"""One client's bad input never fails another user's write.

The persistence actor commits a burst of messages as one multi-row INSERT. A row the database
cannot take (a client_id wider than the column, a NUL that PostgreSQL refuses, a lone surrogate no
driver encodes) used to fail every write in its batch. Now the input rules refuse such values at the
edge and again before a batch, and a row the database still refuses fails alone (``invalid``) while
the others are stored exactly once. Run on SQLite and PostgreSQL, and on both system bases.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from test_server import Client, ServerThread

from chatactors import Chat, InvalidMessage, Session
from chatactors.bridge import _Waiter
from chatactors.core.model import ENVIADO, Message, RoomInfo, UserInfo
from chatactors.core.rules import MAX_CLIENT_ID, check_body, check_client_id, check_ref, check_text
from chatactors.errors import ChatError
from chatactors.messages import Batch, Request, StoreDirect, StoreRoom
from chatactors.storage import Mensaje

PASSWORD = "secreto123"
LONG_ID = "k" * MAX_CLIENT_ID  # legal by the protocol; the old column held 64
TOO_LONG_ID = "k" * (MAX_CLIENT_ID + 1)


# -- the rules (pure) ---------------------------------------------------------------------------------
def test_text_with_nul_or_a_lone_surrogate_is_refused_with_a_plain_detail() -> None:
    for value, words in (("a\x00b", "contains a NUL character"), ("a\ud800b", "is not valid Unicode")):
        with pytest.raises(InvalidMessage) as refused:
            check_text(value, "message body")
        assert refused.value.detail.startswith("message body ") and words in refused.value.detail
    assert check_text("hola ñandú 🎉\n", "message body") == "hola ñandú 🎉\n"


def test_bodies_client_ids_and_names_are_checked_for_what_a_database_can_store() -> None:
    for body in ("hola\x00", "\x00", "\udfff fin"):
        with pytest.raises(InvalidMessage):
            check_body(body)
    assert check_client_id(None) is None
    assert check_client_id(LONG_ID) == LONG_ID
    for client_id in ("", TOO_LONG_ID, "c\x00", "c\ud800", 7):
        with pytest.raises(InvalidMessage):
            check_client_id(client_id)
    with pytest.raises(InvalidMessage):
        check_ref("ma\x00ria", "username")
    assert check_ref("maria", "username") == "maria" and check_ref(7, "username") == 7


def test_the_client_id_column_is_as_wide_as_the_protocol_allows() -> None:
    assert MAX_CLIENT_ID == 128  # docs/protocol.md and docs/api.md say 1 to 128
    assert Mensaje.client_id.max_length == MAX_CLIENT_ID


# -- the persistence actor: one batch -----------------------------------------------------------------------
def in_one_batch(chat: Chat, requests: list[Request]) -> list[Any]:
    """Send ``requests`` to the persistence actor in one hop, so they are committed in one batch (as
    a burst from many users is), and wait for each answer: its Message, or its ChatError. They go
    straight to persistence: nothing at the edge has checked them (a gateway may be another program)."""
    bridge = chat._bridge
    waiters, items = [], []
    for request in requests:
        req_id = next(bridge._ids)
        waiter = _Waiter(False, None)
        with bridge._lock:
            bridge._waiters[req_id] = waiter
        waiters.append(waiter)
        items.append(dataclasses.replace(request, req_id=req_id, reply_to=bridge.address))
    bridge._send(chat.roles.persistence, Batch(tuple(items)))
    answers = []
    for waiter in waiters:
        assert waiter.lock.acquire(timeout=30), "the persistence actor did not answer"
        answers.append(waiter.error if waiter.error is not None else waiter.value)
    return answers


def _direct(sender: Session, recipient: Session, body: str, client_id: str | None) -> StoreDirect:
    return StoreDirect(
        sender=UserInfo(sender.user_id, sender.username),
        recipient=UserInfo(recipient.user_id, recipient.username),
        body=body,
        client_id=client_id,
        status=ENVIADO,
    )


def _room_id(db_url: str) -> int:
    return int(_query(db_url, "SELECT id FROM rooms WHERE name = 'general'")[0][0])


def _stored(db_url: str) -> list[tuple[int, str | None, str]]:
    """(sender id, client_id, body) of every stored message, read with the driver itself."""
    return _query(db_url, "SELECT sender_id, client_id, body FROM mensajes ORDER BY id")


def _query(db_url: str, sql: str) -> list[Any]:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as lite:
            rows = lite.execute(sql).fetchall()
        lite.close()
        return rows
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def test_bad_rows_sent_straight_to_persistence_fail_alone_in_their_batch(chat: Chat, db_url: str) -> None:
    juan, maria, pedro = (chat.crear(n, PASSWORD) for n in ("juan", "maria", "pedro"))
    juan.create_room("general")
    room = RoomInfo(_room_id(db_url), "general")
    sender = UserInfo(juan.user_id, juan.username)
    batch: list[Request] = [
        _direct(juan, maria, "uno", "j-1"),
        _direct(pedro, maria, "con \x00 nul", "p-nul"),  # PostgreSQL refuses NUL
        _direct(maria, juan, "dos", LONG_ID),  # wider than the old column
        _direct(pedro, juan, "sin \ud800 par", "p-sur"),  # no driver encodes it
        _direct(pedro, maria, "ancho", TOO_LONG_ID),
        _direct(juan, maria, "uno", "j-1"),  # a retry inside the batch
        _direct(pedro, juan, "tres", None),
        StoreRoom(room=room, sender=sender, body="a la sala", client_id="r-1", status=ENVIADO),
        StoreRoom(room=room, sender=sender, body="sala \x00", client_id="r-nul", status=ENVIADO),
    ]
    answers = in_one_batch(chat, batch)
    bad = ((1, "NUL character"), (3, "unpaired surrogate"), (4, "client_id must be 1 to 128"), (8, "NUL"))
    for i, detail in bad:
        assert isinstance(answers[i], InvalidMessage) and detail in answers[i].detail, answers[i]
    good = [answers[i] for i in (0, 2, 5, 6, 7)]
    assert all(isinstance(m, Message) for m in good), answers
    assert good[0].id == good[2].id and good[4].room == "general"
    stored = sorted(((c, b) for _, c, b in _stored(db_url)), key=str)
    assert stored == sorted([("j-1", "uno"), (LONG_ID, "dos"), (None, "tres"), ("r-1", "a la sala")], key=str)


def _refuse_in_the_database(db_url: str) -> None:
    """Make the database itself refuse rows no input rule knows about: a body starting 'refuse'."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=10) as lite:
            lite.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON mensajes WHEN NEW.body LIKE 'refuse%'"
                " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        lite.close()
        return
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        # 22001 (value too long) is a DataError, 23514 (check violation) an IntegrityError.
        cur.execute(
            """CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
                 IF NEW.body LIKE 'refuse data%' THEN RAISE EXCEPTION 'too long' USING ERRCODE = '22001'; END IF;
                 IF NEW.body LIKE 'refuse%' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; END IF;
                 RETURN NEW; END $$ LANGUAGE plpgsql;
               CREATE TRIGGER refuse BEFORE INSERT ON mensajes FOR EACH ROW EXECUTE FUNCTION refuse();"""
        )
    conn.close()


def test_a_row_the_database_still_refuses_fails_alone_in_its_batch(chat: Chat, db_url: str) -> None:
    juan, maria, pedro = (chat.crear(n, PASSWORD) for n in ("juan", "maria", "pedro"))
    before = juan.send_message("maria", "antes", client_id="j-0")
    _refuse_in_the_database(db_url)
    batch = [
        _direct(juan, maria, "uno", "j-1"),
        _direct(pedro, maria, "refuse data", "p-1"),
        _direct(juan, maria, "antes", "j-0"),  # a retry of a message stored before
        _direct(maria, juan, "dos", "m-1"),
        _direct(pedro, juan, "refuse check", None),
        _direct(juan, maria, "uno", "j-1"),
        _direct(maria, pedro, "tres", None),
    ]
    answers = in_one_batch(chat, batch)
    for i in (1, 4):
        assert isinstance(answers[i], InvalidMessage), answers[i]
        assert answers[i].detail == "the database cannot store this value"
    good = [answers[i] for i in (0, 2, 3, 5, 6)]
    assert all(isinstance(m, Message) for m in good), answers
    assert good[1].id == before.id and good[0].id == good[3].id
    assert [b for _, _, b in _stored(db_url)] == ["antes", "uno", "dos", "tres"]
    assert maria.send_message("juan", "después", client_id="m-2").body == "después"  # all still fine


# -- mixed into other users' traffic --------------------------------------------------------------------------
USERS = 10
SENDS = 12  # per user
ROUNDS = 3  # of the bad client's calls


def _their_client_id(i: int, n: int) -> str:
    return f"{i}-{n}-" + "x" * (60 + n)  # 63 to 76 characters: over the old column's 64


def _alongside_others(chatter: Callable[[int], None], misbehave: Callable[[], list[str]]) -> list[str]:
    """``chatter(i)`` for each of the USERS in a thread of its own while ``misbehave()`` runs here,
    all let go together; returns what ``misbehave`` found wrong."""
    start = threading.Barrier(USERS + 1)

    def run(i: int) -> None:
        start.wait(10)
        chatter(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(USERS)]
    for t in threads:
        t.start()
    start.wait(10)
    wrong = misbehave()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a sender did not finish"
    return wrong


def _assert_each_stored_once(db_url: str, theirs: list[tuple[int, str]], bad_id: int) -> None:
    rows = _stored(db_url)
    assert sorted((s, c) for s, c, _ in rows if s != bad_id) == sorted(theirs), (
        "each send stored exactly once"
    )
    assert [b for s, _, b in rows if s == bad_id] == [f"largo {r}" for r in range(ROUNDS)]


def _full_length_id(round_: int) -> str:
    return f"{round_}" + LONG_ID[1:]


def test_bad_api_calls_mixed_into_others_traffic_fail_alone(chat: Chat, db_url: str) -> None:
    """Through the REPL API: ten users send to each other while one user's calls carry NUL,
    surrogates, over-long and full-length client_ids. Theirs all succeed and are stored once."""
    users = [chat.crear(f"user{i}", PASSWORD) for i in range(USERS)]
    bad = chat.crear("malo", PASSWORD)
    failures: list[str] = []
    bad_calls: list[tuple[str, Callable[[], Any]]] = [
        ("client_id too long", lambda: bad.send_message("user0", "hola", client_id=TOO_LONG_ID)),
        ("NUL body", lambda: bad.send_message("user1", "con \x00 nul", client_id="b-nul")),
        ("surrogate body", lambda: bad.send_message("user2", "sin \ud800 par", client_id="b-sur")),
        ("NUL recipient", lambda: bad.send_message("us\x00er3", "hola")),
        ("NUL room", lambda: bad.send_room("gen\x00eral", "hola", client_id="b-room")),
        ("NUL room history", lambda: bad.history(room="gen\x00eral")),
        ("NUL with_user history", lambda: bad.history(with_user="us\x00er3")),
    ]

    def chatter(i: int) -> None:
        for n in range(SENDS):
            client_id = _their_client_id(i, n)
            try:
                m = users[i].send_message(f"user{(i + n + 1) % USERS}", f"{i}:{n}", client_id=client_id)
            except ChatError as exc:
                failures.append(f"user{i} #{n}: {exc!r}")
                continue
            if m.body != f"{i}:{n}":
                failures.append(f"user{i} #{n}: {m!r}")

    def misbehave() -> list[str]:
        wrong = []
        for round_ in range(ROUNDS):
            for what, call in bad_calls:
                try:
                    call()
                except InvalidMessage:
                    continue
                except ChatError as exc:
                    wrong.append(f"{what}: {exc!r}")
                    continue
                wrong.append(f"{what}: accepted")
            try:
                bad.send_message("user4", f"largo {round_}", client_id=_full_length_id(round_))
            except ChatError as exc:
                wrong.append(f"full-length client_id: {exc!r}")
        return wrong

    assert _alongside_others(chatter, misbehave) == []
    assert failures == [], failures
    theirs = [(users[i].user_id, _their_client_id(i, n)) for i in range(USERS) for n in range(SENDS)]
    _assert_each_stored_once(db_url, theirs, bad.user_id)


@pytest.fixture
def ws_server(db_url: str, system: str) -> Iterator[ServerThread]:
    chat = Chat(
        database_url=db_url, system=system, password_profile="cheapest", echo=False, announce_login=False
    )
    server = ServerThread(chat).start()
    yield server
    server.stop()
    chat.shutdown()


@pytest.fixture
def ws_clients() -> Iterator[Callable[[str], Client]]:
    opened: list[Client] = []

    def open_client(url: str) -> Client:
        opened.append(Client(url))
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def test_bad_frames_mixed_into_others_traffic_fail_alone(
    ws_server: ServerThread, ws_clients: Callable[[str], Client], db_url: str
) -> None:
    """Through the WebSocket gateway: the same story with frames (JSON escapes carry the NUL and
    the lone surrogate), each bad frame answered with an ``invalid`` error naming it."""
    people = [ws_clients(ws_server.url) for _ in range(USERS)]
    for i, person in enumerate(people):
        person.register(f"user{i}")
    bad = ws_clients(ws_server.url)
    bad.register("malo")
    bad.send("create_room", room="general")
    bad.expect("joined", room="general")
    failures: list[str] = []
    bad_frames: list[dict[str, Any]] = [
        {"type": "send", "to": "user0", "body": "hola", "client_id": TOO_LONG_ID},
        {"type": "send", "to": "user1", "body": "con \x00 nul", "client_id": "b-nul"},
        {"type": "send", "to": "user2", "body": "sin \ud800 par", "client_id": "b-sur"},
        {"type": "send", "to": "us\x00er3", "body": "hola", "client_id": "b-to"},
        {"type": "send_room", "room": "general", "body": "\x00", "client_id": "b-room-body"},
        {"type": "send_room", "room": "gen\x00eral", "body": "hola", "client_id": "b-room"},
        {"type": "create_room", "room": "otra\x00sala"},
        {"type": "history", "with": "us\x00er3"},
    ]

    def chatter(i: int) -> None:
        person = people[i]
        for n in range(SENDS):
            client_id = _their_client_id(i, n)
            person.send("send", to=f"user{(i + n + 1) % USERS}", body=f"{i}:{n}", client_id=client_id)
            answer = person.expect("sent", timeout=60, client_id=client_id)
            if answer["message"]["body"] != f"{i}:{n}":
                failures.append(f"user{i} #{n}: {answer}")
        failures.extend(f"user{i}: {f}" for f in person.frames if f["type"] == "error")

    def misbehave() -> list[str]:
        wrong = []
        for round_ in range(ROUNDS):
            for frame in bad_frames:
                bad.send(**frame)
                error = bad.expect("error", timeout=60, request=frame["type"])
                if error["code"] != "invalid" or "internal" in error["detail"]:
                    wrong.append(f"{frame}: {error}")
            bad.send("send", to="user4", body=f"largo {round_}", client_id=_full_length_id(round_))
            bad.expect("sent", timeout=60, client_id=_full_length_id(round_))
        return wrong

    assert _alongside_others(chatter, misbehave) == []
    assert failures == [], failures
    theirs = [(people[i].user_id, _their_client_id(i, n)) for i in range(USERS) for n in range(SENDS)]
    _assert_each_stored_once(db_url, theirs, bad.user_id)
