"""Signed-in host users (``identify``), ephemeral events reaching parked polls,
and agent session life times."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from livesupport.clock import utcnow
from livesupport.signing import token_hash
from livesupport.store.base import AgentSession

from .conftest import API, AppFactory, Client, create_agent, new_agent, new_visitor


def identify_from_header(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The host's signed-in user, as a host's own auth middleware would set it."""
    user = environ.get("HTTP_X_TEST_USER")
    return {"id": user, "name": f"User {user}", "email": f"{user}@shop.example"} if user else None


def test_identified_users_appear_under_their_real_name(make_app: AppFactory) -> None:
    app = Client(make_app(identify=identify_from_header))
    answer = app.post_json(
        API + "/visitor/session",
        {"name": "I am the admin", "email": "admin@evil.example"},
        headers={"X-Test-User": "42"},
    )
    visitor = app.middleware.store.get_visitor(answer.json["visitor_id"])
    assert (visitor.name, visitor.email) == ("User 42", "42@shop.example")


def test_an_identified_user_is_one_visitor_on_every_browser(make_app: AppFactory) -> None:
    middleware = make_app(identify=identify_from_header)
    laptop, phone = Client(middleware), Client(middleware)
    first = laptop.post_json(API + "/visitor/session", {}, headers={"X-Test-User": "7"}).json
    second = phone.post_json(API + "/visitor/session", {}, headers={"X-Test-User": "7"}).json
    assert first["visitor_id"] == second["visitor_id"]


def test_another_user_on_the_same_browser_is_another_visitor(make_app: AppFactory) -> None:
    browser = Client(make_app(identify=identify_from_header))
    alice = browser.post_json(API + "/visitor/session", {}, headers={"X-Test-User": "alice"}).json
    bob = browser.post_json(API + "/visitor/session", {}, headers={"X-Test-User": "bob"}).json
    assert alice["visitor_id"] != bob["visitor_id"]
    # The browser's cookie now names bob's visitor, so alice's history stays hers.
    assert browser.get_api("/visitor/history").json == {"messages": []}


def _poll_in_background(client: Client, side: str, cursor: str, timeout: float = 10) -> Any:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(client.poll, cursor, timeout, side)
    pool.shutdown(wait=False)
    return future


def _parked(middleware: Any, count: int) -> None:
    """Wait (on the hub's own count, not a sleep) until ``count`` polls are parked."""
    ready = threading.Event()
    for _ in range(2000):
        if len(middleware.hub) >= count:
            ready.set()
            break
        ready.wait(0.005)
    assert ready.is_set(), "the poll never parked"


def test_agent_typing_reaches_the_parked_visitor_poll(make_app: AppFactory) -> None:
    middleware = make_app()
    visitor = new_visitor(Client(middleware))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    agent, _, _ = new_agent(Client(middleware))
    assert agent.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    cursor = visitor.poll(timeout=1)["cursor"]
    pending = _poll_in_background(visitor, "visitor", cursor)
    _parked(middleware, 1)
    assert agent.post_api(f"/agent/conversations/{cid}/typing", {"typing": True}).status_int == 204
    events = pending.result(10)["events"]
    assert [(e["type"], e["seq"], e["data"]["typing"]) for e in events] == [("typing", None, True)]
    assert events[0]["data"]["author"]["kind"] == "agent"


def test_visitor_typing_reaches_the_holding_agent_only(make_app: AppFactory) -> None:
    middleware = make_app()
    visitor = new_visitor(Client(middleware))
    cid = visitor.send("hello").json["message"]["conversation_id"]
    holder, _, _ = new_agent(Client(middleware))
    other, _, _ = new_agent(Client(middleware))
    holder.post_api(f"/agent/conversations/{cid}/claim")
    holder_cursor = holder.poll(timeout=1, side="agent")["cursor"]
    other_cursor = other.poll(timeout=1, side="agent")["cursor"]
    for_holder = _poll_in_background(holder, "agent", holder_cursor)
    for_other = _poll_in_background(other, "agent", other_cursor, timeout=2)
    _parked(middleware, 2)
    assert visitor.post_api("/visitor/typing", {"typing": True}).status_int == 204
    events = for_holder.result(10)["events"]
    assert [(e["type"], e["conversation_id"]) for e in events] == [("typing", cid)]
    # The other agent's poll was parked too, heard the notice, and kept nothing.
    assert for_other.result(10)["events"] == []


def test_waiting_visitors_hear_their_place_in_the_queue(make_app: AppFactory) -> None:
    middleware = make_app()
    first = new_visitor(Client(middleware))
    first.send("first in line")
    cursor = first.poll(timeout=1)["cursor"]
    pending = _poll_in_background(first, "visitor", cursor)
    _parked(middleware, 1)
    new_visitor(Client(middleware)).send("second in line")
    events = pending.result(10)["events"]
    assert [(e["type"], e["data"]["position"]) for e in events] == [("queue", 1)]


def _stale_session(middleware: Any, *, age: timedelta, idle: timedelta) -> tuple[Client, str]:
    agent = create_agent(middleware)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session = AgentSession(token_hash(token), agent.id, "csrf", now - age, now - idle)
    middleware.store.create_session(session)
    client = Client(middleware)
    client.set_cookie("ls_agent", middleware.ctx.signer.sign("agent", token))
    return client, session.token_hash


def test_sessions_end_after_the_idle_timeout(make_app: AppFactory) -> None:
    middleware = make_app(agent_session_idle=600)
    fresh, _ = _stale_session(middleware, age=timedelta(minutes=20), idle=timedelta(minutes=1))
    assert fresh.get_api("/agent/session").status_int == 200
    stale, _ = _stale_session(middleware, age=timedelta(minutes=20), idle=timedelta(minutes=11))
    assert stale.get_api("/agent/session").status_int == 401


def test_sessions_end_after_the_absolute_timeout(make_app: AppFactory) -> None:
    middleware = make_app(agent_session_max_age=3600)
    old, hashed = _stale_session(middleware, age=timedelta(hours=2), idle=timedelta(seconds=1))
    assert old.get_api("/agent/session").status_int == 401
    assert middleware.store.get_session(hashed) is None  # removed, not merely refused


def test_running_under_gevent_without_monkey_patching_is_reported(
    make_app: AppFactory, caplog: Any
) -> None:
    import gevent  # noqa: F401  (what a gevent server has imported)

    app = Client(make_app())
    with caplog.at_level("ERROR", logger="livesupport"):
        app.get(
            "/livesupport/healthz", extra_environ={"SERVER_SOFTWARE": "gevent/26.9 Python/3.11"}
        )
    assert "without monkey-patching" in caplog.text


def test_a_site_may_allow_shorter_messages_than_the_protocol(make_app: AppFactory) -> None:
    middleware = make_app(max_message_chars=20)
    visitor = new_visitor(Client(middleware))
    assert visitor.send("x" * 20).status_int == 201
    refused = visitor.send("x" * 21)
    assert refused.status_int == 422 and refused.json["error"]["code"] == "invalid"
    agent, _, _ = new_agent(Client(middleware))
    cid = visitor.poll(timeout=1)["events"][0]["conversation_id"]
    long_reply = {"client_msg_id": "long", "body": "y" * 21}
    assert agent.post_api(f"/agent/conversations/{cid}/messages", long_reply).status_int == 422
