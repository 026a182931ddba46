"""SIGTERM under load: a node answers every parked poll, finishes the sends it is
handling, and exits 0; every acknowledged send is stored, once.

A real ``livesupport serve`` node on SQLite: 20 visitors keep a poll parked
(30 s) and send nothing, 20 others send as fast as they are answered. Once 200
sends are acknowledged the node gets SIGTERM. Then:

- every parked poll is answered ``200`` (no events, a cursor) well before its
  timeout, not cut off;
- no send is answered with anything but ``201``: one the node stopped taking
  fails to connect, and a client would retry it on another node;
- every acknowledged send is in the store with the ``seq`` its answer gave, and
  no ``client_msg_id`` is stored twice;
- the node exits with status 0.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from livesupport.store import open_store
from tests.live import LiveServer

pytestmark = [pytest.mark.live]

WATCHERS, SENDERS, BEFORE_STOP = 20, 20, 200
PARKED = 30  # seconds a watcher's poll would wait: far beyond the stop


def session(server: LiveServer) -> tuple[requests.Session, dict[str, Any]]:
    browser = requests.Session()
    answer = browser.post(server.api + "/visitor/session", json={}, timeout=10)
    assert answer.status_code == 200, answer.text
    return browser, answer.json()


def test_sigterm_answers_parked_polls_and_loses_no_acknowledged_send(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/ls.db"
    server = LiveServer(tmp_path, store_url, env={"LIVESUPPORT_MESSAGES_PER_MINUTE": "0"})
    try:
        watchers = [session(server) for _ in range(WATCHERS)]
        senders = [session(server)[0] for _ in range(SENDERS)]
        lock = threading.Lock()
        acked: dict[str, int] = {}  # client_msg_id -> seq
        statuses: list[int] = []
        odd: list[str] = []  # the answers that were not 201
        polls: list[tuple[int, dict[str, Any], float]] = []
        parked = threading.Semaphore(0)
        enough, stopped_at = threading.Event(), [0.0]

        def watch(browser: requests.Session, opened: dict[str, Any]) -> None:
            params = {"cursor": opened["cursor"], "timeout": PARKED}
            parked.release()
            answer = browser.get(server.api + "/visitor/poll", params=params, timeout=60)
            with lock:
                polls.append((answer.status_code, answer.json(), time.monotonic()))

        def send(n: int, browser: requests.Session) -> None:
            for i in range(100_000):
                cmid = f"s{n}-{i}"
                body = {"client_msg_id": cmid, "body": f"message {i}"}
                try:
                    answer = browser.post(server.api + "/visitor/messages", json=body, timeout=30)
                except requests.ConnectionError:
                    return  # the node stopped taking requests: a client retries elsewhere
                with lock:
                    statuses.append(answer.status_code)
                    if answer.status_code == 201:
                        acked[cmid] = answer.json()["message"]["seq"]
                        if len(acked) >= BEFORE_STOP:
                            enough.set()
                if answer.status_code != 201:
                    odd.append(f"{answer.status_code} {answer.text[:300]}")
                    return

        threads = [threading.Thread(target=watch, args=w) for w in watchers]
        threads += [threading.Thread(target=send, args=(n, s)) for n, s in enumerate(senders)]
        for thread in threads:
            thread.start()
        for _ in watchers:
            assert parked.acquire(timeout=30)
        assert enough.wait(60), "the senders did not get going"
        stopped_at[0] = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0, server.output()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        server.stop()
    log = server.output()

    assert len(polls) == WATCHERS
    for status, page, at in polls:
        assert status == 200 and page["events"] == [] and page["cursor"], (status, page)
        assert at - stopped_at[0] < PARKED / 2, "a parked poll waited for its timeout"
    assert set(statuses) == {201}, (odd, log)

    store = open_store(store_url)
    try:
        stored: dict[str, int] = {}
        for conversation in store.list_conversations(limit=1000):
            for message in store.messages(conversation.id, limit=100_000):
                assert message.client_msg_id not in stored, message.client_msg_id
                stored[message.client_msg_id or ""] = message.seq
    finally:
        store.dispose()
    assert all(stored.get(cmid) == seq for cmid, seq in acked.items())
    print(
        f"SIGTERM after {BEFORE_STOP} acknowledged sends: {len(acked)} acknowledged in all, "
        f"{len(stored)} stored ({len(stored) - len(acked)} stored whose answer never left), "
        f"{WATCHERS} parked polls answered within "
        f"{max(at for _, _, at in polls) - stopped_at[0]:.2f} s"
    )
