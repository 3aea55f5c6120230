"""The frames the chat page needs beyond chatting: a room's members, finding names by prefix,
typing notices, and history pages further back. Real clients against a real server, like
test_server.py (whose harness and fixtures this file reuses), bad input included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_server import PASSWORD, Client, ServerThread
from test_server import clients as clients  # noqa: F401  (fixtures, found by name)
from test_server import lite as lite  # noqa: F401
from test_server import make_server as make_server  # noqa: F401
from test_server import server as server  # noqa: F401

from chatactors.gateway import Limits
from chatactors.gateway.limits import TypingGate

Clients = Callable[[str], Client]


def no_frames_of(client: Client, kind: str) -> bool:
    """Nothing of ``kind`` reached ``client`` up to now (a ping answered after it proves the order)."""
    client.alive()
    return not [f for f in client.frames if f["type"] == kind]


# -- search ---------------------------------------------------------------------------------------------
def test_search_finds_users_and_rooms_by_prefix(server: ServerThread, clients: Clients) -> None:
    juan, maria = clients(server.url), clients(server.url)
    juan.register("juan")
    maria.register("maria")
    juana = server.gateway.chat.register("Juana", PASSWORD)  # never logged in: offline
    server.gateway.chat.register("xjuan", PASSWORD)  # holds the prefix, does not start with it
    juan.send("create_room", room="juegos")
    juan.expect("joined")

    maria.send("search", prefix="JU")
    assert maria.expect("results") == {
        "type": "results",
        "prefix": "JU",
        "users": [
            {"id": juan.user_id, "username": "juan", "online": True},
            {"id": juana, "username": "Juana", "online": False},
        ],
        "rooms": [{"name": "juegos"}],
    }
    maria.send("search", prefix="ju", limit=1)
    assert [u["username"] for u in maria.expect("results", prefix="ju")["users"]] == ["juan"]
    maria.send("search", prefix="zz")
    assert maria.expect("results", prefix="zz") == {
        "type": "results",
        "prefix": "zz",
        "users": [],
        "rooms": [],
    }


def test_search_takes_wildcards_literally_and_refuses_bad_input(lite: ServerThread, clients: Clients) -> None:
    anon = clients(lite.url)
    anon.send("search", prefix="ju")
    assert anon.error("not_logged_in", request="search")
    for name in ("a_b", "axb"):
        lite.gateway.chat.register(name, PASSWORD)
    bad = clients(lite.url)
    bad.register("zoe")
    bad.send("search", prefix="a_")
    assert [u["username"] for u in bad.expect("results")["users"]] == ["a_b"]  # "_" is no wildcard here
    for fields in (
        {},
        {"prefix": ""},
        {"prefix": "%"},
        {"prefix": "a%"},
        {"prefix": "ju an"},
        {"prefix": "x" * 33},
        {"prefix": 42},
        {"prefix": True},
        {"prefix": ["ju"]},
        {"prefix": "ju\u0000"},
        {"prefix": "ju", "limit": 0},
        {"prefix": "ju", "limit": 21},
        {"prefix": "ju", "limit": "5"},
        {"prefix": "ju", "limit": True},
    ):
        bad.send("search", **fields)
        assert bad.error("invalid", request="search"), fields
    bad.alive()


# -- members --------------------------------------------------------------------------------------------
def test_members_of_a_room_with_their_presence(server: ServerThread, clients: Clients) -> None:
    juan, maria, pedro, ana = (clients(server.url) for _ in range(4))
    for client, name in ((juan, "juan"), (maria, "maria"), (pedro, "pedro"), (ana, "ana")):
        client.register(name)
    juan.send("create_room", room="Sala")
    juan.expect("joined")
    for member in (maria, pedro):
        member.send("join", room="sala")
        assert member.expect("joined")["room"] == "Sala"  # the room's own name, whatever the case typed
    pedro.send("logout")
    pedro.expect("logged_out")

    maria.send("members", room="sala")
    assert maria.expect("members") == {
        "type": "members",
        "room": "sala",
        "members": [
            {"id": juan.user_id, "username": "juan", "online": True},
            {"id": maria.user_id, "username": "maria", "online": True},
            {"id": pedro.user_id, "username": "pedro", "online": False},
        ],
    }
    ana.send("members", room="Sala")
    assert ana.error("not_a_member", request="members", room="Sala")
    ana.send("members", room="nada")
    assert ana.error("room_not_found", request="members", room="nada")
    for fields in ({}, {"room": 7}, {"room": ""}, {"room": "a b"}, {"room": "x\u0000y"}):
        ana.send("members", **fields)
        assert ana.error("invalid", request="members"), fields

    maria.send("leave", room="sala")  # the page's "leave room"
    maria.expect("left")
    maria.send("members", room="sala")
    assert maria.error("not_a_member", request="members")


# -- typing ---------------------------------------------------------------------------------------------
def test_typing_reaches_the_peer_and_the_room_and_is_never_stored(
    make_server: Callable[..., ServerThread], sqlite_url: str, clients: Clients
) -> None:
    now = [1000.0]
    lite = make_server(sqlite_url, limits=Limits(typing_interval=2.0), clock=lambda: now[0])
    juan, maria, maria_phone, pedro = (clients(lite.url) for _ in range(4))
    juan.register("juan")
    maria.register("maria")
    maria_phone.login("maria")
    pedro.register("pedro")

    juan.send("typing", to="maria")
    expected: dict[str, Any] = {"type": "typing", "from": "juan", "from_id": juan.user_id}
    assert maria.expect("typing") == expected
    assert maria_phone.expect("typing") == expected  # every device of hers
    assert no_frames_of(juan, "typing") and no_frames_of(pedro, "typing")  # no answer, nobody else

    juan.send("typing", to="maria")  # within the interval: dropped without a word
    assert no_frames_of(juan, "error") and no_frames_of(maria, "typing")
    now[0] += 2.0
    juan.send("typing", to="MARIA")
    assert maria.expect("typing") == expected

    juan.send("create_room", room="sala")
    juan.expect("joined")
    pedro.send("join", room="sala")
    pedro.expect("joined")
    pedro.send("typing", room="sala")
    assert juan.expect("typing") == {
        "type": "typing",
        "from": "pedro",
        "from_id": pedro.user_id,
        "room": "sala",
    }
    assert no_frames_of(pedro, "typing") and no_frames_of(maria, "typing")  # not the typist, not outsiders

    juan.send("history", limit=200)
    assert juan.expect("history")["messages"] == []  # nothing of it was stored
    juan.send("history", room="sala")
    assert juan.expect("history")["messages"] == []


def test_typing_refuses_bad_input(lite: ServerThread, clients: Clients) -> None:
    anon = clients(lite.url)
    anon.send("typing", to="ana")
    assert anon.error("not_logged_in", request="typing")
    bad = clients(lite.url)
    bad.register("zoe")
    bad.send("typing", to="nadie")
    assert bad.error("user_not_found", request="typing", to="nadie")
    bad.send("typing", room="nada")
    assert bad.error("room_not_found", request="typing", room="nada")
    lite.gateway.chat.create("ana", PASSWORD).create_room("ajena")
    bad.send("typing", room="ajena")
    assert bad.error("not_a_member", request="typing", room="ajena")
    for fields in (
        {},
        {"to": "ana", "room": "ajena"},
        {"to": True},
        {"to": 0},
        {"to": ["ana"]},
        {"room": 5},
        {"to": "an\u0000a"},
    ):
        bad.send("typing", **fields)
        assert bad.error("invalid", request="typing"), fields
    bad.send("typing", to="zoe")  # to oneself: nobody to tell
    assert no_frames_of(bad, "typing") and no_frames_of(bad, "error")


def test_typing_gate() -> None:
    now = [0.0]
    gate = TypingGate(interval=2.0, clock=lambda: now[0], remember=3)
    assert [gate.allow("maria"), gate.allow("maria"), gate.allow("pedro")] == [True, False, True]
    now[0] = 1.9
    assert gate.allow("maria") is False
    now[0] = 2.0
    assert gate.allow("maria") is True
    for name in ("a", "b", "c", "d", "e"):  # one new conversation after another: it stays bounded
        assert gate.allow(name) is True
    assert len(gate.last) <= 3
    assert gate.allow("e") is False  # the newest are still remembered


# -- history, further back ----------------------------------------------------------------------------
def test_history_pages_back_with_before(lite: ServerThread, clients: Clients) -> None:
    juan, maria = clients(lite.url), clients(lite.url)
    juan.register("juan")
    maria.register("maria")
    ids = []
    for n in range(5):
        juan.send("send", to="maria", body=f"m{n}", client_id=f"c{n}")
        ids.append(juan.expect("sent", client_id=f"c{n}")["id"])
    maria.send("history", limit=2, **{"with": "juan"})
    newest = maria.expect("history")
    assert [m["id"] for m in newest["messages"]] == ids[3:] and "before" not in newest
    maria.send("history", limit=2, before=ids[3], **{"with": "juan"})
    older = maria.expect("history")
    assert ([m["id"] for m in older["messages"]], older["before"]) == (ids[1:3], ids[3])
    maria.send("history", limit=2, before=ids[1], **{"with": "juan"})
    assert [m["body"] for m in maria.expect("history")["messages"]] == ["m0"]  # fewer: the start
    for before in (0, -1, "5", True, 2**63):
        maria.send("history", limit=2, before=before, **{"with": "juan"})
        assert maria.error("invalid", request="history"), before
    maria.send("create_room", room="sala")
    maria.expect("joined")
    maria.send("history", room="sala", **{"with": "juan"})  # which one? neither: the room won unsaid
    assert maria.error("invalid", request="history", room="sala")


def test_every_frame_the_server_answers_is_documented(lite: ServerThread) -> None:
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    missing = [kind for kind in lite.gateway._handlers if f"### `{kind}`" not in protocol]
    assert missing == []


def test_the_page_never_parses_what_it_shows_as_html() -> None:
    """Bodies, names, search results, members, typing notices and the 'Create room #x?' prompt all
    reach the page as text (textContent); no sink that parses HTML or runs code may appear in it, so
    none of them can carry a script (test_browser.py checks payloads in bodies in a real browser)."""
    static = Path(__file__).resolve().parent.parent / "chatactors" / "static"
    comment = re.compile(r"(^|\s)//(\s.*)?$")  # "// why", not the "//" of "ws://"
    script = "\n".join(comment.sub("", line) for line in (static / "app.js").read_text().splitlines())
    sinks = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
        'setTimeout("',
        'setAttribute("on',
        ".href =",
        ".src =",
        "srcdoc",
        "createContextualFragment",
        "DOMParser",
    )
    assert [sink for sink in sinks if sink in script] == []
    assert "textContent" in script  # how it does show text
    page = (static / "index.html").read_text()
    assert page.count("<script") == 1 and '<script src="/app.js" defer></script>' in page  # no inline code
