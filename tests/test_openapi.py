"""The OpenAPI document: a valid OpenAPI 3.1 file that lists exactly the node's routes and
describes the answers the middleware really gives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate

from livesupport.routes import ROUTES, routes_for

from .conftest import API, AppFactory, Client, new_agent, new_visitor, openapi_path, route_url

ROLES = ("all", "visitor", "agent")


@pytest.fixture
def memory_apps(host_app: Any, tmp_path: Any) -> Iterator[AppFactory]:
    """The document does not depend on the store: these tests run on ``memory://`` only."""
    factory = AppFactory(host_app, "memory", tmp_path)
    yield factory
    factory.close_all()


def spec(client: Client) -> dict[str, Any]:
    response = client.get(API + "/openapi.json")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    return response.json  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch", "head", "options")
    }


@pytest.mark.parametrize("role", ROLES)
def test_document_is_valid_openapi_31_listing_exactly_the_roles_routes(
    memory_apps: AppFactory, role: str
) -> None:
    document = spec(Client(memory_apps(role=role)))
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/livesupport"}]
    expected = {(openapi_path(r), r.method) for r in routes_for(role)}
    assert operations(document) == expected
    if role == "visitor":
        assert not any(p.startswith("/api/v1/agent") for p, _ in operations(document))
    if role == "agent":
        assert not any(p.startswith("/api/v1/visitor") for p, _ in operations(document))


def test_document_follows_the_prefix(memory_apps: AppFactory) -> None:
    client = Client(memory_apps(prefix="/help/chat"))
    response = client.get("/help/chat/api/v1/openapi.json")
    assert response.json["servers"] == [{"url": "/help/chat"}]
    mounted = client.get("/help/chat/api/v1/openapi.json", extra_environ={"SCRIPT_NAME": "/site"})
    assert mounted.json["servers"] == [{"url": "/site/help/chat"}]


def test_documented_error_statuses_cover_the_protocol(memory_apps: AppFactory) -> None:
    document = spec(Client(memory_apps()))
    for route in ROUTES:
        path = openapi_path(route)
        responses = document["paths"][path][route.method.lower()]["responses"]
        codes = set(responses)
        assert "405" in codes, route.endpoint
        if route.auth is not None:
            assert "401" in codes, route.endpoint
        if route.csrf:
            assert "403" in codes, route.endpoint
        if route.method == "POST":
            assert {"413", "415", "400", "422"} <= codes, route.endpoint
        if route.endpoint in ("visitor_poll", "agent_poll"):
            assert "400" in codes, route.endpoint
    login = document["paths"]["/api/v1/agent/login"]["post"]["responses"]
    assert "401" in login, "login answers 401 on bad credentials (PROTOCOL.md)"
    assert "429" in login


# -- answers against the document ------------------------------------------------------


class Checker:
    """Validates real answers against the document's schema for their route and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()
        self.problems: list[str] = []  # all of them, not just the first

    def __call__(self, response: Any, path: str, method: str = "GET") -> Any:
        self.seen.add((path, method, response.status_int))
        operation = self.document["paths"][path][method.lower()]
        status = str(response.status_int)
        where = f"{method} {path} {status}"
        if status not in operation["responses"]:
            self.problems.append(f"{where}: status not documented ({response.text[:100]})")
            return response
        documented = operation["responses"][status]
        if response.status_int == 204:
            if "content" in documented:
                self.problems.append(f"{where}: documented with content")
            return response
        schema = documented["content"]["application/json"]["schema"]
        root = {**schema, "components": self.document["components"]}
        validator = OAS31Validator(root, format_checker=oas31_format_checker)
        for error in validator.iter_errors(response.json):
            self.problems.append(f"{where}: {error.message} at {list(error.absolute_path)}")
        return response


def test_answers_match_the_document(app: Client) -> None:
    check = Checker(spec(app))
    guest = new_visitor(app)
    check(
        app.post_json(API + "/visitor/session", {"name": "Ann"}), "/api/v1/visitor/session", "POST"
    )
    check(guest.get_api("/visitor/history"), "/api/v1/visitor/history")
    send = check(guest.send("hello", cmid="oa-1"), "/api/v1/visitor/messages", "POST")
    cid = send.json["message"]["conversation_id"]
    check(guest.send("hello", cmid="oa-1"), "/api/v1/visitor/messages", "POST")  # 200 repeat
    check(guest.send("", cmid="oa-2"), "/api/v1/visitor/messages", "POST")  # 422
    check(
        Client(app.app).post_json(API + "/visitor/messages", {}, expect_errors=True),
        "/api/v1/visitor/messages",
        "POST",
    )  # 401
    check(
        guest.post_raw("/api/v1/visitor/messages", b"{", "text/plain"),
        "/api/v1/visitor/messages",
        "POST",
    )  # 415
    check(guest.get_api("/visitor/poll", {"timeout": "1"}), "/api/v1/visitor/poll")
    check(guest.get_api("/visitor/poll", {"cursor": "junk"}), "/api/v1/visitor/poll")  # 400
    check(guest.get_api("/visitor/history"), "/api/v1/visitor/history")
    check(guest.post_api("/visitor/typing", {"typing": True}), "/api/v1/visitor/typing", "POST")

    agent, _, me = new_agent(app)
    other, _, _ = new_agent(app)
    check(agent.get_api("/agent/session"), "/api/v1/agent/session")
    check(
        app.post_api("/agent/login", {"email": "no@example.com", "password": "x"}),
        "/api/v1/agent/login",
        "POST",
    )  # 401
    check(agent.get_api("/agent/agents"), "/api/v1/agent/agents")
    check(agent.get_api("/agent/conversations"), "/api/v1/agent/conversations")
    check(agent.get_api("/agent/conversations", {"status": "x"}), "/api/v1/agent/conversations")
    check(agent.get_api(f"/agent/conversations/{cid}"), "/api/v1/agent/conversations/{cid}")
    check(agent.get_api("/agent/conversations/c_none"), "/api/v1/agent/conversations/{cid}")
    claim = "/api/v1/agent/conversations/{cid}/claim"
    check(agent.post_api(f"/agent/conversations/{cid}/claim"), claim, "POST")
    check(other.post_api(f"/agent/conversations/{cid}/claim"), claim, "POST")  # 409
    check(other.post_api(f"/agent/conversations/{cid}/claim", csrf=False), claim, "POST")  # 403
    check(
        agent.post_api(
            f"/agent/conversations/{cid}/messages", {"client_msg_id": "r-1", "body": "hi"}
        ),
        "/api/v1/agent/conversations/{cid}/messages",
        "POST",
    )
    check(
        agent.post_api(f"/agent/conversations/{cid}/transfer", {"agent_id": "a_none"}),
        "/api/v1/agent/conversations/{cid}/transfer",
        "POST",
    )  # 422
    check(agent.get_api("/agent/poll", {"cursor": "junk"}), "/api/v1/agent/poll")  # 400
    check(guest.post_api("/visitor/close"), "/api/v1/visitor/close", "POST")
    events = guest.get_api("/visitor/poll", {"timeout": "1"})
    check(events, "/api/v1/visitor/poll")
    assert {e["type"] for e in events.json["events"]} >= {
        "message",
        "agent_joined",
        "conversation_closed",
    }
    check(
        agent.post_api(f"/agent/conversations/{cid}/close"),
        "/api/v1/agent/conversations/{cid}/close",
        "POST",
    )
    check(app.get(API.removesuffix("/api/v1") + "/healthz"), "/healthz")
    assert len(check.seen) >= 25
    assert check.problems == []


def test_method_not_allowed_is_documented(app: Client) -> None:
    check = Checker(spec(app))
    for route in ROUTES:
        path = openapi_path(route)
        url = route_url(route, cid="c_x")
        wrong = "DELETE"
        response = app.request(url, method=wrong, expect_errors=True)
        assert response.status_int == 405
        check(response, path, route.method)
    assert check.problems == []
