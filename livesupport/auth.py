"""Who is asking: visitors by their signed cookie, agents by their session.

Agent sessions are random 256-bit tokens; the cookie carries the token signed
with HMAC, the store keeps only its SHA-256 (a leaked database holds no live
session). Sessions end after ``agent_session_idle`` without a request or
``agent_session_max_age`` after login, and at logout.

A node keeps the sessions it read for ``agent_session_recheck`` seconds, so an
agent's polls and sends do not each read the store: a logout forgets the
session on this node at once and on the others through the bus; a session
ended elsewhere (``agents disable``, a lost notice) stops working here
within that time.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from time import monotonic

from werkzeug.wrappers import Request

from .clock import utcnow
from .config import Config
from .errors import Forbidden, RateLimited, Unauthorized
from .passwords import DUMMY_HASH, verify_password
from .signing import Signer, token_hash
from .store.base import Agent, AgentSession, Store, Visitor

AGENT_COOKIE = "ls_agent"
VISITOR_COOKIE = "ls_vid"
NODE_COOKIE = "ls_node"
CSRF_HEADER = "X-CSRF-Token"
# Writes to keep a session (and the agent's presence) fresh, at most this often.
TOUCH_EVERY = timedelta(seconds=30)
KEPT_SESSIONS = 10_000  # sessions a node keeps; beyond it they are all read again


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_of(scheme: str, host: str) -> tuple[str, str, str]:
    name, _, port = (
        host.lower().rpartition(":")
        if host.rfind(":") > host.rfind("]")
        else (host.lower(), "", "")
    )
    return scheme.lower(), name, port or _DEFAULT_PORTS.get(scheme.lower(), "")


def cross_site(request: Request) -> bool:
    """Whether a browser says the request comes from another site or origin.

    Agent writes are refused then even with a session: SameSite=Strict and the
    CSRF header already stop forgery, this closes the door for login CSRF and
    for browsers that send neither signal wrongly. Clients that send neither
    ``Sec-Fetch-Site`` nor ``Origin`` (scripts, the CLI) are not browsers here.
    """
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    scheme, sep, host = origin.partition("://")
    if not sep or "/" in host:
        return True  # "null" and anything malformed
    return _origin_of(scheme, host) != _origin_of(request.scheme, request.host)


@dataclass(frozen=True, slots=True)
class AgentContext:
    agent: Agent
    session: AgentSession
    token_hash: str


class Auth:
    """Identifies visitors and agents for the middleware."""

    def __init__(self, config: Config, signer: Signer, store: Store) -> None:
        self.config = config
        self.signer = signer
        self.store = store
        # token hash -> (monotonic time read, session, agent)
        self._kept: dict[str, tuple[float, AgentSession, Agent]] = {}

    # -- visitors ------------------------------------------------------------
    def visitor_id(self, request: Request) -> str:
        """The visitor id in a valid ``ls_vid``, without reading the store; 401 otherwise.
        Only the deployment signs them, and only for visitors it stored."""
        visitor_id = self.signer.visitor_from(request.cookies.get(VISITOR_COOKIE))
        if visitor_id is None:
            raise Unauthorized("open a visitor session first")
        return visitor_id

    def visitor(self, request: Request) -> Visitor:
        """The visitor named by a valid ``ls_vid``; 401 otherwise."""
        visitor_id = self.signer.visitor_from(request.cookies.get(VISITOR_COOKIE))
        visitor = self.store.get_visitor(visitor_id) if visitor_id else None
        if visitor is None:
            raise Unauthorized("open a visitor session first")
        return visitor

    def visitor_or_none(self, request: Request) -> Visitor | None:
        try:
            return self.visitor(request)
        except Unauthorized:
            return None

    # -- agents --------------------------------------------------------------
    def agent(self, request: Request, *, csrf: bool) -> AgentContext:
        """The signed-in agent; 401 without a live session, 403 on a missing or wrong CSRF token."""
        fields = self.signer.unsign("agent", request.cookies.get(AGENT_COOKIE), 1)
        if fields is None:
            raise Unauthorized("sign in first")
        hashed = token_hash(fields[0])
        found = self._recent(hashed)
        if found is None:
            found = self.store.session_agent(hashed)
            if found is not None:
                self._keep(hashed, *found)
        session, agent = found if found is not None else (None, None)
        now = utcnow()
        if session is None or (
            now - session.last_seen_at > timedelta(seconds=self.config.agent_session_idle)
            or now - session.created_at > timedelta(seconds=self.config.agent_session_max_age)
        ):
            if session is not None:
                self.forget(hashed)
                self.store.delete_session(hashed)
            raise Unauthorized("the session has ended; sign in again")
        if agent is None or agent.disabled:
            raise Unauthorized("the account is disabled")
        if csrf:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise Forbidden(f"missing or wrong {CSRF_HEADER} header")
        if now - session.last_seen_at > TOUCH_EVERY:
            self.store.touch_session(hashed, now)
            agent = self.store.update_agent(agent.id, last_seen_at=now) or agent
            self._keep(hashed, replace(session, last_seen_at=now), agent)
        return AgentContext(agent, session, hashed)

    def _recent(self, hashed: str) -> tuple[AgentSession, Agent | None] | None:
        kept = self._kept.get(hashed)
        if kept is None:
            return None
        if monotonic() - kept[0] >= self.config.agent_session_recheck:
            del self._kept[hashed]
            return None
        return kept[1], kept[2]

    def _keep(self, hashed: str, session: AgentSession, agent: Agent | None) -> None:
        if agent is None or self.config.agent_session_recheck <= 0:
            return
        if len(self._kept) >= KEPT_SESSIONS:
            self._kept.clear()
        self._kept[hashed] = (monotonic(), session, agent)

    def forget(self, hashed: str) -> None:
        """Read the session from the store next time (it ended, here or on another node)."""
        self._kept.pop(hashed, None)

    def login(self, email: str, password: str, client: str) -> tuple[Agent, str, str]:
        """Check credentials; ``(agent, cookie value, csrf token)``.

        The same answer and about the same time whether the email is unknown,
        the account disabled or the password wrong, so logins reveal nothing.
        """
        email = email.strip().lower()
        keys = (f"login:account:{email}", f"login:ip:{client}")
        limits = (self.config.login_attempts, self.config.login_attempts_per_ip)
        now = utcnow()
        window = timedelta(seconds=self.config.login_window)
        for key, limit in zip(keys, limits, strict=True):
            recent = self.store.attempts_since(key, now - window)
            if len(recent) >= limit:
                retry = (recent[-limit] + window - now).total_seconds()
                raise RateLimited("too many failed sign-ins; try again later", retry)
        agent = self.store.get_agent_by_email(email)
        valid = verify_password(password, agent.password_hash if agent else DUMMY_HASH)
        if agent is None or agent.disabled or not valid:
            for key in keys:
                self.store.record_attempt(key, now)
            raise Unauthorized("wrong email or password")
        self.store.clear_attempts(keys[0])
        token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.store.create_session(AgentSession(token_hash(token), agent.id, csrf_token, now, now))
        agent = self.store.update_agent(agent.id, status="online", last_seen_at=now) or agent
        return agent, self.signer.sign("agent", token), csrf_token
