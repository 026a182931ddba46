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
- another node taking the visitor over drops it too (a ``moved`` notice), as
  does age, so a buffer can be stale for at most ``max_age`` seconds;
- while the bus is down no buffer is trusted or built (:meth:`VisitorBuffers.suspend`),
  and when it is back every buffer is dropped (:meth:`VisitorBuffers.resume`):
  notices published meanwhile were lost.

A buffer being built collects the notices that arrive during the store read
(:meth:`VisitorBuffers.begin` returns a :class:`Build` for that); any event
that invalidates buffers also spoils the builds in progress, so a read that
straddled it installs nothing and the next poll reads the store again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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


@dataclass(eq=False)
class Build:
    """A buffer being built from a store read: the notices received meanwhile."""

    epoch: int
    pending: list[Buffered] = field(default_factory=list)
    spoiled: bool = False


@dataclass(slots=True)
class VisitorBuffer:
    # Every event of the visitor with a position above ``floor`` is in ``events``.
    # A list, not a deque: most buffers hold a few events or none (a deque costs
    # 600 bytes empty, and a node holds one buffer per visitor with a parked poll).
    floor: int
    built_at: float
    events: list[Buffered] = field(default_factory=list)
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
        # Builds in progress by visitor: notices received during their store reads.
        self._building: dict[str, list[Build]] = {}
        # Raised by suspend() and resume(): a build begun before is worthless.
        self._epoch = 0
        self._suspended = False

    def __len__(self) -> int:
        return len(self._buffers)

    @property
    def suspended(self) -> bool:
        return self._suspended

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

    def begin(self, visitor_id: str) -> Build:
        """Start collecting notices for a buffer about to be built from a store read:
        call it before the read (subscribe before read), then :meth:`finish` or
        :meth:`abandon` with what it returns."""
        with self._lock:
            build = Build(self._epoch)
            self._building.setdefault(visitor_id, []).append(build)
            return build

    def finish(
        self,
        visitor_id: str,
        build: Build,
        floor: int,
        events: Iterable[Buffered],
        last_seq: dict[str, int],
    ) -> VisitorBuffer | None:
        """Install the buffer read from the store (everything above ``floor``), merged with
        the notices that arrived meanwhile. ``None`` if those leave a gap, or if the
        build was spoiled (the visitor moved, the bus went down or came back)."""
        with self._lock:
            self._forget(visitor_id, build)
            if build.spoiled or build.epoch != self._epoch or self._suspended:
                return None
            buffer = VisitorBuffer(floor=floor, built_at=self.clock(), last_seq=dict(last_seq))
            for event in sorted(events, key=lambda e: e.pos):
                buffer.events.append(event)
                buffer.last_seq[event.conversation_id] = max(
                    event.seq, buffer.last_seq.get(event.conversation_id, 0)
                )
            for event in sorted(build.pending, key=lambda e: e.pos):
                if not self._append(buffer, event):
                    self._buffers.pop(visitor_id, None)
                    return None
            self._trim(buffer)
            self._buffers[visitor_id] = buffer
            self._buffers.move_to_end(visitor_id)
            self._evict()
            return buffer

    def _evict(self) -> None:
        """Beyond ``capacity`` the least recently used go, and so do buffers nobody has
        used for ``max_age`` (visitors who left), never to be trusted again: the front
        of the LRU is the least recently used, so the first fresh one ends the sweep."""
        now = self.clock()
        while self._buffers:
            oldest = next(iter(self._buffers.values()))
            if len(self._buffers) <= self.capacity and now - oldest.built_at <= self.max_age:
                return
            self._buffers.popitem(last=False)

    def abandon(self, visitor_id: str, build: Build) -> None:
        with self._lock:
            self._forget(visitor_id, build)

    def _forget(self, visitor_id: str, build: Build) -> None:
        builds = self._building.get(visitor_id, [])
        if build in builds:
            builds.remove(build)
        if not builds:
            self._building.pop(visitor_id, None)

    def add(self, visitor_id: str, events: Iterable[Buffered]) -> None:
        """Events from a notice; a gap drops the buffer."""
        events = list(events)
        with self._lock:
            for build in self._building.get(visitor_id, ()):
                build.pending.extend(events)
            buffer = self._buffers.get(visitor_id)
            if buffer is None:
                return
            for event in events:
                if not self._append(buffer, event):
                    del self._buffers[visitor_id]
                    return
            self._trim(buffer)

    def drop(self, visitor_id: str) -> None:
        """Forget the visitor's buffer and spoil its builds: another node serves it now."""
        with self._lock:
            self._buffers.pop(visitor_id, None)
            for build in self._building.get(visitor_id, ()):
                build.spoiled = True

    def discard(self, visitor_id: str) -> None:
        """Forget the visitor's buffer, leaving builds in progress alone (this node is
        taking the visitor over: its builds began before and will see what follows)."""
        with self._lock:
            self._buffers.pop(visitor_id, None)

    def suspend(self) -> None:
        """Trust and build no buffer until :meth:`resume` (the bus is down)."""
        with self._lock:
            self._suspended = True
            self._reset()

    def resume(self) -> None:
        """Trust buffers again, starting from none (the bus is back; what it carried
        while it was away is lost)."""
        with self._lock:
            self._suspended = False
            self._reset()

    def _reset(self) -> None:
        self._epoch += 1
        self._buffers.clear()
        for builds in self._building.values():
            for build in builds:
                build.spoiled = True

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
        excess = len(buffer.events) - self.depth
        if excess > 0:
            buffer.floor = buffer.events[excess - 1].pos
            del buffer.events[:excess]
