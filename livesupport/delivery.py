"""Who gets woken when something happens, on this node and on the others.

A change is committed to the store first; only then is a notice published.
Notices name hub keys to wake and may carry an ephemeral event. Visitor-bound
notices go to the one node recorded on the conversation (``node.<id>``) and
carry the durable events rendered, so that node's buffers answer its
visitors' polls without reading the store; agent-bound ones go to the
``agents`` channel that every agent-facing node hears, and agents' polls read
the store. A lost notice delays a poll (until a gap in ``seq`` or a buffer's
age sends it to the store) but loses nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from .buffers import Buffered, VisitorBuffers
from .bus import Bus, BusUnavailable, Notice
from .hub import PollHub
from .store.base import Conversation

log = logging.getLogger(__name__)
AGENTS = "agents"


def visitor_key(visitor_id: str) -> str:
    return f"visitor:{visitor_id}"


def agent_key(agent_id: str) -> str:
    return f"agent:{agent_id}"


class Delivery:
    """Publishes notices after commits, and turns received notices into wake-ups."""

    def __init__(
        self, bus: Bus, hub: PollHub, buffers: VisitorBuffers, *, node_id: str, role: str
    ) -> None:
        self.bus = bus
        self.hub = hub
        self.buffers = buffers
        self.node_id = node_id
        self.role = role

    def start(self) -> None:
        if self.role in ("all", "agent"):
            self.bus.subscribe(AGENTS, self._received)
        if self.role in ("all", "visitor"):
            self.bus.subscribe(self.node_channel(self.node_id), self._received)
        self.bus.start()

    @staticmethod
    def node_channel(node_id: str) -> str:
        return f"node.{node_id}"

    def _received(self, channel: str, notice: Notice) -> None:
        visitor_id = notice.get("visitor")
        if notice.get("drop") and visitor_id:
            # Another node took the visitor over: answer its polls here at once,
            # so they come back through the balancer to the new owner.
            self.buffers.drop(visitor_id)
            self.hub.release(visitor_key(visitor_id))
            return
        if visitor_id and notice.get("events"):
            self.buffers.add(visitor_id, [Buffered(**e) for e in notice["events"]])
        event = notice.get("event")
        for key in notice.get("keys", ()):
            self.hub.notify(key, event)

    def _publish(self, channel: str, notice: Notice) -> None:
        try:
            self.bus.publish(channel, notice)
        except BusUnavailable:
            # The change is committed; waiters see it on their next read.
            log.warning("bus unavailable: notice on %s not sent", channel)

    def to_visitor(
        self,
        conversation: Conversation,
        event: dict[str, Any] | None = None,
        *,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        """Wake the visitor's polls on the node recorded on the conversation, handing
        it the durable ``events`` (as :meth:`Context.buffered` renders them) or an
        ephemeral ``event``."""
        notice: Notice = {"keys": [visitor_key(conversation.visitor_id)]}
        if events:
            notice["visitor"] = conversation.visitor_id
            notice["events"] = events
        if event is not None:
            notice["event"] = event
        self._publish(self.node_channel(conversation.node_id), notice)

    def moved(self, visitor_id: str, from_node: str) -> None:
        """Tell ``from_node`` that this node now serves the visitor."""
        notice: Notice = {"keys": [], "visitor": visitor_id, "drop": True}
        self._publish(self.node_channel(from_node), notice)

    def to_agents(
        self,
        conversation: Conversation,
        event: dict[str, Any] | None = None,
        *,
        everyone: bool = False,
        also: str | None = None,
    ) -> None:
        """Wake the agents concerned: the holder, or every agent while it waits or
        when ``everyone`` (a change every console lists). ``also`` names one more agent."""
        if everyone or conversation.agent_id is None or conversation.status == "waiting":
            keys = [AGENTS]
        else:
            keys = [agent_key(conversation.agent_id)]
            if also and also != conversation.agent_id:
                keys.append(agent_key(also))
        notice: Notice = {"keys": keys}
        if event is not None:
            notice["event"] = event
        self._publish(AGENTS, notice)
