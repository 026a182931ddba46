"""Hostile input on every route of :data:`livesupport.routes.ROUTES`.

Whatever a client sends, the answer is never a 5xx; errors come in exactly the
protocol's shape with the code matching the status, and when several things
are wrong the first in the documented order answers: 404 > 405 > 401 > 403 >
413 > 415 > 400 > 422 > resource checks.

The hostile requests run against one app per backend per module (``world``):
each of them must be refused before it changes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from livesupport import LiveSupport
from livesupport.routes import ROUTES, Route

from .conftest import (
    API,
    ERROR_CODES,
    PREFIX,
    SECRET_KEY,
    AppFactory,
    Client,
    assert_error,
    call_wsgi,
    create_agent,
    new_agent,
    new_visitor,
    route_url,
    stdlib_host_app,
)

LIMIT = 64 * 1024
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
POST_ROUTES = [r for r in ROUTES if r.method == "POST"]
GET_ROUTES = [r for r in ROUTES if r.method == "GET"]

VALID_BODIES: dict[str, dict[str, Any]] = {
    "visitor_session": {"name": "Ann"},
    "visitor_send": {"client_msg_id": "hostile-1", "body": "hi"},
    "visitor_typing": {"typing": True},
    "visitor_read": {"seq": 1},
    "visitor_rating": {"score": 5},
    "agent_login": {"email": "someone@example.com", "password": "secret"},
    "agent_status": {"status": "online"},
    "agent_send": {"client_msg_id": "hostile-1", "body": "hi"},
    "agent_typing": {"typing": True},
    "agent_transfer": {"agent_id": "a_nosuchagent"},
}
WRONG_TYPES: dict[str, list[Any]] = {
    "string": [123, 10**30, True, None, [], {}, ["x"]],
    "boolean": ["true", 1, 0, None, [], {}],
    "integer": ["1", 1.5, True, None, [], {}],
}


@dataclass
class World:
    """One app with a visitor (its conversation open) and a signed-in agent."""

    factory: AppFactory
    anonymous: Client
    visitor: Client
    agent: Client
    cid: str  # a waiting conversation, for the agent routes

    def client(self, route: Route) -> Client:
        if route.auth == "visitor":
            return self.visitor
        if route.auth == "agent":
            return self.agent
        return self.anonymous

    def url(self, route: Route) -> str:
        return route_url(route, cid=self.cid)


@pytest.fixture(scope="module")
def world(make_module_app: AppFactory) -> World:
    app = Client(make_module_app())
    visitor = new_visitor(app)
    assert visitor.send("a conversation to protect").status_int == 201
    agent, _, _ = new_agent(app)
    waiting = new_visitor(app)
    cid = waiting.send("waiting").json["message"]["conversation_id"]
    return World(make_module_app, Client(app.app), visitor, agent, cid)


def post(
    world: World,
    route: Route,
    data: bytes,
    content_type: str | None = "application/json",
    **kw: Any,
) -> Any:
    client = world.client(route)
    path = route_url(route, cid=world.cid).removeprefix(PREFIX)
    return client.post_raw(path, data, content_type, **kw)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def never_5xx(response: Any) -> None:
    assert response.status_int < 500, (response.status, response.text[:300])
    if response.status_int >= 400:
        assert_error(response, response.status_int)


# -- bodies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    status: int | tuple[int, ...]
    content_type: str | None = "application/json"


def body_cases(route: Route) -> list[Case]:
    valid = VALID_BODIES.get(route.endpoint, {})
    required = route.body is not None and not route.body_optional
    cases = [
        Case("truncated", b'{"a":', 400),
        Case("trailing-garbage", dumps(valid) + b" {}", 400),
        Case("single-quotes", b"{'a': 1}", 400),
        Case("bare-word", b"hello", 400),
        Case("comment", b"{} // comment", 400),
        Case("trailing-comma", b'{"a": 1,}', 400),
        Case("array", b"[]", 422),
        Case("array-of-valid", dumps([valid]), 422),
        Case("string", b'"a string"', 422),
        Case("number", b"42", 422),
        Case("null", b"null", 422),
        Case("true", b"true", 422),
        Case("invalid-utf8", b'{"a": "\xff\xfe"}', 400),
        Case("overlong-utf8", b'{"a": "\xc0\xaf"}', 400),
        Case("utf16", '{"a": 1}'.encode("utf-16"), 400),
        Case("lone-surrogate-member", b'{"a": "\\ud800"}', (400, 422)),
        Case("lone-low-surrogate", b'{"a": "x\\udc00y"}', (400, 422)),
        Case("nan", b'{"a": NaN}', 400),
        Case("infinity", b'{"a": Infinity}', 400),
        Case("minus-infinity", b'{"a": -Infinity}', 400),
        Case("nested-100000", b"[" * 100_000, 413),
        Case("nested-60000-open", b"[" * 60_000, 400),
        Case("nested-30000-closed", b"[" * 30_000 + b"]" * 30_000, (400, 422)),
        Case("nested-objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, (400, 422)),
        Case("huge-integer-5000-digits", b"1" * 5000, (400, 422)),
        Case("oversized", dumps({**valid, "pad": "x" * LIMIT}), 413),
        Case("oversized-garbage", b"\xff" * (LIMIT + 1), 413),
        Case("text-plain", dumps(valid), 415, "text/plain"),
        Case("form", b"a=1&b=2", 415, "application/x-www-form-urlencoded"),
        Case("no-content-type", dumps(valid), 415, None),
        Case("latin1-charset", dumps(valid), 415, "application/json; charset=latin-1"),
        Case("json-lookalike", dumps(valid), 415, "application/jsonx"),
        Case("multipart", b"--x\r\n\r\n--x--", 415, "multipart/form-data; boundary=x"),
        Case("oversized-text-plain", b"x" * (LIMIT + 1), 413, "text/plain"),
        Case("malformed-text-plain", b'{"a":', 415, "text/plain"),
    ]
    if valid:
        strings = [k for k, v in valid.items() if isinstance(v, str)]
        if strings:
            surrogate = dumps(valid).replace(
                json.dumps(valid[strings[0]]).encode(), b'"\\ud800"', 1
            )
            cases.append(Case("lone-surrogate-field", surrogate, (400, 422)))
    if required:
        cases.append(Case("empty", b"", 400))
        cases.append(Case("whitespace", b"  \n ", 400))
        cases.append(Case("empty-object", b"{}", 422))
        assert route.body is not None
        for name in route.body.get("required", []):
            missing = {k: v for k, v in valid.items() if k != name}
            cases.append(Case(f"missing-{name}", dumps(missing), 422))
        for name, schema in route.body.get("properties", {}).items():
            if name not in valid:
                continue
            for i, wrong in enumerate(WRONG_TYPES[schema["type"]]):
                cases.append(Case(f"wrong-type-{name}-{i}", dumps({**valid, name: wrong}), 422))
            if schema["type"] != "integer" or "maximum" in schema:
                huge = {**valid, name: 10**4000}
                cases.append(Case(f"huge-integer-{name}", dumps(huge), (400, 422)))
    return cases


BODY_CASES = [(route, case) for route in POST_ROUTES for case in body_cases(route)]


@pytest.mark.parametrize(
    "route, case", BODY_CASES, ids=[f"{r.endpoint}-{c.name}" for r, c in BODY_CASES]
)
def test_hostile_bodies(world: World, route: Route, case: Case) -> None:
    response = post(world, route, case.data, case.content_type)
    assert_error(response, case.status)


def test_hostile_bodies_changed_nothing(world: World) -> None:
    """Runs after the hostile bodies (same module, same world)."""
    store = world.factory.built[0].store
    conversation = store.get_conversation(world.cid)
    assert conversation is not None and conversation.status == "waiting"
    assert [m.body for m in store.messages(world.cid)] == ["waiting"]
    assert world.agent.get_api("/agent/session").status_int == 200
    history = world.visitor.get_api("/visitor/history").json["messages"]
    assert [m["body"] for m in history] == ["a conversation to protect"]


def test_read_with_a_huge_seq_is_not_an_error(world: World) -> None:
    route = next(r for r in ROUTES if r.endpoint == "visitor_read")
    for seq in (10**30, 10**4000):
        response = post(world, route, dumps({"seq": seq}))
        never_5xx(response)
    never_5xx(post(world, route, b'{"seq": 1' + b"0" * 5000 + b"}"))


def test_bodies_up_to_64_kib_are_read(make_app: AppFactory) -> None:
    app = new_visitor(Client(make_app()))
    base = {"client_msg_id": "edge", "body": "😀" * 10_000, "pad": ""}
    size = len(json.dumps(base, ensure_ascii=False).encode())
    exact = {**base, "pad": "x" * (LIMIT - size)}
    data = json.dumps(exact, ensure_ascii=False).encode()
    assert len(data) == LIMIT
    assert app.post_raw("/api/v1/visitor/messages", data + b" ").status_int == 413
    response = app.post_raw("/api/v1/visitor/messages", data)
    assert response.status_int == 201, response.text[:300]
    assert response.json["message"]["body"] == "😀" * 10_000


def test_json_content_type_parameters_are_accepted(make_app: AppFactory) -> None:
    app = new_visitor(Client(make_app()))
    for i, content_type in enumerate(
        ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"]
    ):
        data = dumps({"client_msg_id": f"ct-{i}", "body": "hi"})
        response = app.post_raw("/api/v1/visitor/messages", data, content_type)
        assert response.status_int == 201, (content_type, response.text)


# -- query strings -------------------------------------------------------------------

HOSTILE_VALUES = {
    "nul": "%00",
    "non-utf8": "%ff%fe",
    "overlong": "%C0%AF",
    "rlo": "%E2%80%AE",
    "crlf": "%0d%0aSet-Cookie:%20x=1",
    "long": "9" * 100_000,
    "digits-20": "9" * 20,
    "negative-20": "-" + "9" * 19,
    "exponent": "1e400",
    "json": "%7B%7D",
    "sql": "'%20OR%201=1%20--",
    "plus": "+",
    "empty": "",
}
QUERY_NAMES = {
    "visitor_poll": ("cursor", "timeout"),
    "agent_poll": ("cursor", "timeout"),
}


def query_cases(route: Route) -> list[tuple[str, str, int | tuple[int, ...] | None]]:
    """``(id, query string, expected)``: ``None`` for "anything but a 5xx"."""
    names = [q[0] for q in route.query] or ["x"]
    polls = route.endpoint in QUERY_NAMES
    cases: list[tuple[str, str, int | tuple[int, ...] | None]] = []
    for name in names:
        for label, value in HOSTILE_VALUES.items():
            if polls and name == "timeout":
                if label in ("digits-20", "negative-20", "empty", "plus"):
                    continue  # numeric, or absent: a real wait
                cases.append((f"{name}-{label}", f"timeout={value}", 400))
            elif polls and name == "cursor":
                if label == "empty":
                    continue  # no cursor: a real wait
                cases.append((f"{name}-{label}", f"cursor={value}&timeout=1", 400))
            else:
                cases.append((f"{name}-{label}", f"{name}={value}", None))
        if polls:
            cases.append((f"{name}-repeated", f"{name}=junk&{name}=junk2&timeout=junk", 400))
        else:
            cases.append((f"{name}-repeated", f"{name}=1&{name}=x&{name}=%00", None))
    if not polls:
        cases.append(("junk-params", "&".join(f"p{i}=%ff%00" for i in range(2000)), None))
        cases.append(("no-equals", "%00&&&=&==", None))
    else:
        cases.append(
            ("junk-params", "&".join(f"p{i}=%ff" for i in range(2000)) + "&timeout=x", 400)
        )
    return cases


QUERY_CASES = [(route, case) for route in GET_ROUTES for case in query_cases(route)]


@pytest.mark.parametrize(
    "route, case", QUERY_CASES, ids=[f"{r.path}-{c[0]}" for r, c in QUERY_CASES]
)
def test_hostile_query_strings(world: World, route: Route, case: tuple[str, str, Any]) -> None:
    _, query, expected = case
    response = world.client(route).get(world.url(route) + "?" + query, expect_errors=True)
    if expected is None:
        never_5xx(response)
        assert response.status_int in (200, 400), response.status
    else:
        assert_error(response, expected)


@pytest.mark.parametrize(
    "query",
    [
        "before=99999999999999999999",
        "limit=99999999999999999999",
        "before=-9999999999999999999",
        "before=0",
        "limit=-1",
    ],
)
def test_history_with_extreme_numbers(world: World, query: str) -> None:
    response = world.visitor.get(API + "/visitor/history?" + query, expect_errors=True)
    never_5xx(response)


@pytest.mark.parametrize(
    "query", ["after_seq=99999999999999999999", "after_seq=-9999999999999999999", "after_seq=-1"]
)
def test_conversation_with_extreme_numbers(world: World, query: str) -> None:
    url = f"{API}/agent/conversations/{world.cid}?{query}"
    never_5xx(world.agent.get(url, expect_errors=True))


@pytest.mark.parametrize(
    "cid", ["%00", "x" * 5000, "..%2f..%2fhealthz", "%2e%2e", "c_%0d%0a", "%E2%80%AE"]
)
def test_hostile_conversation_ids_are_404(world: World, cid: str) -> None:
    for route in ROUTES:
        if "cid>" not in route.path:
            continue
        url = route_url(route, cid=cid)
        if route.method == "GET":
            response = world.agent.get(url, expect_errors=True)
        else:
            body = VALID_BODIES.get(route.endpoint)
            headers = {"X-CSRF-Token": world.agent.csrf}
            if body is None:
                response = world.agent.post(url, headers=headers, expect_errors=True)
            else:
                response = world.agent.post_json(url, body, headers=headers, expect_errors=True)
        if route.endpoint == "agent_transfer":
            assert_error(response, (404, 422))  # the unknown target is content (422)
        else:
            assert_error(response, 404)


RAW_BYTES = ["\xff", "\xc0\xaf", "\xed\xa0\x80", "%ff", "\x00", "\xe2\x80\xae"]


def _cookie_header(client: Client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


@pytest.mark.parametrize("raw", RAW_BYTES, ids=repr)
def test_non_utf8_path_bytes(world: World, raw: str) -> None:
    """PATH_INFO holds the request's bytes as latin-1 (PEP 3333): any bytes at all."""
    middleware = world.factory.built[0]
    for path in (
        f"{PREFIX}/{raw}",
        f"{API}/visitor/{raw}",
        f"{API}/agent/conversations/{raw}",
        f"{API}/agent/conversations/{raw}/claim",
    ):
        for method in ("GET", "POST"):
            status, _, body = call_wsgi(
                middleware,
                method,
                path,
                HTTP_COOKIE=_cookie_header(world.agent),
                HTTP_X_CSRF_TOKEN=world.agent.csrf,
            )
            assert status in (404, 405), (path, method, status, body)
            data = json.loads(body)
            assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
            assert data["error"]["code"] == ERROR_CODES[status], data


@pytest.mark.parametrize("raw", RAW_BYTES, ids=repr)
@pytest.mark.parametrize("route", GET_ROUTES, ids=lambda r: r.path)
def test_non_utf8_query_bytes(world: World, route: Route, raw: str) -> None:
    """Raw (not percent-escaped) bytes in QUERY_STRING, as a hostile client can send them."""
    middleware = world.factory.built[0]
    cookie = _cookie_header(world.client(route))
    names = [q[0] for q in route.query] or ["x"]
    query = "&".join(f"{name}={raw}" for name in names)
    if route.endpoint in QUERY_NAMES:
        query = f"cursor={raw}&timeout={raw}"
    status, headers, body = call_wsgi(
        middleware, "GET", world.url(route), query, HTTP_COOKIE=cookie
    )
    assert status < 500, (status, body[:200])
    if route.endpoint in QUERY_NAMES:
        assert status == 400, body
    if status >= 400:
        data = json.loads(body)
        assert data["error"]["code"] == ERROR_CODES[status], data


# -- methods and unknown routes ----------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_wrong_methods_are_405_with_allow(world: World, route: Route) -> None:
    for method in METHODS:
        if method == route.method or (route.method == "GET" and method == "HEAD"):
            continue
        response = world.anonymous.request(world.url(route), method=method, expect_errors=True)
        assert_error(response, 405)
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        assert route.method in allowed, response.headers


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/nope",
        "/api",
        "/api/v1",
        "/api/v1/",
        "/api/v2/visitor/session",
        "/api/v1/visitor/session/extra",
        "/API/v1/visitor/session",
        "/api/v1/visitor/session%00",
        "/widget.js/x",
        "/api/v1/agent/conversations/a/b/c",
        "/" + "x" * 10_000,
    ],
)
def test_unknown_routes_under_the_prefix_are_404(world: World, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = world.anonymous.request(PREFIX + path, method=method, expect_errors=True)
        assert_error(response, 404)
        assert "X-Host" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/livesupportx",
        "/livesupportx/api/v1/visitor/session",
        "/other",
        "/other/livesupport/healthz",
    ],
)
def test_paths_outside_the_prefix_go_to_the_host(world: World, path: str) -> None:
    for method in ("GET", "POST"):
        response = world.anonymous.request(path, method=method, expect_errors=True)
        assert response.status_int == 404
        assert response.headers["X-Host"] == "404"
        assert response.body == b"no such page"


# -- precedence -----------------------------------------------------------------------

OVERSIZED = dumps({"client_msg_id": "big", "body": "x" * (LIMIT + 10)})


def test_404_before_405(world: World) -> None:
    assert_error(
        world.anonymous.request(API + "/visitor/nothing", method="PUT", expect_errors=True), 404
    )


def test_405_before_401(world: World) -> None:
    for path in ("/visitor/messages", "/agent/conversations", "/agent/logout"):
        method = "GET" if path != "/agent/conversations" else "POST"
        response = world.anonymous.request(API + path, method=method, expect_errors=True)
        assert_error(response, 405)


def test_401_before_413_415_400_and_422(world: World) -> None:
    send_v = next(r for r in ROUTES if r.endpoint == "visitor_send")
    send_a = next(r for r in ROUTES if r.endpoint == "agent_send")
    for route in (send_v, send_a):
        path = route_url(route, cid=world.cid).removeprefix(PREFIX)
        for data, content_type in (
            (OVERSIZED, "application/json"),
            (b"{}", "text/plain"),
            (b"{", "application/json"),
            (b"{}", "application/json"),
        ):
            response = world.anonymous.post_raw(path, data, content_type)
            assert_error(response, 401)
    bad_cursor = world.anonymous.get(API + "/visitor/poll?cursor=junk", expect_errors=True)
    assert_error(bad_cursor, 401)
    unknown = world.anonymous.get(API + "/agent/conversations/c_nosuchthing", expect_errors=True)
    assert_error(unknown, 401)


def test_403_before_413_415_400_and_422(world: World) -> None:
    path = f"/api/v1/agent/conversations/{world.cid}/messages"
    for data, content_type in (
        (OVERSIZED, "application/json"),
        (b"{}", "text/plain"),
        (b"{", "application/json"),
        (b"{}", "application/json"),
    ):
        response = world.agent.post_raw(path, data, content_type, csrf=False)
        assert_error(response, 403)
    unknown = world.agent.post_raw(
        "/api/v1/agent/conversations/c_nosuchthing/claim", b"", None, csrf=False
    )
    assert_error(unknown, 403)


def test_413_before_415(world: World) -> None:
    for route in POST_ROUTES:
        response = post(world, route, b"x" * (LIMIT + 1), "text/plain")
        assert_error(response, 413)
        response = post(world, route, OVERSIZED, None)
        assert_error(response, 413)


def test_415_before_400(world: World) -> None:
    for route in POST_ROUTES:
        assert_error(post(world, route, b"{not json", "text/plain"), 415)


def test_422_before_resource_checks(world: World) -> None:
    unknown = "/api/v1/agent/conversations/c_nosuchthing"
    assert_error(world.agent.post_raw(unknown + "/messages", b'{"body": 5}'), 422)
    assert_error(world.agent.post_raw(unknown + "/typing", b"{}"), 422)
    assert_error(world.agent.post_raw(unknown + "/transfer", b'{"agent_id": 5}'), 422)
    closing = new_visitor(world.anonymous)
    cid = closing.send("soon closed").json["message"]["conversation_id"]
    closing.post_api("/visitor/close")
    closed = f"/api/v1/agent/conversations/{cid}"
    assert_error(world.agent.post_raw(closed + "/messages", b'{"client_msg_id": "x"}'), 422)
    assert_error(world.agent.post_raw(closed + "/transfer", b"{}"), 422)
    # A visitor without a conversation: an invalid rating is 422 before the missing one's 404.
    fresh = new_visitor(world.anonymous)
    assert_error(fresh.post_api("/visitor/rating", {"score": 9}), 422)


def test_every_error_status_keeps_the_shape(make_app: AppFactory) -> None:
    """A 429 and a 409 too, with ``Retry-After`` on the 429."""
    app = Client(make_app(messages_per_minute=2, login_attempts=1))
    guest = new_visitor(app)
    assert guest.send("1").status_int == 201
    assert guest.send("2").status_int == 201
    limited = guest.send("3")
    assert_error(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    agent = create_agent(app.app)
    for status in (401, 429):
        response = app.post_api("/agent/login", {"email": agent.email, "password": "wrong"})
        assert_error(response, status)
    assert int(response.headers["Retry-After"]) >= 1


def test_errors_outside_the_host_app_never_reach_it() -> None:
    """The host app is not called for anything under the prefix."""
    calls: list[str] = []

    def host(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ["PATH_INFO"])
        return stdlib_host_app(environ, start_response)

    middleware = LiveSupport(host, secret_key=SECRET_KEY, store="memory://", node_id="web-1")
    try:
        client = Client(middleware)
        for path in ("", "/", "/nope", "/api/v1/visitor/poll"):
            client.get(PREFIX + path, expect_errors=True)
        assert calls == []
        client.get("/livesupportx", expect_errors=True)
        assert calls == ["/livesupportx"]
    finally:
        middleware.close()
