"""The cross-node bus contract: notices from one node to others.

A bus carries small JSON-able notices on named channels. The middleware
publishes on ``agents`` (every agent-facing node listens) and on
``node.<node_id>`` (only that node listens): an agent's reply goes to the one
node holding the visitor's poll, so a send costs one publish whatever the
number of nodes. Notices only wake polls; the store remains the truth, so a
lost notice delays delivery until the next poll but loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Notice = dict[str, Any]
Handler = Callable[[str, Notice], None]


class BusUnavailable(Exception):
    """The bus cannot be reached; the notice was not sent."""


class Bus:
    """Publish/subscribe between the nodes of a deployment.

    Subclasses implement :meth:`publish` and :meth:`start`; handlers are
    called with ``(channel, notice)`` for every notice on a subscribed
    channel, including this node's own.
    """

    url: str = ""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)

    def unsubscribe(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._handlers.pop(channel, None)

    def publish(self, channel: str, notice: Notice) -> None:
        """Send ``notice`` to every subscriber of ``channel`` on any node.
        Raises :class:`BusUnavailable` when it cannot."""
        raise NotImplementedError

    def start(self) -> None:
        """Begin listening (a connection, a greenlet). Called once by the middleware."""

    def close(self) -> None:
        """Stop listening and release connections."""

    def ping(self) -> None:
        """Return if the bus works; raise :class:`BusUnavailable` otherwise."""

    def _dispatch(self, channel: str, notice: Notice) -> None:
        for handler in list(self._handlers.get(channel, ())):
            handler(channel, notice)
