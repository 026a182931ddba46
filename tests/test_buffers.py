"""Visitor polls answered from the node's memory: the buffer rules, and a count of
the database queries a visitor's poll makes in the steady state (none)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from livesupport.buffers import Buffered, VisitorBuffers

from .conftest import AppFactory, Client, new_agent, new_visitor


def ev(pos: int, seq: int, conversation: str = "c1") -> Buffered:
    return Buffered(pos, conversation, seq, {"pos": pos, "seq": seq})


def built(buffers: VisitorBuffers, events: list[Buffered], floor: int = 0, **last: int) -> Any:
    return buffers.finish("v", buffers.begin("v"), floor, events, dict(last))


def test_notices_in_sequence_are_added_and_repeats_ignored():
    buffers = VisitorBuffers()
    built(buffers, [ev(3, 1)])
    buffers.add("v", [ev(5, 2), ev(5, 2), ev(8, 3)])
    assert [e.seq for e in buffers.get("v").events] == [1, 2, 3]


def test_a_gap_in_seq_drops_the_buffer():
    buffers = VisitorBuffers()
    built(buffers, [ev(3, 1)])
    buffers.add("v", [ev(9, 3)])  # seq 2 never arrived
    assert buffers.get("v") is None


def test_a_new_conversation_starts_at_seq_1():
    buffers = VisitorBuffers()
    built(buffers, [ev(3, 1, "old")])
    buffers.add("v", [ev(4, 1, "new")])
    assert [(e.conversation_id, e.seq) for e in buffers.get("v").events] == [("old", 1), ("new", 1)]


def test_the_store_read_names_the_seq_it_saw_even_without_events():
    buffers = VisitorBuffers()
    built(buffers, [], floor=10, c1=4)
    buffers.add("v", [ev(12, 5)])
    assert [e.seq for e in buffers.get("v").events] == [5]
    buffers.add("v", [ev(13, 7)])
    assert buffers.get("v") is None


def test_notices_during_the_store_read_are_merged():
    buffers = VisitorBuffers()
    build = buffers.begin("v")
    buffers.add("v", [ev(6, 2), ev(7, 3)])  # published while the store was read
    buffer = buffers.finish("v", build, 0, [ev(5, 1), ev(6, 2)], {"c1": 1})
    assert [e.seq for e in buffer.events] == [1, 2, 3]


def test_a_gap_during_the_store_read_leaves_no_buffer():
    buffers = VisitorBuffers()
    build = buffers.begin("v")
    buffers.add("v", [ev(9, 4)])
    assert buffers.finish("v", build, 0, [ev(5, 1)], {"c1": 1}) is None
    assert buffers.get("v") is None


def test_a_moved_notice_during_the_store_read_spoils_the_build():
    # Another node took the visitor over while this one read: what it read may be
    # followed by events published to the other node only.
    buffers = VisitorBuffers()
    build = buffers.begin("v")
    buffers.drop("v")
    assert buffers.finish("v", build, 0, [ev(5, 1)], {"c1": 1}) is None
    assert buffers.get("v") is None


def test_concurrent_builds_each_see_every_notice_since_they_began():
    buffers = VisitorBuffers()
    first = buffers.begin("v")
    second = buffers.begin("v")
    assert buffers.finish("v", first, 0, [ev(5, 1)], {"c1": 1}) is not None
    buffers.add("v", [ev(6, 2)])  # after the first finished, during the second's read
    buffer = buffers.finish("v", second, 0, [ev(5, 1)], {"c1": 1})
    assert buffer is not None and [e.seq for e in buffer.events] == [1, 2]


def test_a_suspended_node_trusts_and_builds_no_buffer_until_resumed():
    buffers = VisitorBuffers()
    built(buffers, [ev(3, 1)])
    during = buffers.begin("v")
    buffers.suspend()  # the bus went down
    assert buffers.get("v") is None
    assert buffers.finish("v", during, 0, [ev(3, 1)], {"c1": 1}) is None
    assert built(buffers, [ev(3, 1)]) is None
    before = buffers.begin("v")
    buffers.resume()  # the bus is back: a read that began before it may have missed notices
    assert buffers.finish("v", before, 0, [ev(3, 1)], {"c1": 1}) is None
    assert built(buffers, [ev(3, 1)]) is not None


def test_old_events_are_trimmed_and_the_floor_rises():
    buffers = VisitorBuffers(depth=3)
    buffer = built(buffers, [ev(p, p) for p in range(1, 6)])
    assert [e.pos for e in buffer.events] == [3, 4, 5]
    assert buffer.floor == 2
    assert buffer.since(2, 100) == ([{"pos": p, "seq": p} for p in (3, 4, 5)], 5, False)


def test_since_pages_like_the_store():
    buffer = built(VisitorBuffers(), [ev(p, p) for p in range(1, 6)])
    events, upto, more = buffer.since(1, 2)
    assert ([e["pos"] for e in events], upto, more) == ([2, 3], 3, True)
    assert buffer.since(5, 2) == ([], 5, False)


def test_buffers_expire_and_the_least_recently_used_go_first():
    now = itertools.count()
    buffers = VisitorBuffers(capacity=2, max_age=10, clock=lambda: float(next(now)))
    for visitor in ("a", "b"):
        buffers.finish(visitor, buffers.begin(visitor), 0, [], {})
    assert buffers.get("a") is not None  # a is now the most recently used
    buffers.finish("c", buffers.begin("c"), 0, [], {})
    assert buffers.get("b") is None and buffers.get("a") is not None
    for _ in range(20):
        next(now)
    assert buffers.get("a") is None


@contextmanager
def counted_queries(middleware: Any) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = middleware.store.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_visitor_polls_in_the_steady_state_read_no_database(make_app: AppFactory, tmp_path):
    middleware = make_app(store=f"sqlite:///{tmp_path}/count.db")
    visitor = new_visitor(Client(middleware))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    agent, _, _ = new_agent(Client(middleware))
    first = visitor.poll(timeout=1)  # the cold read that builds the buffer
    assert [e["seq"] for e in first["events"]] == [1]

    with counted_queries(middleware) as queries:
        idle = visitor.poll(first["cursor"], timeout=1)
    assert idle["events"] == [] and queries == []

    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    reply = {"client_msg_id": "r1", "body": "hi there"}
    assert agent.post_api(f"/agent/conversations/{cid}/messages", reply).status_int == 201
    with counted_queries(middleware) as queries:
        answer = visitor.poll(idle["cursor"], timeout=1)
        again = visitor.poll(answer["cursor"], timeout=1)
    assert [(e["type"], e["seq"]) for e in answer["events"]] == [
        ("agent_joined", 2),
        ("message", 3),
    ]
    assert again["events"] == []
    assert queries == []


def test_a_poll_without_affinity_reads_the_store_and_takes_the_visitor_over(
    make_app: AppFactory, tmp_path
):
    url = f"sqlite:///{tmp_path}/two.db"
    first, second = make_app(store=url, node_id="web-1"), make_app(store=url, node_id="web-2")
    visitor = new_visitor(Client(first))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    cursor = visitor.poll(timeout=1)["cursor"]
    moved = Client(second)
    moved.set_cookie("ls_vid", visitor.cookies["ls_vid"])
    with counted_queries(second) as queries:
        answer = moved.get_api("/visitor/poll", {"cursor": cursor, "timeout": 1})
    assert answer.status_int == 200 and queries, "a node without affinity reads the store"
    assert second.store.get_conversation(cid).node_id == "web-2"
    assert moved.cookies["ls_node"].startswith("web-2.")
    with counted_queries(second) as queries:
        moved.get_api("/visitor/poll", {"cursor": answer.json["cursor"], "timeout": 1})
    assert queries == []


def test_the_first_poll_after_a_session_reads_no_database(make_app: AppFactory, tmp_path):
    middleware = make_app(store=f"sqlite:///{tmp_path}/first.db")
    visitor = new_visitor(Client(middleware))
    with counted_queries(middleware) as queries:
        idle = visitor.poll(visitor.session["cursor"], timeout=0.05)
    assert idle["events"] == [] and queries == []
    visitor.send("hello")
    with counted_queries(middleware) as queries:
        first = visitor.poll(idle["cursor"], timeout=1)
    assert [(e["type"], e["seq"]) for e in first["events"]] == [("message", 1)]
    assert queries == []


def test_a_conversation_started_on_another_node_drops_the_session_buffer(
    make_app: AppFactory, tmp_path
):
    """A session on web-1 buffers the visitor; its first message lands on web-2 (the
    balancer ignored affinity), which records itself on the new conversation. web-1
    must not go on answering from its empty buffer."""
    url, bus = f"sqlite:///{tmp_path}/two.db", f"local://{tmp_path.name}"
    first = make_app(store=url, bus=bus, node_id="web-1")
    second = make_app(store=url, bus=bus, node_id="web-2")
    visitor = new_visitor(Client(first))
    elsewhere = Client(second)
    elsewhere.set_cookie("ls_vid", visitor.cookies["ls_vid"])
    cid = elsewhere.send("hello").json["message"]["conversation_id"]
    assert second.store.get_conversation(cid).node_id == "web-2"
    answer = visitor.poll(visitor.session["cursor"], timeout=1)  # affinity: web-1
    assert [(e["type"], e["seq"]) for e in answer["events"]] == [("message", 1)]


def test_buffers_nobody_used_for_max_age_are_freed_by_the_next_build():
    """Visitors who left never poll again: their buffers must not wait for 100,000 others
    to push them out of the LRU (memory grew with every cohort of visitors)."""
    now = [0.0]
    buffers = VisitorBuffers(max_age=300, clock=lambda: now[0])
    for n in range(500):
        events = [Buffered(n * 3 + i, f"c{n}", i, {"seq": i}) for i in (1, 2, 3)]
        buffers.finish(f"gone-{n}", buffers.begin(f"gone-{n}"), 0, events, {})
    now[0] = 301.0
    buffers.finish("next", buffers.begin("next"), 0, [], {})
    assert len(buffers) == 1
