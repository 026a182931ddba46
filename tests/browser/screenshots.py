"""Writes the README's screenshots to ``docs/screenshots/``: the widget on a desktop
and on a phone, and the agent console with a queue and an open conversation.

Run from the project's root (needs Chromium and Playwright, like the browser tests)::

    .venv/bin/python -m tests.browser.screenshots
"""

from __future__ import annotations

import re
import sys
import tempfile
import uuid
from pathlib import Path

import requests

from .conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, start_server

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def background_visitor(api: str, name: str, email: str, page: str, text: str) -> None:
    """A visitor that only ever talks through the API, to fill the queue."""
    session = requests.Session()
    body = {"name": name, "email": email, "page": page, "locale": "en-GB",
            "referrer": "https://www.google.com/"}  # fmt: skip
    session.post(api + "/visitor/session", json=body, timeout=10).raise_for_status()
    answer = session.post(
        api + "/visitor/messages",
        json={"client_msg_id": uuid.uuid4().hex, "body": text},
        timeout=10,
    )
    answer.raise_for_status()


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    server = start_server(Path(tempfile.mkdtemp()), LIVESUPPORT_WIDGET_PRECHAT="true")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            agent = browser.new_page(viewport={"width": 1440, "height": 900})
            agent.goto(server.url + "/livesupport/agent/")
            agent.locator("[data-ls=login-email]").fill("ann@example.com")
            agent.locator("[data-ls=login-password]").fill(PASSWORD)
            agent.locator("[data-ls=login-submit]").click()
            expect(agent.locator("[data-ls=status]")).to_be_visible()

            visitor = browser.new_page(viewport={"width": 1280, "height": 800})
            visitor.goto(server.url + "/pricing")
            widget = visitor.locator("ls-widget")
            widget.locator("[data-ls=launcher]").click()
            widget.locator(".ls-pre input[name=name]").fill("Sofia Martin")
            widget.locator(".ls-pre input[name=email]").fill("sofia@example.org")
            widget.locator("[data-ls=input]").fill(
                "Hi! Can I switch my Daily Cup plan to Tea House in the middle of the month?"
            )
            widget.locator("[data-ls=send]").click()
            expect(widget.locator("[data-ls=message][data-seq]")).to_have_count(1)

            oolong = "Is the Old Tree Oolong back in stock?"
            background_visitor(
                server.api, "Marco Rossi", "marco@example.it", "http://127.0.0.1/contact", oolong
            )
            background_visitor(server.api, "", "", "http://127.0.0.1/", "Do you ship to Norway?")

            queue = agent.locator("[data-ls=queue] [data-ls=conversation]")
            expect(queue).to_have_count(3)
            queue.filter(has_text="Sofia Martin").click()
            agent.locator("[data-ls=claim]").click()
            expect(agent.locator("#ls-pill")).to_have_text("Active")
            reply = agent.locator("[data-ls=reply-input]")
            reply.fill(
                "Hi Sofia! Yes, you can switch at any time: we prorate the difference, "
                "so you only pay for the days left. Details: https://example.com/plans"
            )
            reply.press("Enter")
            expect(widget.locator("[data-ls=message]").filter(has_text="prorate")).to_be_visible()
            widget.locator("[data-ls=input]").fill("Perfect, thank you! I'll switch today.")
            widget.locator("[data-ls=send]").click()
            expect(
                agent.locator("[data-ls=message]").filter(has_text="switch today")
            ).to_be_visible()
            reply.fill("Great choice. Enjoy the teas! ☕")
            reply.press("Enter")
            expect(widget.locator("[data-ls=message]").filter(has_text="Enjoy")).to_be_visible()
            expect(agent.locator("[data-ls=read]")).to_be_visible()
            reply.fill("Anything else I can help with?")  # the visitor sees Ann typing
            reply.press("End")
            reply.type(" ")
            expect(widget.locator("[data-ls=typing]")).to_be_visible()

            visitor.screenshot(path=str(OUT / "widget-desktop.png"))
            agent.screenshot(path=str(OUT / "console.png"))

            phone = browser.new_context(
                viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                has_touch=True, storage_state=visitor.context.storage_state(),
            )  # fmt: skip
            small = phone.new_page()
            small.goto(server.url + "/pricing")
            small.locator("ls-widget [data-ls=launcher]").click()
            expect(small.locator("ls-widget [data-ls=message][data-seq]")).to_have_count(4)
            small.screenshot(path=str(OUT / "widget-phone.png"))
            browser.close()
    finally:
        server.stop()
    for name in sorted(p.name for p in OUT.glob("*.png")):
        print(re.sub(r"^", "wrote docs/screenshots/", name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
