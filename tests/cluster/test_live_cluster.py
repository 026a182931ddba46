"""A real deployment: visitor nodes behind nginx, an agent node apart, PostgreSQL, a bus.

Each test runs once with the Redis bus and once with the PostgreSQL bus.
Visitors talk to nginx only (which routes on the ``ls_node`` prefix); agents
talk to the agent node only; every message must reach the other side exactly
once, in ``seq`` order, whatever happens to a node or to the bus.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from tests.bus.conftest import kill_listener
from tests.services import (
    POSTGRES,
    REDIS,
    require_redis,
    unique_name,
)

from .cluster import (
    AGENT_NODE,
    EMAIL,
    PASSWORD,
    POLL,
    VISITOR_NODES,
    Cluster,
    Visitor,
    assert_exactly_once,
    deployment,
    exchange,
    started_conversation,
    timed,
)

pytestmark = [pytest.mark.live, pytest.mark.nginx, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module", params=[pytest.param("redis", marks=pytest.mark.redis),
                                        "postgresql"])  # fmt: skip
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:  # fmt: skip
    if request.param == "redis":
        require_redis()
    prefix = unique_name("cluster")
    bus = f"{REDIS if request.param == 'redis' else POSTGRES}?channel_prefix={prefix}:"
    with deployment(tmp_path_factory.mktemp(f"cluster-{request.param}"), bus) as running:
        running.kind, running.prefix = request.param, prefix  # type: ignore[attr-defined]
        yield running


def test_visitor_and_agent_on_different_nodes_in_both_directions(cluster: Cluster):
    visitor, agent, cid = started_conversation(cluster)
    assert visitor.node_id in VISITOR_NODES and visitor.affinity() == visitor.node_id
    conversation = agent.http.get(f"{agent.api}/agent/conversations/{cid}", timeout=10).json()
    assert conversation["conversation"]["node_id"] == visitor.node_id != AGENT_NODE

    latencies: list[tuple[float, float]] = []
    with ThreadPoolExecutor(1) as pool:
        for n in range(10):
            latencies.append(exchange(visitor, agent, cid, f"round {n}", pool))
    assert_exactly_once(visitor, cid)
    desk = [f"round {n} from the desk" for n in range(10)]
    assert [b for b in visitor.bodies() if b.endswith("from the desk")] == desk
    web = [f"round {n} from the web" for n in range(10)]
    assert [b for b in agent.bodies() if b.endswith("from the web")] == web
    to_visitor, to_agent = ([1000 * pair[i] for pair in latencies] for i in (0, 1))
    print(f"\n{cluster.kind} bus, ms: agent->visitor p50 {statistics.median(to_visitor):.1f} "
          f"max {max(to_visitor):.1f}; visitor->agent p50 {statistics.median(to_agent):.1f} "
          f"max {max(to_agent):.1f}")  # fmt: skip
    assert max(to_visitor + to_agent) < 5000, "a notice was lost: delivery waited for a timeout"


def test_the_balancer_routes_on_the_cookie_prefix(cluster: Cluster):
    newcomers = {Visitor(cluster).node_id for _ in range(6)}
    assert newcomers == set(VISITOR_NODES), "visitors without the cookie go round-robin"
    visitor = Visitor(cluster)
    for _ in range(6):
        health = visitor.http.get(cluster.lb + "/livesupport/healthz", timeout=10).json()
        assert health["node_id"] == visitor.node_id


def test_roles_are_isolated_between_the_two_clusters(cluster: Cluster):
    through_lb = requests.Session()
    for path in ("/livesupport/agent/", "/livesupport/api/v1/agent/conversations"):
        answer = through_lb.get(cluster.lb + path, timeout=10)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    login = through_lb.post(cluster.api + "/agent/login",
                            json={"email": EMAIL, "password": PASSWORD}, timeout=10)  # fmt: skip
    assert login.status_code == 404
    assert b"/livesupport/widget.js" in through_lb.get(cluster.lb + "/", timeout=10).content

    desk = cluster.nodes[AGENT_NODE].url
    session = requests.post(desk + "/livesupport/api/v1/visitor/session", json={}, timeout=10)
    assert session.status_code == 404
    assert b"widget.js" not in requests.get(desk + "/", timeout=10).content
    assert requests.get(desk + "/livesupport/agent/", timeout=10).status_code == 200


def test_a_bus_subscriber_cut_mid_conversation(cluster: Cluster):
    visitor, agent, cid = started_conversation(cluster)
    with ThreadPoolExecutor(1) as pool:
        exchange(visitor, agent, cid, "before", pool)
        assert kill_listener(cluster.kind, cluster.prefix) >= 2  # type: ignore[attr-defined]
        # Sent while the nodes reconnect (or just after): notices may be lost, not messages.
        agent.reply(cid, "during the cut")
        visitor.send("also during the cut")
        deadline = time.monotonic() + POLL
        while "during the cut" not in visitor.bodies():
            assert time.monotonic() < deadline
            visitor.poll(POLL)
        while "also during the cut" not in agent.bodies():
            assert time.monotonic() < deadline
            agent.poll(POLL)
        exchange(visitor, agent, cid, "after", pool)
    assert_exactly_once(visitor, cid)
    for node_id in (*VISITOR_NODES, AGENT_NODE):
        health = requests.get(cluster.nodes[node_id].url + "/livesupport/healthz", timeout=10)
        assert health.status_code == 200, health.text


def test_sigkill_of_the_visitors_node_mid_conversation(cluster: Cluster):
    visitor, agent, cid = started_conversation(cluster)
    doomed = visitor.node_id
    survivor = next(n for n in VISITOR_NODES if n != doomed)
    with ThreadPoolExecutor(1) as pool:
        exchange(visitor, agent, cid, "before", pool)
        visitor.poll(0)  # its own last message: the next poll parks on the doomed node
        parked: Future = pool.submit(timed(lambda: visitor.poll(POLL)))
        killed_at = time.monotonic()
        cluster.kill(doomed)
        agent.reply(cid, "while the node died")  # published to a node that is gone
        events, answered_at = parked.result(POLL + 10)
        while "while the node died" not in visitor.bodies():
            assert time.monotonic() - killed_at < POLL, "not within one poll timeout"
            events, answered_at = timed(lambda: visitor.poll(POLL))()
        failover = answered_at - killed_at
        print(f"\n{cluster.kind} bus: SIGKILL of {doomed} -> reply received via "
              f"{visitor.affinity()} after {failover * 1000:.0f} ms")  # fmt: skip
        assert failover < POLL
        exchange(visitor, agent, cid, "after", pool)
    assert visitor.affinity() == survivor
    assert_exactly_once(visitor, cid)
    bodies = [b for b in visitor.bodies() if "desk" in b or "died" in b]
    assert bodies == ["before from the desk", "while the node died", "after from the desk"]
    cluster.start_node(doomed)  # whole again for the next parameter's tests
    cluster.nodes[doomed].wait_ready()


def test_the_nodes_logged_no_error(cluster: Cluster):
    for node in cluster.nodes.values():
        output = node.output()
        assert " ERROR " not in output and "Traceback" not in output, output
