"""The store contract (``livesupport/store/base.py``), run against every backend.

Each test runs once per backend through the ``store`` fixture: memory, SQLite
(a file) and PostgreSQL (a real server). A behaviour belongs here when the
contract promises it; backend-specific checks live in ``test_sql.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from livesupport.clock import new_id
from livesupport.store.base import (
    DURABLE_TYPES,
    Agent,
    AgentSession,
    Author,
    Conversation,
    NotHeld,
    SendResult,
    Store,
    StoreConflict,
    StoredEvent,
    Visitor,
)

T0 = datetime(2026, 11, 27, 22, 5, 52, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def visitor(store: Store, name: str = "Vera", **fields: str | None) -> Visitor:
    return store.create_visitor(Visitor(id=new_id("v"), name=name, **fields))  # type: ignore[arg-type]


def send(
    store: Store, who: Visitor, body: str = "hello", t: float = 0, cmid: str = ""
) -> SendResult:
    return store.visitor_send(who, cmid or new_id("k"), body, "node-1", at(t))


def chat(store: Store, t: float = 0) -> Conversation:
    """A new waiting conversation of a new visitor."""
    return send(store, visitor(store), t=t).conversation


def types(events: object) -> list[str]:
    return [e.type for e in events]  # type: ignore[attr-defined]


@pytest.fixture
def ann(store: Store) -> Agent:
    return store.create_agent("ann@example.com", "Ann", "agent", "hash-ann")


@pytest.fixture
def bob(store: Store) -> Agent:
    return store.create_agent("bob@example.com", "Bob", "agent", "hash-bob")


@pytest.fixture
def sue(store: Store) -> Agent:
    return store.create_agent("sue@example.com", "Sue", "supervisor", "hash-sue")


# -- life cycle ----------------------------------------------------------------
def test_a_new_store_is_empty_and_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    store.ping()
    assert store.feed_position() == 0
    assert store.list_agents() == [] and store.list_conversations() == []


# -- agents ----------------------------------------------------------------------
def test_create_agent_keeps_email_lower_case(store: Store) -> None:
    agent = store.create_agent("Ann.Smith@Example.COM", "Ann Smith", "supervisor", "h")
    assert agent.email == "ann.smith@example.com"
    assert (agent.name, agent.role, agent.password_hash) == ("Ann Smith", "supervisor", "h")
    assert (agent.disabled, agent.status, agent.last_seen_at) == (False, "offline", None)
    assert agent.created_at is not None and agent.created_at.utcoffset() == timedelta(0)
    assert agent.id.startswith("a_")
    assert store.get_agent(agent.id) == agent
    assert store.get_agent_by_email("ANN.SMITH@example.com") == agent
    assert store.get_agent_by_email("ann.smith@example.org") is None
    assert store.get_agent("a_missing") is None


def test_create_agent_refuses_an_email_in_any_case(store: Store, ann: Agent) -> None:
    with pytest.raises(StoreConflict):
        store.create_agent("ANN@example.com", "Other Ann", "agent", "h")
    assert store.list_agents() == [ann]


def test_list_agents_oldest_first(store: Store) -> None:
    made = [store.create_agent(f"agent{i}@example.com", f"A{i}", "agent", "h") for i in range(4)]
    assert store.list_agents() == made


def test_update_agent_changes_only_the_given_fields(store: Store, ann: Agent) -> None:
    updated = store.update_agent(ann.id, status="online", last_seen_at=at(5))
    assert updated is not None
    assert (updated.status, updated.last_seen_at, updated.disabled) == ("online", at(5), False)
    assert updated.password_hash == ann.password_hash and updated.email == ann.email
    assert store.get_agent(ann.id) == updated
    disabled = store.update_agent(ann.id, disabled=True, password_hash="new")
    assert disabled is not None and (disabled.disabled, disabled.password_hash) == (True, "new")
    assert disabled.status == "online"
    enabled = store.update_agent(ann.id, disabled=False)
    assert enabled is not None and enabled.disabled is False
    assert store.update_agent(ann.id) == enabled
    assert store.update_agent("a_missing", status="away") is None


def test_agents_online(store: Store, ann: Agent, bob: Agent) -> None:
    assert not store.agents_online(at(0))
    store.update_agent(ann.id, status="online", last_seen_at=at(10))
    assert store.agents_online(at(10))  # "at or after"
    assert not store.agents_online(at(11))
    store.update_agent(ann.id, disabled=True)
    assert not store.agents_online(at(0))
    store.update_agent(bob.id, status="away", last_seen_at=at(20))
    assert not store.agents_online(at(0))
    store.update_agent(bob.id, status="online")
    assert store.agents_online(at(20))


# -- agent sessions ----------------------------------------------------------------
def test_sessions(store: Store, ann: Agent, bob: Agent) -> None:
    first = AgentSession("hash-1", ann.id, "csrf-1", at(0), at(0))
    store.create_session(first)
    store.create_session(AgentSession("hash-2", ann.id, "csrf-2", at(1), at(1)))
    store.create_session(AgentSession("hash-3", bob.id, "csrf-3", at(2), at(2)))
    assert store.get_session("hash-1") == first
    assert store.get_session("hash-x") is None
    assert store.session_agent("hash-1") == (first, ann)
    assert store.session_agent("hash-x") is None
    store.update_agent(bob.id, disabled=True)
    assert store.session_agent("hash-3") == (store.get_session("hash-3"), store.get_agent(bob.id))
    store.touch_session("hash-1", at(30))
    assert store.get_session("hash-1") == AgentSession("hash-1", ann.id, "csrf-1", at(0), at(30))
    store.touch_session("hash-x", at(30))  # gone: nothing happens
    store.delete_session("hash-1")
    store.delete_session("hash-1")
    assert store.get_session("hash-1") is None
    store.delete_agent_sessions(ann.id)
    assert store.get_session("hash-2") is None
    assert store.get_session("hash-3") is not None


def test_a_session_needs_an_agent(store: Store) -> None:
    with pytest.raises(KeyError):
        store.create_session(AgentSession("hash-1", "a_missing", "csrf", at(0), at(0)))


# -- throttling ------------------------------------------------------------------
def test_attempts(store: Store) -> None:
    for t in (0, 1, 2):
        store.record_attempt("login:ann", at(t))
    store.record_attempt("login:bob", at(1))
    assert store.attempts_since("login:ann", at(1)) == [at(1), at(2)]
    assert store.attempts_since("login:ann", at(0)) in ([at(0), at(1), at(2)], [at(1), at(2)])
    assert store.attempts_since("login:carol", at(0)) == []
    store.clear_attempts("login:ann")
    assert store.attempts_since("login:ann", at(-10)) == []
    assert store.attempts_since("login:bob", at(0)) == [at(1)]


# -- visitors ---------------------------------------------------------------------
def test_create_and_get_visitor(store: Store) -> None:
    given = Visitor(new_id("v"), "Zoë 李", "zoe@example.com", "/pricing", "https://ref.example/",
                    "Mozilla/5.0", "fr-CA", None, at(3))  # fmt: skip
    assert store.create_visitor(given) == given
    assert store.get_visitor(given.id) == given
    assert store.get_visitor("v_missing") is None
    dated = store.create_visitor(Visitor(new_id("v")))
    assert dated.created_at is not None and dated.created_at.utcoffset() == timedelta(0)
    assert store.get_visitor(dated.id) == dated


def test_create_visitor_with_a_known_external_id_returns_that_visitor(store: Store) -> None:
    first = visitor(store, "Ann", external_id="user-42")
    again = store.create_visitor(Visitor(new_id("v"), "Someone", external_id="user-42"))
    assert again == first
    assert store.find_visitor("user-42") == first
    assert store.find_visitor("user-43") is None


def test_create_visitor_refuses_a_known_id(store: Store) -> None:
    first = visitor(store)
    with pytest.raises(StoreConflict):
        store.create_visitor(Visitor(first.id, "Impostor"))
    assert store.get_visitor(first.id) == first


def test_update_visitor(store: Store) -> None:
    vera = visitor(store, email="")
    updated = store.update_visitor(vera.id, email="vera@example.com", page="/cart")
    assert updated is not None and (updated.email, updated.page, updated.name) == (
        "vera@example.com",
        "/cart",
        "Vera",
    )
    assert store.get_visitor(vera.id) == updated
    assert store.update_visitor("v_missing", name="x") is None
    with pytest.raises(ValueError):
        store.update_visitor(vera.id, external_id="sneaky")


def test_update_visitor_bumps_the_open_conversation(store: Store, ann: Agent) -> None:
    vera = visitor(store)
    assert store.update_visitor(vera.id, page="/a") is not None  # no conversation: no position
    assert store.feed_position() == 0
    conversation = send(store, vera).conversation
    store.update_visitor(vera.id, page="/a")  # unchanged: no position
    assert store.feed_position() == conversation.pos == 1
    store.update_visitor(vera.id, page="/b")
    bumped = store.get_conversation(conversation.id)
    assert bumped is not None and bumped.pos == store.feed_position() == 2
    page = store.agent_feed(ann.id, 1, 10)
    assert page.events == [] and [c.id for c in page.conversations] == [conversation.id]
    store.close(conversation.id, Author("visitor", vera.id, "Vera"), at(1))
    top = store.feed_position()
    store.update_visitor(vera.id, page="/c")  # closed: nothing to bump
    assert store.feed_position() == top


# -- visitor sends ------------------------------------------------------------------
def test_first_visitor_send_opens_a_waiting_conversation(store: Store) -> None:
    vera = visitor(store)
    result = store.visitor_send(vera, "k1", "Hello?", "node-7", at(1))
    message, conversation = result.message, result.conversation
    assert result.created and result.conversation_created
    assert list(result.events) == [message]
    assert (message.type, message.seq, message.pos, message.at) == ("message", 1, 1, at(1))
    assert (message.client_msg_id, message.body) == ("k1", "Hello?")
    assert message.author == Author("visitor", vera.id, "Vera")
    assert message.id.startswith("m_") and message.conversation_id == conversation.id
    assert (conversation.visitor_id, conversation.status, conversation.agent_id) == (
        vera.id,
        "waiting",
        None,
    )
    assert (conversation.node_id, conversation.last_seq, conversation.pos) == ("node-7", 1, 1)
    assert conversation.created_at == conversation.updated_at == at(1)
    assert store.get_conversation(conversation.id) == conversation
    assert store.open_conversation(vera.id) == conversation


def test_later_sends_go_to_the_open_conversation(store: Store) -> None:
    vera = visitor(store)
    first = send(store, vera, t=0).conversation
    second = store.visitor_send(vera, "k2", "again", "node-2", at(5))
    assert not second.conversation_created
    assert second.conversation.id == first.id and second.message.seq == 2
    assert second.conversation.node_id == "node-1"  # the send does not move the conversation
    assert second.conversation.updated_at == at(5) and second.conversation.created_at == at(0)
    assert second.conversation.pos == second.message.pos == store.feed_position() == 2


def test_a_repeated_visitor_send_returns_the_first_message(store: Store) -> None:
    vera = visitor(store)
    first = store.visitor_send(vera, "k1", "original", "node-1", at(0))
    send(store, vera, "another", t=1)
    top = store.feed_position()
    repeat = store.visitor_send(vera, "k1", "a different body", "node-2", at(2))
    assert not repeat.created and not repeat.conversation_created
    assert repeat.message == first.message and repeat.message.body == "original"
    assert list(repeat.events) == []
    assert repeat.conversation == store.get_conversation(first.conversation.id)
    assert store.feed_position() == top
    assert [m.body for m in store.messages(first.conversation.id)] == ["original", "another"]


def test_visitor_sends_are_idempotent_across_conversations(store: Store) -> None:
    vera = visitor(store)
    first = store.visitor_send(vera, "k1", "first", "node-1", at(0))
    store.close(first.conversation.id, Author("system", "", ""), at(1))
    repeat = store.visitor_send(vera, "k1", "first", "node-1", at(2))
    assert not repeat.created and repeat.message == first.message
    assert repeat.conversation.status == "closed"
    assert store.open_conversation(vera.id) is None  # the repeat opened nothing
    fresh = store.visitor_send(vera, "k2", "next", "node-1", at(3))
    assert fresh.conversation_created and fresh.conversation.id != first.conversation.id
    assert fresh.message.seq == 1
    assert [c.id for c in store.visitor_conversations(vera.id)] == [
        first.conversation.id,
        fresh.conversation.id,
    ]
    assert store.open_conversation(vera.id) == fresh.conversation


def test_client_msg_ids_are_scoped_to_their_author(store: Store, ann: Agent) -> None:
    vera, walt = visitor(store), visitor(store, "Walt")
    a = store.visitor_send(vera, "same", "from vera", "node-1", at(0))
    b = store.visitor_send(walt, "same", "from walt", "node-1", at(0))
    c = store.agent_send(a.conversation.id, ann, "same", "from ann", at(1))
    assert a.created and b.created and c.created
    assert len({a.message.id, b.message.id, c.message.id}) == 3


def test_visitor_send_needs_a_stored_visitor(store: Store) -> None:
    with pytest.raises(KeyError):
        store.visitor_send(Visitor(new_id("v")), "k1", "hi", "node-1", at(0))
    assert store.feed_position() == 0


# -- agent sends --------------------------------------------------------------------
def test_agent_send_claims_a_waiting_conversation(store: Store, ann: Agent) -> None:
    conversation = chat(store)
    result = store.agent_send(conversation.id, ann, "a1", "How can I help?", at(2))
    joined, message = result.events
    assert result.created and not result.conversation_created and result.message == message
    assert (joined.type, joined.seq, joined.pos, joined.at) == ("agent_joined", 2, 2, at(2))
    assert joined.agent == Author("agent", ann.id, "Ann") and joined.id.startswith("e_")
    assert (message.seq, message.pos, message.author, message.body) == (
        3,
        3,
        Author("agent", ann.id, "Ann"),
        "How can I help?",
    )
    after = result.conversation
    assert (after.status, after.agent_id, after.last_seq, after.pos) == ("active", ann.id, 3, 3)
    assert after.updated_at == at(2)
    assert store.get_conversation(conversation.id) == after


def test_agent_send_to_a_held_conversation(store: Store, ann: Agent, bob: Agent) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    result = store.agent_send(conversation.id, ann, "a1", "hi", at(2))
    assert types(result.events) == ["message"] and result.message.seq == 3
    top = store.feed_position()
    with pytest.raises(NotHeld):
        store.agent_send(conversation.id, bob, "b1", "mine now?", at(3))
    assert store.feed_position() == top  # wrote nothing
    assert store.get_conversation(conversation.id) == result.conversation


def test_a_supervisor_may_send_without_taking_over(store: Store, ann: Agent, sue: Agent) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    result = store.agent_send(conversation.id, sue, "s1", "Supervisor here", at(2))
    assert result.created and result.message.author == Author("agent", sue.id, "Sue")
    assert result.conversation.agent_id == ann.id and result.conversation.status == "active"


def test_agent_send_errors(store: Store, ann: Agent) -> None:
    with pytest.raises(KeyError):
        store.agent_send("c_missing", ann, "a1", "hi", at(0))
    conversation = chat(store)
    store.close(conversation.id, Author("agent", ann.id, "Ann"), at(1))
    top = store.feed_position()
    with pytest.raises(StoreConflict):
        store.agent_send(conversation.id, ann, "a2", "hi", at(2))
    assert store.feed_position() == top


def test_a_repeated_agent_send_is_checked_before_anything_else(store: Store, ann: Agent) -> None:
    conversation = chat(store)
    first = store.agent_send(conversation.id, ann, "a1", "original", at(1))
    store.close(conversation.id, Author("agent", ann.id, "Ann"), at(2))
    top = store.feed_position()
    for target in (conversation.id, chat(store).id, "c_missing"):
        repeat = store.agent_send(target, ann, "a1", "changed", at(3))
        assert not repeat.created and repeat.message == first.message
        assert list(repeat.events) == [] and repeat.conversation.id == conversation.id
    assert store.feed_position() == top + 1  # only the new chat() took a position


# -- claim, transfer, release, close -----------------------------------------------
def test_claim(store: Store, ann: Agent, bob: Agent, sue: Agent) -> None:
    conversation = chat(store)
    change = store.claim(conversation.id, ann, at(1))
    assert types(change.events) == ["agent_joined"]
    assert change.events[0].agent == ann.author and change.events[0].seq == 2
    assert (change.conversation.status, change.conversation.agent_id) == ("active", ann.id)
    assert change.conversation.pos == change.events[0].pos and change.conversation.updated_at == at(
        1
    )
    top = store.feed_position()
    again = store.claim(conversation.id, ann, at(2))
    assert list(again.events) == [] and again.conversation == change.conversation
    for other in (bob, sue):  # a supervisor claims nothing held either
        with pytest.raises(NotHeld):
            store.claim(conversation.id, other, at(3))
    assert store.feed_position() == top
    store.close(conversation.id, ann.author, at(4))
    with pytest.raises(StoreConflict):
        store.claim(conversation.id, ann, at(5))
    with pytest.raises(KeyError):
        store.claim("c_missing", ann, at(5))


def test_transfer_an_active_conversation(store: Store, ann: Agent, bob: Agent) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    change = store.transfer(conversation.id, ann, bob, at(2))
    left, transferred = change.events
    assert (left.type, left.agent, left.seq) == ("agent_left", ann.author, 3)
    assert (transferred.type, transferred.agent, transferred.seq) == ("transferred", bob.author, 4)
    assert transferred.pos == left.pos + 1 == change.conversation.pos
    assert (change.conversation.status, change.conversation.agent_id) == ("active", bob.id)
    with pytest.raises(NotHeld):
        store.transfer(conversation.id, ann, ann, at(3))  # Ann no longer holds it


def test_transfer_a_waiting_conversation(store: Store, ann: Agent, bob: Agent) -> None:
    conversation = chat(store)
    change = store.transfer(conversation.id, ann, bob, at(1))
    assert types(change.events) == ["transferred"] and change.events[0].agent == bob.author
    assert (change.conversation.status, change.conversation.agent_id) == ("active", bob.id)


def test_transfer_rules(store: Store, ann: Agent, bob: Agent, sue: Agent) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    top = store.feed_position()
    with pytest.raises(NotHeld):
        store.transfer(conversation.id, bob, bob, at(2))
    assert store.feed_position() == top
    change = store.transfer(conversation.id, sue, bob, at(3))  # a supervisor may
    assert [e.agent for e in change.events] == [ann.author, bob.author]
    store.close(conversation.id, sue.author, at(4))
    with pytest.raises(StoreConflict):
        store.transfer(conversation.id, bob, ann, at(5))
    with pytest.raises(KeyError):
        store.transfer("c_missing", sue, ann, at(5))


def test_release(store: Store, ann: Agent, bob: Agent, sue: Agent) -> None:
    conversation = chat(store)
    with pytest.raises(NotHeld):
        store.release(conversation.id, ann, at(1))  # waiting: nobody holds it
    store.claim(conversation.id, ann, at(1))
    for other in (bob, sue):  # only the holder, not even a supervisor
        with pytest.raises(NotHeld):
            store.release(conversation.id, other, at(2))
    change = store.release(conversation.id, ann, at(3))
    assert types(change.events) == ["agent_left"] and change.events[0].agent == ann.author
    assert (change.conversation.status, change.conversation.agent_id) == ("waiting", None)
    assert store.waiting_queue() == [change.conversation]
    with pytest.raises(KeyError):
        store.release("c_missing", ann, at(4))


def test_close(store: Store, ann: Agent) -> None:
    vera = visitor(store)
    conversation = send(store, vera).conversation
    by = Author("visitor", vera.id, "Vera")
    change = store.close(conversation.id, by, at(1))
    assert types(change.events) == ["conversation_closed"] and change.events[0].author == by
    assert change.conversation.status == "closed" and change.conversation.updated_at == at(1)
    top = store.feed_position()
    again = store.close(conversation.id, ann.author, at(2))
    assert list(again.events) == [] and again.conversation == change.conversation
    assert store.feed_position() == top
    assert store.open_conversation(vera.id) is None
    with pytest.raises(KeyError):
        store.close("c_missing", by, at(3))


def test_close_keeps_the_holder_and_a_system_author(store: Store, ann: Agent) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    change = store.close(conversation.id, Author("system", "", ""), at(2))
    assert change.conversation.agent_id == ann.id
    assert change.events[0].author == Author("system", "", "")


def test_seq_is_gapless_and_positions_increase(store: Store, ann: Agent, bob: Agent) -> None:
    vera = visitor(store)
    conversation = send(store, vera).conversation
    other = chat(store)  # interleaves positions, not seqs
    store.claim(conversation.id, ann, at(1))
    send(store, vera, t=2)
    store.agent_send(other.id, bob, "b1", "elsewhere", at(2))
    store.transfer(conversation.id, ann, bob, at(3))
    store.agent_send(conversation.id, bob, "b2", "hi", at(4))
    store.release(conversation.id, bob, at(5))
    send(store, vera, t=6)
    store.close(conversation.id, Author("visitor", vera.id, "Vera"), at(7))
    page = store.visitor_feed(vera.id, 0, 100)
    assert [e.seq for e in page.events] == list(range(1, 10))
    positions = [e.pos for e in page.events]
    assert positions == sorted(set(positions))
    final = store.get_conversation(conversation.id)
    assert final is not None and final.last_seq == 9 and final.pos == positions[-1]
    assert all(e.type in DURABLE_TYPES for e in page.events)
    assert page.upto == store.feed_position() == positions[-1]


# -- conversation lists ------------------------------------------------------------------
def test_set_node_takes_no_position(store: Store) -> None:
    conversation = chat(store)
    moved = store.set_node(conversation.id, "node-9")
    assert moved is not None and moved.node_id == "node-9" and moved.pos == conversation.pos
    assert store.get_conversation(conversation.id) == moved
    assert store.feed_position() == 1
    assert store.set_node("c_missing", "node-9") is None
    assert store.get_conversation("c_missing") is None


def test_list_conversations_newest_first_with_filters_and_paging(
    store: Store, ann: Agent, bob: Agent
) -> None:
    made = [chat(store, t=t) for t in (0, 1, 1, 1, 2, 3)]  # three share created_at
    store.claim(made[1].id, ann, at(4))
    store.claim(made[4].id, ann, at(4))
    store.claim(made[2].id, bob, at(4))
    store.close(made[3].id, ann.author, at(4))
    newest = sorted(made, key=lambda c: (c.created_at, c.id), reverse=True)
    ids = [c.id for c in newest]
    assert [c.id for c in store.list_conversations()] == ids
    assert [c.id for c in store.list_conversations(limit=2)] == ids[:2]
    assert [c.id for c in store.list_conversations(before=ids[1])] == ids[2:]
    assert [c.id for c in store.list_conversations(before=ids[2], limit=2)] == ids[3:5]
    assert store.list_conversations(before=ids[-1]) == []
    assert store.list_conversations(before="c_missing") == []
    assert store.list_conversations(limit=0) == []
    by_ann = [c.id for c in store.list_conversations(agent_id=ann.id)]
    assert by_ann == [i for i in ids if i in (made[1].id, made[4].id)]
    active = [c.id for c in store.list_conversations(status="active")]
    assert active == [i for i in ids if i in (made[1].id, made[2].id, made[4].id)]
    waiting = store.list_conversations(status="waiting", before=ids[0])
    assert [c.id for c in waiting] == [i for i in ids[1:] if i in (made[0].id, made[5].id)]
    assert [c.status for c in store.list_conversations(status="closed")] == ["closed"]
    assert store.list_conversations(status="active", agent_id=bob.id)[0].id == made[2].id


def test_waiting_queue_oldest_first(store: Store, ann: Agent) -> None:
    made = [chat(store, t=t) for t in (3, 1, 2, 1)]
    store.claim(made[2].id, ann, at(5))
    queue = store.waiting_queue()
    expected = sorted((made[0], made[1], made[3]), key=lambda c: (c.created_at, c.id))
    assert [c.id for c in queue] == [c.id for c in expected]
    assert all(c.status == "waiting" for c in queue)


# -- messages ---------------------------------------------------------------------------
def test_messages_paging(store: Store, ann: Agent) -> None:
    vera = visitor(store)
    conversation = send(store, vera, "m1").conversation  # seq 1
    store.agent_send(conversation.id, ann, "a1", "m2", at(1))  # joined 2, message 3
    for i in range(3, 7):  # seqs 4..7
        send(store, vera, f"m{i}", t=i)
    assert [m.body for m in store.messages(conversation.id)] == [f"m{i}" for i in range(1, 7)]
    assert all(m.type == "message" for m in store.messages(conversation.id))
    assert [m.seq for m in store.messages(conversation.id, after_seq=3)] == [4, 5, 6, 7]
    assert [m.seq for m in store.messages(conversation.id, after_seq=1, limit=2)] == [3, 4]
    assert [m.seq for m in store.messages(conversation.id, before_seq=6, limit=3)] == [3, 4, 5]
    assert [m.seq for m in store.messages(conversation.id, before_seq=2)] == [1]
    assert [m.seq for m in store.messages(conversation.id, after_seq=1, before_seq=7)] == [
        3,
        4,
        5,
        6,
    ]
    assert [m.seq for m in store.messages(conversation.id, after_seq=1, before_seq=7, limit=2)] == [
        3,
        4,
    ]
    assert store.messages(conversation.id, limit=0) == []
    assert store.messages("c_missing") == []


def test_numbers_out_of_any_column_range_are_answered(store: Store, ann: Agent) -> None:
    vera = visitor(store)
    conversation = send(store, vera).conversation
    huge = 10**30
    assert store.messages(conversation.id, after_seq=huge) == []
    assert len(store.messages(conversation.id, after_seq=-huge, limit=huge)) == 1
    assert len(store.messages(conversation.id, before_seq=huge, limit=huge)) == 1
    assert store.messages(conversation.id, before_seq=-huge) == []
    assert len(store.list_conversations(limit=huge)) == 1
    for page in (store.visitor_feed(vera.id, -huge, huge), store.agent_feed(ann.id, -huge, huge)):
        assert len(page.events) == 1 and (page.upto, page.more) == (1, False)
    for page in (store.visitor_feed(vera.id, huge, 10), store.agent_feed(ann.id, huge, 10)):
        assert page.events == [] and not page.conversations and page.upto == huge


BODIES = {
    "accents": "héllo wörld, ça va? Grüße",
    "emoji": "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 skin tone, 😀",
    "rtl": "مرحبا بالعالم — שלום עולם, mixed ‏abc‏ 123",
    "combining": "e\u0301 is not \u00e9; Z\u0351\u0308\u0324a\u0362l\u0310g\u0315o\u0353",
    "invisible": "zero\u200bwidth\u200djoiner\ufeffbom\u202eoverride",
    "whitespace": "  line one\nline two\r\n\ttabbed  \n",
    "sql": "'; DROP TABLE events; -- \\ % _",
    "planes": "\U0010ffff \U0001f600 \ufffd \u00a0",
    "long_ascii": "x" * 10_000,
    "long_astral": "😀" * 10_000,
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_bodies_round_trip_exactly(store: Store, ann: Agent, body: str) -> None:
    vera = visitor(store, "Zoë ‏עברית 李")
    result = store.visitor_send(vera, "k-" + body[:20], body, "node-1", at(0))
    reply = store.agent_send(result.conversation.id, ann, "a-" + body[:20], body, at(1))
    stored = store.messages(result.conversation.id)
    assert [m.body for m in stored] == [body, body]
    assert stored == [result.message, reply.message]
    assert stored[0].author == Author("visitor", vera.id, "Zoë ‏עברית 李")
    assert store.visitor_feed(vera.id, 0, 10).events[0].body == body


def test_times_round_trip_with_microseconds(store: Store) -> None:
    when = datetime(2030, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    result = store.visitor_send(visitor(store), "k1", "tick", "node-1", when)
    (stored,) = store.messages(result.conversation.id)
    assert stored.at == when and stored.at.utcoffset() == timedelta(0)
    conversation = store.get_conversation(result.conversation.id)
    assert conversation is not None and conversation.created_at == when
    assert conversation.created_at.utcoffset() == timedelta(0)


# -- feeds ------------------------------------------------------------------------------
def _scene(store: Store, bob: Agent) -> tuple[Visitor, Visitor, Conversation, Conversation]:
    """Positions 1-5: vera (1), walt (2), bob claims walt's (3), vera (4), walt (5)."""
    vera, walt = visitor(store), visitor(store, "Walt")
    first = send(store, vera, "v1", t=1).conversation
    second = send(store, walt, "w1", t=2).conversation
    store.claim(second.id, bob, at(3))
    send(store, vera, "v2", t=4)
    send(store, walt, "w2", t=5)
    return vera, walt, first, second


def test_feed_position_is_the_latest_commit(store: Store, bob: Agent) -> None:
    _scene(store, bob)
    assert store.feed_position() == 5


def test_visitor_feed_pages_through_the_visitors_own_events(store: Store, bob: Agent) -> None:
    vera, walt, first, second = _scene(store, bob)
    page = store.visitor_feed(walt.id, 0, 2)
    assert [e.pos for e in page.events] == [2, 3] and types(page.events) == [
        "message",
        "agent_joined",
    ]
    assert (page.upto, page.more) == (3, True) and not page.conversations
    page = store.visitor_feed(walt.id, page.upto, 2)
    assert [e.pos for e in page.events] == [5] and (page.upto, page.more) == (5, False)
    page = store.visitor_feed(vera.id, 0, 2)
    assert [e.body for e in page.events] == ["v1", "v2"] and (page.upto, page.more) == (5, False)
    page = store.visitor_feed(vera.id, 0, 1)
    assert [e.pos for e in page.events] == [1] and (page.upto, page.more) == (1, True)
    page = store.visitor_feed(vera.id, 5, 10)
    assert page.events == [] and (page.upto, page.more) == (5, False)
    page = store.visitor_feed(vera.id, 99, 10)  # a cursor from the future stays put
    assert page.events == [] and (page.upto, page.more) == (99, False)
    assert store.visitor_feed("v_nobody", 0, 10).upto == 5


def test_visitor_feed_spans_the_visitors_conversations(store: Store) -> None:
    vera = visitor(store)
    old = send(store, vera, "before", t=0).conversation
    store.close(old.id, Author("visitor", vera.id, "Vera"), at(1))
    new = send(store, vera, "after", t=2).conversation
    page = store.visitor_feed(vera.id, 0, 10)
    assert [(e.conversation_id, e.type) for e in page.events] == [
        (old.id, "message"),
        (old.id, "conversation_closed"),
        (new.id, "message"),
    ]


def test_agent_feed_pages_through_every_event(store: Store, ann: Agent, bob: Agent) -> None:
    _, _, first, second = _scene(store, bob)
    # Ann sees the waiting conversation; walt's is bob's now, so none of its events.
    page = store.agent_feed(ann.id, 0, 2)
    assert [e.pos for e in page.events] == [1] and (page.upto, page.more) == (2, True)
    assert list(page.conversations) == []  # both changed later than position 2
    page = store.agent_feed(ann.id, page.upto, 2)
    assert [e.pos for e in page.events] == [4] and (page.upto, page.more) == (4, True)
    assert [c.id for c in page.conversations] == [first.id]
    page = store.agent_feed(ann.id, page.upto, 2)
    assert page.events == [] and (page.upto, page.more) == (5, False)
    assert [c.id for c in page.conversations] == [second.id]  # every change, held or not
    page = store.agent_feed(ann.id, page.upto, 2)
    assert page.events == [] and page.conversations == [] and (page.upto, page.more) == (5, False)
    everything = store.agent_feed(bob.id, 0, 10)
    assert [e.pos for e in everything.events] == [1, 2, 3, 4, 5] and not everything.more
    assert [(c.id, c.pos) for c in everything.conversations] == [(first.id, 4), (second.id, 5)]
    assert store.agent_feed(bob.id, 9, 10).upto == 9


def test_agent_feed_follows_the_current_holder(
    store: Store, ann: Agent, bob: Agent, sue: Agent
) -> None:
    conversation = chat(store)
    store.claim(conversation.id, ann, at(1))
    assert types(store.agent_feed(ann.id, 0, 10).events) == ["message", "agent_joined"]
    assert store.agent_feed(bob.id, 0, 10).events == []
    assert store.agent_feed(sue.id, 0, 10).events == []  # supervisors see conversations, not events
    store.transfer(conversation.id, ann, bob, at(2))
    assert store.agent_feed(ann.id, 0, 10).events == []
    assert len(store.agent_feed(bob.id, 0, 10).events) == 4
    store.release(conversation.id, bob, at(3))  # waiting again: everyone's
    assert len(store.agent_feed(ann.id, 0, 10).events) == 5


def test_feeds_refuse_an_empty_page(store: Store, ann: Agent) -> None:
    vera = visitor(store)
    send(store, vera)
    with pytest.raises(ValueError):
        store.agent_feed(ann.id, 0, 0)
    with pytest.raises(ValueError):
        store.visitor_feed(vera.id, 0, 0)


# -- ratings ------------------------------------------------------------------------------
def test_ratings(store: Store) -> None:
    conversation = chat(store)
    assert store.get_rating(conversation.id) is None
    store.rate(conversation.id, 4, "quick and kind 👍", at(1))
    assert store.get_rating(conversation.id) == (4, "quick and kind 👍")
    store.rate(conversation.id, 2, "", at(2))
    assert store.get_rating(conversation.id) == (2, "")
    with pytest.raises(KeyError):
        store.rate("c_missing", 5, "", at(3))
    assert store.get_rating("c_missing") is None


def test_stored_event_shapes(store: Store, ann: Agent) -> None:
    conversation = chat(store)
    store.agent_send(conversation.id, ann, "a1", "hi", at(1))
    store.close(conversation.id, ann.author, at(2))
    events: list[StoredEvent] = list(store.agent_feed(ann.id, 0, 10).events)
    message, joined, reply, closed = events
    assert message.agent is None and message.author is not None and message.body == "hello"
    assert joined.author is None and joined.body is None and joined.client_msg_id is None
    assert reply.client_msg_id == "a1" and reply.agent is None
    assert closed.author == ann.author and closed.agent is None and closed.body is None
