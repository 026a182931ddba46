"""The visitor widget in a real browser, against a real server."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import agent_login, console, open_widget, start_server, visitor_says, widget

SEQ = re.compile(r"^\d+$")


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


def claim_and_reply(agent: Any, visitor_text: str, reply: str) -> None:
    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text=visitor_text)
    entry.click()
    console(agent, "claim").click()
    expect(console(agent, "claim")).to_be_hidden()
    console(agent, "reply-input").fill(reply)
    console(agent, "reply-send").click()


def test_a_visitor_and_an_agent_chat_and_a_reload_shows_the_history_once(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = contexts.page()
    visitor.goto(server.url + "/")
    expect(widget(visitor, "launcher")).to_be_visible()
    widget(visitor, "launcher").click()
    expect(widget(visitor, "panel")).to_be_visible()
    expect(widget(visitor, "input")).to_be_focused()
    hello, reply = unique("Hello, is anyone there?"), unique("Hi, Ann here.")
    visitor_says(visitor, hello)

    claim_and_reply(agent, hello, reply)
    expect(widget(visitor, "message").filter(has_text=reply)).to_have_attribute("data-seq", SEQ)
    expect(widget(visitor, "panel")).to_contain_text("Ann Lee joined the chat")

    visitor.reload()
    messages = widget(visitor, "message")
    expect(messages.filter(has_text=reply)).to_have_count(1)
    expect(messages.filter(has_text=hello)).to_have_count(1)
    expect(widget(visitor, "panel")).to_be_visible()  # it stays open across the reload
    later = unique("Still there after the reload?")
    console(agent, "reply-input").fill(later)
    console(agent, "reply-send").click()
    expect(messages.filter(has_text=later)).to_have_count(1)
    expect(messages).to_have_count(3)
    seqs = [m.get_attribute("data-seq") for m in messages.all()]
    assert len(set(seqs)) == 3, seqs
    expect(visitor.locator("ls-widget")).to_contain_text("Ann Lee joined the chat")
    assert visitor.evaluate("window.hostScriptRan") is True
    assert contexts.errors == []


def test_markup_in_messages_stays_text_on_both_sides(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server)
    dialogs: list[str] = []
    for page in (agent, visitor):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tag = uuid.uuid4().hex[:6]
    img = f'<img src=x onerror="window.pwned=1;alert(1)"> {tag}'
    script = f"<script>window.pwned=2;alert(2)</script> {tag}"
    visitor_says(visitor, img)
    visitor_says(visitor, script)
    claim_and_reply(agent, tag, f"<b>bold</b><script>window.pwned=3</script> {tag}")
    console(agent, "reply-input").fill(
        f"see https://example.com/a?b=1 or javascript:alert(1) {tag}"
    )
    console(agent, "reply-send").click()

    for page, find in (
        (visitor, lambda h: widget(visitor, h)),
        (agent, lambda h: console(agent, h)),
    ):
        messages = find("message")
        expect(messages.filter(has_text="example.com")).to_have_count(1)
        texts = [m.inner_text() for m in messages.filter(has_text=tag).all()]
        assert any(img in t for t in texts), texts
        assert any(script in t for t in texts), texts
        assert any("<b>bold</b>" in t for t in texts), texts
        assert messages.locator("img, script, b, iframe").count() == 0
        links = messages.locator("a")
        expect(links).to_have_count(1)
        expect(links).to_have_attribute("href", "https://example.com/a?b=1")
        expect(links).to_have_attribute("rel", "noopener noreferrer")
        expect(links).to_have_attribute("target", "_blank")
        assert page.evaluate("window.pwned") is None
    assert dialogs == []


def test_host_css_does_not_reach_the_widget(server, contexts):
    probe = """() => {
      const root = document.querySelector('ls-widget').shadowRoot;
      const width = document.documentElement.clientWidth, out = {};
      for (const sel of ['.ls-launcher', '.ls-panel', '.ls-head', '.ls-title', '.ls-input',
                         '.ls-send', '.ls-greet .ls-bub', '.ls-body', '.ls-compose']) {
        const el = root.querySelector(sel), cs = getComputedStyle(el);
        const b = el.getBoundingClientRect();
        out[sel] = [width - b.left, b.top, b.width, b.height, cs.color, cs.backgroundColor,
                    cs.fontFamily, cs.fontSize, cs.fontStyle, cs.padding, cs.margin,
                    cs.borderTopWidth, cs.borderTopStyle, cs.opacity, cs.transform,
                    cs.position, cs.display, cs.boxSizing];
      }
      return out;
    }"""
    seen = []
    for path in ("/", "/hostile"):
        page = contexts.page(reduced_motion="reduce")
        open_widget(page, server, path)
        expect(widget(page, "input")).to_be_visible()
        seen.append(page.evaluate(probe))
        assert page.evaluate("window.hostScriptRan") is True
    plain, hostile = seen
    assert hostile == plain
    assert contexts.errors == []


def test_two_tabs_hold_one_long_poll_and_hand_over(server, contexts):
    check_one_poll_per_browser(server, contexts, fallback=False)


def test_without_web_locks_and_broadcast_channel_tabs_still_share_one_poll(server, contexts):
    check_one_poll_per_browser(server, contexts, fallback=True)


def check_one_poll_per_browser(server, contexts, *, fallback: bool) -> None:
    agent = agent_login(contexts.page(), server)
    browser = contexts()
    if fallback:
        browser.add_init_script("delete Navigator.prototype.locks; delete window.BroadcastChannel;")
    counts = {"first": 0, "second": 0}
    in_flight = {"now": 0, "max": 0}

    def watch(page: Any, name: str) -> None:
        def started(request: Any) -> None:
            if "/visitor/poll" in request.url:
                counts[name] += 1
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])

        def ended(request: Any) -> None:
            if "/visitor/poll" in request.url:
                in_flight["now"] -= 1

        page.on("request", started)
        page.on("requestfinished", ended)
        page.on("requestfailed", ended)

    first = browser.new_page()
    watch(first, "first")
    hello = unique("Two tabs here")
    open_widget(first, server)
    visitor_says(first, hello)
    second = browser.new_page()
    watch(second, "second")
    open_widget(second, server, "/pricing")
    expect(widget(second, "message").filter(has_text=hello)).to_have_count(1)

    reply, again = unique("Reply for both tabs"), unique("And another one")
    claim_and_reply(agent, hello, reply)
    for page in (first, second):
        expect(widget(page, "message").filter(has_text=reply)).to_have_count(1)
    console(agent, "reply-input").fill(again)
    console(agent, "reply-send").click()
    for page in (first, second):
        expect(widget(page, "message").filter(has_text=again)).to_have_count(1)
    assert counts["second"] == 0, counts
    assert counts["first"] >= 1, counts
    assert in_flight["max"] == 1, in_flight

    # The leader goes away: the other tab takes the poll over and misses nothing.
    with second.expect_request(lambda r: "/visitor/poll" in r.url, timeout=20_000):
        first.close()
    after = unique("After the hand-over")
    console(agent, "reply-input").fill(after)
    console(agent, "reply-send").click()
    expect(widget(second, "message").filter(has_text=after)).to_have_count(1)
    expect(widget(second, "message")).to_have_count(4)


def test_phone_layout_is_full_screen(server, contexts):
    page = contexts.page(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    open_widget(page, server)
    expect(widget(page, "launcher")).to_be_hidden()
    box = widget(page, "panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 812}
    input_box = widget(page, "input").bounding_box()
    assert input_box and input_box["y"] + input_box["height"] <= 812
    page.locator("ls-widget .ls-x").click()
    expect(widget(page, "panel")).to_be_hidden()
    expect(widget(page, "launcher")).to_be_focused()
    assert contexts.errors == []


def test_keyboard_and_screen_reader_support(server, contexts):
    page = contexts.page()
    page.goto(server.url + "/")
    launcher = widget(page, "launcher")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(launcher).to_have_attribute("aria-controls", "ls-panel")
    expect(launcher).to_have_accessible_name("Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    panel = widget(page, "panel")
    expect(panel).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    expect(panel).to_have_attribute("role", "dialog")
    expect(panel).to_have_accessible_name("Chat with us")
    expect(page.locator("ls-widget [role=log]")).to_have_attribute("aria-live", "polite")
    expect(widget(page, "input")).to_be_focused()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")


def test_unread_badge_title_typing_and_read_state(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server)
    hello = unique("Badge test")
    visitor_says(visitor, hello)
    title = visitor.title()
    widget(visitor, "launcher").click()
    expect(widget(visitor, "panel")).to_be_hidden()

    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text=hello)
    entry.click()
    console(agent, "claim").click()
    expect(console(agent, "claim")).to_be_hidden()
    console(agent, "reply-input").fill(unique("Unread reply"))
    console(agent, "reply-send").click()
    badge = visitor.locator("ls-widget .ls-badge")
    expect(badge).to_have_text("1")
    expect(visitor).to_have_title(re.compile(r"^\(1\) New message"))

    widget(visitor, "launcher").click()
    expect(badge).to_be_hidden()
    expect(visitor).to_have_title(title)
    expect(console(agent, "read")).to_be_visible()  # the console shows "Seen"

    console(agent, "reply-input").press_sequentially("Ann is typing", delay=20)
    expect(widget(visitor, "typing")).to_be_visible()
    expect(widget(visitor, "typing")).to_contain_text("Ann Lee is typing")
    widget(visitor, "input").press_sequentially("visitor typing", delay=20)
    expect(agent.locator("#ls-typing")).to_be_visible()
    expect(agent.locator("#ls-typing")).to_contain_text("is typing")


def test_a_send_is_retried_with_one_client_msg_id_and_survives_a_reload(server, contexts):
    agent_login(contexts.page(), server)
    page = open_widget(contexts.page(), server)
    ids: list[str] = []

    def unavailable(route: Any) -> None:
        ids.append(route.request.post_data_json["client_msg_id"])
        if len(ids) < 3:
            route.fulfill(status=503, headers={"Retry-After": "1"},
                          json={"error": {"code": "unavailable", "message": "down"}})  # fmt: skip
        else:
            route.continue_()

    page.route("**/api/v1/visitor/messages", unavailable)
    text = unique("Sent through a flaky network")
    widget(page, "input").fill(text)
    widget(page, "send").click()
    bubble = widget(page, "message").filter(has_text=text)
    expect(bubble).to_have_class(re.compile("ls-pending"))
    expect(bubble).to_have_attribute("data-seq", SEQ)
    assert len(ids) == 3 and len(set(ids)) == 1, ids
    page.unroute("**/api/v1/visitor/messages")

    # Unsent when the page goes away: shown again after the reload, then delivered once.
    page.route("**/api/v1/visitor/messages", lambda route: route.abort())
    later = unique("Written before a reload")
    widget(page, "input").fill(later)
    widget(page, "send").click()
    expect(widget(page, "message").filter(has_text=later)).to_have_class(re.compile("ls-pending"))
    page.unroute("**/api/v1/visitor/messages")
    page.reload()
    bubble = widget(page, "message").filter(has_text=later)
    expect(bubble).to_have_attribute("data-seq", SEQ)
    expect(bubble).to_have_count(1)


def test_network_loss_is_survived(server, contexts):
    agent = agent_login(contexts.page(), server)
    browser = contexts()
    page = open_widget(browser.new_page(), server)
    hello = unique("Before the network drops")
    visitor_says(page, hello)
    browser.set_offline(True)
    offline_text = unique("Typed while offline")
    widget(page, "input").fill(offline_text)
    widget(page, "send").click()
    expect(widget(page, "message").filter(has_text=offline_text)).to_have_class(
        re.compile("ls-pending")
    )
    browser.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(widget(page, "message").filter(has_text=offline_text)).to_have_attribute("data-seq", SEQ)
    reply = unique("Welcome back")
    claim_and_reply(agent, offline_text, reply)  # the queue shows the latest message
    expect(widget(page, "message").filter(has_text=reply)).to_have_count(1)


def test_rating_after_the_conversation_is_closed(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server)
    hello = unique("Please close me")
    visitor_says(visitor, hello)
    claim_and_reply(agent, hello, unique("Closing now"))
    console(agent, "close").click()
    expect(agent.locator("#ls-pill")).to_have_text("Closed")
    rating = widget(visitor, "rating")
    expect(rating).to_be_visible()
    expect(widget(visitor, "panel")).to_contain_text("This chat has ended")
    rating.locator("[data-score='4']").click()
    rating.locator("textarea").fill("Quick and friendly")
    with visitor.expect_response("**/visitor/rating") as answer:
        rating.locator("button[type=submit]").click()
    assert answer.value.status == 204
    assert answer.value.request.post_data_json == {"score": 4, "comment": "Quick and friendly"}
    expect(rating).to_contain_text("Thank you for your feedback")
    visitor.reload()
    expect(widget(visitor, "message").filter(has_text=hello)).to_have_count(1)
    expect(widget(visitor, "rating")).to_have_count(0)  # rated once, not asked again


def test_a_chinese_page_gets_the_chinese_widget(server, contexts):
    page = contexts.page()
    page.goto(server.url + "/zh")
    launcher = widget(page, "launcher")
    expect(launcher).to_have_accessible_name("打开聊天")
    launcher.click()
    expect(page.locator("ls-widget .ls-title")).to_have_text("在线客服")
    assert contexts.errors == []


@pytest.fixture(scope="module")
def offline_server(browser, tmp_path_factory):
    """No agent ever signs in before the visitor comes: everyone is offline."""
    live = start_server(tmp_path_factory.mktemp("offline"))
    yield live
    assert live.stop() == 0, live.output()


def test_the_offline_form_takes_the_focus_when_it_replaces_the_compose_box(
    offline_server, contexts
):
    """The panel opened before the session said no agent is online: the visitor's
    cursor was in the compose box, which the form replaces."""
    page = contexts.page()
    held = []
    page.route("**/api/v1/visitor/session", lambda route: held.append(route))
    page.goto(offline_server.url + "/")
    widget(page, "launcher").click()
    expect(widget(page, "input")).to_be_focused()
    for _ in range(100):  # each call lets the held request reach the handler
        if held:
            break
        page.evaluate("1")
    assert held
    for route in held:
        route.continue_()
    form = widget(page, "offline-form")
    expect(form).to_be_visible()
    expect(form.locator("input[name=name]")).to_be_focused()
    page.unroute("**/api/v1/visitor/session")


def test_offline_form_when_no_agent_is_online(offline_server, contexts):
    page = open_widget(contexts.page(), offline_server)
    form = widget(page, "offline-form")
    expect(form).to_be_visible()
    expect(form.locator("input[name=name]")).to_be_focused()
    expect(page.locator("ls-widget .ls-compose")).to_be_hidden()
    form.locator("input[name=name]").fill("Olga Offline")
    form.locator("input[name=email]").fill("not an email")
    form.locator("textarea[name=message]").fill("Please call me back about my order.")
    form.locator("button[type=submit]").click()
    expect(form).to_be_visible()  # the browser's own validation stopped it
    form.locator("input[name=email]").fill("olga@example.org")
    form.locator("button[type=submit]").click()
    expect(form).to_be_hidden()
    expect(widget(page, "message").filter(has_text="call me back")).to_have_attribute(
        "data-seq", SEQ
    )
    expect(page.locator("ls-widget")).to_contain_text("get back to you by email")

    agent = agent_login(contexts.page(), offline_server)
    entry = (
        console(agent, "queue").locator("[data-ls=conversation]").filter(has_text="Olga Offline")
    )
    entry.click()
    expect(agent.locator("#ls-facts")).to_contain_text("olga@example.org")
    expect(console(agent, "message").filter(has_text="call me back")).to_have_count(1)


@pytest.fixture(scope="module")
def styled_server(browser, tmp_path_factory):
    live = start_server(
        tmp_path_factory.mktemp("styled"),
        LIVESUPPORT_WIDGET_TITLE="Kettle & Leaf help",
        LIVESUPPORT_WIDGET_GREETING="Welcome! Ask us about tea.",
        LIVESUPPORT_WIDGET_COLOR="#0a7d55",
        LIVESUPPORT_WIDGET_POSITION="left",
        LIVESUPPORT_WIDGET_LOCALE="zh-CN",
        LIVESUPPORT_WIDGET_PRECHAT="true",
    )
    yield live
    assert live.stop() == 0, live.output()


def test_site_owner_settings_shape_the_widget(styled_server, contexts):
    agent = agent_login(contexts.page(), styled_server)
    page = contexts.page()
    open_widget(page, styled_server, "/")  # an English page, but the owner chose zh-CN
    launcher = widget(page, "launcher")
    box = launcher.bounding_box()
    assert box and box["x"] < 100  # bottom left
    expect(launcher).to_have_css("background-color", "rgb(10, 125, 85)")
    expect(page.locator("ls-widget .ls-title")).to_have_text("Kettle & Leaf help")
    expect(widget(page, "panel")).to_contain_text("Welcome! Ask us about tea.")
    expect(widget(page, "input")).to_have_attribute("placeholder", "输入消息…")
    # Pre-chat fields are offered but never in the way: the input already has the focus.
    expect(widget(page, "input")).to_be_focused()
    page.locator("ls-widget .ls-pre input[name=name]").fill("Wang Fang")
    page.locator("ls-widget .ls-pre input[name=email]").fill("fang@example.cn")
    visitor_says(page, "你好")
    expect(page.locator("ls-widget .ls-pre")).to_be_hidden()
    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text="Wang Fang")
    entry.click()
    expect(agent.locator("#ls-facts")).to_contain_text("fang@example.cn")
    assert contexts.errors == []
