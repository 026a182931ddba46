"""Who gets woken when something happens, on this node and on the others.

A change is committed to the store first; only then is a notice published.
Notices name hub keys to wake and may carry an ephemeral event. Three kinds
of channel:

- ``node.<id>``: visitor-bound notices go to the one node recorded on the
  conversation and carry the durable events rendered, so that node's buffers
  answer its visitors' polls without reading the store (one publish per
  message, whatever the number of nodes);
- ``agents``: every agent-facing node hears it; notices of durable changes
  carry what the write stored, kept in each node's :class:`AgentLog`, so
  agents' polls read the store only where that log has a hole;
- ``visitors``: every visitor-facing node hears it; only for takeovers (a
  node re-pointing a conversation to itself), rare next to messages. It is
  heard by all rather than by the previous owner alone because two nodes may
  take a visitor over at once, each from the owner it read: the one that
  lost must learn it too, or its buffer would go stale.

A lost notice delays a poll (until a gap in ``seq`` or a buffer's age sends it
to the store) but loses nothing. When this node's bus connection is down:

- its buffers are suspended and its parked polls re-read the store every
  :data:`OUTAGE_RECHECK` seconds, since notices for them cannot come;
- notices it fails to send are kept (the last :data:`MAX_UNSENT`, without
  their ephemeral events, stale by then) and sent when the bus is back, so
  other nodes' polls do not wait for their timeout; if too many pile up, the
  channels concerned get a ``resync`` notice instead (every poll there reads
  the store again);
- when it is back, every buffer is dropped and every parked poll reads the
  store again, since whatever was published meanwhile is gone.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .agent_log import AgentLog, to_record
from .buffers import Buffered, VisitorBuffers
from .bus import Bus, BusUnavailable, Notice
from .hub import PollHub
from .store.base import Conversation, StoredEvent

log = logging.getLogger(__name__)
AGENTS = "agents"
VISITORS = "visitors"
OUTAGE_RECHECK = 2.0  # seconds between store reads of a parked poll while the bus is down
MAX_UNSENT = 1000  # notices kept for sending when the bus is back


def visitor_key(visitor_id: str) -> str:
    return f"visitor:{visitor_id}"


def agent_key(agent_id: str) -> str:
    return f"agent:{agent_id}"


class Delivery:
    """Publishes notices after commits, and turns received notices into wake-ups.

    :param bus: The (not yet started) bus; :meth:`start` subscribes and starts it.
    :param hub: This node's parked polls.
    :param buffers: This node's visitor buffers.
    :param agent_log: This node's copy of the recent feed, for agents' polls.
    :param node_id: This node's id: its channel is ``node.<node_id>``.
    :param role: ``all``, ``visitor`` or ``agent``: which channels it hears.
    """

    def __init__(
        self,
        bus: Bus,
        hub: PollHub,
        buffers: VisitorBuffers,
        agent_log: AgentLog,
        *,
        node_id: str,
        role: str,
    ) -> None:
        self.bus = bus
        self.hub = hub
        self.buffers = buffers
        self.agent_log = agent_log
        self.node_id = node_id
        self.role = role
        # Set by the middleware: drops a kept agent session (see ``Auth.forget``).
        self.forget_session: Callable[[str], None] = lambda token_hash: None
        self._unsent_lock = threading.Lock()
        self._unsent: list[tuple[str, Notice]] = []
        self._overflowed: set[str] = set()  # channels some of whose notices were not kept

    def start(self) -> None:
        if self.role in ("all", "agent"):
            self.bus.subscribe(AGENTS, self._received)
        if self.role in ("all", "visitor"):
            self.bus.subscribe(self.node_channel(self.node_id), self._received)
            self.bus.subscribe(VISITORS, self._received)
        self.bus.on_outage = self._outage
        self.bus.on_resync = self._resync
        if not self.bus.available:  # a server's bus starts disconnected
            self.buffers.suspend()
            self.agent_log.suspend()
        self.bus.start()

    @staticmethod
    def node_channel(node_id: str) -> str:
        return f"node.{node_id}"

    def recheck_interval(self) -> float | None:
        """How long a parked poll may wait before reading again: ``None`` (until woken
        or its timeout) while the bus works, a couple of seconds while it does not
        (jittered, so that polls woken together do not keep reading together)."""
        if self.bus.available:
            return None
        return OUTAGE_RECHECK * random.uniform(0.75, 1.0)

    # -- the bus's state ---------------------------------------------------------
    def _outage(self) -> None:
        log.warning("bus down: polls read the store until it is back")
        self.buffers.suspend()
        self.agent_log.suspend()
        self.hub.wake_all()  # so parked polls start re-reading every OUTAGE_RECHECK s

    def _resync(self) -> None:
        self.buffers.resume()
        self.agent_log.resume()
        self.hub.wake_all()  # they read the store: what was published meanwhile is lost
        with self._unsent_lock:
            unsent, self._unsent = self._unsent, []
            overflowed, self._overflowed = self._overflowed, set()
        for channel in sorted(overflowed):
            self._publish(channel, {"resync": True})
        for channel, notice in unsent:
            self._publish(channel, notice)
        if unsent or overflowed:
            log.warning("bus back: sent %d notices held during the outage", len(unsent))

    # -- receiving --------------------------------------------------------------------
    def _received(self, channel: str, notice: Notice) -> None:
        ended = notice.get("session_ended")
        if ended is not None:
            self.forget_session(ended)
            return
        visitor_id = notice.get("visitor")
        if notice.get("resync"):
            # Its sender lost notices for this channel: trust nothing received so far.
            if self.bus.available:
                if channel == AGENTS:
                    self.agent_log.resume()
                else:
                    self.buffers.resume()
            self.hub.wake_all()
            return
        if channel == VISITORS:
            moved_to = notice.get("node")
            if visitor_id and moved_to != self.node_id:
                # Another node serves the visitor now: answer its polls here at once,
                # so they come back through the balancer to the new owner.
                self.buffers.drop(visitor_id)
                self.hub.release(visitor_key(visitor_id))
            return
        if visitor_id and notice.get("events"):
            self.buffers.add(visitor_id, [Buffered(**e) for e in notice["events"]])
        keys = notice.get("keys", ())
        record = notice.get("log")
        if record is not None:
            for key in self.agent_log.add_record(record, keys):
                self.hub.notify(key)
        event = notice.get("event")
        for key in keys:
            self.hub.notify(key, event)

    # -- publishing ---------------------------------------------------------------
    def _publish(self, channel: str, notice: Notice) -> None:
        try:
            self.bus.publish(channel, notice)
        except BusUnavailable as exc:
            # The change is committed; this node's waiters saw the notice (a bus hands
            # its own subscribers their notices at once); the others get it later.
            self._keep(channel, notice, exc)

    def _keep(self, channel: str, notice: Notice, error: Exception) -> None:
        if "event" in notice and "events" not in notice:
            return  # only an ephemeral event (typing, a queue place): stale once the bus is back
        if channel == self.node_channel(self.node_id):
            return  # delivered here already
        durable = {k: v for k, v in notice.items() if k != "event"}
        with self._unsent_lock:
            first = not self._unsent and not self._overflowed
            self._unsent.append((channel, durable))
            if len(self._unsent) > MAX_UNSENT:
                self._overflowed.add(self._unsent.pop(0)[0])
        if first:
            log.warning("bus unavailable (%s): holding notices until it is back", error)

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

    def committed(self, conversation: Conversation, events: Sequence[StoredEvent]) -> None:
        """The store's ``on_commit``: this node's own writes reach its agent log in
        position order, as they commit (the notices of one group commit would
        arrive in any order), details changes included (they publish nothing)."""
        for key in self.agent_log.add(conversation, events):
            self.hub.notify(key)

    def session_ended(self, token_hash: str) -> None:
        """Tell every agent node to stop trusting the agent session it may have kept."""
        self.forget_session(token_hash)
        self._publish(AGENTS, {"session_ended": token_hash})

    def moved(self, visitor_id: str) -> None:
        """Tell the other visitor nodes that this node now serves the visitor."""
        self._publish(VISITORS, {"visitor": visitor_id, "node": self.node_id})

    def to_agents(
        self,
        conversation: Conversation,
        event: dict[str, Any] | None = None,
        *,
        stored: Sequence[StoredEvent] | None = None,
        everyone: bool = False,
        also: str | None = None,
    ) -> None:
        """Wake the agents concerned: the holder, or every agent while it waits or
        when ``everyone`` (a change every console lists). ``also`` names one more agent.
        ``stored``: the events a committed write stored, with ``conversation`` as it
        left it, for every agent node's log (every write that takes positions passes
        them, or agents' polls read the store past the hole)."""
        if everyone or conversation.agent_id is None or conversation.status == "waiting":
            keys = [AGENTS]
        else:
            keys = [agent_key(conversation.agent_id)]
            if also and also != conversation.agent_id:
                keys.append(agent_key(also))
        notice: Notice = {"keys": keys}
        if event is not None:
            notice["event"] = event
        if stored is not None:  # this node's log has it already (``committed``)
            notice["log"] = to_record(conversation, stored)
        self._publish(AGENTS, notice)
