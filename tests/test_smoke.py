"""The roadmap's REPL session (README, docs/api.md), on both system bases and both databases."""

from chatactors import LEIDO, Chat


def test_two_users_chat_and_read(chat: Chat, collector, capsys) -> None:
    juan = chat.crear("juan", "secreto123")
    maria = chat.crear("maria", "secreto456")
    assert capsys.readouterr().out.count("usuario logeado") == 2
    pushed = collector()
    maria.on_message(pushed)
    m = juan.enviar_mensaje("maria", "hola")
    assert pushed.wait_for(1)[0].body == "hola"
    assert m.status == "entregado"
    read = maria.leer_mensajes()
    assert [r.id for r in read] == [m.id] and read[0].status == LEIDO
    assert juan.status(m.id) == LEIDO
    assert maria.leer_mensajes() == []
