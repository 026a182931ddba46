"""Roles: a visitor node serves only the visitor side, an agent node only the agent
side, and the two share nothing but the store and the bus.

Every route of the protocol is requested on every role: the other side's
routes answer 404 in the error shape (before any cookie or body check), the
OpenAPI document lists exactly the node's own routes, an agent node injects
no widget. Then a conversation runs across a visitor node and an agent node
that meet only through a shared SQLite file and a shared in-process bus.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livesupport.routes import ROUTES, Route, routes_for

from .cluster.conftest import Nodes, reply
from .conftest import (
    API,
    HOST_HTML,
    PREFIX,
    WIDGET_TAG,
    Client,
    assert_error,
    create_agent,
    login,
    new_visitor,
    openapi_path,
    route_url,
)

SIDES = {"visitor": ("visitor", "public"), "agent": ("agent", "public"),
         "all": ("visitor", "agent", "public")}  # fmt: skip


@pytest.fixture
def nodes(tmp_path: Path, sqlite_template: Path) -> Iterator[Nodes]:
    factory = Nodes(tmp_path, sqlite_template)
    yield factory
    factory.close_all()


def request(client: Client, route: Route) -> Any:
    url = route_url(route, cid="c_nothing")
    if route.endpoint.endswith("_poll"):
        url += "?timeout=1"
    if route.method == "GET":
        return client.get(url, expect_errors=True)
    return client.post(url, b"{}", content_type="application/json", expect_errors=True)


@pytest.mark.parametrize("role", ["visitor", "agent"])
def test_the_other_sides_routes_do_not_exist(nodes: Nodes, role: str):
    client = Client(nodes("node-1", role))
    foreign = [r for r in ROUTES if r.side not in SIDES[role]]
    assert foreign, "each role lacks some routes"
    for route in foreign:
        response = request(client, route)
        assert_error(response, 404)
    if role == "visitor":
        assert_error(client.get(PREFIX + "/agent", expect_errors=True), 404)  # no redirect
    # Its own routes are there (they answer, whatever the answer, but never 404 for
    # being absent; a 404 of a missing resource says so in its message).
    for route in routes_for(role):
        response = request(client, route)
        if response.status_int == 404:
            assert response.json["error"]["message"] != "no such route", route.path


@pytest.mark.parametrize("role", ["visitor", "agent", "all"])
def test_openapi_lists_exactly_the_nodes_routes(nodes: Nodes, role: str):
    document = Client(nodes("node-1", role)).get(API + "/openapi.json").json
    listed = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert listed == {(openapi_path(r), r.method) for r in ROUTES if r.side in SIDES[role]}


@pytest.mark.parametrize(("role", "injected"), [("visitor", True), ("agent", False), ("all", True)])
def test_only_visitor_facing_nodes_inject_the_widget(nodes: Nodes, role: str, injected: bool):
    client = Client(nodes("node-1", role))
    page = client.get("/")
    assert (WIDGET_TAG in page.body) is injected
    if not injected:
        assert page.body == HOST_HTML  # byte for byte
    widget = client.get(PREFIX + "/widget.js", expect_errors=True)
    assert widget.status_int == (200 if injected else 404)
    health = client.get(PREFIX + "/healthz").json
    assert (health["role"], health["node_id"], health["status"]) == (role, "node-1", "ok")


def test_a_visitor_node_and_an_agent_node_share_only_store_and_bus(nodes: Nodes):
    web, desk = nodes("web-1", "visitor"), nodes("desk-1", "agent")
    visitor = new_visitor(Client(web))
    agent = login(desk, create_agent(desk).email)
    agent_cursor = agent.poll(timeout=1, side="agent")["cursor"]

    cid = visitor.send("hello from the web").json["message"]["conversation_id"]
    events = agent.poll(agent_cursor, timeout=5, side="agent")["events"]
    assert "hello from the web" in [e["data"].get("body") for e in events]
    cursor = visitor.poll(timeout=1)["cursor"]

    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    reply(agent, cid, "hello from the desk")
    events = visitor.poll(cursor, timeout=5)["events"]
    assert [(e["type"], e["seq"]) for e in events] == [("agent_joined", 2), ("message", 3)]
    assert web.store.get_conversation(cid).node_id == "web-1"
