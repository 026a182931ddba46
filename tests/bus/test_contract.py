"""The bus contract (livesupport/bus/base.py), checked on every backend.

Each test runs on ``local://NAME``, Redis and PostgreSQL (see conftest.py).
Two bus instances stand for two nodes: what one publishes, the other's
subscribers receive; a node's own subscribers receive its own notices
exactly once (not once locally and again echoed by the server).
"""

from __future__ import annotations

import threading
import time

import pytest

from livesupport.bus import BusUnavailable
from livesupport.bus.local import LocalBus
from tests.live import free_port

from .conftest import BusFactory, Inbox

# A body as long as a message may be, in characters that take 2-4 bytes in UTF-8.
LONG_BODY = ("é中😀" * 3334)[:10_000]


def test_a_notice_reaches_the_subscribers_of_its_channel_on_other_nodes(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox, elsewhere = Inbox(), Inbox()
    receiver.subscribe("node.web-2", inbox)
    receiver.subscribe("node.web-3", elsewhere)
    sender.publish("node.web-2", {"keys": ["visitor:v_1"], "n": 1})
    assert inbox.wait_for(1) == [{"keys": ["visitor:v_1"], "n": 1}]
    assert inbox.received[0][0] == "node.web-2"
    sender.publish("node.web-3", {"n": 2})
    elsewhere.wait_for(1)
    assert inbox.notices == [{"keys": ["visitor:v_1"], "n": 1}], "only its own channel"


def test_a_node_hears_its_own_notices_exactly_once(make_bus: BusFactory):
    node, other = make_bus(), make_bus()
    mine, theirs = Inbox(), Inbox()
    node.subscribe("agents", mine)
    other.subscribe("agents", theirs)
    for n in range(3):
        node.publish("agents", {"n": n})
    # The other node received all three, so the server has echoed them back by now too.
    assert theirs.wait_for(3) == [{"n": 0}, {"n": 1}, {"n": 2}]
    other.publish("agents", {"n": "fence"})
    assert mine.wait_for(4) == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": "fence"}]


def test_notices_from_one_publisher_keep_their_order(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox = Inbox()
    receiver.subscribe("node.web-1", inbox)
    for n in range(300):
        sender.publish("node.web-1", {"n": n})
    assert [m["n"] for m in inbox.wait_for(300)] == list(range(300))


def test_notices_carry_json_values_and_the_longest_message_unchanged(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox = Inbox()
    receiver.subscribe("node.web-1", inbox)
    notice = {
        "keys": ["visitor:v_1"],
        "visitor": "v_1",
        "events": [{"pos": 7, "seq": 3, "json": {"data": {"body": LONG_BODY}, "x": None}}],
        "flags": [True, False, 1.5, -2, "</script>\u2028"],
    }
    sender.publish("node.web-1", notice)
    sender.publish("node.web-1", {"after": True})
    assert inbox.wait_for(2) == [notice, {"after": True}]


def test_a_subscription_made_after_start_receives_what_follows(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    first, late = Inbox(), Inbox()
    receiver.subscribe("agents", first)
    sender.publish("agents", {"n": 1})
    first.wait_for(1)
    receiver.subscribe("node.late", late)
    sender.publish("node.late", {"n": 2})
    assert late.wait_for(1) == [{"n": 2}]


def test_unsubscribed_handlers_hear_nothing_more(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    kept, dropped = Inbox(), Inbox()
    receiver.subscribe("agents", kept)
    receiver.subscribe("agents", dropped)
    sender.publish("agents", {"n": 1})
    kept.wait_for(1)
    dropped.wait_for(1)
    receiver.unsubscribe("agents", dropped)
    sender.publish("agents", {"n": 2})
    kept.wait_for(2)
    assert dropped.notices == [{"n": 1}]


def test_a_failing_handler_does_not_stop_the_bus(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox = Inbox()

    def broken(channel: str, notice: dict) -> None:
        raise RuntimeError("a bug in a handler")

    receiver.subscribe("agents", broken)
    receiver.subscribe("agents", inbox)
    sender.publish("agents", {"n": 1})
    sender.publish("agents", {"n": 2})
    assert inbox.wait_for(2) == [{"n": 1}, {"n": 2}]


def test_publishers_on_many_threads_lose_nothing(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox = Inbox()
    receiver.subscribe("agents", inbox)

    def publish(thread: int) -> None:
        for n in range(50):
            sender.publish("agents", {"t": thread, "n": n})

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = inbox.wait_for(200)
    for t in range(4):
        assert [m["n"] for m in got if m["t"] == t] == list(range(50)), "per-thread order"


def test_a_started_bus_is_available_and_answers_ping(make_bus: BusFactory):
    resyncs: list[int] = []
    bus = make_bus(start=False)
    bus.on_resync = lambda: resyncs.append(1)
    bus.subscribe("agents", Inbox())
    bus.start()
    assert bus.available
    bus.ping()
    # A bus with a server says so once it is subscribed; local:// has nothing to resync.
    assert resyncs == ([] if isinstance(bus, LocalBus) else [1])


def test_after_close_a_bus_delivers_nothing(make_bus: BusFactory):
    sender, receiver = make_bus(), make_bus()
    inbox, witness = Inbox(), Inbox()
    receiver.subscribe("agents", inbox)
    witness_bus = make_bus()
    witness_bus.subscribe("agents", witness)
    receiver.close()
    sender.publish("agents", {"n": 1})
    witness.wait_for(1)
    assert inbox.notices == []


def test_without_its_server_a_bus_is_unavailable_and_says_so_quickly(make_bus: BusFactory):
    if make_bus.kind == "local":
        return  # nothing to lose
    port = free_port()  # nothing listens there
    servers = {"redis": f"redis://127.0.0.1:{port}/0",
               "postgres": f"postgresql://postgres@127.0.0.1:{port}/test"}  # fmt: skip
    bus = make_bus(url=make_bus.url(**servers), start_timeout=0.2)
    assert not bus.available
    started = time.monotonic()
    with pytest.raises(BusUnavailable):
        bus.publish("agents", {"n": 1})
    with pytest.raises(BusUnavailable):
        bus.ping()
    assert time.monotonic() - started < 5
