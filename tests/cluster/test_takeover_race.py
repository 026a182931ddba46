"""Takeover races, forced: a visitor's poll reaching a node that does not own its
conversation, with an agent's reply committed at each point of the takeover.

The taking node collects notices (``buffers.begin``), re-points ``node_id`` to
itself (``set_node``), then reads the store (``visitor_feed``). An agent's
reply committed before ``set_node`` is published to the old node and is in
the read; one committed after it is published to the new node, and is in the
read, in a notice, or both. Whatever the point, the visitor gets every event
exactly once, in order, and the new node's buffer is complete: the next
reply is answered from memory, with no query.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Client, create_agent, login, new_visitor
from tests.test_buffers import counted_queries

from .conftest import Nodes, moved_visitor, reply

# Where, in the taking node's cold read, the agent's reply commits.
POINTS = [
    ("before", "visitor_conversations"),  # before the take-over begins
    ("before", "set_node"),  # after the read of the conversations, before re-pointing
    ("after", "set_node"),  # re-pointed, not read yet: published to the new node
    ("after", "visitor_feed"),  # read already: only the notice carries it
]


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events if e["seq"] is not None]


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["body"] for e in events if e["type"] == "message"]


def conversation_on_web1(nodes: Nodes) -> tuple[Any, Any, Client, Client, str, str]:
    web1, web2 = nodes("web-1", "visitor"), nodes("web-2", "visitor")
    agents = nodes("agents", "agent")
    visitor = new_visitor(Client(web1))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    agent = login(agents, create_agent(agents).email)
    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    reply(agent, cid, "first reply")
    page = visitor.poll(timeout=1)
    assert seqs(page["events"]) == [1, 2, 3]  # hello, agent_joined, first reply
    return web1, web2, visitor, agent, cid, page["cursor"]


@pytest.mark.parametrize(("when", "method"), POINTS, ids=[f"{w}-{m}" for w, m in POINTS])
def test_a_reply_at_any_point_of_a_takeover_arrives_once(nodes: Nodes, when: str, method: str):
    web1, web2, visitor, agent, cid, cursor = conversation_on_web1(nodes)
    hook = getattr(nodes.hooks["web-2"], when)
    hook(method, lambda: reply(agent, cid, "raced reply"))

    moved = moved_visitor(web2, visitor)
    received: list[dict[str, Any]] = []
    while "raced reply" not in messages(received):
        page = moved.poll(cursor, timeout=2)
        assert page["events"] or "raced reply" in messages(received), "the reply never came"
        received += page["events"]
        cursor = page["cursor"]
    assert web2.store.get_conversation(cid).node_id == "web-2"
    assert moved.cookies["ls_node"].startswith("web-2.")
    assert web1.buffers.get(visitor.session["visitor_id"]) is None  # told it moved

    # The buffer web-2 built during the race is whole: the next reply is served
    # from memory, and nothing arrived twice or out of order.
    reply(agent, cid, "next reply")
    with counted_queries(web2) as queries:
        page = moved.poll(cursor, timeout=5)
    received += page["events"]
    assert queries == []
    assert seqs(received) == [4, 5]
    assert messages(received) == ["raced reply", "next reply"]


def test_two_nodes_taking_a_visitor_over_at_once_leave_no_stale_buffer(nodes: Nodes):
    """web-3 reads the owner (web-1) and stalls; meanwhile web-2 takes the visitor
    over and builds its buffer; then web-3 re-points the conversation to itself.
    Had web-3 told only the owner it read (web-1), web-2 would go on trusting a
    buffer that no reply reaches any more."""
    web1, web2, visitor, agent, cid, cursor = conversation_on_web1(nodes)
    web3 = nodes("web-3", "visitor")
    stalled, resume = threading.Event(), threading.Event()

    def stall() -> None:
        stalled.set()
        assert resume.wait(10)

    nodes.hooks["web-3"].before("set_node", stall)
    on_web3 = moved_visitor(web3, visitor)
    on_web2 = moved_visitor(web2, visitor)
    with ThreadPoolExecutor(1) as pool:
        late: Future = pool.submit(on_web3.poll, cursor, 1)
        assert stalled.wait(10)
        assert on_web2.poll(cursor, timeout=1)["events"] == []  # web-2 owns it, buffered
        assert web2.buffers.get(visitor.session["visitor_id"]) is not None
        resume.set()
        assert late.result(10)["events"] == []
    assert web2.store.get_conversation(cid).node_id == "web-3"
    assert web2.buffers.get(visitor.session["visitor_id"]) is None

    reply(agent, cid, "to the last owner")
    page = on_web2.poll(cursor, timeout=5)  # with web-2's cookie, as a second tab would
    assert messages(page["events"]) == ["to the last owner"]
    assert seqs(page["events"]) == [4]
