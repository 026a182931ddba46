"""The store's share of the abuse limits: quotas (``use_quota``) and the limits of
``visitor_send`` (messages per minute, conversations opened per quota).

The contract part runs on every backend (memory, SQLite, PostgreSQL). The SQL
part shows what makes the limits shared: several stores, each with its own
engine as a node has, on one database, never let more through than the limit
together; and a refused send inside a group-committed batch neither fails
the other sends of the batch nor makes them run twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, bindparam, event, text

from livesupport.clock import new_id
from livesupport.store import open_store
from livesupport.store.base import Author, Quota, QuotaExceeded, SendResult, Store, Visitor
from livesupport.store.sql import SQLStore
from livesupport.store.sql_engine import MIGRATIONS, VERSION_TABLE, make_engine, store_url
from livesupport.store.sql_engine import transaction as sql_transaction
from livesupport.store.sql_schema import UTCDateTime
from tests.store.test_concurrency import node, together

T0 = datetime(2026, 11, 27, 22, 5, 52, 123456, tzinfo=UTC)
NODES = 6


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_visitor(store: Store) -> Visitor:
    return store.create_visitor(Visitor(id=new_id("v"), name="Vera"))


def send(
    store: Store,
    who: Visitor,
    t: float,
    *,
    cmid: str = "",
    per_minute: int | None = None,
    opening: Quota | None = None,
) -> SendResult:
    return store.visitor_send(
        who, cmid or new_id("k"), "hi", "node-1", at(t), per_minute=per_minute,
        new_conversations=opening,
    )  # fmt: skip


def refused(call: object) -> QuotaExceeded:
    """The :class:`QuotaExceeded` that ``call()`` raises."""
    with pytest.raises(QuotaExceeded) as caught:
        call()  # type: ignore[operator]
    return caught.value


# -- use_quota -----------------------------------------------------------------------
def test_a_quota_admits_its_limit_per_window_and_a_refusal_records_nothing(store: Store) -> None:
    quota = Quota("new-visitor:203.0.113.7", 2, 10)
    store.use_quota(quota, at(0))
    store.use_quota(quota, at(1))
    error = refused(lambda: store.use_quota(quota, at(2)))
    assert error.retry_after == pytest.approx(8)  # when the use at 0 leaves the window
    assert error.key == quota.key
    # Had the refusal at 2 been recorded, 1 and 2 would still fill the window at 10.5.
    store.use_quota(quota, at(10.5))
    again = refused(lambda: store.use_quota(quota, at(10.6)))
    assert again.retry_after == pytest.approx(0.4)  # the use at 1 leaves at 11
    assert store.attempts_since(quota.key, at(0)) == [at(1), at(10.5)]


def test_quotas_are_counted_per_key(store: Store) -> None:
    one, other = Quota("new-visitor:a", 1, 60), Quota("new-visitor:b", 1, 60)
    store.use_quota(one, at(0))
    store.use_quota(other, at(0))
    refused(lambda: store.use_quota(one, at(1)))
    refused(lambda: store.use_quota(other, at(1)))
    store.use_quota(Quota("new-conversation:a", 1, 60), at(1))  # another scope, same subject


def test_a_quota_of_zero_admits_nothing(store: Store) -> None:
    quota = Quota("new-visitor:a", 0, 60)
    assert refused(lambda: store.use_quota(quota, at(0))).retry_after > 0
    assert store.attempts_since(quota.key, at(-1)) == []


# -- the send rate -------------------------------------------------------------------
def test_the_send_rate_counts_the_visitors_messages_of_the_last_minute(store: Store) -> None:
    vera, other = new_visitor(store), new_visitor(store)
    first = send(store, vera, 0, per_minute=3)
    send(store, vera, 1, per_minute=3)
    send(store, vera, 2, per_minute=3)
    position = store.feed_position()
    error = refused(lambda: send(store, vera, 3, per_minute=3))
    assert error.key is None
    assert error.retry_after == pytest.approx(57)  # when the message at 0 is a minute old
    assert store.feed_position() == position  # nothing written
    assert len(store.messages(first.conversation.id)) == 3
    send(store, other, 3, per_minute=3)  # per visitor
    send(store, vera, 3)  # the caller's limit, not the store's: none given, none applied
    assert refused(lambda: send(store, vera, 59.9, per_minute=3)).retry_after == pytest.approx(1.1)
    assert send(store, vera, 61.5, per_minute=3).created  # 0 and 1 left the window


def test_a_repeat_is_answered_over_the_rate(store: Store) -> None:
    vera = new_visitor(store)
    first = send(store, vera, 0, cmid="m-1", per_minute=1)
    refused(lambda: send(store, vera, 1, per_minute=1))
    repeat = send(store, vera, 1, cmid="m-1", per_minute=1)
    assert not repeat.created and repeat.message.id == first.message.id


def test_the_send_rate_spans_conversations_and_skips_agents(store: Store) -> None:
    vera = new_visitor(store)
    ann = store.create_agent("ann@example.com", "Ann", "agent", "h")
    conversation = send(store, vera, 0, per_minute=2).conversation
    for i in range(3):  # the agent's messages are not the visitor's
        store.agent_send(conversation.id, ann, f"a-{i}", "hello", at(0.5))
    store.close(conversation.id, ann.author, at(0.6))
    reopened = send(store, vera, 1, per_minute=2)
    assert reopened.conversation_created
    refused(lambda: send(store, vera, 2, per_minute=2))


def test_a_send_rate_of_zero_admits_nothing(store: Store) -> None:
    vera = new_visitor(store)
    refused(lambda: send(store, vera, 0, per_minute=0))
    assert store.visitor_conversations(vera.id) == []


# -- conversations opened --------------------------------------------------------------
def test_only_sends_that_open_a_conversation_use_the_quota(store: Store) -> None:
    opening = Quota("new-conversation:198.51.100.9", 2, 600)
    vera, walt, xena = (new_visitor(store) for _ in range(3))
    assert send(store, vera, 0, opening=opening).conversation_created
    for t in range(1, 6):  # the open conversation's messages are free
        assert not send(store, vera, t, opening=opening).conversation_created
    assert send(store, walt, 6, opening=opening).conversation_created
    position = store.feed_position()
    error = refused(lambda: send(store, xena, 7, opening=opening))
    assert error.key == opening.key
    assert error.retry_after == pytest.approx(593)
    assert store.visitor_conversations(xena.id) == [] and store.feed_position() == position
    assert send(store, vera, 8, opening=opening).created  # still open: still free
    assert send(store, xena, 7, opening=Quota("new-conversation:other", 2, 600)).created
    assert send(store, walt, 600.5, opening=opening).created  # open: no quota needed anyway
    conversation = store.open_conversation(vera.id)
    assert conversation is not None
    store.close(conversation.id, Author("visitor", vera.id, vera.name), at(601))
    assert send(store, vera, 601, opening=opening).conversation_created  # 0 has left


# -- shared between nodes (SQL) -----------------------------------------------------------
def test_nodes_sharing_a_database_share_a_quota(sql_store: SQLStore) -> None:
    quota = Quota("new-visitor:203.0.113.50", 5, 600)

    def use(index: int) -> int:
        store = node(sql_store.url)
        admitted = 0
        try:
            for i in range(3):
                try:
                    store.use_quota(quota, at(index + i / 10))
                    admitted += 1
                except QuotaExceeded:
                    pass
        finally:
            store.dispose()
        return admitted

    assert sum(together(NODES, use)) == quota.limit  # 18 tries, 5 admitted in all
    assert len(sql_store.attempts_since(quota.key, at(-1))) == quota.limit


def test_nodes_sharing_a_database_share_a_visitors_send_rate(sql_store: SQLStore) -> None:
    vera = new_visitor(sql_store)
    send(sql_store, vera, 0)  # the conversation exists: the nodes race for messages only

    def burst(index: int) -> int:
        store = node(sql_store.url)
        created = 0
        try:
            for i in range(3):
                try:
                    created += send(store, vera, 1 + index + i / 10, per_minute=8).created
                except QuotaExceeded:
                    pass
        finally:
            store.dispose()
        return created

    assert sum(together(NODES, burst)) == 7  # 8 a minute, one sent before
    conversation = sql_store.open_conversation(vera.id)
    assert conversation is not None and conversation.last_seq == 8


def test_nodes_sharing_a_database_share_the_conversations_quota(sql_store: SQLStore) -> None:
    visitors = [new_visitor(sql_store) for _ in range(NODES)]
    opening = Quota("new-conversation:203.0.113.51", 3, 600)

    def first_send(index: int) -> bool:
        store = node(sql_store.url)
        try:
            return send(store, visitors[index], index, opening=opening).conversation_created
        except QuotaExceeded:
            return False
        finally:
            store.dispose()

    assert sum(together(NODES, first_send)) == opening.limit
    opened = [v for v in visitors if sql_store.visitor_conversations(v.id)]
    assert len(opened) == opening.limit


def test_a_refused_send_leaves_its_batch_alone(sql_store: SQLStore) -> None:
    """Refusals are decided by reading, before anything is written: the batch commits
    once, without the rollback and second run that a failing job costs the others."""
    committer = sql_store._committer
    vera, walt = new_visitor(sql_store), new_visitor(sql_store)
    send(sql_store, vera, 0)
    rollbacks: list[object] = []
    event.listen(committer.engine, "rollback", rollbacks.append)
    release = threading.Event()
    outcomes: dict[str, object] = {}

    def hold(c: Connection) -> None:
        release.wait(10)  # keeps a batch open while the sends queue behind it

    def job(name: str, who: Visitor, t: float) -> None:
        try:
            outcomes[name] = send(sql_store, who, t, per_minute=2)
        except QuotaExceeded as error:
            outcomes[name] = error

    leader = threading.Thread(target=committer.run, args=(hold,))
    leader.start()
    while not committer._busy:
        pass
    jobs = [("vera-1", vera, 1), ("vera-2", vera, 2), ("walt-1", walt, 1), ("vera-3", vera, 3)]
    threads = [threading.Thread(target=job, args=j) for j in jobs]
    for thread in threads:
        thread.start()
    while len(committer._queue) < len(jobs):
        pass
    batches = committer.batches
    release.set()
    for thread in [leader, *threads]:
        thread.join(20)
    created = {name for name, o in outcomes.items() if isinstance(o, SendResult) and o.created}
    refusals = {name for name, o in outcomes.items() if isinstance(o, QuotaExceeded)}
    assert len(created) == 2 and "walt-1" in created  # vera: one of the three (two a minute)
    assert len(refusals) == 2 and refusals < {"vera-1", "vera-2", "vera-3"}
    assert committer.batches == batches + 2  # the leader's, then one for the four sends
    assert rollbacks == []
    with sql_store.engine.connect() as c:
        count = c.execute(text("SELECT count(*) FROM events WHERE author_id = :v"), {"v": vera.id})
        assert count.scalar_one() == 2


def test_messages_stored_before_the_upgrade_count(sql_url: str) -> None:
    """A database at the first revision, with a visitor's messages in it, gets the send
    rate's index from the upgrade, and the rate counts those messages."""
    engine = make_engine(store_url(sql_url), pool_size=1, max_overflow=0, pool_timeout=10,
                         echo=False, engine_options={})  # fmt: skip
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with sql_transaction(engine, write=True) as connection:
        config.attributes.update(connection=connection, version_table=VERSION_TABLE)
        command.upgrade(config, "0001")
        row = {"v": "v_old", "c": "c_old", "t": at(0), "n": "web-1"}
        when = bindparam("t", type_=UTCDateTime())  # as the store writes times

        def insert(sql: str, values: dict[str, object]) -> None:
            connection.execute(text(sql).bindparams(when), values)

        insert("INSERT INTO visitors VALUES (:v, '', '', '', '', '', '', NULL, :t)", row)
        insert(
            "INSERT INTO conversations (id, visitor_id, status, agent_id, created_at,"
            " updated_at, last_seq, node_id, pos) VALUES (:c, :v, 'waiting', NULL, :t, :t,"
            " 2, :n, 2)",
            row,
        )
        for seq in (1, 2):
            insert(
                "INSERT INTO events (id, conversation_id, seq, pos, type, at, client_msg_id,"
                " author_kind, author_id, author_name, body) VALUES (:id, :c, :s, :s,"
                " 'message', :t, :k, 'visitor', :v, '', 'hi')",
                {**row, "id": f"m_{seq}", "s": seq, "k": f"k{seq}"},
            )
        connection.execute(text("UPDATE feed SET pos = 2"))
    engine.dispose()
    store = open_store(sql_url)
    try:
        old = store.get_visitor("v_old")
        assert old is not None
        error = refused(lambda: send(store, old, 30, per_minute=2))
        assert error.retry_after == pytest.approx(30)
        assert send(store, old, 61, per_minute=2).message.seq == 3
    finally:
        store.dispose()
