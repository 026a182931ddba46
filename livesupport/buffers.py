"""Per-visitor event buffers: how a node answers its visitors' polls from memory.

The node that owns a visitor's conversation (its ``node_id``) receives every
durable event of it as a bus notice carrying the rendered event. A buffer
keeps the visitor's recent events, so a poll in the steady state reads no
database at all; the store stays the truth and a buffer is only a cache:

- it is built from a store read, after this node took the conversation over
  (so every event committed later is published here: subscribe before read);
- it trusts an event only if its ``seq`` follows the last one it holds for
  that conversation; a gap (a notice lost or reordered) drops the buffer, and
  the next poll reads the store again;
- another node taking the visitor over drops it too (a ``drop`` notice), as
  does age, so a buffer can be stale for at most ``max_age`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Buffered:
    """One durable event as a poll returns it, with its feed position."""

    pos: int
    conversation_id: str
    seq: int
    json: dict[str, Any]


@dataclass
class VisitorBuffer:
    # Every event of the visitor with a position above ``floor`` is in ``events``.
    floor: int
    built_at: float
    events: deque[Buffered] = field(default_factory=deque)
    last_seq: dict[str, int] = field(default_factory=dict)

    def since(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Events after ``after``: ``(events, upto, more)`` as a feed page has them."""
        fresh = [e for e in self.events if e.pos > after]
        more = len(fresh) > limit
        fresh = fresh[:limit]
        upto = fresh[-1].pos if fresh else after
        return [e.json for e in fresh], upto, more


class VisitorBuffers:
    """The buffers of one node, least recently used evicted first.

    :param capacity: Visitors buffered at most.
    :param depth: Events kept per visitor; older ones are read from the store.
    :param max_age: Seconds a buffer is trusted without a store read.
    """

    def __init__(
        self,
        *,
        capacity: int = 100_000,
        depth: int = 200,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.depth = depth
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._buffers: OrderedDict[str, VisitorBuffer] = OrderedDict()
        # Notices received while a buffer is being built from the store.
        self._building: dict[str, list[Buffered]] = {}

    def __len__(self) -> int:
        return len(self._buffers)

    def get(self, visitor_id: str) -> VisitorBuffer | None:
        """The visitor's buffer if it can be trusted now."""
        with self._lock:
            buffer = self._buffers.get(visitor_id)
            if buffer is None:
                return None
            if self.clock() - buffer.built_at > self.max_age:
                del self._buffers[visitor_id]
                return None
            self._buffers.move_to_end(visitor_id)
            return buffer

    def begin(self, visitor_id: str) -> None:
        """Start collecting notices for a buffer about to be built from a store read."""
        with self._lock:
            self._buffers.pop(visitor_id, None)
            self._building.setdefault(visitor_id, [])

    def finish(
        self, visitor_id: str, floor: int, events: Iterable[Buffered], last_seq: dict[str, int]
    ) -> VisitorBuffer | None:
        """Install the buffer read from the store (everything above ``floor``), merged with
        the notices that arrived meanwhile. ``None`` if those leave a gap."""
        with self._lock:
            pending = self._building.pop(visitor_id, [])
            buffer = VisitorBuffer(floor=floor, built_at=self.clock(), last_seq=dict(last_seq))
            for event in sorted(events, key=lambda e: e.pos):
                buffer.events.append(event)
                buffer.last_seq[event.conversation_id] = max(
                    event.seq, buffer.last_seq.get(event.conversation_id, 0)
                )
            for event in sorted(pending, key=lambda e: e.pos):
                if not self._append(buffer, event):
                    return None
            self._trim(buffer)
            self._buffers[visitor_id] = buffer
            while len(self._buffers) > self.capacity:
                self._buffers.popitem(last=False)
            return buffer

    def abandon(self, visitor_id: str) -> None:
        with self._lock:
            self._building.pop(visitor_id, None)

    def add(self, visitor_id: str, events: Iterable[Buffered]) -> None:
        """Events from a notice; a gap drops the buffer."""
        with self._lock:
            pending = self._building.get(visitor_id)
            if pending is not None:
                pending.extend(events)
                return
            buffer = self._buffers.get(visitor_id)
            if buffer is None:
                return
            for event in events:
                if not self._append(buffer, event):
                    del self._buffers[visitor_id]
                    return
            self._trim(buffer)

    def drop(self, visitor_id: str) -> None:
        with self._lock:
            self._buffers.pop(visitor_id, None)
            if visitor_id in self._building:
                self._building[visitor_id] = []

    def _append(self, buffer: VisitorBuffer, event: Buffered) -> bool:
        known = buffer.last_seq.get(event.conversation_id, 0)
        if event.seq <= known:
            return True  # already held: a notice and the store read both had it
        if event.seq != known + 1:
            return False
        buffer.events.append(event)
        buffer.last_seq[event.conversation_id] = event.seq
        return True

    def _trim(self, buffer: VisitorBuffer) -> None:
        while len(buffer.events) > self.depth:
            buffer.floor = buffer.events.popleft().pos
