"""Persistence with peewee: the models and a synchronous :class:`Store` the actors call.

The models sit behind one module-level :class:`~peewee.DatabaseProxy`, so a process talks to one
database at a time (every actor in a process shares it). The database comes from a URL
(``playhouse.db_url``): ``sqlite:///chatactors.db`` embedded, ``postgresql://host/db`` for real.

Driver errors are translated at this edge (``raise ... from exc``): a value the database refuses
(too long, out of range, a character it cannot store) into :class:`~chatactors.errors.InvalidMessage`,
anything else into :class:`~chatactors.errors.StorageUnavailable`; a dropped connection is reopened
on the next call. :meth:`Store.create_schema` also migrates a database an older version created.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import peewee as pw
from playhouse.db_url import connect
from playhouse.migrate import PostgresqlMigrator, migrate

from chatactors.core.commit import isolate
from chatactors.core.model import (
    ENTREGADO,
    ENVIADO,
    LEIDO,
    Message,
    NewMessage,
    Only,
    RoomInfo,
    RoomSummary,
    SearchResults,
    Status,
    UserInfo,
)
from chatactors.core.rules import MAX_CLIENT_ID
from chatactors.errors import (
    ChatError,
    InvalidMessage,
    MessageNotFound,
    NotAMember,
    RoomExists,
    RoomNotFound,
    StorageUnavailable,
    UsernameTaken,
    UserNotFound,
)

log = logging.getLogger("chatactors.storage")
database_proxy = pw.DatabaseProxy()
T = TypeVar("T")

# A value the database (or its driver, before sending it) refuses: the request's fault, not the
# database's. psycopg2 raises ValueError for NUL, the drivers UnicodeEncodeError for a lone
# surrogate, sqlite3 OverflowError for an integer over 64 bits.
REFUSED = (pw.DataError, ValueError, OverflowError)
IntegrityError = pw.IntegrityError  # a constraint the batch broke: the persistence actor isolates it


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy


class User(BaseModel):
    username = pw.CharField(max_length=32, unique=True)
    password_hash = pw.CharField(max_length=255)
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "users"


class Room(BaseModel):
    name = pw.CharField(max_length=32, unique=True)
    created_by = pw.ForeignKeyField(User, backref="rooms_created")
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "rooms"


class Mensaje(BaseModel):
    """The roadmap's table ``mensajes``: one row per message, a room message stored once."""

    sender = pw.ForeignKeyField(User, backref="sent")
    # No index of their own: (recipient, id) and (room, id) below serve every lookup one would, and
    # each index is one more B-tree a message goes into (two fewer: 10.1 -> 8.7 WAL page writes a
    # message on SQLite under load, docs/performance.md).
    recipient = pw.ForeignKeyField(User, null=True, backref="received", index=False)
    room = pw.ForeignKeyField(Room, null=True, backref="messages", index=False)
    body = pw.TextField()
    created_at = pw.DateTimeField()
    status = pw.CharField(max_length=10, default=ENVIADO)
    client_id = pw.CharField(max_length=MAX_CLIENT_ID, null=True)

    class Meta:
        table_name = "mensajes"
        indexes = (
            (("recipient", "id"), False),  # a user's inbox and history
            (("recipient", "status", "id"), False),  # unread lookups
            (("sender", "client_id"), True),  # a retried send is stored once
            (("room", "id"), False),  # a room's history
        )


REDUNDANT_INDEXES = ("mensaje_recipient_id", "mensaje_room_id")  # what older versions created


class Membership(BaseModel):
    room = pw.ForeignKeyField(Room, backref="memberships")
    user = pw.ForeignKeyField(User, backref="memberships")
    joined_at = pw.DateTimeField()
    joined_after = pw.BigIntegerField(default=0)  # last message id before joining
    read_up_to = pw.BigIntegerField(default=0)  # the member's read cursor

    class Meta:
        table_name = "memberships"
        indexes = ((("room", "user"), True), (("user",), False))


class SessionToken(BaseModel):
    user = pw.ForeignKeyField(User, backref="tokens")
    token_hash = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()

    class Meta:
        table_name = "session_tokens"


MODELS: list[type[pw.Model]] = [User, Room, Mensaje, Membership, SessionToken]

_lock = threading.Lock()
_open: dict[str, pw.Database] = {}


def utcnow() -> datetime:
    """Naive UTC: what both SQLite and PostgreSQL columns store without surprises."""
    return datetime.now(UTC).replace(tzinfo=None)


# A PostgreSQL connection's defaults (a URL's own query parameters win). A network cut with no reset
# shows as an error within ~30 s, not the minutes of TCP's retransmissions or the hours of its
# default keepalive; and a session whose client went away mid-transaction is ended by the server
# after 30 s, so its locks go even if no one ends it (chatactors never leaves a transaction idle).
POSTGRES_SESSION: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "options": "-c idle_in_transaction_session_timeout=30000",
}
MIN_POSTGRES = 140000  # pg_terminate_backend(pid, timeout), which settling a lost COMMIT needs


def open_database(url: str) -> pw.Database:
    """The process's database for ``url``; one URL per process, shared by every actor in it."""
    with _lock:
        if url in _open:
            return _open[url]
        if _open:
            raise ValueError(f"this process already uses {next(iter(_open))}; one database per process")
        if url.startswith("sqlite"):
            db = connect(
                url,
                # BEGIN IMMEDIATE: the login service and the persistence actor may be separate
                # processes; a read-then-write transaction must wait busy_timeout for the other's
                # lock, not fail at once when it upgrades.
                lock_type="IMMEDIATE",
                pragmas={
                    "journal_mode": "wal",  # readers never block the writer
                    "synchronous": "normal",  # durable at checkpoints; a commit costs no fsync
                    "foreign_keys": 1,
                    "busy_timeout": 2000,
                },
            )
        else:
            given = parse_qs(urlsplit(url).query)
            db = connect(url, **{k: v for k, v in POSTGRES_SESSION.items() if k not in given})
        database_proxy.initialize(db)
        _open[url] = db
        return db


def close_database(url: str) -> None:
    with _lock:
        db = _open.pop(url, None)
        if db is not None and not db.is_closed():
            db.close()
        if not _open:
            database_proxy.initialize(None)


def refused(exc: BaseException) -> InvalidMessage:
    """The client's error for a value the database refused; the driver's text goes to the log only."""
    log.warning("the database refused a value: %s: %s", type(exc).__name__, str(exc).strip())
    return InvalidMessage("the database cannot store this value")


def _message(row: Mensaje, sender: str, recipient: str | None, room: str | None) -> Message:
    return Message(
        id=row.id,
        sender_id=row.sender_id,
        sender=sender,
        recipient_id=row.recipient_id,
        room=room,
        body=row.body,
        sent_at=row.created_at.replace(tzinfo=UTC),
        status=Status(row.status),
        recipient=recipient,
    )


class _Try:
    """What one try of :meth:`Store.run` got to before its connection was lost."""

    def __init__(self) -> None:
        self.backend: tuple[int, datetime] | None = None  # PostgreSQL, a transaction that may write
        self.result: Any = None
        self.done = False  # work ran, COMMIT was next
        self.xid: str | None = None  # its xid8 as text; None: the transaction wrote nothing


class _Link(threading.local):
    """One thread's connection as :meth:`Store.run` knows it (peewee gives each thread its own)."""

    conn: object = None  # the connection ``identity`` belongs to
    identity: tuple[int, datetime] = (0, datetime.min)
    xid: str | None = None  # the running transaction's id, when an INSERT returned it


# How long a lost session may take to end, and what is said when a transaction's outcome cannot be
# learned (the caller's writes are answered as failed; a client retries with its client_id).
SETTLE_WAIT_MS = 5000
UNSETTLED = "the database connection was lost while committing and the outcome is unknown; try again"
ORPHANED = "a lost database session has not ended yet; try again"


class Store:
    """Synchronous data access, one per actor; every public method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = open_database(url)
        self._insert_sql: dict[int, str] = {}
        self._stored_sql: dict[int, str] = {}
        self._postgres = isinstance(self.db, pw.PostgresqlDatabase)
        self._link = _Link()
        self._orphans: set[tuple[int, datetime]] = set()  # lost sessions not known to have ended yet

    # -- plumbing ---------------------------------------------------------------------------------
    def run(self, work: Callable[[], T], *, read_only: bool = False) -> T:
        """Run ``work`` in a transaction; a lost connection is reopened once, then reported.

        Always a transaction, even for one statement: a connection lost while a statement runs
        leaves its outcome unknown, and only a transaction the server rolls back when the
        connection goes (no COMMIT reached it) makes running ``work`` again safe. On PostgreSQL a
        transaction that may write is settled first (:meth:`_settle`): the lost session is ended
        (a cut network can leave it alive, holding locks the next try would wait on for ever), and
        if its COMMIT was sent, the server says whether it committed. Run again, a batch that had
        committed would store its messages without a client_id twice and push none of the others.
        ``read_only``: ``work`` writes nothing, so running it again is always safe and nothing is
        settled (nor its transaction's id asked: one round trip fewer)."""
        link = self._link
        for attempt in (1, 2):
            ran = _Try()
            try:
                if self.db.is_closed():
                    self.db.connect()
                if self._postgres and not read_only and self.db.transaction_depth() == 0:  # our COMMIT
                    for orphan in list(self._orphans):  # an earlier try could not end it
                        self._end_session(orphan)
                    ran.backend = self._backend()
                link.xid = None
                with self.db.atomic():
                    ran.result = work()
                    if ran.backend is not None:
                        ran.xid = link.xid or self._one("SELECT pg_current_xact_id_if_assigned()")
                    ran.done = True
                return ran.result
            except ChatError:
                raise
            except pw.IntegrityError:
                raise
            except REFUSED as exc:  # retrying would only fail again, and the database is fine
                raise refused(exc) from exc
            except (pw.OperationalError, pw.InterfaceError, pw.DatabaseError) as exc:
                self._reset()
                if ran.backend is not None:
                    self._orphans.add(ran.backend)
                    try:
                        if self._settle(ran):
                            return ran.result
                    except (pw.OperationalError, pw.InterfaceError, pw.DatabaseError) as again:
                        self._reset()  # nothing runs again while the old session may hold its locks
                        raise StorageUnavailable(UNSETTLED if ran.xid else ORPHANED) from again
                if attempt == 2:
                    raise StorageUnavailable(f"database unavailable: {exc}".strip()) from exc
        raise AssertionError("unreachable")

    def _backend(self) -> tuple[int, datetime]:
        """(pid, start) of this thread's connection's server process, asked once per connection:
        what :meth:`_settle` ends if the connection is lost (a pid alone could be a newer session's)."""
        link, conn = self._link, self.db.connection()
        if link.conn is not conn:
            link.identity = self.db.execute_sql(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
            link.conn = conn
        return link.identity

    def _one(self, sql: str, *params: Any) -> Any:
        return self.db.execute_sql(sql, params).fetchone()[0]

    def _end_session(self, backend: tuple[int, datetime]) -> None:
        """End a session this store lost, and wait for it to go; StorageUnavailable if it has not."""
        pid, started = backend
        row = self.db.execute_sql(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE pid = %s AND backend_start = %s",
            (SETTLE_WAIT_MS, pid, started),
        ).fetchone()
        if row is not None and not row[0]:
            raise StorageUnavailable(ORPHANED)
        self._orphans.discard(backend)

    def _settle(self, ran: _Try) -> bool:
        """After a lost connection: did its transaction commit? On a new connection, end the old
        session first (its COMMIT may still be on the way), then ask the server for the
        transaction's status. True: it committed, ``ran.result`` stands. False: it did not, and
        running ``work`` again is safe."""
        assert ran.backend is not None
        self.db.connect()
        self._end_session(ran.backend)
        if not ran.done or ran.xid is None:  # no COMMIT was sent, or there was nothing to commit
            return False
        status = self._one("SELECT pg_xact_status(%s::xid8)", ran.xid)
        if status == "committed":
            log.warning("the connection was lost at COMMIT; transaction %s had committed", ran.xid)
            return True
        if status == "aborted":
            return False
        raise StorageUnavailable(UNSETTLED)

    def _reset(self) -> None:
        try:
            self.db.close()
        except Exception:  # the connection is already broken; closing is best effort
            pass

    def create_schema(self) -> None:
        if self._postgres:
            version = int(self.run(lambda: self._one("SHOW server_version_num"), read_only=True))
            if version < MIN_POSTGRES:
                raise ValueError(f"chatactors needs PostgreSQL 14 or later; this server is version {version}")

        def work() -> None:
            self.db.create_tables(MODELS, safe=True)
            # Names are unique whatever their case, and found whatever case they are typed in.
            for table, column in (("users", "username"), ("rooms", "name")):
                self.db.execute_sql(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_{column}_lower ON {table} (LOWER({column}))"
                )
                if isinstance(self.db, pw.PostgresqlDatabase):  # a prefix LIKE can use it in any collation
                    self.db.execute_sql(
                        f"CREATE INDEX IF NOT EXISTS {table}_{column}_prefix"
                        f" ON {table} (LOWER({column}) text_pattern_ops)"
                    )

        self.run(work)
        self.run(self._migrate)
        if isinstance(self.db, pw.PostgresqlDatabase):
            self.run(self._sequences_past_rows)

    def _migrate(self) -> None:
        """Bring a database an older version created up to date (each step is a no-op when done).

        mensajes.client_id was varchar(64) while the protocol allowed 128 characters. Widening a
        varchar rewrites nothing on PostgreSQL (a catalog change under a short exclusive lock);
        SQLite never enforces a varchar's length, so there is nothing to change there.

        mensajes had single-column indexes on recipient_id and room_id, the first columns of
        (recipient_id, id) and (room_id, id): they only slowed every insert down.
        """
        for index in REDUNDANT_INDEXES:
            self.db.execute_sql(f'DROP INDEX IF EXISTS "{index}"')
        if not isinstance(self.db, pw.PostgresqlDatabase):
            return
        width = self.db.execute_sql(
            "SELECT character_maximum_length FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'mensajes' AND column_name = 'client_id'"
        ).fetchone()
        if width is not None and width[0] is not None and width[0] < MAX_CLIENT_ID:
            log.warning(
                "migrating mensajes.client_id from varchar(%d) to varchar(%d)", width[0], MAX_CLIENT_ID
            )
            migrator = PostgresqlMigrator(self.db)
            migrate(migrator.alter_column_type("mensajes", "client_id", Mensaje.client_id))

    def _sequences_past_rows(self) -> None:
        """Move each id sequence that is behind its table's highest id past it, and say so.

        A restore or a copy that wrote ids without a ``setval`` leaves a sequence behind: every new
        row then collides with an old one, and messages are refused until the sequence passes them.
        In normal operation a sequence is never behind, so a start-up beside running nodes changes
        nothing (and ``setval`` only ever moves it forward here).
        """
        for model in MODELS:
            if not isinstance(model._meta.primary_key, pw.AutoField):
                continue
            table = model._meta.table_name
            (sequence,) = self.db.execute_sql("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
            if sequence is None:
                continue
            highest, last, called = self.db.execute_sql(
                f'SELECT (SELECT max(id) FROM "{table}"), last_value, is_called FROM {sequence}'
            ).fetchone()
            if highest is not None and highest >= last + (1 if called else 0):
                log.warning("%s was behind %s's highest id (%d); moved past it", sequence, table, highest)
                self.db.execute_sql("SELECT setval(%s, %s)", (sequence, highest))

    def close(self) -> None:
        self._reset()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one commit (the persistence actor's batches)."""
        if self.db.is_closed():
            self.db.connect()
        with self.db.atomic():
            yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction inside :meth:`run`: what the database refuses in it is rolled back
        alone (PostgreSQL would otherwise refuse every later statement of the transaction) and
        raised as InvalidMessage."""
        try:
            with self.db.atomic():
                yield
        except (*REFUSED, pw.IntegrityError) as exc:
            raise refused(exc) from exc

    # -- users and tokens -------------------------------------------------------------------------
    def create_user(self, username: str, password_hash: str) -> UserInfo:
        def work() -> UserInfo:
            if User.select().where(pw.fn.LOWER(User.username) == username.lower()).exists():
                raise UsernameTaken(f"username {username!r} is taken")
            user = User.create(username=username, password_hash=password_hash, created_at=utcnow())
            return UserInfo(user.id, user.username)

        try:
            return self.run(work)
        except pw.IntegrityError as exc:
            raise UsernameTaken(f"username {username!r} is taken") from exc

    def credentials(self, ref: str | int) -> tuple[UserInfo, str] | None:
        """(user, password hash) by username or id, or None."""

        def work() -> tuple[UserInfo, str] | None:
            query = User.select(User.id, User.username, User.password_hash)
            if isinstance(ref, int):
                row = query.where(User.id == ref).first()
            else:
                row = query.where(pw.fn.LOWER(User.username) == ref.lower()).first()
            return None if row is None else (UserInfo(row.id, row.username), row.password_hash)

        return self.run(work, read_only=True)

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self.run(lambda: User.update(password_hash=password_hash).where(User.id == user_id).execute())

    def user(self, ref: str | int) -> UserInfo | None:
        found = self.credentials(ref)
        return None if found is None else found[0]

    def add_token(self, user_id: int, token_hash: str, expires_at: datetime) -> None:
        self.run(
            lambda: SessionToken.create(
                user=user_id, token_hash=token_hash, created_at=utcnow(), expires_at=expires_at
            )
        )

    def token_user(self, token_hash: str) -> UserInfo | None:
        def work() -> UserInfo | None:
            row = (
                SessionToken.select(SessionToken, User)
                .join(User)
                .where((SessionToken.token_hash == token_hash) & (SessionToken.expires_at > utcnow()))
                .first()
            )
            return None if row is None else UserInfo(row.user.id, row.user.username)

        return self.run(work, read_only=True)

    def revoke_token(self, token_hash: str) -> None:
        self.run(lambda: SessionToken.delete().where(SessionToken.token_hash == token_hash).execute())

    # -- direct messages --------------------------------------------------------------------------
    def insert_messages(self, new: list[NewMessage]) -> list[Message]:
        """Store a batch of messages in one statement; a (sender, client_id) already stored, or
        repeated within the batch, gives back the message stored first. Call inside a transaction."""
        return [message for message, _ in self.insert_messages_fresh(new)]

    def insert_messages_fresh(self, new: list[NewMessage]) -> list[tuple[Message, bool]]:
        """:meth:`insert_messages`, telling which were stored now (a retry must not be pushed twice).

        One statement, ``INSERT ... ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING``: the
        database itself skips a (sender, client_id) stored before, by an earlier try or by another
        writer a moment ago (the INSERT waits for that writer's transaction), and only those (a
        retry: rare) are read back after it. A batch costs one round trip, not a lookup and an
        insert. Call inside a transaction.
        """
        first_of: dict[tuple[int, str], int] = {}
        fresh: list[int] = []  # the rows to insert: each client_id's first occurrence, and those without
        for i, n in enumerate(new):
            if n.client_id is None:
                fresh.append(i)
            elif (n.sender.id, n.client_id) not in first_of:
                first_of[(n.sender.id, n.client_id)] = i
                fresh.append(i)
        now = utcnow()
        stored = self._insert_rows([new[i] for i in fresh], now) if fresh else []
        keyed = {
            (sender, client_id): ident for ident, sender, client_id, *_ in stored if client_id is not None
        }
        # Ids come from one sequence in VALUES order; sorting maps them back to the rows (a row
        # without a client_id is never skipped).
        plain = iter(sorted(ident for ident, _, client_id, *_ in stored if client_id is None))
        missing = {key for key in first_of if key not in keyed}
        known = self._stored(missing) if missing else {}
        sent_at = now.replace(tzinfo=UTC)
        results: dict[int, tuple[Message, bool]] = {}
        for i in fresh:
            n = new[i]
            key = (n.sender.id, n.client_id) if n.client_id is not None else None
            if key is not None and key in missing:
                if key not in known:  # skipped, yet not there to read back: not expected, never silent
                    raise StorageUnavailable(
                        "a message with this client_id could not be read back; try again"
                    )
                results[i] = (known[key], False)
                continue
            message = Message(
                id=keyed[key] if key is not None else next(plain),
                sender_id=n.sender.id,
                sender=n.sender.username,
                recipient_id=n.recipient.id if n.recipient else None,
                room=n.room.name if n.room else None,
                body=n.body,
                sent_at=sent_at,
                status=n.status,
                recipient=n.recipient.username if n.recipient else None,
            )
            results[i] = (message, True)
        out: list[tuple[Message, bool]] = []
        for i, n in enumerate(new):
            found = results.get(i)
            if found is None:  # a client_id repeated in the batch: its first occurrence's message
                assert n.client_id is not None
                found = (results[first_of[(n.sender.id, n.client_id)]][0], False)
            out.append(found)
        return out

    def insert_messages_isolated(self, new: list[NewMessage]) -> list[tuple[Message, bool] | InvalidMessage]:
        """:meth:`insert_messages_fresh` for a batch the database refused: groups of rows in
        savepoints, halved until the refused row fails alone (``core.commit.isolate``) and every
        other row is stored once. Call inside a transaction."""

        def attempt(rows: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
            try:
                with self.db.atomic():  # a savepoint: a refused insert leaves the transaction usable
                    return self.insert_messages_fresh(list(rows))
            except (*REFUSED, pw.IntegrityError) as exc:  # a client_id stored meanwhile is no conflict now
                if len(rows) > 1:  # halved by isolate(); only the refused row's error is logged
                    raise InvalidMessage("a row of this group was refused") from exc
                raise refused(exc) from exc

        return isolate(new, attempt)

    KEYS_PER_LOOKUP = 256

    def _stored(self, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        """The messages already stored under these (sender, client_id) keys: a retry's original.

        Its SQL is built once per number of keys, as the INSERT's is: peewee rendering this lookup
        for every batch cost seven times the INSERT itself. The unique index on both columns serves
        each key, written the way each database plans best: on PostgreSQL one row-value list,
        ``(sender_id, client_id) IN (VALUES ...)`` (an OR chain made it spend 85 % of a 1,000-row
        batch's time on this lookup: 4,500 rows/s, against 19,800; bench/storage.py); on SQLite an
        OR chain of ``(sender_id = ? AND client_id = ?)`` (its plan for the row-value list uses
        the index on ``sender_id`` alone). Asked only for the keys an insert skipped (a retry).
        """
        ids: list[int] = []
        flat = [v for key in keys for v in key]
        step = 2 * self.KEYS_PER_LOOKUP  # SQLite caps an expression's depth at 1000: an OR chain too
        for start in range(0, len(flat), step):
            params = flat[start : start + step]
            sql = self._stored_sql.get(len(params))
            if sql is None:
                p, count = self.db.param, len(params) // 2
                if isinstance(self.db, pw.PostgresqlDatabase):
                    pairs = ", ".join([f"({p}, {p})"] * count)
                    match = f"(sender_id, client_id) IN (VALUES {pairs})"
                else:
                    match = " OR ".join([f"(sender_id = {p} AND client_id = {p})"] * count)
                sql = f'SELECT "id" FROM "mensajes" WHERE {match}'
                self._stored_sql[len(params)] = sql
            ids += [r[0] for r in self.db.execute_sql(sql, params).fetchall()]
        if not ids:
            return {}
        rows = list(Mensaje.select().where(Mensaje.id.in_(ids)))
        return {(m.sender_id, str(r.client_id)): m for r, m in zip(rows, self._decorate(rows), strict=True)}

    _INSERT_COLUMNS = "sender_id, recipient_id, room_id, body, created_at, status, client_id"

    def _insert_rows(self, rows: list[NewMessage], now: datetime) -> list[tuple[Any, ...]]:
        """One multi-row INSERT, (id, sender_id, client_id[, xid]) of each row it stored (a (sender,
        client_id) already there is skipped), its SQL built once per batch size.

        Peewee renders every value of ``insert_many`` through its SQL builder (~30 us a row, a
        fifth of a message's CPU embedded); the parameters alone cost nothing.
        """
        sql = self._insert_sql.get(len(rows))
        if sql is None:
            p = self.db.param
            one = "(" + ", ".join([p] * 7) + ")"
            values = ", ".join([one] * len(rows))
            # On PostgreSQL each row also brings the transaction's id, which run() needs to learn
            # whether a COMMIT it lost had committed: one round trip fewer a batch.
            xid = ", pg_current_xact_id()" if self._postgres else ""
            sql = (
                f"INSERT INTO mensajes ({self._INSERT_COLUMNS}) VALUES {values}"
                f" ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id, sender_id, client_id{xid}"
            )
            self._insert_sql[len(rows)] = sql
        created = Mensaje.created_at.db_value(now)
        params: list[Any] = []
        for n in rows:
            params += (
                n.sender.id,
                n.recipient.id if n.recipient is not None else None,
                n.room.id if n.room is not None else None,
                n.body,
                created,
                n.status,
                n.client_id,
            )
        stored = self.db.execute_sql(sql, params).fetchall()
        if stored and self._postgres:
            self._link.xid = stored[0][3]
        return stored

    def insert_direct(
        self, sender: UserInfo, recipient: UserInfo, body: str, client_id: str | None, status: Status
    ) -> Message:
        """One direct message (see :meth:`insert_messages`)."""
        return self.insert_messages([NewMessage(sender, recipient, None, body, client_id, status)])[0]

    def _decorate(self, rows: Iterable[Mensaje]) -> list[Message]:
        rows = list(rows)
        ids = {r.sender_id for r in rows} | {r.recipient_id for r in rows if r.recipient_id}
        names = {u.id: u.username for u in User.select(User.id, User.username).where(User.id.in_(ids))}
        room_ids = {r.room_id for r in rows if r.room_id}
        rooms = (
            {r.id: r.name for r in Room.select(Room.id, Room.name).where(Room.id.in_(room_ids))}
            if room_ids
            else {}
        )
        return [
            _message(
                r,
                names.get(r.sender_id, "?"),
                names.get(r.recipient_id) if r.recipient_id else None,
                rooms.get(r.room_id) if r.room_id else None,
            )
            for r in rows
        ]

    def _received(
        self,
        user_id: int,
        unread_only: bool = False,
        before: int | None = None,
        limit: int | None = None,
        only: Only | None = None,
    ) -> list[Mensaje]:
        """Messages ``user_id`` received, newest first: direct ones, and room messages posted after
        joining. Indexed queries merged here: one OR across both kinds would scan the table."""
        only = only or Only()
        queries = []
        if only.room_id is None:
            direct = Mensaje.select().where(Mensaje.recipient == user_id)
            if unread_only:
                direct = direct.where(Mensaje.status != LEIDO)
            if only.sender_id is not None:
                direct = direct.where(Mensaje.sender == only.sender_id)
            queries.append(direct)
        memberships = Membership.select().where(Membership.user == user_id)
        if only.room_id is not None:
            memberships = memberships.where(Membership.room == only.room_id)
        elif only.sender_id is not None:
            memberships = memberships.where(False)  # a conversation with one person: no rooms
        # One query per room (a user is in few), each served by the (room, id) index.
        for m in memberships:
            cursor = max(m.joined_after, m.read_up_to) if unread_only else m.joined_after
            queries.append(
                Mensaje.select().where(
                    (Mensaje.room == m.room_id) & (Mensaje.id > cursor) & (Mensaje.sender != user_id)
                )
            )
        filtered = []
        for query in queries:
            if before is not None:
                query = query.where(Mensaje.id < before)
            if only.up_to is not None:
                query = query.where(Mensaje.id <= only.up_to)
            if only.ids is not None:
                query = query.where(Mensaje.id.in_(list(only.ids)))
            filtered.append(query)
        return self._newest(filtered, limit)

    @staticmethod
    def _newest(queries: Iterable[pw.ModelSelect[Mensaje]], limit: int | None) -> list[Mensaje]:
        """The newest ``limit`` rows (every row when None) of several queries, newest first, each
        row once: each query reads down its own index and stops at ``limit``, and they are merged
        here. One query with an OR across them would make the database scan the table instead."""
        rows: dict[int, Mensaje] = {}
        for query in queries:
            query = query.order_by(Mensaje.id.desc())
            rows.update((r.id, r) for r in (query.limit(limit) if limit is not None else query))
        return sorted(rows.values(), key=lambda r: r.id, reverse=True)[:limit]

    def inbox(self, user_id: int, limit: int = 10, before: int | None = None) -> list[Message]:
        """The last ``limit`` messages received (direct and room), newest last."""
        return self.run(
            lambda: self._decorate(reversed(self._received(user_id, before=before, limit=limit))),
            read_only=True,
        )

    def unread(self, user_id: int, only: Only | None = None) -> list[Message]:
        """What ``user_id`` has not read yet, direct and room, oldest first (or ``only`` some)."""
        return self.run(
            lambda: self._decorate(reversed(self._received(user_id, True, only=only))), read_only=True
        )

    def mark_read(self, reader_id: int, sender_id: int, ids: Iterable[int]) -> int:
        """Set 'leido' on messages ``sender_id`` sent to ``reader_id``; call inside a transaction."""
        return int(
            Mensaje.update(status=LEIDO)
            .where(
                (Mensaje.id.in_(list(ids))) & (Mensaje.sender == sender_id) & (Mensaje.recipient == reader_id)
            )
            .execute()
        )

    def mark_delivered(self, user_id: int) -> list[int]:
        """Messages waiting for ``user_id`` reached a live session: 'enviado' -> 'entregado'."""
        return sorted(i for ids in self.mark_delivered_by_sender(user_id).values() for i in ids)

    def mark_delivered_by_sender(self, user_id: int) -> dict[int, list[int]]:
        """:meth:`mark_delivered`, grouped by sender (each is told with one receipt)."""

        def work() -> dict[int, list[int]]:
            by_sender: dict[int, list[int]] = {}
            for ident, sender_id in sorted(self._claim_waiting(user_id)):
                by_sender.setdefault(sender_id, []).append(ident)
            return by_sender

        return self.run(work)

    def deliver_waiting(self, user_id: int) -> list[Message]:
        """Every direct message still 'enviado' to ``user_id``, now 'entregado', oldest first: a
        session of theirs was learned of late (a new owner after a ring change, a restarted
        directory), after these were stored for no session."""

        def work() -> list[Message]:
            ids = [ident for ident, _ in self._claim_waiting(user_id)]
            if not ids:
                return []
            return self._decorate(Mensaje.select().where(Mensaje.id.in_(ids)).order_by(Mensaje.id))

        return self.run(work)

    def _claim_waiting(self, user_id: int) -> list[tuple[int, int]]:
        """(id, sender_id) of each message 'enviado' to ``user_id``, now 'entregado': claimed by one
        statement, so a login and a catch-up (on any node) never both deliver one."""
        p = self.db.param
        sql = (
            f'UPDATE "mensajes" SET "status" = {p} WHERE "status" = {p} AND "recipient_id" = {p}'
            ' RETURNING "id", "sender_id"'
        )
        return [(r[0], r[1]) for r in self.db.execute_sql(sql, (ENTREGADO, ENVIADO, user_id)).fetchall()]

    def status(self, user_id: int, message_id: int) -> Status:
        def work() -> Status:
            return Status(self._visible(user_id, message_id).status)

        return self.run(work, read_only=True)

    def _visible(self, user_id: int, message_id: int) -> Mensaje:
        """A message its sender, its recipient or a member of its room may look at."""
        row = Mensaje.get_or_none(Mensaje.id == message_id)
        if row is not None and (row.sender_id == user_id or row.recipient_id == user_id):
            return row
        if row is not None and row.room_id is not None and self._membership(row.room_id, user_id):
            return row
        raise MessageNotFound(f"no message {message_id} of yours")

    def _membership(self, room_id: int, user_id: int) -> Membership | None:
        return Membership.get_or_none((Membership.room == room_id) & (Membership.user == user_id))

    def history(
        self, user_id: int, with_user: str | int | None, limit: int, before: int | None
    ) -> list[Message]:
        """Direct messages to or from ``user_id`` (optionally only with one person), newest last.

        Received and sent are read apart and merged (:meth:`_newest`): as one OR, SQLite walked the
        whole table backwards from the newest row (a conversation that went quiet long ago read
        every row since).
        """

        def work() -> list[Message]:
            if with_user is None:
                received = Mensaje.recipient == user_id
                sent = (Mensaje.sender == user_id) & Mensaje.room.is_null()
            else:
                other = self.user(with_user)
                if other is None:
                    raise UserNotFound(f"no user {with_user!r}")
                received = (Mensaje.recipient == user_id) & (Mensaje.sender == other.id)
                sent = (Mensaje.recipient == other.id) & (Mensaje.sender == user_id)
            if before is not None:
                received, sent = received & (Mensaje.id < before), sent & (Mensaje.id < before)
            queries = (Mensaje.select().where(received), Mensaje.select().where(sent))
            return self._decorate(reversed(self._newest(queries, limit)))  # to oneself: in both, kept once

        return self.run(work, read_only=True)

    def count_messages(self) -> int:
        return self.run(lambda: Mensaje.select().count(), read_only=True)

    # -- rooms ------------------------------------------------------------------------------------
    def _room(self, ref: str | int) -> Room:
        room = Room.get_or_none(
            Room.id == ref if isinstance(ref, int) else pw.fn.LOWER(Room.name) == ref.lower()
        )
        if room is None:
            raise RoomNotFound(f"no room {ref!r}")
        return room

    def room(self, ref: str | int) -> RoomInfo:
        room = self.run(lambda: self._room(ref), read_only=True)
        return RoomInfo(room.id, room.name)

    def _last_message_id(self) -> int:
        return int(Mensaje.select(pw.fn.MAX(Mensaje.id)).scalar() or 0)

    def create_room(self, name: str, creator_id: int) -> RoomInfo:
        """A new room, with its creator as first member."""

        def work() -> RoomInfo:
            if Room.select().where(pw.fn.LOWER(Room.name) == name.lower()).exists():
                raise RoomExists(f"room {name!r} exists")
            room = Room.create(name=name, created_by=creator_id, created_at=utcnow())
            self._join(room, creator_id)
            return RoomInfo(room.id, room.name)

        try:
            return self.run(work)
        except pw.IntegrityError as exc:
            raise RoomExists(f"room {name!r} exists") from exc

    def _join(self, room: Room, user_id: int) -> None:
        # Messages posted before joining are history, not unread mail.
        last = self._last_message_id()
        Membership.create(room=room, user=user_id, joined_at=utcnow(), joined_after=last, read_up_to=last)

    def join_room(self, name: str, user_id: int) -> RoomInfo:
        """Join (joining twice is a no-op)."""

        def work() -> RoomInfo:
            room = self._room(name)
            if self._membership(room.id, user_id) is None:
                self._join(room, user_id)
            return RoomInfo(room.id, room.name)

        return self.run(work)

    def leave_room(self, name: str, user_id: int) -> RoomInfo:
        def work() -> RoomInfo:
            room = self._room(name)
            deleted = (
                Membership.delete()
                .where((Membership.room == room.id) & (Membership.user == user_id))
                .execute()
            )
            if not deleted:
                raise NotAMember(f"you are not in {name!r}")
            return RoomInfo(room.id, room.name)

        return self.run(work)

    def rooms_of(self, user_id: int) -> list[RoomInfo]:
        def work() -> list[RoomInfo]:
            query = Room.select(Room.id, Room.name).join(Membership).where(Membership.user == user_id)
            return [RoomInfo(r.id, r.name) for r in query.order_by(Room.name)]

        return self.run(work, read_only=True)

    def room_members(self, room_id: int) -> list[UserInfo]:
        def work() -> list[UserInfo]:
            query = User.select(User.id, User.username).join(Membership).where(Membership.room == room_id)
            return [UserInfo(u.id, u.username) for u in query.order_by(User.id)]

        return self.run(work, read_only=True)

    def room_summaries(self, user_id: int) -> list[RoomSummary]:
        """The rooms ``user_id`` is in, with member and unread counts."""

        def work() -> list[RoomSummary]:
            out = []
            for m in Membership.select(Membership, Room).join(Room).where(Membership.user == user_id):
                cursor = max(m.joined_after, m.read_up_to)
                unread = (
                    Mensaje.select()
                    .where((Mensaje.room == m.room_id) & (Mensaje.id > cursor) & (Mensaje.sender != user_id))
                    .count()
                )
                members = Membership.select().where(Membership.room == m.room_id).count()
                out.append(RoomSummary(m.room.name, members, unread))
            return sorted(out, key=lambda r: r.name)

        return self.run(work, read_only=True)

    def mark_room_read(self, room_id: int, reader_id: int, up_to: int) -> list[tuple[int, int]]:
        """Move the reader's cursor to ``up_to``; returns (message id, sender id) of the messages
        that every member has now read. Call inside a transaction."""
        member = self._membership(room_id, reader_id)
        if member is None:
            raise NotAMember(f"you are not in room {room_id}")
        old = member.read_up_to
        if up_to <= old:
            return []
        Membership.update(read_up_to=up_to).where(Membership.id == member.id).execute()
        done = []
        candidates = Mensaje.select(Mensaje.id, Mensaje.sender).where(
            (Mensaje.room == room_id) & (Mensaje.id > old) & (Mensaje.id <= up_to) & (Mensaje.status != LEIDO)
        )
        for m in candidates:
            behind = Membership.select().where(
                (Membership.room == room_id)
                & (Membership.user != m.sender_id)
                & (Membership.joined_after < m.id)
                & (Membership.read_up_to < m.id)
            )
            if not behind.exists():
                done.append((m.id, m.sender_id))
        if done:
            Mensaje.update(status=LEIDO).where(Mensaje.id.in_([i for i, _ in done])).execute()
        return done

    def read_by(self, user_id: int, message_id: int) -> list[str]:
        """Who has read a message: for a room, every member whose cursor has passed it."""

        def work() -> list[str]:
            row = self._visible(user_id, message_id)
            if row.room_id is None:
                if row.status != LEIDO:
                    return []
                return [User.get_by_id(row.recipient_id).username]
            query = (
                User.select(User.username)
                .join(Membership)
                .where(
                    (Membership.room == row.room_id)
                    & (Membership.user != row.sender_id)
                    & (Membership.joined_after < row.id)
                    & (Membership.read_up_to >= row.id)
                )
            )
            return sorted(u.username for u in query)

        return self.run(work, read_only=True)

    def room_member_list(self, user_id: int, name: str) -> list[UserInfo]:
        """A room's members by name; only a member may ask (NotAMember, RoomNotFound)."""

        def work() -> list[UserInfo]:
            room = self._room(name)
            if self._membership(room.id, user_id) is None:
                raise NotAMember(f"you are not in {name!r}")
            query = User.select(User.id, User.username).join(Membership).where(Membership.room == room.id)
            return sorted((UserInfo(u.id, u.username) for u in query), key=lambda u: u.username.lower())

        return self.run(work, read_only=True)

    def search(self, prefix: str, limit: int) -> SearchResults:
        """Users and rooms whose names start with ``prefix`` (any case), at most ``limit`` of each.

        ``_`` is a LIKE wildcard and may be in a name: it, ``%`` and the escape are matched literally.
        """

        pattern = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        def starts_with(column: pw.Field) -> pw.NodeList:
            # Spelled out: peewee's LIKE is GLOB on SQLite, and ILIKE could not use PostgreSQL's index.
            like = (pw.fn.LOWER(column), pw.SQL("LIKE"), pw.Value(pattern), pw.SQL("ESCAPE"), pw.Value("\\"))
            return pw.NodeList(like)

        def work() -> SearchResults:
            users = (
                User.select(User.id, User.username)
                .where(starts_with(User.username))
                .order_by(pw.fn.LOWER(User.username))
                .limit(limit)
            )
            rooms = (
                Room.select(Room.id, Room.name)
                .where(starts_with(Room.name))
                .order_by(pw.fn.LOWER(Room.name))
                .limit(limit)
            )
            return SearchResults(
                tuple(UserInfo(u.id, u.username) for u in users), tuple(RoomInfo(r.id, r.name) for r in rooms)
            )

        return self.run(work, read_only=True)

    def room_history(self, user_id: int, name: str, limit: int, before: int | None) -> list[Message]:
        """A room's messages, newest last; members only."""

        def work() -> list[Message]:
            room = self._room(name)
            if self._membership(room.id, user_id) is None:
                raise NotAMember(f"you are not in {name!r}")
            query = Mensaje.select().where(Mensaje.room == room.id)
            if before is not None:
                query = query.where(Mensaje.id < before)
            return self._decorate(reversed(list(query.order_by(Mensaje.id.desc()).limit(limit))))

        return self.run(work, read_only=True)
