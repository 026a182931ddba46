"""PostgreSQL really stopped for 10 s under nodes serving visitors and an agent.

Not a proxy cut (``tests/cluster/test_store_outage.py`` does that) but the
server itself crashed with ``pg_ctl stop -m immediate`` (no checkpoint, as a
killed or powered-off database), left down for 10 s, then started again
(crash recovery replays its WAL). It is a PostgreSQL of the test's own: the
machine's one serves every other test.

Two ``livesupport serve`` nodes go through the same crash, each a deployment
of its own with its own database on that server: one with the in-process
bus, one with the PostgreSQL bus (whose LISTEN connection dies with the
server). On each, visitors and an agent send without pause, each retrying
what was not acknowledged with the same ``client_msg_id``, and poll all along.

What must hold, on both:

- while the server is down, every answer is a 503 ``unavailable`` with
  ``Retry-After``, or a poll's 200 (a visitor's from the node's memory, or a
  poll parked before the crash that ends at its timeout with nothing new);
  never a 500, never no answer, and no send is acknowledged: nothing can be
  committed;
- every acknowledged send is in the store afterwards, exactly once, and the
  store holds nothing that was not acknowledged (a retried send whose first
  attempt committed is answered ``200`` with that first message);
- afterwards the node serves fully by itself: sends are acknowledged again
  within seconds, and every message reaches the other side's polls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from livesupport.passwords import hash_password
from livesupport.store import open_store
from tests.cluster.cluster import EMAIL, PASSWORD, wait_for
from tests.live import LiveServer

from .servers import PrivatePostgres
from .stored import assert_nothing_lost, check_store
from .traffic import UNLIMITED, Load

pytestmark = [pytest.mark.live, pytest.mark.slow]

OUTAGE = 10.0  # seconds the server stays down
BUSES = ("local", "postgresql")


@pytest.fixture
def database() -> Iterator[PrivatePostgres]:
    """The server, with a database for each node holding the agent ``EMAIL``."""
    server = PrivatePostgres()
    try:
        for bus in BUSES:
            store = open_store(server.create_database(bus))
            store.create_agent(EMAIL, "Desk", "agent", hash_password(PASSWORD))
            store.dispose()
        yield server
    finally:
        server.close()


def health(node: LiveServer) -> requests.Response:
    return requests.get(node.url + "/livesupport/healthz", timeout=10)


def test_postgres_stopped_for_ten_seconds(database: PrivatePostgres, tmp_path: Path):
    nodes: dict[str, LiveServer] = {}
    loads: dict[str, Load] = {}
    delivered_in: dict[str, float] = {}
    healthy: dict[str, float] = {}  # seconds from the restart to /healthz answering 200
    try:
        for bus in BUSES:
            url = database.url(database=bus)
            nodes[bus] = LiveServer(tmp_path, url, node_id=f"{bus}-1", env=UNLIMITED, wait=False,
                                    bus=url if bus == "postgresql" else None)  # fmt: skip
        for bus, node in nodes.items():
            node.wait_ready()
            loads[bus] = Load(node.api, node.api, EMAIL, PASSWORD, visitors=6, messages=None,
                              interval=0.05)  # fmt: skip
        for load in loads.values():
            load.wait_acked(100)

        stopped = database.stop("immediate")
        for node in nodes.values():
            down = health(node)
            assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0, down.text
            assert down.json()["store"].startswith("unavailable"), down.text
        # The outage itself: what is measured happens in the clients' threads meanwhile.
        time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
        restarting = time.monotonic()  # it may accept connections before pg_ctl returns
        database.start()
        restarted = time.monotonic()

        for load in loads.values():
            load.wait_recovered(restarted)
        for bus, node in nodes.items():  # the store at once; a bus within its back-off
            wait_for(node.url + "/livesupport/healthz", within=20)
            healthy[bus] = time.monotonic() - restarted
        for bus, load in loads.items():
            load.stop_sending()
            delivered_in[bus] = load.wait_delivered(within=30)
    finally:
        for load in loads.values():
            load.halt()
        for node in nodes.values():
            node.stop()  # answers the parked polls at once
        for load in loads.values():
            load.close()

    for bus, load in loads.items():
        check = check_store(database.url(database=bus), load.acked)
        print(f"\npostgres stopped {OUTAGE:.0f} s, {bus} bus: "
              f"{figures(load, stopped, restarting, restarted)}, healthz 200 again by "
              f"{healthy[bus]:.2f} s after the restart, {check.stored} messages stored, all "
              f"delivered {delivered_in[bus]:.2f} s after the last send")  # fmt: skip
    for bus, load in loads.items():
        tally = load.tally
        assert not tally.crashes, (bus, tally.crashes)
        assert not tally.bad, (bus, tally.bad[:5])
        assert not tally.unexpected, (bus, tally.unexpected[:5])
        assert not tally.no_answer, (bus, tally.no_answer[:5])
        # Requests sent while the server was down, answered before it was started again.
        during = tally.answers_between(stopped, restarting)
        assert any(a.status == 503 for a in during), f"{bus}: the outage went unseen"
        others = [a for a in during if a.status != 503]
        assert all(a.route.endswith("/poll") and a.status == 200 for a in others), [
            a for a in others if not a.route.endswith("/poll") or a.status != 200
        ]
        assert tally.acked_between(stopped, restarting) == [], f"{bus}: acked, no database"
        assert_nothing_lost(load, check_store(database.url(database=bus), load.acked))
        assert recovery(load, restarted) < 10
        assert load.delivered_again() == 0


def recovery(load: Load, restarted: float) -> float:
    """Seconds from the restart to the last sender's first acknowledgement."""
    return max(load.tally.recovery(restarted, [v.name for v in load.visitors] + ["desk"]).values())


def figures(load: Load, stopped: float, restarting: float, restarted: float) -> str:
    tally = load.tally
    during = tally.answers_between(stopped, restarting)
    polls = sum(1 for a in during if a.status != 503)
    repeats = sum(1 for a in tally.acks if a.status == 200)
    return (f"{tally.statuses[503]} 503s ({len(during)} answers during the outage, {polls} of "
            f"them polls answered 200), {tally.retries} retries, {repeats} sends acknowledged "
            f"as repeats (200), recovery after the restart max "
            f"{recovery(load, restarted):.2f} s; statuses {dict(tally.statuses)}")  # fmt: skip
