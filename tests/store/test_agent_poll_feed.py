"""The agent poll's narrowed page, on every store.

``agent_poll_feed`` answers an agent's poll at the cost of what concerns that
agent (the stores narrow it with indexes, in memory or in the database). It
must agree with ``agent_feed``, the reference, on the range and on the agent's
events, at every page size and cursor, and announce what the poll needs: every
conversation that concerns the agent, and any other one whose status or
holder changed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from livesupport.clock import new_id
from livesupport.store.base import Author, Store, Visitor

AT = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def agrees(store: Store, agent_id: str, start: int) -> None:
    """Every cursor from ``start`` on, every page size: the same pages as the feed."""
    top = store.feed_position()
    for limit in (1, 2, 3, 100):
        for cursor in range(start, top + 1):
            after = cursor
            while True:
                full = store.agent_feed(agent_id, after, limit)
                poll = store.agent_poll_feed(agent_id, after, limit)
                assert (poll.upto, poll.more) == (full.upto, full.more)
                assert [e.id for e in poll.events] == [e.id for e in full.events]
                assert {c.id for c in poll.conversations} <= {c.id for c in full.conversations}
                assert [c.pos for c in poll.conversations] == sorted(
                    c.pos for c in poll.conversations
                )
                if not full.more:
                    break
                after = full.upto


def test_the_poll_page_agrees_with_the_feed(store: Store) -> None:
    ann = store.create_agent("ann@example.com", "Ann", "agent", "h")
    bob = store.create_agent("bob@example.com", "Bob", "agent", "h")
    start = store.feed_position()
    ids, visitors = [], []
    for n in range(5):
        visitor = store.create_visitor(Visitor(new_id("v"), f"V{n}"))
        visitors.append(visitor)
        ids.append(store.visitor_send(visitor, f"v{n}", "hi", "web-1", AT).conversation.id)
    store.claim(ids[0], ann, AT)
    store.claim(ids[1], bob, AT)
    store.agent_send(ids[1], bob, "b1", "bob's reply", AT)  # bob's: not ann's business
    store.agent_send(ids[0], ann, "a1", "ann's reply", AT)
    store.claim(ids[3], ann, AT)
    store.close(ids[3], ann.author, AT)  # ann's closed conversation: its events are hers
    store.claim(ids[4], bob, AT)
    store.transfer(ids[4], bob, ann, AT)  # moves to ann: all its events are hers now
    store.update_visitor(visitors[1].id, name="Vic")  # bob's, changed without an event
    agrees(store, ann.id, start)
    agrees(store, bob.id, start)

    everything = store.agent_poll_feed(ann.id, start, 100)
    assert {c.id for c in everything.conversations} == set(ids)
    after_claims = store.feed_position() - 1
    later = store.agent_poll_feed(ann.id, after_claims, 100)
    assert (later.conversations, later.events) == ([], [])  # bob's visitor's new details
    bobs = store.agent_poll_feed(bob.id, after_claims, 100)
    assert [c.id for c in bobs.conversations] == [ids[1]]  # ...are news on bob's screen


def test_a_reply_in_another_agents_conversation_is_not_announced(store: Store) -> None:
    ann = store.create_agent("ann@example.com", "Ann", "agent", "h")
    bob = store.create_agent("bob@example.com", "Bob", "agent", "h")
    visitor = store.create_visitor(Visitor(new_id("v"), "Vera"))
    cid = store.visitor_send(visitor, "v1", "hi", "web-1", AT).conversation.id
    store.claim(cid, bob, AT)
    after = store.feed_position()
    store.agent_send(cid, bob, "b1", "hello", AT)
    store.visitor_send(visitor, "v2", "thanks", "web-1", AT)
    page = store.agent_poll_feed(ann.id, after, 100)
    assert (page.events, page.conversations, page.more) == ([], [], False)
    assert page.upto == store.feed_position()
    store.close(cid, Author("visitor", visitor.id, "Vera"), AT)
    closed = store.agent_poll_feed(ann.id, after, 100)
    assert [c.id for c in closed.conversations] == [cid]  # a state change: on ann's screen
    assert closed.events == []  # but the conversation was never hers
