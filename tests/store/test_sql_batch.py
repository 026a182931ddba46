"""Group commit and the agent poll's narrowed page in the SQL store.

Concurrent writers share transactions (``livesupport.store.sql_batch``): each
caller still gets its own result or its own error, and only after the commit.
``SQLStore.agent_poll_feed`` must agree with ``agent_feed`` on the range and on
the agent's events, and announce the conversations an agent's poll needs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text

from livesupport.clock import new_id
from livesupport.store import open_store
from livesupport.store.base import StoreConflict, Visitor
from livesupport.store.sql import SQLStore

AT = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SQLStore]:
    store = open_store(sql_url)
    assert isinstance(store, SQLStore)
    yield store
    store.dispose()


def test_a_batch_answers_each_job_with_its_own_result_or_error(sql_store: SQLStore) -> None:
    committer = sql_store._committer
    release = threading.Event()
    results: dict[int, object] = {}

    def slow(c: Connection) -> str:
        release.wait(5)  # holds the first batch open while the others queue up
        return "first"

    def job(i: int) -> None:
        def work(c: Connection) -> int:
            if i == 3:
                raise StoreConflict("refused")
            return int(c.execute(text(f"SELECT {i}")).scalar_one())

        try:
            results[i] = committer.run(work)
        except StoreConflict as error:
            results[i] = error

    leader = threading.Thread(target=lambda: results.setdefault(0, committer.run(slow)))
    leader.start()
    while not committer._busy:
        pass
    followers = [threading.Thread(target=job, args=(i,)) for i in range(1, 6)]
    for thread in followers:
        thread.start()
    while len(committer._queue) < 5:
        pass
    batches = committer.batches
    release.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert results[0] == "first"
    assert [results[i] for i in (1, 2, 4, 5)] == [1, 2, 4, 5]
    assert isinstance(results[3], StoreConflict)
    assert committer.batches == batches + 2  # the leader's, then the five queued behind it


def test_concurrent_sends_in_one_batch_keep_seq_and_idempotency(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    first = sql_store.visitor_send(vera, "m-0", "hello", "web-1", AT)
    results = []

    def send(i: int) -> None:
        results.append(sql_store.visitor_send(vera, f"m-{i % 5}", f"body {i}", "web-1", AT))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    created = [r for r in results if r.created]
    assert len(created) == 4  # m-1..m-4; m-0 (four times) repeats the first send
    repeats = [r for r in results if r.message.client_msg_id == "m-0"]
    assert repeats and all(r.message.id == first.message.id for r in repeats)
    seqs = sorted(r.message.seq for r in created)
    assert seqs == [2, 3, 4, 5]
    messages = sql_store.messages(first.conversation.id)
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5]
    assert len({m.pos for m in messages}) == 5


def test_the_poll_page_agrees_with_the_feed(sql_store: SQLStore) -> None:
    ann = sql_store.create_agent("ann@example.com", "Ann", "agent", "h")
    bob = sql_store.create_agent("bob@example.com", "Bob", "agent", "h")
    start = sql_store.feed_position()
    ids = []
    for n in range(4):
        visitor = sql_store.create_visitor(Visitor(new_id("v"), f"V{n}"))
        ids.append(sql_store.visitor_send(visitor, f"v{n}", "hi", "web-1", AT).conversation.id)
    sql_store.claim(ids[0], ann, AT)
    sql_store.claim(ids[1], bob, AT)
    sql_store.agent_send(ids[1], bob, "b1", "bob's reply", AT)  # bob's: not ann's business
    sql_store.agent_send(ids[0], ann, "a1", "ann's reply", AT)
    for limit in (1, 2, 3, 100):
        after = start
        while True:
            full = sql_store.agent_feed(ann.id, after, limit)
            poll = sql_store.agent_poll_feed(ann.id, after, limit)
            assert (poll.upto, poll.more) == (full.upto, full.more)
            assert [e.id for e in poll.events] == [e.id for e in full.events]
            assert {c.id for c in poll.conversations} <= {c.id for c in full.conversations}
            if not full.more:
                break
            after = full.upto
    everything = sql_store.agent_poll_feed(ann.id, start, 100)
    announced = {c.id for c in everything.conversations}
    # Waiting ones, ann's own, and bob's claim (a state change); bob's reply alone is not news.
    assert announced == {ids[0], ids[1], ids[2], ids[3]}
    assert set(everything.visitors) == {c.visitor_id for c in everything.conversations}
    after_claims = sql_store.feed_position() - 2
    later = sql_store.agent_poll_feed(ann.id, after_claims, 100)
    assert [c.id for c in later.conversations] == [ids[0]]  # bob's reply is not announced
