"""Room membership (``core/rooms.py``) with no actor system: a room's members, presence and fan-out,
and a user's rooms and room commands. The same cases run end to end in test_rooms.py."""

from __future__ import annotations

import pytest
from helpers import Addr

from chatactors.core.model import ENTREGADO, ENVIADO, RoomInfo, UserInfo
from chatactors.core.replies import Answer, Refuse
from chatactors.core.rooms import (
    AskRoomOp,
    CheckRetire,
    JoinRoom,
    LeaveRoom,
    Located,
    MarkCursor,
    Memberships,
    PostTo,
    Presence,
    Register,
    RoomState,
    StoreMessage,
)
from chatactors.errors import ChatError, InternalError, InvalidMessage, NotAMember, RoomNotFound

JUAN, MARIA, PEDRO = UserInfo(1, "juan"), UserInfo(2, "maria"), UserInfo(3, "pedro")
GENERAL, RANDOM = RoomInfo(10, "General"), RoomInfo(11, "random")
A, B = Addr("sink-a"), Addr("sink-b")  # sinks: each holds sessions of several users


def live_room(*members: UserInfo, sinks: tuple[tuple[int, tuple[Addr, ...]], ...] = ()) -> RoomState:
    state = RoomState()
    members = members or (JUAN, MARIA, PEDRO)
    assert state.loaded(GENERAL, members) == [Register(tuple(u.id for u in members))]
    assert state.sinks_arrived(sinks, complete=True) == [Located()]
    return state


class TestRoomLoading:
    def test_loading_registers_the_members_and_the_first_complete_sinks_locate_them_once(self) -> None:
        state = RoomState()
        assert state.loaded(GENERAL, (JUAN, MARIA)) == [Register((1, 2))]
        assert state.sinks_arrived(((1, (A,)),), complete=False) == []  # not yet all of them
        assert state.sinks_arrived(((1, (A,)), (2, (B,))), complete=True) == [Located()]
        assert state.sinks_arrived(((1, (A,)),), complete=True) == []
        assert state.sinks == {1: (A,)}  # complete: replaces what was known

    def test_a_change_of_sinks_updates_one_member_and_none_left_forgets_them(self) -> None:
        state = live_room(sinks=((1, (A,)), (2, (A,))))
        state.sinks_arrived(((2, ()),), complete=False)  # maria's last session went
        state.sinks_arrived(((3, (B,)),), complete=False)
        assert state.sinks == {1: (A,), 3: (B,)}

    def test_a_restarted_directory_learns_the_members_again(self) -> None:
        assert RoomState().directory_restarted() == []  # not loaded: nothing to tell
        assert live_room().directory_restarted() == [Register((1, 2, 3))]


class TestFanout:
    def test_a_post_is_stored_once_and_fans_out_per_sink_to_every_member_but_the_sender(self) -> None:
        state = live_room(sinks=((1, (A,)), (2, (A, B)), (3, (B,))))
        assert state.post("p", JUAN.id) == [StoreMessage("p", GENERAL, ENTREGADO, ((A, (2,)), (B, (2, 3))))]

    def test_sinks_are_told_apart_by_name_not_by_hash(self) -> None:
        state = live_room(sinks=((2, (Addr("s"),)), (3, (Addr("s"),))))  # two copies of one address
        assert state.fanout() == ((Addr("s"), (2, 3)),)

    def test_with_no_other_member_online_it_is_stored_enviado(self) -> None:
        state = live_room(sinks=((1, (A,)),))  # only the sender is online
        assert state.post("p", JUAN.id) == [StoreMessage("p", GENERAL, ENVIADO, ())]

    def test_sinks_of_someone_who_is_no_longer_a_member_get_nothing(self) -> None:
        state = live_room(JUAN, MARIA, sinks=((2, (A,)), (3, (B,))))  # the directory still lists pedro
        assert state.fanout(exclude=JUAN.id) == ((A, (2,)),)

    def test_a_post_from_someone_not_a_member_is_refused_and_not_stored(self) -> None:
        state = live_room(JUAN, MARIA)
        (refused,) = state.post("p", PEDRO.id)
        assert isinstance(refused, Refuse) and refused.request == "p"
        assert isinstance(refused.error, NotAMember) and "General" in str(refused.error)

    def test_a_cursor_moves_with_every_member_online_told_the_reader_included(self) -> None:
        state = live_room(sinks=((1, (A,)), (2, (B,))))
        assert state.advance("read") == [MarkCursor("read", ((A, (1,)), (B, (2,))))]


class TestRoomMembership:
    def test_a_join_is_answered_only_once_the_directory_has_said_where_the_member_is(self) -> None:
        state = live_room(JUAN, sinks=((1, (A,)),))
        assert state.joined("join", MARIA, active=True) == [Register((1, 2))]
        assert state.sinks_arrived(((2, (B,)),), complete=False) == []
        assert state.sinks_arrived(((1, (A,)), (2, (B,))), complete=True) == [Answer("join", "General")]
        assert state.post("p", JUAN.id) == [StoreMessage("p", GENERAL, ENTREGADO, ((B, (2,)),))]
        assert not state.may_retire  # she is active

    def test_a_join_waiting_for_its_answer_keeps_the_room_from_retiring(self) -> None:
        state = live_room(JUAN)
        state.joined("join", MARIA, active=False)
        assert not state.may_retire  # retiring now would lose the join's answer
        assert state.sinks_arrived((), complete=True) == [Answer("join", "General")]
        assert state.may_retire

    def test_a_room_that_goes_before_the_sinks_are_in_answers_its_joins_as_done(self) -> None:
        """Handed over to another node, or a core actor restarted: the joins are in the database."""
        state = live_room(JUAN)
        state.joined("join", MARIA, active=False)
        state.joined("join again", MARIA, active=False)
        assert state.release_joins() == [Answer("join", "General"), Answer("join again", "General")]
        assert state.release_joins() == [] and state.may_retire

    def test_a_leave_forgets_the_member_answers_and_the_room_may_retire(self) -> None:
        state = live_room(JUAN, MARIA, sinks=((1, (A,)), (2, (B,))))
        state.presence(MARIA.id, active=True)
        assert state.left("leave", MARIA.id) == [Register((1,)), Answer("leave", "General"), CheckRetire()]
        assert state.may_retire and state.fanout() == ((A, (1,)),)
        assert isinstance(state.post("p", MARIA.id)[0], Refuse)

    def test_the_room_may_retire_once_no_member_is_active(self) -> None:
        state = live_room()
        assert state.may_retire
        assert state.presence(JUAN.id, active=True) == []
        assert state.presence(MARIA.id, active=True) == []
        assert state.presence(JUAN.id, active=False) == [CheckRetire()]
        assert not state.may_retire
        assert state.presence(MARIA.id, active=False) == [CheckRetire()]
        assert state.may_retire

    def test_someone_not_a_member_never_keeps_the_room_running(self) -> None:
        state = live_room(JUAN)
        assert state.presence(PEDRO.id, active=True) == [CheckRetire()]
        assert state.may_retire


def mine(*rooms: RoomInfo) -> Memberships:
    memberships = Memberships()
    memberships.load(rooms)
    return memberships


class TestMemberships:
    def test_rooms_are_found_whatever_the_case_they_are_typed_in(self) -> None:
        memberships = mine(GENERAL)
        assert memberships.get("general") == memberships.get("GENERAL") == GENERAL
        assert memberships.get("random") is None

    def test_becoming_active_or_not_tells_each_room_once(self) -> None:
        memberships = mine(GENERAL, RANDOM)
        assert memberships.set_active(True) == [Presence(10, True), Presence(11, True)]
        assert memberships.set_active(True) == []
        assert memberships.set_active(False) == [Presence(10, False), Presence(11, False)]

    def test_a_post_to_a_room_of_mine_goes_straight_to_it(self) -> None:
        assert mine(GENERAL).post("send", "GENERAL", "hola") == [PostTo(10, "send")]

    def test_a_join_asks_the_database_then_tells_the_room_whether_active(self) -> None:
        memberships = mine()
        memberships.set_active(True)
        assert memberships.command("join", "join", "General") == [AskRoomOp(1, "join", "General")]
        assert memberships.done(1, GENERAL, None) == [JoinRoom(10, "join", True)]
        assert memberships.post("send", "general", "hola") == [PostTo(10, "send")]

    def test_a_leave_asks_the_database_then_tells_the_room_and_forgets_it(self) -> None:
        memberships = mine(GENERAL)
        assert memberships.command("leave", "leave", "general") == [AskRoomOp(1, "leave", "general")]
        assert memberships.done(1, GENERAL, None) == [LeaveRoom(10, "leave")]
        assert memberships.get("general") is None

    def test_leaving_or_posting_to_a_room_not_mine_asks_the_database_which_error_it_is(self) -> None:
        memberships = mine()
        assert memberships.command("leave", "leave", "General") == [AskRoomOp(1, "find", "General")]
        assert memberships.post("send", "nope", "hola") == [AskRoomOp(2, "find", "nope")]
        (not_a_member,) = memberships.done(1, GENERAL, None)  # it exists: I am not in it
        assert isinstance(not_a_member, Refuse) and isinstance(not_a_member.error, NotAMember)
        missing = RoomNotFound("no room 'nope'")
        assert memberships.done(2, None, missing) == [Refuse("send", missing)]
        assert memberships.get("general") is None

    def test_an_op_that_found_no_room_and_no_error_still_answers(self) -> None:
        memberships = mine()
        memberships.command("join", "join", "General")
        (refused,) = memberships.done(1, None, None)
        assert isinstance(refused, Refuse) and isinstance(refused.error, InternalError)

    def test_bad_input_is_refused_before_the_database_is_asked(self) -> None:
        memberships = mine(GENERAL)
        with pytest.raises(InvalidMessage):
            memberships.command("create", "create", "a b")
        with pytest.raises(InvalidMessage):
            memberships.post("send", "general", "")
        assert memberships.ops == {}

    def test_failing_all_answers_the_ops_waiting_and_a_late_answer_is_ignored(self) -> None:
        memberships = mine()
        memberships.command("join", "join", "General")
        memberships.post("send", "nope", "hola")
        error = ChatError("restarting")
        assert memberships.fail_all(error) == [Refuse("join", error), Refuse("send", error)]
        assert memberships.done(1, GENERAL, None) == []
        assert memberships.get("general") is None
