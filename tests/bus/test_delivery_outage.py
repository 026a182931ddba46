"""Two nodes in one process, the visitor node's bus connection cut and restored.

Node ``web-1`` (role visitor) reaches Redis through a :class:`TcpProxy`;
node ``agents`` (role agent) reaches it directly; both share one SQLite
store. While web-1's bus is down its polls read the store every couple of
seconds, its /healthz says 503 with the failing part, and sends still commit;
what it could not publish reaches the agent node when the bus is back, and
its buffers are rebuilt from the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from livesupport import LiveSupport
from livesupport.delivery import OUTAGE_RECHECK
from tests.conftest import SECRET_KEY, Client, assert_error, create_agent, login, new_visitor
from tests.proxy import TcpProxy
from tests.services import REDIS, REDIS_PORT, require_redis, unique_name
from tests.test_buffers import counted_queries

from .conftest import eventually

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host"]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[LiveSupport, LiveSupport, TcpProxy]]:
    require_redis()
    prefix = unique_name("outage")
    proxy = TcpProxy(("127.0.0.1", REDIS_PORT))
    store = f"sqlite:///{tmp_path / 'chat.db'}"
    common = {"secret_key": SECRET_KEY, "store": store}
    web = LiveSupport(
        host,
        node_id="web-1",
        role="visitor",
        bus=f"redis://127.0.0.1:{proxy.port}/0?channel_prefix={prefix}:",
        **common,
    )
    agents = LiveSupport(host, node_id="agents", role="agent",
                         bus=f"{REDIS}?channel_prefix={prefix}:", **common)  # fmt: skip
    for node in (web, agents):
        node.bus.reconnect_max = 0.3  # type: ignore[attr-defined]  (seconds; tests wait)
    yield web, agents, proxy
    proxy.close()
    web.close()
    agents.close()


def healthz(node: LiveSupport) -> Any:
    return Client(node).get("/livesupport/healthz", expect_errors=True)


def reply(agent: Client, cid: str, body: str) -> None:
    answer = agent.post_api(f"/agent/conversations/{cid}/messages",
                            {"client_msg_id": body.replace(" ", "-"), "body": body})  # fmt: skip
    assert answer.status_int == 201, answer.text


def bodies(page: dict[str, Any]) -> list[str]:
    return [e["data"]["body"] for e in page["events"] if e["type"] == "message"]


def test_an_outage_degrades_to_store_reads_and_heals(nodes):
    web, agents, proxy = nodes
    visitor = new_visitor(Client(web))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    agent = login(agents, create_agent(agents).email)
    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    cursor = visitor.poll(timeout=1)["cursor"]
    agent_cursor = agent.poll(timeout=1, side="agent")["cursor"]

    with ThreadPoolExecutor(2) as pool:
        parked: Future = pool.submit(visitor.poll, cursor, 20)
        proxy.cut()
        eventually(lambda: not web.bus.available, what="web-1 notices the outage")

        health = healthz(web)
        assert health.status_int == 503 and health.headers["Retry-After"]
        assert health.json["bus"].startswith("unavailable") and health.json["store"] == "ok"
        assert health.json["error"]["code"] == "unavailable"
        assert healthz(agents).status_int == 200

        # A reply published while web-1 hears nothing: its parked poll reads the store.
        started = time.monotonic()
        reply(agent, cid, "during the outage")
        page = parked.result(timeout=15)
        while not bodies(page):
            # An ephemeral event (the queue place of the first message, heard late) may
            # answer the parked poll first: the reply comes on the next one.
            assert page["events"] and all(e["type"] != "message" for e in page["events"])
            page = visitor.poll(page["cursor"], timeout=10)
        assert bodies(page) == ["during the outage"]
        assert time.monotonic() - started < OUTAGE_RECHECK + 3
        cursor = page["cursor"]

        # A send still commits; the agent node hears of it once web-1's bus is back.
        agent_cursor = agent.poll(agent_cursor, timeout=1, side="agent")["cursor"]
        agent_poll: Future = pool.submit(agent.poll, agent_cursor, 20, "agent")
        assert visitor.send("are you there?").status_int == 201
        proxy.restore()
        eventually(lambda: web.bus.available, what="web-1 reconnects")
        events = agent_poll.result(timeout=15)["events"]
        assert "are you there?" in [e["data"].get("body") for e in events]
    assert healthz(web).status_int == 200

    # Rebuilt from the store once, then answered from memory again.
    first = visitor.poll(cursor, timeout=1)
    assert bodies(first) == ["are you there?"]
    reply(agent, cid, "after the outage")
    with counted_queries(web) as queries:
        answer = visitor.poll(first["cursor"], timeout=5)
    assert bodies(answer) == ["after the outage"] and queries == []


def test_polls_parked_through_an_outage_are_resynchronised(nodes, monkeypatch):
    """Without the periodic re-read, the resync alone finds what was missed."""
    web, agents, proxy = nodes
    monkeypatch.setattr(web.delivery, "recheck_interval", lambda: None)
    visitor = new_visitor(Client(web))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    agent = login(agents, create_agent(agents).email)
    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    cursor = visitor.poll(timeout=1)["cursor"]
    with ThreadPoolExecutor(1) as pool:
        parked: Future = pool.submit(visitor.poll, cursor, 30)
        proxy.cut()
        eventually(lambda: not web.bus.available, what="web-1 notices the outage")
        reply(agent, cid, "missed notice")
        assert not parked.done()  # its notice went nowhere
        proxy.restore()
        page = parked.result(timeout=15)
    assert bodies(page) == ["missed notice"]


def test_healthz_names_the_failing_part_in_the_error_shape(nodes):
    web, _, proxy = nodes
    proxy.cut()
    eventually(lambda: not web.bus.available, what="web-1 notices the outage")
    health = healthz(web)
    assert set(health.json) >= {"status", "node_id", "role", "store", "bus", "error"}
    assert health.json["status"] == "unavailable" and health.json["node_id"] == "web-1"
    assert json.loads(health.body)["error"]["message"] == "bus unavailable"
    # Any route that fails on the bus answers in the error shape (none does today: sends
    # commit and keep their notices); the visitor routes still work from the store.
    visitor = new_visitor(Client(web))
    assert visitor.send("still works").status_int == 201
    assert_error(Client(web).get("/livesupport/agent/", expect_errors=True), 404)
