"""The cross-node bus contract: notices from one node to others.

A bus carries small JSON-able notices on named channels. The middleware
publishes on ``agents`` (every agent-facing node listens), on ``visitors``
(every visitor-facing node listens; only for the rare takeovers) and on
``node.<node_id>`` (only that node listens): an agent's reply goes to the one
node holding the visitor's poll, so a message costs one publish whatever the
number of nodes. Notices only wake polls; the store remains the truth, so a
lost notice delays delivery but loses nothing.

A bus that talks to a server (Redis, PostgreSQL) can lose its connection.
It then reports :attr:`Bus.available` false and calls :attr:`Bus.on_outage`;
when it is subscribed again it calls :attr:`Bus.on_resync`, because notices
published meanwhile are gone for good and whoever relied on them must read
the store again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Notice = dict[str, Any]
Handler = Callable[[str, Notice], None]
Hook = Callable[[], None]


class BusUnavailable(Exception):
    """The bus cannot be reached; the notice was not sent."""


class Bus:
    """Publish/subscribe between the nodes of a deployment.

    Subclasses implement :meth:`publish` (and :meth:`start`, :meth:`close`,
    :meth:`ping` when they hold connections). The contract, which
    ``tests/bus/test_contract.py`` checks for every bus:

    - handlers are called with ``(channel, notice)`` for every notice published
      on a subscribed channel by any node, this one included, after
      :meth:`subscribe` returned (earlier ones may or may not arrive);
    - notices one thread publishes on one channel arrive in that order;
    - a notice arrives equal to what was published (JSON types: dicts, lists,
      strings, numbers, booleans, ``None``), of any size the middleware sends (a
      message body is up to 10,000 characters); normally once, but a send retried
      after a connection broke may repeat it, so handlers tolerate repeats;
    - :meth:`publish` returns quickly and raises :class:`BusUnavailable` when
      the notice could not be sent; it never blocks on an absent server for
      more than a couple of seconds;
    - handlers run on a thread (a greenlet under gevent) of the bus's own and
      must not block; a handler that raises is logged and does not stop the bus.

    :attr:`on_resync` and :attr:`on_outage` are set by the middleware before
    :meth:`start`; a bus calls them from its listener, never both at once.
    """

    url: str = ""
    #: Called each time the bus is connected and subscribed again, the first time too.
    on_resync: Hook | None = None
    #: Called when the bus loses its connection (notices may be missed from now on).
    on_outage: Hook | None = None

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._handlers_lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether notices published now will reach this node's subscribers."""
        return True

    def subscribe(self, channel: str, handler: Handler) -> None:
        with self._handlers_lock:
            self._handlers.setdefault(channel, []).append(handler)

    def unsubscribe(self, channel: str, handler: Handler) -> None:
        with self._handlers_lock:
            handlers = self._handlers.get(channel, [])
            if handler in handlers:
                handlers.remove(handler)
            if not handlers:
                self._handlers.pop(channel, None)

    def channels(self) -> list[str]:
        """The channels with at least one handler."""
        with self._handlers_lock:
            return list(self._handlers)

    def publish(self, channel: str, notice: Notice) -> None:
        """Send ``notice`` to every subscriber of ``channel`` on any node.
        Raises :class:`BusUnavailable` when it cannot."""
        raise NotImplementedError

    def start(self) -> None:
        """Begin listening (a connection, a thread). Called once by the middleware."""

    def close(self) -> None:
        """Stop listening and release connections."""

    def ping(self) -> None:
        """Return if the bus works; raise :class:`BusUnavailable` otherwise."""

    def _dispatch(self, channel: str, notice: Notice) -> None:
        with self._handlers_lock:
            handlers = list(self._handlers.get(channel, ()))
        for handler in handlers:
            try:
                handler(channel, notice)
            except Exception:
                log.exception("bus handler failed on %s", channel)
