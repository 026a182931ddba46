"""The recent feed in memory: how an agent-facing node answers agents' polls
without reading the store.

Every write that takes feed positions publishes, on the ``agents`` channel
that every agent-facing node hears, what it stored: its events and the
conversation as it left it (:meth:`Delivery.to_agents`); a node's own writes
reach its log from the store as they commit (``Store.on_commit``), in order.
Positions are taken in commit order and published after the commit, so once a
node holds every position from ``floor`` up to ``top``, an agent's page of ``(after, top]``
follows from memory, as the store would have answered it when ``top`` was the
committed top (:meth:`AgentLog.page` mirrors ``MemoryStore.agent_poll_feed``).

The store stays the truth; this is a cache that knows where it is complete:

- a position not received leaves a hole. Most are brief: the writes of one
  group commit, or of two nodes, publish in any order. A poll whose cursor
  has reached a hole waits up to :data:`HOLE_GRACE` for it to fill (the
  polls the missing notice would not wake are woken when it fills); past
  that (a notice lost, a write that publishes nothing, such as a visitor's
  new details) it reads the store;
- a store read learns that every position up to the top it read is
  committed and in its answer, so the log moves its floor up to it
  (:meth:`AgentLog.rebase`), forgetting the hole, and is complete again from
  there;
- while the bus is down nothing is trusted (:meth:`AgentLog.suspend`), and
  when it is back the log starts from nothing: what it carried meanwhile is lost.

Visitors are cached too, by conversation (for the conversation JSON a poll
renders). Their details change only by a write that publishes nothing: with
an open conversation it takes a position (a hole, so a rebase before any page
beyond it), which forgets them all; without one, the next conversation is new
to the cache. A visitor read before a rebase is not kept after it.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .records import conversation_of, conversation_to_json, event_of, event_to_json
from .store.base import Conversation, FeedPage, StoredEvent, Visitor

MAX_VISITORS = 50_000  # cached visitors; beyond it the cache starts over
# Seconds a hole may last before polls that reached it read the store: notices of
# one batch or of several nodes arrive out of order, within milliseconds.
HOLE_GRACE = 0.05


def to_record(conversation: Conversation, events: Sequence[StoredEvent]) -> dict[str, Any]:
    """What a write publishes: the conversation as it left it and its events."""
    return {"c": conversation_to_json(conversation), "e": [event_to_json(e) for e in events]}


class AgentLog:
    """The recent positions of the feed, indexed as an agent's poll reads them.

    :param capacity: Events kept; beyond it the oldest half is forgotten (polls
        with older cursors read the store).
    """

    def __init__(
        self, *, capacity: int = 20_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()
        self._reset()
        self._suspended = False
        self.epoch = 0  # raised whenever cached visitors may be stale
        self._visitors: dict[str, Visitor] = {}  # by conversation id
        # Counters for the benchmark and the curious: pages answered, and refused.
        self.answered = 0
        self.refused = 0

    def _reset(self) -> None:
        # Every position in (floor, top] is held; None: not yet known from a store read.
        self._floor: int | None = None
        self._top: int | None = None
        self._pending: set[int] = set()  # held positions above top (beyond a hole)
        self._stuck_since = 0.0  # when top last moved, while positions are pending
        # Hub keys to wake when a pending position is reached (its notice woke polls
        # that found the hole before it).
        self._wake: dict[int, Sequence[str]] = {}
        self._event_pos: list[int] = []  # sorted
        self._by_conversation: dict[str, list[StoredEvent]] = {}  # each sorted by pos
        self._marks: list[tuple[int, str]] = []  # events other than messages, sorted
        self._latest: dict[str, Conversation] = {}
        self._waiting: dict[str, None] = {}
        self._held: dict[str, dict[str, None]] = {}  # active conversations by holder
        self._closed_by: dict[str, list[tuple[int, str]]] = {}  # sorted

    # -- what writers publish ----------------------------------------------------
    def add_record(self, record: Mapping[str, Any], keys: Sequence[str] = ()) -> list[str]:
        """A record as the bus carried it (this node's own are usually held already)."""
        events = record["e"]
        positions = [e[3] for e in events] or [record["c"][8]]
        with self._lock:
            if self._known(positions):
                return []  # before decoding it
        return self.add(conversation_of(record["c"]), [event_of(e) for e in events], keys)

    def _known(self, positions: Iterable[int]) -> bool:
        top = self._top
        return any(p in self._pending or (top is not None and p <= top) for p in positions)

    def add(
        self, conversation: Conversation, events: Sequence[StoredEvent], keys: Sequence[str] = ()
    ) -> list[str]:
        """A committed write: ``events`` and ``conversation`` as it left it; ``keys``, the
        hub keys its notice wakes. Returns the keys of earlier notices to wake now: this
        write filled the hole that kept their polls from reading them."""
        positions = [e.pos for e in events] or [conversation.pos]
        with self._lock:
            if self._suspended:
                return []
            if self._known(positions):
                return []  # held already, or below what the log answers for
            if not self._pending:
                self._stuck_since = self.clock()
            self._pending.update(positions)
            if keys:
                self._wake[positions[-1]] = keys
            for event in events:
                insort(self._event_pos, event.pos)
                insort(self._by_conversation.setdefault(event.conversation_id, []), event,
                       key=_pos)  # fmt: skip
                if event.type != "message":
                    insort(self._marks, (event.pos, event.conversation_id))
            self._save(conversation)
            woken = self._advance()
            if len(self._event_pos) > self.capacity:
                self._trim()
            own = set(keys)
            return [k for k in dict.fromkeys(woken) if k not in own]

    def _save(self, conversation: Conversation) -> None:
        before = self._latest.get(conversation.id)
        if before is not None and before.pos >= conversation.pos:
            return
        self._unindex(before)
        self._latest[conversation.id] = conversation
        holder = conversation.agent_id
        if conversation.status == "waiting":
            self._waiting[conversation.id] = None
        elif holder is not None and conversation.status == "active":
            self._held.setdefault(holder, {})[conversation.id] = None
        elif holder is not None and (before is None or before.status != "closed"):
            insort(self._closed_by.setdefault(holder, []), (conversation.pos, conversation.id))

    def _unindex(self, conversation: Conversation | None) -> None:
        if conversation is None:
            return
        self._waiting.pop(conversation.id, None)
        if conversation.agent_id is not None:
            held = self._held.get(conversation.agent_id)
            if held is not None:
                held.pop(conversation.id, None)

    def _advance(self) -> list[str]:
        """Move ``top`` over the positions now contiguous; the keys to wake for them."""
        if self._top is None:
            return []
        woken: list[str] = []
        start = self._top
        while self._top + 1 in self._pending:
            self._top += 1
            self._pending.discard(self._top)
            woken.extend(self._wake.pop(self._top, ()))
        if self._top != start:
            self._stuck_since = self.clock()
        return woken

    # -- what the store says ----------------------------------------------------------
    def rebase(self, committed: int, epoch: int) -> None:
        """Every position up to ``committed`` is committed and was in a store read
        begun at ``epoch``: forget them, holes included, and be complete from there."""
        with self._lock:
            if self._suspended or epoch != self.epoch:
                return
            if self._top is not None and committed <= self._top:
                return
            self._floor = self._top = committed
            self._pending = {p for p in self._pending if p > committed}
            self._forget_upto(committed)
            self._advance()  # whoever waited on the hole read the store meanwhile
            self._stuck_since = self.clock()
            self._new_epoch()

    def _new_epoch(self) -> None:
        """Visitors read until now may be stale: forget them, and refuse those being read."""
        self.epoch += 1
        self._visitors.clear()

    def _trim(self) -> None:
        """Forget the oldest half of the events (never beyond ``top``: what lies above a
        hole cannot be vouched for by a floor); start over if that frees nothing."""
        assert self._top is not None or self._floor is None
        cut = self._event_pos[len(self._event_pos) // 2]
        if self._top is None or cut > self._top:
            if len(self._event_pos) > 2 * self.capacity:
                self._reset()
                self._new_epoch()
            return
        self._floor = cut
        self._forget_upto(cut)

    def _forget_upto(self, pos: int) -> None:
        self._wake = {p: k for p, k in self._wake.items() if p > pos}
        self._event_pos = self._event_pos[bisect_right(self._event_pos, pos) :]
        for cid, events in list(self._by_conversation.items()):
            kept = events[bisect_right(events, pos, key=_pos) :]
            if kept:
                self._by_conversation[cid] = kept
            else:
                del self._by_conversation[cid]
        self._marks = _after(self._marks, pos)
        for agent_id, closed in list(self._closed_by.items()):
            kept_closed = _after(closed, pos)
            if kept_closed:
                self._closed_by[agent_id] = kept_closed
            else:
                del self._closed_by[agent_id]
        for cid in [cid for cid, c in self._latest.items() if c.pos <= pos]:
            self._unindex(self._latest.pop(cid))
            self._visitors.pop(cid, None)

    def suspend(self) -> None:
        """Answer nothing until :meth:`resume` (the bus is down)."""
        self._start_over(suspended=True)

    def resume(self) -> None:
        """Start again from nothing (the bus is back; what it carried meanwhile is lost)."""
        self._start_over(suspended=False)

    def _start_over(self, *, suspended: bool) -> None:
        with self._lock:
            self._suspended = suspended
            self._reset()
            self._new_epoch()

    # -- what polls read ----------------------------------------------------------------
    def page(self, agent_id: str, after: int, limit: int) -> FeedPage | None:
        """The agent's page after ``after`` as ``Store.agent_poll_feed`` answers it, or
        ``None`` when the log cannot vouch for it (read the store, then :meth:`rebase`)."""
        with self._lock:
            top = self._top
            if top is None or self._floor is None or not self._floor <= after <= top:
                self.refused += 1
                return None
            if after == top:
                if self._pending and self.clock() - self._stuck_since >= HOLE_GRACE:
                    self.refused += 1  # the next position is missing for too long
                    return None
                self.answered += 1  # nothing new yet, or a hole that should fill soon
                return FeedPage((), after, False)
            start = bisect_right(self._event_pos, after)
            end = bisect_right(self._event_pos, top)
            upto, more = top, False
            if end - start > limit:
                upto, more = self._event_pos[start + limit - 1], True
            closed = self._closed_by.get(agent_id, [])
            recent = _after(closed, after)
            concerned = [*self._waiting, *self._held.get(agent_id, ()), *(c for _, c in recent)]
            events = [e for cid in concerned for e in self._since(cid, after) if e.pos <= upto]
            events.sort(key=_pos)
            changed = set(concerned)
            for pos, cid in _after(self._marks, after):
                if pos > upto:
                    break
                changed.add(cid)
            conversations = sorted(
                (c for c in map(self._latest.get, changed) if c and after < c.pos <= upto),
                key=_pos,
            )
            self.answered += 1
            return FeedPage(events, upto, more, conversations)

    def hole_wait(self) -> float | None:
        """Seconds until a hole at ``top`` has lasted :data:`HOLE_GRACE` (a poll parked
        on it reads again then); ``None`` without one."""
        with self._lock:
            if not self._pending:
                return None
            return max(0.0, HOLE_GRACE - (self.clock() - self._stuck_since)) + 0.001

    def _since(self, conversation_id: str, after: int) -> list[StoredEvent]:
        events = self._by_conversation.get(conversation_id, [])
        return events[bisect_right(events, after, key=_pos) :]

    def conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation as the latest position held left it, if one is held."""
        with self._lock:
            return self._latest.get(conversation_id)

    # -- visitors ---------------------------------------------------------------------
    def visitors(self, conversations: Iterable[Conversation]) -> dict[str, Visitor]:
        """The cached visitors of ``conversations``, by visitor id."""
        with self._lock:
            cached = ((c.visitor_id, self._visitors.get(c.id)) for c in conversations)
            return {vid: v for vid, v in cached if v is not None}

    def remember(
        self,
        conversations: Iterable[Conversation],
        visitors: Mapping[str, Visitor | None],
        epoch: int,
    ) -> None:
        """Cache the visitors of ``conversations`` read from the store since ``epoch``
        (a read from before may be stale)."""
        with self._lock:
            if epoch != self.epoch:
                return
            if len(self._visitors) > MAX_VISITORS:
                self._visitors.clear()
            for c in conversations:
                visitor = visitors.get(c.visitor_id)
                if visitor is not None and c.id in self._latest:
                    self._visitors[c.id] = visitor


def _pos(item: Any) -> int:
    return int(item.pos)


def _after(marks: list[tuple[int, str]], pos: int) -> list[tuple[int, str]]:
    """The ``(position, conversation id)`` pairs of sorted ``marks`` beyond ``pos``."""
    return marks[bisect_right(marks, pos, key=_first) :]


def _first(mark: tuple[int, str]) -> int:
    return mark[0]
