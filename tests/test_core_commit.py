"""Group commit (``core/commit.py``) with no actor system and no database: the queue and flush
policy, how a batch runs against the database seam, and who is told what. test_bad_rows.py and
test_storage.py run the same rules end to end on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from chatactors.core.commit import (
    Ack,
    Answer,
    DirectRead,
    FlushNow,
    GroupCommit,
    Post,
    PushTo,
    Refuse,
    RoomRead,
    ScheduleFlush,
    isolate,
)
from chatactors.core.model import ENVIADO, LEIDO, Message, NewMessage, Receipt, UserInfo
from chatactors.errors import ChatError, InvalidMessage, NotAMember, StorageUnavailable

T = TypeVar("T")
JUAN, MARIA, PEDRO = UserInfo(1, "juan"), UserInfo(2, "maria"), UserInfo(3, "pedro")
BAD = "BAD"  # a body the fake database refuses, as PostgreSQL refuses a NUL


class FakeDatabase:
    """The Database seam in memory: a transaction or savepoint rolls back what it wrote when a row
    is refused; ``down`` makes every transaction fail as an unreachable database does."""

    def __init__(self) -> None:
        self.rows: list[Message] = []
        self.client_ids: dict[tuple[int, str | None], Message] = {}
        self.read: set[int] = set()
        self.down = False
        self.transactions = 0
        self.savepoints = 0
        self.room_read: list[tuple[int, int]] = []
        self.left: set[int] = set()  # readers no longer in the room

    @contextmanager
    def _undo_on_refusal(self) -> Iterator[None]:
        rows, read, client_ids = list(self.rows), set(self.read), dict(self.client_ids)
        try:
            yield
        except InvalidMessage:
            self.rows, self.read, self.client_ids = rows, read, client_ids
            raise

    def transaction(self, work: Callable[[], T]) -> T:
        self.transactions += 1
        if self.down:
            raise StorageUnavailable("database unavailable")
        with self._undo_on_refusal():
            return work()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.savepoints += 1
        with self._undo_on_refusal():
            yield

    def _insert(self, rows: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        out: list[tuple[Message, bool]] = []
        for n in rows:
            if BAD in n.body:
                raise InvalidMessage("the database cannot store this value")
            key = (n.sender.id, n.client_id)
            if n.client_id is not None and key in self.client_ids:
                out.append((self.client_ids[key], False))
                continue
            message = Message(
                id=len(self.rows) + 1,
                sender_id=n.sender.id,
                sender=n.sender.username,
                recipient_id=n.recipient.id if n.recipient else None,
                room=n.room.name if n.room else None,
                body=n.body,
                sent_at=datetime(2026, 1, 1, tzinfo=UTC),
                status=n.status,
            )
            self.rows.append(message)
            if n.client_id is not None:
                self.client_ids[key] = message
            out.append((message, True))
        return out

    def insert(self, rows: list[NewMessage], isolated: bool) -> list[tuple[Message, bool] | InvalidMessage]:
        if not isolated:
            return list(self._insert(rows))

        def attempt(group: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
            with self.savepoint():
                return self._insert(group)

        return isolate(rows, attempt)

    def mark_read(self, write: DirectRead) -> int:
        self.read |= set(write.message_ids)
        return len(write.message_ids)

    def mark_room_read(self, write: RoomRead) -> list[tuple[int, int]]:
        if write.reader.id in self.left:  # as Store.mark_room_read: checked before it writes
            raise NotAMember(f"you are not in room {write.room_id}")
        return self.room_read


def post(req_id: int, body: str = "hola", client_id: str | None = None, fanout: Any = ()) -> Post:
    new = NewMessage(JUAN, MARIA, None, body, client_id, ENVIADO)
    return Post(new, req_id, f"caller{req_id}", fanout)


def read(token: int, ids: tuple[int, ...]) -> DirectRead:
    return DirectRead(MARIA, JUAN.id, ids, ("juan-sink",), "maria-actor", token)


def answered(effects: list[Any]) -> dict[int, Any]:
    return {e.req_id: e.value.body for e in effects if isinstance(e, Answer)}


def refused(effects: list[Any]) -> dict[int, type[ChatError]]:
    return {e.req_id: type(e.error) for e in effects if isinstance(e, Refuse)}


class TestFlushPolicy:
    def test_a_lone_write_schedules_one_flush_and_the_writes_before_it_arrives_join_the_batch(self) -> None:
        commit, db = GroupCommit(batch_max=10), FakeDatabase()
        assert commit.queue(post(1)) == [ScheduleFlush()]
        assert commit.queue(post(2)) == []
        assert commit.queue(post(3)) == []
        assert answered(commit.flush_arrived(db)) == {1: "hola", 2: "hola", 3: "hola"}
        assert db.transactions == 1
        assert commit.queue(post(4)) == [ScheduleFlush()]  # the next write schedules another

    def test_batch_max_asks_for_an_immediate_flush(self) -> None:
        commit, db = GroupCommit(batch_max=3), FakeDatabase()
        assert [commit.queue(post(i)) for i in (1, 2, 3)] == [[ScheduleFlush()], [], [FlushNow()]]
        assert len(answered(commit.flush(db))) == 3
        assert commit.pending == []

    def test_the_scheduled_flush_after_an_immediate_one_finds_nothing_to_do(self) -> None:
        commit, db = GroupCommit(batch_max=2), FakeDatabase()
        commit.queue(post(1))
        commit.queue(post(2))
        commit.flush(db)
        assert commit.flush_arrived(db) == []
        assert db.transactions == 1

    def test_a_new_message_that_breaks_an_input_rule_never_joins_a_batch(self) -> None:
        commit = GroupCommit()
        for bad in (post(1, body="a\x00b"), post(2, body="\ud800"), post(3, client_id="k" * 129)):
            with pytest.raises(InvalidMessage):
                commit.queue(bad)
        assert commit.pending == [] and not commit.flush_scheduled


class TestResults:
    def test_a_stored_message_is_pushed_to_each_sink_then_answered(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        commit.queue(post(1, fanout=(("sink-a", (2,)), ("sink-b", (2, 3)))))
        effects = commit.flush(db)
        message = db.rows[0]
        assert effects == [
            PushTo("sink-a", (2,), message),
            PushTo("sink-b", (2, 3), message),
            Answer("caller1", 1, message),
        ]

    def test_a_retried_client_id_is_answered_again_but_pushed_only_once(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        commit.queue(post(1, client_id="c1", fanout=(("sink", (2,)),)))
        first = commit.flush(db)
        commit.queue(post(2, client_id="c1", fanout=(("sink", (2,)),)))
        again = commit.flush(db)
        assert [type(e) for e in first] == [PushTo, Answer]
        assert again == [Answer("caller2", 2, db.rows[0])] and len(db.rows) == 1

    def test_a_direct_read_pushes_a_receipt_to_the_senders_sinks_and_acks_the_reader(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        commit.queue(post(1))
        commit.flush(db)
        commit.queue(read(7, (1,)))
        assert commit.flush(db) == [
            PushTo("juan-sink", (JUAN.id,), Receipt((1,), LEIDO, "maria", MARIA.id)),
            Ack("maria-actor", 7, ("user", JUAN.id)),
        ]

    def test_a_room_read_tells_each_sender_what_every_member_has_now_read_on_its_own_sinks(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        db.room_read = [(10, JUAN.id), (11, PEDRO.id), (12, JUAN.id)]
        fanout = (("sink-a", (JUAN.id, MARIA.id)), ("sink-b", (PEDRO.id,)))
        commit.queue(RoomRead(5, MARIA, 12, fanout, "maria-actor", 8))
        assert commit.flush(db) == [
            PushTo("sink-a", (JUAN.id,), Receipt((10, 12), LEIDO, "maria", MARIA.id)),
            PushTo("sink-b", (PEDRO.id,), Receipt((11,), LEIDO, "maria", MARIA.id)),
            Ack("maria-actor", 8, ("room", 5)),
        ]

    def test_a_failed_database_fails_every_write_of_the_batch_with_its_error(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        db.down = True
        commit.queue(post(1, fanout=(("sink", (2,)),)))
        commit.queue(read(7, (1,)))
        commit.queue(RoomRead(5, MARIA, 12, (), "maria-actor", 8))
        commit.queue(post(2))
        effects = commit.flush(db)
        assert [type(e) for e in effects] == [Refuse, Ack, Ack, Refuse]  # nothing pushed
        assert refused(effects) == {1: StorageUnavailable, 2: StorageUnavailable}
        assert [(e.part, type(e.error)) for e in effects if isinstance(e, Ack)] == [
            (("user", JUAN.id), StorageUnavailable),
            (("room", 5), StorageUnavailable),
        ]


class TestBadRows:
    def test_a_refused_row_fails_alone_and_every_other_row_is_stored_once(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        for i in range(1, 9):
            commit.queue(post(i, body=BAD if i == 6 else f"m{i}"))
        effects = commit.flush(db)
        assert refused(effects) == {6: InvalidMessage}
        assert answered(effects) == {i: f"m{i}" for i in range(1, 9) if i != 6}
        assert sorted(m.body for m in db.rows) == sorted(f"m{i}" for i in range(1, 9) if i != 6)
        assert db.transactions == 2  # refused once, then run again isolated

    def test_reads_in_a_refused_batch_run_again_each_in_a_savepoint(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        commit.queue(post(1))
        commit.flush(db)
        commit.queue(read(7, (1,)))
        commit.queue(post(2, body=BAD))
        effects = commit.flush(db)
        assert Ack("maria-actor", 7, ("user", JUAN.id)) in effects and refused(effects) == {2: InvalidMessage}
        assert db.read == {1} and db.savepoints >= 2

    def test_a_read_that_breaks_a_rule_fails_alone_without_running_the_batch_again(self) -> None:
        commit, db = GroupCommit(), FakeDatabase()
        db.left.add(MARIA.id)
        commit.queue(post(1))
        commit.queue(RoomRead(5, MARIA, 12, (), "maria-actor", 8))
        commit.queue(post(2))
        effects = commit.flush(db)
        assert answered(effects) == {1: "hola", 2: "hola"}
        assert [(e.part, type(e.error)) for e in effects if isinstance(e, Ack)] == [(("room", 5), NotAMember)]
        assert db.transactions == 1 and db.savepoints == 0  # no savepoint until a batch is refused


class TestIsolate:
    @staticmethod
    def run(rows: list[str]) -> tuple[list[Any], list[list[str]]]:
        attempts: list[list[str]] = []

        def attempt(group: Sequence[str]) -> list[str]:
            attempts.append(list(group))
            if BAD in group:
                raise InvalidMessage("refused")
            return [r.upper() for r in group]

        return isolate(rows, attempt), attempts

    def test_a_refused_group_is_halved_until_the_refused_row_fails_alone(self) -> None:
        rows = [f"r{i}" for i in range(16)]
        rows[11] = BAD
        results, attempts = self.run(rows)
        assert [type(r) if isinstance(r, InvalidMessage) else r for r in results] == [
            InvalidMessage if r == BAD else r.upper() for r in rows
        ]
        assert len(attempts) <= 2 * 4 + 1  # about 2 log2(n) savepoints, not n

    def test_left_half_first_so_a_repeated_row_is_stored_by_its_first_occurrence(self) -> None:
        results, attempts = self.run(["a", "b", BAD, "c"])
        stored = [group for group in attempts if BAD not in group]
        assert stored == [["a", "b"], ["c"]]
        assert results[:2] == ["A", "B"] and isinstance(results[2], InvalidMessage) and results[3] == "C"

    def test_several_refused_rows_each_fail_alone(self) -> None:
        results, _ = self.run([BAD, "a", BAD])
        assert [isinstance(r, InvalidMessage) for r in results] == [True, False, True]
