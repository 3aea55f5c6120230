"""Group rooms (roadmap V0.4, V0.6.2) on both system bases and both databases."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from chatactors import (
    ENTREGADO,
    LEIDO,
    Chat,
    InvalidMessage,
    NotAMember,
    RoomExists,
    RoomNotFound,
    Session,
)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the actors make true asynchronously (multiprocTCPBase), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def users(chat: Chat, *names: str) -> list[Session]:
    return [chat.crear(name, f"{name}-secret") for name in names]


def test_room_message_reaches_online_members_at_once_and_offline_ones_at_login(chat: Chat, collector) -> None:
    juan, maria, pedro = users(chat, "juan", "maria", "pedro")
    assert juan.create_room("general") == "general"
    maria.join("general")
    pedro.join("general")
    pedro.logout()
    pushed = collector()
    maria.on_message(pushed)
    mine = collector()
    juan.on_message(mine)

    m = juan.send_room("general", "hola a todos")
    assert m.room == "general" and m.status == ENTREGADO
    got = pushed.wait_for(1)[0]
    assert (got.id, got.sender, got.body, str(got)) == (
        m.id,
        "juan",
        "hola a todos",
        "[general] juan: hola a todos",
    )

    pedro = chat.login("pedro", "pedro-secret")
    assert [x.id for x in pedro.login_inbox] == [m.id]
    assert [x.id for x in pedro.inbox] == [m.id]
    assert juan.read_messages() == []  # a sender does not receive its own message as unread
    assert mine.items == []


def test_hash_prefix_sends_to_a_room_and_history_pages(chat: Chat) -> None:
    juan, maria = users(chat, "juan", "maria")
    juan.create_room("dev")
    maria.join("dev")
    sent = [juan.send_message("#dev", f"m{i}") for i in range(5)]
    page = maria.history(room="dev", limit=3)
    assert [m.id for m in page] == [s.id for s in sent[-3:]]
    older = maria.history(room="dev", limit=3, before=page[0].id)
    assert [m.id for m in older] == [s.id for s in sent[:2]]


def test_group_read_receipts_use_cursors_and_reach_leido_when_all_have_read(chat: Chat, collector) -> None:
    juan, maria, pedro = users(chat, "juan", "maria", "pedro")
    juan.create_room("general")
    maria.join("general")
    pedro.join("general")
    receipts = collector()
    juan.on_receipt(receipts)

    m = juan.send_room("general", "hola a todos")
    assert [x.id for x in maria.read_messages()] == [m.id]
    assert juan.read_by(m.id) == ["maria"]
    assert juan.status(m.id) == ENTREGADO
    assert maria.read_messages() == []  # the cursor moved: nothing unread twice

    assert [x.status for x in pedro.read_messages()] == [LEIDO]
    assert juan.read_by(m.id) == ["maria", "pedro"]
    assert juan.status(m.id) == LEIDO
    receipt = receipts.wait_for(1)[0]
    assert receipt.message_ids == (m.id,) and receipt.status == LEIDO


def test_rooms_lists_unread_counts(chat: Chat) -> None:
    juan, maria = users(chat, "juan", "maria")
    juan.create_room("general")
    juan.create_room("random")
    maria.join("general")
    juan.send_room("general", "uno")
    juan.send_room("general", "dos")
    summary = {r.name: r for r in maria.rooms()}
    assert set(summary) == {"general"}
    assert (summary["general"].members, summary["general"].unread) == (2, 2)
    maria.read_messages()
    assert maria.rooms()[0].unread == 0
    assert [r.name for r in juan.rooms()] == ["general", "random"]


def test_members_joining_later_do_not_inherit_old_messages_as_unread(chat: Chat) -> None:
    juan, maria = users(chat, "juan", "maria")
    juan.create_room("general")
    old = juan.send_room("general", "antes")
    maria.join("general")
    assert maria.read_messages() == []
    assert [m.id for m in maria.history(room="general")] == [old.id]  # history still shows it
    new = juan.send_room("general", "después")
    assert [m.id for m in maria.read_messages()] == [new.id]
    assert juan.status(new.id) == LEIDO  # every member at the time of sending has read it


def test_room_actor_runs_only_while_a_member_is_active(make_chat) -> None:
    chat = make_chat(idle_timeout=30)
    juan, maria = users(chat, "juan", "maria")
    assert chat.stats().live_rooms == 0
    juan.create_room("general")
    maria.join("general")
    wait_until(lambda: chat.stats().live_rooms == 1)
    juan.logout()
    assert chat.stats().live_rooms == 1  # maria is still active
    maria.logout()
    wait_until(lambda: chat.stats().live_rooms == 0)
    maria = chat.login("maria", "maria-secret")
    wait_until(lambda: chat.stats().live_rooms == 1)
    maria.logout()
    wait_until(lambda: chat.stats().live_rooms == 0)


def test_room_actor_retires_when_the_last_active_member_hibernates(make_chat) -> None:
    chat = make_chat(idle_timeout=0.05)
    (juan,) = users(chat, "juan")
    juan.create_room("general")
    # juan stays logged in, but his actor hibernates when idle, and the room goes with it.
    wait_until(lambda: chat.stats().live_users == 0 and chat.stats().live_rooms == 0)
    m = juan.send_room("general", "sigo aquí")  # both come back on demand
    assert [x.id for x in juan.history(room="general")] == [m.id]


def test_messages_while_the_room_actor_keeps_retiring_are_neither_lost_nor_doubled(
    make_chat, collector
) -> None:
    chat = make_chat(idle_timeout=0.01)
    juan, maria = users(chat, "juan", "maria")
    juan.create_room("general")
    maria.join("general")
    pushed = collector()
    maria.on_message(pushed)
    sent = []
    for i in range(60):
        sent.append(juan.send_room("general", f"m{i}", client_id=f"c{i}"))
        if i % 10 == 0:  # let every actor hibernate now and then, so activations race retirements
            wait_until(lambda: chat.stats().live_rooms == 0)
    got = pushed.wait_for(60)
    assert Counter(m.id for m in got) == Counter(m.id for m in sent)
    history = maria.history(room="general", limit=100)
    assert [m.body for m in history] == [f"m{i}" for i in range(60)]
    assert chat.stats().retirements > 0


@pytest.mark.slow
def test_fan_out_to_200_members_half_offline_exactly_once(make_chat, collector) -> None:
    chat = make_chat(idle_timeout=60, timeout=60)
    members = [chat.crear(f"user{i:03d}", "secret-123") for i in range(200)]
    owner = members[0]
    owner.create_room("big")
    for s in members[1:]:
        s.join("big")
    online, offline = members[:100], members[100:]
    for s in offline:
        s.logout()
    boxes = {s.user_id: collector() for s in online[1:]}
    for s in online[1:]:
        s.on_message(boxes[s.user_id])

    m = owner.send_room("big", "hola a los 199")
    for box in boxes.values():
        assert [x.id for x in box.wait_for(1)] == [m.id]
    # everyone, online or not, finds it unread exactly once
    for s in online[1:]:
        assert [x.id for x in s.read_messages()] == [m.id]
    for i, s in enumerate(offline):
        back = chat.login(s.user_id, "secret-123")
        assert [x.id for x in back.inbox].count(m.id) == 1
        assert [x.id for x in back.read_messages()] == [m.id]
        if i < 99:
            assert owner.status(m.id) == ENTREGADO
    assert owner.status(m.id) == LEIDO
    assert len(owner.read_by(m.id)) == 199
    for box in boxes.values():
        assert len(box.items) == 1


def test_room_errors(chat: Chat) -> None:
    juan, maria = users(chat, "juan", "maria")
    juan.create_room("general")
    with pytest.raises(RoomExists):
        maria.create_room("General")
    with pytest.raises(RoomNotFound):
        maria.join("nope")
    with pytest.raises(RoomNotFound):
        maria.send_room("nope", "hola")
    with pytest.raises(NotAMember):
        maria.send_room("general", "hola")
    with pytest.raises(NotAMember):
        maria.history(room="general")
    with pytest.raises(NotAMember):
        maria.leave("general")
    with pytest.raises(InvalidMessage):
        maria.create_room("a b")
    with pytest.raises(InvalidMessage):
        juan.send_room("general", "")
    maria.join("general")
    maria.join("general")  # twice: no error, one membership
    assert juan.rooms()[0].members == 2
    maria.leave("general")
    with pytest.raises(NotAMember):
        maria.send_room("general", "hola")
    assert juan.rooms()[0].members == 1


def test_members_and_search_by_name_prefix(chat: Chat) -> None:
    juan, maria, _ = users(chat, "juan", "maria", "juana")
    juan.create_room("juegos")
    maria.join("juegos")
    assert [u.username for u in maria.members("juegos")] == ["juan", "maria"]
    with pytest.raises(NotAMember):
        chat.login("juana", "juana-secret").members("juegos")
    with pytest.raises(RoomNotFound):
        maria.members("nada")

    found = maria.search("JU")
    assert [u.username for u in found.users] == ["juan", "juana"]
    assert [r.name for r in found.rooms] == ["juegos"]
    assert [u.username for u in maria.search("ju", limit=1).users] == ["juan"]
    for bad_prefix in ("", "j%", "x" * 33, "ju an"):
        with pytest.raises(InvalidMessage):
            maria.search(bad_prefix)
    for bad_limit in (0, 21, True):
        with pytest.raises(InvalidMessage):
            maria.search("ju", limit=bad_limit)
