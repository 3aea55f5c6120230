"""The chat page in a real headless browser: Playwright for Python driving Debian's Chromium.

Two browser contexts (two people, separate storage) register, open a conversation, exchange messages
and watch the ticks go from delivered to read. Screenshots land in ``test-artifacts/``.
With ``CI=true`` this test must run: a missing Chromium or Playwright fails it instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import hold_tokens_back
from test_server import Client, ServerThread

from chatactors import Chat
from chatactors.gateway import Limits

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "secreto123"


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the browser test must run, but {why}")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright; never `playwright install`)")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def chat_site(sqlite_url: str) -> Iterator[tuple[str, Chat]]:
    chat = Chat(database_url=sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat).start()
    yield f"http://127.0.0.1:{server.gateway.port}/", chat
    server.stop()
    chat.shutdown()


@pytest.fixture
def site(chat_site: tuple[str, Chat]) -> str:
    return chat_site[0]


def _register(page: Any, site: str, username: str) -> None:
    page.goto(site)
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#register-btn")
    page.wait_for_selector("#chat-view:not([hidden])")
    assert page.text_content("#me") == username


def test_two_people_chat_in_the_browser(browser: Any, site: str) -> None:
    from playwright.sync_api import expect

    juan = browser.new_context(viewport={"width": 900, "height": 560}).new_page()
    maria = browser.new_context(viewport={"width": 900, "height": 560}).new_page()
    _register(juan, site, "juan")
    _register(maria, site, "maria")

    # juan opens a conversation with maria and writes: delivered at once (two grey ticks)
    juan.fill("#new-conv", "maria")
    juan.press("#new-conv", "Enter")
    juan.fill("#body", "hola maria")
    juan.press("#body", "Enter")
    mine = juan.locator("#messages .msg.mine").last
    expect(mine.locator(".body")).to_have_text("hola maria")
    expect(mine.locator(".tick")).to_have_attribute("data-status", "entregado", timeout=10_000)

    # maria sees the conversation appear with an unread badge; opening it reads it: juan's ticks go blue
    conv = maria.locator('#convs li[data-key="@juan"]')
    expect(conv.locator(".badge")).to_have_text("1", timeout=10_000)
    conv.click()
    expect(maria.locator("#messages .msg .body").last).to_have_text("hola maria")
    expect(conv.locator(".badge")).to_have_count(0)
    expect(mine.locator(".tick")).to_have_attribute("data-status", "leido", timeout=10_000)

    # maria answers; juan has the conversation open, so it shows at once and is read at once
    maria.fill("#body", "hola juan, ¿qué tal?")
    maria.press("#body", "Enter")
    expect(juan.locator("#messages .msg:not(.mine) .body").last).to_have_text(
        "hola juan, ¿qué tal?", timeout=10_000
    )
    expect(maria.locator("#messages .msg.mine .tick").last).to_have_attribute(
        "data-status", "leido", timeout=10_000
    )
    expect(juan.locator('#convs li[data-key="@maria"] .presence.online')).to_have_count(1, timeout=10_000)

    ARTIFACTS.mkdir(exist_ok=True)
    juan.screenshot(path=str(ARTIFACTS / "browser-juan.png"))
    maria.screenshot(path=str(ARTIFACTS / "browser-maria.png"))

    # a reload resumes the session with the stored token: no password, same conversation
    juan.reload()
    juan.wait_for_selector("#chat-view:not([hidden])")
    expect(juan.locator('#convs li[data-key="@maria"]')).to_have_count(1, timeout=10_000)
    juan.click("#logout")
    juan.wait_for_selector("#login-view:not([hidden])")


def test_a_reload_held_back_by_the_token_throttle_waits_and_resumes(
    browser: Any, chat_site: tuple[str, Chat]
) -> None:
    """Made-up tokens from the page's address hold token logins from there back a moment: the
    page says so and resumes once the wait is over (it was left blank, and never tried again)."""
    from playwright.sync_api import expect

    site, chat = chat_site
    juan = browser.new_context().new_page()
    _register(juan, site, "juan")
    hold_tokens_back(chat, "127.0.0.1")
    juan.reload()
    expect(juan.locator("#conn")).to_contain_text("resuming in", timeout=10_000)
    juan.wait_for_selector("#chat-view:not([hidden])", timeout=30_000)
    assert juan.text_content("#me") == "juan"


def test_a_tab_logged_out_past_max_sessions_leaves_the_shared_token_to_the_others(
    browser: Any, sqlite_url: str
) -> None:
    """Two tabs of one browser share the stored token; with one session allowed, the second tab's
    resume logs the first out. Its token is still valid, so the first tab keeps it: a reload
    resumes without a password (and logs the other tab out in turn)."""
    chat = Chat(database_url=sqlite_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat, limits=Limits(max_sessions=1)).start()
    try:
        site = f"http://127.0.0.1:{server.gateway.port}/"
        context = browser.new_context()
        first, second = context.new_page(), context.new_page()
        _register(first, site, "juan")
        second.goto(site)  # the stored token: a second session of juan
        second.wait_for_selector("#chat-view:not([hidden])")
        first.wait_for_selector("#login-view:not([hidden])")
        assert first.evaluate("localStorage.getItem('chatactors.token')")
        first.reload()
        first.wait_for_selector("#chat-view:not([hidden])")
        second.wait_for_selector("#login-view:not([hidden])")
    finally:
        server.stop()
        chat.shutdown()


def test_opening_one_conversation_leaves_the_others_unread(browser: Any, site: str) -> None:
    """Ticks go enviado -> entregado (she logs in) -> leido (she opens it); pedro's badge stays."""
    from playwright.sync_api import expect

    juan = browser.new_context().new_page()
    maria = browser.new_context().new_page()
    _register(juan, site, "juan")
    _register(maria, site, "maria")
    maria.click("#logout")  # maria goes offline
    maria.wait_for_selector("#login-view:not([hidden])")
    pedro = Client(site.replace("http://", "ws://"))
    try:
        pedro.register("pedro")

        juan.fill("#new-conv", "maria")
        juan.press("#new-conv", "Enter")
        juan.fill("#body", "¿estás?")
        juan.press("#body", "Enter")
        tick = juan.locator("#messages .msg.mine .tick").last
        expect(tick).to_have_attribute("data-status", "enviado", timeout=10_000)  # one tick
        pedro.send("send", to="maria", body="de pedro", client_id="p1")
        from_pedro = pedro.expect("sent", client_id="p1")["id"]

        maria.fill("#username", "maria")
        maria.fill("#password", PASSWORD)
        maria.click("#login-btn")
        maria.wait_for_selector("#chat-view:not([hidden])")
        expect(tick).to_have_attribute("data-status", "entregado", timeout=10_000)  # she is back
        assert pedro.expect("receipt", id=from_pedro)["status"] == "entregado"
        from_juan = maria.locator('#convs li[data-key="@juan"]')
        from_pedro_conv = maria.locator('#convs li[data-key="@pedro"]')
        expect(from_juan.locator(".badge")).to_have_text("1", timeout=10_000)
        expect(from_pedro_conv.locator(".badge")).to_have_text("1", timeout=10_000)

        from_juan.click()  # reads juan's conversation, and only that
        expect(maria.locator("#messages .msg .body").last).to_have_text("¿estás?")
        expect(tick).to_have_attribute("data-status", "leido", timeout=10_000)
        expect(from_juan.locator(".badge")).to_have_count(0)
        expect(from_pedro_conv.locator(".badge")).to_have_text("1")

        # the server agrees: after a reload pedro's message is still unread, juan's is not
        maria.reload()
        expect(from_pedro_conv.locator(".badge")).to_have_text("1", timeout=10_000)
        expect(from_juan).to_have_count(1)
        expect(from_juan.locator(".badge")).to_have_count(0)
        pedro.send("history", **{"with": "maria"})
        assert [m["status"] for m in pedro.expect("history")["messages"]] == ["entregado"]
        ARTIFACTS.mkdir(exist_ok=True)
        maria.screenshot(path=str(ARTIFACTS / "browser-unread.png"))
    finally:
        pedro.close()


def test_rooms_in_the_browser(browser: Any, site: str) -> None:
    from playwright.sync_api import expect

    juan = browser.new_context().new_page()
    maria = browser.new_context().new_page()
    _register(juan, site, "juan")
    _register(maria, site, "maria")
    juan.fill("#new-conv", "#sala")  # no such room: the page asks before creating it
    juan.press("#new-conv", "Enter")
    expect(juan.locator("#create-room-text")).to_have_text(
        "There is no room #sala. Create room #sala?", timeout=10_000
    )
    juan.click("#create-room-yes")
    expect(juan.locator("#pane-title")).to_have_text("#sala", timeout=10_000)
    maria.fill("#new-conv", "#sala")  # it exists now: joined without a question
    maria.press("#new-conv", "Enter")
    expect(maria.locator("#pane-title")).to_have_text("#sala", timeout=10_000)
    expect(maria.locator("#create-room")).to_be_hidden()
    juan.fill("#body", "hola sala")
    juan.press("#body", "Enter")
    expect(maria.locator("#messages .msg .body").last).to_have_text("hola sala", timeout=10_000)
    expect(maria.locator("#messages .msg .who").last).to_have_text("juan")
    ARTIFACTS.mkdir(exist_ok=True)
    maria.screenshot(path=str(ARTIFACTS / "browser-room.png"))


# Each payload, if it ever ran, would set window.__xss (or open a dialog): the page must show it as text.
XSS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    "<svg onload=window.__xss=3></svg>",
    '"><iframe src="javascript:parent.__xss=4"></iframe>',
    '<a href="javascript:window.__xss=5" id=xss-link>clic</a>',
    "</div><img src=x onerror=alert(6)>",
    "<details open ontoggle=window.__xss=7>",
    "<body onload=window.__xss=8>",
    "{{constructor.constructor('window.__xss=9')()}}",
    "${window.__xss=10}",
    "<style>@import 'javascript:window.__xss=11';</style>",
    "&lt;img src=x onerror=window.__xss=12&gt;",
]


def test_the_page_shows_hostile_text_as_text(browser: Any, site: str) -> None:
    """Bodies, error details and one's own messages with HTML and script in them run nothing."""
    from playwright.sync_api import expect

    maria = browser.new_context().new_page()
    dialogs: list[str] = []
    maria.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _register(maria, site, "maria")
    mallory = Client(site.replace("http://", "ws://"))
    try:
        mallory.register("mallory")
        for i, payload in enumerate(XSS):
            mallory.send("send", to="maria", body=payload, client_id=f"x{i}")
            mallory.expect("sent", client_id=f"x{i}")
        conv = maria.locator('#convs li[data-key="@mallory"]')
        expect(conv.locator(".badge")).to_have_text(str(len(XSS)), timeout=10_000)
        conv.click()
        bodies = maria.locator("#messages .msg .body")
        expect(bodies).to_have_count(len(XSS), timeout=10_000)
        assert bodies.all_text_contents() == XSS  # shown exactly as typed

        maria.fill("#body", XSS[0])  # her own message, echoed back by the server
        maria.press("#body", "Enter")
        expect(maria.locator("#messages .msg.mine .body").last).to_have_text(XSS[0], timeout=10_000)
        maria.fill("#new-conv", "<img src=x onerror=window.__xss=13>")  # a name the server refuses
        maria.press("#new-conv", "Enter")
        maria.fill("#new-conv", "maria")
        maria.press("#new-conv", "Enter")

        messages = maria.locator("#messages")
        for tag in ("img", "script", "svg", "iframe", "a", "details", "style", "body"):
            expect(messages.locator(tag)).to_have_count(0)
        assert maria.evaluate("window.__xss") is None
        assert dialogs == []
        ARTIFACTS.mkdir(exist_ok=True)
        maria.screenshot(path=str(ARTIFACTS / "browser-xss.png"))
    finally:
        mallory.close()
