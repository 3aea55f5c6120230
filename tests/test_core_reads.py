"""Read receipts (``core/reads.py``) with no actor system: a read from the request to the answer,
one at a time, its parts and their acks, and what a restart means for it. The same reads run end to
end in test_reads_and_receipts.py, test_rooms.py and test_supervision.py."""

from __future__ import annotations

from datetime import UTC, datetime

from helpers import Addr

from chatactors.core.model import ENTREGADO, LEIDO, Message, Only, ReadEvent, RoomInfo
from chatactors.core.reads import Advance, Confirm, Fetch, PushRead, Query, ReadSaga
from chatactors.core.replies import Answer, Refuse
from chatactors.core.rooms import Memberships
from chatactors.errors import NotAMember, Restarting, StorageUnavailable

JUAN, PEDRO = 1, 3  # senders; the reader is maria
GENERAL, RANDOM = RoomInfo(10, "General"), RoomInfo(11, "random")
PHONE, LAPTOP = Addr("phone"), Addr("laptop")


def direct(ident: int, sender_id: int = JUAN) -> Message:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Message(ident, sender_id, f"user{sender_id}", 2, None, "hola", at, ENTREGADO, "maria")


def in_room(ident: int, room: RoomInfo = GENERAL, sender_id: int = JUAN) -> Message:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Message(ident, sender_id, f"user{sender_id}", None, room.name, "hola sala", at, ENTREGADO)


def saga(*rooms: RoomInfo) -> ReadSaga:
    memberships = Memberships()
    memberships.load(rooms or (GENERAL, RANDOM))
    return ReadSaga(memberships)


def started(reads: ReadSaga, request: str = "r1") -> int:
    """A read of all that is unread, in progress; its token."""
    (fetch,) = reads.read(request, Query(), (PHONE, LAPTOP))
    assert isinstance(fetch, Fetch)
    return fetch.token


def read_status(*messages: Message) -> tuple[Message, ...]:
    return tuple(m.with_status(LEIDO) for m in messages)


class TestStart:
    def test_a_read_fetches_what_its_query_selects(self) -> None:
        reads = saga()
        assert reads.read("r1", Query(with_user=PEDRO, up_to=7), ()) == [
            Fetch(1, Only(sender_id=PEDRO, up_to=7))
        ]
        assert reads.busy

    def test_a_room_is_found_whatever_the_case_it_is_typed_in(self) -> None:
        reads = saga()
        assert reads.read("r1", Query(room="GENERAL", ids=(4, 5)), ()) == [
            Fetch(1, Only(room_id=10, ids=(4, 5)))
        ]

    def test_a_room_one_is_not_in_is_refused_and_nothing_is_fetched(self) -> None:
        reads = saga()
        (refused,) = reads.read("r1", Query(room="nope"), ())
        assert isinstance(refused, Refuse) and refused.request == "r1"
        assert isinstance(refused.error, NotAMember)
        assert not reads.busy


class TestConfirm:
    def test_an_empty_read_is_answered_with_nothing_and_no_session_is_told(self) -> None:
        reads = saga()
        token = started(reads)
        assert reads.fetched(token, (), None) == [Answer("r1", ())]
        assert not reads.busy

    def test_each_direct_sender_and_each_room_is_a_part_and_the_last_ack_answers(self) -> None:
        reads = saga()
        token = started(reads)
        a, b, c = direct(1), direct(2, PEDRO), direct(3)
        r1, r2, r3 = in_room(4), in_room(5, RANDOM), in_room(6)
        assert reads.fetched(token, (a, b, c, r1, r2, r3), None) == [
            Confirm(JUAN, (1, 3), token),
            Confirm(PEDRO, (2,), token),
            Advance(GENERAL.id, 6, token),  # the cursor moves to the room's newest message read
            Advance(RANDOM.id, 5, token),
        ]
        assert reads.acked(token, ("room", RANDOM.id), None) == []
        assert reads.acked(token, ("user", JUAN), None) == []
        assert reads.acked(token, ("room", GENERAL.id), None) == []
        assert reads.busy
        event = ReadEvent((1, 2, 3, 4, 5, 6))
        assert reads.acked(token, ("user", PEDRO), None) == [
            Answer("r1", read_status(a, b, c, r1, r2, r3)),
            PushRead(PHONE, event),  # every session of the reader: a badge cleared on one clears on all
            PushRead(LAPTOP, event),
        ]
        assert not reads.busy

    def test_a_message_of_a_room_that_is_no_longer_mine_needs_no_part(self) -> None:
        reads = saga(RANDOM)  # left General after the fetch was sent
        token = started(reads)
        m = in_room(4)
        assert reads.fetched(token, (m,), None) == [
            Answer("r1", read_status(m)),
            PushRead(PHONE, ReadEvent((4,))),
            PushRead(LAPTOP, ReadEvent((4,))),
        ]

    def test_a_failed_fetch_fails_the_read(self) -> None:
        reads = saga()
        token = started(reads)
        error = StorageUnavailable("down")
        assert reads.fetched(token, (direct(1),), error) == [Refuse("r1", error)]
        assert not reads.busy

    def test_a_failed_part_fails_the_read_once_every_part_has_answered_and_nobody_is_told(self) -> None:
        reads = saga()
        token = started(reads)
        reads.fetched(token, (direct(1), in_room(4)), None)
        error = StorageUnavailable("down")
        assert reads.acked(token, ("user", JUAN), error) == []
        assert reads.acked(token, ("room", GENERAL.id), None) == [Refuse("r1", error)]

    def test_a_duplicate_or_late_ack_is_ignored(self) -> None:
        reads = saga()
        token = started(reads)
        reads.fetched(token, (direct(1), in_room(4)), None)
        assert reads.acked(token, ("user", JUAN), None) == []
        assert reads.acked(token, ("user", JUAN), None) == []  # the same part again: still waits for the room
        assert len(reads.acked(token, ("room", GENERAL.id), None)) == 3
        assert reads.acked(token, ("room", GENERAL.id), None) == []  # the read is answered already
        assert reads.acked(99, ("user", JUAN), None) == []
        assert reads.fetched(99, (direct(1),), None) == []


class TestOneAtATime:
    def test_a_read_waits_for_the_one_in_progress_then_starts(self) -> None:
        reads = saga()
        token = started(reads, "r1")
        assert reads.read("r2", Query(with_user=PEDRO), (PHONE,)) == []  # else both would fetch the same
        assert reads.read("r3", Query(room="general"), (PHONE,)) == []
        assert reads.fetched(token, (), None) == [Answer("r1", ()), Fetch(2, Only(sender_id=PEDRO))]
        assert reads.fetched(2, (), None) == [Answer("r2", ()), Fetch(3, Only(room_id=GENERAL.id))]
        assert reads.fetched(3, (), None) == [Answer("r3", ())]
        assert not reads.busy

    def test_a_queued_read_checks_its_room_when_it_starts_and_a_refused_one_lets_the_next_go(self) -> None:
        reads = saga()
        token = started(reads, "r1")
        reads.read("r2", Query(room="general"), ())
        reads.read("r3", Query(), ())
        reads.rooms.rooms.pop("general")  # left meanwhile
        answer, refused, fetch = reads.fetched(token, (), None)
        assert answer == Answer("r1", ())
        assert isinstance(refused, Refuse) and refused.request == "r2"
        assert isinstance(refused.error, NotAMember)
        assert fetch == Fetch(2, Only()) and reads.busy  # r3 does not wait for a read that may never come


class TestRestart:
    def test_failing_all_answers_the_read_in_progress_and_the_queued_ones(self) -> None:
        reads = saga()
        token = started(reads, "r1")
        reads.fetched(token, (direct(1),), None)
        reads.read("r2", Query(), ())
        error = Restarting("persistence restarted; retry")
        assert reads.fail_all(error) == [Refuse("r1", error), Refuse("r2", error)]
        assert not reads.busy
        assert reads.acked(token, ("user", JUAN), None) == []  # what the dead actor's successor says later
        assert reads.fail_all(error) == []
