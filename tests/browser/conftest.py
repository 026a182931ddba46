"""Browser tests: Debian's Chromium driven by Playwright against a real server.

Each module gets its own ``livesupport serve`` process (SQLite in a temporary
folder) around :mod:`tests.browser.host_site`, and every test its own browser
contexts, so visitors never share cookies or storage by accident. Without
Chromium or Playwright these tests skip with a reason, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livesupport.passwords import hash_password
from livesupport.store import open_store

from ..live import LiveServer
from .host_site import HOST_MODULE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser test password 1"
AGENTS = {"ann@example.com": "Ann Lee", "bo@example.com": "Bo Chen"}
TIMEOUT_MS = 10_000


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.live)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def start_server(workdir: Path, **env: str) -> LiveServer:
    """A live server with the agents of :data:`AGENTS`; ``env``: LIVESUPPORT_* settings."""
    url = f"sqlite:///{workdir}/browser.db"
    store = open_store(url)
    hashed = hash_password(PASSWORD)
    for email, name in AGENTS.items():
        store.create_agent(email, name, "agent", hashed)
    store.dispose()
    return LiveServer(workdir, url, host_module=HOST_MODULE, env=env)


@pytest.fixture(scope="module")
def server(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("browser"))
    yield live
    assert live.stop() == 0, live.output()


class Contexts:
    """New browser contexts (each a separate browser profile), closed after the test.
    Every page's console errors and uncaught exceptions are collected in ``errors``."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.opened: list[Any] = []
        self.errors: list[str] = []

    def __call__(self, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = self.browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", self.watch)
        self.opened.append(context)
        return context

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: self._console(page, msg))

    def _console(self, page: Any, msg: Any) -> None:
        # The console asks GET /agent/session first: a 401 there just means "sign in".
        expected = "/agent/" in page.url and "status of 401" in msg.text
        if msg.type == "error" and not expected:
            self.errors.append(f"{page.url}: {msg.text}")

    def page(self, **options: Any) -> Any:
        return self(**options).new_page()

    def close(self) -> None:
        for context in self.opened:
            context.close()


@pytest.fixture
def contexts(browser: Any) -> Iterator[Contexts]:
    made = Contexts(browser)
    yield made
    made.close()


# -- helpers ---------------------------------------------------------------------------


def widget(page: Any, hook: str) -> Any:
    """The widget's element with ``data-ls=hook`` (Playwright's CSS pierces open shadow roots)."""
    return page.locator(f"ls-widget [data-ls='{hook}']")


def open_widget(page: Any, server: LiveServer, path: str = "/") -> Any:
    page.goto(server.url + path)
    launcher = widget(page, "launcher")
    launcher.click()
    from playwright.sync_api import expect

    expect(widget(page, "panel")).to_be_visible()
    return page


def visitor_says(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    widget(page, "input").fill(text)
    widget(page, "send").click()
    expect(widget(page, "message").filter(has_text=text).last).to_have_attribute(
        "data-seq", re.compile(r"^\d+$")
    )


def console(page: Any, hook: str) -> Any:
    return page.locator(f"[data-ls='{hook}']")


def agent_login(page: Any, server: LiveServer, email: str = "ann@example.com") -> Any:
    from playwright.sync_api import expect

    page.goto(server.url + "/livesupport/agent/")
    console(page, "login-email").fill(email)
    console(page, "login-password").fill(PASSWORD)
    console(page, "login-submit").click()
    expect(console(page, "status")).to_be_visible()
    return page


Factory = Callable[..., Any]
