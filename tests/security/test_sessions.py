"""Agent sessions and sign-in (issue 6, item 4).

The session token comes from :mod:`secrets` with 256 bits and the store keeps
only its hash; every login issues a new one (a cookie planted before login is
never upgraded); logout revokes it on every route; sessions end after the idle
time-out and, however busy, at the absolute one (driven here on a moving
clock); a login reveals nothing about which accounts exist, by status, body,
headers, throttling or time; and no deployment starts with a secret key
shorter than 32 bytes except the demo.

The first idle and absolute time-out cases are in
``tests/test_identity_and_live_events.py``; these extend them.
"""

from __future__ import annotations

import base64
import secrets
import statistics
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import livesupport.auth
import livesupport.signing
from livesupport import LiveSupport
from livesupport.clock import utcnow
from livesupport.routes import ROUTES
from livesupport.signing import token_hash

from ..conftest import (
    AGENT_PASSWORD,
    AppFactory,
    Client,
    assert_error,
    create_agent,
    login,
    new_visitor,
    route_url,
    set_cookies,
    stdlib_host_app,
)
from ..services import unique_name

AGENT_ROUTES = [r for r in ROUTES if r.auth == "agent"]


def _token(middleware: LiveSupport, cookie: str) -> str:
    fields = middleware.ctx.signer.unsign("agent", cookie, 1)
    assert fields is not None, cookie
    return fields[0]


def _bits(token: str) -> int:
    return 8 * len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


# -- the token -----------------------------------------------------------------------


def test_session_and_csrf_tokens_come_from_secrets_with_128_bits_or_more(
    app: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both tokens of a login are drawn from the ``secrets`` CSPRNG, 16 bytes or more."""
    assert livesupport.auth.secrets is secrets  # the standard library's CSPRNG, not random
    drawn: list[tuple[int | None, str]] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        drawn.append((nbytes, real(nbytes)))
        return drawn[-1][1]

    monkeypatch.setattr(livesupport.auth.secrets, "token_urlsafe", recording)
    stored = create_agent(app.app)
    client = login(app.app, stored.email)
    token = _token(app.middleware, client.cookies["ls_agent"])
    by_value = {value: nbytes for nbytes, value in drawn}
    for value in (token, client.csrf):
        assert value in by_value, "not drawn from secrets.token_urlsafe"
        assert (by_value[value] or 32) >= 16 and _bits(value) >= 128
    assert token != client.csrf


def test_tokens_are_new_and_distinct_on_every_login(app: Client) -> None:
    stored = create_agent(app.app)
    seen: set[str] = set()
    for _ in range(6):
        client = login(app.app, stored.email)
        token = _token(app.middleware, client.cookies["ls_agent"])
        assert _bits(token) >= 128 and _bits(client.csrf) >= 128
        assert {token, client.csrf}.isdisjoint(seen)
        seen |= {token, client.csrf}


def test_the_store_keeps_only_the_tokens_hash(make_app: AppFactory, tmp_path: Path) -> None:
    middleware = make_app()
    stored = create_agent(middleware)
    client = login(middleware, stored.email)
    token = _token(middleware, client.cookies["ls_agent"])
    assert middleware.store.get_session(token_hash(token)) is not None
    assert middleware.store.get_session(token) is None
    for path in tmp_path.glob("*.db*"):  # SQLite: the database, its WAL and shared memory
        assert token.encode() not in path.read_bytes(), path.name


# -- rotation and revocation --------------------------------------------------------


def test_login_never_reuses_the_cookie_it_was_sent_with(app: Client) -> None:
    """Session fixation: a cookie planted in the browser (the attacker's own valid
    session) is replaced at login, and keeps naming the attacker."""
    attacker, victim = create_agent(app.app), create_agent(app.app)
    planted = login(app.app, attacker.email).cookies["ls_agent"]
    browser = Client(app.app)
    browser.set_cookie("ls_agent", planted)
    answer = browser.post_api("/agent/login", {"email": victim.email, "password": AGENT_PASSWORD})
    assert answer.status_int == 200
    issued = set_cookies(answer)["ls_agent"]["value"]
    assert issued != planted
    again = browser.post_api("/agent/login", {"email": victim.email, "password": AGENT_PASSWORD})
    assert set_cookies(again)["ls_agent"]["value"] not in (issued, planted)
    assert again.json["csrf_token"] != answer.json["csrf_token"]
    still = Client(app.app)
    still.set_cookie("ls_agent", planted)
    assert still.get_api("/agent/session").json["agent"]["id"] == attacker.id


def _call(client: Client, route: Any, cid: str, csrf: str) -> Any:
    url = route_url(route, cid=cid)
    if route.method == "GET":
        return client.get(url, {"timeout": "1"}, expect_errors=True)
    headers = {"X-CSRF-Token": csrf}
    bodies = {
        "agent_status": {"status": "online"},
        "agent_send": {"client_msg_id": "late", "body": "after logout"},
        "agent_typing": {"typing": True},
        "agent_transfer": {"agent_id": "a_nobody"},
    }
    body = bodies.get(route.endpoint)
    if body is None:
        return client.post(url, headers=headers, expect_errors=True)
    return client.post_json(url, body, headers=headers, expect_errors=True)


def test_logout_revokes_the_session_on_every_route(app: Client) -> None:
    stored = create_agent(app.app)
    client = login(app.app, stored.email)
    cookie, csrf = client.cookies["ls_agent"], client.csrf
    cid = new_visitor(app).send("still waiting").json["message"]["conversation_id"]
    assert client.post_api("/agent/logout").status_int == 204
    assert app.middleware.store.get_session(token_hash(_token(app.middleware, cookie))) is None
    for route in AGENT_ROUTES:
        replay = Client(app.app)
        replay.set_cookie("ls_agent", cookie)
        assert_error(_call(replay, route, cid, csrf), 401)
    conversation = app.middleware.store.get_conversation(cid)
    assert conversation is not None and conversation.status == "waiting"
    assert [m.body for m in app.middleware.store.messages(cid)] == ["still waiting"]


def test_a_logout_ends_the_session_on_every_node_at_once(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """Nodes keep the sessions they read for ``agent_session_recheck`` seconds; a
    logout on one node must not leave the session alive on another meanwhile."""
    url, bus = f"sqlite:///{tmp_path}/nodes.db", f"local://{unique_name('sessions')}"
    first = make_app(store=url, bus=bus, node_id="web-1", agent_session_recheck=60)
    second = make_app(store=url, bus=bus, node_id="web-2", agent_session_recheck=60)
    client = login(first, create_agent(first).email)
    there = Client(second)
    there.set_cookie("ls_agent", client.cookies["ls_agent"])
    assert there.get_api("/agent/session").status_int == 200  # kept by web-2 from now on
    assert client.get_api("/agent/session").status_int == 200  # and by web-1
    assert client.post_api("/agent/logout").status_int == 204
    assert_error(there.get_api("/agent/session"), 401)
    assert_error(client.get_api("/agent/session"), 401)


@pytest.fixture
def seconds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock by which a node times the sessions it keeps."""
    now = [1000.0]
    monkeypatch.setattr(livesupport.auth, "monotonic", lambda: now[0])
    return now


def test_a_session_ended_in_the_store_stops_working_within_the_recheck(
    make_app: AppFactory, seconds: list[float]
) -> None:
    """As after ``agents disable`` (another process, no notice): kept sessions are read
    again after ``agent_session_recheck`` seconds."""
    middleware = make_app(agent_session_recheck=5)
    stored = create_agent(middleware)
    client = login(middleware, stored.email)
    assert client.get_api("/agent/session").status_int == 200
    middleware.store.delete_agent_sessions(stored.id)
    seconds[0] += 4.9
    assert client.get_api("/agent/session").status_int == 200
    seconds[0] += 0.1
    assert_error(client.get_api("/agent/session"), 401)


def test_with_no_recheck_time_every_request_reads_the_session(
    make_app: AppFactory, seconds: list[float]
) -> None:
    middleware = make_app(agent_session_recheck=0)
    stored = create_agent(middleware)
    client = login(middleware, stored.email)
    assert client.get_api("/agent/session").status_int == 200
    middleware.store.update_agent(stored.id, disabled=True)
    assert_error(client.get_api("/agent/session"), 401)


# -- time-outs, on a clock the test moves ---------------------------------------------


class Clock:
    """``utcnow`` for the auth module, moved forward by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    moving = Clock()
    monkeypatch.setattr(livesupport.auth, "utcnow", moving)
    yield moving


def test_activity_keeps_a_session_alive_until_the_absolute_time_out(
    make_app: AppFactory, clock: Clock
) -> None:
    """A request every 50 minutes (idle limit 60) keeps the session, and refreshes
    ``last_seen_at`` in the store, until 12 hours after login: then it ends."""
    middleware = make_app(agent_session_idle=3600, agent_session_max_age=12 * 3600)
    client = login(middleware, create_agent(middleware).email)
    hashed = token_hash(_token(middleware, client.cookies["ls_agent"]))
    elapsed = 0
    while elapsed + 50 < 12 * 60:
        clock.advance(minutes=50)
        elapsed += 50
        assert client.get_api("/agent/session").status_int == 200, elapsed
        session = middleware.store.get_session(hashed)
        assert session is not None and session.last_seen_at == clock.now, elapsed
    clock.advance(minutes=12 * 60 - elapsed + 1)
    assert_error(client.get_api("/agent/session"), 401)
    assert middleware.store.get_session(hashed) is None


def test_an_idle_session_ends_and_is_deleted(make_app: AppFactory, clock: Clock) -> None:
    middleware = make_app(agent_session_idle=600)
    client = login(middleware, create_agent(middleware).email)
    hashed = token_hash(_token(middleware, client.cookies["ls_agent"]))
    clock.advance(seconds=595)
    assert client.get_api("/agent/session").status_int == 200
    clock.advance(seconds=605)
    assert_error(client.get_api("/agent/session"), 401)
    assert middleware.store.get_session(hashed) is None


def test_an_ended_session_cannot_write_even_with_its_csrf_token(
    make_app: AppFactory, clock: Clock
) -> None:
    """401 (not 403, not 204) and nothing written, on every CSRF-protected route."""
    middleware = make_app(agent_session_idle=600)
    app = Client(middleware)
    client = login(middleware, create_agent(middleware).email)
    cid = new_visitor(app).send("waiting").json["message"]["conversation_id"]
    clock.advance(seconds=601)
    for route in AGENT_ROUTES:
        if route.csrf:
            assert_error(_call(client, route, cid, client.csrf), 401)
    conversation = middleware.store.get_conversation(cid)
    assert conversation is not None and (conversation.status, conversation.agent_id) == (
        "waiting",
        None,
    )


def test_the_visitor_cookie_expires_with_its_max_age(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ls_vid`` carries its own expiry: past ``visitor_cookie_max_age`` it is refused even
    by a browser that kept it."""
    app = Client(make_app(visitor_cookie_max_age=60))
    visitor = new_visitor(app)
    assert visitor.get_api("/visitor/history").status_int == 200

    class Later:
        @staticmethod
        def time() -> float:
            return time.time() + 61

    monkeypatch.setattr(livesupport.signing, "time", Later)
    assert_error(visitor.get_api("/visitor/history"), 401)


# -- no user enumeration -----------------------------------------------------------------


def _attempts(app: Client) -> dict[str, dict[str, str]]:
    """One failed login of each kind, by label."""
    known = create_agent(app.app)
    disabled = create_agent(app.app)
    app.middleware.store.update_agent(disabled.id, disabled=True)
    return {
        "unknown": {"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": "x" * 12},
        "wrong-password": {"email": known.email, "password": "x" * 12},
        "wrong-password-case": {"email": known.email.upper(), "password": "x" * 12},
        "disabled-right-password": {"email": disabled.email, "password": AGENT_PASSWORD},
    }


def _shape(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k.lower(), v) for k, v in response.headerlist if k.lower() != "date")
    return response.status_int, response.body, headers


def test_failed_logins_look_the_same(app: Client) -> None:
    shapes = {}
    for label, body in _attempts(app).items():
        response = app.post_api("/agent/login", body)
        assert_error(response, 401)
        assert "ls_agent" not in set_cookies(response), label
        shapes[label] = _shape(response)
    assert len(set(map(repr, shapes.values()))) == 1, shapes


def test_throttled_logins_look_the_same(make_app: AppFactory) -> None:
    """The per-account limit counts unknown emails too, so a 429 tells nothing either."""
    app = Client(make_app(login_attempts=3))
    answers = {}
    for label, body in _attempts(app).items():
        if label == "wrong-password-case":
            continue  # the same account as wrong-password
        for _ in range(3):
            assert_error(app.post_api("/agent/login", body), 401)
        answers[label] = app.post_api("/agent/login", body)
    for label, response in answers.items():
        assert_error(response, 429)
        assert response.headers["Retry-After"].isdigit(), label
    assert len({(r.status_int, r.body) for r in answers.values()}) == 1


def test_login_time_does_not_tell_whether_an_account_exists(make_app: AppFactory) -> None:
    """Unknown emails are checked against a dummy Argon2id hash with the same cost, so
    the median time of each kind of failure is within a factor of two of the others'."""
    unlimited = 10**6
    app = Client(make_app(login_attempts=unlimited, login_attempts_per_ip=unlimited))
    kinds = _attempts(app)
    times: dict[str, list[float]] = {label: [] for label in kinds}
    for round_ in range(7):  # interleaved, so drift and noise hit every kind alike
        for label, body in kinds.items():
            if label == "unknown":
                body = {**body, "email": f"nobody-{round_}-{body['email']}"}
            started = time.perf_counter()
            response = app.post_api("/agent/login", body)
            times[label].append(time.perf_counter() - started)
            assert response.status_int == 401
    medians = {label: statistics.median(values) for label, values in times.items()}
    reference = medians["wrong-password"]
    for median in medians.values():
        assert 0.5 <= median / reference <= 2, medians


# -- the secret key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "x", "x" * 31, "é" * 15 + "x", " " * 31],
    ids=["empty", "one-byte", "31-bytes", "31-bytes-utf8", "31-spaces"],
)
def test_secret_keys_under_32_bytes_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LiveSupport(stdlib_host_app, secret_key=key, store="memory://", node_id="web-1")


@pytest.mark.parametrize("key", ["x" * 32, "é" * 16], ids=["32-bytes", "32-bytes-utf8"])
def test_secret_keys_of_32_bytes_are_accepted(key: str) -> None:
    LiveSupport(stdlib_host_app, secret_key=key, store="memory://", node_id="web-1").close()


def test_no_secret_key_at_all_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVESUPPORT_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="32 bytes"):
        LiveSupport(stdlib_host_app, store="memory://", node_id="web-1")


def test_a_short_key_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's switch cannot be turned on from the environment."""
    monkeypatch.setenv("LIVESUPPORT_SECRET_KEY", "short-key")
    monkeypatch.setenv("LIVESUPPORT_INSECURE_DEMO", "1")
    with pytest.raises(ValueError, match="32 bytes"):
        LiveSupport(stdlib_host_app, store="memory://", node_id="web-1")


def test_only_the_demo_switch_allows_a_short_key() -> None:
    LiveSupport(
        stdlib_host_app, secret_key="demo", insecure_demo=True, store="memory://", node_id="web-1"
    ).close()


def test_the_demo_makes_itself_a_long_random_key(tmp_path: Path) -> None:
    from livesupport import demo

    first = demo.prepare(tmp_path / "one").secret_key
    second = demo.prepare(tmp_path / "two").secret_key
    assert len(first.encode()) >= 32 and first != second
    assert demo.prepare(tmp_path / "one").secret_key == first  # kept, not re-drawn


def test_login_answers_carry_api_headers(app: Client) -> None:
    """The 401 of a failed login is not cached and not framed, like every API answer."""
    response = app.post_api("/agent/login", {"email": "a@example.com", "password": "nope"})
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    ok = login(app.app, create_agent(app.app).email)
    answer = ok.get_api("/agent/session")
    assert answer.headers["Cache-Control"] == "no-store"  # the CSRF token is in it
