"""The peewee Store on SQLite and on a real PostgreSQL (the ``db_url`` fixture runs each test on both)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg2
import pytest
from helpers import poll_until
from pg_proxy import PgProxy

from chatactors import Chat
from chatactors.core.model import ENTREGADO, ENVIADO, LEIDO, SearchResults, Status, UserInfo
from chatactors.core.rules import MAX_CLIENT_ID
from chatactors.errors import (
    InvalidMessage,
    MessageNotFound,
    NotAMember,
    RoomNotFound,
    StorageUnavailable,
    UsernameTaken,
    UserNotFound,
)
from chatactors.storage import (
    REDUNDANT_INDEXES,
    Mensaje,
    NewMessage,
    Room,
    Store,
    close_database,
    utcnow,
)

NO_SEQUENCE = "SQLite gives a new row max(rowid) + 1: it has no sequence to fall behind"
LONG_ID = "k" * MAX_CLIENT_ID  # legal by the protocol; the old column held 64


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    store.create_schema()
    yield store
    close_database(db_url)


@pytest.fixture
def users(store: Store) -> tuple[UserInfo, UserInfo, UserInfo]:
    return (
        store.create_user("juan", "hash-juan"),
        store.create_user("maria", "hash-maria"),
        store.create_user("pedro", "hash-pedro"),
    )


def send(store: Store, sender: UserInfo, recipient: UserInfo, body: str, client_id: str | None = None):
    with store.transaction():
        return store.insert_direct(sender, recipient, body, client_id, ENVIADO)


# -- schema -----------------------------------------------------------------------------------------
def test_the_messages_table_is_named_mensajes(store: Store) -> None:
    tables = set(store.db.get_tables())
    assert "mensajes" in tables
    assert {"users", "session_tokens"} <= tables
    cursor = store.db.execute_sql("SELECT COUNT(*) FROM mensajes")
    assert cursor.fetchone()[0] == 0


def test_indexes_serve_inbox_unread_and_retries(store: Store) -> None:
    indexes = store.db.get_indexes("mensajes")
    columns = {tuple(i.columns): i.unique for i in indexes}
    assert ("recipient_id", "id") in columns, columns  # a user's inbox and history
    assert ("recipient_id", "status", "id") in columns, columns  # unread lookups
    assert columns.get(("sender_id", "client_id")) is True, columns  # a retried send is stored once
    user_indexes = store.db.get_indexes("users")
    assert any(i.unique and i.columns == ["username"] for i in user_indexes)


def test_create_schema_twice_is_harmless(store: Store) -> None:
    store.create_schema()
    assert "mensajes" in store.db.get_tables()


# -- users ------------------------------------------------------------------------------------------
def test_users_by_name_and_by_id(store: Store) -> None:
    juan = store.create_user("juan", "argon-hash")
    assert juan.username == "juan" and juan.id > 0
    assert store.credentials("juan") == (juan, "argon-hash")
    assert store.credentials(juan.id) == (juan, "argon-hash")
    assert store.user("juan") == juan and store.user(juan.id) == juan
    assert store.credentials("nadie") is None
    assert store.user(juan.id + 1000) is None
    store.set_password_hash(juan.id, "new-hash")
    assert store.credentials("juan") == (juan, "new-hash")


def test_usernames_are_unique_case_insensitively(store: Store) -> None:
    store.create_user("juan", "h")
    with pytest.raises(UsernameTaken):
        store.create_user("juan", "h2")
    with pytest.raises(UsernameTaken):
        store.create_user("JUAN", "h2")
    with pytest.raises(UsernameTaken):
        store.create_user("Juan", "h2")
    assert store.create_user("juana", "h").username == "juana"


# -- tokens -----------------------------------------------------------------------------------------
def test_tokens_resolve_until_expiry_or_revocation(store: Store, users) -> None:
    juan, maria, _ = users
    store.add_token(juan.id, "a" * 64, utcnow() + timedelta(hours=1))
    store.add_token(maria.id, "b" * 64, utcnow() - timedelta(seconds=1))  # already expired
    assert store.token_user("a" * 64) == juan
    assert store.token_user("b" * 64) is None
    assert store.token_user("c" * 64) is None
    store.revoke_token("a" * 64)
    assert store.token_user("a" * 64) is None


# -- direct messages --------------------------------------------------------------------------------
def test_insert_direct_returns_the_stored_message(store: Store, users) -> None:
    juan, maria, _ = users
    m = send(store, juan, maria, "hola")
    assert (m.sender_id, m.sender, m.recipient_id, m.recipient) == (juan.id, "juan", maria.id, "maria")
    assert m.body == "hola" and m.status == ENVIADO and m.room is None
    assert m.sent_at.tzinfo is not None
    assert store.count_messages() == 1


def test_insert_direct_is_idempotent_by_client_id(store: Store, users) -> None:
    juan, maria, pedro = users
    first = send(store, juan, maria, "hola", client_id="c-1")
    again = send(store, juan, maria, "hola", client_id="c-1")
    assert again.id == first.id and again.body == "hola"
    assert again.sender == "juan" and again.recipient == "maria"
    # Same client id from another sender is another message; no client id never deduplicates.
    other = send(store, pedro, maria, "hola", client_id="c-1")
    assert other.id != first.id
    plain1 = send(store, juan, maria, "sin id")
    plain2 = send(store, juan, maria, "sin id")
    assert plain1.id != plain2.id
    assert store.count_messages() == 4


def test_insert_direct_twice_in_one_batch_is_stored_once(store: Store, users) -> None:
    juan, maria, _ = users
    with store.transaction():
        a = store.insert_direct(juan, maria, "x", "batch-1", ENVIADO)
        b = store.insert_direct(juan, maria, "x", "batch-1", ENVIADO)
    assert a.id == b.id and store.count_messages() == 1


def test_a_retried_batch_larger_than_one_lookup_gives_back_every_original(store: Store, users) -> None:
    """The retry check looks keys up in chunks (an OR chain has a depth limit); none is missed."""
    juan, maria, pedro = users
    store.KEYS_PER_LOOKUP = 2  # type: ignore[misc]
    batch = [_new(juan if i % 2 else pedro, maria, f"m{i}", f"k-{i}") for i in range(5)]
    with store.transaction():
        first = store.insert_messages_fresh(batch)
    assert all(fresh for _, fresh in first)
    with store.transaction():
        again = store.insert_messages_fresh([*batch, _new(juan, maria, "new", "k-new"), batch[3]])
    assert [m.id for m, _ in again[:5]] == [m.id for m, _ in first]
    assert [fresh for _, fresh in again] == [False] * 5 + [True, False]
    assert again[6][0].id == first[3][0].id and again[0][0].body == "m0" and again[1][0].sender == "juan"
    assert store.count_messages() == 6


def test_inbox_last_ten_newest_last_and_paging(store: Store, users) -> None:
    juan, maria, pedro = users
    sent = [send(store, juan if i % 2 else pedro, maria, f"m{i}") for i in range(13)]
    send(store, maria, juan, "not in maria's inbox")
    inbox = store.inbox(maria.id)
    assert [m.body for m in inbox] == [f"m{i}" for i in range(3, 13)]
    assert [m.id for m in inbox] == sorted(m.id for m in inbox)
    older = store.inbox(maria.id, limit=10, before=inbox[0].id)
    assert [m.body for m in older] == ["m0", "m1", "m2"]
    assert [m.body for m in store.inbox(maria.id, limit=2)] == ["m11", "m12"]
    assert store.inbox(maria.id, before=sent[0].id) == []
    assert store.inbox(pedro.id) == []


def test_unread_mark_read_and_mark_delivered(store: Store, users) -> None:
    juan, maria, pedro = users
    a = send(store, juan, maria, "a")
    b = send(store, pedro, maria, "b")
    c = send(store, juan, maria, "c")
    assert [m.id for m in store.unread(maria.id)] == [a.id, b.id, c.id]  # oldest first

    assert store.mark_delivered(maria.id) == [a.id, b.id, c.id]
    assert {store.status(maria.id, i) for i in (a.id, b.id, c.id)} == {ENTREGADO}
    assert store.mark_delivered(maria.id) == []  # nothing left in 'enviado'

    with store.transaction():
        # Only messages that sender sent to that reader change.
        assert store.mark_read(maria.id, juan.id, [a.id, b.id, c.id]) == 2
        assert store.mark_read(pedro.id, juan.id, [a.id]) == 0
    assert store.status(juan.id, a.id) == LEIDO
    assert store.status(pedro.id, b.id) == ENTREGADO
    assert [m.id for m in store.unread(maria.id)] == [b.id]

    send(store, juan, maria, "d")
    assert len(store.mark_delivered(maria.id)) == 1
    assert store.status(maria.id, a.id) == LEIDO  # 'leido' is never moved back


def test_every_status_is_stored_as_its_plain_value_and_read_back_as_a_status(store: Store, users) -> None:
    """The multi-row insert hands Status members to the driver as they are, and updates go through
    peewee: both must store the roadmap's text, and every read must give back a Status."""
    juan, maria, _ = users
    with store.transaction():
        stored = {status: store.insert_direct(juan, maria, status.value, None, status) for status in Status}
    assert {m.status for m in stored.values()} == set(Status)
    raw = store.db.execute_sql("SELECT body, status FROM mensajes ORDER BY id").fetchall()
    assert [(body, status, type(status)) for body, status in raw] == [
        ("enviado", "enviado", str),
        ("entregado", "entregado", str),
        ("leido", "leido", str),
    ]
    for status, m in stored.items():
        assert type(store.status(juan.id, m.id)) is Status and store.status(juan.id, m.id) == status
    assert [(type(m.status), m.status) for m in store.inbox(maria.id)] == [(Status, s) for s in Status]

    assert store.mark_delivered(maria.id) == [stored[ENVIADO].id]  # an UPDATE with a Status value
    assert store.db.execute_sql(
        "SELECT status FROM mensajes WHERE id = " + store.db.param, [stored[ENVIADO].id]
    ).fetchone() == ("entregado",)


def test_status_is_visible_to_sender_and_recipient_only(store: Store, users) -> None:
    juan, maria, pedro = users
    m = send(store, juan, maria, "secreto")
    assert store.status(juan.id, m.id) == ENVIADO
    assert store.status(maria.id, m.id) == ENVIADO
    with pytest.raises(MessageNotFound):
        store.status(pedro.id, m.id)
    with pytest.raises(MessageNotFound):
        store.status(juan.id, m.id + 1000)


def test_history_with_a_user(store: Store, users) -> None:
    juan, maria, pedro = users
    bodies = []
    for i in range(6):
        if i % 2:
            send(store, maria, juan, f"m{i}")
        else:
            send(store, juan, maria, f"j{i}")
        bodies.append(f"m{i}" if i % 2 else f"j{i}")
    send(store, pedro, juan, "de pedro")
    send(store, maria, pedro, "a pedro")

    with_maria = store.history(juan.id, "maria", limit=10, before=None)
    assert [m.body for m in with_maria] == bodies  # both directions, newest last
    assert [m.body for m in store.history(juan.id, maria.id, limit=10, before=None)] == bodies
    everything = store.history(juan.id, None, limit=10, before=None)
    assert [m.body for m in everything] == [*bodies, "de pedro"]
    page = store.history(juan.id, "maria", limit=2, before=None)
    assert [m.body for m in page] == bodies[-2:]
    earlier = store.history(juan.id, "maria", limit=2, before=page[0].id)
    assert [m.body for m in earlier] == bodies[-4:-2]
    with pytest.raises(UserNotFound):
        store.history(juan.id, "nadie", limit=10, before=None)


def test_room_messages_stay_out_of_direct_history_and_inbox(store: Store, users) -> None:
    juan, maria, _ = users
    send(store, juan, maria, "directo")

    def add_room_message() -> None:
        room = Room.create(name="general", created_by=juan.id, created_at=utcnow())
        Mensaje.create(sender=juan.id, room=room, body="a la sala", created_at=utcnow())

    store.run(add_room_message)
    assert [m.body for m in store.history(juan.id, None, 10, None)] == ["directo"]
    assert [m.body for m in store.inbox(maria.id)] == ["directo"]
    assert store.count_messages() == 2


def test_an_unreachable_database_raises_storage_unavailable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    try:
        with pytest.raises(StorageUnavailable):
            Store(url).create_schema()
    finally:
        close_database(url)


def test_hot_queries_do_not_scan_the_whole_table(store: Store, db_url: str) -> None:
    """Every query on mensajes a request makes must use an index: sending (the retry check), the
    inbox, unread messages, a status read, the delivered ticks of a login, both histories, a read
    receipt (direct and room), the room list and who read a message. mensajes only grows."""
    users = [store.create_user(f"user{i}", "h") for i in range(12)]
    sala = store.create_room("sala", users[0].id)
    store.join_room("sala", users[1].id)
    rows = [
        {
            "sender": users[i % 12].id,
            "recipient": None if i % 5 == 0 else users[(i * 7 + 1) % 12].id,
            "room": sala.id if i % 5 == 0 else None,
            "body": "x",
            "created_at": utcnow(),
            "status": ENVIADO,
            "client_id": f"seed-{i}",
        }
        for i in range(6000)
    ]

    def seed() -> None:
        for start in range(0, len(rows), 500):
            Mensaje.insert_many(rows[start : start + 500]).execute()

    store.run(seed)
    store.db.execute_sql("ANALYZE" if db_url.startswith("sqlite") else "ANALYZE mensajes")

    recorded: list[tuple[str, Any]] = []
    original = store.db.execute_sql

    def recording(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE")) and '"mensajes"' in sql:
            recorded.append((sql, params))
        return original(sql, params, *args, **kwargs)

    juan, maria = users[0], users[1]
    store.run(lambda: store.mark_delivered_by_sender(maria.id))  # what waited for her last login
    store.db.execute_sql = recording  # type: ignore[method-assign]
    try:
        with store.transaction():
            m = store.insert_direct(juan, maria, "hola", "client-42", ENVIADO)
        store.inbox(maria.id)
        store.unread(maria.id)
        store.status(juan.id, m.id)
        store.run(lambda: store.mark_delivered_by_sender(maria.id))
        store.history(maria.id, juan.username, 10, None)
        store.history(maria.id, None, 10, None)
        store.run(lambda: store.mark_read(maria.id, juan.id, [m.id]))
        store.room_history(juan.id, "sala", 10, None)
        store.room_summaries(maria.id)
        newest = store.room_history(maria.id, "sala", 1, None)[-1].id
        store.run(lambda: store.mark_room_read(sala.id, maria.id, newest))
        store.read_by(juan.id, newest)
        store.room_history(maria.id, "sala", 10, None)
    finally:
        store.db.execute_sql = original  # type: ignore[method-assign]
    assert recorded, "no query on mensajes was seen"
    assert sum(sql.lstrip().upper().startswith("UPDATE") for sql, _ in recorded) >= 3  # receipts, ticks

    scans = []
    for sql, params in recorded:
        if db_url.startswith("sqlite"):
            plan = [row[-1] for row in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
            full = [line for line in plan if line.startswith("SCAN") and "USING" not in line]
        else:
            plan = [row[0] for row in store.db.execute_sql("EXPLAIN " + sql, params).fetchall()]
            full = [line for line in plan if "Seq Scan on mensajes" in line]
        if full:
            scans.append(f"{sql}\n  -> {plan}")
    assert scans == [], "full scans of mensajes:\n" + "\n".join(scans)


# -- values the database refuses, and the client_id migration -------------------------------------
def _new(sender: UserInfo, recipient: UserInfo, body: str, client_id: str | None = None) -> NewMessage:
    return NewMessage(sender, recipient, None, body, client_id, ENVIADO)


def test_a_client_id_of_the_full_protocol_length_is_stored_once(store: Store) -> None:
    juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
    with store.transaction():
        first = store.insert_direct(juan, maria, "hola", LONG_ID, ENVIADO)
    with store.transaction():
        again = store.insert_direct(juan, maria, "hola", LONG_ID, ENVIADO)
    assert again.id == first.id and store.count_messages() == 1


def test_a_value_the_database_refuses_is_invalid_not_unavailable(store: Store, db_url: str) -> None:
    juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
    refused = [_new(juan, maria, "sin \ud800 par")]  # no driver can encode it
    if db_url.startswith("postgresql"):
        refused += [_new(juan, maria, "con \x00 nul"), _new(juan, maria, "ancho", "w" * 300)]
    for row in refused:
        with pytest.raises(InvalidMessage) as error:
            store.run(lambda row=row: store.insert_messages([row]))
        assert error.value.detail == "the database cannot store this value"
    with store.transaction():
        assert store.insert_direct(juan, maria, "sigo", "c-1", ENVIADO).body == "sigo"
    assert store.count_messages() == 1


def test_an_isolated_insert_stores_every_good_row_once_and_fails_the_bad_one(store: Store) -> None:
    juan, maria, pedro = (store.create_user(n, "h") for n in ("juan", "maria", "pedro"))
    with store.transaction():
        earlier = store.insert_direct(pedro, maria, "antes", "p-1", ENVIADO)
    batch = [
        _new(juan, maria, "uno", "j-1"),
        _new(pedro, maria, "antes otra vez", "p-1"),  # a retry of a message stored earlier
        _new(juan, maria, "mala \ud800"),
        _new(maria, juan, "dos", LONG_ID),
        _new(juan, maria, "uno", "j-1"),  # repeated in the batch, in the other half
        _new(pedro, juan, "tres"),
    ]
    outcomes = store.run(lambda: store.insert_messages_isolated(batch))
    assert isinstance(outcomes[2], InvalidMessage)
    good = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(isinstance(o, tuple) for o in good), outcomes
    (uno, fresh0), (retry, fresh1), _, (dos, fresh3), (uno_again, fresh4), (tres, fresh5) = outcomes
    assert retry.id == earlier.id and uno_again.id == uno.id
    assert [fresh0, fresh1, fresh3, fresh4, fresh5] == [True, False, True, False, True]
    assert [uno.body, dos.body, tres.body] == ["uno", "dos", "tres"]
    assert store.count_messages() == 4  # antes, uno, dos, tres


def test_start_up_drops_the_single_column_indexes_older_versions_made(db_url: str) -> None:
    """(recipient_id) and (room_id) repeat the first column of (recipient_id, id) and (room_id, id):
    a database an older version made loses them, and keeps the indexes that serve the queries."""
    old = Store(db_url)
    try:
        old.create_schema()
        for index, column in zip(REDUNDANT_INDEXES, ("recipient_id", "room_id"), strict=True):
            old.db.execute_sql(f'CREATE INDEX "{index}" ON "mensajes" ("{column}")')
        assert {i.name for i in old.db.get_indexes("mensajes")} >= set(REDUNDANT_INDEXES)
    finally:
        close_database(db_url)
    store = Store(db_url)
    try:
        store.create_schema()
        store.create_schema()  # a second start finds nothing to drop
        indexes = {i.name: tuple(i.columns) for i in store.db.get_indexes("mensajes")}
        assert not set(REDUNDANT_INDEXES) & set(indexes)
        assert {("recipient_id", "id"), ("room_id", "id"), ("sender_id", "client_id")} <= set(
            indexes.values()
        )
    finally:
        close_database(db_url)


def test_an_old_postgres_client_id_column_is_widened_at_start_up(pg_url: str) -> None:
    """The schema the old code made (client_id varchar(64)), with rows in it, migrated in place."""
    old = Store(pg_url)
    try:
        old.create_schema()
        old.db.execute_sql("ALTER TABLE mensajes ALTER COLUMN client_id TYPE varchar(64)")
        assert _client_id_width(pg_url) == 64
        juan, maria = old.create_user("juan", "h"), old.create_user("maria", "h")
        with old.transaction():
            kept = old.insert_direct(juan, maria, "de antes", "o" * 64, ENVIADO)
        with pytest.raises(InvalidMessage):  # what the narrow column does to a legal client_id
            old.run(lambda: old.insert_messages([_new(juan, maria, "largo", LONG_ID)]))
    finally:
        close_database(pg_url)

    chat = Chat(database_url=pg_url, system="simpleSystemBase", password_profile="cheapest", echo=False)
    try:  # the new version starting on that database
        assert _client_id_width(pg_url) == MAX_CLIENT_ID
        pedro = chat.crear("pedro", "secreto123")
        long = pedro.send_message("juan", "largo", client_id=LONG_ID)
        assert pedro.send_message("juan", "largo", client_id=LONG_ID).id == long.id
        assert pedro.send_message("maria", "corto", client_id="o" * 64).id != kept.id  # another sender
        store = Store(pg_url)
        assert (
            store.run(lambda: store.insert_messages([_new(juan, maria, "de antes", "o" * 64)]))[0].id
            == kept.id
        )
        columns = {tuple(i.columns): i.unique for i in store.db.get_indexes("mensajes")}
        assert columns.get(("sender_id", "client_id")) is True  # the retry index survived
        store.create_schema()  # a second start changes nothing
        assert _client_id_width(pg_url) == MAX_CLIENT_ID
        assert [m.body for m in store.history(juan.id, None, 10, None)] == ["de antes", "largo"]
        assert store.count_messages() == 3
    finally:
        chat.shutdown()
        close_database(pg_url)


def _client_id_width(pg_url: str) -> int:
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT character_maximum_length FROM information_schema.columns"
            " WHERE table_name = 'mensajes' AND column_name = 'client_id'"
        )
        width = cur.fetchone()[0]
    conn.close()
    return int(width)


# -- finding users and rooms by name prefix ------------------------------------------------------------
def test_search_finds_users_and_rooms_by_prefix_in_any_case(store: Store, users) -> None:
    juan = users[0]
    store.create_user("Juana", "h")
    store.create_user("xjuan", "h")  # holds the prefix, does not start with it
    store.create_room("juegos", juan.id)
    store.create_room("general", juan.id)

    found = store.search("JU", 20)
    assert [u.username for u in found.users] == ["juan", "Juana"]  # by name, whatever the case
    assert [r.name for r in found.rooms] == ["juegos"]
    assert found.users[0] == juan
    assert store.search("zz", 20) == SearchResults((), ())
    assert [u.username for u in store.search("j", 1).users] == ["juan"]  # the limit holds


def test_search_matches_like_wildcards_literally(store: Store) -> None:
    """``_`` and ``%`` are LIKE wildcards: ``a_`` must not find ``abc``, nor ``%`` everything."""
    for name in ("a_b", "axb", "a.b", "a-b", "abc"):
        store.create_user(name, "h")
    assert [u.username for u in store.search("a_", 20).users] == ["a_b"]
    assert [u.username for u in store.search("a.", 20).users] == ["a.b"]
    assert [u.username for u in store.search("a", 20).users] == ["a-b", "a.b", "a_b", "abc", "axb"]
    assert store.search("%", 20).users == ()  # the store escapes it even though the edge refuses it
    assert store.search("\\", 20).users == ()


def test_room_members_are_for_members_only(store: Store, users) -> None:
    juan, maria, pedro = users
    store.create_room("sala", maria.id)
    store.join_room("sala", juan.id)
    assert [u.username for u in store.room_member_list(juan.id, "SALA")] == ["juan", "maria"]
    with pytest.raises(NotAMember):
        store.room_member_list(pedro.id, "sala")
    with pytest.raises(RoomNotFound):
        store.room_member_list(juan.id, "nada")


def _other_writer(db_url: str) -> Any:
    """A second connection to the same database: another node, or another process's actor."""
    if db_url.startswith("sqlite"):
        import sqlite3

        return sqlite3.connect(
            db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
    return psycopg2.connect(db_url)


def _wait_until_blocked_on_a_lock(db_url: str) -> None:
    """PostgreSQL: until a backend of this database waits on a row lock (our INSERT behind theirs)."""
    poll_until(
        lambda: _sessions(db_url, "wait_event_type = 'Lock'"),
        what="our INSERT to wait for the other writer's row lock",
    )


def _sessions(db_url: str, condition: str) -> int:
    """How many other sessions of the test database are in ``condition`` (pg_stat_activity)."""
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                f" AND pid <> pg_backend_pid() AND {condition}"
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_a_client_id_another_writer_is_storing_is_answered_with_its_message(
    store: Store, users, db_url: str
) -> None:
    """Another writer inserts the same (sender, client_id) in a transaction still open when this
    batch's INSERT runs. The INSERT waits for it, skips that row, and reads the other's message
    back: stored once, and not reported as stored now, so it is not pushed twice."""
    import threading

    juan, maria, _ = users
    other = _other_writer(db_url)
    p = "?" if db_url.startswith("sqlite") else "%s"
    cur = other.cursor()
    cur.execute("BEGIN IMMEDIATE" if p == "?" else "BEGIN")
    cur.execute(
        f"INSERT INTO mensajes (sender_id, recipient_id, body, created_at, status, client_id)"
        f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}) RETURNING id",
        (juan.id, maria.id, "from the other node", Mensaje.created_at.db_value(utcnow()), ENVIADO, "k-race"),
    )
    theirs = cur.fetchone()[0]
    done: dict[str, Any] = {}
    inserting = threading.Event()

    def mine() -> None:
        batch = [_new(juan, maria, "mine", "k-race"), _new(juan, maria, "plain")]
        try:
            store.db.connect(reuse_if_open=True)  # this thread's own connection
            if p == "?":  # SQLite tells when a statement starts running; ours waits for the lock in
                # BEGIN IMMEDIATE (one writer at a time), then its INSERT meets a committed row
                store.db.connection().set_trace_callback(
                    lambda sql: inserting.set() if sql.startswith("BEGIN") else None
                )
            done["out"] = store.run(lambda: store.insert_messages_fresh(batch))
        except BaseException as exc:  # reported below
            done["error"] = exc
        finally:
            store.db.close()

    writer = threading.Thread(target=mine)
    writer.start()
    try:
        # Make sure ours is the INSERT that waits, not one that comes after the other's commit.
        if p == "%s":
            _wait_until_blocked_on_a_lock(db_url)
        else:
            assert inserting.wait(timeout=10)
        other.commit() if p == "%s" else cur.execute("COMMIT")
        writer.join(timeout=10)
    finally:
        other.close()
    assert not writer.is_alive() and "error" not in done, done
    (race, race_fresh), (plain, plain_fresh) = done["out"]
    assert (race.id, race.body, race_fresh) == (theirs, "from the other node", False)
    assert plain.body == "plain" and plain_fresh
    assert store.count_messages() == 2


def _group_commit(store: Store, writes: list[tuple[int, UserInfo, UserInfo, str, str | None]]) -> list[Any]:
    """Run ``writes`` (req_id, sender, recipient, body, client_id) as one batch of the persistence
    actor's group commit against ``store``; its effects."""
    from chatactors.actors.persistence import StoreDatabase
    from chatactors.core.commit import GroupCommit, Post

    commit = GroupCommit()
    for req, sender, recipient, body, client_id in writes:
        commit.queue(
            Post(_new(sender, recipient, body, client_id), req, f"caller-{req}", (("sink", (recipient.id,)),))
        )
    return commit.flush(StoreDatabase(store))


def _outcomes(effects: list[Any]) -> dict[int, Any]:
    """req_id -> (message id, body), or the error's class; and the bodies pushed."""
    from chatactors.core.commit import Answer, Refuse

    out: dict[int, Any] = {}
    for e in effects:
        if isinstance(e, Answer):
            out[e.req_id] = (e.value.id, e.value.body)
        elif isinstance(e, Refuse):
            out[e.req_id] = type(e.error)
    return out


def _pushed(effects: list[Any]) -> list[str]:
    from chatactors.core.commit import PushTo

    return [e.event.body for e in effects if isinstance(e, PushTo)]


@pytest.mark.parametrize("cut_after", ["_insert_rows", "_stored"])
def test_a_connection_lost_after_the_insert_ran_loses_and_repeats_nothing(
    store: Store, users, db_url: str, monkeypatch: pytest.MonkeyPatch, cut_after: str
) -> None:
    """The connection goes after the batch's INSERT ran on the server (and, for ``_stored``, while
    the skipped rows of a retry are read back), before COMMIT: the server rolls the transaction
    back, the store runs the batch again on a new connection, and every message is stored once,
    the new ones answered and pushed, the retry answered with its original and not pushed."""
    import peewee as pw

    juan, maria, _ = users
    first = _outcomes(_group_commit(store, [(1, juan, maria, "first", "k0")]))[1]
    original = getattr(Store, cut_after)
    cut: list[bool] = []

    def then_connection_lost(self: Store, *args: Any) -> Any:
        result = original(self, *args)
        if not cut:
            cut.append(True)
            if db_url.startswith("postgresql"):  # the server ends this session for real
                pid = self.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
                killer = psycopg2.connect(db_url)
                killer.autocommit = True
                killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
                killer.close()
                self.db.execute_sql("SELECT 1")  # the driver learns it here
            raise pw.OperationalError("disk I/O error")
        return result

    monkeypatch.setattr(Store, cut_after, then_connection_lost)
    effects = _group_commit(
        store,
        [(2, juan, maria, "first", "k0"), (3, juan, maria, "plain", None), (4, juan, maria, "second", "k2")],
    )
    outcomes = _outcomes(effects)
    assert cut
    assert outcomes[2] == first and outcomes[3][1] == "plain" and outcomes[4][1] == "second"
    assert sorted(_pushed(effects)) == ["plain", "second"]
    assert sorted(m.body for m in Mensaje.select()) == ["first", "plain", "second"]  # nothing twice


def test_an_id_the_sequence_would_give_again_is_refused_not_skipped(store: Store, users, db_url: str) -> None:
    """Only a (sender, client_id) conflict is skipped: a row whose new id is taken (a sequence left
    behind by a restore with explicit ids) is refused, so the batch is run again isolated and every
    message is stored once and pushed, none reported as stored before."""
    if db_url.startswith("sqlite"):
        pytest.skip(NO_SEQUENCE)
    juan, maria, pedro = users
    store.db.execute_sql(
        "INSERT INTO mensajes (id, sender_id, recipient_id, body, created_at, status)"
        " VALUES (2, %s, %s, 'imported', now(), 'enviado')",
        (pedro.id, maria.id),
    )
    for client_ids in (("k1", "k2", "k3"), (None, None, None)):
        writes = [(i, juan, maria, f"m{i}-{client_ids[0]}", cid) for i, cid in enumerate(client_ids, 1)]
        effects = _group_commit(store, writes)
        outcomes = _outcomes(effects)
        assert [outcomes[i][1] for i in (1, 2, 3)] == [body for _, _, _, body, _ in writes], outcomes
        assert sorted(_pushed(effects)) == sorted(body for _, _, _, body, _ in writes)
    assert store.count_messages() == 7  # imported, then three and three


def test_start_up_moves_a_sequence_left_behind_by_a_restore_past_the_rows(
    store: Store, users, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows restored with their ids and no setval: 20 ids the sequence would give again. Before a
    restart every new message collides with one; after it, start-up has moved the sequence past
    them, says so, and messages are stored as before. A second start-up changes nothing."""
    if db_url.startswith("sqlite"):
        pytest.skip(NO_SEQUENCE)
    juan, maria, pedro = users
    for ident in range(1, 21):
        store.db.execute_sql(
            "INSERT INTO mensajes (id, sender_id, recipient_id, body, created_at, status)"
            " VALUES (%s, %s, %s, 'imported', now(), 'enviado')",
            (ident, pedro.id, maria.id),
        )
    with caplog.at_level("WARNING", logger="chatactors.storage"):
        store.create_schema()  # what a restarted node does first
        store.create_schema()
    moved = [r.getMessage() for r in caplog.records if "moved past it" in r.getMessage()]
    assert moved == ["public.mensajes_id_seq was behind mensajes's highest id (20); moved past it"]
    effects = _group_commit(store, [(i, juan, maria, f"m{i}", f"k{i}") for i in (1, 2, 3)])
    outcomes = _outcomes(effects)
    assert [outcomes[i] for i in (1, 2, 3)] == [(21, "m1"), (22, "m2"), (23, "m3")]
    assert sorted(_pushed(effects)) == ["m1", "m2", "m3"]


@pytest.mark.parametrize("fault", ["reply", "request"])
def test_a_connection_lost_at_commit_loses_and_repeats_nothing(
    pg_url: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's COMMIT is lost on a real network path (a relay in front of the server): its reply
    after the server committed (``reply``), or the COMMIT itself with the server's session left
    open in its transaction, holding its locks (``request``: a cut no reset announces). The store
    learns the outcome before anything runs again: committed, the batch is answered and pushed as
    it was; not, the old session is ended and the batch run again. Either way every message is
    stored once, the new ones pushed once, the retry answered with its original."""
    with PgProxy(pg_url) as proxy:
        store = Store(proxy.url)
        try:
            store.create_schema()
            juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
            first = _outcomes(_group_commit(store, [(1, juan, maria, "first", "k0")]))[1]
            proxy.arm(fault)
            done: dict[str, Any] = {}

            def batch() -> None:  # on a thread: run again without the fix, it waits on the held lock
                try:
                    done["effects"] = _group_commit(
                        store,
                        [(2, juan, maria, "first", "k0"), (3, juan, maria, "plain", None)]
                        + [(4, juan, maria, "second", "k2")],
                    )
                finally:
                    store.close()

            with caplog.at_level("WARNING", logger="chatactors.storage"):
                writer = threading.Thread(target=batch)
                writer.start()
                writer.join(timeout=30)
            assert proxy.fired.is_set()
            assert not writer.is_alive(), "the batch waited on the lost session's locks"
            outcomes = _outcomes(done["effects"])
            assert outcomes[2] == first and outcomes[3][1] == "plain" and outcomes[4][1] == "second"
            assert sorted(_pushed(done["effects"])) == ["plain", "second"]
            assert sorted(m.body for m in Mensaje.select()) == ["first", "plain", "second"]
            assert ("had committed" in caplog.text) == (fault == "reply")
            assert _sessions(pg_url, "state LIKE 'idle in transaction%'") == 0
        finally:
            close_database(proxy.url)


def test_a_commit_whose_outcome_cannot_be_learned_is_reported_unknown_not_run_again(pg_url: str) -> None:
    """The COMMIT's reply is lost and the database refuses the next connection too: whether the
    transaction committed is unknown, so ``run`` says so and does not run ``work`` a second time
    (which could store a message twice). Here it had committed: stored once."""
    with PgProxy(pg_url) as proxy:
        store = Store(proxy.url)
        try:
            store.create_schema()
            juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
            ran: list[int] = []

            def work() -> None:
                ran.append(1)
                store.insert_messages([_new(juan, maria, "once")])

            proxy.arm("reply", then_refuse=True)
            with pytest.raises(StorageUnavailable, match="outcome is unknown"):
                store.run(work)
            assert ran == [1]
            assert [m.body for m in Mensaje.select()] == ["once"]
        finally:
            close_database(proxy.url)


def _in_thread(store: Store, fn: Any, timeout: float = 20) -> dict[str, Any]:
    """``fn()`` on a thread of its own (its own connection), joined with a timeout: a call that waits
    on a lock for ever fails the test instead of hanging it. Its result or exception, and whether it
    finished."""
    done: dict[str, Any] = {}

    def call() -> None:
        try:
            done["value"] = fn()
        except Exception as exc:
            done["error"] = exc
        finally:
            store.close()

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=timeout)
    done["finished"] = not thread.is_alive()
    return done


def test_a_session_lost_holding_locks_is_ended_before_anything_waits_on_it(pg_url: str) -> None:
    """The INSERT's reply is lost and the server's session stays, in its transaction, holding the
    row of client_id k1; the database is then unreachable for a moment, so it cannot be ended. The
    batch fails without running again (it would wait on that row for ever), and the client's retry
    ends the session first: stored once, pushed once."""
    with PgProxy(pg_url) as proxy:
        store = Store(proxy.url)
        try:
            store.create_schema()
            juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
            proxy.arm("reply", then_refuse=True, match=b"INSERT INTO mensajes")
            lost = _in_thread(store, lambda: _group_commit(store, [(1, juan, maria, "hola", "k1")]))
            assert proxy.fired.is_set() and lost["finished"], "the batch waited on its own lost session"
            assert _outcomes(lost["value"]) == {1: StorageUnavailable}
            assert _sessions(pg_url, "state LIKE 'idle in transaction%'") == 1  # still there
            retry = _in_thread(store, lambda: _group_commit(store, [(2, juan, maria, "hola", "k1")]))
            assert retry["finished"], "the retry waited on the lost session's row lock"
            assert _outcomes(retry["value"])[2][1] == "hola" and _pushed(retry["value"]) == ["hola"]
            assert [m.body for m in Mensaje.select()] == ["hola"]
            assert _sessions(pg_url, "state LIKE 'idle in transaction%'") == 0
        finally:
            close_database(proxy.url)


def test_threads_sharing_a_store_each_settle_their_own_transaction(pg_url: str) -> None:
    """Peewee gives each thread its own connection. Thread A has inserted when thread B stores and
    commits a message on the same Store; then A's COMMIT is lost. A asks about its own transaction
    (not B's, which committed), learns it did not commit, and stores its message again."""
    with PgProxy(pg_url) as proxy:
        store = Store(proxy.url)
        try:
            store.create_schema()
            juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
            inserted, go = threading.Event(), threading.Event()

            def a_work() -> Any:
                [message] = store.insert_messages([_new(juan, maria, "from A")])
                inserted.set()
                assert go.wait(20)
                return message

            a = threading.Thread(target=lambda: done.update(a=store.run(a_work)))
            done: dict[str, Any] = {}
            a.start()
            assert inserted.wait(20)
            b = _in_thread(
                store, lambda: store.run(lambda: store.insert_messages([_new(juan, maria, "from B")]))
            )
            assert b["finished"] and "error" not in b
            proxy.arm("request")
            go.set()
            a.join(timeout=30)
            assert proxy.fired.is_set() and not a.is_alive()
            stored = {m.body: m.id for m in Mensaje.select()}
            assert stored.keys() == {"from A", "from B"}
            assert done["a"].id == stored["from A"]
        finally:
            close_database(proxy.url)


def test_a_read_asks_nothing_more_than_its_query(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a transaction that may write is settled after a lost connection, so only such a one asks
    for its transaction's id; a read, and a batch whose INSERT brought the id back, ask nothing."""
    store = Store(pg_url)
    try:
        store.create_schema()
        juan, maria = store.create_user("juan", "h"), store.create_user("maria", "h")
        sent: list[str] = []
        execute = store.db.execute_sql

        def recording(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            sent.append(sql)
            return execute(sql, params, *args, **kwargs)

        monkeypatch.setattr(store.db, "execute_sql", recording)
        store.credentials("juan")
        store.run(lambda: store.insert_messages([_new(juan, maria, "hola")]))
        store.set_password_hash(juan.id, "h2")
        asked = [sql for sql in sent if "if_assigned" in sql]
        assert asked == ["SELECT pg_current_xact_id_if_assigned()"], sent  # the UPDATE's, alone
    finally:
        close_database(pg_url)


def test_postgres_sessions_end_a_silent_cut_and_an_idle_transaction_unless_the_url_says(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        params = store.db.connection().get_dsn_parameters()
        assert params["tcp_user_timeout"] == "30000" and params["keepalives_idle"] == "10"
        assert store.run(lambda: store._one("SHOW idle_in_transaction_session_timeout")) == "30s"
    finally:
        close_database(pg_url)
    url = pg_url + "?options=-c%20idle_in_transaction_session_timeout%3D5000&tcp_user_timeout=1000"
    store = Store(url)
    try:
        assert store.db.connection().get_dsn_parameters()["tcp_user_timeout"] == "1000"
        assert store.run(lambda: store._one("SHOW idle_in_transaction_session_timeout")) == "5s"
    finally:
        close_database(url)


def test_a_postgres_older_than_14_is_refused_at_start_up(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settling a lost COMMIT needs pg_terminate_backend(pid, timeout), from PostgreSQL 14: an older
    server is refused before anything is created, not met one failed batch at a time."""
    import chatactors.storage as storage_module

    monkeypatch.setattr(storage_module, "MIN_POSTGRES", 10**9)  # this server, as if it were too old
    store = Store(pg_url)
    try:
        with pytest.raises(ValueError, match="needs PostgreSQL 14 or later; this server is version 1"):
            store.create_schema()
        assert not store.db.table_exists("mensajes")
    finally:
        close_database(pg_url)
