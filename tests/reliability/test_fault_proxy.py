"""Messages survive a network that loses answers: a real ``livesupport serve`` node
behind a fault-injecting proxy that drops 20% of the answers (and cuts, delays and
resets a few more), with visitors and agents that behave as the widget and the
console do.

A client whose answer is lost cannot know whether its request took effect. The
widget and the console retry a send with the same ``client_msg_id`` until it is
answered (``201``, or ``200`` when the first attempt was stored after all) and
re-poll with the last cursor they received; the protocol promises that this
stores every message exactly once and shows every durable event exactly once
and in order (clients drop what they already have by ``seq``). Here visitors
and agents chat in ping-pong (each message waits for the one before it to be
shown on the other side), every request crossing the proxy, then:

- every acknowledged message is in the store exactly once, with the id and
  ``seq`` of its acknowledgement, and nothing else is;
- no two rows share an author's ``client_msg_id``; each visitor has one
  conversation;
- each visitor and each agent showed every event of its conversation, the
  store's own, each once, in ``seq`` order, with no gap;
- no answer was a 5xx (or anything but the expected status).

The default run sends 10,000 messages on SQLite (35-75 s here, depending on the
machine's other load) and 1,000 on PostgreSQL, whose 10,000 take two to three
minutes (marked ``slow``). The figures (faults, retries, repeats, wall
time, throughput) are printed: ``-s`` or ``-rP`` shows them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gevent
import gevent.event
import pytest
from sqlalchemy import text

from livesupport.passwords import hash_password
from livesupport.store import open_store
from tests.live import LiveServer
from tests.proxy import GeventThread
from tests.services import postgres_schema, require_postgres

from .faultproxy import FaultProxy, Faults
from .http1 import HttpClient, Message

pytestmark = pytest.mark.live

API = "/livesupport/api/v1"
PASSWORD = "a desk password for the fault test"
FAULTS = Faults(drop=0.20, cut=0.02, reset=0.02, delay=0.05, delay_s=0.02, seed=20260527)
POLL = 5  # seconds a parked poll waits
WITHIN = 60.0  # seconds any one step may take before the run counts as stuck
MAX_ATTEMPTS = 40  # a request failing this often in a row (0.24**40) is a bug, not bad luck
# Every client comes from 127.0.0.1 and chats faster than any person: lift the abuse limits.
NODE_ENV = {
    f"LIVESUPPORT_{name}": "1000000"
    for name in ("MESSAGES_PER_MINUTE", "NEW_VISITORS_PER_IP", "NEW_CONVERSATIONS_PER_IP")
}


@dataclass(frozen=True)
class Plan:
    conversations: int
    exchanges: int  # per conversation: one visitor message and one agent reply each
    agents: int

    @property
    def messages(self) -> int:
        return self.conversations * self.exchanges * 2


SHORT = Plan(conversations=50, exchanges=10, agents=10)  # 1,000 messages
FULL = Plan(conversations=50, exchanges=100, agents=10)  # 10,000 messages


def expected_log(k: int, exchanges: int) -> list[tuple[str, str | None]]:
    """Conversation ``k`` in the store, by seq: ``(type, client_msg_id)``. The ping-pong
    fixes the order; the agent's first reply claims the conversation first."""
    log: list[tuple[str, str | None]] = []
    for i in range(exchanges):
        log.append(("message", f"v{k}-{i}"))
        if i == 0:
            log.append(("agent_joined", None))
        log.append(("message", f"a{k}-{i}"))
    return log


# -- what a client shows -------------------------------------------------------------


@dataclass
class Transcript:
    """What one client shows of one conversation: each durable event once, by seq."""

    events: list[dict[str, Any]] = field(default_factory=list)
    redelivered: int = 0
    errors: list[str] = field(default_factory=list)
    _waiting: dict[str, gevent.event.AsyncResult] = field(default_factory=dict)
    _shown: set[str] = field(default_factory=set)

    def show(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        if seq is None:  # ephemeral events and agent notices are outside the sequence
            return
        if seq <= len(self.events):
            self.redelivered += 1  # the widget's rule: drop what it has, by seq
            if event != self.events[seq - 1]:
                self.errors.append(f"seq {seq} came as two events: {event} {self.events[seq - 1]}")
            return
        if seq != len(self.events) + 1:
            self.errors.append(f"seq {seq} after {len(self.events)}: a gap")
            for waiter in self._waiting.values():  # what they wait for may be in the gap
                waiter.set_exception(AssertionError(self.errors[-1]))
            self._waiting.clear()
        self.events.append(event)
        if event["type"] == "message":
            cmid = event["data"]["client_msg_id"]
            self._shown.add(cmid)
            waiter = self._waiting.pop(cmid, None)
            if waiter is not None:
                waiter.set(seq)

    def wait_for(self, cmid: str) -> None:
        """Return once the message ``cmid`` is shown; fail after a gap or ``WITHIN`` s."""
        if cmid in self._shown:
            return
        assert not self.errors, self.errors[:3]
        waiter = self._waiting.setdefault(cmid, gevent.event.AsyncResult())
        try:
            waiter.get(timeout=WITHIN)
        except gevent.Timeout:
            raise AssertionError(
                f"{cmid} not shown within {WITHIN} s (shown up to seq {len(self.events)})"
            ) from None

    def messages(self) -> int:
        return len(self._shown)

    def log(self) -> list[tuple[int, str, str | None]]:
        return [(e["seq"], e["type"], (e["data"] or {}).get("client_msg_id")) for e in self.events]


# -- clients that retry as the widget and the console do --------------------------------


class Person:
    """A browser (or console) with its cookies and a tally of its requests."""

    def __init__(self, address: tuple[str, int], tally: Counter[str]) -> None:
        self.address = address
        self.cookies: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        self.tally = tally
        self.connections: list[HttpClient] = []
        self.acknowledged: dict[str, dict[str, Any]] = {}  # its sends' answers, by client_msg_id

    def connection(self) -> HttpClient:
        """Another connection of the same browser: its cookies, its headers."""
        client = HttpClient(*self.address, cookies=self.cookies, timeout=POLL + 15)
        client.headers = self.headers
        self.connections.append(client)
        return client

    def close(self) -> None:
        for client in self.connections:
            client.close()

    def answered(self, client: HttpClient, kind: str, method: str, path: str,
                 body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Message:  # fmt: skip
        """The answer to the request, repeated as is until one comes: a lost answer says
        nothing of whether the request took effect. Any status but ``ok`` fails."""
        for _ in range(MAX_ATTEMPTS):
            try:
                answer = client.request(method, path, body)
            except OSError:
                self.tally[f"retried {kind}"] += 1
                continue
            self.tally[f"{kind} {answer.status}"] += 1
            assert answer.status in ok, (method, path, answer.status, answer.body[:300])
            return answer
        raise AssertionError(f"{method} {path}: no answer in {MAX_ATTEMPTS} attempts")

    def poll_until(self, side: str, cursor: str | None, done: Callable[[], bool],
                   show: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
        client = self.connection()
        while not done():
            query = f"timeout={POLL}" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
            page = self.answered(client, f"{side} poll", "GET", f"{API}/{side}/poll?{query}",
                                 ok=(200,)).json()  # fmt: skip
            cursor = page["cursor"]
            for event in page["events"]:
                show(event)


class Visitor(Person):
    def __init__(self, k: int, address: tuple[str, int], tally: Counter[str]) -> None:
        super().__init__(address, tally)
        self.k = k
        self.transcript = Transcript()
        self.visitor_id = ""

    def chat(self, exchanges: int, conversation: gevent.event.AsyncResult) -> None:
        """Open a session, then send a message and wait for the agent's reply, ``exchanges``
        times; every event is shown by a long-poll running alongside."""
        sender = self.connection()
        # A lost session answer leaves no cookie: the retry makes a new visitor, as a
        # browser's would; the one that got through is never used again.
        session = self.answered(sender, "visitor session", "POST", f"{API}/visitor/session",
                                {"name": f"Visitor {self.k}"}).json()  # fmt: skip
        self.visitor_id = session["visitor_id"]
        total = 2 * exchanges
        everything = lambda: self.transcript.messages() == total  # noqa: E731
        poller = gevent.spawn(
            self.poll_until, "visitor", session["cursor"], everything, self.transcript.show
        )
        try:
            for i in range(exchanges):
                cmid = f"v{self.k}-{i}"
                body = {"client_msg_id": cmid, "body": f"visitor {self.k} says {i}"}
                answer = self.answered(sender, "visitor send", "POST", f"{API}/visitor/messages",
                                       body)  # fmt: skip
                message = answer.json()["message"]
                self.acknowledged[cmid] = message
                if i == 0:
                    conversation.set(message["conversation_id"])
                self.transcript.wait_for(f"a{self.k}-{i}")
            poller.get(timeout=WITHIN)
        finally:
            poller.kill()


class Agent(Person):
    def __init__(self, email: str, address: tuple[str, int], tally: Counter[str]) -> None:
        super().__init__(address, tally)
        self.email = email
        self.transcripts: dict[str, Transcript] = {}  # every conversation it was shown
        self.mine: dict[int, str] = {}  # conversation number -> id, as they open
        self.cursor: str | None = None

    def transcript(self, cid: str) -> Transcript:
        return self.transcripts.setdefault(cid, Transcript())

    def show(self, event: dict[str, Any]) -> None:
        self.transcript(event["conversation_id"]).show(event)

    def sign_in(self) -> None:
        """Log in, then take a cursor: an agent's poll without one starts from now."""
        client = self.connection()
        login = self.answered(client, "agent login", "POST", f"{API}/agent/login",
                              {"email": self.email, "password": PASSWORD}).json()  # fmt: skip
        self.headers["X-CSRF-Token"] = login["csrf_token"]
        page = self.answered(client, "agent poll", "GET", f"{API}/agent/poll?timeout=1",
                             ok=(200,)).json()  # fmt: skip
        assert page["events"] == [], page  # nobody has written yet
        self.cursor = page["cursor"]

    def watch(self, conversations: int, exchanges: int) -> None:
        def done() -> bool:
            return len(self.mine) == conversations and all(
                self.transcript(cid).messages() == 2 * exchanges for cid in self.mine.values()
            )

        self.poll_until("agent", self.cursor, done, self.show)

    def answer(self, k: int, exchanges: int, conversation: gevent.event.AsyncResult) -> None:
        """Reply to each of visitor ``k``'s messages once it is shown, then wait until
        the last reply is shown too."""
        cid = conversation.get(timeout=WITHIN)
        self.mine[k] = cid
        transcript = self.transcript(cid)
        desk = self.connection()  # a console has a connection per request in flight
        for i in range(exchanges):
            transcript.wait_for(f"v{k}-{i}")
            cmid = f"a{k}-{i}"
            body = {"client_msg_id": cmid, "body": f"agent to {k}: {i}"}
            answer = self.answered(desk, "agent send", "POST",
                                   f"{API}/agent/conversations/{cid}/messages", body)  # fmt: skip
            self.acknowledged[cmid] = answer.json()["message"]
        transcript.wait_for(f"a{k}-{exchanges - 1}")


# -- the run ------------------------------------------------------------------------


@dataclass
class Run:
    plan: Plan
    visitors: list[Visitor]
    agents: list[Agent]
    conversations: list[gevent.event.AsyncResult]
    tally: Counter[str]
    seconds: float = 0.0


def chat(address: tuple[str, int], emails: list[str], plan: Plan) -> Run:
    """Everyone chats through ``address`` until every message is shown on both sides
    (runs on the hub)."""
    tally: Counter[str] = Counter()
    agents = [Agent(email, address, tally) for email in emails]
    visitors = [Visitor(k, address, tally) for k in range(plan.conversations)]
    conversations = [gevent.event.AsyncResult() for _ in visitors]
    started = time.monotonic()
    gevent.joinall([gevent.spawn(agent.sign_in) for agent in agents], raise_error=True)
    jobs = [gevent.spawn(a.watch, len(range(n, plan.conversations, plan.agents)), plan.exchanges)
            for n, a in enumerate(agents)]  # fmt: skip
    for k, visitor in enumerate(visitors):
        agent = agents[k % plan.agents]
        jobs.append(gevent.spawn(visitor.chat, plan.exchanges, conversations[k]))
        jobs.append(gevent.spawn(agent.answer, k, plan.exchanges, conversations[k]))
    try:
        gevent.joinall(jobs, raise_error=True)
    finally:
        gevent.killall(jobs)
        for person in [*agents, *visitors]:
            person.close()
    run = Run(plan, visitors, agents, conversations, tally, time.monotonic() - started)
    return run


def stored(store_url: str) -> tuple[list[Any], list[Any], list[Any]]:
    """The conversations, the events and any repeated ``client_msg_id`` of the store."""
    store = open_store(store_url)
    try:
        with store.engine.connect() as c:  # type: ignore[attr-defined]
            conversations = c.execute(text("SELECT id, visitor_id FROM conversations")).all()
            events = c.execute(text(
                "SELECT id, conversation_id, seq, type, client_msg_id FROM events"
                " ORDER BY conversation_id, seq")).all()  # fmt: skip
            repeated = c.execute(text(
                "SELECT author_kind, author_id, client_msg_id, COUNT(*) FROM events"
                " WHERE client_msg_id IS NOT NULL"
                " GROUP BY author_kind, author_id, client_msg_id"
                " HAVING COUNT(*) > 1")).all()  # fmt: skip
    finally:
        store.dispose()
    return conversations, events, repeated


def check(run: Run, store_url: str) -> None:
    plan = run.plan
    conversations, events, repeated = stored(store_url)
    assert repeated == []
    cids = [result.get() for result in run.conversations]
    assert len(set(cids)) == plan.conversations
    opened = Counter(visitor_id for _, visitor_id in conversations)
    assert [opened[v.visitor_id] for v in run.visitors] == [1] * plan.conversations
    assert len(conversations) == plan.conversations  # abandoned sessions opened none
    by_conversation: dict[str, list[Any]] = {}
    for row in events:
        by_conversation.setdefault(row.conversation_id, []).append(row)
    assert sorted(by_conversation) == sorted(cids)
    assert sum(row.type == "message" for row in events) == plan.messages

    for k, (visitor, cid) in enumerate(zip(run.visitors, cids, strict=True)):
        rows = by_conversation[cid]
        assert [(r.type, r.client_msg_id) for r in rows] == expected_log(k, plan.exchanges)
        log = [(r.seq, r.type, r.client_msg_id) for r in rows]
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        agent = run.agents[k % plan.agents]
        for name, transcript in (("visitor", visitor.transcript),
                                 ("agent", agent.transcripts[cid])):  # fmt: skip
            assert transcript.errors == [], (name, k, transcript.errors[:5])
            assert transcript.log() == log, (name, k)
    # Every acknowledgement names the row that holds the message.
    stored_as = {r.client_msg_id: (r.id, r.seq) for r in events if r.type == "message"}
    acknowledged = {cmid: (m["id"], m["seq"]) for p in [*run.visitors, *run.agents]
                    for cmid, m in p.acknowledged.items()}  # fmt: skip
    assert acknowledged == stored_as


def figures(run: Run, proxy: FaultProxy, store: str) -> str:
    counts = proxy.counts()
    sends = ("POST /livesupport/api/v1/visitor/messages",
             "POST /livesupport/api/v1/agent/conversations/{id}/messages")  # fmt: skip
    polls = ("GET /livesupport/api/v1/visitor/poll", "GET /livesupport/api/v1/agent/poll")

    def of(action: str, routes: tuple[str, ...]) -> int:
        return sum(counts[f"{action} {route}"] for route in routes)

    redelivered = sum(v.transcript.redelivered for v in run.visitors) + sum(
        t.redelivered for a in run.agents for t in a.transcripts.values()
    )
    tally = run.tally
    return (
        f"{store}: {run.plan.messages} messages in {run.plan.conversations} conversations, "
        f"{run.seconds:.1f} s, {run.plan.messages / run.seconds:.0f} msgs/s; "
        f"proxy: {counts['requests']} requests, dropped {counts['drop']}, cut {counts['cut']}, "
        f"reset {counts['reset']}, delayed {counts['delay']}; sends: {of('requests', sends)} "
        f"requests, {of('drop', sends)} answers dropped, {of('cut', sends)} cut, "
        f"{of('reset', sends)} reset; polls: {of('requests', polls)} requests, "
        f"{of('drop', polls)} answers dropped, {of('cut', polls)} cut; "
        f"retries: visitor sends {tally['retried visitor send']}, agent sends "
        f"{tally['retried agent send']}, polls {tally['retried visitor poll']} + "
        f"{tally['retried agent poll']}; sends answered 200 (stored before, answer lost): "
        f"{tally['visitor send 200'] + tally['agent send 200']}; events re-delivered "
        f"and dropped by seq: {redelivered}; statuses: "
        + ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if not k.startswith("retried"))
    )


# -- fixtures and tests --------------------------------------------------------------


@pytest.fixture
def hub() -> Iterator[GeventThread]:
    """The proxy and the clients share one hub: one thread, no GIL hand-overs."""
    thread = GeventThread("fault-test")
    yield thread
    thread.close()


def agents_in(store: str, count: int) -> list[str]:
    created = open_store(store)
    password_hash = hash_password(PASSWORD)  # Argon2: once for every agent
    emails = [f"desk{n}@example.com" for n in range(count)]
    for n, email in enumerate(emails):
        created.create_agent(email, f"Desk {n}", "agent", password_hash)
    created.dispose()
    return emails


def chat_through_faults(tmp_path: Path, hub: GeventThread, store: str, plan: Plan) -> None:
    emails = agents_in(store, plan.agents)
    node = LiveServer(tmp_path, store, env=NODE_ENV)
    proxy = FaultProxy(("127.0.0.1", node.port), FAULTS, hub=hub)
    try:
        run = hub.call(chat, ("127.0.0.1", proxy.port), emails, plan, timeout=900)
        print("\n" + figures(run, proxy, store.split(":", 1)[0]))
        check(run, store)
    finally:
        proxy.close()
        node.stop()


def test_10000_messages_through_dropped_answers_sqlite(tmp_path: Path, hub: GeventThread):
    chat_through_faults(tmp_path, hub, f"sqlite:///{tmp_path / 'chat.db'}", FULL)


@pytest.mark.postgres
def test_1000_messages_through_dropped_answers_postgres(tmp_path: Path, hub: GeventThread):
    require_postgres()
    with postgres_schema() as store:
        chat_through_faults(tmp_path, hub, store, SHORT)


@pytest.mark.slow
@pytest.mark.postgres
def test_10000_messages_through_dropped_answers_postgres(tmp_path: Path, hub: GeventThread):
    require_postgres()
    with postgres_schema() as store:
        chat_through_faults(tmp_path, hub, store, FULL)
