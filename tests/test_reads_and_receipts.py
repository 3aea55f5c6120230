"""Selective reads, 'entregado' receipts at login, retried sends pushed once, session options."""

from __future__ import annotations

import pytest

from chatactors import ENTREGADO, ENVIADO, LEIDO, AuthenticationError, Chat, MessageNotFound


def test_read_one_conversation_or_one_room_leaves_the_rest_unread(chat: Chat) -> None:
    juan, maria, pedro = (chat.crear(n, f"{n}-secret") for n in ("juan", "maria", "pedro"))
    juan.create_room("general")
    maria.join("general")
    a = juan.send_message("maria", "de juan")
    b = pedro.send_message("maria", "de pedro")
    c = juan.send_room("general", "en la sala")
    assert [m.id for m in maria.read_messages(with_user="pedro")] == [b.id]
    assert juan.status(a.id) == ENTREGADO
    assert [m.id for m in maria.read_messages(room="general")] == [c.id]
    assert [m.id for m in maria.read_messages()] == [a.id]
    assert juan.status(a.id) == LEIDO


def test_read_up_to_a_message_id(chat: Chat) -> None:
    juan, maria = (chat.crear(n, f"{n}-secret") for n in ("juan", "maria"))
    first = juan.send_message("maria", "uno")
    second = juan.send_message("maria", "dos")
    assert [m.id for m in maria.read_messages(up_to=first.id)] == [first.id]
    assert juan.status(second.id) == ENTREGADO
    assert [m.id for m in maria.read_messages()] == [second.id]


def test_sender_is_told_entregado_when_an_offline_recipient_logs_in(chat: Chat, collector) -> None:
    receipts = collector()
    juan = chat.crear("juan", "juan-secret")
    maria = chat.crear("maria", "maria-secret")
    maria.logout()
    juan.on_receipt(receipts)
    m = juan.send_message("maria", "hola")
    assert m.status == ENVIADO
    chat.login("maria", "maria-secret")
    receipt = receipts.wait_for(1)[0]
    assert (receipt.message_ids, receipt.status, receipt.by) == ((m.id,), ENTREGADO, "maria")
    assert juan.status(m.id) == ENTREGADO


def test_a_retried_client_id_is_answered_again_but_pushed_once(chat: Chat, collector) -> None:
    juan = chat.crear("juan", "juan-secret")
    pushed = collector()
    maria = chat.login(chat.register("maria", "maria-secret"), "maria-secret", on_message=pushed)
    first = juan.send_message(maria, "hola", client_id="c-1")
    again = juan.send_message(maria, "hola", client_id="c-1")
    marker = juan.send_message(maria, "después")
    got = pushed.wait_for(2)
    assert first.id == again.id
    assert [m.id for m in got] == [first.id, marker.id]  # in order: the retry was not pushed again


def test_logout_can_keep_the_token_for_a_resume(chat: Chat) -> None:
    juan = chat.crear("juan", "juan-secret")
    token = juan.token
    juan.logout(revoke_token=False)
    again = chat.login(token=token)
    assert again.user_id == juan.user_id
    again.logout()
    with pytest.raises(AuthenticationError):
        chat.login(token=token)


def test_status_of_someone_elses_message_is_not_found(chat: Chat) -> None:
    juan, maria, pedro = (chat.crear(n, f"{n}-secret") for n in ("juan", "maria", "pedro"))
    m = juan.send_message("maria", "privado")
    with pytest.raises(MessageNotFound):
        pedro.status(m.id)
    with pytest.raises(MessageNotFound):
        pedro.read_by(m.id)
    with pytest.raises(MessageNotFound):
        juan.status(10_000)


def test_read_exact_ids(chat: Chat) -> None:
    juan, maria = (chat.crear(n, f"{n}-secret") for n in ("juan", "maria"))
    a, b, c = (juan.send_message("maria", body) for body in ("uno", "dos", "tres"))
    assert [m.id for m in maria.read_messages(ids=[b.id])] == [b.id]
    assert [juan.status(x.id) for x in (a, b, c)] == [ENTREGADO, LEIDO, ENTREGADO]
    assert [m.id for m in maria.read_messages()] == [a.id, c.id]


def test_names_are_case_insensitive_but_keep_their_case(chat: Chat) -> None:
    juan = chat.crear("Juan", "juan-secret")
    maria = chat.crear("maria", "maria-secret")
    assert chat.login("JUAN", "juan-secret").username == "Juan"
    m = maria.send_message("jUaN", "hola")
    assert m.recipient == "Juan"
    juan.create_room("General")
    assert maria.join("general") == "General"
    assert maria.send_message("#GENERAL", "hola sala").room == "General"
    assert [x.room for x in juan.read_messages(room="general")] == ["General"]


def test_what_one_session_reads_is_told_to_the_others(chat: Chat, collector) -> None:
    juan = chat.crear("juan", "juan-secret")
    phone = chat.crear("maria", "maria-secret")
    laptop = chat.login("maria", "maria-secret")
    seen = collector()
    laptop.on_read(seen)
    m = juan.send_message("maria", "hola")
    assert [x.id for x in phone.read_messages()] == [m.id]
    assert seen.wait_for(1)[0].message_ids == (m.id,)
    assert phone.read_messages() == []  # nothing read: nobody is told
    other = juan.send_message("maria", "otra")
    laptop.read_messages()
    assert [e.message_ids for e in seen.wait_for(2)] == [(m.id,), (other.id,)]
