"""Long-polls against a real gevent server on a loopback port."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from livesupport.passwords import hash_password
from livesupport.store import open_store

from .live import LiveServer

pytestmark = pytest.mark.live
EMAIL, PASSWORD = "live@example.com", "live password 1"
SMOKE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "smoke.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{workdir}/live.db"
    store = open_store(url)
    store.create_agent(EMAIL, "Live Agent", "agent", hash_password(PASSWORD))
    store.dispose()
    live = LiveServer(workdir, url)
    yield live
    assert live.stop() == 0, live.output()


def visitor(server: LiveServer) -> requests.Session:
    session = requests.Session()
    answer = session.post(server.api + "/visitor/session", json={"name": "Vee"}, timeout=10)
    assert answer.status_code == 200
    return session


def agent(server: LiveServer) -> requests.Session:
    session = requests.Session()
    answer = session.post(
        server.api + "/agent/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return session


def send(session: requests.Session, url: str, body: str) -> dict:
    answer = session.post(url, json={"client_msg_id": uuid.uuid4().hex, "body": body}, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["message"]


def test_parked_visitor_poll_is_woken_by_the_agent_reply(server):
    v, a = visitor(server), agent(server)
    cid = send(v, server.api + "/visitor/messages", "hello")["conversation_id"]
    cursor = v.get(server.api + "/visitor/poll", params={"timeout": 1}, timeout=10).json()["cursor"]
    parked = threading.Event()
    answers: list = []

    def poll() -> None:
        parked.set()
        answers.append(
            v.get(
                server.api + "/visitor/poll", params={"cursor": cursor, "timeout": 30}, timeout=40
            )
        )

    thread = threading.Thread(target=poll)
    thread.start()
    parked.wait(5)
    # The reply either wakes the parked poll or is found by it on its first read;
    # both must answer long before the 30 s timeout.
    started = time.monotonic()
    send(a, f"{server.api}/agent/conversations/{cid}/messages", "hi from agent")
    thread.join(20)
    assert not thread.is_alive()
    assert time.monotonic() - started < 15
    events = answers[0].json()["events"]
    assert [e["data"]["body"] for e in events if e["type"] == "message"] == ["hi from agent"]


def test_parked_agent_poll_is_woken_by_a_new_conversation(server):
    a = agent(server)
    cursor = a.get(server.api + "/agent/poll", params={"timeout": 1}, timeout=10).json()["cursor"]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            a.get, server.api + "/agent/poll", params={"cursor": cursor, "timeout": 30}, timeout=40
        )
        v = visitor(server)
        send(v, server.api + "/visitor/messages", "need help")
        events = pending.result(20).json()["events"]
    types = {e["type"] for e in events}
    assert "conversation_waiting" in types or "message" in types


def test_many_parked_polls_are_each_answered_at_their_timeout(server):
    sessions = [visitor(server) for _ in range(150)]

    def poll(session: requests.Session) -> requests.Response:
        return session.get(server.api + "/visitor/poll", params={"timeout": 2}, timeout=30)

    with ThreadPoolExecutor(len(sessions)) as pool:
        answers = list(pool.map(poll, sessions))
    assert [r.status_code for r in answers] == [200] * len(sessions)
    assert all(r.json()["events"] == [] and r.json()["more"] is False for r in answers)


def test_a_visitor_beyond_its_poll_cap_releases_its_oldest_poll(server):
    v = visitor(server)
    cursor = v.get(server.api + "/visitor/poll", params={"timeout": 1}, timeout=10).json()["cursor"]
    done: list[float] = []

    def poll() -> None:
        v.get(server.api + "/visitor/poll", params={"cursor": cursor, "timeout": 20}, timeout=30)
        done.append(time.monotonic())

    # requests.Session is not safe across threads for cookies it sets, but only reads here.
    threads = [threading.Thread(target=poll) for _ in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 15
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the first answer from another process
    assert done and done[0] - started < 15, "the fifth poll should release the oldest one"
    send(v, server.api + "/visitor/messages", "wake the rest")
    for thread in threads:
        thread.join(30)


@pytest.mark.skipif(
    not SMOKE.exists(), reason="the shared conformance smoke test is not beside the checkout"
)
def test_shared_conformance_smoke_passes(server):
    result = subprocess.run([sys.executable, str(SMOKE), server.url, EMAIL, PASSWORD],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
