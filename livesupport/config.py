"""The middleware's settings: typed, keyword-only, with units, read from the
environment as ``LIVESUPPORT_<NAME>`` when not given.

There is no global settings object: each :class:`~livesupport.LiveSupport`
holds its own :class:`Config`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
ROLES = ("all", "visitor", "agent")
COLOR = re.compile(r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")
WIDGET_POSITIONS = ("right", "left")
WIDGET_LOCALES = ("auto", "en", "zh-CN")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
MIN_SECRET_BYTES = 32

Identify = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def default_node_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:48] or "node"
    return f"{name}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting of the middleware. See the README's configuration reference.

    :param secret_key: Signs cookies and cursors; at least 32 bytes, the same on every node.
    :param store: Store URL: ``memory://``, ``sqlite:///path``, ``postgresql://user@host:port/db``.
    :param bus: Bus URL: ``local://`` for one process; ``redis://host:port/n`` or
        ``postgresql://user@host:port/db`` (LISTEN/NOTIFY) for several nodes.
    :param prefix: Where the chat's routes are mounted.
    :param node_id: This node's name in ``ls_node`` and on conversations.
    :param role: ``all``, ``visitor`` (widget and visitor routes) or ``agent`` (console).
    :param identify: ``environ -> {"id", "name"?, "email"?} | None``: the host's signed-in user.
    :param messages_per_minute: Messages per visitor in any 60 seconds, counted by the
        store across every node; more answer 429. 0: no limit.
    :param new_visitors_per_ip: New visitor sessions (no valid ``ls_vid``) per client
        address in ``ip_window``; 0: no limit.
    :param new_conversations_per_ip: Conversations opened per client address in
        ``ip_window``; 0: no limit.
    :param ip_window: The window of the per-address limits, in seconds.
    :param agent_session_recheck: Seconds a node trusts an agent session it read from
        the store before reading it again: a logout ends it everywhere at once (through
        the bus), a session ended otherwise (``agents disable``) within this time.
        0: read it on every request.
    :param trusted_proxies: How many proxies in front of the application set
        ``X-Forwarded-For``/``-Proto``/``-Host``/``-Port`` (nginx, a load balancer):
        the chat's routes then take the client's address (for the per-address limits
        and login throttling) and scheme (for ``Secure`` cookies) from them. 0: none,
        the headers are ignored. Never more than there are: a client could forge them.
    :param widget_title: The widget's header; empty: "Chat with us" in the visitor's language.
    :param widget_greeting: The first line visitors see; empty: a greeting in their language.
    :param widget_color: The widget's accent colour, ``#rgb`` or ``#rrggbb``.
    :param widget_position: The launcher's corner: ``right`` or ``left`` (bottom).
    :param widget_locale: ``auto`` (the page's ``lang``, then the browser's), ``en`` or ``zh-CN``.
    :param widget_prechat: Offer optional name and email fields before the first message.
    """

    secret_key: str = ""
    store: str = "sqlite:///livesupport.db"
    bus: str = "local://"
    prefix: str = "/livesupport"
    node_id: str = field(default_factory=default_node_id)
    role: str = "all"
    identify: Identify | None = None
    max_body_bytes: int = 64 * 1024
    max_message_chars: int = 10_000
    visitor_cookie_max_age: int = 365 * 24 * 60 * 60  # one year, in seconds
    agent_session_idle: int = 60 * 60  # one hour, in seconds
    agent_session_max_age: int = 12 * 60 * 60  # a shift, in seconds
    agent_session_recheck: int = 5  # seconds a node trusts a session it read; 0: every request
    poll_timeout: int = 25  # seconds, when the client names none
    poll_timeout_max: int = 55  # seconds; below common proxies' 60 s read timeout
    max_polls_per_visitor: int = 4  # one browser's tabs; the oldest is answered first
    messages_per_minute: int = 30  # per visitor, across every node; 0: no limit
    new_visitors_per_ip: int = 100  # new visitor sessions per client address in ip_window
    new_conversations_per_ip: int = 20  # conversations opened per client address in ip_window
    ip_window: int = 10 * 60  # seconds
    trusted_proxies: int = 0  # X-Forwarded-* hops to trust; 0: ignore those headers
    login_attempts: int = 5  # failures per account in login_window before 429
    login_attempts_per_ip: int = 20  # failures per client address in login_window
    login_window: int = 15 * 60  # seconds
    agent_online_grace: int = 90  # seconds an agent counts as online since its last request
    page_size: int = 200  # events per poll answer
    insecure_demo: bool = False  # allows a short secret_key; set only by ``livesupport demo``
    widget_title: str = ""  # at most 80 characters
    widget_greeting: str = ""  # at most 500 characters
    widget_color: str = "#2557d6"
    widget_position: str = "right"
    widget_locale: str = "auto"
    widget_prechat: bool = False

    def __post_init__(self) -> None:
        if not NODE_ID.match(self.node_id):
            raise ValueError("node_id must be 1-64 characters of A-Z a-z 0-9 _ -")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not PREFIX.match(self.prefix):
            raise ValueError("prefix must look like /livesupport (no trailing slash)")
        if len(self.secret_key.encode()) < MIN_SECRET_BYTES and not self.insecure_demo:
            raise ValueError(
                f"secret_key must be at least {MIN_SECRET_BYTES} bytes; generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if not 1 <= self.max_message_chars <= 10_000:
            raise ValueError("max_message_chars must be between 1 and 10000 (the protocol's cap)")
        if not 1 <= self.poll_timeout <= self.poll_timeout_max:
            raise ValueError("poll_timeout must be between 1 and poll_timeout_max")
        for name in ("messages_per_minute", "new_visitors_per_ip", "new_conversations_per_ip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more")
        if self.ip_window < 1:
            raise ValueError("ip_window must be at least 1 second")
        if not 0 <= self.agent_session_recheck <= 60:
            raise ValueError("agent_session_recheck must be between 0 and 60 seconds")
        if not 0 <= self.trusted_proxies <= 10:
            raise ValueError("trusted_proxies must be between 0 and 10")
        self._check_widget()

    def _check_widget(self) -> None:
        if len(self.widget_title) > 80 or "\x00" in self.widget_title:
            raise ValueError("widget_title must be at most 80 characters")
        if len(self.widget_greeting) > 500 or "\x00" in self.widget_greeting:
            raise ValueError("widget_greeting must be at most 500 characters")
        if not COLOR.match(self.widget_color):
            raise ValueError("widget_color must be a hex colour such as #2557d6")
        if self.widget_position not in WIDGET_POSITIONS:
            raise ValueError(f"widget_position must be one of {', '.join(WIDGET_POSITIONS)}")
        if self.widget_locale not in WIDGET_LOCALES:
            raise ValueError(f"widget_locale must be one of {', '.join(WIDGET_LOCALES)}")
        if not isinstance(self.widget_prechat, bool):
            raise ValueError("widget_prechat must be true or false")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Config:
        """Settings from ``given``, else ``LIVESUPPORT_<NAME>`` in ``environ``, else defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in given:
                values[f.name] = given.pop(f.name)
                continue
            raw = environ.get(f"LIVESUPPORT_{f.name.upper()}")
            if raw is None or f.name in ("identify", "insecure_demo"):
                continue
            values[f.name] = _convert(f.name, raw, f.type)
        if given:
            raise TypeError(f"unknown settings: {', '.join(sorted(given))}")
        return cls(**values)


def _convert(name: str, raw: str, kind: object) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"LIVESUPPORT_{name.upper()} must be a whole number") from None
    if kind in (bool, "bool"):
        word = raw.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"LIVESUPPORT_{name.upper()} must be true or false")
    return raw
