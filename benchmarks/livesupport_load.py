"""livesupport's side of the exchanges, in the v1 protocol (PROTOCOL.md).

Per conversation: a visitor (its session, a send connection, a poll
connection) and the agent holding it (one poll per agent, a send connection
per conversation). Visitors may be served by one node and agents by another
(the cross-node scenario).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import gevent

from .apps import AGENT_PASSWORD, agent_email
from .http import Connection, HTTPError, cookie_header
from .loadgen import Deliver, Holder, run_all

API = "/livesupport/api/v1"
POLL_TIMEOUT = 25
SETUP = 8  # retries of a set-up request


class Side:
    def __init__(self, port: int) -> None:
        self.port = port
        self.jar: dict[str, str] = {}
        self.send_conn = Connection("127.0.0.1", port)
        self.poll_conn = Connection("127.0.0.1", port)
        self.cursor = ""
        self.csrf = ""

    def headers(self) -> str:
        extra = f"X-CSRF-Token: {self.csrf}\r\n" if self.csrf else ""
        return cookie_header(self.jar) + extra

    def call(
        self, conn: Connection, method: str, path: str, body: Any = None, *, retries: int = 0
    ) -> Any:
        """One request; with ``retries``, a 503 or a dropped connection (a server under
        set-up load) is tried again after a pause."""
        data = json.dumps(body).encode() if body is not None else b""
        for attempt in range(retries + 1):
            try:
                response = conn.request(method, API + path, headers=self.headers(), body=data)
            except (OSError, HTTPError):
                if attempt == retries:
                    raise
                gevent.sleep(0.5 * (attempt + 1))
                continue
            self.jar.update(response.cookies)
            if response.status == 503 and attempt < retries:
                gevent.sleep(0.5 * (attempt + 1))
                continue
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {response.body[:200]!r}")
            return response.json() if response.body else None
        raise AssertionError("unreachable")

    def poll_path(self, kind: str, timeout: float) -> str:
        path = f"/{kind}/poll?timeout={timeout:g}"
        if self.cursor:
            path += "&cursor=" + quote(self.cursor, safe="")
        return path


class LiveSupportExchange:
    """``conversations`` conversations; ``agents`` agents share them (conversation
    ``i`` is held by agent ``i % agents``)."""

    def __init__(self, visitor_port: int, agent_port: int, conversations: int, agents: int) -> None:
        self.conversations = conversations
        self.visitor_port, self.agent_port = visitor_port, agent_port
        self.visitors = [Side(visitor_port) for _ in range(conversations)]
        self.agents = [Side(agent_port) for _ in range(agents)]
        # Each conversation's agent side sends on its own connection, with its agent's cookies.
        self.agent_send = [Connection("127.0.0.1", agent_port) for _ in range(conversations)]
        self.cids: list[str] = [""] * conversations
        self.by_cid: dict[str, int] = {}
        self.pollers: list[gevent.Greenlet] = []
        self.n = 0

    def agent_of(self, conversation: int) -> Side:
        return self.agents[conversation % len(self.agents)]

    def setup(self) -> None:
        def open_visitor(i: int) -> None:
            visitor = self.visitors[i]
            visitor.call(
                visitor.send_conn, "POST", "/visitor/session", {"name": f"V{i}"}, retries=SETUP
            )
            sent = visitor.call(
                visitor.send_conn,
                "POST",
                "/visitor/messages",
                {"client_msg_id": f"hello-{i}", "body": "hello"},
                retries=SETUP,
            )
            self.cids[i] = sent["message"]["conversation_id"]
            self.by_cid[self.cids[i]] = i

        def login(a: int) -> None:
            agent = self.agents[a]
            answer = agent.call(
                agent.send_conn,
                "POST",
                "/agent/login",
                {"email": agent_email(a), "password": AGENT_PASSWORD},
                retries=SETUP,
            )
            agent.csrf = answer["csrf_token"]

        def claim(i: int) -> None:
            agent = self.agent_of(i)
            path = f"/agent/conversations/{self.cids[i]}/claim"
            agent.call(self.agent_send[i], "POST", path, retries=SETUP)

        def first_visitor_poll(i: int) -> None:
            visitor = self.visitors[i]
            while True:
                path = visitor.poll_path("visitor", 1)
                page = visitor.call(visitor.poll_conn, "GET", path, retries=SETUP)
                visitor.cursor = page["cursor"]
                if not page["more"]:
                    return

        def first_agent_poll(a: int) -> None:
            agent = self.agents[a]
            page = agent.call(agent.poll_conn, "GET", agent.poll_path("agent", 1), retries=SETUP)
            agent.cursor = page["cursor"]

        run_all([lambda i=i: open_visitor(i) for i in range(self.conversations)], 50)
        run_all([lambda a=a: login(a) for a in range(len(self.agents))])
        run_all([lambda i=i: claim(i) for i in range(self.conversations)])
        run_all([lambda i=i: first_visitor_poll(i) for i in range(self.conversations)], 500)
        run_all([lambda a=a: first_agent_poll(a) for a in range(len(self.agents))], 1000)

    def start(self, deliver: Deliver) -> None:
        def poller(side: Side, kind: str) -> None:
            other = "a" if kind == "visitor" else "v"
            while True:
                path = side.poll_path(kind, POLL_TIMEOUT)
                try:
                    page = side.call(side.poll_conn, "GET", path)
                except Exception:
                    gevent.sleep(0.5)
                    continue
                at = time.monotonic()
                side.cursor = page["cursor"]
                for event in page["events"]:
                    if event["type"] != "message":
                        continue
                    message_id = event["data"]["client_msg_id"] or ""
                    # Only what the other side sent: the sender's own echo is not a delivery.
                    if message_id.split("-", 1)[-1].startswith(other):
                        deliver(message_id, at)

        self.pollers = [gevent.spawn(poller, v, "visitor") for v in self.visitors]
        self.pollers += [gevent.spawn(poller, a, "agent") for a in self.agents]

    def send(self, conversation: int, side: str, message_id: str) -> None:
        body = {"client_msg_id": message_id, "body": f"message {message_id}"}
        if side == "visitor":
            visitor = self.visitors[conversation]
            visitor.call(visitor.send_conn, "POST", "/visitor/messages", body)
        else:
            agent = self.agent_of(conversation)
            path = f"/agent/conversations/{self.cids[conversation]}/messages"
            agent.call(self.agent_send[conversation], "POST", path, body)

    def stop(self) -> None:
        gevent.killall(self.pollers)
        for side in [*self.visitors, *self.agents]:
            side.send_conn.close()
            side.poll_conn.close()
        for conn in self.agent_send:
            conn.close()


def capacity(port: int, count: int, timeout: float) -> tuple[float, list[Holder]]:
    """``count`` visitors with a session each (the seconds that took), and for each a
    function that holds one poll until its timeout and says if the answer was right."""
    visitors = [Side(port) for _ in range(count)]

    def session(i: int) -> None:
        visitor = visitors[i]
        visitor.call(visitor.send_conn, "POST", "/visitor/session", {}, retries=SETUP)
        visitor.send_conn.close()

    began = time.monotonic()
    run_all([lambda i=i: session(i) for i in range(count)], 50)
    sessions_s = time.monotonic() - began

    def holder(visitor: Side) -> Holder:
        def hold(opened: Callable[[], None]) -> bool:
            conn = visitor.poll_conn
            conn.write(
                "GET", API + visitor.poll_path("visitor", timeout), headers=visitor.headers()
            )
            opened()
            response = conn.read()
            conn.close()
            if response.status != 200:
                return False
            page = response.json()
            return page.get("events") == [] and bool(page.get("cursor")) and page["more"] is False

        return hold

    return sessions_s, [holder(v) for v in visitors]
