"""Redis restarted mid-conversation, for real: a private ``redis-server`` (not the
shared one) that the test stops and starts again on the same port.

While it is down every node says so on /healthz (503, ``bus`` unavailable),
sends still commit, and parked polls on both sides find the other side's
messages by reading the store every couple of seconds. When it is back the
nodes reconnect by themselves, and the conversation carries on with every
message delivered exactly once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from livesupport.delivery import OUTAGE_RECHECK
from tests.live import free_port

from .cluster import (
    AGENT_NODE,
    POLL,
    VISITOR_NODES,
    Cluster,
    arrival,
    deployment,
    exchange,
    started_conversation,
    timed,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.nginx, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.slow]  # fmt: skip


class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence, a child of the test."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            reason = "redis-server is not installed (apt-get install redis-server)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
            pytest.skip(reason)
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)  # another process: nothing to wait on but its port
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_and_cluster(tmp_path: Path) -> Iterator[tuple[PrivateRedis, Cluster]]:
    server = PrivateRedis(tmp_path)
    try:
        with deployment(tmp_path, server.url) as cluster:
            yield server, cluster
    finally:
        server.stop()


def health(cluster: Cluster, node_id: str) -> requests.Response:
    return requests.get(cluster.nodes[node_id].url + "/livesupport/healthz", timeout=10)


def test_redis_restarted_mid_conversation(redis_and_cluster: tuple[PrivateRedis, Cluster]):
    redis_server, cluster = redis_and_cluster
    visitor, agent, cid = started_conversation(cluster)
    everyone = (*VISITOR_NODES, AGENT_NODE)
    with ThreadPoolExecutor(1) as pool:
        exchange(visitor, agent, cid, "before", pool)

        redis_server.stop()
        for node_id in everyone:
            deadline = time.monotonic() + 10
            while (answer := health(cluster, node_id)).status_code != 503:
                assert time.monotonic() < deadline, f"{node_id} did not notice"
                time.sleep(0.05)  # another process: nothing to wait on
            assert answer.json()["bus"].startswith("unavailable"), answer.text
            assert answer.json()["store"] == "ok" and answer.headers["Retry-After"]

        # Both ways through the outage, within a couple of re-reads of the store.
        visitor.poll(0)
        parked: Future = pool.submit(timed(lambda: visitor.poll(POLL)))
        sent = time.monotonic()
        agent.reply(cid, "during the outage")
        assert arrival(visitor, "during the outage", parked) - sent < OUTAGE_RECHECK + 3
        agent.poll(0)
        parked = pool.submit(timed(lambda: agent.poll(POLL)))
        sent = time.monotonic()
        visitor.send("me too, during the outage")
        assert arrival(agent, "me too, during the outage", parked) - sent < OUTAGE_RECHECK + 3

        redis_server.start()
        for node_id in everyone:
            wait_for(cluster.nodes[node_id].url + "/livesupport/healthz", within=20)
        exchange(visitor, agent, cid, "after", pool)
    seqs = visitor.seqs(cid)
    assert seqs == list(range(1, len(seqs) + 1))
    desk = [b for b in visitor.bodies() if "desk" in b or "outage" in b]
    assert desk == ["before from the desk", "during the outage", "me too, during the outage",
                    "after from the desk"]  # fmt: skip
