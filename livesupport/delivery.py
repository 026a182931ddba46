"""Who gets woken when something happens, on this node and on the others.

A change is committed to the store first; only then is a notice published.
Notices name hub keys to wake and may carry an ephemeral event. Visitor-bound
notices go to the one node recorded on the conversation (``node.<id>``);
agent-bound ones go to the ``agents`` channel that every agent-facing node
hears. A lost notice delays a poll until its next read but loses nothing,
because every poll answers from the store.
"""

from __future__ import annotations

import logging
from typing import Any

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

    def __init__(self, bus: Bus, hub: PollHub, *, node_id: str, role: str) -> None:
        self.bus = bus
        self.hub = hub
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
        event = notice.get("event")
        for key in notice.get("keys", ()):
            self.hub.notify(key, event)

    def _publish(self, channel: str, keys: list[str], event: dict[str, Any] | None) -> None:
        notice: Notice = {"keys": keys}
        if event is not None:
            notice["event"] = event
        try:
            self.bus.publish(channel, notice)
        except BusUnavailable:
            # The change is committed; waiters see it on their next read.
            log.warning("bus unavailable: notice on %s not sent", channel)

    def to_visitor(self, conversation: Conversation, event: dict[str, Any] | None = None) -> None:
        """Wake the visitor's polls, on the node recorded on the conversation."""
        self._publish(
            self.node_channel(conversation.node_id), [visitor_key(conversation.visitor_id)], event
        )

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
        self._publish(AGENTS, keys, event)
