"""The store going away under a running node, and coming back.

The node reaches PostgreSQL through a :class:`~tests.proxy.TcpProxy`
(stopping the shared server would disturb everyone else). With the proxy cut,
every route that needs the store answers 503 ``unavailable`` with
``Retry-After`` in the error shape, never 500; /healthz names the store; the
routes that need no store (assets, the contract) still answer. With the proxy
restored the node serves again by itself, and nothing was half written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from livesupport import LiveSupport
from livesupport.routes import ROUTES, Route
from tests.conftest import (
    SECRET_KEY,
    Client,
    assert_error,
    create_agent,
    login,
    new_visitor,
    route_url,
    stdlib_host_app,
)
from tests.proxy import TcpProxy
from tests.services import POSTGRES_PORT, drop_postgres, postgres_url, require_postgres

pytestmark = pytest.mark.postgres

NEEDS_NO_STORE = {"widget", "console", "console_script", "console_style", "openapi"}
BODIES: dict[str, Any] = {
    "visitor_session": {"name": "Vee"},
    "visitor_send": {"client_msg_id": "outage-1", "body": "during the outage"},
    "visitor_typing": {"typing": True},
    "visitor_read": {"seq": 1},
    "visitor_rating": {"score": 5},
    "agent_login": {"email": "nobody@example.com", "password": "whatever it is"},
    "agent_status": {"status": "online"},
    "agent_send": {"client_msg_id": "outage-2", "body": "during the outage"},
    "agent_typing": {"typing": True},
    "agent_transfer": {"agent_id": "a_nobody"},
}


@pytest.fixture
def node() -> Iterator[tuple[LiveSupport, TcpProxy]]:
    require_postgres()
    url = postgres_url()
    proxy = TcpProxy(("127.0.0.1", POSTGRES_PORT))
    store = url.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/")
    middleware = LiveSupport(stdlib_host_app, secret_key=SECRET_KEY, node_id="web-1", store=store)
    yield middleware, proxy
    middleware.close()
    proxy.close()
    drop_postgres(url)


def call(client: Client, route: Route, cid: str) -> Any:
    url = route_url(route, cid=cid)
    if route.method == "GET":
        return client.get(url + ("?timeout=1" if route.endpoint.endswith("_poll") else ""),
                          expect_errors=True)  # fmt: skip
    return client.post_api(url.removeprefix("/livesupport/api/v1"), BODIES.get(route.endpoint))


def test_every_route_answers_503_while_the_store_is_away(node):
    middleware, proxy = node
    visitor = new_visitor(Client(middleware))
    cid = visitor.send("before the outage").json["message"]["conversation_id"]
    agent = login(middleware, create_agent(middleware).email)
    proxy.cut()

    for route in ROUTES:
        client = agent if route.side == "agent" else new_cold_visitor(middleware, visitor)
        response = call(client, route, cid)
        assert response.status_int != 500, (route.path, response.text)
        if route.endpoint in NEEDS_NO_STORE:
            assert response.status_int == 200, route.path
            continue
        assert response.status_int == 503 and int(response.headers["Retry-After"]) > 0
        if route.endpoint == "healthz":  # its own shape, with the error beside the parts
            assert response.json["store"].startswith("unavailable")
            assert response.json["bus"] == "ok"
            assert response.json["error"]["code"] == "unavailable"
        else:
            assert_error(response, 503)

    proxy.restore()
    assert Client(middleware).get("/livesupport/healthz").json["status"] == "ok"
    # Nothing was half written: the history is what was sent before the outage.
    page = visitor.poll(timeout=1)
    assert [e["data"]["body"] for e in page["events"] if e["type"] == "message"] == [
        "before the outage"
    ]
    assert visitor.send("after the outage").status_int == 201


def new_cold_visitor(middleware: LiveSupport, visitor: Client) -> Client:
    """The visitor's cookies on a client whose polls find no buffer (cold: the store)."""
    client = Client(middleware)
    for cookie in visitor.cookiejar:
        client.cookiejar.set_cookie(cookie)
    middleware.buffers.drop(visitor.session["visitor_id"])
    return client
