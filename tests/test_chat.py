"""The REPL API (docs/api.md) on both system bases and both databases (``make_chat``/``chat`` fixtures)."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
from typing import Any

import pytest
from thespian.actors import ActorAddress

from chatactors import (
    ENTREGADO,
    ENVIADO,
    LEIDO,
    AuthenticationError,
    Chat,
    ChatClosed,
    InvalidMessage,
    Message,
    Receipt,
    Session,
    SessionEnded,
    TooManyAttempts,
    UserNotFound,
)
from chatactors.chat import Pid
from chatactors.storage import SessionToken, Store

PASSWORDS = {"juan": "secreto123", "maria": "secreto456", "pedro": "secreto789"}


def crear(chat: Chat, *names: str) -> list[Session]:
    return [chat.crear(name, PASSWORDS[name]) for name in names]


# -- identity ---------------------------------------------------------------------------------------
def test_register_then_login_by_username_and_by_id(chat: Chat, capsys: pytest.CaptureFixture[str]) -> None:
    uid = chat.register("juan", "secreto123")
    assert isinstance(uid, int) and uid > 0
    assert capsys.readouterr().out == ""  # registering is not logging in
    by_name = chat.login("juan", "secreto123")
    assert capsys.readouterr().out == "usuario logeado\n"
    by_id = chat.login(uid, "secreto123")  # V0.7: by the database id
    assert capsys.readouterr().out == "usuario logeado\n"
    for session in (by_name, by_id):
        assert (session.user_id, session.username) == (uid, "juan")
        assert isinstance(session.token, str) and len(session.token) >= 32
    assert by_name.token != by_id.token  # every login gets its own token

    # crear (V0.1): register if the name is new, then log in.
    maria = chat.crear("maria", "secreto456")
    again = chat.crear("maria", "secreto456")  # already registered: just a login
    assert maria.user_id == again.user_id != uid
    with pytest.raises(AuthenticationError):
        chat.crear("maria", "otra-clave")  # taken name, wrong password: no silent takeover


def test_token_login_and_tokens_are_stored_hashed(chat: Chat) -> None:
    juan = chat.crear("juan", "secreto123")
    again = chat.login(token=juan.token)
    assert (again.user_id, again.username, again.token) == (juan.user_id, "juan", juan.token)
    rows = Store(chat.database_url).run(lambda: [t.token_hash for t in SessionToken.select()])
    assert hashlib.sha256(juan.token.encode()).hexdigest() in rows
    assert juan.token not in rows


def test_an_expired_token_is_refused(make_chat: Any) -> None:
    chat = make_chat(token_ttl=0)
    juan = chat.crear("juan", "secreto123")
    with pytest.raises(AuthenticationError):
        chat.login(token=juan.token)


def test_wrong_password_and_unknown_user_give_the_same_error(chat: Chat) -> None:
    uid = chat.register("juan", "secreto123")
    errors = []
    for user, password in [("juan", "incorrecta"), ("nadie", "incorrecta"), (uid + 999, "incorrecta")]:
        with pytest.raises(AuthenticationError) as caught:
            chat.login(user, password)
        errors.append(caught.value)
    assert {type(e) for e in errors} == {AuthenticationError}
    assert len({str(e) for e in errors}) == 1, [str(e) for e in errors]
    with pytest.raises(AuthenticationError):
        chat.login(token="not-a-token")


def test_repeated_failures_are_throttled(chat: Chat) -> None:
    crear(chat, "juan", "maria")
    for _ in range(5):
        with pytest.raises(AuthenticationError) as caught:
            chat.login("juan", "incorrecta")
        assert type(caught.value) is AuthenticationError
    with pytest.raises(TooManyAttempts):
        chat.login("juan", "incorrecta")
    with pytest.raises(TooManyAttempts):
        chat.login("juan", "secreto123")  # locked: even the right password waits
    assert chat.login("maria", "secreto456").username == "maria"  # other accounts are not affected
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            chat.login("fantasma", "incorrecta")
    with pytest.raises(TooManyAttempts):  # unknown names are throttled the same way
        chat.login("fantasma", "incorrecta")


def test_throttling_covers_the_account_whether_named_or_by_id(chat: Chat) -> None:
    """Five failures by name lock the account: trying its database id instead must not reopen it."""
    juan = chat.crear("juan", "secreto123")
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            chat.login("juan", "incorrecta")
    with pytest.raises(TooManyAttempts):
        chat.login(juan.user_id, "incorrecta")


def test_configuration_from_the_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chat() with no arguments: $CHATACTORS_DATABASE_URL / $CHATACTORS_SYSTEM / $CHATACTORS_ADMIN_PORT,
    else an SQLite file in the working directory and the embedded base."""
    from chatactors.chat import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATACTORS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CHATACTORS_SYSTEM", raising=False)
    with Chat(password_profile="cheapest", echo=False) as chat:
        assert chat.system == "simpleSystemBase" and chat.admin_port is None
        chat.crear("juan", "secreto123")
    assert (tmp_path / "chatactors.db").exists()

    port = free_port()
    monkeypatch.setenv("CHATACTORS_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("CHATACTORS_SYSTEM", "multiprocTCPBase")
    monkeypatch.setenv("CHATACTORS_ADMIN_PORT", str(port))
    with Chat(password_profile="cheapest", echo=False) as chat:
        assert (chat.system, chat.admin_port) == ("multiprocTCPBase", port)
        assert chat.database_url == f"sqlite:///{tmp_path}/env.db"
        assert chat.crear("maria", "secreto456").user_id == 1  # a fresh database
    with pytest.raises(ValueError, match="system must be one of"):
        Chat(system="threadedBase")


# -- sessions and processes -------------------------------------------------------------------------
def test_pid_is_the_user_actor_address(chat: Chat) -> None:
    juan, maria = crear(chat, "juan", "maria")
    assert isinstance(juan.pid, Pid) and isinstance(juan.pid.address, ActorAddress)
    assert (juan.pid.kind, juan.pid.id) == ("user", juan.user_id)
    assert str(juan.pid) != str(maria.pid)
    # Readable, as Elixir's #PID<0.123.0>: the user, then where the actor is (its socket on multiproc).
    assert re.fullmatch(rf"#PID<user:{juan.user_id} @\S+>", repr(juan.pid)), repr(juan.pid)
    if chat.system == "multiprocTCPBase":
        assert re.fullmatch(rf"#PID<user:{juan.user_id} @127\.0\.0\.1:\d+>", repr(juan.pid))
    assert juan.pid == chat.whereis(juan.user_id)
    assert str(juan.pid) == str(chat.whereis(juan.user_id))
    juan_os, maria_os = chat.os_pid(juan.pid), chat.os_pid(maria.pid)
    if chat.system == "multiprocTCPBase":
        # Every user actor is its own OS process.
        assert juan_os != os.getpid() and maria_os != os.getpid()
        assert juan_os != maria_os
    else:
        assert juan_os == maria_os == os.getpid()  # embedded: everything in this process
    assert Session.enviar_mensaje is Session.send_message
    assert Session.leer_mensajes is Session.read_messages
    stats = chat.stats()
    assert stats.online_users == 2 and stats.live_users == 2


def test_context_manager_shuts_down(make_chat: Any) -> None:
    with make_chat() as chat:
        juan = chat.crear("juan", "secreto123")
    with pytest.raises(ChatClosed):
        chat.register("maria", "secreto456")
    with pytest.raises(ChatClosed, match="juan's session has ended \\(its chat was shut down\\)$"):
        juan.send_message("juan", "hola")
    with pytest.raises(ChatClosed):
        juan.logout()
    assert repr(juan) == f"<Session juan id={juan.user_id} closed: its chat was shut down>"
    chat.shutdown()  # a second shutdown is harmless


# -- sending and instant delivery (V0.1, V0.3, V0.9) --------------------------------------------------
def test_send_by_username_by_id_and_by_session(chat: Chat) -> None:
    juan, maria = crear(chat, "juan", "maria")
    sent = [
        juan.send_message("maria", "por nombre"),
        juan.send_message(maria.user_id, "por id"),
        juan.enviar_mensaje(maria, "por sesion"),
    ]
    for m, body in zip(sent, ["por nombre", "por id", "por sesion"], strict=True):
        assert isinstance(m, Message)
        assert (m.sender_id, m.sender, m.recipient_id, m.recipient) == (
            juan.user_id,
            "juan",
            maria.user_id,
            "maria",
        )
        assert m.body == body and m.room is None and m.status == ENTREGADO
        assert m.sent_at.tzinfo is not None
    assert len({m.id for m in sent}) == 3
    assert [m.body for m in maria.inbox] == ["por nombre", "por id", "por sesion"]


def test_an_online_recipient_sees_it_the_moment_it_arrives(chat: Chat, collector: Any) -> None:
    (juan,) = crear(chat, "juan")
    chat.register("maria", "secreto456")
    pushed = collector()
    maria = chat.login("maria", "secreto456", on_message=pushed)  # in place before any push
    m = juan.enviar_mensaje("maria", "hola")
    # REPL order: the push is shown before enviar_mensaje returns (the README's session).
    assert pushed.items == [m]
    assert m.status == ENTREGADO
    assert juan.status(m.id) == ENTREGADO
    assert maria.status(m.id) == ENTREGADO


def test_echo_prints_arriving_messages(make_chat: Any, capsys: pytest.CaptureFixture[str]) -> None:
    chat = make_chat(echo=True, announce_login=False)  # a server turns the login line off
    juan, _maria = crear(chat, "juan", "maria")
    assert capsys.readouterr().out == ""
    juan.enviar_mensaje("maria", "hola")
    assert capsys.readouterr().out == "[juan -> maria] hola\n"  # printed before enviar_mensaje returned


def test_every_live_session_of_the_recipient_gets_the_push(chat: Chat, collector: Any) -> None:
    (juan,) = crear(chat, "juan")
    uid = chat.register("maria", "secreto456")
    first, second = chat.login("maria", "secreto456"), chat.login(uid, "secreto456")
    got_first, got_second = collector(), collector()
    first.on_message(got_first)
    second.on_message(got_second)
    m = juan.send_message("maria", "a las dos")
    assert got_first.wait_for(1) == [m] and got_second.wait_for(1) == [m]
    first.logout()
    m2 = juan.send_message("maria", "a la que queda")
    assert got_second.wait_for(2)[1] == m2
    assert m2.status == ENTREGADO  # still online through the second session
    assert got_first.items == [m]


def test_an_offline_recipient_finds_it_in_the_inbox_at_next_login(
    chat: Chat, wait_until: Any, collector: Any
) -> None:
    (juan,) = crear(chat, "juan")
    receipts = collector()
    juan.on_receipt(receipts)
    maria_id = chat.register("maria", "secreto456")
    m = juan.send_message("maria", "cuando vuelvas")
    assert m.status == ENVIADO
    assert juan.status(m.id) == ENVIADO
    maria = chat.login(maria_id, "secreto456")  # V0.7: by id
    assert [x.id for x in maria.login_inbox] == [m.id]
    assert [x.id for x in maria.inbox] == [m.id]
    assert maria.inbox[0].body == "cuando vuelvas"
    # It reached a live session now: the sender's view moves on to 'entregado', and juan is told.
    wait_until(lambda: juan.status(m.id) == ENTREGADO, what="'entregado' after the login")
    (receipt,) = receipts.wait_for(1)
    assert (receipt.message_ids, receipt.status, receipt.by) == ((m.id,), ENTREGADO, "maria")


def test_the_inbox_has_a_message_as_soon_as_its_send_returned(chat: Chat) -> None:
    """Read-your-writes: once juan is told a message was stored, maria's inbox shows it."""
    juan, maria = crear(chat, "juan", "maria")
    for i in range(10):
        m = juan.send_message("maria", f"m{i}")
        assert maria.inbox[-1].id == m.id, f"message {i} acknowledged but not in the inbox yet"


def test_inbox_is_the_last_ten_received_newest_last(chat: Chat) -> None:
    juan, maria, pedro = crear(chat, "juan", "maria", "pedro")
    for i in range(12):
        (juan if i % 2 else pedro).send_message("maria", f"m{i}")
    maria.send_message("juan", "enviado por maria")  # sent, not received: not in her inbox
    expected = [f"m{i}" for i in range(2, 12)]
    assert [m.body for m in maria.inbox] == expected
    again = chat.login("maria", "secreto456")
    assert [m.body for m in again.login_inbox] == expected
    assert [m.body for m in juan.inbox] == ["enviado por maria"]


def test_history_pages_back_with_before(chat: Chat) -> None:
    juan, maria, pedro = crear(chat, "juan", "maria", "pedro")
    bodies = []
    for i in range(7):
        if i % 2:
            maria.send_message("juan", f"m{i}")
        else:
            juan.send_message("maria", f"j{i}")
        bodies.append(f"m{i}" if i % 2 else f"j{i}")
    pedro.send_message("juan", "de pedro")
    assert [m.body for m in juan.history()] == [*bodies, "de pedro"]  # sent and received, newest last
    page = juan.history(limit=3)
    assert [m.body for m in page] == [bodies[-2], bodies[-1], "de pedro"]
    older = juan.history(limit=3, before=page[0].id)
    assert [m.body for m in older] == bodies[-5:-2]
    assert [m.body for m in juan.history(limit=10, before=older[0].id)] == bodies[:-5]
    assert [m.body for m in juan.history(with_user="maria")] == bodies
    assert [m.body for m in maria.history(limit=2, with_user=juan.user_id)] == bodies[-2:]


# -- read receipts (V0.6.1) --------------------------------------------------------------------------
def test_read_messages_marks_read_and_tells_the_sender(chat: Chat, collector: Any) -> None:
    juan, maria, pedro = crear(chat, "juan", "maria", "pedro")
    receipts = collector()
    juan.on_receipt(receipts)
    a = juan.send_message("maria", "uno")
    b = pedro.send_message("maria", "de pedro")
    c = juan.enviar_mensaje("maria", "dos")

    read = maria.leer_mensajes()
    assert [m.id for m in read] == [a.id, b.id, c.id]  # unread, oldest first
    assert [m.body for m in read] == ["uno", "de pedro", "dos"]
    assert {m.status for m in read} == {LEIDO}
    for sender, m in ((juan, a), (pedro, b), (juan, c)):
        assert sender.status(m.id) == LEIDO  # recorded before read_messages returned
        assert maria.status(m.id) == LEIDO
    (receipt,) = receipts.wait_for(1)
    assert isinstance(receipt, Receipt)
    assert receipt.status == LEIDO and receipt.by == "maria" and receipt.by_id == maria.user_id
    assert sorted(receipt.message_ids) == [a.id, c.id]  # only what juan sent

    assert maria.read_messages() == []  # nothing is returned twice
    assert {m.status for m in maria.inbox} == {LEIDO}
    d = juan.send_message("maria", "tres")
    assert [m.id for m in maria.read_messages()] == [d.id]


def test_selective_reads(chat: Chat) -> None:
    """read_messages(with_user=..., up_to=...): only one conversation, only what the reader saw."""
    juan, maria, pedro = crear(chat, "juan", "maria", "pedro")
    j1 = juan.send_message("maria", "j1")
    p1 = pedro.send_message("maria", "p1")
    j2 = juan.send_message("maria", "j2")
    j3 = juan.send_message("maria", "j3")
    assert [m.id for m in maria.read_messages(with_user="juan", up_to=j2.id)] == [j1.id, j2.id]
    assert juan.status(j3.id) == ENTREGADO and pedro.status(p1.id) == ENTREGADO
    assert [m.id for m in maria.read_messages(with_user=pedro.user_id)] == [p1.id]
    assert [m.id for m in maria.read_messages()] == [j3.id]
    with pytest.raises(InvalidMessage):
        maria.read_messages(with_user="juan", room="general")
    with pytest.raises(UserNotFound):
        maria.read_messages(with_user="nadie")


def test_the_receipt_reaches_a_sender_whose_actor_is_not_running(make_chat: Any, wait_until: Any) -> None:
    """The confirmation activates the sender's actor on demand: juan logged out and hibernated."""
    chat = make_chat(idle_timeout=0.05)
    juan, maria = crear(chat, "juan", "maria")
    m = juan.send_message("maria", "hola")
    juan.logout()
    wait_until(lambda: chat.stats().live_users == 0, what="both actors to hibernate")
    assert [x.id for x in maria.read_messages()] == [m.id]
    again = chat.login("juan", "secreto123")
    assert again.status(m.id) == LEIDO


# -- surviving a restart (V0.7) ------------------------------------------------------------------------
def test_state_survives_shutdown_and_a_new_chat(make_chat: Any) -> None:
    first = make_chat()
    juan, maria = crear(first, "juan", "maria")
    read = juan.send_message("maria", "leido antes")
    maria.read_messages()
    unread = juan.send_message("maria", "sin leer")
    token = juan.token
    first.shutdown()  # the REPL closes

    second = make_chat()
    maria2 = second.login(maria.user_id, "secreto456")
    assert [(m.id, m.body) for m in maria2.login_inbox] == [(read.id, "leido antes"), (unread.id, "sin leer")]
    assert maria2.status(read.id) == LEIDO
    assert [m.id for m in maria2.read_messages()] == [unread.id]
    juan2 = second.login(token=token)  # a token outlives the process that issued it
    assert juan2.user_id == juan.user_id
    assert [m.body for m in juan2.history()] == ["leido antes", "sin leer"]
    assert juan2.status(unread.id) == LEIDO


def test_state_survives_stopping_the_user_actor(chat: Chat, wait_until: Any, collector: Any) -> None:
    juan, maria = crear(chat, "juan", "maria")
    m = juan.send_message("maria", "antes del stop")
    old_pid = str(maria.pid)
    assert chat.stop_actor(maria.user_id) is True  # GenServer.stop
    # Session.pid asks the directory, which starts a fresh activation once the old one is gone.
    wait_until(lambda: str(maria.pid) != old_pid, what="a new activation of maria's actor")
    assert [x.id for x in maria.inbox] == [m.id]  # rebuilt from the database
    pushed = collector()
    maria.on_message(pushed)
    m2 = juan.send_message("maria", "despues del stop")
    assert pushed.wait_for(1) == [m2] and m2.status == ENTREGADO
    assert [x.id for x in maria.read_messages()] == [m.id, m2.id]


def test_a_call_right_after_stop_actor_is_answered(make_chat: Any) -> None:
    """Nothing routed while the actor is going away is lost: it goes to the next activation."""
    chat = make_chat(timeout=3.0)
    juan, maria = crear(chat, "juan", "maria")
    juan.send_message("maria", "uno")
    chat.stop_actor(maria.user_id)
    m = juan.send_message("maria", "dos")
    assert [x.body for x in maria.inbox] == ["uno", "dos"]
    chat.stop_actor(juan.user_id)
    assert juan.send_message("maria", "tres").id > m.id


# -- logout ---------------------------------------------------------------------------------------------
def test_logout_takes_the_user_offline(chat: Chat, collector: Any) -> None:
    juan, maria = crear(chat, "juan", "maria")
    assert chat.online([juan.user_id, maria.user_id]) == {juan.user_id, maria.user_id}
    pushed = collector()
    maria.on_message(pushed)
    maria.logout()
    assert chat.online([maria.user_id]) == set()
    m = juan.send_message("maria", "no estas")
    assert m.status == ENVIADO
    with pytest.raises(SessionEnded):
        maria.send_message("juan", "ya sali")
    with pytest.raises(SessionEnded):
        maria.read_messages()
    with pytest.raises(AuthenticationError):
        chat.login(token=maria.token)  # the token was revoked
    back = chat.login("maria", "secreto456")
    assert [x.id for x in back.login_inbox] == [m.id]
    assert pushed.items == []
    back.logout(revoke_token=False)  # a dropped connection that will resume
    assert chat.login(token=back.token).user_id == maria.user_id


def test_every_call_on_a_closed_session_raises_session_ended(chat: Chat) -> None:
    """Nothing answers for a session after logout: no inbox, no pid (which would start the actor
    again), no second logout passing silently."""
    juan, maria = crear(chat, "juan", "maria")
    m = juan.send_message("maria", "hola")
    maria.logout()
    chat.stop_actor(maria.user_id)
    activations = chat.stats().activations
    calls: dict[str, Any] = {
        "inbox": lambda: maria.inbox,
        "pid": lambda: maria.pid,
        "logout": maria.logout,
        "send_message": lambda: maria.send_message("juan", "hola"),
        "send_room": lambda: maria.send_room("general", "hola"),
        "read_messages": maria.read_messages,
        "history": maria.history,
        "status": lambda: maria.status(m.id),
        "read_by": lambda: maria.read_by(m.id),
        "rooms": maria.rooms,
        "members": lambda: maria.members("general"),
        "search": lambda: maria.search("ju"),
        "create_room": lambda: maria.create_room("general"),
        "join": lambda: maria.join("general"),
        "leave": lambda: maria.leave("general"),
        "on_message": lambda: maria.on_message(print),
        "on_receipt": lambda: maria.on_receipt(None),
        "on_read": lambda: maria.on_read(None),
        "on_end": lambda: maria.on_end(None),
    }
    for name, call in calls.items():
        with pytest.raises(SessionEnded, match="maria's session has ended \\(logged out\\); log in again"):
            call()
            pytest.fail(f"{name} answered on a closed session")
    assert chat.stats().activations == activations  # maria.pid did not start her actor again
    assert repr(maria) == f"<Session maria id={maria.user_id} closed: logged out>"
    assert repr(juan) == f"<Session juan id={juan.user_id} open>"


def test_a_session_is_a_context_manager_that_logs_out(chat: Chat, collector: Any) -> None:
    """The README's second look at maria's inbox: the extra session ends with the block, so later
    messages reach maria once, not once per forgotten session."""
    juan, maria = crear(chat, "juan", "maria")
    first = juan.send_message("maria", "hola")
    mine, extra = collector(), collector()
    maria.on_message(mine)
    with chat.login(maria.user_id, PASSWORDS["maria"], on_message=extra) as again:
        assert again.inbox == [first.with_status(ENTREGADO)]
    assert not again.active and again.ended == "logged out"
    second = juan.send_message("maria", "otra")
    assert mine.wait_for(1) == [second]
    juan.send_message("juan", "a mi mismo")  # flushes: every push before it was dispatched
    assert extra.items == []
    assert chat.online([maria.user_id]) == {maria.user_id}  # her first session is still open

    with pytest.raises(RuntimeError, match="boom"), chat.login("juan", PASSWORDS["juan"]) as failing:
        raise RuntimeError("boom")
    assert not failing.active  # logged out on the way out of a failing block too
    with chat.login("juan", PASSWORDS["juan"]) as early:
        early.logout()  # logged out inside the block: leaving it does not log out twice
    with chat.login("juan", PASSWORDS["juan"]) as last:
        chat.shutdown()  # the chat went away inside the block: leaving it raises nothing more
    assert not last.active


def test_a_chat_repr_shows_its_state(make_chat: Any) -> None:
    chat = make_chat()
    where = f"{chat.system} {chat.database_url}"
    assert repr(chat) == f"<Chat {where} open, 0 users logged in here>"
    juan, maria = crear(chat, "juan", "maria")
    chat.login("juan", PASSWORDS["juan"])  # a second session of juan's: still one user
    assert repr(chat) == f"<Chat {where} open, 2 users logged in here>"
    maria.logout()
    assert repr(chat) == f"<Chat {where} open, 1 user logged in here>"
    chat.shutdown()
    assert repr(chat) == f"<Chat {where} closed>"


def test_callbacks_can_be_replaced_and_removed(chat: Chat, collector: Any) -> None:
    juan, maria = crear(chat, "juan", "maria")
    first, second = collector(), collector()
    maria.on_message(first)
    juan.send_message("maria", "1")
    maria.on_message(second)
    juan.send_message("maria", "2")
    maria.on_message(None)
    juan.send_message("maria", "3")
    juan.send_message("juan", "a mi mismo")  # flushes: everything before it was dispatched
    assert [m.body for m in first.items] == ["1"]
    assert [m.body for m in second.items] == ["2"]

    def broken(message: Message) -> None:
        raise RuntimeError("user code failed")

    maria.on_message(broken)
    juan.send_message("maria", "4")  # the callback raises in the dispatcher thread: logged, not fatal
    third = collector()
    maria.on_message(third)
    m = juan.send_message("maria", "5")
    assert third.wait_for(1) == [m]


# -- names ------------------------------------------------------------------------------------------
ROADMAP_ALIASES = {
    Chat: {"crear": "create"},
    Session: {"enviar_mensaje": "send_message", "leer_mensajes": "read_messages"},
}


@pytest.mark.parametrize("cls", list(ROADMAP_ALIASES), ids=lambda c: c.__name__)
def test_english_names_are_canonical_and_spanish_verbs_only_alias_them(cls: type) -> None:
    """Each alias is the English method itself (named in English); no English name aliases a Spanish one."""
    aliases = {
        name: value.__name__
        for name, value in vars(cls).items()
        if inspect.isfunction(value) and value.__name__ != name and not name.startswith("__")
    }
    assert aliases == ROADMAP_ALIASES[cls]
    for spanish, english in aliases.items():
        assert getattr(cls, spanish) is getattr(cls, english)


def test_the_spanish_aliases_sit_in_one_marked_block_at_the_end_of_each_class() -> None:
    modules = {inspect.getmodule(cls) for cls in ROADMAP_ALIASES}  # Chat and Session live apart
    source = "".join(inspect.getsource(m) for m in modules)  # type: ignore[arg-type]
    for cls, aliases in ROADMAP_ALIASES.items():
        body = inspect.getsource(cls)
        marker = body.index("# -- the roadmap's Spanish verbs")
        after = body[marker:]
        assert all(f"    {name} = " in after for name in aliases)
        assert "def " not in after  # nothing but the aliases follows the marker
    assert source.count("# -- the roadmap's Spanish verbs") == len(ROADMAP_ALIASES)


def test_crear_registers_then_logs_in_as_the_roadmap_uses_it(chat: Chat) -> None:
    juan = chat.crear("juan", PASSWORDS["juan"])
    again = chat.crear("juan", PASSWORDS["juan"])  # a known name: logs in, no error
    assert juan.user_id == again.user_id == chat.lookup("juan").id
    with pytest.raises(AuthenticationError):
        chat.crear("juan", "not the password")  # never takes over an account
