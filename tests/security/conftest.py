"""Shared set-up for the security tests: agent sessions made straight in the
store (no Argon2 per test), tampering helpers, and the secrets of a victim's
conversation that no other principal may ever see."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from livesupport import LiveSupport
from livesupport.clock import utcnow
from livesupport.signing import token_hash
from livesupport.store.base import AgentSession

OTHER_SECRET = "another-deployment-secret-key-0123456789abcdef"


@dataclass(frozen=True)
class Session:
    """An agent session as a browser holds it: the ``ls_agent`` cookie and the CSRF token."""

    cookie: str
    csrf: str
    agent_id: str
    token: str  # the raw bearer token inside the cookie


def open_session(
    middleware: LiveSupport,
    agent_id: str,
    *,
    age: timedelta = timedelta(0),
    idle: timedelta = timedelta(0),
) -> Session:
    """A session stored for ``agent_id`` as a login makes it, ``age`` old and ``idle`` unused."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    middleware.store.create_session(
        AgentSession(token_hash(token), agent_id, csrf, now - age, now - idle)
    )
    return Session(middleware.ctx.signer.sign("agent", token), csrf, agent_id, token)


def flip_last(text: str) -> str:
    """``text`` with its last character changed (a forged signature, one character off)."""
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def leaked(secrets_: tuple[str, ...], *texts: Any) -> list[str]:
    """Which of ``secrets_`` appear in any of ``texts`` (bytes or str)."""
    joined = "\n".join(
        t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts
    )
    return [s for s in secrets_ if s in joined]
