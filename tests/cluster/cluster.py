"""A real deployment on loopback: ``livesupport serve`` nodes behind a real nginx.

Two visitor nodes (``web-1``, ``web-2``) behind nginx, configured by the
example's own generator (``examples/cluster/nginx_conf.py``, so the example is
what these tests run), and an agent node (``desk-1``) on a port of its own;
one PostgreSQL store and one bus. nginx runs in the foreground as a child of
the test with a prefix, pid file and port of its own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from livesupport.passwords import hash_password
from livesupport.store import open_store
from tests.live import LiveServer, free_port
from tests.services import drop_postgres, postgres_url, require_postgres

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster"
VISITOR_NODES = ("web-1", "web-2")
AGENT_NODE = "desk-1"
EMAIL, PASSWORD = "desk@example.com", "a desk password"  # the agent the tests create
POLL = 20  # seconds a parked poll waits in these tests: "within one poll timeout"


def nginx_binary() -> str:
    """The nginx to run; skips the test (fails it under ``CI=true``) without one."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    reason = "nginx is not installed (apt-get install nginx)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


def nginx_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nginx_conf", EXAMPLE / "nginx_conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(url: str, within: float = 20.0, status: int = 200) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if requests.get(url, timeout=2).status_code == status:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer {status} within {within} s"
        time.sleep(0.05)  # another process: nothing to wait on but its port


class Cluster:
    """The nodes (``cluster.nodes["web-1"]``), nginx (``lb``) and the agent node's URL.

    :param workdir: Where logs, the nginx prefix and the host module go.
    :param store: The store URL every node shares.
    :param bus: The bus URL every node shares.
    :param visitor_nodes: The ids of the visitor nodes behind nginx.
    :param env: More environment variables for every node (``LIVESUPPORT_<SETTING>``).
    """

    def __init__(
        self,
        workdir: Path,
        store: str,
        bus: str,
        *,
        visitor_nodes: tuple[str, ...] = VISITOR_NODES,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir, self.store, self.bus = workdir, store, bus
        self.visitor_nodes, self.env = visitor_nodes, env
        self.nginx_path = nginx_binary()
        self.nodes: dict[str, LiveServer] = {}
        self.nginx: subprocess.Popen[bytes] | None = None
        try:
            # The first node creates the schema; the others then start together.
            self.start_node(visitor_nodes[0])
            for node_id in (*visitor_nodes[1:], AGENT_NODE):
                self.start_node(node_id, wait=False)
            for node in self.nodes.values():
                node.wait_ready()
            self.start_nginx()
        except BaseException:
            self.close()
            raise
        self.agent_api = self.nodes[AGENT_NODE].api

    def start_node(self, node_id: str, *, wait: bool = True) -> LiveServer:
        """Start (or restart, on its former port) ``node_id``."""
        previous = self.nodes.get(node_id)
        role = "agent" if node_id == AGENT_NODE else "visitor"
        node = LiveServer(self.workdir, self.store, node_id=node_id, role=role, bus=self.bus,
                          port=previous.port if previous else None, wait=wait,
                          env=self.env)  # fmt: skip
        self.nodes[node_id] = node
        return node

    def start_nginx(self) -> None:
        run = self.workdir / "nginx"
        (run / "nginx-tmp").mkdir(parents=True, exist_ok=True)
        self.lb_port = free_port()
        self.lb = f"http://127.0.0.1:{self.lb_port}"
        self.api = self.lb + "/livesupport/api/v1"
        ports = {node_id: self.nodes[node_id].port for node_id in self.visitor_nodes}
        (run / "nginx.conf").write_text(nginx_conf().render(run, self.lb_port, ports))
        command = [self.nginx_path, "-p", str(run), "-c", str(run / "nginx.conf"),
                   "-e", str(run / "nginx-error.log")]  # fmt: skip
        self.nginx = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self.lb + "/livesupport/healthz")

    def kill(self, node_id: str) -> None:
        """SIGKILL: the node vanishes mid-request, as a crashed machine would."""
        self.nodes[node_id].kill()

    def nginx_log(self) -> str:
        path = self.workdir / "nginx" / "nginx-error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()  # fast: a poll still parked must not hold the test up
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        for node in self.nodes.values():
            node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Person:
    """A client's view of a conversation: every durable event it received, by seq."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.http = requests.Session()
        self.cursor: str | None = None
        self.events: list[dict[str, Any]] = []

    def poll(self, timeout: float = 1, side: str = "visitor") -> list[dict[str, Any]]:
        params: dict[str, Any] = {"timeout": timeout}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        answer = self.http.get(f"{self.api}/{side}/poll", params=params, timeout=timeout + 30)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        self.cursor = page["cursor"]
        self.events += page["events"]
        return list(page["events"])

    def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        answer = self.http.post(self.api + path, json=body, timeout=30)
        assert answer.status_code == status, (path, answer.status_code, answer.text)
        return answer.json() if answer.content else None

    def seqs(self, cid: str) -> list[int]:
        return [e["seq"] for e in self.events if e["conversation_id"] == cid and e["seq"]]

    def bodies(self) -> list[str]:
        return [e["data"]["body"] for e in self.events if e["type"] == "message"]


class Visitor(Person):
    """A browser: through nginx, keeping the cookies it is given."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster.api)
        self.node_id = self.post("/visitor/session", {"name": "Vee"})["node_id"]

    def send(self, body: str) -> dict[str, Any]:
        answer = self.post("/visitor/messages", {"client_msg_id": uuid.uuid4().hex,
                                                  "body": body}, status=201)  # fmt: skip
        return dict(answer["message"])

    def affinity(self) -> str:
        return str(self.http.cookies.get("ls_node", "")).strip('"').partition(".")[0]


class Agent(Person):
    """The console: straight to the agent node, signed in."""

    def __init__(self, cluster: Cluster, email: str, password: str) -> None:
        super().__init__(cluster.agent_api)
        login = self.post("/agent/login", {"email": email, "password": password})
        self.http.headers["X-CSRF-Token"] = login["csrf_token"]
        self.poll(side="agent")  # from now on

    def poll(self, timeout: float = 1, side: str = "agent") -> list[dict[str, Any]]:
        return super().poll(timeout, side)

    def reply(self, cid: str, body: str) -> dict[str, Any]:
        answer = self.post(f"/agent/conversations/{cid}/messages",
                           {"client_msg_id": uuid.uuid4().hex, "body": body}, 201)  # fmt: skip
        return dict(answer["message"])


@contextmanager
def deployment(
    workdir: Path,
    bus: str,
    *,
    visitor_nodes: tuple[str, ...] = VISITOR_NODES,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """A :class:`Cluster` on a fresh PostgreSQL schema holding the agent ``EMAIL``;
    skips without nginx or PostgreSQL. The schema is dropped afterwards."""
    nginx_binary()
    require_postgres()
    store = postgres_url()
    try:
        created = open_store(store)
        created.create_agent(EMAIL, "Desk", "agent", hash_password(PASSWORD))
        created.dispose()
        with Cluster(workdir, store, bus, visitor_nodes=visitor_nodes, env=env) as cluster:
            yield cluster
    finally:
        drop_postgres(store)


# -- conversations across the cluster ------------------------------------------------


def timed(call: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    return lambda: (call(), time.monotonic())


def exchange(visitor: Visitor, agent: Agent, cid: str, label: str, pool: ThreadPoolExecutor
             ) -> tuple[float, float]:  # fmt: skip
    """One message each way with the receiver's poll parked: the two latencies (s)."""
    visitor.poll(0)  # its own last message, so that the parked poll waits for the reply
    parked: Future = pool.submit(timed(lambda: visitor.poll(POLL)))
    sent = time.monotonic()
    agent.reply(cid, f"{label} from the desk")
    to_visitor = arrival(visitor, f"{label} from the desk", parked) - sent

    agent.poll(0)
    parked = pool.submit(timed(lambda: agent.poll(POLL)))
    sent = time.monotonic()
    visitor.send(f"{label} from the web")
    return to_visitor, arrival(agent, f"{label} from the web", parked) - sent


def arrival(person: Person, body: str, parked: Future) -> float:
    """When ``body`` reached ``person``: its parked poll's answer, or a later poll's."""
    _, at = parked.result(POLL + 10)
    deadline = time.monotonic() + POLL
    while body not in person.bodies():
        assert time.monotonic() < deadline, f"{body!r} never arrived"
        _, at = timed(lambda: person.poll(POLL))()
    return float(at)


def started_conversation(cluster: Cluster) -> tuple[Visitor, Agent, str]:
    visitor = Visitor(cluster)
    agent = Agent(cluster, EMAIL, PASSWORD)
    cid = visitor.send("hello")["conversation_id"]
    agent.post(f"/agent/conversations/{cid}/claim")
    visitor.poll()
    return visitor, agent, cid


def assert_exactly_once(visitor: Visitor, cid: str) -> None:
    seqs = visitor.seqs(cid)
    assert seqs == list(range(1, len(seqs) + 1)), seqs
