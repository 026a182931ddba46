"""Visitors and an agent that keep talking through an outage, as the widget and
the console do.

A send that is not acknowledged (a 503, a refused or cut connection, no
answer in time) is sent again with the same ``client_msg_id`` until it is; a
poll that fails is asked again with the same cursor. Every answer is tallied
(``tally.py``): statuses, 503s and their ``Retry-After``, answers that never
came, retries, when sends were acknowledged. At the end ``stored.py``
compares the store with what was acknowledged, and :meth:`Load.wait_delivered`
the polls with it.

Clients retry after :data:`RETRY_PAUSE`, sooner than ``Retry-After`` asks, so
that a recovery time is measured to within that pause rather than to 5 s.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import requests

from .tally import Tally, route_of

RETRY_PAUSE = 0.2  # seconds between attempts of one request
REQUEST_TIMEOUT = 15.0  # seconds a client waits for any answer but a parked poll's
POLL_WAIT = 2  # seconds a poll may park: short, so that stopping is quick
# For the nodes' environment: many visitors from one address, sending fast, retrying
# (retries count too); the abuse limits are tested elsewhere.
UNLIMITED = {
    "LIVESUPPORT_MESSAGES_PER_MINUTE": "1000000",
    "LIVESUPPORT_NEW_VISITORS_PER_IP": "0",  # 0: no limit
    "LIVESUPPORT_NEW_CONVERSATIONS_PER_IP": "0",
}


class Client:
    """One browser or console: a cookie jar and the retry loop.

    ``stop`` ends retrying (the test is over or gave up); :meth:`until_ok` then
    raises :class:`Stopped`.
    """

    def __init__(self, api: str, name: str, tally: Tally, stop: threading.Event) -> None:
        self.api, self.name, self.tally, self.stop = api, name, tally, stop
        self.http = requests.Session()  # shared by its sender and its poller, as tabs share
        self.cursor: str | None = None
        self.received: dict[str, dict[str, Any]] = {}  # message id -> Message, as delivered
        self.delivered_again = 0  # a message a poll with a newer cursor brought again
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, timeout: float = REQUEST_TIMEOUT,
                **kw: Any) -> tuple[requests.Response | None, float]:  # fmt: skip
        """One attempt, tallied: its answer (``None`` when none came) and when it was sent."""
        what = f"{self.name} {method} {path}"
        asked = time.monotonic()
        try:
            response = self.http.request(method, self.api + path, timeout=timeout, **kw)
        except requests.RequestException as error:
            self.tally.failed(what, error, asked)
            return None, asked
        self.tally.answer(what, route_of(method, path), asked, response)
        return response, asked

    def until_ok(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any
                 ) -> tuple[requests.Response, float]:  # fmt: skip
        """Repeat the same request until it answers one of ``ok`` (or ``stop`` is set):
        that answer, and when the attempt that got it was sent."""
        first = True
        while True:
            if self.stop.is_set():
                raise Stopped(f"{self.name} {method} {path}")
            if not first:
                self.tally.retried()
            first = False
            response, asked = self.request(method, path, **kw)
            if response is not None and response.status_code in ok:
                return response, asked
            if response is not None and 400 <= response.status_code < 500:
                raise AssertionError(f"{self.name} {method} {path}: {response.status_code} "
                                     f"{response.text[:300]}")  # fmt: skip
            self.stop.wait(RETRY_PAUSE)

    def send(self, path: str, cmid: str, body: str) -> dict[str, Any]:
        """Send until acknowledged: the Message stored (``201``, or ``200`` on a repeat)."""
        response, asked = self.until_ok("POST", path, (200, 201),
                                        json={"client_msg_id": cmid, "body": body})  # fmt: skip
        self.tally.acked(self.name, response.status_code, asked)
        return dict(response.json()["message"])

    def poll(self, side: str, wait: int = POLL_WAIT) -> None:
        """One poll from the current cursor; its messages kept, the cursor advanced."""
        params: dict[str, Any] = {"timeout": wait}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        response, _ = self.request("GET", f"/{side}/poll", params=params,
                                   timeout=POLL_WAIT + REQUEST_TIMEOUT)  # fmt: skip
        if response is None or response.status_code != 200:
            self.stop.wait(RETRY_PAUSE)
            return
        page = response.json()
        with self._lock:
            for event in page["events"]:
                if event["type"] == "message":
                    message = event["data"]
                    if message["id"] in self.received:
                        self.delivered_again += 1
                    self.received[message["id"]] = message
            self.cursor = page["cursor"]

    def received_ids(self) -> set[str]:
        with self._lock:
            return set(self.received)


class Stopped(Exception):
    """The test ended while a request was still being retried."""


class Visitor(Client):
    def open(self) -> None:
        self.until_ok("POST", "/visitor/session", json={"name": self.name})

    def say(self, n: int) -> dict[str, Any]:
        return self.send("/visitor/messages", f"{self.name}-{n}", f"{self.name} says {n}")


class Agent(Client):
    def login(self, email: str, password: str) -> None:
        answer, _ = self.until_ok("POST", "/agent/login",
                                  json={"email": email, "password": password})  # fmt: skip
        self.http.headers["X-CSRF-Token"] = answer.json()["csrf_token"]

    def reply(self, cid: str, n: int) -> dict[str, Any]:
        return self.send(f"/agent/conversations/{cid}/messages", f"{cid}-r{n}",
                         f"{self.name} answers {cid} #{n}")  # fmt: skip


class Load:
    """Visitors each sending on a conversation of their own and polling; one agent
    (signed in once, its console's polls and its replies sharing the session)
    answering every conversation from ``agent_threads`` threads, and polling.

    :param visitor_api: Where visitors go (a node or a balancer).
    :param agent_api: Where the agent goes.
    :param visitors: How many visitors.
    :param messages: Messages each visitor sends and the agent sends to each
        conversation; ``None``: until :meth:`stop_sending`.
    :param interval: Seconds between one sender's messages.
    """

    def __init__(self, visitor_api: str, agent_api: str, email: str, password: str, *,
                 visitors: int, messages: int | None, interval: float = 0.0,
                 agent_threads: int = 2) -> None:  # fmt: skip
        self.tally = Tally()
        self.sending = threading.Event()  # set: senders stop after their current message
        self.stopping = threading.Event()  # set: everything stops, retries included
        self.messages, self.interval = messages, interval
        self.visitors = [Visitor(visitor_api, f"v{i}", self.tally, self.stopping)
                         for i in range(visitors)]  # fmt: skip
        self.agent = Agent(agent_api, "desk", self.tally, self.stopping)
        self.acked: dict[str, dict[str, Any]] = {}  # message id -> Message, every ack
        self.acked_by: dict[str, str] = {}  # message id -> the sender's name
        self._acked_lock = threading.Lock()
        self.conversations: dict[str, str] = {}  # visitor name -> conversation id
        self._threads: list[threading.Thread] = []
        self._senders: list[threading.Thread] = []
        try:
            self._start(email, password, agent_threads)
        except BaseException:
            self.close()
            raise

    def _start(self, email: str, password: str, agent_threads: int) -> None:
        for visitor in self.visitors:
            visitor.open()
        self.agent.login(email, password)
        while self.agent.cursor is None:  # an agent's first poll starts from now: before any send
            self.agent.poll("agent", wait=1)
        for visitor in self.visitors:
            self._spawn(partial(self._poll_loop, visitor, "visitor"), sender=False)
            self._spawn(partial(self._visitor_loop, visitor), sender=True)
        self._spawn(partial(self._poll_loop, self.agent, "agent"), sender=False)
        for k in range(agent_threads):
            self._spawn(partial(self._agent_loop, self.visitors[k::agent_threads]), sender=True)

    # -- threads ------------------------------------------------------------------
    def _spawn(self, target: Callable[[], None], *, sender: bool) -> None:
        def run() -> None:
            try:
                target()
            except Stopped:
                pass
            except BaseException as error:  # reported by check(), not lost in a thread
                with self.tally.lock:
                    self.tally.crashes.append(f"{type(error).__name__}: {error}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        if sender:
            self._senders.append(thread)

    def _record(self, sender: str, message: dict[str, Any]) -> None:
        with self._acked_lock:
            self.acked[message["id"]] = message
            self.acked_by[message["id"]] = sender

    def _visitor_loop(self, visitor: Visitor) -> None:
        for n in itertools.count(1):
            if self.sending.is_set() or (self.messages is not None and n > self.messages):
                return
            message = visitor.say(n)
            self._record(visitor.name, message)
            self.conversations.setdefault(visitor.name, message["conversation_id"])
            self.sending.wait(self.interval)

    def _agent_loop(self, visitors: list[Visitor]) -> None:
        for n in itertools.count(1):
            if self.sending.is_set() or (self.messages is not None and n > self.messages):
                return
            for visitor in visitors:
                while visitor.name not in self.conversations:  # its first message opens it
                    if self.stopping.wait(0.05):
                        raise Stopped("no conversation to answer")
                self._record(self.agent.name, self.agent.reply(self.conversations[visitor.name],
                                                               n))  # fmt: skip
            self.sending.wait(self.interval)

    def _poll_loop(self, client: Client, side: str) -> None:
        while not self.stopping.is_set():
            client.poll(side)

    # -- the test's side ---------------------------------------------------------
    def wait_acked(self, count: int, within: float = 60.0) -> None:
        """Return once ``count`` sends in all were acknowledged."""
        deadline = time.monotonic() + within
        while self.tally.ack_count() < count:
            assert not self.tally.crashes, self.tally.crashes
            assert time.monotonic() < deadline, f"{self.tally.ack_count()} of {count} acked"
            time.sleep(0.02)  # other threads' progress: nothing to wait on but the count

    def wait_recovered(self, since: float, within: float = 30.0) -> None:
        """Return once every sender had a send acknowledged after ``since``."""
        senders = [v.name for v in self.visitors] + [self.agent.name]
        deadline = time.monotonic() + within
        while not all(t < float("inf") for t in self.tally.recovery(since, senders).values()):
            assert not self.tally.crashes, self.tally.crashes
            assert time.monotonic() < deadline, self.tally.recovery(since, senders)
            time.sleep(0.02)  # other threads' progress: nothing to wait on but the tally

    def stop_sending(self, within: float = 60.0) -> None:
        """Senders finish the message they are on (acknowledged) and stop."""
        self.sending.set()
        self.wait_senders(within)

    def wait_senders(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        for thread in self._senders:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self._senders)
        assert not alive, f"{alive} senders still retrying after {within} s: {self.tally.crashes}"

    def expected(self) -> dict[str, set[str]]:
        """Message ids each client must receive: a visitor everything of its conversation,
        the agent every visitor's message."""
        with self._acked_lock:
            acked = dict(self.acked)
            by = dict(self.acked_by)
        wanted: dict[str, set[str]] = {v.name: set() for v in self.visitors}
        wanted[self.agent.name] = set()
        owner = {cid: name for name, cid in self.conversations.items()}
        for mid, message in acked.items():
            wanted[owner[message["conversation_id"]]].add(mid)
            if by[mid] != self.agent.name:
                wanted[self.agent.name].add(mid)
        return wanted

    def missing(self) -> dict[str, int]:
        """How many expected messages each client has not received yet."""
        clients = {c.name: c for c in (*self.visitors, self.agent)}
        return {name: len(ids - clients[name].received_ids())
                for name, ids in self.expected().items() if ids - clients[name].received_ids()
                }  # fmt: skip

    def wait_delivered(self, within: float = 60.0) -> float:
        """Wait until every client received all it should; how long that took (s)."""
        started = time.monotonic()
        while missing := self.missing():
            assert not self.tally.crashes, self.tally.crashes
            assert time.monotonic() - started < within, f"never delivered: {missing}"
            time.sleep(0.05)  # other threads' polls: nothing to wait on but their results
        return time.monotonic() - started

    def halt(self) -> None:
        """Stop every thread at its next step (stop the servers after this, then
        :meth:`close`: a poll they answer at once need not run to its timeout)."""
        self.sending.set()
        self.stopping.set()

    def close(self) -> None:
        self.halt()
        for thread in self._threads:
            thread.join(POLL_WAIT + REQUEST_TIMEOUT + 5)  # a request in flight ends by then
        for client in (*self.visitors, self.agent):
            client.http.close()

    def delivered_again(self) -> int:
        return sum(c.delivered_again for c in (*self.visitors, self.agent))
