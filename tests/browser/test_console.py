"""The agent console in a real browser: claim, reply, close, transfer, reload."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from .conftest import agent_login, console, open_widget, visitor_says, widget


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


def test_claim_reply_and_close(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server, "/pricing")
    hello = unique("Which plan suits an office?")
    visitor_says(visitor, hello)

    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text=hello)
    expect(entry).to_have_attribute("data-id", re.compile(r"^c_"))
    expect(entry).to_contain_text(re.compile(r"just now|\d+ min"))
    entry.click()
    expect(console(agent, "message").filter(has_text=hello)).to_have_count(1)
    expect(agent.locator("#ls-facts")).to_contain_text("/pricing")
    expect(agent.locator("#ls-facts")).to_contain_text("HeadlessChrome")
    expect(agent.locator("#ls-pill")).to_have_text("Waiting")
    console(agent, "claim").click()
    expect(agent.locator("#ls-pill")).to_have_text("Active")
    mine = console(agent, "mine").locator("[data-ls=conversation]").filter(has_text=hello)
    expect(mine).to_have_count(1)
    expect(entry).to_have_count(0)  # gone from the queue

    # Enter sends; Shift+Enter makes a new line.
    box = console(agent, "reply-input")
    box.fill("First line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    box.press("Enter")
    expect(widget(visitor, "message").filter(has_text="second line")).to_have_count(1)
    text = widget(visitor, "message").filter(has_text="second line").inner_text()
    assert "First line\nsecond line" in text
    expect(box).to_have_value("")

    answer = unique("The Tea House plan, thanks")
    visitor_says(visitor, answer)
    expect(console(agent, "message").filter(has_text=answer)).to_have_count(1)

    console(agent, "close").click()
    expect(agent.locator("#ls-pill")).to_have_text("Closed")
    expect(console(agent, "reply-input")).to_be_hidden()
    expect(mine).to_have_count(0)
    expect(widget(visitor, "panel")).to_contain_text("This chat has ended")
    assert contexts.errors == []


def test_transfer_between_two_agents(server, contexts):
    ann = agent_login(contexts.page(), server, "ann@example.com")
    bo = agent_login(contexts.page(), server, "bo@example.com")
    visitor = open_widget(contexts.page(), server)
    hello = unique("Can someone help with wholesale?")
    visitor_says(visitor, hello)

    console(ann, "queue").locator("[data-ls=conversation]").filter(has_text=hello).click()
    console(ann, "claim").click()
    expect(ann.locator("#ls-pill")).to_have_text("Active")
    # Bo sees it leave the queue once Ann holds it.
    expect(
        console(bo, "queue").locator("[data-ls=conversation]").filter(has_text=hello)
    ).to_have_count(0)

    console(ann, "transfer").click()
    ann.locator("#ls-transfer-menu button", has_text="Bo Chen").click()
    expect(ann.locator("#ls-toast")).to_contain_text("Transferred to Bo Chen")
    expect(
        console(ann, "mine").locator("[data-ls=conversation]").filter(has_text=hello)
    ).to_have_count(0)
    expect(ann.locator("#ls-closed-note")).to_contain_text("Another agent")

    entry = console(bo, "mine").locator("[data-ls=conversation]").filter(has_text=hello)
    expect(entry).to_have_count(1)
    expect(bo.locator("#ls-toast")).to_contain_text("transferred to you")
    entry.click()
    reply = unique("Bo here, happy to help")
    console(bo, "reply-input").fill(reply)
    console(bo, "reply-send").click()
    expect(widget(visitor, "message").filter(has_text=reply)).to_have_count(1)
    expect(widget(visitor, "panel")).to_contain_text("You're now chatting with Bo Chen")
    expect(visitor.locator("ls-widget .ls-sub")).to_have_text("Chatting with Bo Chen")


def test_console_survives_a_reload(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server)
    hello = unique("Reload test")
    visitor_says(visitor, hello)
    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text=hello)
    cid = entry.get_attribute("data-id")
    entry.click()
    console(agent, "claim").click()
    reply = unique("Before the reload")
    console(agent, "reply-input").fill(reply)
    console(agent, "reply-send").click()
    expect(console(agent, "message").filter(has_text=reply)).to_have_attribute(
        "data-seq", re.compile(r"\d")
    )

    agent.reload()
    expect(console(agent, "login-email")).to_be_hidden()
    expect(agent.locator("#ls-title")).to_be_visible()
    expect(console(agent, "message").filter(has_text=hello)).to_have_count(1)
    expect(console(agent, "message").filter(has_text=reply)).to_have_count(1)
    expect(console(agent, "mine").locator(f"[data-id='{cid}']")).to_have_count(1)
    after = unique("Sent after the agent reloaded")
    visitor_says(visitor, after)
    expect(console(agent, "message").filter(has_text=after)).to_have_count(1)
    # A reply written after the reload still works: the CSRF token came back with the session.
    console(agent, "reply-input").fill(unique("Still here"))
    console(agent, "reply-send").click()
    expect(agent.locator("[data-ls=message].ls-pending")).to_have_count(0)
    assert contexts.errors == []


def test_console_survives_network_loss(server, contexts):
    agent = agent_login(contexts.page(), server)
    visitor = open_widget(contexts.page(), server)
    # The network drops for the agent's feed: every new poll fails until it is back.
    agent.route("**/api/v1/agent/poll*", lambda route: route.abort("internetdisconnected"))
    first = unique("Wakes the parked poll")
    visitor_says(visitor, first)
    expect(agent.locator("#ls-net")).to_be_visible(timeout=20_000)
    hello = unique("Sent while the agent was offline")
    visitor_says(visitor, hello)
    agent.unroute("**/api/v1/agent/poll*")
    agent.evaluate("window.dispatchEvent(new Event('online'))")
    expect(agent.locator("#ls-net")).to_be_hidden()
    entry = console(agent, "queue").locator("[data-ls=conversation]").filter(has_text=hello)
    expect(entry).to_have_count(1)


def test_sign_in_errors_and_presence(server, contexts):
    page = contexts.page()
    page.goto(server.url + "/livesupport/agent/")
    console(page, "login-email").fill("ann@example.com")
    console(page, "login-password").fill("wrong password")
    console(page, "login-submit").click()
    expect(page.locator("#ls-error")).to_have_text("Wrong email or password.")
    agent_login(page, server)
    with page.expect_response("**/agent/status") as answer:
        console(page, "status").select_option("away")
    assert answer.value.status == 204
    assert answer.value.request.post_data_json == {"status": "away"}
    expect(page.locator("#ls-presence-dot")).to_have_class(re.compile("ls-dot-away"))
    console(page, "status").select_option("online")
