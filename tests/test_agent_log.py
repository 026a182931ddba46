"""The agent-facing node's copy of the feed: pages from memory that agree with the store.

Every write's record goes through JSON, as the bus carries it. The reference is
the memory store's ``agent_poll_feed`` (which agrees with every store's, see
``tests/store/test_agent_poll_feed.py``).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from livesupport.agent_log import HOLE_GRACE, AgentLog, to_record
from livesupport.clock import new_id
from livesupport.store.base import Author, Change, NotHeld, StoreConflict, Visitor
from livesupport.store.memory import MemoryStore

AT = datetime(2026, 11, 28, 6, 0, 0, 123456, tzinfo=UTC)
ACTIONS = ("visit", "send", "send", "reply", "reply", "claim", "transfer", "close", "release")


class World:
    """A memory store under random writes, and the records they publish (kept, not
    delivered: each test delivers them its way). With ``details``, visitors also
    change their details, which takes a position and publishes nothing."""

    def __init__(self, seed: int, *, details: bool = False) -> None:
        self.rng = random.Random(seed)
        self.store = MemoryStore()
        self.agents = [
            self.store.create_agent(f"a{n}@example.com", f"A{n}", "agent", "h") for n in range(3)
        ]
        self.actions = (*ACTIONS, "details") if details else ACTIONS
        self.conversations: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.holes: list[int] = []
        self.start = self.store.feed_position()
        self.now = 0.0

    def publish(self, change: Change) -> None:
        if change.events:
            record = to_record(change.conversation, change.events)
            self.records.append(json.loads(json.dumps(record)))

    def run(self, steps: int) -> None:
        for _ in range(steps):
            try:
                self.step()
            except (NotHeld, StoreConflict):
                pass

    def step(self) -> None:
        rng, store = self.rng, self.store
        agent = rng.choice(self.agents)
        action = rng.choice(self.actions)
        if action == "visit" or not self.conversations:
            visitor = store.create_visitor(Visitor(new_id("v"), "Vera"))
            result = store.visitor_send(visitor, new_id("k"), "hi", "web-1", AT)
            self.conversations.append(result.conversation.id)
            self.publish(Change(result.conversation, result.events))
            return
        cid = rng.choice(self.conversations)
        conversation = store.get_conversation(cid)
        assert conversation is not None
        if action == "send":
            visitor = store.get_visitor(conversation.visitor_id)
            assert visitor is not None
            result = store.visitor_send(visitor, new_id("k"), "more", "web-1", AT)
            if result.conversation.id not in self.conversations:
                self.conversations.append(result.conversation.id)
            self.publish(Change(result.conversation, result.events))
        elif action == "reply":
            sent = store.agent_send(cid, agent, new_id("k"), "reply", AT)
            self.publish(Change(sent.conversation, sent.events))
        elif action == "claim":
            self.publish(store.claim(cid, agent, AT))
        elif action == "transfer":
            self.publish(store.transfer(cid, agent, rng.choice(self.agents), AT))
        elif action == "close":
            self.publish(store.close(cid, Author("agent", agent.id, agent.name), AT))
        elif action == "release":
            self.publish(store.release(cid, agent, AT))
        else:
            before = store.feed_position()
            store.update_visitor(conversation.visitor_id, name=new_id("n"))
            if store.feed_position() > before:
                self.holes.append(store.feed_position())

    def heard(self, *, shuffled: bool = False) -> AgentLog:
        """A log complete from the start that heard every record (its clock: ``now``)."""
        log = AgentLog(clock=lambda: self.now)
        log.rebase(self.start, log.epoch)
        records = list(self.records)
        if shuffled:  # notices of several nodes arrive in any order
            self.rng.shuffle(records)
        for record in records:
            log.add_record(record)
        return log


def assert_agrees(log: AgentLog, store: MemoryStore, agent_id: str, after: int) -> None:
    """Every page size, paging on from ``after``: the store's pages."""
    for limit in (1, 2, 5, 100):
        cursor = after
        while True:
            mine = log.page(agent_id, cursor, limit)
            assert mine is not None, (cursor, limit)
            theirs = store.agent_poll_feed(agent_id, cursor, limit)
            assert (mine.upto, mine.more) == (theirs.upto, theirs.more)
            assert [(e.id, e.pos, e.at, e.author, e.agent, e.body) for e in mine.events] == [
                (e.id, e.pos, e.at, e.author, e.agent, e.body) for e in theirs.events
            ]
            assert list(mine.conversations) == list(theirs.conversations)
            if not mine.more:
                break
            cursor = mine.upto


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shuffled", [False, True], ids=["in order", "shuffled"])
def test_every_page_agrees_with_the_store_when_every_write_is_heard(
    seed: int, shuffled: bool
) -> None:
    world = World(seed)
    world.run(200)
    log = world.heard(shuffled=shuffled)
    top = world.store.feed_position()
    for agent in world.agents:
        for after in range(world.start, top + 1, 5):
            assert_agrees(log, world.store, agent.id, after)
        assert log.page(agent.id, top, 10) is not None  # nothing new: park


@pytest.mark.parametrize("seed", range(6))
def test_a_hole_sends_polls_to_the_store_until_a_store_read_vouches_for_it(seed: int) -> None:
    world = World(seed, details=True)
    world.run(200)
    assert world.holes
    log = world.heard()
    hole = world.holes[0]
    agent = world.agents[0].id
    waiting = log.page(agent, hole - 1, 100)  # a notice may be on its way: wait a little
    assert waiting is not None and (waiting.events, waiting.upto) == ((), hole - 1)
    assert log.hole_wait() == pytest.approx(HOLE_GRACE + 0.001)
    world.now += HOLE_GRACE
    assert log.page(agent, hole - 1, 100) is None  # missing for too long: the store
    assert log.page(agent, hole, 100) is None  # beyond what the log vouches for
    before = log.page(agent, world.start, 100)
    assert before is not None and before.upto == hole - 1  # what lies before it: complete
    top = world.store.feed_position()
    log.rebase(top, log.epoch)  # a store read up to ``top``
    assert log.page(agent, world.start, 100) is None  # below its floor now
    world.records.clear()
    world.run(100)
    for record in world.records:
        log.add_record(record)
    if world.holes[-1] > top:
        return  # a new hole: covered above
    for a in world.agents:
        assert_agrees(log, world.store, a.id, top)


def test_a_late_notice_fills_the_hole_and_wakes_the_polls_the_others_woke() -> None:
    world = World(1)
    world.run(50)
    log = AgentLog(clock=lambda: world.now)
    log.rebase(world.start, log.epoch)
    late, *others = world.records
    for n, record in enumerate(others):
        assert log.add_record(record, [f"agent:{n}", "agents"]) == []
    agent = world.agents[0].id
    page = log.page(agent, world.start, 100)
    assert page is not None and (page.events, page.upto) == ((), world.start)
    woken = log.add_record(late, ["agents"])
    assert woken == [f"agent:{n}" for n in range(len(others))]  # "agents" is woken anyway
    assert log.hole_wait() is None
    assert_agrees(log, world.store, agent, world.start)


def test_a_store_read_from_before_the_bus_came_back_is_not_trusted() -> None:
    world = World(2)
    world.run(30)
    log = world.heard()
    top = world.store.feed_position()
    assert log.page(world.agents[0].id, top, 10) is not None
    log.suspend()
    assert log.page(world.agents[0].id, top, 10) is None
    epoch = log.epoch  # a store read begins while the bus is down
    log.resume()
    log.rebase(top, epoch)
    assert log.page(world.agents[0].id, top, 10) is None
    log.rebase(top, log.epoch)
    assert log.page(world.agents[0].id, top, 10) is not None


def test_the_oldest_events_are_forgotten_beyond_capacity() -> None:
    world = World(3)
    world.run(300)
    log = AgentLog(capacity=40, clock=lambda: world.now)
    log.rebase(world.start, log.epoch)
    for record in world.records:
        log.add_record(record)
    top = world.store.feed_position()
    agent = world.agents[0].id
    assert log.page(agent, world.start, 100) is None
    floor = next(a for a in range(world.start, top + 1) if log.page(agent, a, 1) is not None)
    assert top - floor <= 2 * 40 + 10
    for a in world.agents:
        assert_agrees(log, world.store, a.id, floor)


def test_visitors_read_before_a_rebase_are_not_kept() -> None:
    world = World(4)
    world.run(20)
    log = world.heard()
    conversation = world.store.get_conversation(world.conversations[0])
    assert conversation is not None
    visitor = world.store.get_visitor(conversation.visitor_id)
    assert visitor is not None
    epoch = log.epoch
    log.remember([conversation], {visitor.id: visitor}, epoch)
    assert log.visitors([conversation]) == {visitor.id: visitor}
    log.rebase(world.store.feed_position() + 1, log.epoch)  # new details were committed
    assert log.visitors([conversation]) == {}
    log.remember([conversation], {visitor.id: visitor}, epoch)  # read before the rebase
    assert log.visitors([conversation]) == {}
