"""The visitor routes (what the widget calls), per PROTOCOL.md, on every store backend."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from livesupport.routes import ROUTES
from livesupport.signing import Signer

from .conftest import API, SECRET_KEY, AppFactory, Client, assert_error, route_url, set_cookies

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MESSAGE_KEYS = {"id", "conversation_id", "seq", "client_msg_id", "author", "body", "at"}
EVENT_KEYS = {"type", "conversation_id", "seq", "at", "data"}
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
SESSION_KEYS = {"visitor_id", "conversation_id", "cursor", "node_id", "agents_online"}
ONE_YEAR = 365 * 24 * 60 * 60


def post_utf8(client: Client, path: str, value: Any) -> Any:
    """POST ``value`` as raw UTF-8 JSON (no ``\\u`` escapes), as a browser's JSON.stringify does."""
    data = json.dumps(value, ensure_ascii=False).encode("utf-8")
    return client.post_raw(path, data)


def durable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["seq"] is not None]


# -- session ---------------------------------------------------------------------


def test_session_answer_and_cookies(app: Client) -> None:
    response = app.post_json(API + "/visitor/session", {"name": "Ann", "page": "/shop"})
    assert response.status_int == 200
    data = response.json
    assert set(data) == SESSION_KEYS
    assert data["conversation_id"] is None
    assert data["node_id"] == "web-1"
    assert data["agents_online"] is False
    assert isinstance(data["visitor_id"], str) and data["visitor_id"]
    assert isinstance(data["cursor"], str) and data["cursor"]
    assert response.headers["Cache-Control"] == "no-store"

    cookies = set_cookies(response)
    vid, node = cookies["ls_vid"], cookies["ls_node"]
    for cookie in (vid, node):
        assert "httponly" in cookie
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/"
        assert "secure" not in cookie  # plain HTTP
        assert "domain" not in cookie
    assert vid["max-age"] == str(ONE_YEAR)
    assert node["value"].startswith("web-1.")
    assert len(node["value"]) > len("web-1.")
    assert "max-age" not in node and "expires" not in node  # a session cookie


def test_session_cookies_are_secure_on_https(app: Client) -> None:
    response = app.post_json(
        API + "/visitor/session", {}, extra_environ={"wsgi.url_scheme": "https"}
    )
    cookies = set_cookies(response)
    assert "secure" in cookies["ls_vid"]
    assert "secure" in cookies["ls_node"]


def test_session_cookie_max_age_is_configurable(make_app: AppFactory) -> None:
    client = Client(make_app(visitor_cookie_max_age=3600))
    response = client.post_json(API + "/visitor/session", {})
    assert set_cookies(response)["ls_vid"]["max-age"] == "3600"


def test_session_without_body(shared_app: Client) -> None:
    response = shared_app.post(API + "/visitor/session")
    assert response.status_int == 200
    assert set(response.json) == SESSION_KEYS


def test_session_repeated_with_cookies_is_the_same_visitor(app: Client, visitor) -> None:
    client = visitor(app)
    again = client.post_json(API + "/visitor/session", {"name": "Ann"})
    assert again.json["visitor_id"] == client.session["visitor_id"]
    other = visitor(app)
    assert other.session["visitor_id"] != client.session["visitor_id"]


def test_session_with_a_tampered_cookie_starts_a_new_visitor(app: Client, visitor) -> None:
    client = visitor(app)
    real = client.cookies["ls_vid"]
    forged = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
    client.reset()
    client.set_cookie("ls_vid", forged)
    response = client.post_json(API + "/visitor/session", {})
    assert response.json["visitor_id"] != client.session["visitor_id"]


def test_session_names_the_open_conversation(app: Client, visitor) -> None:
    client = visitor(app)
    message = client.send("hello").json["message"]
    again = client.post_json(API + "/visitor/session", {})
    assert again.json["conversation_id"] == message["conversation_id"]


def test_session_cursor_points_after_the_latest_event(app: Client, visitor) -> None:
    client = visitor(app)
    client.send("one")
    client.send("two")
    cursor = client.post_json(API + "/visitor/session", {}).json["cursor"]
    third = client.send("three").json["message"]
    answer = client.poll(cursor)
    assert [e["data"]["body"] for e in durable(answer["events"])] == ["three"]
    assert durable(answer["events"])[0]["data"] == third


def test_session_agents_online_after_an_agent_signs_in(app: Client, visitor, agent) -> None:
    assert visitor(app).session["agents_online"] is False
    agent_client, csrf, _ = agent(app)
    assert visitor(app).session["agents_online"] is True
    away = agent_client.post_api("/agent/status", {"status": "away"})
    assert away.status_int == 204
    assert visitor(app).session["agents_online"] is False


@pytest.mark.parametrize(
    "body",
    [{"name": "x" * 201}, {"name": 5}, {"email": ["a"]}, {"locale": "x" * 36}, {"page": None}],
)
def test_session_refuses_invalid_fields(shared_app: Client, body: dict[str, Any]) -> None:
    assert_error(shared_app.post_api("/visitor/session", body), 422)


# -- send ------------------------------------------------------------------------


def test_send_answers_201_with_the_message(app: Client, visitor) -> None:
    client = visitor(app)
    response = client.send("Hello?", cmid="first-1")
    assert response.status_int == 201
    assert set(response.json) == {"message"}
    message = response.json["message"]
    assert set(message) == MESSAGE_KEYS
    assert message["seq"] == 1
    assert message["client_msg_id"] == "first-1"
    assert message["body"] == "Hello?"
    assert message["author"]["kind"] == "visitor"
    assert message["author"]["id"] == client.session["visitor_id"]
    assert TIME.match(message["at"])
    assert response.headers["Cache-Control"] == "no-store"


def test_send_repeat_returns_200_and_the_first_message(app: Client, visitor) -> None:
    client = visitor(app)
    first = client.send("original", cmid="dup").json["message"]
    repeat = client.send("a different body", cmid="dup")
    assert repeat.status_int == 200
    assert repeat.json["message"] == first
    history = client.get_api("/visitor/history").json["messages"]
    assert [m["body"] for m in history] == ["original"]


def test_send_opens_a_waiting_conversation(app: Client, visitor) -> None:
    client = visitor(app)
    first = client.send("one").json["message"]
    second = client.send("two").json["message"]
    assert first["conversation_id"] == second["conversation_id"]
    assert second["seq"] == 2
    conversation = app.middleware.store.get_conversation(first["conversation_id"])
    assert conversation is not None and conversation.status == "waiting"
    assert conversation.visitor_id == client.session["visitor_id"]


def test_send_accepts_client_msg_ids(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    for cmid in ["a", "Z", "0", "-", "_", "aZ09_-" * 10 + "abcd"]:
        assert len(cmid) <= 64
        response = client.send("hi", cmid=cmid)
        assert response.status_int == 201, response.text
        assert response.json["message"]["client_msg_id"] == cmid


@pytest.mark.parametrize(
    "cmid",
    ["", "a" * 65, "a b", "a.b", "a/b", "é", "a\n", "a\x00", "𝔞", 5, None, ["a"], {"a": 1}, True],
)
def test_send_refuses_bad_client_msg_ids(shared_app: Client, visitor, cmid: Any) -> None:
    client = visitor(shared_app)
    assert_error(client.post_api("/visitor/messages", {"client_msg_id": cmid, "body": "hi"}), 422)


def test_send_without_client_msg_id_or_body(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    assert_error(client.post_api("/visitor/messages", {"body": "hi"}), 422)
    assert_error(client.post_api("/visitor/messages", {"client_msg_id": "x"}), 422)
    assert_error(client.post_api("/visitor/messages", {}), 422)


def test_client_msg_id_is_unique_across_the_visitors_conversations(app: Client, visitor) -> None:
    client = visitor(app)
    first = client.send("in the first conversation", cmid="same").json["message"]
    assert client.post_api("/visitor/close").status_int == 200
    repeat = client.send("after closing", cmid="same")
    assert repeat.status_int == 200
    assert repeat.json["message"] == first
    assert app.middleware.store.open_conversation(client.session["visitor_id"]) is None


def test_client_msg_id_is_per_sender(app: Client, visitor) -> None:
    one, two = visitor(app), visitor(app)
    a = one.send("from one", cmid="shared")
    b = two.send("from two", cmid="shared")
    assert a.status_int == b.status_int == 201
    assert a.json["message"]["id"] != b.json["message"]["id"]
    assert b.json["message"]["body"] == "from two"


@pytest.mark.parametrize(
    "body",
    ["x", " ", "x" * 10_000, "😀" * 10_000, "é" * 10_000],
    ids=["one-char", "one-space", "10000-ascii", "10000-astral", "10000-latin"],
)
def test_send_accepts_bodies_of_1_to_10000_characters(
    shared_app: Client, visitor, body: str
) -> None:
    client = visitor(shared_app)
    response = post_utf8(client, "/api/v1/visitor/messages", {"client_msg_id": "b", "body": body})
    assert response.status_int == 201, response.text
    assert response.json["message"]["body"] == body


@pytest.mark.parametrize(
    "body",
    ["", "x" * 10_001, "😀" * 10_001, "nul \x00 inside", "\x00", 5, None, ["x"], {"x": 1}, True],
    ids=[
        "empty",
        "10001-ascii",
        "10001-astral",
        "nul-inside",
        "nul",
        "int",
        "null",
        "list",
        "object",
        "bool",
    ],
)
def test_send_refuses_bad_bodies(shared_app: Client, visitor, body: Any) -> None:
    client = visitor(shared_app)
    response = post_utf8(client, "/api/v1/visitor/messages", {"client_msg_id": "b", "body": body})
    assert_error(response, 422)
    assert client.get_api("/visitor/history").json == {"messages": []}


ROUND_TRIP = {
    "emoji-zwj": "👩\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇫🇷 👍🏽",
    "rtl": "مرحبا بالعالم — שלום עולם \u202eevil\u202c \u200f",
    "combining": "e\u0301 a\u0308\u0323 Z\u0336\u0337 \u0915\u094d\u0937",
    "whitespace": "  leading and trailing  \t\n\r\n \u00a0\u2003\u3000 ",
    "line-separators": "a\u2028b\u2029c\x85d",
    "controls": "\x01\x07\x1b[31m\x7f",
    "html": "<script>alert(1)</script> &amp; &lt; </body>",
    "bom-and-invisibles": "\ufeffstart\u200b\u2060end\ufeff",
    "astral-edge": "\U0001f600\U00010000\U0010fffd",
    "quotes-backslashes": "\"\\\"\\\\ 'single' \\u0000 literally",
    "newlines-only": "\n\n\n",
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_bodies_round_trip_exactly(shared_app: Client, visitor, name: str) -> None:
    """Sent as raw UTF-8 and as ``\\u`` escapes: stored and returned exactly as sent."""
    text = ROUND_TRIP[name]
    client = visitor(shared_app)
    raw = post_utf8(client, "/api/v1/visitor/messages", {"client_msg_id": "raw", "body": text})
    assert raw.status_int == 201, raw.text
    escaped = client.post_api("/visitor/messages", {"client_msg_id": "esc", "body": text})
    assert escaped.status_int == 201, escaped.text
    assert raw.json["message"]["body"] == escaped.json["message"]["body"] == text
    polled = durable(client.poll()["events"])
    assert [e["data"]["body"] for e in polled] == [text, text]
    history = client.get_api("/visitor/history").json["messages"]
    assert [m["body"] for m in history] == [text, text]


# -- poll ------------------------------------------------------------------------


def test_poll_without_cursor_replays_from_seq_1(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    sent = [client.send(f"message {i}").json["message"] for i in range(3)]
    answer = client.poll()
    assert set(answer) == {"events", "cursor", "more"}
    assert answer["more"] is False
    events = durable(answer["events"])
    for event in events:
        assert set(event) == EVENT_KEYS
        assert event["type"] == "message"
        assert TIME.match(event["at"])
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["data"] for e in events] == sent
    assert all(e["conversation_id"] == sent[0]["conversation_id"] for e in events)


def test_poll_with_a_cursor_answers_only_newer_events(app: Client, visitor) -> None:
    client = visitor(app)
    client.send("old")
    first = client.poll()
    client.send("new")
    second = client.poll(first["cursor"])
    assert [e["data"]["body"] for e in durable(second["events"])] == ["new"]
    # An old cursor again: the same durable events again, in the same order.
    again = client.poll(first["cursor"])
    assert durable(again["events"]) == durable(second["events"])
    replay = client.poll()
    assert [e["data"]["body"] for e in durable(replay["events"])] == ["old", "new"]


def test_poll_timeout_is_clamped_to_at_least_1_second(app: Client, visitor) -> None:
    client = visitor(app)
    started = time.monotonic()
    response = client.get_api("/visitor/poll", {"timeout": "0"})
    elapsed = time.monotonic() - started
    assert response.status_int == 200, response.text
    assert response.json["events"] == []
    assert response.json["more"] is False
    assert isinstance(response.json["cursor"], str)
    assert 0.9 <= elapsed < 5, elapsed


@pytest.mark.parametrize(
    "timeout", ["abc", "nan", "NaN", "inf", "-inf", "1e400", "10s", "1,5", "0x10", "1" * 10_000]
)
def test_poll_refuses_non_numeric_timeouts(shared_app: Client, visitor, timeout: str) -> None:
    client = visitor(shared_app)
    started = time.monotonic()
    assert_error(client.get_api("/visitor/poll", {"timeout": timeout}), 400)
    assert time.monotonic() - started < 0.9


def _tamperings(cursor: str) -> list[str]:
    payload, _, mac = cursor.rpartition(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    fields = payload.split(".")
    moved = ".".join([*fields[:-1], str(int(fields[-1]) + 1)]) + "." + mac
    return [
        payload + "." + flipped,
        moved,
        payload,
        mac,
        cursor + ".x",
        cursor[:-1],
        "garbage",
        "a.b.c.d",
        "v.v_x.0.AAAA",
        cursor.replace("v.", "a.", 1),
        cursor + "\x00",
        "x" * 5000,
    ]


def test_poll_refuses_tampered_cursors(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    client.send("hi")
    cursor = client.poll()["cursor"]
    for bad in _tamperings(cursor):
        response = client.get_api("/visitor/poll", {"cursor": bad, "timeout": "1"})
        assert_error(response, 400)


def test_poll_refuses_another_visitors_cursor(app: Client, visitor) -> None:
    one, two = visitor(app), visitor(app)
    one.send("private")
    foreign = one.poll()["cursor"]
    response = two.get_api("/visitor/poll", {"cursor": foreign, "timeout": "1"})
    assert_error(response, 400)
    assert "private" not in response.text
    assert one.session["visitor_id"] not in response.text
    assert_error(two.get_api("/visitor/poll", {"cursor": one.session["cursor"]}), 400)


def test_poll_refuses_an_agents_cursor(app: Client, visitor, agent) -> None:
    client = visitor(app)
    agent_client, _, _ = agent(app)
    agent_cursor = agent_client.poll(side="agent")["cursor"]
    assert_error(client.get_api("/visitor/poll", {"cursor": agent_cursor}), 400)


def test_poll_pages_with_more(make_app: AppFactory, visitor) -> None:
    client = visitor(Client(make_app(messages_per_minute=10_000)))
    total = 250
    for i in range(total):
        assert client.send(f"n{i}").status_int == 201
    seqs: list[int] = []
    cursor = None
    pages = 0
    while True:
        answer = client.poll(cursor)
        pages += 1
        events = durable(answer["events"])
        if answer["more"]:
            assert len(events) >= 100, len(events)  # a page is at least 100 events
        seqs += [e["seq"] for e in events]
        cursor = answer["cursor"]
        if not answer["more"]:
            break
        assert pages < 10
    assert pages >= 2
    assert seqs == list(range(1, total + 1))


def test_poll_answers_at_once_when_other_visitors_fill_the_feed(
    make_app: AppFactory, visitor
) -> None:
    app = Client(make_app(messages_per_minute=10_000))
    mine, busy = visitor(app), visitor(app)
    cursor = mine.session["cursor"]
    for i in range(250):
        busy.send(f"noise {i}")
    mine.send("mine")
    started = time.monotonic()
    answer = mine.poll(cursor, timeout=3)
    assert [e["data"]["body"] for e in durable(answer["events"])] == ["mine"]
    assert time.monotonic() - started < 2


def test_poll_with_another_nodes_affinity_is_served_and_reissued(app: Client, visitor) -> None:
    client = visitor(app)
    client.send("hi")
    vid = client.cookies["ls_vid"]
    client.reset()
    client.set_cookie("ls_vid", vid)
    client.set_cookie("ls_node", "web-2.forgedforgedforged")
    response = client.get_api("/visitor/poll", {"timeout": "1"})
    assert response.status_int == 200
    assert [e["data"]["body"] for e in durable(response.json["events"])] == ["hi"]
    assert set_cookies(response)["ls_node"]["value"].startswith("web-1.")
    client.reset()
    client.set_cookie("ls_vid", vid)
    response = client.send("no affinity cookie at all")
    assert response.status_int == 201
    assert set_cookies(response)["ls_node"]["value"].startswith("web-1.")


def test_a_visitor_moves_to_another_node_with_its_cursor(tmp_path, host_app) -> None:
    """SQLite only: two nodes share one database file."""
    factory = AppFactory(host_app, "sqlite", tmp_path)
    url = f"sqlite:///{tmp_path}/shared.db"
    try:
        one = Client(factory(store=url, node_id="web-1"))
        two = Client(factory(store=url, node_id="web-2"))
        client = Client(one.app)
        client.post_json(API + "/visitor/session", {})
        cid = client.send("on web-1").json["message"]["conversation_id"]
        cursor = client.poll()["cursor"]
        client.send("still web-1")
        moved = Client(two.app, cookiejar=client.cookiejar)
        response = moved.get_api("/visitor/poll", {"cursor": cursor, "timeout": "1"})
        assert response.status_int == 200, response.text
        assert [e["data"]["body"] for e in durable(response.json["events"])] == ["still web-1"]
        assert set_cookies(response)["ls_node"]["value"].startswith("web-2.")
        conversation = two.app.store.get_conversation(cid)
        assert conversation is not None and conversation.node_id == "web-2"
    finally:
        factory.close_all()


# -- history ---------------------------------------------------------------------


def test_history_is_empty_before_any_conversation(shared_app: Client, visitor) -> None:
    response = visitor(shared_app).get_api("/visitor/history")
    assert response.status_int == 200
    assert response.json == {"messages": []}


def test_history_before_and_limit(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    for i in range(1, 6):
        client.send(f"m{i}")

    def bodies(**params: Any) -> list[str]:
        response = client.get_api("/visitor/history", params)
        assert response.status_int == 200, response.text
        for message in response.json["messages"]:
            assert set(message) == MESSAGE_KEYS
        return [m["body"] for m in response.json["messages"]]

    assert bodies() == ["m1", "m2", "m3", "m4", "m5"]
    assert bodies(limit=2) == ["m4", "m5"]
    assert bodies(before=4, limit=2) == ["m2", "m3"]
    assert bodies(before=4) == ["m1", "m2", "m3"]
    assert bodies(before=1) == []
    assert bodies(limit=100) == ["m1", "m2", "m3", "m4", "m5"]


@pytest.mark.parametrize(
    "params", [{"before": "x"}, {"limit": "ten"}, {"limit": "1.5"}, {"before": "1" * 30}]
)
def test_history_refuses_non_numeric_query(
    shared_app: Client, visitor, params: dict[str, str]
) -> None:
    client = visitor(shared_app)
    client.send("hi")
    assert_error(client.get_api("/visitor/history", params), 400)


def test_history_of_the_last_conversation_after_closing(app: Client, visitor) -> None:
    client = visitor(app)
    client.send("before close")
    client.post_api("/visitor/close")
    assert [m["body"] for m in client.get_api("/visitor/history").json["messages"]] == [
        "before close"
    ]
    client.send("new conversation")
    assert [m["body"] for m in client.get_api("/visitor/history").json["messages"]] == [
        "new conversation"
    ]


# -- typing, read ------------------------------------------------------------------


def test_typing_and_read_answer_204(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    for path, body in (("/visitor/typing", {"typing": True}), ("/visitor/read", {"seq": 0})):
        response = client.post_api(path, body)  # before any conversation
        assert response.status_int == 204
        assert response.body == b""
    client.send("hi")
    for path, body in (
        ("/visitor/typing", {"typing": True}),
        ("/visitor/typing", {"typing": False}),
        ("/visitor/read", {"seq": 1}),
    ):
        response = client.post_api(path, body)
        assert response.status_int == 204
        assert response.body == b""


@pytest.mark.parametrize(
    "path, body",
    [
        ("/visitor/typing", {}),
        ("/visitor/typing", {"typing": "yes"}),
        ("/visitor/typing", {"typing": 1}),
        ("/visitor/typing", {"typing": None}),
        ("/visitor/read", {}),
        ("/visitor/read", {"seq": -1}),
        ("/visitor/read", {"seq": "1"}),
        ("/visitor/read", {"seq": 1.5}),
        ("/visitor/read", {"seq": True}),
    ],
)
def test_typing_and_read_refuse_invalid_bodies(
    shared_app: Client, visitor, path: str, body: Any
) -> None:
    assert_error(visitor(shared_app).post_api(path, body), 422)


# -- close, rating -----------------------------------------------------------------


def test_close_answers_the_conversation_and_emits_conversation_closed(app: Client, visitor) -> None:
    client = visitor(app)
    message = client.send("bye").json["message"]
    response = client.post_api("/visitor/close")
    assert response.status_int == 200
    conversation = response.json["conversation"]
    assert set(response.json) == {"conversation"}
    assert set(conversation) == CONVERSATION_KEYS
    assert conversation["id"] == message["conversation_id"]
    assert conversation["status"] == "closed"
    assert conversation["last_seq"] == 2
    assert conversation["visitor"]["id"] == client.session["visitor_id"]
    assert conversation["node_id"] == "web-1"
    assert TIME.match(conversation["created_at"]) and TIME.match(conversation["updated_at"])
    events = durable(client.poll()["events"])
    assert [(e["type"], e["seq"]) for e in events] == [("message", 1), ("conversation_closed", 2)]
    closed = events[1]["data"]
    assert set(closed) == CONVERSATION_KEYS
    assert closed["status"] == "closed" and closed["id"] == conversation["id"]
    # The next send opens a new conversation, from seq 1.
    fresh = client.send("hello again").json["message"]
    assert fresh["conversation_id"] != conversation["id"]
    assert fresh["seq"] == 1


def test_close_without_a_conversation_is_404(shared_app: Client, visitor) -> None:
    assert_error(visitor(shared_app).post_api("/visitor/close"), 404)


def test_rating_accepts_1_to_5(shared_app: Client, visitor) -> None:
    client = visitor(shared_app)
    client.send("hi")
    client.post_api("/visitor/close")
    for score in (1, 2, 3, 4, 5):
        response = client.post_api("/visitor/rating", {"score": score, "comment": "thanks"})
        assert response.status_int == 204, response.text
        assert response.body == b""
    assert client.post_api("/visitor/rating", {"score": 4}).status_int == 204  # no comment


@pytest.mark.parametrize(
    "body",
    [
        {"score": 0},
        {"score": 6},
        {"score": "5"},
        {"score": 5.5},
        {"score": -1},
        {"score": True},
        {"score": None},
        {"score": 10**30},
        {},
        {"score": 5, "comment": "x" * 2001},
        {"score": 5, "comment": 5},
    ],
)
def test_rating_refuses_invalid_scores(shared_app: Client, visitor, body: dict[str, Any]) -> None:
    client = visitor(shared_app)
    client.send("hi")
    assert_error(client.post_api("/visitor/rating", body), 422)


def test_rating_without_a_conversation_is_404(shared_app: Client, visitor) -> None:
    assert_error(visitor(shared_app).post_api("/visitor/rating", {"score": 5}), 404)


# -- authentication ------------------------------------------------------------------

VISITOR_ROUTES = [r for r in ROUTES if r.auth == "visitor"]
VALID_BODIES: dict[str, Any] = {
    "visitor_send": {"client_msg_id": "auth-1", "body": "hi"},
    "visitor_typing": {"typing": True},
    "visitor_read": {"seq": 1},
    "visitor_rating": {"score": 5},
}


def _bad_cookies(real: str, visitor_id: str) -> dict[str, str | None]:
    payload, _, mac = real.rpartition(".")
    return {
        "none": None,
        "tampered-mac": payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),
        "tampered-id": "v_someoneelse" + real[real.index(".") :],
        "foreign-signed": Signer("another-deployment-secret-key-0123456789abcdef").sign_visitor(
            visitor_id, 3600
        ),
        "expired": Signer(SECRET_KEY).sign_visitor(visitor_id, -10),
        "unknown-visitor": Signer(SECRET_KEY).sign_visitor("v_nobody", 3600),
        "garbage": "garbage",
        "empty": "",
    }


@pytest.mark.parametrize("route", VISITOR_ROUTES, ids=lambda r: r.endpoint)
def test_visitor_routes_need_a_valid_ls_vid(shared_app: Client, visitor, route) -> None:
    owner = visitor(shared_app)
    owner.send("something to see")
    real = owner.cookies["ls_vid"]
    for name, value in _bad_cookies(real, owner.session["visitor_id"]).items():
        client = Client(shared_app.app)
        if value is not None:
            client.set_cookie("ls_vid", value)
        client.set_cookie("ls_node", owner.cookies["ls_node"])
        url = route_url(route)
        if route.method == "GET":
            response = client.get(url, {"timeout": "1"}, expect_errors=True)
        else:
            body = VALID_BODIES.get(route.endpoint)
            if body is None:
                response = client.post(url, expect_errors=True)
            else:
                response = client.post_json(url, body, expect_errors=True)
        assert_error(response, 401)
        assert "something to see" not in response.text, name
    assert owner.get_api("/visitor/history").json["messages"][0]["body"] == "something to see"


def test_a_visitor_sees_only_its_own_conversations(app: Client, visitor) -> None:
    one, two = visitor(app), visitor(app)
    secret = one.send("one's secret").json["message"]
    two.send("two's question")
    polled = two.poll()
    assert secret["conversation_id"] not in json.dumps(polled)
    assert [e["data"]["body"] for e in durable(polled["events"])] == ["two's question"]
    assert [m["body"] for m in two.get_api("/visitor/history").json["messages"]] == [
        "two's question"
    ]
    closed = two.post_api("/visitor/close").json["conversation"]
    assert closed["id"] != secret["conversation_id"]
    still = app.middleware.store.get_conversation(secret["conversation_id"])
    assert still is not None and still.status == "waiting"
    assert two.post_api("/visitor/rating", {"score": 1}).status_int == 204
    assert app.middleware.store.get_rating(secret["conversation_id"]) is None
    mine = one.poll()
    assert [e["data"]["body"] for e in durable(mine["events"])] == ["one's secret"]
