"""The chat page on a phone (390 px) and on a desktop (1280 px), in a real headless Chromium.

Each test runs at both widths: the two-screen layout, older history on scroll up with dates between
days, a room's members and leaving it, finding users and rooms by prefix, the typing indicator,
presence in the list, and no dead conversation for an unknown name nor a room created by a typo.
Screenshots land in ``test-artifacts/page-*.png``. With ``CI=true`` these must run (see test_browser.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_browser import ARTIFACTS, PASSWORD
from test_browser import browser as browser  # noqa: F401  (fixtures, found by name)
from test_browser import chat_site as chat_site  # noqa: F401
from test_browser import site as site  # noqa: F401
from test_server import Client
from test_server import clients as clients  # noqa: F401

from chatactors.core.model import ENTREGADO
from chatactors.storage import Mensaje, Store

WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


@pytest.fixture(params=list(WIDTHS))
def width(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_page(browser: Any, site: str, width: str) -> Iterator[Any]:
    """``open_page(username)``: a new person (own storage) registered on the page at this width."""

    def open_as(username: str) -> Any:
        context = browser.new_context(viewport=WIDTHS[width], locale="en-US", timezone_id="UTC")
        page = context.new_page()
        page.goto(site)
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("#register-btn")
        page.wait_for_selector("#chat-view:not([hidden])")
        return page

    yield open_as


@pytest.fixture
def people(site: str, clients: Callable[[str], Client]) -> Callable[[str], Client]:
    """``people(name)``: a protocol client registered as ``name`` (closed afterwards)."""

    def person(name: str) -> Client:
        client = clients(site.replace("http://", "ws://"))
        client.register(name)
        return client

    return person


def shot(page: Any, name: str, width: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}-{width}.png"))


def find(page: Any, text: str) -> None:
    page.fill("#new-conv", text)
    page.press("#new-conv", "Enter")


def test_a_phone_gets_two_screens_and_a_desktop_one(open_page: Any, people: Any, width: str) -> None:
    from playwright.sync_api import expect

    people("maria")
    juan = open_page("juan")
    phone = width == "phone"
    expect(juan.locator("#list-pane")).to_be_visible()
    if phone:  # the list alone until a conversation is opened
        expect(juan.locator("#conv-pane")).to_be_hidden()
    else:
        expect(juan.locator("#conv-pane")).to_be_visible()

    find(juan, "maria")
    expect(juan.locator("#pane-title")).to_have_text("maria", timeout=10_000)
    body = "hola maria, ¿vienes esta noche a la cena en casa de pedro? trae postre si puedes"
    juan.fill("#body", body)
    juan.press("#body", "Enter")
    bubble = juan.locator("#messages .msg.mine").last
    expect(bubble.locator(".tick")).to_have_attribute("data-status", "entregado", timeout=10_000)

    view = WIDTHS[width]["width"]
    # Measured in one synchronous read of the page: every event (maria's read receipt, say) renders
    # the pane again, and separate reads could straddle a render and find the bubble replaced.
    sizes = juan.evaluate(
        """() => {
            const bubble = [...document.querySelectorAll("#messages .msg.mine")].pop();
            const text = bubble.querySelector(".body");
            return {
                width: bubble.getBoundingClientRect().width,
                height: text.getBoundingClientRect().height,
                line: parseFloat(getComputedStyle(text).lineHeight),
            };
        }"""
    )
    assert sizes["width"] > (230 if phone else 400)  # a bubble, not a one-word column
    assert sizes["height"] < 5 * sizes["line"]  # a few lines, not one word each
    composer = juan.locator("#body").bounding_box()
    assert composer is not None and composer["width"] > 0.6 * (view if phone else view - 280)
    if phone:
        expect(juan.locator("#list-pane")).to_be_hidden()  # the conversation has the whole screen
        expect(juan.locator("#back")).to_be_visible()
    else:
        expect(juan.locator("#list-pane")).to_be_visible()  # the list stays beside it
        expect(juan.locator("#back")).to_be_hidden()
    shot(juan, "conversation", width)

    if phone:
        juan.click("#back")
        expect(juan.locator("#list-pane")).to_be_visible()
        expect(juan.locator("#conv-pane")).to_be_hidden()
        expect(juan.locator('#convs li[data-key="@maria"] .conv-last')).to_have_text(f"you: {body}")
        shot(juan, "list", width)
        juan.click('#convs li[data-key="@maria"]')
        expect(juan.locator("#conv-pane")).to_be_visible()
        juan.go_back()  # the phone's own back gesture does the same
        expect(juan.locator("#list-pane")).to_be_visible()
        expect(juan.locator("#conv-pane")).to_be_hidden()
        expect(juan.locator("#chat-view")).to_be_visible()  # still on the page, not before it


def test_older_history_loads_on_scroll_up_with_dates_between_days(
    open_page: Any, people: Any, site: str, sqlite_url: str, width: str
) -> None:
    from playwright.sync_api import expect

    pedro = people("pedro")
    maria = open_page("maria")
    store = Store(sqlite_url)  # the chat's own database: 120 messages over two days, without 120 sends
    pedro_info, maria_info = store.user("pedro"), store.user("maria")
    assert pedro_info is not None and maria_info is not None
    start = datetime(2025, 3, 14, 22, 0)
    rows = [
        {
            "sender": pedro_info.id,
            "recipient": maria_info.id,
            "body": f"m{n:03d}",
            "created_at": start + timedelta(minutes=2 * n),  # m000-m059 on the 14th, the rest on the 15th
            "status": ENTREGADO,
        }
        for n in range(120)
    ]
    store.run(lambda: Mensaje.insert_many(rows).execute())
    pedro.send("send", to="maria", body="y hoy", client_id="today")
    pedro.expect("sent", client_id="today")

    conv = maria.locator('#convs li[data-key="@pedro"]')
    expect(conv).to_have_count(1, timeout=10_000)
    conv.click()
    bodies = maria.locator("#messages .msg .body")
    expect(bodies.last).to_have_text("y hoy", timeout=10_000)
    expect(bodies).to_have_count(50)  # one page: the newest
    messages = maria.locator("#messages")
    for shown in (100, 121):
        top = maria.locator("#messages .msg").first.get_attribute("data-id")
        messages.evaluate("box => { box.scrollTop = 0; }")  # the user scrolls to the top
        expect(bodies).to_have_count(shown, timeout=10_000)
        # the view stays on what was read, inside the box, instead of jumping to the oldest. Waited
        # for in the page (the list may be drawn again meanwhile: a receipt, presence), not read once.
        maria.wait_for_function(
            """id => {
                const box = document.querySelector('#messages');
                const m = box && box.querySelector(`.msg[data-id="${id}"]`);
                if (!m) return false;
                const offset = m.getBoundingClientRect().top - box.getBoundingClientRect().top;
                return offset >= 0 && offset < box.clientHeight;
            }""",
            arg=top,
            timeout=10_000,
        )
    messages.evaluate("box => { box.scrollTop = 0; }")
    expect(maria.locator("#messages .older.start")).to_have_text("Start of the conversation", timeout=10_000)
    assert bodies.first.text_content() == "m000"
    expect(bodies).to_have_count(121)  # every message once

    days = maria.locator("#messages .day")
    expect(days).to_have_count(3)
    assert [days.nth(i).get_attribute("data-day") for i in range(3)][:2] == ["2025-03-14", "2025-03-15"]
    assert days.all_text_contents() == ["Fri, Mar 14, 2025", "Sat, Mar 15, 2025", "Today"]
    shot(maria, "history", width)


def test_a_rooms_members_and_leaving_it(open_page: Any, people: Any, width: str) -> None:
    from playwright.sync_api import expect

    juan = open_page("juan")
    find(juan, "#sala")
    juan.click("#create-room-yes")
    expect(juan.locator("#pane-title")).to_have_text("#sala", timeout=10_000)
    maria, pedro = people("maria"), people("pedro")
    for member in (maria, pedro):
        member.send("join", room="sala")
        member.expect("joined")
    pedro.send("logout")  # pedro stays a member, offline
    pedro.expect("logged_out")

    juan.click("#members-btn")
    members = juan.locator("#members li")
    expect(members).to_have_count(3, timeout=10_000)
    assert members.all_text_contents() == ["juan (you)", "maria", "pedro"]
    expect(juan.locator('#members li[data-name="maria"] .presence.online')).to_have_count(1)
    expect(juan.locator('#members li[data-name="pedro"] .presence.online')).to_have_count(0)
    expect(juan.locator("#pane-sub")).to_have_text("3 members · 2 online")
    shot(juan, "members", width)

    juan.click("#leave")
    expect(juan.locator('#convs li[data-key="#sala"]')).to_have_count(0, timeout=10_000)
    expect(juan.locator("#composer")).to_be_hidden()
    maria.send("members", room="sala")
    assert [m["username"] for m in maria.expect("members")["members"]] == ["maria", "pedro"]


def test_finding_users_and_rooms_by_prefix(open_page: Any, people: Any, width: str) -> None:
    from playwright.sync_api import expect

    juan = people("juan")
    people("juana")
    juan.send("create_room", room="juegos")
    juan.expect("joined")
    maria = open_page("maria")

    maria.fill("#new-conv", "ju")
    results = maria.locator("#results li")
    expect(results).to_have_count(3, timeout=10_000)
    assert results.all_text_contents() == ["juanuser", "juanauser", "#juegosroom · join"]
    expect(maria.locator('#results li[data-name="juan"] .presence.online')).to_have_count(1)
    shot(maria, "search", width)
    maria.click('#results li[data-name="juegos"]')  # joins it
    expect(maria.locator("#pane-title")).to_have_text("#juegos", timeout=10_000)
    juan.send("members", room="juegos")
    assert [m["username"] for m in juan.expect("members")["members"]] == ["juan", "maria"]

    if width == "phone":
        maria.click("#back")
    maria.fill("#new-conv", "#jue")  # rooms only, and this one is already hers
    expect(maria.locator("#results li")).to_have_text(["#juegosroom"], timeout=10_000)
    maria.fill("#new-conv", "juana")
    expect(maria.locator("#results li")).to_have_count(1, timeout=10_000)
    maria.click('#results li[data-name="juana"]')
    expect(maria.locator("#pane-title")).to_have_text("juana", timeout=10_000)
    expect(maria.locator("#composer")).to_be_visible()


def test_an_unknown_name_opens_nothing_and_a_typo_creates_no_room(
    open_page: Any, people: Any, width: str
) -> None:
    from playwright.sync_api import expect

    pedro = people("pedro")
    maria = open_page("maria")
    find(maria, "nadie")
    expect(maria.locator("#find-error")).to_have_text("no such user: nadie", timeout=10_000)
    expect(maria.locator("#composer")).to_be_hidden()
    expect(maria.locator('#convs li[data-key="@nadie"]')).to_have_count(0)
    find(maria, "bad name!")  # no user can have it: refused without asking
    expect(maria.locator("#find-error")).to_have_text("no such user: bad name!")
    expect(maria.locator("#composer")).to_be_hidden()

    find(maria, "#slaa")
    expect(maria.locator("#create-room-text")).to_have_text(
        "There is no room #slaa. Create room #slaa?", timeout=10_000
    )
    shot(maria, "create-room", width)
    maria.click("#create-room-no")
    expect(maria.locator("#create-room")).to_be_hidden()
    expect(maria.locator("#composer")).to_be_hidden()
    expect(maria.locator('#convs li[data-key="#slaa"]')).to_have_count(0)
    pedro.send("search", prefix="slaa")
    assert pedro.expect("results")["rooms"] == []  # nothing was created

    find(maria, "PEDRO")  # names are found whatever their case
    expect(maria.locator("#pane-title")).to_have_text("pedro", timeout=10_000)
    expect(maria.locator("#composer")).to_be_visible()


def test_typing_shows_on_the_other_side_and_ends_with_the_message(open_page: Any, width: str) -> None:
    from playwright.sync_api import expect

    juan, maria = open_page("juan"), open_page("maria")
    find(juan, "maria")
    expect(juan.locator("#pane-title")).to_have_text("maria", timeout=10_000)
    find(maria, "juan")
    expect(maria.locator("#pane-title")).to_have_text("juan", timeout=10_000)

    juan.locator("#body").press_sequentially("ya casi")
    expect(maria.locator("#typing")).to_have_text("juan is typing…", timeout=10_000)
    if width == "desktop":
        expect(maria.locator('#convs li[data-key="@juan"] .conv-last')).to_have_text("typing…")
    expect(juan.locator("#typing")).to_have_text("")  # not one's own
    shot(maria, "typing", width)
    juan.press("#body", "Enter")
    expect(maria.locator("#messages .msg .body").last).to_have_text("ya casi", timeout=10_000)
    expect(maria.locator("#typing")).to_have_text("")


def test_presence_in_the_list(open_page: Any, people: Any, site: str, width: str) -> None:
    from playwright.sync_api import expect

    maria = open_page("maria")
    maria.click("#logout")
    maria.wait_for_selector("#login-view:not([hidden])")
    juan, pedro = people("juan"), people("pedro")
    for sender in (juan, pedro):
        sender.send("send", to="maria", body="hola", client_id="h")
        sender.expect("sent", client_id="h")
    pedro.send("logout")  # juan stays online, pedro goes
    pedro.expect("logged_out")
    maria.fill("#username", "maria")
    maria.fill("#password", PASSWORD)
    maria.click("#login-btn")
    expect(maria.locator('#convs li[data-key="@juan"] .presence.online')).to_have_count(1, timeout=10_000)
    expect(maria.locator('#convs li[data-key="@pedro"] .presence')).to_have_count(1)
    expect(maria.locator('#convs li[data-key="@pedro"] .presence.online')).to_have_count(0)
    maria.click('#convs li[data-key="@juan"]')
    expect(maria.locator("#pane-sub")).to_have_text("online")
    shot(maria, "presence", width)
