"""The load generator's engine: conversations driven in closed or open loop, and
the clock that turns what the pollers receive into latencies.

An *exchange* is one system's way of running C conversations, each with a
visitor side and an agent side that both receive every message of the
conversation (the sender's other tabs included); :class:`Exchange` is what
the drivers need of it. Message ids say who sent what: ``c<conv>-<v|a><n>``.

Latency is measured as the issue defines it, from *send accepted* (the
sender read its ``201``/``ok``) to *the other side's poll answered* (the
receiver read the answer carrying the message); a poll answered before the
sender read its ``201`` counts as zero. ``e2e`` is from the send written to
the poll answered, which includes the commit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
from gevent.event import Event

Deliver = Callable[[str, float], None]
# Holds one long-poll: calls its argument once the request is written, returns
# whether the answer at the timeout was the right one.
Holder = Callable[[Callable[[], None]], bool]


class Exchange(Protocol):
    conversations: int

    def setup(self) -> None:
        """Sessions, rooms, cursors: everything before the first timed message."""

    def start(self, deliver: Deliver) -> None:
        """Start the pollers; they call ``deliver(message_id, monotonic time)`` for
        every message the *other* side of its conversation receives."""

    def send(self, conversation: int, side: str, message_id: str) -> None:
        """Send one message and return when the server accepted it."""

    def stop(self) -> None: ...


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Recorder:
    start: float = 0.0  # of the measuring window (after warm-up)
    end: float = 0.0
    sent_at: dict[str, tuple[float, float]] = field(default_factory=dict)  # written, accepted
    early: dict[str, float] = field(default_factory=dict)  # delivered before accepted
    latencies: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    delivered: int = 0
    sent: int = 0
    errors: int = 0
    waiting: dict[str, Event] = field(default_factory=dict)

    def accepted(self, message_id: str, written: float, accepted: float) -> None:
        if self.start <= written < self.end:
            self.sent += 1
        delivered = self.early.pop(message_id, None)
        if delivered is not None:
            self._record(written, accepted, delivered)
        else:
            self.sent_at[message_id] = (written, accepted)

    def deliver(self, message_id: str, at: float) -> None:
        times = self.sent_at.pop(message_id, None)
        if times is None:
            self.early[message_id] = at
        else:
            self._record(*times, at)
        waiter = self.waiting.pop(message_id, None)
        if waiter is not None:
            waiter.set()

    def _record(self, written: float, accepted: float, delivered: float) -> None:
        if self.start <= delivered < self.end:
            self.delivered += 1
        if self.start <= written < self.end:
            self.latencies.append(max(0.0, delivered - accepted))
            self.e2e.append(delivered - written)

    def summary(self) -> dict[str, Any]:
        window = self.end - self.start
        lat = sorted(self.latencies)
        e2e = sorted(self.e2e)
        ms = 1000.0
        return {
            "window_s": round(window, 3),
            "sent": self.sent,
            "delivered": self.delivered,
            "throughput": round(self.delivered / window, 1) if window > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50) * ms, 3),
            "p95_ms": round(percentile(lat, 95) * ms, 3),
            "p99_ms": round(percentile(lat, 99) * ms, 3),
            "max_ms": round(lat[-1] * ms, 3) if lat else float("nan"),
            "e2e_p50_ms": round(percentile(e2e, 50) * ms, 3),
            "e2e_p99_ms": round(percentile(e2e, 99) * ms, 3),
            "lost": len(self.sent_at),
            "errors": self.errors,
            # A sample for the latency plot, not every value.
            "latency_sample_ms": [round(v * ms, 3) for v in _sample(self.latencies, 4000)],
        }


def _sample(values: list[float], size: int) -> list[float]:
    if len(values) <= size:
        return list(values)
    return random.Random(1).sample(values, size)


def _message_id(conversation: int, side: str, n: int) -> str:
    return f"c{conversation}-{side[0]}{n}"


def closed_loop(exchange: Exchange, *, duration: float, warmup: float) -> Recorder:
    """Each conversation sends its next message (alternating visitor and agent)
    when the last one reached the other side."""
    recorder = Recorder()
    now = time.monotonic()
    recorder.start, recorder.end = now + warmup, now + warmup + duration
    exchange.start(recorder.deliver)

    def converse(conversation: int) -> None:
        n, side = 0, "visitor"
        gevent.sleep(random.random() * 0.05)
        while time.monotonic() < recorder.end:
            n += 1
            message_id = _message_id(conversation, side, n)
            arrived = recorder.waiting[message_id] = Event()
            written = time.monotonic()
            try:
                exchange.send(conversation, side, message_id)
            except Exception:
                recorder.errors += 1
                recorder.waiting.pop(message_id, None)
                gevent.sleep(0.1)
                continue
            recorder.accepted(message_id, written, time.monotonic())
            if not arrived.wait(30):
                recorder.waiting.pop(message_id, None)
            side = "agent" if side == "visitor" else "visitor"

    workers = [gevent.spawn(converse, i) for i in range(exchange.conversations)]
    gevent.joinall(workers, timeout=warmup + duration + 40)
    gevent.killall(workers)
    gevent.sleep(0.5)  # deliveries still on their way
    exchange.stop()
    return recorder


def open_loop(exchange: Exchange, *, rate: float, duration: float, warmup: float) -> Recorder:
    """``rate`` messages per second in total, spread evenly over the conversations
    at fixed times whatever the answers (open loop); sides alternate."""
    recorder = Recorder()
    now = time.monotonic()
    recorder.start, recorder.end = now + warmup, now + warmup + duration
    exchange.start(recorder.deliver)
    interval = exchange.conversations / rate

    def converse(conversation: int) -> None:
        begin = time.monotonic() + random.random() * interval
        n = 0
        while True:
            due = begin + n * interval
            if due >= recorder.end:
                return
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            n += 1
            side = "visitor" if n % 2 else "agent"
            message_id = _message_id(conversation, side, n)
            written = time.monotonic()
            try:
                exchange.send(conversation, side, message_id)
            except Exception:
                recorder.errors += 1
                continue
            recorder.accepted(message_id, written, time.monotonic())

    workers = [gevent.spawn(converse, i) for i in range(exchange.conversations)]
    gevent.joinall(workers, timeout=warmup + duration + 40)
    gevent.killall(workers)
    gevent.sleep(1.0)
    exchange.stop()
    return recorder


def run_all(jobs: list[Callable[[], Any]], concurrency: int = 64) -> list[Any]:
    """Run set-up jobs ``concurrency`` at a time; their results in order."""
    from gevent.pool import Pool

    pool = Pool(concurrency)
    return list(pool.imap(lambda job: job(), jobs))
