"""What every handler shares: settings, store, signer, hub, delivery, and the
long-poll plumbing common to visitors and agents (cursors, timeouts)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from werkzeug.wrappers import Request

from .auth import Auth
from .buffers import VisitorBuffers
from .clock import utcnow
from .config import Config
from .delivery import Delivery
from .errors import BadRequest, Invalid
from .http import query_number
from .hub import PollHub
from .limits import Limits
from .serialize import conversation_json, ephemeral_json, event_json
from .signing import Signer
from .store.base import Conversation, Store, StoredEvent, Visitor

QUEUE_ANNOUNCED = 100  # waiting visitors told their place; those behind hear when they move up


class Page(Protocol):
    @property
    def events(self) -> Sequence[Any]: ...

    @property
    def more(self) -> bool: ...


P = TypeVar("P", bound=Page)


def _has_news(page: Page) -> bool:
    # ``more`` alone counts: a page of other agents' events can be empty for this one.
    return bool(page.events or page.more or getattr(page, "conversations", ()))


@dataclass
class Context:
    config: Config
    store: Store
    signer: Signer
    auth: Auth
    hub: PollHub
    delivery: Delivery
    buffers: VisitorBuffers
    clock: Callable[[], float] = time.monotonic
    # The shared abuse limits (new visitors and conversations per address, sends per
    # visitor), counted in the store so that they hold across nodes.
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = Limits(self.config, self.store, self.signer)

    # -- cursors: "<v|a>.<principal>.<feed position>.<mac>" ---------------------
    def cursor(self, kind: str, principal: str, pos: int) -> str:
        return self.signer.sign("cursor", kind, principal, str(pos))

    def read_cursor(self, request: Request, kind: str, principal: str) -> int | None:
        """The feed position in the request's cursor; ``None`` without one.
        400 for a cursor that is malformed, tampered with or someone else's."""
        raw = request.args.get("cursor")
        if raw is None:  # present but empty is a cursor that does not parse: 400
            return None
        fields = self.signer.unsign("cursor", raw, 3)
        if fields is None or fields[0] != kind or fields[1] != principal or not fields[2].isdigit():
            raise BadRequest("the cursor is not valid here")
        return int(fields[2])

    def poll_timeout(self, request: Request) -> float:
        timeout = query_number(request, "timeout")
        if timeout is None:
            return float(self.config.poll_timeout)
        return min(max(timeout, 1.0), float(self.config.poll_timeout_max))

    def long_poll(
        self,
        keys: list[str],
        read: Callable[[], P],
        timeout: float,
        *,
        limited: str | None = None,
        recheck: Callable[[], float | None] | None = None,
    ) -> tuple[P, list[dict[str, Any]]]:
        """Park until ``read`` finds events (or an ephemeral event arrives, or the
        timeout passes); the last page read and the ephemeral events received.
        ``recheck``: the longest wait before reading again unwoken (``None``: as long
        as the bus works)."""
        waiter = self.hub.register(keys, limited=limited)
        try:
            recheck = recheck or self.delivery.recheck_interval
            page = self.hub.wait(waiter, read, _has_news, timeout, self.clock, recheck)
            return page, list(waiter.ephemeral)
        finally:
            self.hub.unregister(waiter)

    def buffered(
        self,
        conversation: Conversation,
        events: Sequence[StoredEvent],
        visitor: Visitor | None = None,
    ) -> list[dict[str, Any]]:
        """Durable events rendered for a visitor's poll, as notices carry them to
        the node that buffers them. ``conversation`` is as the events left it."""
        if not events:
            return []
        closing = None
        if any(e.type == "conversation_closed" for e in events):
            who = visitor or self.store.get_visitor(conversation.visitor_id)
            closing = conversation_json(conversation, who)
        return [
            {"pos": e.pos, "conversation_id": e.conversation_id, "seq": e.seq,
             "json": event_json(e, closing)}
            for e in events
        ]  # fmt: skip

    def announce_queue(self) -> None:
        """Tell each waiting visitor its place in the queue (an ephemeral ``queue`` event)."""
        now = utcnow()
        for place, conversation in enumerate(self.store.waiting_queue()[:QUEUE_ANNOUNCED], 1):
            data = {"position": place, "estimated_wait_s": None}
            self.delivery.to_visitor(
                conversation, ephemeral_json("queue", conversation.id, now, data)
            )

    def check_body(self, body: str) -> None:
        """422 for a message longer than this site allows (the protocol's cap is 10,000)."""
        if len(body) > self.config.max_message_chars:
            raise Invalid(f"body must be at most {self.config.max_message_chars} characters")
