"""One visitor's first messages, sent 100 at once across two nodes, open exactly one
conversation: the database decides, not a lock held by one process.

Two real ``livesupport serve`` nodes share one PostgreSQL store and the
PostgreSQL bus. One visitor session (the same cookies) sends 100 messages
with distinct ``client_msg_id`` values, half to each node directly (no
balancer), every connection open beforehand and every request released by
one event, so both nodes try to open the visitor's conversation at the same
moment. Each node batches its own sends into shared transactions, so the
two nodes' attempts meet only in the database. Then:

- all 100 answers are ``201`` (no 5xx, no 409, no 429);
- the store holds exactly one conversation for the visitor, with the 100
  messages at seqs 1..100, each once, each at the id and seq its answer gave;
- the store itself refuses a second open conversation for the visitor (the
  partial unique index), so the outcome does not rest on the nodes' care.

Several nodes share a PostgreSQL store (README, "Several nodes"); a shared
SQLite file is the single-node store, so there is no SQLite variant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from livesupport.store import open_store
from tests.live import LiveServer
from tests.proxy import GeventThread
from tests.services import POSTGRES, drop_postgres, postgres_url, require_postgres, unique_name

from .http1 import HttpClient

pytestmark = [pytest.mark.live, pytest.mark.postgres]

API = "/livesupport/api/v1"
SENDS = 100
NODE_ENV = {"LIVESUPPORT_MESSAGES_PER_MINUTE": "1000"}  # 100 at once is the point, not abuse


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[str, list[LiveServer]]]:
    """Two nodes on one new PostgreSQL schema and one bus namespace; the store URL."""
    require_postgres()
    store = postgres_url()
    bus = f"{POSTGRES}?channel_prefix={unique_name('race')}:"
    started: list[LiveServer] = []
    try:
        open_store(store).dispose()  # the schema, before both nodes start at once
        for node_id in ("web-1", "web-2"):
            started.append(LiveServer(tmp_path, store, node_id=node_id, bus=bus, env=NODE_ENV,
                                      wait=False))  # fmt: skip
        for node in started:
            node.wait_ready()
        yield store, started
    finally:
        for node in started:
            node.stop()
        drop_postgres(store)


def race(ports: list[int]) -> tuple[str, list[tuple[str, int, Any]], float]:
    """Open one visitor session, then send its first messages all at once, spread over
    ``ports`` (runs on the hub): the visitor's id, ``(client_msg_id, status, answer)``
    for every send, and the seconds from release to the last answer."""
    first = HttpClient("127.0.0.1", ports[0])
    session = first.request("POST", f"{API}/visitor/session", {"name": "Racer"})
    assert session.status == 200, session.body
    first.close()
    go = gevent.event.Event()
    clients = [HttpClient("127.0.0.1", ports[n % len(ports)], cookies=dict(first.cookies))
               for n in range(SENDS)]  # fmt: skip
    for client in clients:
        client.connect()  # so that the release sends at once, with no handshake in between

    parked, all_parked = [0], gevent.event.Event()

    def send(n: int, client: HttpClient) -> tuple[str, int, Any]:
        cmid = f"first-{n}"
        parked[0] += 1
        if parked[0] == SENDS:
            all_parked.set()
        go.wait()
        answer = client.request("POST", f"{API}/visitor/messages",
                                {"client_msg_id": cmid, "body": f"hello {n}"})  # fmt: skip
        client.close()
        return cmid, answer.status, answer.json()

    jobs = [gevent.spawn(send, n, client) for n, client in enumerate(clients)]
    all_parked.wait()
    released = time.monotonic()
    go.set()
    gevent.joinall(jobs, raise_error=True)
    return session.json()["visitor_id"], [job.value for job in jobs], time.monotonic() - released


def test_100_concurrent_first_messages_across_two_nodes_open_one_conversation(nodes):
    store_url, servers = nodes
    hub = GeventThread("first-message-race")
    try:
        visitor_id, answers, seconds = hub.call(race, [s.port for s in servers], timeout=120)
    finally:
        hub.close()

    statuses = [status for _, status, _ in answers]
    assert statuses == [201] * SENDS, [(c, s, a) for c, s, a in answers if s != 201][:5]
    messages = {cmid: answer["message"] for cmid, _, answer in answers}
    assert len({m["conversation_id"] for m in messages.values()}) == 1

    store = open_store(store_url)
    engine = store.engine  # type: ignore[attr-defined]
    try:
        with engine.connect() as c:
            opened = c.execute(text("SELECT id, node_id FROM conversations WHERE visitor_id = :v"),
                               {"v": visitor_id}).all()  # fmt: skip
            assert len(opened) == 1, opened
            cid, winner = opened[0]
            rows = c.execute(text(
                "SELECT id, seq, type, client_msg_id FROM events"
                " WHERE conversation_id = :c ORDER BY seq"), {"c": cid}).all()  # fmt: skip
            everything = c.execute(text("SELECT COUNT(*) FROM events")).scalar_one()
        assert [r.seq for r in rows] == list(range(1, SENDS + 1))
        assert everything == SENDS  # no message went to another conversation
        assert {r.type for r in rows} == {"message"}
        assert {r.client_msg_id: (r.id, r.seq) for r in rows} == {
            cmid: (m["id"], m["seq"]) for cmid, m in messages.items()
        }
        assert all(m["conversation_id"] == cid for m in messages.values())

        # The guarantee is the database's: a second open conversation is refused there.
        with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as c:
            c.execute(text(
                "INSERT INTO conversations (id, visitor_id, status, agent_id, created_at,"
                " updated_at, last_seq, node_id, pos) SELECT 'c_second', visitor_id, 'waiting',"
                " NULL, created_at, updated_at, 0, node_id, pos FROM conversations"
                " WHERE id = :c"), {"c": cid})  # fmt: skip
    finally:
        store.dispose()
    print(f"\nfirst-message race: {SENDS} sends released together over 2 nodes, all 201 in "
          f"{seconds:.2f} s; one conversation, opened by {winner}")  # fmt: skip
