"""Several nodes writing one SQL database at once.

Each thread plays a node: it opens its OWN :class:`SQLStore` (own engine,
own connections) on the same database, and all start together at a
barrier. The invariants must then hold because the database enforces them,
not because of any lock in this process: gapless ``seq``, unique and
commit-ordered feed positions, one stored message per ``client_msg_id``, one
open conversation per visitor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from livesupport.clock import new_id
from livesupport.store import open_store
from livesupport.store.base import Agent, Conversation, SendResult, Store, Visitor
from livesupport.store.sql import SQLStore

T = TypeVar("T")
NODES = 8
AT = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def together(count: int, work: Callable[[int], T], timeout: float = 60.0) -> list[T]:
    """``work(0..count-1)`` in ``count`` threads released at once; their results in order."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = work(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a node hung"
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


@pytest.fixture
def setup(sql_url: str) -> Iterator[Store]:
    """The store that created the schema; the nodes open their own."""
    store = open_store(sql_url)
    yield store
    store.dispose()


def node(url: str) -> SQLStore:
    return SQLStore(url, pool_size=1, max_overflow=1)


def nodes(url: str, work: Callable[[SQLStore, int], T]) -> list[T]:
    def run(index: int) -> T:
        store = node(url)
        try:
            return work(store, index)
        finally:
            store.dispose()

    return together(NODES, run)


def test_concurrent_sends_get_gapless_seqs_and_unique_positions(setup: Store) -> None:
    vera = setup.create_visitor(Visitor(new_id("v"), "Vera"))
    ann = setup.create_agent("ann@example.com", "Ann", "agent", "h")
    sue = setup.create_agent("sue@example.com", "Sue", "supervisor", "h")
    conversation = setup.visitor_send(vera, "first", "hi", "node-0", AT).conversation
    setup.claim(conversation.id, ann, AT)
    per_node = 30

    def send(store: SQLStore, index: int) -> list[SendResult]:
        sent = []
        for i in range(per_node):
            cmid = f"n{index}-{i}"
            if index % 2:
                agent: Agent = ann if index % 4 == 1 else sue
                sent.append(store.agent_send(conversation.id, agent, cmid, cmid, AT))
            else:
                sent.append(store.visitor_send(vera, cmid, cmid, f"node-{index}", AT))
        return sent

    results = [r for batch in nodes(setup.url, send) for r in batch]
    assert all(r.created and r.conversation.id == conversation.id for r in results)
    total = 2 + NODES * per_node  # the first message and agent_joined, then the sends
    page = setup.visitor_feed(vera.id, 0, total + 10)
    assert not page.more
    assert [e.seq for e in page.events] == list(range(1, total + 1))
    positions = [e.pos for e in page.events]
    assert positions == sorted(set(positions))  # unique, and in seq order
    assert positions == list(range(1, total + 1))  # nothing else took positions
    assert setup.feed_position() == total
    final = setup.get_conversation(conversation.id)
    assert final is not None and (final.last_seq, final.pos) == (total, total)
    stored = {m.client_msg_id: m for m in setup.messages(conversation.id, limit=total)}
    assert {r.message.client_msg_id: r.message for r in results}.items() <= stored.items()


def test_concurrent_repeats_store_one_message(setup: Store) -> None:
    vera = setup.create_visitor(Visitor(new_id("v"), "Vera"))
    ann = setup.create_agent("ann@example.com", "Ann", "agent", "h")
    other = setup.visitor_send(setup.create_visitor(Visitor(new_id("v"))), "x", "x", "n", AT)

    def repeat(store: SQLStore, index: int) -> tuple[SendResult, SendResult]:
        # The visitor's very first send: the repeats also race to open the conversation.
        mine = store.visitor_send(vera, "same", f"body {index}", f"node-{index}", AT)
        theirs = store.agent_send(other.conversation.id, ann, "same", f"body {index}", AT)
        return mine, theirs

    results = nodes(setup.url, repeat)
    for sends in zip(*results, strict=True):
        assert sum(r.created for r in sends) == 1
        first = next(r.message for r in sends if r.created)
        assert all(r.message == first for r in sends)
        assert all(list(r.events) == [] for r in sends if not r.created)
    (conversation,) = setup.visitor_conversations(vera.id)
    assert [m.client_msg_id for m in setup.messages(conversation.id)] == ["same"]
    assert conversation.last_seq == 1
    replies = setup.messages(other.conversation.id)
    assert [m.seq for m in replies] == [1, 3]  # the visitor's, then (after agent_joined) ann's


def test_concurrent_first_sends_open_one_conversation(setup: Store) -> None:
    vera = setup.create_visitor(Visitor(new_id("v"), "Vera"))

    def first(store: SQLStore, index: int) -> SendResult:
        return store.visitor_send(vera, f"k{index}", f"hello from {index}", f"node-{index}", AT)

    results = nodes(setup.url, first)
    assert sum(r.conversation_created for r in results) == 1
    (conversation,) = setup.visitor_conversations(vera.id)
    assert {r.conversation.id for r in results} == {conversation.id}
    assert conversation.status == "waiting" and conversation.last_seq == NODES
    assert sorted(r.message.seq for r in results) == list(range(1, NODES + 1))


def test_feed_positions_are_commit_ordered(setup: Store) -> None:
    """A reader that follows the feed from its cursor sees every position once and in
    order, while nodes write: no commit ever lands behind a cursor already handed out."""
    ann = setup.create_agent("ann@example.com", "Ann", "agent", "h")
    writers, per_writer = NODES - 1, 25
    conversations: list[Conversation] = []
    for i in range(writers):
        visitor = setup.create_visitor(Visitor(new_id("v"), f"V{i}"))
        conversations.append(setup.visitor_send(visitor, "k", "hi", "n", AT).conversation)
    start = setup.feed_position()
    running = threading.Semaphore(0)  # released once per writer that finished

    def work(store: SQLStore, index: int) -> list[int]:
        if index < writers:
            try:
                for i in range(per_writer):  # ann claims with the first send, then holds
                    store.agent_send(conversations[index].id, ann, f"{index}-{i}", "x", AT)
            finally:
                running.release()
            return []
        seen: list[int] = []
        cursor, finished = start, 0
        while True:
            while running.acquire(blocking=False):
                finished += 1
            page = store.agent_feed(ann.id, cursor, 50)
            seen.extend(e.pos for e in page.events)
            cursor = page.upto
            if finished == writers and not page.more:  # read after the last commit
                return seen

    *_, seen = nodes(setup.url, work)
    total = writers * (per_writer + 1)  # each conversation: agent_joined, then the sends
    assert seen == list(range(start + 1, start + total + 1))


def test_concurrent_upgrades_of_an_empty_database(sql_url: str) -> None:
    def start(index: int) -> int:
        store = open_store(sql_url)  # every node migrates at startup
        try:
            return store.feed_position()
        finally:
            store.dispose()

    assert together(NODES, start) == [0] * NODES
