"""``Store.on_commit``: every committed write that takes feed positions, reported once,
in position order, before the writer returns; refusals and rollbacks report nothing.

Agent-facing nodes build their copy of the feed from it (``livesupport.agent_log``):
a position missing here is a hole that sends agents' polls to the store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from livesupport.clock import new_id
from livesupport.store.base import (
    Author,
    Conversation,
    NotHeld,
    Store,
    StoreConflict,
    StoredEvent,
    Visitor,
)
from livesupport.store.sql import SQLStore

AT = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


class Heard:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.changes: list[tuple[Conversation, tuple[StoredEvent, ...]]] = []
        store.on_commit = self

    def __call__(self, conversation: Conversation, events: Sequence[StoredEvent]) -> None:
        self.changes.append((conversation, tuple(events)))

    def positions(self) -> list[int]:
        return [p for c, events in self.changes for p in ([e.pos for e in events] or [c.pos])]


def test_every_position_is_reported_once_in_order_with_the_conversation_it_left(
    store: Store,
) -> None:
    heard = Heard(store)
    start = store.feed_position()
    ann = store.create_agent("ann@example.com", "Ann", "agent", "h")
    bob = store.create_agent("bob@example.com", "Bob", "agent", "h")
    vera = store.create_visitor(Visitor(new_id("v"), "Vera"))
    sent = store.visitor_send(vera, "m1", "hello", "web-1", AT)
    cid = sent.conversation.id
    assert heard.changes == [(sent.conversation, tuple(sent.events))]
    store.visitor_send(vera, "m1", "hello", "web-1", AT)  # a repeat stores nothing
    store.update_visitor(vera.id, name="Vera", page="/pricing")  # new details: a bump
    assert heard.changes[-1][1] == () and heard.changes[-1][0].pos == store.feed_position()
    store.update_visitor(vera.id, page="/pricing")  # unchanged: nothing
    store.claim(cid, ann, AT)
    with pytest.raises(NotHeld):
        store.claim(cid, bob, AT)
    store.agent_send(cid, ann, "a1", "hi Vera", AT)
    store.transfer(cid, ann, bob, AT)
    store.release(cid, bob, AT)
    closed = store.close(cid, Author("visitor", vera.id, "Vera"), AT)
    store.close(cid, Author("visitor", vera.id, "Vera"), AT)  # closed already: nothing
    with pytest.raises(StoreConflict):
        store.agent_send(cid, ann, "a2", "too late", AT)
    assert heard.positions() == list(range(start + 1, store.feed_position() + 1))
    assert heard.changes[-1] == (closed.conversation, tuple(closed.events))
    for conversation, events in heard.changes:
        assert conversation.pos == ([e.pos for e in events] or [conversation.pos])[-1]
        assert (
            conversation == store.get_conversation(cid)
            or conversation.pos < closed.conversation.pos
        )


def test_concurrent_sends_of_a_batch_are_reported_in_position_order(sql_store: SQLStore) -> None:
    heard = Heard(sql_store)
    visitors = [sql_store.create_visitor(Visitor(new_id("v"), f"V{n}")) for n in range(20)]
    start = sql_store.feed_position()
    returned: list[int] = []

    def send(visitor: Visitor) -> None:
        result = sql_store.visitor_send(visitor, "m1", "hello", "web-1", AT)
        # Reported before its own writer returns.
        assert result.message.pos in heard.positions()
        returned.append(result.message.pos)

    threads = [threading.Thread(target=send, args=(v,)) for v in visitors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(returned) == 20
    assert heard.positions() == list(range(start + 1, start + 21))


def test_a_job_taken_out_of_its_batch_reports_nothing(sql_store: SQLStore) -> None:
    heard = Heard(sql_store)
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    cid = sql_store.visitor_send(vera, "m1", "hello", "web-1", AT).conversation.id
    sql_store.close(cid, Author("visitor", vera.id, "Vera"), AT)
    ann = sql_store.create_agent("ann@example.com", "Ann", "agent", "h")
    before = list(heard.changes)
    with pytest.raises(StoreConflict):
        sql_store.claim(cid, ann, AT)
    assert heard.changes == before
