"""schemathesis against the contract the middleware serves (issue 6, item 6).

The OpenAPI document is loaded from ``GET /livesupport/api/v1/openapi.json``
and every operation in it is exercised with schema-valid (positive) and
schema-violating (negative) requests: through the WSGI app in-process (the
default run: 50 + 50 examples per operation), and against a real
``livesupport serve`` process (``slow``: 100 + 100), each followed by
schemathesis's stateful phase over the links it infers (``slow``).

Every response must pass schemathesis's checks: no 5xx, only documented
status codes, content types and headers, bodies that match the response
schemas, invalid requests refused, requests without credentials refused
(``ignored_auth``), and so on. One check is left out: ``positive_data_acceptance``
(a schema-valid request answered 400/422). The protocol answers 400 to an
unparseable cursor although any string is schema-valid, so that check cannot
hold for opaque tokens; the places where the document is looser than the
validator are pinned down separately (``test_document_and_validator_agree``).

A negative example whose query has an empty or repeated parameter
(``?timeout=``, ``?limit=1&limit=x``) is not held to the rejection check: the
middleware reads an empty value as absent and a repeated one by its first value,
which the existing tests rely on and the document does not say (every other
check still applies to it).

Operations without any input (``widget.js``, the console's three files,
``healthz``) have a single possible request: hypothesis sends it once, not 100
times, and there is nothing for a negative example to violate.

Credentials: an auth provider gives visitor routes a visitor's cookies, agent
routes a supervisor's session and its CSRF token (a fresh session for each
``logout``, which ends it).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from livesupport import LiveSupport
from livesupport.routes import ROUTES, Route
from livesupport.signing import Signer
from livesupport.store import open_store

from ..conftest import SECRET_KEY, Client, create_agent, new_visitor, openapi_path
from ..live import SECRET as LIVE_SECRET
from ..live import LiveServer
from .conftest import Session, open_session

OPENAPI = "/livesupport/api/v1/openapi.json"
FAST_EXAMPLES = 50  # per generation mode: 100 per operation
SLOW_EXAMPLES = 100  # per generation mode: 200 per operation
EXCLUDED_CHECKS = [positive_data_acceptance]
BY_LABEL = {f"{r.method} {openapi_path(r)}": r for r in ROUTES}


def _read_leniently(url: str) -> bool:
    """Whether the query as sent has a parameter that is empty or given more than once.

    The middleware reads ``?timeout=`` as no timeout and a repeated parameter by its
    first value (tests/test_errors.py relies on both); the document says neither, so
    schemathesis counts such a query as invalid and its acceptance as a failure.
    """
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    return len(names) != len(set(names)) or any(value == "" for _, value in pairs)


def _has_input(route: Route) -> bool:
    return bool(route.query or route.body or route.auth or "<" in route.path)


@dataclass
class Target:
    """A schema loaded from a running middleware, and how to reach and sign into it."""

    schema: Any
    visitor_cookies: dict[str, str]
    agent: Session
    fresh_agent: Callable[[], Session]
    fresh_visitor: Callable[[], dict[str, str]]
    call_kwargs: dict[str, Any] = field(default_factory=dict)

    def operation(self, route: Route) -> Any:
        return self.schema[openapi_path(route)][route.method]

    def install_auth(self) -> None:
        target = self

        @self.schema.auth(refresh_interval=None)
        class Credentials:
            def get(self, case: Any, context: Any) -> tuple[dict[str, str], dict[str, str]]:
                route = BY_LABEL[case.operation.label]
                if route.auth == "visitor":
                    return dict(target.visitor_cookies), {}
                if route.auth == "agent":
                    session = (
                        target.fresh_agent() if route.endpoint == "agent_logout" else target.agent
                    )
                    headers = {"X-CSRF-Token": session.csrf} if route.csrf else {}
                    return {"ls_agent": session.cookie}, headers
                return {}, {}

            def set(self, case: Any, data: Any, context: Any) -> None:
                cookies, headers = data
                if cookies:
                    case.cookies = {**(case.cookies or {}), **cookies}
                if headers:
                    case.headers = {**(case.headers or {}), **headers}


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # The same examples on every run, so CI is reproducible; widen the search
        # by hand (or with the fuzz target) when hunting.
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def exercise(target: Target, route: Route, mode: GenerationMode, examples: int) -> int:
    """Send up to ``examples`` generated requests for ``route``; the number sent."""
    operation = target.operation(route)
    sent = itertools.count()

    @_settings(examples)
    @given(case=operation.as_strategy(mode, auth_storage=target.schema.auth))
    def run(case: Any) -> None:
        next(sent)
        response = case.call(**target.call_kwargs)
        excluded = EXCLUDED_CHECKS
        if mode == GenerationMode.NEGATIVE and _read_leniently(response.request.url):
            excluded = [*EXCLUDED_CHECKS, negative_data_rejection]
        case.validate_response(
            response, excluded_checks=excluded, transport_kwargs=target.call_kwargs or None
        )

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE and not _has_input(route), route.endpoint
    return next(sent)


def run_stateful(target: Target, scenarios: int) -> int:
    """schemathesis's stateful phase over the links it infers; the number of calls made."""
    calls = itertools.count()
    kwargs = target.call_kwargs

    class Machine(target.schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # New principals for every scenario, so a scenario's answers do not depend on
            # what the ones before it did (hypothesis replays scenarios and checks that).
            target.visitor_cookies = target.fresh_visitor()
            target.agent = target.fresh_agent()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return dict(kwargs)

        def call(self, case: Any, **call_kwargs: Any) -> Any:
            next(calls)
            return super().call(case, **call_kwargs)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **transport: Any
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=EXCLUDED_CHECKS,
                transport_kwargs=transport or None,
                recorder=self.recorder,
            )

    Machine.run(settings=settings(_settings(scenarios), stateful_step_count=12))
    return next(calls)


def _links(target: Target) -> list[str]:
    machine = target.schema.as_state_machine()
    return sorted(
        f"{name} -> {link.status_code} -> {link.target.label}"
        for name, operation in machine._transitions.operations.items()
        for link in operation.outgoing
    )


# -- through the WSGI app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    unlimited = 10**6  # generated sends and failed logins must not turn into 429s
    middleware = LiveSupport(
        _host,
        secret_key=SECRET_KEY,
        store="memory://",
        node_id="web-1",
        messages_per_minute=unlimited,
        login_attempts=unlimited,
        login_attempts_per_ip=unlimited,
    )
    middleware.shutdown()  # polls answer at once instead of holding for their timeout
    try:

        def fresh_visitor() -> dict[str, str]:
            visitor = new_visitor(Client(middleware), name="Ann")
            assert visitor.send("a conversation to work on").status_int == 201
            return {k: visitor.cookies[k] for k in ("ls_vid", "ls_node")}

        supervisor = create_agent(middleware, role="supervisor")
        target = Target(
            schema=schemathesis.openapi.from_wsgi(OPENAPI, middleware),
            visitor_cookies=fresh_visitor(),
            agent=open_session(middleware, supervisor.id),
            fresh_agent=lambda: open_session(middleware, supervisor.id),
            fresh_visitor=fresh_visitor,
        )
        target.install_auth()
        yield target
    finally:
        middleware.close()


def _host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host"]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.endpoint)
def test_wsgi_operation(wsgi_target: Target, route: Route) -> None:
    if route.endpoint == "openapi":
        pytest.skip("schemathesis leaves out the operation that serves the schema itself")
    sent = sum(exercise(wsgi_target, route, mode, FAST_EXAMPLES) for mode in GenerationMode)
    assert sent >= 2 * FAST_EXAMPLES or not _has_input(route), sent


def test_every_route_is_an_operation(wsgi_target: Target) -> None:
    labels = {op.ok().label for op in wsgi_target.schema.get_all_operations()}
    assert labels == set(BY_LABEL) - {"GET /api/v1/openapi.json"}


@pytest.mark.slow
def test_wsgi_stateful(wsgi_target: Target) -> None:
    assert _links(wsgi_target), "schemathesis infers no link: the stateful phase would be empty"
    assert run_stateful(wsgi_target, scenarios=100) >= 200


# -- the document against the validator ---------------------------------------------------


def _document() -> dict[str, Any]:
    middleware = LiveSupport(_host, secret_key=SECRET_KEY, store="memory://", node_id="web-1")
    try:
        return json.loads(Client(middleware).get(OPENAPI).body)
    finally:
        middleware.close()


def _request_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return dict(schema["schema"])


def _query_schema(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    params = document["paths"][path]["get"]["parameters"]
    return dict(next(p["schema"] for p in params if p["name"] == name))


# (what, path, body or query, value) where the document lets through what the app refuses.
LOOSE = [
    pytest.param("body", "/api/v1/visitor/session", {"name": "Ann\x00"}, id="session-name-nul"),
    pytest.param(
        "body", "/api/v1/visitor/rating", {"score": 5, "comment": "ok\x00"}, id="rating-comment-nul"
    ),
    pytest.param("query", "/api/v1/agent/conversations", {"status": "open"}, id="status-enum"),
    pytest.param("query", "/api/v1/agent/conversations", {"before": "c_1/2"}, id="before-id"),
]


@pytest.mark.parametrize("where, path, values", LOOSE)
def test_document_and_validator_agree(where: str, path: str, values: dict[str, Any]) -> None:
    """What the document calls valid the app accepts (no 400/422), and the other way round."""
    document = _document()
    middleware = LiveSupport(_host, secret_key=SECRET_KEY, store="memory://", node_id="web-1")
    try:
        visitor = new_visitor(Client(middleware))
        visitor.send("hello")
        supervisor = create_agent(middleware, role="supervisor")
        session = open_session(middleware, supervisor.id)
        agent = Client(middleware)
        agent.set_cookie("ls_agent", session.cookie)
        if where == "body":
            schema = _request_schema(document, path, "post")
            valid = jsonschema.Draft202012Validator(schema).is_valid(values)
            answer = visitor.post_json("/livesupport" + path, values, expect_errors=True)
        else:
            valid = all(
                jsonschema.Draft202012Validator(_query_schema(document, path, k)).is_valid(v)
                for k, v in values.items()
            )
            answer = agent.get("/livesupport" + path, values, expect_errors=True)
        accepted = answer.status_int not in (400, 422)
        assert valid == accepted, (valid, answer.status, answer.text[:200])
    finally:
        middleware.close()


# -- against a real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("schemathesis-live")
    store_url = f"sqlite:///{workdir / 'live.db'}"
    store = open_store(store_url)  # the server's database, to add an agent and its sessions
    env = {
        "LIVESUPPORT_MESSAGES_PER_MINUTE": "1000000",
        "LIVESUPPORT_LOGIN_ATTEMPTS": "1000000",
        "LIVESUPPORT_LOGIN_ATTEMPTS_PER_IP": "1000000",
        # An agent poll with no cursor waits its timeout: hold it 1 s, not 25.
        "LIVESUPPORT_POLL_TIMEOUT": "1",
        "LIVESUPPORT_POLL_TIMEOUT_MAX": "1",
    }
    try:
        server = LiveServer(workdir, store_url, env=env)
    except RuntimeError as exc:
        store.dispose()
        pytest.skip(f"livesupport serve did not start: {exc}")
    signer = Signer(LIVE_SECRET)
    try:

        def fresh_visitor() -> dict[str, str]:
            http = requests.Session()
            http.post(server.api + "/visitor/session", json={"name": "Ann"}, timeout=10)
            sent = http.post(
                server.api + "/visitor/messages",
                json={"client_msg_id": "st-1", "body": "hello"},
                timeout=10,
            )
            assert sent.status_code == 201, sent.text
            return {k: str(http.cookies[k]) for k in ("ls_vid", "ls_node")}

        supervisor = store.create_agent("st@example.com", "Sam", "supervisor", "x")

        def fresh_agent() -> Session:
            return _stored_session(store, signer, supervisor.id)

        target = Target(
            schema=schemathesis.openapi.from_url(server.url + OPENAPI),
            visitor_cookies=fresh_visitor(),
            agent=fresh_agent(),
            fresh_agent=fresh_agent,
            fresh_visitor=fresh_visitor,
            call_kwargs={"base_url": server.url + "/livesupport"},
        )
        target.install_auth()
        yield target
    finally:
        server.stop()
        store.dispose()
    assert "Traceback" not in server.output(), server.output()


def _stored_session(store: Any, signer: Signer, agent_id: str) -> Session:
    import secrets

    from livesupport.clock import utcnow
    from livesupport.signing import token_hash
    from livesupport.store.base import AgentSession

    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    store.create_session(AgentSession(token_hash(token), agent_id, csrf, now, now))
    return Session(signer.sign("agent", token), csrf, agent_id, token)


@pytest.mark.slow
@pytest.mark.live
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.endpoint)
def test_live_operation(live_target: Target, route: Route) -> None:
    if route.endpoint == "openapi":
        pytest.skip("schemathesis leaves out the operation that serves the schema itself")
    sent = sum(exercise(live_target, route, mode, SLOW_EXAMPLES) for mode in GenerationMode)
    assert sent >= 2 * SLOW_EXAMPLES or not _has_input(route), sent


@pytest.mark.slow
@pytest.mark.live
def test_live_stateful(live_target: Target) -> None:
    assert run_stateful(live_target, scenarios=100) >= 200
