"""The poll hub: wake-ups, the per-visitor cap and shutdown, with real threads."""

from __future__ import annotations

import threading
import time

from livesupport.hub import PollHub


def _park(
    hub: PollHub, keys: list[str], results: list, *, limited: str | None = None, timeout=10.0
):
    waiter = hub.register(keys, limited=limited)
    reads = []

    def run() -> None:
        try:
            results.append(
                hub.wait(waiter, lambda: reads.append(1) or None, bool, timeout, time.monotonic)
            )
        finally:
            hub.unregister(waiter)

    thread = threading.Thread(target=run)
    thread.start()
    return waiter, thread, reads


def test_notify_wakes_only_the_key():
    hub = PollHub()
    results: list = []
    a, ta, _ = _park(hub, ["visitor:a"], results)
    b, tb, _ = _park(hub, ["visitor:b"], results)
    assert hub.notify("visitor:a", {"type": "typing"}) == 1
    ta.join(5)
    assert not ta.is_alive()
    assert a.ephemeral == [{"type": "typing"}]
    assert tb.is_alive() and not b.ephemeral
    hub.release_all()
    tb.join(5)
    assert b.released


def test_notice_between_read_and_wait_is_not_missed():
    hub = PollHub()
    waiter = hub.register(["k"])
    reads = []

    def read():
        reads.append(1)
        if len(reads) == 1:
            hub.notify("k")  # lands after the read, before the wait
            return False
        return True

    assert hub.wait(waiter, read, bool, 30, time.monotonic) is True
    assert len(reads) == 2


def test_timeout_answers_with_the_last_read():
    hub = PollHub()
    waiter = hub.register(["k"])
    assert hub.wait(waiter, lambda: [], bool, 0.05, time.monotonic) == []


def test_oldest_poll_of_a_visitor_is_released_past_the_cap():
    hub = PollHub(max_per_key=2)
    results: list = []
    first, t1, _ = _park(hub, ["visitor:v"], results, limited="visitor:v")
    second, t2, _ = _park(hub, ["visitor:v"], results, limited="visitor:v")
    assert not first.released
    third, t3, _ = _park(hub, ["visitor:v"], results, limited="visitor:v")
    t1.join(5)
    assert first.released and not t1.is_alive()
    assert not second.released and not third.released
    hub.release_all()
    for t in (t2, t3):
        t.join(5)
    assert len(hub) == 0


def test_polls_registered_after_shutdown_answer_at_once():
    hub = PollHub()
    hub.release_all()
    waiter = hub.register(["k"])
    assert waiter.released
    assert hub.wait(waiter, lambda: None, bool, 30, time.monotonic) is None
