"""The per-process registry of parked long-polls, and what wakes them.

A poll registers a :class:`Waiter` under the keys it cares about
(``visitor:<id>``, ``agent:<id>``, ``agents``), reads the store, and, if
nothing is new, parks on the waiter's event. :meth:`PollHub.notify` wakes
every waiter of a key, optionally handing it an ephemeral event (typing,
read, queue) that is never stored. No thread is held per poll: under the
gevent server ``threading`` is patched and a parked poll is a greenlet.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


_gevent_event: Any = None  # gevent's Event class, once gevent has patched threading


def _event() -> Any:
    """An event for one parked poll: gevent's own where gevent patched ``threading``
    (the patched ``threading.Event`` is pure Python around a patched lock and
    condition, a tenth of a poll's cost), a thread's otherwise."""
    global _gevent_event
    if _gevent_event is None and "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):  # never undone
            from gevent.event import Event

            _gevent_event = Event
    return _gevent_event() if _gevent_event is not None else threading.Event()


class Waiter:
    """One parked poll."""

    __slots__ = ("keys", "event", "ephemeral", "released")

    def __init__(self, keys: tuple[str, ...], event: Any) -> None:
        self.keys = keys
        self.event = event
        self.ephemeral: list[dict[str, Any]] = []
        # Answered early: the server is stopping, or the visitor opened too many polls.
        self.released = False

    def wake(self, ephemeral: dict[str, Any] | None = None) -> None:
        if ephemeral is not None:
            self.ephemeral.append(ephemeral)
        self.event.set()


class PollHub:
    """Waiters by key, for one process.

    :param max_per_key: How many waiters one ``visitor:`` key may hold; a new
        poll beyond it answers the oldest one at once, so a browser with many
        tabs cannot pile up connections.
    """

    def __init__(self, *, max_per_key: int = 4) -> None:
        self.max_per_key = max_per_key
        self.closing = False
        self._lock = threading.Lock()
        self._waiters: dict[str, list[Waiter]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len({id(w) for ws in self._waiters.values() for w in ws})

    def register(self, keys: Iterable[str], *, limited: str | None = None) -> Waiter:
        waiter = Waiter(tuple(keys), _event())
        evicted: list[Waiter] = []
        with self._lock:
            for key in waiter.keys:
                self._waiters.setdefault(key, []).append(waiter)
            if limited is not None:
                crowd = self._waiters.get(limited, [])
                while len(crowd) > self.max_per_key:
                    evicted.append(crowd[0])
                    self._remove(crowd[0])
        for old in evicted:
            old.released = True
            old.wake()
        if self.closing:
            waiter.released = True
            waiter.wake()
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        with self._lock:
            self._remove(waiter)

    def _remove(self, waiter: Waiter) -> None:
        for key in waiter.keys:
            crowd = self._waiters.get(key)
            if crowd and waiter in crowd:
                crowd.remove(waiter)
                if not crowd:
                    del self._waiters[key]

    def notify(self, key: str, ephemeral: dict[str, Any] | None = None) -> int:
        """Wake the waiters of ``key``; the number woken."""
        with self._lock:
            crowd = list(self._waiters.get(key, ()))
        for waiter in crowd:
            waiter.wake(ephemeral)
        return len(crowd)

    def release(self, key: str) -> int:
        """Answer the waiters of ``key`` now, whatever they find (their visitor moved)."""
        with self._lock:
            crowd = list(self._waiters.get(key, ()))
        for waiter in crowd:
            waiter.released = True
            waiter.wake()
        return len(crowd)

    def wake_all(self) -> None:
        """Make every parked poll read again, and go on waiting if it finds nothing
        (the bus went down or came back: what it carries can no longer be relied on)."""
        with self._lock:
            everyone = {id(w): w for ws in self._waiters.values() for w in ws}
        for waiter in everyone.values():
            waiter.wake()

    def release_all(self) -> None:
        """Answer every parked poll now, and every later one at once (shutdown)."""
        self.closing = True
        with self._lock:
            everyone = {id(w): w for ws in self._waiters.values() for w in ws}
        for waiter in everyone.values():
            waiter.released = True
            waiter.wake()

    def wait(
        self,
        waiter: Waiter,
        read: Callable[[], T],
        has_news: Callable[[T], bool],
        timeout: float,
        clock: Callable[[], float],
        recheck: Callable[[], float | None] | None = None,
    ) -> T:
        """Read until there is news, the waiter is released, or ``timeout`` passes.

        The event is cleared *before* each read, so a notice that lands between
        the read and the wait still ends the wait: nothing is missed. ``recheck``
        gives the longest wait before reading again without a wake-up (``None``:
        no limit); it bounds the delay while notices cannot come (the bus is down).
        """
        deadline = clock() + timeout
        while True:
            waiter.event.clear()
            result = read()
            if has_news(result) or waiter.ephemeral or waiter.released:
                return result
            remaining = deadline - clock()
            if remaining <= 0:
                return result
            interval = recheck() if recheck is not None else None
            if interval is not None and interval < remaining:
                waiter.event.wait(interval)  # woken or not, read again
            elif not waiter.event.wait(remaining):
                return result
            if waiter.released:
                # Answered early (the visitor moved, shutdown, too many polls): what was
                # read is the answer. Reading again could take back a visitor that moved.
                return result
            if waiter.ephemeral:
                return read()
