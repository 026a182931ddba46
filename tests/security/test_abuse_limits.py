"""The abuse limits hold for the whole deployment, not per process, and refuse cleanly.

Each limit is driven through the WSGI app: new visitor sessions per client
address, conversations opened per address, messages per visitor, failed
sign-ins per account and per address. Every refusal is a ``429`` in the
protocol's error shape with ``Retry-After`` and the security headers, never a
5xx, and writes nothing (no visitor, conversation, message, cookie or quota use).

The same limits are then shown shared: two middleware instances, as two nodes
are, on one SQLite file or one PostgreSQL database, with the requests spread
over both, admit no more than one node alone would.

Concurrent polls per visitor are bounded per node by the hub; across nodes, a
poll that reaches a node which does not serve the visitor takes the visitor
over, and the other nodes answer the polls they hold for it at once (the
``moved`` notice), with or without an open conversation, while the poll that
took it over stays parked: a visitor's polls park on one node at a time. Both
are shown here on two nodes sharing a store and a bus.

Finally, every kind of answer the middleware itself makes (2xx, 3xx, 4xx, 429,
503) carries the security headers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import webtest
from sqlalchemy import text

from livesupport import LiveSupport
from livesupport.store import open_store
from livesupport.store.base import Store
from livesupport.store.memory import MemoryStore
from livesupport.store.sql import SQLStore
from tests.conftest import (
    API,
    PREFIX,
    AppFactory,
    Client,
    assert_error,
    create_agent,
    set_cookies,
    stdlib_host_app,
)
from tests.live import LiveServer, free_port
from tests.services import unique_name
from tests.store.conftest import sql_database

HOME = "203.0.113.7"  # one client address (TEST-NET-3)
ELSEWHERE = "198.51.100.20"
WINDOW = 600  # ip_window, seconds
PARKED = 30.0  # a poll's timeout here: far longer than any wait of these tests
SHARED = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- helpers ------------------------------------------------------------------------
def client(middleware: LiveSupport, address: str | None = HOME, **kw: Any) -> Client:
    """A browser at ``address`` (``None``: a request without ``REMOTE_ADDR``)."""
    environ = {"REMOTE_ADDR": address} if address is not None else {}
    return Client(middleware, extra_environ=environ, **kw)


def on(middleware: LiveSupport, browser: Client) -> Client:
    """The same browser (address and cookie jar) talking to another node."""
    return Client(middleware, extra_environ=browser.extra_environ, cookiejar=browser.cookiejar)


def session(browser: Client) -> webtest.TestResponse:
    response = browser.post_api("/visitor/session", {})
    assert response.status_int < 500, response.text
    if response.status_int == 200:
        browser.session = response.json
    return response


def new_visitor(middleware: LiveSupport, address: str | None = HOME) -> Client:
    browser = client(middleware, address)
    assert session(browser).status_int == 200
    return browser


def assert_limited(response: webtest.TestResponse, longest: float) -> int:
    """A 429 as the protocol has it; its ``Retry-After`` in seconds (1 to ``longest``)."""
    assert_error(response, 429)
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= longest, retry
    assert_security_headers(response)
    assert "Set-Cookie" not in response.headers
    return retry


def assert_security_headers(response: webtest.TestResponse) -> None:
    headers = response.headers
    where = f"{response.request.method} {response.request.path} {response.status}"
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") == "no-referrer", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), where


def visitor_count(store: Store) -> int:
    if isinstance(store, MemoryStore):
        return len(store._visitors)
    assert isinstance(store, SQLStore)
    with store.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM visitors")).scalar_one())


def uses(store: Store, scope: str, address: str) -> int:
    """The recorded uses of a per-address quota (see ``livesupport.limits``)."""
    return len(store.attempts_since(f"{scope}:{address}", datetime(2000, 1, 1, tzinfo=UTC)))


def wait_until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.01)  # polling a condition of other threads, with a deadline


# -- one node (memory and SQLite) -------------------------------------------------------
def test_new_visitor_sessions_per_address(make_app: AppFactory) -> None:
    middleware = make_app(new_visitors_per_ip=3, ip_window=WINDOW)
    store = middleware.store
    first = new_visitor(middleware)
    new_visitor(middleware)
    new_visitor(middleware)
    visitors = visitor_count(store)
    refused = client(middleware)
    assert_limited(session(refused), WINDOW)
    assert visitor_count(store) == visitors  # no visitor stored
    assert uses(store, "new-visitor", HOME) == 3  # and the refusal not counted
    assert refused.cookies == {}
    # A returning visitor (a valid ls_vid) is no new visitor: it is never refused.
    for _ in range(3):
        again = session(first)
        assert again.status_int == 200 and again.json["visitor_id"] == first.session["visitor_id"]
    assert uses(store, "new-visitor", HOME) == 3
    new_visitor(middleware, ELSEWHERE)  # another address has its own budget
    assert visitor_count(store) == visitors + 1


def forwarded(middleware: LiveSupport, client_address: str) -> Client:
    """A browser behind the site's proxy (at HOME), which names it in X-Forwarded-*."""
    environ = {"REMOTE_ADDR": HOME, "HTTP_X_FORWARDED_FOR": client_address,
               "HTTP_X_FORWARDED_PROTO": "https"}  # fmt: skip
    return Client(middleware, extra_environ=environ)


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(make_app: AppFactory) -> None:
    middleware = make_app(new_visitors_per_ip=1, ip_window=WINDOW, trusted_proxies=1)
    first, second = forwarded(middleware, ELSEWHERE), forwarded(middleware, "192.0.2.55")
    for browser in (first, second):
        answer = session(browser)
        assert answer.status_int == 200
        assert "Secure" in answer.headers["Set-Cookie"]  # the proxy said https
    assert uses(middleware.store, "new-visitor", ELSEWHERE) == 1
    assert uses(middleware.store, "new-visitor", HOME) == 0
    assert_limited(session(forwarded(middleware, ELSEWHERE)), WINDOW)


def test_forwarded_headers_are_ignored_without_trusted_proxies(make_app: AppFactory) -> None:
    """Otherwise any client could name itself anew on every request."""
    middleware = make_app(new_visitors_per_ip=1, ip_window=WINDOW)
    assert session(forwarded(middleware, ELSEWHERE)).status_int == 200
    assert uses(middleware.store, "new-visitor", HOME) == 1
    refused = session(forwarded(middleware, "192.0.2.55"))
    assert_limited(refused, WINDOW)


def test_ipv6_clients_are_counted_by_their_64(make_app: AppFactory) -> None:
    middleware = make_app(new_visitors_per_ip=2, ip_window=WINDOW)
    new_visitor(middleware, "2001:db8:1:2::1")
    new_visitor(middleware, "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert_limited(session(client(middleware, "2001:db8:1:2::99")), WINDOW)  # same /64
    new_visitor(middleware, "2001:db8:1:3::1")  # the next /64
    new_visitor(middleware, "::ffff:203.0.113.9")  # IPv4-mapped counts as the IPv4 address
    new_visitor(middleware, "203.0.113.9")
    assert_limited(session(client(middleware, "203.0.113.9")), WINDOW)


def test_requests_without_an_address_are_not_counted_per_address(make_app: AppFactory) -> None:
    """A server that gives no REMOTE_ADDR: one budget shared by every client would stop
    the whole site, not the abuser; the per-visitor send rate still applies."""
    middleware = make_app(new_visitors_per_ip=1, new_conversations_per_ip=1, ip_window=WINDOW)
    for _ in range(3):
        assert new_visitor(middleware, None).send("hello").status_int == 201


def test_visitors_the_host_identifies_are_not_counted(make_app: AppFactory) -> None:
    def identify(environ: dict[str, Any]) -> dict[str, Any] | None:
        user = environ.get("HTTP_X_USER")
        return {"id": user} if user else None

    middleware = make_app(new_visitors_per_ip=1, ip_window=WINDOW, identify=identify)
    new_visitor(middleware)
    for n in range(3):  # signed-in customers: the host's accounts bound them
        browser = client(middleware)
        browser.extra_environ["HTTP_X_USER"] = f"customer-{n}"
        assert session(browser).status_int == 200
    assert_limited(session(client(middleware)), WINDOW)


def test_new_conversations_per_address(make_app: AppFactory) -> None:
    middleware = make_app(new_conversations_per_ip=2, ip_window=WINDOW)
    store = middleware.store
    ann, bob, cid = new_visitor(middleware), new_visitor(middleware), new_visitor(middleware)
    assert ann.send("first").status_int == 201
    assert bob.send("first").status_int == 201
    position = store.feed_position()
    refused = cid.send("first", cmid="c-1")
    assert_limited(refused, WINDOW)
    assert store.feed_position() == position  # nothing stored
    assert store.visitor_conversations(cid.session["visitor_id"]) == []
    assert cid.get_api("/visitor/history").json == {"messages": []}
    assert uses(store, "new-conversation", HOME) == 2
    # Messages to an open conversation are not conversations opened.
    for n in range(5):
        assert ann.send(f"more {n}").status_int == 201
    assert new_visitor(middleware, ELSEWHERE).send("first").status_int == 201
    # Resent, the refused message is refused again, not answered as stored.
    assert_limited(cid.send("first", cmid="c-1"), WINDOW)


def test_messages_per_visitor(make_app: AppFactory) -> None:
    middleware = make_app(messages_per_minute=3)
    store = middleware.store
    ann = new_visitor(middleware)
    sent = [ann.send(f"m{n}", cmid=f"m{n}") for n in range(3)]
    assert [r.status_int for r in sent] == [201, 201, 201]
    position = store.feed_position()
    assert_limited(ann.send("too many", cmid="m3"), 60)
    assert store.feed_position() == position
    history = ann.get_api("/visitor/history").json["messages"]
    assert [m["body"] for m in history] == ["m0", "m1", "m2"]
    # A resent message (the widget retrying) is answered, not counted.
    repeat = ann.send("m1", cmid="m1")
    assert repeat.status_int == 200
    assert repeat.json["message"]["id"] == sent[1].json["message"]["id"]
    # Per visitor: another one at the same address is not affected.
    assert new_visitor(middleware).send("hello").status_int == 201


def test_failed_sign_ins_per_account_and_address(make_app: AppFactory) -> None:
    middleware = make_app(login_attempts=2, login_attempts_per_ip=3)
    ann, bob = create_agent(middleware), create_agent(middleware)
    browser = client(middleware)

    def login(email: str) -> webtest.TestResponse:
        return browser.post_api("/agent/login", {"email": email, "password": "wrong"})

    assert [login(ann.email).status_int for _ in range(2)] == [401, 401]
    assert_limited(login(ann.email), 15 * 60)  # the account
    assert login(bob.email).status_int == 401  # third failure from this address
    assert_limited(login(bob.email), 15 * 60)  # the address
    assert (
        client(middleware, ELSEWHERE)
        .post_api("/agent/login", {"email": bob.email, "password": "wrong"})
        .status_int
        == 401
    )


# -- two nodes on one database ---------------------------------------------------------------
@pytest.fixture(params=SHARED)
def two_nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., tuple[LiveSupport, LiveSupport]]]:
    """``two_nodes(**settings)``: nodes ``web-1`` and ``web-2`` sharing one SQLite file
    or PostgreSQL database, and one bus, as a deployment's nodes do."""
    factory = AppFactory(stdlib_host_app, "sqlite", tmp_path)
    with sql_database(request.param, tmp_path) as url:
        bus = f"local://{unique_name('nodes')}"

        def make(**settings: Any) -> tuple[LiveSupport, LiveSupport]:
            one = factory(store=url, bus=bus, node_id="web-1", **settings)
            two = factory(store=url, bus=bus, node_id="web-2", **settings)
            return one, two

        try:
            yield make
        finally:
            factory.close_all()


def test_new_visitor_sessions_are_counted_across_nodes(two_nodes: Any) -> None:
    one, two = two_nodes(new_visitors_per_ip=4, ip_window=WINDOW)
    for node in (one, two, one, two):
        new_visitor(node)
    visitors = visitor_count(one.store)
    for node in (one, two):
        assert_limited(session(client(node)), WINDOW)
    assert visitor_count(one.store) == visitors
    new_visitor(two, ELSEWHERE)


def test_new_conversations_are_counted_across_nodes(two_nodes: Any) -> None:
    one, two = two_nodes(new_conversations_per_ip=2, ip_window=WINDOW)
    assert new_visitor(one).send("hi").status_int == 201
    assert new_visitor(two).send("hi").status_int == 201
    late = new_visitor(one)
    position = one.store.feed_position()
    assert_limited(late.send("hi", cmid="x-1"), WINDOW)
    assert_limited(on(two, late).send("hi", cmid="x-1"), WINDOW)
    assert one.store.feed_position() == position
    assert one.store.visitor_conversations(late.session["visitor_id"]) == []


def test_a_visitors_send_rate_is_counted_across_nodes(two_nodes: Any) -> None:
    one, two = two_nodes(messages_per_minute=4)
    ann = new_visitor(one)
    there = on(two, ann)
    statuses = [node.send(f"m{n}").status_int for n, node in enumerate((ann, there) * 2)]
    assert statuses == [201, 201, 201, 201]
    position = one.store.feed_position()
    for node in (ann, there):
        assert_limited(node.send("over"), 60)
    assert one.store.feed_position() == position
    assert len(ann.get_api("/visitor/history").json["messages"]) == 4


def test_failed_sign_ins_are_counted_across_nodes(two_nodes: Any) -> None:
    one, two = two_nodes(login_attempts=3)
    ann = create_agent(one)
    first, second = client(one), client(two)

    def login(browser: Client) -> int:
        body = {"email": ann.email, "password": "wrong"}
        return int(browser.post_api("/agent/login", body).status_int)

    assert [login(b) for b in (first, second, first)] == [401, 401, 401]
    for browser in (second, first):
        response = browser.post_api("/agent/login", {"email": ann.email, "password": "x"})
        assert_limited(response, 15 * 60)


@pytest.mark.live
def test_two_live_nodes_share_every_limit(tmp_path: Path) -> None:
    """Two ``livesupport serve`` processes (gevent, group commit on a native thread) on
    one SQLite file: the limits hold for the pair, whichever node a request reaches."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    open_store(url).dispose()  # the schema first: the nodes start together
    limits = {
        "LIVESUPPORT_NEW_VISITORS_PER_IP": "3",
        "LIVESUPPORT_NEW_CONVERSATIONS_PER_IP": "2",
        "LIVESUPPORT_MESSAGES_PER_MINUTE": "3",
    }
    nodes = [
        LiveServer(tmp_path, url, node_id=name, env=limits, wait=False)
        for name in ("web-1", "web-2")
    ]
    try:
        for node in nodes:
            node.wait_ready()
        one, two = (node.api for node in nodes)

        def post(http: requests.Session, api: str, path: str, body: Any) -> requests.Response:
            response = http.post(api + path, json=body, timeout=10)
            assert response.status_code < 500, response.text
            return response

        def refused(response: requests.Response, longest: float) -> None:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(response.headers["Retry-After"]) <= longest
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "Set-Cookie" not in response.headers

        browsers = [requests.Session() for _ in range(4)]
        for http, api in zip(browsers, (one, two, one), strict=False):
            assert post(http, api, "/visitor/session", {}).status_code == 200
        refused(post(browsers[3], two, "/visitor/session", {}), WINDOW)
        assert browsers[3].cookies.get("ls_vid") is None

        ann, bob, cid = browsers[:3]
        message = {"client_msg_id": "first", "body": "hello"}
        assert post(ann, one, "/visitor/messages", message).status_code == 201
        assert post(bob, two, "/visitor/messages", message).status_code == 201
        refused(post(cid, one, "/visitor/messages", message), WINDOW)
        refused(post(cid, two, "/visitor/messages", message), WINDOW)
        assert cid.get(two + "/visitor/history", timeout=10).json() == {"messages": []}

        for n, api in enumerate((two, one), 1):  # ann's second and third message
            sent = post(ann, api, "/visitor/messages", {"client_msg_id": f"m{n}", "body": "x"})
            assert sent.status_code == 201
        refused(post(ann, two, "/visitor/messages", {"client_msg_id": "m3", "body": "x"}), 60)
        history = ann.get(one + "/visitor/history", timeout=10).json()["messages"]
        assert [m["client_msg_id"] for m in history] == ["first", "m1", "m2"]
    finally:
        stopped = [node.stop() for node in nodes]
    assert stopped == [0, 0], [node.output() for node in nodes]


# -- concurrent polls ----------------------------------------------------------------------------
class Polls:
    """Polls of one browser parked in threads: ``start`` one, ``answered`` so far."""

    def __init__(self) -> None:
        self.answers: list[webtest.TestResponse] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, browser: Client, cursor: str) -> None:
        def run() -> None:
            response = browser.get_api("/visitor/poll", {"cursor": cursor, "timeout": PARKED})
            with self._lock:
                self.answers.append(response)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def answered(self) -> int:
        with self._lock:
            return len(self.answers)

    def statuses(self) -> list[int]:
        with self._lock:
            return [a.status_int for a in self.answers]


def test_one_node_holds_at_most_max_polls_per_visitor(make_app: AppFactory) -> None:
    middleware = make_app(max_polls_per_visitor=3)
    ann, polls = new_visitor(middleware), Polls()
    cursor = ann.session["cursor"]
    for _ in range(3):
        polls.start(on(middleware, ann), cursor)
    wait_until(lambda: len(middleware.hub) == 3, "three polls parked")
    polls.start(on(middleware, ann), cursor)
    wait_until(lambda: polls.answered() == 1, "the oldest poll answered")
    assert len(middleware.hub) == 3
    middleware.shutdown()
    wait_until(lambda: polls.answered() == 4, "every poll answered at shutdown")
    assert polls.statuses() == [200] * 4


def parked_on_web_1(two_nodes: Any) -> tuple[LiveSupport, LiveSupport, Client, str, Polls]:
    """Web-1 and web-2; a visitor with an open conversation, served by web-1, with
    ``max_polls_per_visitor`` (2) polls parked there: ``(web-1, web-2, the visitor,
    its cursor, web-1's polls)``."""
    one, two = two_nodes(max_polls_per_visitor=2)
    ann = new_visitor(one)
    assert ann.send("hello").status_int == 201
    cursor = ann.poll(timeout=1)["cursor"]  # after the message
    first = Polls()
    for _ in range(2):
        first.start(on(one, ann), cursor)
    wait_until(lambda: len(one.hub) == 2, "two polls parked on web-1")
    return one, two, ann, cursor, first


def still_parked(middleware: LiveSupport, browser: Client) -> bool:
    """Whether the node holds one poll of the visitor, not released. The local bus
    delivers notices in the publisher's thread, so once the other node's polls have
    answered, whatever their answering published has reached this node."""
    waiting = middleware.hub._waiters.get(f"visitor:{browser.session['visitor_id']}", [])
    return [w.released for w in waiting] == [False]


@pytest.mark.parametrize("two_nodes", ["sqlite"], indirect=True)
def test_a_poll_on_another_node_answers_the_polls_parked_on_the_first(two_nodes: Any) -> None:
    """The cross-node bound: a visitor's parked polls live on one node at a time. A poll
    reaching another node (its ``ls_node`` names the first) takes the visitor over; the
    first node answers the polls it held at once, and the new one stays parked."""
    one, two, ann, cursor, first = parked_on_web_1(two_nodes)
    second = Polls()
    second.start(on(two, ann), cursor)
    try:
        wait_until(lambda: first.answered() == 2, "web-1 answered its polls", within=5)
        assert first.statuses() == [200, 200]
        assert all(a.json["events"] == [] for a in first.answers)
        assert len(one.hub) == 0
        assert second.answered() == 0 and still_parked(two, ann)
        conversation = one.store.open_conversation(ann.session["visitor_id"])
        assert conversation is not None and conversation.node_id == "web-2"
    finally:
        two.shutdown()
        wait_until(lambda: second.answered() == 1, "web-2 answered")
    assert second.statuses() == [200]


@pytest.mark.parametrize("closed", [False, True], ids=["no-conversation", "closed"])
@pytest.mark.parametrize("two_nodes", ["sqlite"], indirect=True)
def test_polls_of_a_visitor_without_an_open_conversation_stay_on_one_node(
    two_nodes: Any, closed: bool
) -> None:
    """Nothing to take over, and still one node at a time."""
    one, two = two_nodes(max_polls_per_visitor=2)
    ann = new_visitor(one)
    if closed:
        assert ann.send("hello").status_int == 201
        assert ann.post_api("/visitor/close").status_int == 200
    cursor = ann.poll(timeout=1)["cursor"]
    first, second = Polls(), Polls()
    try:
        for _ in range(2):
            first.start(on(one, ann), cursor)
        wait_until(lambda: len(one.hub) == 2, "two polls parked on web-1")
        second.start(on(two, ann), cursor)
        wait_until(lambda: first.answered() == 2, "web-1 answered its polls", within=5)
        assert first.statuses() == [200, 200] and len(one.hub) == 0
        assert second.answered() == 0 and still_parked(two, ann)
    finally:
        two.shutdown()
        wait_until(lambda: second.answered() == 1, "web-2 answered")


# -- security headers ------------------------------------------------------------------------------
def test_every_answer_of_the_middleware_has_the_security_headers(make_app: AppFactory) -> None:
    middleware = make_app(
        new_visitors_per_ip=2, messages_per_minute=1, ip_window=WINDOW, login_attempts=2
    )
    browser = new_visitor(middleware)
    agent_browser = client(middleware, ELSEWHERE)
    agent = create_agent(middleware)
    widget = browser.get(PREFIX + "/widget.js")
    answers = [
        widget,
        browser.get(PREFIX + "/widget.js", headers={"If-None-Match": widget.headers["ETag"]}),
        browser.get(PREFIX + "/agent/"),
        browser.get(API + "/openapi.json"),
        browser.get(PREFIX + "/healthz"),
        browser.send("hi"),  # 201
        browser.post_api("/visitor/typing", {"typing": True}),  # 204
        browser.send("again"),  # 429, messages
        new_visitor(middleware).post_api("/visitor/read", {"seq": "x"}),  # 422
        session(client(middleware)),  # 429, new visitors
        browser.post_raw("/api/v1/visitor/messages", b"{", "application/json"),  # 400
        client(middleware).get_api("/visitor/history"),  # 401
        agent_browser.post_api("/agent/logout", None),  # 401
        browser.get(PREFIX + "/nope", expect_errors=True),  # 404
        browser.get(API + "/visitor/messages", expect_errors=True),  # 405
        browser.post_raw("/api/v1/visitor/messages", b"x" * 70_000),  # 413
        browser.post_raw("/api/v1/visitor/messages", b"{}", "text/plain"),  # 415
        browser.post_api("/visitor/close"),  # 200
        browser.post_api("/visitor/close"),  # 200 again
    ]
    for _ in range(2):
        agent_browser.post_api("/agent/login", {"email": agent.email, "password": "wrong"})
    answers += [agent_browser.post_api("/agent/login", {"email": agent.email, "password": "x"})]
    statuses = {a.status_int for a in answers}
    assert {200, 201, 204, 304, 400, 401, 404, 405, 413, 415, 422, 429} <= statuses
    for answer in answers:
        assert answer.status_int < 500, answer.text
        assert_security_headers(answer)


def test_an_unavailable_answer_has_the_security_headers(tmp_path: Path) -> None:
    """A real 503: the bus (Redis) is on a port where nothing listens. (Once, on the
    memory store: the middleware waits for the bus a few seconds at start.)"""
    factory = AppFactory(stdlib_host_app, "memory", tmp_path)
    try:
        middleware = factory(bus=f"redis://127.0.0.1:{free_port()}/0")
        response = client(middleware).get(PREFIX + "/healthz", expect_errors=True)
    finally:
        factory.close_all()
    assert response.status_int == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert_security_headers(response)


def test_the_console_redirect_has_the_security_headers(make_app: AppFactory) -> None:
    response = client(make_app()).get(PREFIX + "/agent")
    assert response.status_int == 308
    assert_security_headers(response)


def test_a_refused_session_sets_no_cookie(make_app: AppFactory) -> None:
    middleware = make_app(new_visitors_per_ip=1, ip_window=WINDOW)
    new_visitor(middleware)
    response = client(middleware).post_api("/visitor/session", {})
    assert_limited(response, WINDOW)
    assert set_cookies(response) == {}
