"""The authorization matrix: every route of :data:`livesupport.routes.ROUTES`
against every way of asking without the right to (issue 6, item 2).

Each cell sends a well-formed request (valid body, valid path) whose only
fault is the credential, so the answer is the one PROTOCOL.md gives for that
fault: 401 for a missing, tampered, expired, foreign or disabled identity; 403
for a missing or foreign CSRF token; a visitor's own data (never another's)
for another visitor's valid cookie. Whatever the answer, no byte of the
victim's conversation (its id, its messages, its visitor's id, name, email or
page) appears in the response, and the conversation is left as it was.

The cross-site cell (a valid session and CSRF token, sent with a foreign
``Origin`` or ``Sec-Fetch-Site: cross-site``) expects agent writes to be
refused with 403 as defence in depth.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import webtest

from livesupport import LiveSupport
from livesupport.routes import ROUTES, Route
from livesupport.signing import Signer, token_hash

from ..conftest import (
    AGENT_PASSWORD,
    AppFactory,
    Client,
    assert_error,
    create_agent,
    new_visitor,
    route_url,
)
from .conftest import OTHER_SECRET, Session, cookie_header, flip_last, leaked, open_session

_ids = itertools.count(1)

# What a public route answers to a well-formed request from anyone.
PUBLIC_STATUS = {
    "visitor_session": 200,
    "widget": 200,
    "console": 200,
    "console_script": 200,
    "console_style": 200,
    "agent_login": 401,  # wrong credentials: the cells never know a password
    "healthz": 200,
    "openapi": 200,
}
# What a visitor route answers to a visitor acting on its own conversation.
OWN_VISITOR_STATUS = {
    "visitor_send": 201,
    "visitor_poll": 200,
    "visitor_history": 200,
    "visitor_typing": 204,
    "visitor_read": 204,
    "visitor_close": 200,
    "visitor_rating": 204,
}
CROSS_SITE_ATTEMPTS = (
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    {"Origin": "https://evil.example"},  # a browser that sends no fetch metadata
    {"Origin": "null"},  # a sandboxed frame or a data: URL
    {"Origin": "https://user-content.localhost", "Sec-Fetch-Site": "same-site"},  # a sibling
)
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


@dataclass
class World:
    """A victim's conversation, held by an agent, and everyone who must not reach it."""

    middleware: LiveSupport
    victim: Client
    victim_cid: str
    victim_cursor: str
    attacker: Client  # another visitor, with a conversation of its own
    holder: Session  # the agent holding the victim's conversation
    holder_email: str
    other: Session  # another agent, signed in
    disabled: Session  # a session opened before its agent was disabled
    disabled_email: str
    secrets: tuple[str, ...]
    snapshot: Callable[[], Any] = field(repr=False, default=lambda: None)

    def session(self) -> Session:
        """A fresh session of the holding agent (for cells that may end theirs)."""
        return open_session(self.middleware, self.holder.agent_id)

    def decoy(self, held_by: Session | None = None) -> str:
        """A new conversation, waiting or ``held_by`` an agent, for requests that may get
        through."""
        cid = new_visitor(Client(self.middleware)).send("decoy").json["message"]["conversation_id"]
        if held_by is not None:
            agent = Client(self.middleware)
            agent.set_cookie("ls_agent", held_by.cookie)
            claimed = agent.post_api(
                f"/agent/conversations/{cid}/claim", headers={"X-CSRF-Token": held_by.csrf}
            )
            assert claimed.status_int == 200, claimed.text
        return cid


@pytest.fixture(scope="module")
def world(make_module_app: AppFactory) -> World:
    """One world per backend for the module: every cell is refused, or acts on the
    attacker's own data, or (cross-site writes) on a conversation of its own."""
    unlimited = 10**6  # the cells' wrong passwords must not lock the later cells out
    middleware = make_module_app(
        messages_per_minute=unlimited, login_attempts=unlimited, login_attempts_per_ip=unlimited
    )
    middleware.shutdown()  # every poll answers at once: no cell waits for a timeout
    anyone = Client(middleware)
    victim_fields = {
        "name": "Victoria Victimsdottir",
        "email": "victoria.victim@victim.example",
        "page": "https://shop.example/orders/victim-only-page",
    }
    victim = new_visitor(anyone, **victim_fields)
    question = "victim secret question: card ending 4242"
    cid = victim.send(question).json["message"]["conversation_id"]
    holder_agent = create_agent(middleware)
    holder = open_session(middleware, holder_agent.id)
    reply = "victim secret answer: refund 991 approved"
    answered = Client(middleware)
    answered.set_cookie("ls_agent", holder.cookie)
    sent = answered.post_json(
        route_url(_route("agent_send"), cid=cid),
        {"client_msg_id": "reply-1", "body": reply},
        headers={"X-CSRF-Token": holder.csrf},
    )
    assert sent.status_int == 201, sent.text
    attacker = new_visitor(anyone, name="Mallory")
    assert attacker.send("mallory's own question").status_int == 201
    other_agent = create_agent(middleware)
    disabled_agent = create_agent(middleware)
    disabled = open_session(middleware, disabled_agent.id)
    middleware.store.update_agent(disabled_agent.id, disabled=True)
    victim_id = victim.session["visitor_id"]
    secrets_ = (
        cid,
        victim_id,
        question,
        reply,
        *victim_fields.values(),
        victim.cookies["ls_vid"],
        victim.cookies["ls_node"],
        holder.cookie,
        holder.token,
    )

    def snapshot() -> Any:
        store = middleware.store
        conversation = store.get_conversation(cid)
        assert conversation is not None
        messages = [(m.seq, m.body) for m in store.messages(cid)]
        return (conversation.status, conversation.agent_id, conversation.last_seq, messages)

    result = World(
        middleware=middleware,
        victim=victim,
        victim_cid=cid,
        victim_cursor=victim.poll()["cursor"],
        attacker=attacker,
        holder=holder,
        holder_email=holder_agent.email,
        other=open_session(middleware, other_agent.id),
        disabled=disabled,
        disabled_email=disabled_agent.email,
        secrets=secrets_,
    )
    result.snapshot = snapshot
    return result


def _route(endpoint: str) -> Route:
    return next(r for r in ROUTES if r.endpoint == endpoint)


# -- one request ----------------------------------------------------------------------


@dataclass
class Attempt:
    """One request of a cell: its credentials, and what it must answer."""

    label: str
    cookies: dict[str, str]
    headers: dict[str, str]
    expected: int
    query: dict[str, str] | None = None
    login: tuple[str, str] | None = None  # (email, password) for agent_login
    cid: str | None = None  # the conversation in the path; by default the victim's
    authorized: bool = False  # an agent allowed to read everything: no leak check


def _body(route: Route, world: World, attempt: Attempt) -> dict[str, Any] | None:
    n = next(_ids)
    bodies: dict[str, dict[str, Any]] = {
        "visitor_session": {"name": f"Someone {n}"},
        "visitor_send": {"client_msg_id": f"matrix-{n}", "body": f"matrix message {n}"},
        "visitor_typing": {"typing": True},
        "visitor_read": {"seq": 1},
        "visitor_rating": {"score": 1, "comment": "matrix"},
        "agent_status": {"status": "away"},
        "agent_send": {"client_msg_id": f"matrix-{n}", "body": f"matrix reply {n}"},
        "agent_typing": {"typing": True},
        "agent_transfer": {"agent_id": world.other.agent_id},
    }
    if route.endpoint == "agent_login":
        email, password = attempt.login or (f"nobody-{n}@example.com", "not the password")
        return {"email": email, "password": password}
    return bodies.get(route.endpoint)


def request(world: World, route: Route, attempt: Attempt) -> webtest.TestResponse:
    client = Client(world.middleware)  # an empty cookie jar: only what the attempt sends
    headers = dict(attempt.headers)
    if attempt.cookies:
        headers["Cookie"] = cookie_header(attempt.cookies)
    url = route_url(route, cid=attempt.cid or world.victim_cid)
    if route.method == "GET":
        query = attempt.query
        if query is None and route.endpoint.endswith("_poll"):
            query = {"timeout": "1"}
        return client.get(url, params=query, headers=headers, expect_errors=True)
    body = _body(route, world, attempt)
    if body is None:
        return client.post(url, headers=headers, expect_errors=True)
    return client.post_json(url, body, headers=headers, expect_errors=True)


# -- the cells ------------------------------------------------------------------------


def _public_or(route: Route, status: int) -> int:
    """``status`` for routes that need a credential; the usual answer for public ones."""
    return PUBLIC_STATUS[route.endpoint] if route.auth is None else status


def no_cookie(world: World, route: Route) -> list[Attempt]:
    return [Attempt("nothing", {}, {}, _public_or(route, 401))]


def other_visitor(world: World, route: Route) -> list[Attempt]:
    """Mallory's own valid cookies (and the victim's node cookie, for good measure)."""
    mine = {
        "ls_vid": world.attacker.cookies["ls_vid"],
        "ls_node": world.attacker.cookies["ls_node"],
    }
    theirs_node = {**mine, "ls_node": world.victim.cookies["ls_node"]}
    if route.auth == "visitor":
        status = OWN_VISITOR_STATUS[route.endpoint]
        attempts = [
            Attempt("own", mine, {}, status),
            Attempt("victim-node", theirs_node, {}, status),
        ]
        if route.endpoint == "visitor_poll":
            stolen = {"cursor": world.victim_cursor, "timeout": "1"}
            attempts.append(Attempt("victim-cursor", mine, {}, 400, query=stolen))
        return attempts
    return [Attempt("own", mine, {}, _public_or(route, 401))]


def tampered(world: World, route: Route) -> list[Attempt]:
    """The victim's and the holder's cookies, forged in the ways an attacker can."""
    signer = world.middleware.ctx.signer
    victim_vid = world.victim.cookies["ls_vid"]
    victim_id, expires, mac = victim_vid.split(".")
    attacker_id, _, attacker_mac = world.attacker.cookies["ls_vid"].split(".")
    foreign = Signer(OTHER_SECRET)
    forged_vids = {
        "vid-mac-flipped": flip_last(victim_vid),
        "vid-id-swapped": f"{victim_id}.{expires}.{attacker_mac}",
        "vid-expiry-extended": f"{victim_id}.{int(expires) + 10**6}.{mac}",
        "vid-other-purpose": signer.sign("cursor", victim_id, expires),
        "vid-foreign-secret": foreign.sign_visitor(victim_id, 3600),
        "vid-unsigned": f"{victim_id}.{expires}",
        "vid-attacker-id-victim-mac": f"{attacker_id}.{expires}.{mac}",
    }
    forged_agents = {
        "agent-mac-flipped": flip_last(world.holder.cookie),
        "agent-foreign-secret": foreign.sign("agent", world.holder.token),
        "agent-other-purpose": signer.sign("visitor", world.holder.token),
        "agent-raw-token": world.holder.token,
        # What a leaked database holds, even signed with the deployment's own secret.
        "agent-stored-hash": signer.sign("agent", token_hash(world.holder.token)),
    }
    attempts = []
    for (vlabel, vid), (alabel, agent) in zip(
        forged_vids.items(), itertools.cycle(forged_agents.items())
    ):
        cookies = {"ls_vid": vid, "ls_node": world.victim.cookies["ls_node"], "ls_agent": agent}
        headers = {"X-CSRF-Token": world.holder.csrf}
        attempts.append(Attempt(f"{vlabel}+{alabel}", cookies, headers, _public_or(route, 401)))
    return attempts


def expired(world: World, route: Route) -> list[Attempt]:
    """The victim's identity signed by this deployment with an expiry in the past, and
    sessions of the holding agent past their idle and absolute time-outs."""
    config = world.middleware.config
    signer = world.middleware.ctx.signer
    old_vid = signer.sign("visitor", world.victim.session["visitor_id"], str(int(time.time()) - 1))
    idle = open_session(
        world.middleware,
        world.holder.agent_id,
        age=timedelta(seconds=config.agent_session_idle + 120),
        idle=timedelta(seconds=config.agent_session_idle + 60),
    )
    old = open_session(
        world.middleware,
        world.holder.agent_id,
        age=timedelta(seconds=config.agent_session_max_age + 60),
    )
    node = world.victim.cookies["ls_node"]
    return [
        Attempt(
            label,
            {"ls_vid": old_vid, "ls_node": node, "ls_agent": session.cookie},
            {"X-CSRF-Token": session.csrf},
            _public_or(route, 401),
        )
        for label, session in (("idle", idle), ("absolute", old))
    ]


def disabled_agent(world: World, route: Route) -> list[Attempt]:
    cookies = {"ls_agent": world.disabled.cookie}
    headers = {"X-CSRF-Token": world.disabled.csrf}
    login = (world.disabled_email, AGENT_PASSWORD)  # the right password, a disabled account
    return [Attempt("disabled", cookies, headers, _public_or(route, 401), login=login)]


def _agent_read(route: Route) -> bool:
    return route.auth == "agent" and not route.csrf


def missing_csrf(world: World, route: Route) -> list[Attempt]:
    cookies = {"ls_agent": world.holder.cookie}
    return [
        Attempt(label, cookies, headers, _csrf_status(route), authorized=_agent_read(route))
        for label, headers in (("absent", {}), ("empty", {"X-CSRF-Token": ""}))
    ]


def other_csrf(world: World, route: Route) -> list[Attempt]:
    """Another agent's token, and another session's token of the same agent."""
    twin = open_session(world.middleware, world.holder.agent_id)
    cookies = {"ls_agent": world.holder.cookie}
    return [
        Attempt(
            label,
            cookies,
            {"X-CSRF-Token": csrf},
            _csrf_status(route),
            authorized=_agent_read(route),
        )
        for label, csrf in (
            ("other-agent", world.other.csrf),
            ("same-agent-other-session", twin.csrf),
        )
    ]


def _csrf_status(route: Route) -> int:
    if route.auth == "agent":
        return 403 if route.csrf else 200
    return _public_or(route, 401)


def _agent_write(route: Route) -> bool:
    return route.side == "agent" and route.method == "POST"


def cross_site(world: World, route: Route) -> list[Attempt]:
    """A valid session and its CSRF token, sent by a page of another origin."""
    attempts = []
    for i, extra in enumerate(CROSS_SITE_ATTEMPTS):
        session = world.session()  # fresh: a logout that gets through ends only its own
        cookies = {"ls_agent": session.cookie}
        headers = {"X-CSRF-Token": session.csrf, **extra}
        if _agent_write(route):
            expected = 403
        elif route.auth == "agent":
            expected = 200
        else:
            expected = _public_or(route, 401)
        login = (world.holder_email, AGENT_PASSWORD)  # a login CSRF: the right password
        cid = world.decoy() if _agent_write(route) else None
        attempts.append(
            Attempt(
                f"cross-site-{i}",
                cookies,
                headers,
                expected,
                login=login,
                cid=cid,
                authorized=_agent_read(route),
            )
        )
    return attempts


CELLS: dict[str, Callable[[World, Route], list[Attempt]]] = {
    "no-cookie": no_cookie,
    "other-visitor": other_visitor,
    "tampered": tampered,
    "expired": expired,
    "disabled-agent": disabled_agent,
    "missing-csrf": missing_csrf,
    "other-csrf": other_csrf,
    "cross-site": cross_site,
}


def _params() -> list[Any]:
    params = []
    for cell in CELLS:
        for route in ROUTES:
            params.append(pytest.param(cell, route, id=f"{cell}-{route.endpoint}"))
    return params


@pytest.mark.parametrize("cell, route", _params())
def test_matrix(world: World, cell: str, route: Route) -> None:
    before = world.snapshot()
    for attempt in CELLS[cell](world, route):
        response = request(world, route, attempt)
        where = f"{cell}/{attempt.label}: {route.method} {route.path}"
        assert response.status_int == attempt.expected, (
            where,
            response.status,
            response.text[:300],
        )
        if response.status_int >= 400:
            assert_error(response, attempt.expected)
        if not (attempt.authorized and response.status_int < 400):
            headers = "\n".join(f"{k}: {v}" for k, v in response.headerlist)
            assert leaked(world.secrets, response.body, headers) == [], where
    # Nothing any cell was refused (or allowed on its own data) touched the victim's conversation.
    assert world.snapshot() == before, (cell, route.endpoint)
    probe = Client(world.middleware)
    probe.set_cookie("ls_agent", world.holder.cookie)
    assert probe.get_api("/agent/session").status_int == 200, "the holder's session survived"


# -- around the matrix --------------------------------------------------------------


def test_every_route_is_in_the_matrix() -> None:
    """A new route must be classified: public ones need their usual answer here."""
    for route in ROUTES:
        if route.auth is None:
            assert route.endpoint in PUBLIC_STATUS, route.endpoint
        elif route.auth == "visitor":
            assert route.endpoint in OWN_VISITOR_STATUS, route.endpoint
        else:
            assert route.side == "agent", route.endpoint
    assert {r.endpoint for r in ROUTES if r.auth is None} == set(PUBLIC_STATUS)


def test_same_origin_agent_writes_are_served(world: World) -> None:
    """The console's own requests (same origin, fetch metadata and all) keep working,
    whatever cross-site check is added."""
    for route in ROUTES:
        if not _agent_write(route) or route.endpoint == "agent_login":
            continue
        session = world.session()
        attempt = Attempt(
            "same-origin",
            {"ls_agent": session.cookie},
            {"X-CSRF-Token": session.csrf, **SAME_ORIGIN},
            0,
            cid=world.decoy(held_by=session),
        )
        response = request(world, route, attempt)
        assert response.status_int < 400, (
            route.endpoint,
            response.status,
            response.text[:200],
        )
    login = Attempt("login", {}, SAME_ORIGIN, 200, login=(world.holder_email, AGENT_PASSWORD))
    assert request(world, _route("agent_login"), login).status_int == 200


def test_the_secrets_are_there_to_leak(world: World) -> None:
    """The leak checks are not vacuous: the holder and the victim do see every secret."""
    holder = Client(world.middleware)
    holder.set_cookie("ls_agent", world.holder.cookie)
    detail = holder.get_api(f"/agent/conversations/{world.victim_cid}").text
    history = world.victim.get_api("/visitor/history").text
    cookies_and_token = world.secrets[-4:]
    assert set(leaked(world.secrets, detail, history)) == set(world.secrets[:-4])
    assert leaked(cookies_and_token, detail, history) == []


def test_a_visitor_cookie_names_only_its_own_visitor(world: World) -> None:
    """Everything Mallory's cookie reaches, in one place: her session, history, poll and
    close answers all name her conversation and never the victim's."""
    mallory = world.attacker
    answers = [
        mallory.post_api("/visitor/session", {}).json,
        mallory.get_api("/visitor/history").json,
        mallory.poll(timeout=1),
        mallory.post_api("/visitor/close").json,
    ]
    text = json.dumps(answers, ensure_ascii=False)
    assert leaked(world.secrets, text) == []
    assert "mallory's own question" in text
