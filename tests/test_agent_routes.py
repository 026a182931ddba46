"""The agent routes (what the console calls), per PROTOCOL.md, on every store backend."""

from __future__ import annotations

import time
from typing import Any

import pytest

from livesupport.routes import ROUTES

from .conftest import (
    AGENT_PASSWORD,
    API,
    AppFactory,
    Client,
    assert_error,
    create_agent,
    login,
    route_url,
    set_cookies,
)

CONVERSATION_KEYS = {
    "id",
    "status",
    "visitor",
    "agent_id",
    "created_at",
    "updated_at",
    "last_seq",
    "node_id",
}
MESSAGE_KEYS = {"id", "conversation_id", "seq", "client_msg_id", "author", "body", "at"}


def open_conversation(app: Client, visitor, text: str = "help me") -> tuple[Client, str]:
    """A visitor with a waiting conversation: ``(visitor client, conversation id)``."""
    client = visitor(app)
    response = client.send(text)
    assert response.status_int == 201, response.text
    return client, response.json["message"]["conversation_id"]


def durable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["seq"] is not None]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["type"], e["seq"]) for e in durable(events)]


def status_of(app: Client, cid: str) -> tuple[str, str | None]:
    conversation = app.middleware.store.get_conversation(cid)
    assert conversation is not None
    return conversation.status, conversation.agent_id


# -- login, session, logout ----------------------------------------------------------


def test_login_answer_and_cookie(app: Client) -> None:
    stored = create_agent(app.app, "supervisor", "Sam Super")
    response = app.post_json(
        API + "/agent/login", {"email": stored.email, "password": AGENT_PASSWORD}
    )
    assert response.status_int == 200
    assert set(response.json) == {"agent", "csrf_token"}
    agent = response.json["agent"]
    assert {"id", "name", "email", "role"} <= set(agent)
    assert agent["id"] == stored.id
    assert agent["name"] == "Sam Super"
    assert agent["email"] == stored.email
    assert agent["role"] == "supervisor"
    assert isinstance(response.json["csrf_token"], str) and len(response.json["csrf_token"]) >= 16
    assert response.headers["Cache-Control"] == "no-store"
    cookie = set_cookies(response)["ls_agent"]
    assert cookie["value"]
    assert cookie["path"] == "/livesupport"
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "strict"
    assert "secure" not in cookie
    assert "ls_vid" not in set_cookies(response)


def test_login_cookie_is_secure_on_https(app: Client) -> None:
    stored = create_agent(app.app)
    response = app.post_json(
        API + "/agent/login",
        {"email": stored.email, "password": AGENT_PASSWORD},
        extra_environ={"wsgi.url_scheme": "https"},
    )
    assert "secure" in set_cookies(response)["ls_agent"]


def test_login_refuses_bad_credentials_alike(app: Client) -> None:
    stored = create_agent(app.app)
    wrong = app.post_api("/agent/login", {"email": stored.email, "password": "wrong password"})
    unknown = app.post_api("/agent/login", {"email": "nobody@example.com", "password": "x"})
    assert_error(wrong, 401)
    assert_error(unknown, 401)
    assert wrong.body == unknown.body
    assert "ls_agent" not in set_cookies(wrong)
    assert "ls_agent" not in set_cookies(unknown)


def test_login_of_a_disabled_agent_is_refused_alike(app: Client) -> None:
    stored = create_agent(app.app)
    client = login(app.app, stored.email)
    app.middleware.store.update_agent(stored.id, disabled=True)
    response = app.post_api("/agent/login", {"email": stored.email, "password": AGENT_PASSWORD})
    assert_error(response, 401)
    unknown = app.post_api("/agent/login", {"email": "nobody@example.com", "password": "x"})
    assert response.body == unknown.body
    # A session opened before the account was disabled no longer works either.
    assert_error(client.get_api("/agent/session"), 401)


def test_login_is_rate_limited_after_repeated_failures(make_app: AppFactory) -> None:
    app = Client(make_app(login_attempts=3))
    stored = create_agent(app.app)
    for _ in range(3):
        response = app.post_api("/agent/login", {"email": stored.email, "password": "nope"})
        assert_error(response, 401)
    limited = app.post_api("/agent/login", {"email": stored.email, "password": "nope"})
    assert_error(limited, 429)
    retry = limited.headers.get("Retry-After", "")
    assert retry.isdigit() and 1 <= int(retry) <= 15 * 60, retry
    # The right password does not get around the limit.
    right = app.post_api("/agent/login", {"email": stored.email, "password": AGENT_PASSWORD})
    assert_error(right, 429)
    assert "ls_agent" not in set_cookies(right)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com"},
        {"password": "x"},
        {"email": "", "password": "x"},
        {"email": "a@example.com", "password": ""},
        {"email": 5, "password": "x"},
        {"email": "a@example.com", "password": ["x"]},
    ],
)
def test_login_refuses_invalid_bodies(shared_app: Client, body: dict[str, Any]) -> None:
    assert_error(shared_app.post_api("/agent/login", body), 422)


def test_session_returns_the_agent_and_its_csrf_token(app: Client, agent) -> None:
    client, csrf, agent_json = agent(app)
    response = client.get_api("/agent/session")
    assert response.status_int == 200
    assert response.json["csrf_token"] == csrf
    assert response.json["agent"]["id"] == agent_json["id"]
    assert {"id", "name", "email", "role"} <= set(response.json["agent"])
    assert_error(app.get_api("/agent/session"), 401)


def test_logout_clears_the_cookie_and_revokes_the_session(app: Client, agent) -> None:
    client, csrf, _ = agent(app)
    old_cookie = client.cookies["ls_agent"]
    response = client.post_api("/agent/logout")
    assert response.status_int == 204, response.text
    assert response.body == b""
    cleared = set_cookies(response)["ls_agent"]
    assert cleared["value"] in ("", '""')
    assert cleared["path"] == "/livesupport"
    assert cleared.get("max-age") == "0" or "1970" in cleared.get("expires", "")
    # Replaying the old cookie (a stolen copy, say) no longer works.
    replay = Client(app.app)
    replay.set_cookie("ls_agent", old_cookie)
    assert_error(replay.get_api("/agent/session"), 401)
    assert_error(
        replay.post_api("/agent/status", {"status": "online"}, headers={"X-CSRF-Token": csrf}), 401
    )


def test_logout_releases_held_conversations(app: Client, visitor, agent) -> None:
    client, _, me = agent(app)
    guest, cid = open_conversation(app, visitor)
    assert client.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    assert client.post_api("/agent/logout").status_int == 204
    assert status_of(app, cid) == ("waiting", None)
    events = durable(guest.poll()["events"])
    assert kinds(events) == [("message", 1), ("agent_joined", 2), ("agent_left", 3)]
    assert events[2]["data"]["agent"]["id"] == me["id"]


# -- status, lists -------------------------------------------------------------------


def test_status(app: Client, agent) -> None:
    client, _, _ = agent(app)
    for status in ("away", "offline", "online"):
        response = client.post_api("/agent/status", {"status": status})
        assert response.status_int == 204, response.text
        assert response.body == b""
    for body in ({}, {"status": "busy"}, {"status": None}, {"status": ["online"]}):
        assert_error(client.post_api("/agent/status", body), 422)


def test_agents_list(app: Client, agent) -> None:
    client, _, me = agent(app)
    other = create_agent(app.app)
    response = client.get_api("/agent/agents")
    assert response.status_int == 200
    ids = [a["id"] for a in response.json["agents"]]
    assert me["id"] in ids and other.id in ids


def test_conversation_list_filters_and_pages(app: Client, visitor, agent) -> None:
    client, _, me = agent(app)
    _, waiting = open_conversation(app, visitor)
    _, active = open_conversation(app, visitor)
    closing, closed = open_conversation(app, visitor)
    client.post_api(f"/agent/conversations/{active}/claim")
    closing.post_api("/visitor/close")

    def ids(**params: Any) -> list[str]:
        response = client.get_api("/agent/conversations", params)
        assert response.status_int == 200, response.text
        for conversation in response.json["conversations"]:
            assert set(conversation) == CONVERSATION_KEYS
        return [c["id"] for c in response.json["conversations"]]

    everything = client.get_api("/agent/conversations").json["conversations"]
    full = [c["id"] for c in everything]
    assert sorted(full) == sorted([waiting, active, closed])
    created = [c["created_at"] for c in everything]
    assert created == sorted(created, reverse=True)  # newest first
    assert ids(status="waiting") == [waiting]
    assert ids(status="active") == [active]
    assert ids(status="closed") == [closed]
    by_id = {c["id"]: c for c in everything}
    assert by_id[active]["agent_id"] == me["id"] and by_id[active]["status"] == "active"
    assert ids(limit=1) == full[:1]
    assert ids(limit=2) == full[:2]
    assert ids(before=full[0]) == full[1:]
    assert ids(before=full[1], limit=1) == full[2:3]
    assert ids(before=full[2]) == []
    assert ids(before="c_unknown") == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "open"},
        {"status": "WAITING"},
        {"limit": "x"},
        {"limit": "1.5"},
        {"limit": "9" * 40},
    ],
)
def test_conversation_list_refuses_bad_query(app: Client, agent, params: dict[str, str]) -> None:
    client, _, _ = agent(app)
    assert_error(client.get_api("/agent/conversations", params), 400)


def test_conversation_detail(app: Client, visitor, agent) -> None:
    client, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor, "one")
    guest.send("two")
    client.post_api(f"/agent/conversations/{cid}/claim")
    guest.send("three")
    response = client.get_api(f"/agent/conversations/{cid}")
    assert response.status_int == 200
    assert set(response.json) == {"conversation", "messages"}
    assert set(response.json["conversation"]) == CONVERSATION_KEYS
    assert response.json["conversation"]["last_seq"] == 4
    messages = response.json["messages"]
    assert all(set(m) == MESSAGE_KEYS for m in messages)
    assert [(m["seq"], m["body"]) for m in messages] == [(1, "one"), (2, "two"), (4, "three")]
    after = client.get_api(f"/agent/conversations/{cid}", {"after_seq": "2"}).json["messages"]
    assert [m["body"] for m in after] == ["three"]
    assert_error(client.get_api("/agent/conversations/c_nosuchthing"), 404)
    assert_error(client.get_api(f"/agent/conversations/{cid}", {"after_seq": "x"}), 400)


# -- claim, send, typing, transfer, close ----------------------------------------------


def test_claim(app: Client, visitor, agent) -> None:
    client, _, me = agent(app)
    other, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor)
    response = client.post_api(f"/agent/conversations/{cid}/claim")
    assert response.status_int == 200, response.text
    conversation = response.json["conversation"]
    assert set(conversation) == CONVERSATION_KEYS
    assert conversation["status"] == "active" and conversation["agent_id"] == me["id"]
    assert conversation["last_seq"] == 2
    # Claiming again changes nothing; another agent gets 409.
    assert client.post_api(f"/agent/conversations/{cid}/claim").status_int == 200
    assert_error(other.post_api(f"/agent/conversations/{cid}/claim"), 409)
    assert status_of(app, cid) == ("active", me["id"])
    events = durable(guest.poll()["events"])
    assert kinds(events) == [("message", 1), ("agent_joined", 2)]
    assert events[1]["data"] == {"agent": {"id": me["id"], "name": me["name"]}}


def test_claim_of_a_closed_or_unknown_conversation(app: Client, visitor, agent) -> None:
    client, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor)
    guest.post_api("/visitor/close")
    assert_error(client.post_api(f"/agent/conversations/{cid}/claim"), 409)
    assert_error(client.post_api("/agent/conversations/c_nosuchthing/claim"), 404)


def test_send_claims_a_waiting_conversation_first(app: Client, visitor, agent) -> None:
    client, _, me = agent(app)
    guest, cid = open_conversation(app, visitor)
    body = {"client_msg_id": "reply-1", "body": "Hello, how can I help?"}
    response = client.post_api(f"/agent/conversations/{cid}/messages", body)
    assert response.status_int == 201, response.text
    message = response.json["message"]
    assert set(message) == MESSAGE_KEYS
    assert message["seq"] == 3
    assert message["author"] == {"kind": "agent", "id": me["id"], "name": me["name"]}
    assert status_of(app, cid) == ("active", me["id"])
    events = durable(guest.poll()["events"])
    assert kinds(events) == [("message", 1), ("agent_joined", 2), ("message", 3)]
    assert events[2]["data"] == message
    repeat = client.post_api(
        f"/agent/conversations/{cid}/messages", {"client_msg_id": "reply-1", "body": "other"}
    )
    assert repeat.status_int == 200
    assert repeat.json["message"] == message


def test_send_to_a_closed_or_foreign_conversation(app: Client, visitor, agent) -> None:
    holder, _, _ = agent(app)
    other, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor)
    holder.post_api(f"/agent/conversations/{cid}/claim")
    body = {"client_msg_id": "x-1", "body": "mine now?"}
    assert_error(other.post_api(f"/agent/conversations/{cid}/messages", body), 409)
    guest.post_api("/visitor/close")
    body = {"client_msg_id": "x-2", "body": "too late"}
    assert_error(holder.post_api(f"/agent/conversations/{cid}/messages", body), 409)
    assert_error(holder.post_api("/agent/conversations/c_nosuchthing/messages", body), 404)
    assert [e["type"] for e in durable(guest.poll()["events"])] == [
        "message",
        "agent_joined",
        "conversation_closed",
    ]


def test_a_supervisor_may_send_to_a_held_conversation(app: Client, visitor, agent) -> None:
    holder, _, holder_json = agent(app)
    boss, _, boss_json = agent(app, role="supervisor")
    guest, cid = open_conversation(app, visitor)
    holder.post_api(f"/agent/conversations/{cid}/claim")
    response = boss.post_api(
        f"/agent/conversations/{cid}/messages", {"client_msg_id": "s-1", "body": "Supervising"}
    )
    assert response.status_int == 201, response.text
    assert response.json["message"]["author"]["id"] == boss_json["id"]
    assert durable(guest.poll()["events"])[-1]["data"]["body"] == "Supervising"


def test_agent_send_refuses_invalid_bodies(app: Client, visitor, agent) -> None:
    client, _, _ = agent(app)
    _, cid = open_conversation(app, visitor)
    for body in (
        {},
        {"client_msg_id": "a"},
        {"body": "x"},
        {"client_msg_id": "a b", "body": "x"},
        {"client_msg_id": "a", "body": ""},
        {"client_msg_id": "a", "body": "x" * 10_001},
        {"client_msg_id": "a", "body": "\x00"},
    ):
        assert_error(client.post_api(f"/agent/conversations/{cid}/messages", body), 422)
    assert status_of(app, cid) == ("waiting", None)


def test_typing(app: Client, visitor, agent) -> None:
    client, _, _ = agent(app)
    _, cid = open_conversation(app, visitor)
    client.post_api(f"/agent/conversations/{cid}/claim")
    for typing in (True, False):
        response = client.post_api(f"/agent/conversations/{cid}/typing", {"typing": typing})
        assert response.status_int == 204, response.text
        assert response.body == b""
    assert_error(client.post_api(f"/agent/conversations/{cid}/typing", {"typing": "y"}), 422)
    assert_error(
        client.post_api("/agent/conversations/c_nosuchthing/typing", {"typing": True}), 404
    )


def test_transfer(app: Client, visitor, agent) -> None:
    first, _, first_json = agent(app)
    second, _, second_json = agent(app)
    guest, cid = open_conversation(app, visitor)
    first.post_api(f"/agent/conversations/{cid}/claim")
    response = first.post_api(
        f"/agent/conversations/{cid}/transfer", {"agent_id": second_json["id"]}
    )
    assert response.status_int == 200, response.text
    conversation = response.json["conversation"]
    assert set(conversation) == CONVERSATION_KEYS
    assert conversation["agent_id"] == second_json["id"]
    assert conversation["status"] == "active"
    events = durable(guest.poll()["events"])
    assert kinds(events) == [
        ("message", 1),
        ("agent_joined", 2),
        ("agent_left", 3),
        ("transferred", 4),
    ]
    assert events[2]["data"]["agent"]["id"] == first_json["id"]
    assert events[3]["data"] == {"agent": {"id": second_json["id"], "name": second_json["name"]}}
    # The new holder may now send; the previous one may not.
    ok = second.post_api(
        f"/agent/conversations/{cid}/messages",
        {"client_msg_id": "t-1", "body": "I'll take it from here"},
    )
    assert ok.status_int == 201
    late = first.post_api(
        f"/agent/conversations/{cid}/messages", {"client_msg_id": "t-2", "body": "me again"}
    )
    assert_error(late, 409)


def test_transfer_refusals(app: Client, visitor, agent) -> None:
    holder, _, _ = agent(app)
    other, _, other_json = agent(app)
    guest, cid = open_conversation(app, visitor)
    holder.post_api(f"/agent/conversations/{cid}/claim")
    path = f"/agent/conversations/{cid}/transfer"
    assert_error(holder.post_api(path, {"agent_id": "a_nosuchagent"}), 422)
    assert_error(holder.post_api(path, {"agent_id": ""}), 422)
    assert_error(holder.post_api(path, {"agent_id": 5}), 422)
    assert_error(holder.post_api(path, {}), 422)
    disabled = create_agent(app.app)
    app.middleware.store.update_agent(disabled.id, disabled=True)
    assert_error(holder.post_api(path, {"agent_id": disabled.id}), 422)
    # Only the holder (or a supervisor) transfers.
    assert_error(other.post_api(path, {"agent_id": other_json["id"]}), 409)
    assert_error(
        holder.post_api(
            "/agent/conversations/c_nosuchthing/transfer", {"agent_id": other_json["id"]}
        ),
        404,
    )
    guest.post_api("/visitor/close")
    assert_error(holder.post_api(path, {"agent_id": other_json["id"]}), 409)


def test_close(app: Client, visitor, agent) -> None:
    holder, _, me = agent(app)
    other, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor)
    holder.post_api(f"/agent/conversations/{cid}/claim")
    assert_error(other.post_api(f"/agent/conversations/{cid}/close"), 409)
    response = holder.post_api(f"/agent/conversations/{cid}/close")
    assert response.status_int == 200, response.text
    conversation = response.json["conversation"]
    assert set(conversation) == CONVERSATION_KEYS
    assert conversation["status"] == "closed"
    events = durable(guest.poll()["events"])
    assert kinds(events) == [("message", 1), ("agent_joined", 2), ("conversation_closed", 3)]
    assert events[2]["data"]["status"] == "closed"
    assert events[2]["data"]["id"] == cid
    assert_error(holder.post_api("/agent/conversations/c_nosuchthing/close"), 404)


def test_a_supervisor_may_close_a_held_conversation(app: Client, visitor, agent) -> None:
    holder, _, _ = agent(app)
    boss, _, _ = agent(app, role="supervisor")
    _, cid = open_conversation(app, visitor)
    holder.post_api(f"/agent/conversations/{cid}/claim")
    response = boss.post_api(f"/agent/conversations/{cid}/close")
    assert response.status_int == 200, response.text
    assert status_of(app, cid)[0] == "closed"


# -- poll ----------------------------------------------------------------------------


def test_poll_starts_from_now_then_sees_waiting_and_held_conversations(
    app: Client, visitor, agent
) -> None:
    client, _, me = agent(app)
    open_conversation(app, visitor, "before the agent polled")
    started = time.monotonic()
    first = client.poll(side="agent")
    assert time.monotonic() - started >= 0.9  # nothing new: held until the timeout
    assert first["events"] == [] and first["more"] is False
    guest, cid = open_conversation(app, visitor, "new visitor")
    second = client.poll(first["cursor"], side="agent")
    types = [(e["type"], e["conversation_id"]) for e in second["events"]]
    assert ("conversation_waiting", cid) in types
    assert ("message", cid) in types
    waiting = next(e for e in second["events"] if e["type"] == "conversation_waiting")
    assert waiting["seq"] is None
    assert set(waiting["data"]) == CONVERSATION_KEYS
    assert waiting["data"]["status"] == "waiting" and waiting["data"]["id"] == cid
    assert all(e["data"].get("body") != "before the agent polled" for e in second["events"])
    client.post_api(f"/agent/conversations/{cid}/claim")
    third = client.poll(second["cursor"], side="agent")
    guest.send("to the holder")
    fourth = client.poll(third["cursor"], side="agent")
    bodies = [e["data"]["body"] for e in fourth["events"] if e["type"] == "message"]
    assert bodies == ["to the holder"]


def test_poll_leaves_out_messages_of_conversations_held_by_others(
    app: Client, visitor, agent
) -> None:
    me, _, _ = agent(app)
    other, _, _ = agent(app)
    guest, cid = open_conversation(app, visitor)
    other.post_api(f"/agent/conversations/{cid}/claim")
    cursor = me.poll(side="agent")["cursor"]
    guest.send("for the other agent only")
    answer = me.poll(cursor, side="agent")
    assert not [e for e in answer["events"] if e["type"] == "message"], answer
    assert "for the other agent only" not in str(answer)
    # The cursor is this agent's only: another agent's poll refuses it, and so does a
    # tampered copy.
    assert_error(other.get_api("/agent/poll", {"cursor": cursor}), 400)
    payload, _, mac = cursor.rpartition(".")
    tampered = payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert_error(me.get_api("/agent/poll", {"cursor": tampered}), 400)


def test_poll_answers_at_once_when_other_agents_fill_the_feed(app: Client, visitor, agent) -> None:
    me, _, _ = agent(app)
    busy, _, _ = agent(app)
    _, held = open_conversation(app, visitor)
    busy.post_api(f"/agent/conversations/{held}/claim")
    cursor = me.poll(side="agent")["cursor"]
    for i in range(250):
        path = f"/agent/conversations/{held}/messages"
        assert busy.post_api(path, {"client_msg_id": f"n{i}", "body": "noise"}).status_int == 201
    _, fresh = open_conversation(app, visitor, "a new visitor")
    seen: list[str] = []
    started = time.monotonic()
    for _ in range(5):
        answer = me.poll(cursor, timeout=2, side="agent")
        seen += [e["type"] for e in answer["events"] if e["conversation_id"] == fresh]
        cursor = answer["cursor"]
        if not answer["more"]:
            break
    assert "conversation_waiting" in seen
    assert time.monotonic() - started < 1.5  # events existed: every page at once


def test_poll_refuses_bad_cursors_and_timeouts(app: Client, visitor, agent) -> None:
    client, _, _ = agent(app)
    guest = visitor(app)
    guest.send("hi")
    visitor_cursor = guest.poll()["cursor"]
    for params in (
        {"cursor": visitor_cursor},
        {"cursor": "garbage"},
        {"timeout": "soon"},
        {"timeout": "nan"},
    ):
        assert_error(client.get_api("/agent/poll", params), 400)


# -- sessions and CSRF on every agent route ---------------------------------------------

CSRF_ROUTES = [r for r in ROUTES if r.csrf]
AGENT_ROUTES = [r for r in ROUTES if r.auth == "agent"]
VALID_BODIES: dict[str, Any] = {
    "agent_status": {"status": "online"},
    "agent_send": {"client_msg_id": "csrf-1", "body": "hi"},
    "agent_typing": {"typing": True},
    "agent_transfer": {"agent_id": "<other>"},
}


def _request(client: Client, route, cid: str, other_id: str, headers: dict[str, str]) -> Any:
    url = route_url(route, cid=cid)
    if route.method == "GET":
        return client.get(url, {"timeout": "1"}, headers=headers, expect_errors=True)
    body = VALID_BODIES.get(route.endpoint)
    if body is None:
        return client.post(url, headers=headers, expect_errors=True)
    if body.get("agent_id") == "<other>":
        body = {"agent_id": other_id}
    return client.post_json(url, body, headers=headers, expect_errors=True)


def test_not_every_agent_route_is_csrf_free() -> None:
    assert {r.endpoint for r in CSRF_ROUTES} >= {
        "agent_logout",
        "agent_status",
        "agent_claim",
        "agent_send",
        "agent_typing",
        "agent_transfer",
        "agent_close",
    }
    assert all(r.method == "POST" for r in CSRF_ROUTES)
    assert {r.endpoint for r in ROUTES if r.method == "POST" and r.side == "agent"} - {
        r.endpoint for r in CSRF_ROUTES
    } == {"agent_login"}


def test_state_changing_routes_need_the_sessions_csrf_token(app: Client, visitor, agent) -> None:
    client, csrf, me = agent(app)
    other, other_csrf, other_json = agent(app)
    bare = Client(app.app, cookiejar=client.cookiejar)  # the session's cookie, no token
    wrong_case = csrf.upper() if csrf.upper() != csrf else csrf.lower()
    refused: list[str] = []
    for route in CSRF_ROUTES:
        _, cid = open_conversation(app, visitor)
        for headers in (
            {},
            {"X-CSRF-Token": ""},
            {"X-CSRF-Token": other_csrf},
            {"X-CSRF-Token": csrf[:-1]},
            {"X-CSRF-Token": csrf + "x"},
            {"X-CSRF-Token": wrong_case},
        ):
            response = _request(bare, route, cid, other_json["id"], headers)
            assert_error(response, 403)
            refused.append(route.endpoint)
        # Nothing happened: still signed in, the conversation untouched.
        assert client.get_api("/agent/session").status_int == 200, route.endpoint
        assert status_of(app, cid) == ("waiting", None), route.endpoint
        assert len(app.middleware.store.messages(cid)) == 1, route.endpoint
    assert set(refused) == {r.endpoint for r in CSRF_ROUTES}


def test_agent_routes_need_a_session_before_anything_else(app: Client, visitor, agent) -> None:
    client, csrf, me = agent(app)
    real = client.cookies["ls_agent"]
    payload, _, mac = real.rpartition(".")
    tampered = payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for route in AGENT_ROUTES:
        _, cid = open_conversation(app, visitor)
        for cookie in (None, "", "garbage", tampered, "x" * 600, real + "x"):
            for headers in ({}, {"X-CSRF-Token": csrf}):
                stranger = Client(app.app)
                if cookie is not None:
                    stranger.set_cookie("ls_agent", cookie)
                response = _request(stranger, route, cid, me["id"], headers)
                assert_error(response, 401)  # 401 takes precedence over 403
        assert status_of(app, cid) == ("waiting", None), route.endpoint
