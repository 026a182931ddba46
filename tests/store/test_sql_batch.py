"""Group commit in the SQL store.

Concurrent writers share transactions (``livesupport.store.sql_batch``): each
caller still gets its own result or its own error, and only after the commit.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from livesupport.clock import new_id
from livesupport.store.base import StoreConflict, Visitor
from livesupport.store.sql import SQLStore

AT = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def test_a_batch_answers_each_job_with_its_own_result_or_error(sql_store: SQLStore) -> None:
    committer = sql_store._committer
    release = threading.Event()
    results: dict[int, object] = {}

    def slow(c: Connection) -> str:
        release.wait(5)  # holds the first batch open while the others queue up
        return "first"

    def job(i: int) -> None:
        def work(c: Connection) -> int:
            if i == 3:
                raise StoreConflict("refused")
            return int(c.execute(text(f"SELECT {i}")).scalar_one())

        try:
            results[i] = committer.run(work)
        except StoreConflict as error:
            results[i] = error

    leader = threading.Thread(target=lambda: results.setdefault(0, committer.run(slow)))
    leader.start()
    while not committer._busy:
        pass
    followers = [threading.Thread(target=job, args=(i,)) for i in range(1, 6)]
    for thread in followers:
        thread.start()
    while len(committer._queue) < 5:
        pass
    batches = committer.batches
    release.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert results[0] == "first"
    assert [results[i] for i in (1, 2, 4, 5)] == [1, 2, 4, 5]
    assert isinstance(results[3], StoreConflict)
    assert committer.batches == batches + 2  # the leader's, then the five queued behind it


def test_concurrent_sends_in_one_batch_keep_seq_and_idempotency(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    first = sql_store.visitor_send(vera, "m-0", "hello", "web-1", AT)
    results = []

    def send(i: int) -> None:
        results.append(sql_store.visitor_send(vera, f"m-{i % 5}", f"body {i}", "web-1", AT))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    created = [r for r in results if r.created]
    assert len(created) == 4  # m-1..m-4; m-0 (four times) repeats the first send
    repeats = [r for r in results if r.message.client_msg_id == "m-0"]
    assert repeats and all(r.message.id == first.message.id for r in repeats)
    seqs = sorted(r.message.seq for r in created)
    assert seqs == [2, 3, 4, 5]
    messages = sql_store.messages(first.conversation.id)
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5]
    assert len({m.pos for m in messages}) == 5
