"""A 30-second network partition between the visitor cluster and the agent cluster.

The two sides run in network namespaces of their own (``netns.py``): the
visitor node in one, the agent node in the other, with PostgreSQL and Redis
(servers of the test's own) on the agent side, the protected network, as
the README's several-node picture has it. One link joins them; the test takes
it down for 30 s with ``ip link set ... down``, then up again. The clients
(visitors' browsers, the agent's console) reach their node on links of their
own, which stay up.

What the partition cuts, so what each side can do meanwhile:

- the visitor side loses both the store and the bus: the connections it
  had hang (packets go nowhere), new ones fail. It must answer 503 with
  ``Retry-After`` to whatever needs the store, within the client's patience
  (:data:`~tests.reliability.traffic.REQUEST_TIMEOUT`), or answer a poll from
  memory; never a 500, never no answer at all;
- the agent side keeps both: its sends are acknowledged all along and its
  polls keep reading the store.

Visitors and the agent send without pause, retrying with the same
``client_msg_id`` until acknowledged. After healing, the visitor side must
serve again by itself; every acknowledged message is stored once, nothing
unacknowledged is stored, and every message reaches the other side's polls:
the agent's replies sent during the partition included, although their
notices were published while the visitor node could not hear them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from livesupport.passwords import hash_password
from livesupport.store import open_store
from tests.cluster.cluster import EMAIL, PASSWORD, wait_for

from .netns import NamespacedNode, Network, require_netns
from .servers import NamespacedRedis, PrivatePostgres
from .stored import assert_nothing_lost, check_store
from .traffic import REQUEST_TIMEOUT, UNLIMITED, Load

pytestmark = [pytest.mark.live, pytest.mark.slow]

PARTITION = 30.0  # seconds


@dataclass
class Partitioned:
    network: Network
    database: PrivatePostgres
    web: NamespacedNode
    desk: NamespacedNode


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[Partitioned]:
    require_netns()
    network = Network()
    database: PrivatePostgres | None = None
    redis: NamespacedRedis | None = None
    nodes: list[NamespacedNode] = []
    try:
        database = PrivatePostgres(netns=network.desk, listen="*", port=5432)
        redis = NamespacedRedis(network.desk, tmp_path)
        redis.wait_ready(network.desk_address)
        store = open_store(database.url(network.desk_address))
        store.create_agent(EMAIL, "Desk", "agent", hash_password(PASSWORD))
        store.dispose()
        uplink = network.desk_uplink
        (tmp_path / "web").mkdir()
        (tmp_path / "desk").mkdir()
        nodes.append(NamespacedNode(network.web, network.web_address, tmp_path / "web",
                                    database.url(uplink), node_id="web-1", role="visitor",
                                    bus=redis.url(uplink), env=UNLIMITED))  # fmt: skip
        nodes.append(NamespacedNode(network.desk, network.desk_address, tmp_path / "desk",
                                    database.url(), node_id="desk-1", role="agent",
                                    bus=redis.url("127.0.0.1"), env=UNLIMITED))  # fmt: skip
        for node in nodes:
            node.wait_ready()
        yield Partitioned(network, database, *nodes)
    finally:
        for node in nodes:
            node.stop()
        if redis is not None:
            redis.close()
        if database is not None:
            database.close()
        network.close()


def health(node: NamespacedNode) -> int | str:
    """The status of the node's /healthz, or what came instead of an answer."""
    try:
        answer = requests.get(node.url + "/livesupport/healthz", timeout=REQUEST_TIMEOUT)
    except requests.RequestException as error:
        return type(error).__name__
    return answer.status_code


def test_a_30_second_partition(partitioned: Partitioned):
    network, web, desk = partitioned.network, partitioned.web, partitioned.desk
    load = Load(web.api, desk.api, EMAIL, PASSWORD, visitors=8, messages=None, interval=0.1)
    try:
        load.wait_acked(100)
        network.cut()
        cut = time.monotonic()
        # The outage itself: what is measured happens in the clients' threads meanwhile.
        time.sleep(PARTITION / 2)
        desk_health, web_health = health(desk), health(web)  # the web one may hang
        time.sleep(max(0.0, cut + PARTITION - time.monotonic()))
        network.heal()
        healed = time.monotonic()
        load.wait_recovered(healed)
        load.stop_sending()
        delivered_in = load.wait_delivered(within=60)
        wait_for(web.url + "/livesupport/healthz", within=20)  # its bus within its back-off
        healthy = time.monotonic() - healed
    finally:
        load.halt()
        web.stop()
        desk.stop()
        load.close()
    tally = load.tally
    # Requests sent during the partition and answered before it healed.
    during = tally.answers_between(cut, healed)
    web_side = [a for a in during if "/visitor/" in a.route]
    desk_side = [a for a in during if "/agent/" in a.route]
    desk_acks = [a for a in tally.acked_between(cut, healed) if a.who == "desk"]
    unanswered = Counter(what.split()[2].split("/")[1] for _, what in tally.no_answer)
    recovery = max(tally.recovery(healed, [v.name for v in load.visitors]).values())
    check = check_store(partitioned.database.url(network.desk_address), load.acked)
    print(f"\npartition {PARTITION:.0f} s: {check.stored} messages stored, "
          f"{tally.statuses[503]} 503s, {len(desk_acks)} agent sends acknowledged during "
          f"the partition, {tally.retries} retries, unanswered within {REQUEST_TIMEOUT:.0f} s "
          f"{dict(unanswered)}, visitor recovery after healing max {recovery:.2f} s, all "
          f"delivered {delivered_in:.2f} s after the last send; statuses {dict(tally.statuses)}"
          f"\nhealthz during the partition: web {web_health}, desk {desk_health}; web 200 "
          f"again by {healthy:.2f} s after healing"
          f"\nvisitor side from the cut: {tally.timeline(cut, 5, 'visitor')}"
          f"\nagent side from the cut: {tally.timeline(cut, 5, 'agent')}")  # fmt: skip

    assert not tally.crashes, tally.crashes
    assert not tally.bad, tally.bad[:5]
    assert not tally.unexpected, tally.unexpected[:5]
    assert not tally.no_answer, (
        f"requests left unanswered for {REQUEST_TIMEOUT:.0f} s, by side: {dict(unanswered)}"
    )
    assert (web_health, desk_health) == (503, 200)
    # The visitor side said it could not serve, or answered polls from memory.
    assert any(a.status == 503 for a in web_side), "the visitor side saw no outage"
    assert all(a.status == 503 or (a.route.endswith("/poll") and a.status == 200)
               for a in web_side), web_side  # fmt: skip
    # The agent side kept serving from the store: never a 503, replies acknowledged throughout.
    assert all(a.status in (200, 201) for a in desk_side), desk_side
    assert len(desk_acks) >= PARTITION, f"{len(desk_acks)} agent sends during the partition"

    assert_nothing_lost(load, check)
    assert recovery < 10
    assert load.delivered_again() == 0
