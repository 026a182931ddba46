"""Abuse limits that hold across every node: they are counted in the shared store.

- **Messages per visitor** (``messages_per_minute``): counted inside the send's own
  transaction (the visitor's messages of the last 60 seconds), so a visitor gets
  the same budget whichever nodes its sends reach, and a send costs no extra
  round trip or commit for it.
- **New visitors per client address** (``new_visitors_per_ip`` in ``ip_window``):
  only a session request that will store a new visitor counts, one without a
  valid ``ls_vid``; a returning visitor costs nothing. Visitors the host
  identifies (``identify``) are not counted: the host's own accounts bound them.
- **New conversations per client address** (``new_conversations_per_ip`` in
  ``ip_window``): counted by the store when a send opens a conversation, in the
  same transaction.
- Failed sign-ins are throttled in :mod:`livesupport.auth`; parked polls per
  visitor by the hub (:class:`~livesupport.hub.PollHub`), on the node that
  serves the visitor.

A refused request writes nothing and answers ``429 rate_limited`` with
``Retry-After``. The client address is ``REMOTE_ADDR``: behind a proxy, the
``trusted_proxies`` setting makes it the visitor's (from ``X-Forwarded-For``). IPv6
clients are counted by their /64, which one host can otherwise walk through.
A request without an address is not counted per address (logged once): one
budget shared by every client would stop the whole site, not the abuser.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache

from werkzeug.wrappers import Request

from .auth import VISITOR_COOKIE
from .clock import utcnow
from .config import Config
from .errors import RateLimited
from .signing import Signer
from .store.base import Quota, QuotaExceeded, SendResult, Store, Visitor

log = logging.getLogger(__name__)
NEW_VISITOR = "new-visitor"  # quota scopes (keys are "<scope>:<address>")
NEW_CONVERSATION = "new-conversation"


@lru_cache(maxsize=4096)
def client_subject(address: str) -> str:
    """What the per-address limits count by: the IPv4 address, the /64 of an IPv6
    one (an IPv4-mapped one as IPv4), or the text as given if it is neither."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return address[:100]
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class Limits:
    """The shared abuse limits of one middleware.

    :param config: Its settings (the limits and ``identify``).
    :param store: The store every node shares, which counts.
    :param signer: To tell a returning visitor's ``ls_vid`` without reading the store.
    """

    def __init__(self, config: Config, store: Store, signer: Signer) -> None:
        self.config = config
        self.store = store
        self.signer = signer
        self._warned = False

    def _subject(self, request: Request) -> str | None:
        address = request.remote_addr
        if not address:
            if not self._warned:
                self._warned = True
                log.warning("requests without REMOTE_ADDR: per-address limits do not apply")
            return None
        return client_subject(address)

    def check_new_visitor(self, request: Request) -> None:
        """Count a session request that will store a new visitor against its address;
        429 past ``new_visitors_per_ip`` in ``ip_window``. Call it before the session's
        writes: a refused one writes nothing."""
        cfg = self.config
        if cfg.new_visitors_per_ip <= 0:
            return
        if self.signer.visitor_from(request.cookies.get(VISITOR_COOKIE)) is not None:
            return  # a returning visitor
        if cfg.identify is not None:
            user = cfg.identify(request.environ)
            if user and user.get("id"):
                return
        subject = self._subject(request)
        if subject is None:
            return
        quota = Quota(f"{NEW_VISITOR}:{subject}", cfg.new_visitors_per_ip, cfg.ip_window)
        try:
            self.store.use_quota(quota, utcnow())
        except QuotaExceeded as exc:
            raise RateLimited(
                "too many new visitors from this address; try again later", exc.retry_after
            ) from None

    def visitor_send(
        self, request: Request, visitor: Visitor, client_msg_id: str, body: str
    ) -> SendResult:
        """The store's ``visitor_send`` with the send rate and, when it opens a
        conversation, the per-address conversation quota; 429 past either."""
        cfg = self.config
        per_minute = cfg.messages_per_minute if cfg.messages_per_minute > 0 else None
        quota = None
        if cfg.new_conversations_per_ip > 0:
            subject = self._subject(request)
            if subject is not None:
                key = f"{NEW_CONVERSATION}:{subject}"
                quota = Quota(key, cfg.new_conversations_per_ip, cfg.ip_window)
        try:
            return self.store.visitor_send(
                visitor,
                client_msg_id,
                body,
                cfg.node_id,
                utcnow(),
                per_minute=per_minute,
                new_conversations=quota,
            )
        except QuotaExceeded as exc:
            if exc.key is not None:
                message = "too many new conversations from this address; try again later"
            else:
                message = "too many messages; slow down"
            raise RateLimited(message, exc.retry_after) from None
