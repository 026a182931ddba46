"""The bus failing in the middle of 1,000 messages, through a real deployment.

Two visitor nodes behind nginx and an agent node (``tests/cluster``) on a
PostgreSQL store; 20 visitors each send 25 messages and the agent answers
each conversation 25 times (1,000 in all), as fast as the nodes take them,
everyone polling throughout. In the middle:

- the Redis bus is restarted: a ``redis-server`` of the test's own is
  stopped once 300 messages are acknowledged, stays down while at least 150
  more are, and is started again on the same port;
- the PostgreSQL bus loses its LISTEN connections: every node's listening
  backend is ended with ``pg_terminate_backend`` at 250, 500 and 750
  messages acknowledged.

Sends commit whatever the bus does, so no request may fail at all (not even
with a 503); every acknowledged message must be stored once, and each
visitor must receive every message of its conversation and the agent every
visitor's message, each exactly once, however the notices were lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.bus.conftest import kill_listener
from tests.cluster.cluster import (
    AGENT_NODE,
    EMAIL,
    PASSWORD,
    VISITOR_NODES,
    Cluster,
    deployment,
    wait_for,
)
from tests.cluster.test_redis_restart import (  # the fixture, used by name
    PrivateRedis,
    redis_and_cluster,  # noqa: F401
)
from tests.services import POSTGRES, unique_name

from .stored import assert_nothing_lost, check_store
from .traffic import UNLIMITED, Load

pytestmark = [pytest.mark.live, pytest.mark.nginx, pytest.mark.postgres, pytest.mark.slow]

VISITORS, EACH = 20, 25  # 20 x 25 from visitors, as many from the agent: 1,000 messages
NODES = (*VISITOR_NODES, AGENT_NODE)


@pytest.fixture(autouse=True)
def unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """No abuse limits on the nodes, which inherit the test's environment."""
    for name, value in UNLIMITED.items():
        monkeypatch.setenv(name, value)


def run(cluster: Cluster, disturb: Iterator[int]) -> Load:
    """The 1,000 messages; ``disturb`` yields the acknowledged counts at which it
    acts next, and acts each time it is resumed (its own progress waits included)."""
    load = Load(cluster.api, cluster.agent_api, EMAIL, PASSWORD, visitors=VISITORS,
                messages=EACH, agent_threads=4)  # fmt: skip
    try:
        for threshold in disturb:
            load.wait_acked(threshold)
        load.wait_senders()
        load.delivered_in = load.wait_delivered(within=30)  # type: ignore[attr-defined]
    finally:
        load.close()
    return load


def assert_clean(load: Load, store: str) -> str:
    tally = load.tally
    assert not tally.crashes, tally.crashes
    assert not tally.bad and not tally.unexpected, (tally.bad + tally.unexpected)[:5]
    assert not tally.no_answer, tally.no_answer[:5]
    assert tally.statuses[503] == 0 and tally.refused == 0
    check = check_store(store, load.acked)
    assert_nothing_lost(load, check)
    assert check.stored == 2 * VISITORS * EACH
    assert load.delivered_again() == 0
    return (f"{check.stored} messages stored and delivered, all delivered "
            f"{load.delivered_in:.2f} s after the last send, "  # type: ignore[attr-defined]
            f"statuses {dict(tally.statuses)}, {tally.retries} retries")  # fmt: skip


def healthz(cluster: Cluster, node_id: str) -> int:
    return requests.get(cluster.nodes[node_id].url + "/livesupport/healthz", timeout=10).status_code


@pytest.mark.redis
def test_redis_restarted_during_1000_messages(redis_and_cluster: tuple[PrivateRedis, Cluster]):  # noqa: F811
    server, cluster = redis_and_cluster
    figures: dict[str, float] = {}

    def restart() -> Iterator[int]:
        yield 300
        server.stop()
        stopped = time.monotonic()
        for node_id in NODES:
            deadline = time.monotonic() + 10
            while healthz(cluster, node_id) != 503:  # each node noticed
                assert time.monotonic() < deadline, f"{node_id} did not notice"
                time.sleep(0.05)  # another process: nothing to wait on
        yield 450  # messages keep flowing with the bus down
        figures["down"] = time.monotonic() - stopped
        server.start()
        started = time.monotonic()
        for node_id in NODES:
            wait_for(cluster.nodes[node_id].url + "/livesupport/healthz", within=20)
        figures["back"] = time.monotonic() - started

    load = run(cluster, restart())
    summary = assert_clean(load, cluster.store)
    print(f"\nredis restarted (down {figures['down']:.2f} s, every node reconnected within "
          f"{figures['back']:.2f} s): {summary}")  # fmt: skip


@pytest.fixture
def postgres_bus_cluster(tmp_path: Path) -> Iterator[tuple[str, Cluster]]:
    prefix = unique_name("listen")
    with deployment(tmp_path, f"{POSTGRES}?channel_prefix={prefix}:") as cluster:
        yield prefix, cluster


def test_listen_connections_killed_during_1000_messages(
    postgres_bus_cluster: tuple[str, Cluster],
):
    prefix, cluster = postgres_bus_cluster
    killed: list[int] = []

    def kill() -> Iterator[int]:
        for threshold in (250, 500, 750):
            yield threshold
            killed.append(kill_listener("postgresql", prefix))

    load = run(cluster, kill())
    assert killed == [len(NODES)] * 3, killed
    summary = assert_clean(load, cluster.store)
    for node_id in NODES:
        assert healthz(cluster, node_id) == 200
    print(f"\nLISTEN killed 3 times on {len(NODES)} nodes: {summary}")
