"""Generated mutations of every signed token (issue 6, item 3).

``ls_vid``, ``ls_node``, ``ls_agent`` and both kinds of cursor are mutated by
hypothesis (bit flips, truncations, extensions, re-encodings, swapped and
spliced fields, the same fields signed for another purpose or with another
secret, whole tokens of other kinds) and fed to the verifier: none may be
accepted. Most examples exercise :class:`~livesupport.signing.Signer` (and
the cursor check) directly; a few thousand go through the WSGI app, where
none may be accepted or answered with a 5xx. :data:`EXAMPLES` adds up to more
than 10,000.

The session token and the cookies never appear in a response body, a URL or a
log line, in-process and in a real ``livesupport serve`` process.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from werkzeug.sansio.http import parse_cookie

from livesupport import LiveSupport
from livesupport.errors import BadRequest
from livesupport.passwords import hash_password
from livesupport.signing import Signer

from ..conftest import (
    AGENT_PASSWORD,
    API,
    SECRET_KEY,
    Client,
    call_wsgi,
    new_visitor,
    stdlib_host_app,
)
from ..live import SECRET as LIVE_SECRET
from ..live import LiveServer
from .conftest import OTHER_SECRET, Session, cookie_header, open_session

# Examples per property: 8,000 against the signer, 2,400 through the WSGI app.
EXAMPLES = {
    "signer-visitor": 2000,
    "signer-node": 2000,
    "signer-agent": 2000,
    "signer-cursor": 2000,
    "wsgi-visitor": 600,
    "wsgi-node": 500,
    "wsgi-agent": 600,
    "wsgi-cursor": 700,
}
PURPOSES = ("visitor", "node", "agent", "cursor")


def _settings(name: str) -> settings:
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_the_properties_add_up_to_10000_examples() -> None:
    assert sum(EXAMPLES.values()) >= 10_000


# -- the tokens ------------------------------------------------------------------------


@dataclass
class Tokens:
    """One deployment's valid tokens, and another principal's of each kind."""

    middleware: LiveSupport
    visitor_id: str
    other_visitor_id: str
    vid: str
    other_vid: str
    node: str
    other_node: str  # the same node's affinity, for the other visitor
    agent: Session
    other_agent: Session
    visitor_cursor: str
    other_visitor_cursor: str
    agent_cursor: str

    @property
    def signer(self) -> Signer:
        return self.middleware.ctx.signer

    def all(self) -> list[str]:
        return [
            self.vid,
            self.other_vid,
            self.node,
            self.other_node,
            self.agent.cookie,
            self.other_agent.cookie,
            self.visitor_cursor,
            self.other_visitor_cursor,
            self.agent_cursor,
        ]


@pytest.fixture(scope="module")
def tokens() -> Iterator[Tokens]:
    middleware = LiveSupport(
        stdlib_host_app,
        secret_key=SECRET_KEY,
        store="memory://",
        node_id="web-1",
        messages_per_minute=10**6,
    )
    middleware.shutdown()  # polls answer at once
    try:
        one, two = new_visitor(Client(middleware)), new_visitor(Client(middleware))
        one.send("hello")
        agents = [
            middleware.store.create_agent(f"m{i}@example.com", f"M {i}", "agent", "x")
            for i in range(2)
        ]
        agent, other_agent = (open_session(middleware, a.id) for a in agents)
        agent_client = Client(middleware)
        agent_client.set_cookie("ls_agent", agent.cookie)
        yield Tokens(
            middleware=middleware,
            visitor_id=one.session["visitor_id"],
            other_visitor_id=two.session["visitor_id"],
            vid=one.cookies["ls_vid"],
            other_vid=two.cookies["ls_vid"],
            node=one.cookies["ls_node"],
            other_node=two.cookies["ls_node"],
            agent=agent,
            other_agent=other_agent,
            visitor_cursor=one.poll()["cursor"],
            other_visitor_cursor=two.poll()["cursor"],
            agent_cursor=agent_client.poll(side="agent")["cursor"],
        )
    finally:
        middleware.close()


# -- mutations ---------------------------------------------------------------------------

FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in map(chr, range(0x21, 0x7F))}


def _flip(token: str, flips: list[tuple[int, int]]) -> str:
    data = bytearray(token.encode("utf-8"))
    for index, bit in flips:
        data[index % len(data)] ^= 1 << bit
    return data.decode("latin-1")


def _reencodings(token: str) -> list[str]:
    """The same token spelled differently: none of these is the token."""
    payload, _, mac = token.rpartition(".")
    padded = mac + "=" * (-len(mac) % 4)
    try:
        raw_mac = base64.urlsafe_b64decode(padded)
    except ValueError:
        raw_mac = mac.encode()
    return [
        token.replace("-", "+").replace("_", "/"),
        f"{payload}.{base64.b64encode(raw_mac).decode()}",
        f"{payload}.{raw_mac.hex()}",
        f"{payload}.{padded}=",
        token + "=",
        token + "==",
        "".join(f"%{ord(c):02X}" for c in token),
        quote(token, safe=""),
        token.replace(".", "%2E"),
        token.replace(".", "\u2024"),  # ONE DOT LEADER
        token.upper(),
        token.lower(),
        token.swapcase(),
        "".join(FULLWIDTH.get(c, c) for c in token),
        f'"{token}"',
        f" {token}",
        f"{token} ",
        f"{token}\t",
        f"{token}\x00",
        base64.urlsafe_b64encode(token.encode()).decode(),
        json.dumps(token),
        token.encode("utf-16-le").decode("latin-1"),
        ".".join(reversed(token.split("."))),
        token[::-1],
    ]


def simple_mutations(token: str) -> st.SearchStrategy[str]:
    """Mutations computed from ``token`` alone."""
    n = len(token)
    if n == 0:
        return st.text(min_size=1, max_size=20)
    positions = st.integers(0, n - 1)
    bits = st.integers(0, 7)
    fields = token.split(".")
    return st.one_of(
        st.lists(st.tuples(positions, bits), min_size=1, max_size=4).map(
            lambda flips: _flip(token, flips)
        ),
        st.integers(0, n - 1).map(lambda k: token[:k]),
        st.integers(1, n).map(lambda k: token[k:]),
        st.tuples(positions, positions).map(lambda ij: token[: min(ij)] + token[max(ij) + 1 :]),
        st.text(min_size=1, max_size=40).map(lambda s: token + s),
        st.text(min_size=1, max_size=40).map(lambda s: s + token),
        st.tuples(positions, st.text(min_size=1, max_size=8)).map(
            lambda p: token[: p[0]] + p[1] + token[p[0] :]
        ),
        st.tuples(positions, st.characters()).map(
            lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]
        ),
        st.sampled_from(_reencodings(token)),
        st.permutations(fields).map(".".join),
        st.tuples(st.integers(0, len(fields) - 1), st.text(max_size=12)).map(
            lambda p: ".".join(p[1] if i == p[0] else f for i, f in enumerate(fields))
        ),
    )


def _again(token: str, rnd: random.Random) -> str:
    """A second mutation on top of a first (a plain function: building a strategy per
    example would cost more than the check)."""
    if not token:
        return rnd.choice(["x", ".", "\x00"])
    i = rnd.randrange(len(token))
    choice = rnd.randrange(5)
    if choice == 0:
        return _flip(token, [(i, rnd.randrange(8))])
    if choice == 1:
        return token[:i]
    if choice == 2:
        return (
            token[:i]
            + chr(rnd.choice([0, 0x2E, 0x3D, 0x41, 0x7F, 0xFF, 0x2024, 0x1F600]))
            + token[i:]
        )
    if choice == 3:
        return token[:i] + token[i + 1 :]
    return rnd.choice(_reencodings(token))


def mutations(token: str, related: list[str], resigned: list[str]) -> st.SearchStrategy[str]:
    """Every kind of mutation of ``token``.

    ``related``: valid tokens of the same kind for other principals, spliced
    field by field into this one (never used whole: they are valid for whom they
    name). ``resigned``: the same fields signed for another purpose or with
    another secret, and whole tokens of other kinds.
    """
    fields = token.split(".")
    splices = []
    for other in related:
        other_fields = other.split(".")
        if len(other_fields) == len(fields):
            for i in range(len(fields)):
                spliced = list(fields)
                spliced[i] = other_fields[i]
                splices.append(".".join(spliced))
    simple = simple_mutations(token)
    return st.one_of(
        simple,
        st.tuples(simple, st.randoms(use_true_random=False)).map(lambda p: _again(*p)),
        st.sampled_from(splices or [token + "x"]),
        st.sampled_from(resigned),
    )


def _resigned(tokens: Tokens, purpose: str, fields: list[str], *valid: str) -> list[str]:
    """``fields`` signed for the other purposes and with another secret, and every valid
    token of another kind (``valid``: those of this kind, left out: they verify)."""
    foreign = Signer(OTHER_SECRET)
    others = [tokens.signer.sign(p, *fields) for p in PURPOSES if p != purpose]
    return [*others, foreign.sign(purpose, *fields), *(t for t in tokens.all() if t not in valid)]


def _vid_fields(tokens: Tokens) -> list[str]:
    return tokens.vid.split(".")[:2]


def _strategy(tokens: Tokens, kind: str) -> tuple[str, st.SearchStrategy[str]]:
    """The valid token of ``kind`` and its mutations."""
    signer = tokens.signer
    if kind == "visitor":
        fields = _vid_fields(tokens)
        resigned = _resigned(tokens, kind, fields, tokens.vid, tokens.other_vid)
        return tokens.vid, mutations(tokens.vid, [tokens.other_vid], resigned)
    if kind == "node":
        # The affinity's MAC covers "<node>.<visitor>": re-signed the same way with other keys.
        payload = f"web-1.{tokens.visitor_id}"
        resigned = [f"web-1.{Signer(OTHER_SECRET)._mac('node', payload)}"]
        resigned += [f"web-1.{signer._mac(p, payload)}" for p in PURPOSES if p != "node"]
        resigned += [t for t in tokens.all() if t != tokens.node]
        return tokens.node, mutations(tokens.node, [tokens.other_node], resigned)
    if kind == "agent":
        cookie = tokens.agent.cookie
        resigned = _resigned(tokens, kind, [tokens.agent.token], cookie, tokens.other_agent.cookie)
        return cookie, mutations(cookie, [tokens.other_agent.cookie], resigned)
    cursor = tokens.visitor_cursor
    resigned = _resigned(tokens, "cursor", cursor.split(".")[:3], cursor)
    related = [tokens.other_visitor_cursor, tokens.agent_cursor]
    return cursor, mutations(cursor, related, resigned)


def _cursor_position(tokens: Tokens, raw: str, kind: str, principal: str) -> int | None:
    """What the poll handlers make of ``raw`` as a cursor: a position, or BadRequest."""
    request = SimpleNamespace(args={"cursor": raw})  # all read_cursor reads of a request
    return tokens.middleware.ctx.read_cursor(request, kind, principal)  # type: ignore[arg-type]


def _accepts(tokens: Tokens, kind: str) -> Callable[[str], bool]:
    signer = tokens.signer
    if kind == "visitor":
        return lambda m: signer.visitor_from(m) is not None
    if kind == "node":
        return lambda m: signer.affinity_from(m, tokens.visitor_id) is not None
    if kind == "agent":
        return lambda m: signer.unsign("agent", m, 1) is not None

    def cursor(m: str) -> bool:
        try:
            _cursor_position(tokens, m, "v", tokens.visitor_id)
        except BadRequest:
            return False
        return m in ("", tokens.visitor_cursor)  # empty: no cursor at all, not a cursor

    return cursor


# -- against the signer --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["visitor", "node", "agent", "cursor"])
def test_mutated_tokens_never_verify(tokens: Tokens, kind: str) -> None:
    original, strategy = _strategy(tokens, kind)
    accepts = _accepts(tokens, kind)
    assert accepts(original), "the unmutated token verifies"
    seen = itertools.count()

    @_settings(f"signer-{kind}")
    @given(strategy)
    def check(mutated: str) -> None:
        assume(mutated != original and mutated != "")
        # Lone surrogates never arrive over HTTP (werkzeug decodes cookies and queries as
        # UTF-8 with replacement), but the signer refuses them too rather than raise.
        next(seen)
        assert not accepts(mutated), mutated

    check()
    assert next(seen) >= EXAMPLES[f"signer-{kind}"]


def test_cursors_of_others_never_read(tokens: Tokens) -> None:
    """Whole valid cursors, of another visitor or of an agent, are someone else's: 400."""
    for raw, kind, principal in (
        (tokens.other_visitor_cursor, "v", tokens.visitor_id),
        (tokens.agent_cursor, "v", tokens.visitor_id),
        (tokens.visitor_cursor, "a", tokens.agent.agent_id),
    ):
        with pytest.raises(BadRequest):
            _cursor_position(tokens, raw, kind, principal)


# -- through the WSGI app -------------------------------------------------------------------


def _latin1(text: str) -> str:
    """``text`` as a server hands a header or query to WSGI: UTF-8 bytes, read as latin-1."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _cookie_env(cookies: dict[str, str]) -> str:
    return _latin1(cookie_header(cookies))


def _seen(env_cookie: str, name: str) -> str | None:
    """The value the application reads for cookie ``name`` (the WSGI, latin-1 header)."""
    return parse_cookie(env_cookie).get(name)  # as the application parses it


def _call(tokens: Tokens, path: str, query: str = "", **environ: Any) -> tuple[int, Any, bytes]:
    status, headers, body = call_wsgi(tokens.middleware, "GET", API + path, query, **environ)
    assert status < 500, (status, body[:300])
    return status, headers, body


def _error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def _wsgi_property(tokens: Tokens, name: str, kind: str, check: Callable[[str, str], None]) -> None:
    original, strategy = _strategy(tokens, kind)
    seen = itertools.count()

    @_settings(name)
    @given(strategy)
    def run(mutated: str) -> None:
        assume(mutated != original and mutated != "")
        next(seen)
        check(original, mutated)

    run()
    assert next(seen) >= EXAMPLES[name]


def test_mutated_ls_vid_is_401(tokens: Tokens) -> None:
    def check(original: str, mutated: str) -> None:
        env = _cookie_env({"ls_vid": mutated, "ls_node": tokens.node})
        assume(_seen(env, "ls_vid") not in (original, tokens.other_vid))
        status, _, body = _call(tokens, "/visitor/history", HTTP_COOKIE=env)
        assert (status, _error_code(body)) == (401, "unauthorized"), mutated

    _wsgi_property(tokens, "wsgi-visitor", "visitor", check)


def test_mutated_ls_node_is_reissued(tokens: Tokens) -> None:
    """A visitor with a forged affinity is served, and its ``ls_node`` replaced."""

    def check(original: str, mutated: str) -> None:
        env = _cookie_env({"ls_vid": tokens.vid, "ls_node": mutated})
        assume(_seen(env, "ls_node") != original and _seen(env, "ls_vid") == tokens.vid)
        status, headers, body = _call(tokens, "/visitor/poll", "timeout=1", HTTP_COOKIE=env)
        assert status == 200, (mutated, body[:200])
        cookies = [v for k, v in headers if k.lower() == "set-cookie" and v.startswith("ls_node=")]
        assert [c.split(";")[0] for c in cookies] == [f"ls_node={original}"], mutated

    _wsgi_property(tokens, "wsgi-node", "node", check)


def test_mutated_ls_agent_is_401(tokens: Tokens) -> None:
    def check(original: str, mutated: str) -> None:
        env = _cookie_env({"ls_agent": mutated})
        assume(_seen(env, "ls_agent") not in (original, tokens.other_agent.cookie))
        headers = {"HTTP_X_CSRF_TOKEN": tokens.agent.csrf}
        status, _, body = _call(tokens, "/agent/session", HTTP_COOKIE=env, **headers)
        assert (status, _error_code(body)) == (401, "unauthorized"), mutated

    _wsgi_property(tokens, "wsgi-agent", "agent", check)


def test_mutated_cursors_are_400(tokens: Tokens) -> None:
    visitor_env = _cookie_env({"ls_vid": tokens.vid, "ls_node": tokens.node})
    agent_env = _cookie_env({"ls_agent": tokens.agent.cookie})
    flip = itertools.cycle([True, False])

    def check(original: str, mutated: str) -> None:
        query = _latin1(
            urlencode({"cursor": mutated.encode("utf-8", "surrogatepass"), "timeout": "1"})
        )
        if next(flip):
            status, _, body = _call(tokens, "/visitor/poll", query, HTTP_COOKIE=visitor_env)
        else:
            assume(mutated != tokens.agent_cursor)
            status, _, body = _call(tokens, "/agent/poll", query, HTTP_COOKIE=agent_env)
        assert (status, _error_code(body)) == (400, "bad_request"), mutated

    _wsgi_property(tokens, "wsgi-cursor", "cursor", check)


# -- tokens stay out of bodies, URLs and logs -----------------------------------------------


@dataclass
class Trace:
    """Everything a run of the protocol showed: bodies, URLs and headers (less Set-Cookie)."""

    shown: list[str]
    cookies: set[str]  # every cookie value the server set
    csrf_tokens: set[str]


def _drive(middleware: LiveSupport, email: str) -> Trace:
    """A visitor and an agent through a whole conversation, the errors included."""
    shown: list[str] = []
    cookies: set[str] = set()
    csrf_tokens: set[str] = set()

    def seen(response: Any) -> Any:
        shown.append(response.request.url)
        shown.append(response.body.decode("utf-8", "replace"))
        for name, value in response.headerlist:
            if name.lower() == "set-cookie":
                cookies.add(value.split(";")[0].partition("=")[2])
            else:
                shown.append(f"{name}: {value}")
        return response

    visitor = Client(middleware)
    seen(visitor.post_json(API + "/visitor/session", {"name": "Ann"}))
    sent = seen(visitor.post_api("/visitor/messages", {"client_msg_id": "t-1", "body": "hi"}))
    cid = sent.json["message"]["conversation_id"]
    cursor = seen(visitor.get_api("/visitor/poll", {"timeout": 1})).json["cursor"]
    agent = Client(middleware)
    for password in ("wrong password", AGENT_PASSWORD):
        login = seen(agent.post_api("/agent/login", {"email": email, "password": password}))
    agent.csrf = login.json["csrf_token"]
    csrf_tokens.add(agent.csrf)
    seen(agent.get_api("/agent/session"))
    seen(agent.get_api("/agent/poll", {"timeout": 1}))
    seen(
        agent.post_api(
            f"/agent/conversations/{cid}/messages", {"client_msg_id": "a-1", "body": "hello"}
        )
    )
    seen(agent.post_api("/agent/status", {"status": "away"}, csrf=False))  # 403
    seen(agent.get_api("/agent/poll", {"cursor": "tampered" + cursor, "timeout": 1}))  # 400
    seen(visitor.get_api("/visitor/poll", {"cursor": cursor, "timeout": 1}))
    seen(agent.post_api("/agent/logout"))
    seen(agent.get_api("/agent/session"))  # 401 after logout
    visitor.set_cookie("ls_vid", visitor.cookies["ls_vid"] + "x")
    seen(visitor.get_api("/visitor/history"))  # 401
    return Trace(shown, cookies - {"", '""'}, csrf_tokens)


def _secrets_of(middleware: LiveSupport, trace: Trace) -> set[str]:
    """The cookie values, and the bearer token inside each ``ls_agent``."""
    found = set(trace.cookies)
    for value in trace.cookies:
        fields = middleware.ctx.signer.unsign("agent", value, 1)
        if fields:
            found.add(fields[0])
    return found


def test_tokens_never_in_bodies_urls_or_logs(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = make_app(login_attempts=100)
    email = middleware.store.create_agent("t@example.com", "T", "agent", _hash()).email
    with caplog.at_level(logging.DEBUG):
        trace = _drive(middleware, email)
    secrets_ = _secrets_of(middleware, trace)
    assert len(secrets_) >= 4, trace.cookies  # ls_vid, ls_node, ls_agent and its token
    shown = "\n".join(trace.shown)
    assert [s for s in secrets_ if s in shown] == []
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert [s for s in secrets_ | trace.csrf_tokens if s in logged] == []


def _hash() -> str:
    from ..conftest import _password_hash

    return _password_hash()


def test_store_failures_log_no_request_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that fails mid-request (SQLite busy): the 503 is logged, what was being
    written is not."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import livesupport.auth

    middleware = LiveSupport(
        stdlib_host_app,
        secret_key=SECRET_KEY,
        node_id="web-1",
        store=f"sqlite:///{tmp_path / 'ls.db'}",
    )
    issued: list[str] = []
    real_token = livesupport.auth.secrets.token_urlsafe

    def recorded(nbytes: int | None = None) -> str:
        value = real_token(nbytes)
        if nbytes == 32:  # the session and CSRF tokens (ids are shorter)
            issued.append(value)
        return value

    monkeypatch.setattr(livesupport.auth.secrets, "token_urlsafe", recorded)
    failing = False

    def busy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if failing and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
            raise error

    # On every engine (the store may keep more than one), for this test only.
    event.listen(Engine, "before_cursor_execute", busy)
    try:
        email = middleware.store.create_agent("f@example.com", "F", "agent", _hash()).email
        visitor = new_visitor(Client(middleware))
        failing = True
        secret_body = "my card number is 4111 1111 1111 1111"
        with caplog.at_level(logging.DEBUG):
            sent = visitor.send(secret_body)
            moved = visitor.post_api("/visitor/session", {"email": "ann@private.example"})
            login = visitor.post_api("/agent/login", {"email": email, "password": AGENT_PASSWORD})
        assert [r.status_int for r in (sent, moved, login)] == [503, 503, 503]
        assert len(issued) == 2  # the session token and the CSRF token of the failed login
        logged = caplog.text
        assert "database is locked" in logged  # the failure itself is logged
        shown = [s for s in (secret_body, "ann@private.example", *issued) if s in logged]
        assert shown == []
    finally:
        event.remove(Engine, "before_cursor_execute", busy)
        middleware.close()


@pytest.mark.live
def test_live_server_logs_no_tokens(tmp_path: Path) -> None:
    """A real ``livesupport serve``: after a login, polls, a send and a logout, its output
    (stdout and stderr, the logs included) holds no cookie, token or CSRF token."""
    store = f"sqlite:///{tmp_path / 'live.db'}"
    admin = LiveSupport(stdlib_host_app, secret_key=LIVE_SECRET, store=store, node_id="setup")
    try:
        admin.store.create_agent("live@example.com", "Live", "agent", hash_password(AGENT_PASSWORD))
    finally:
        admin.close()
    try:
        server = LiveServer(tmp_path, store)
    except RuntimeError as exc:
        pytest.skip(f"livesupport serve did not start: {exc}")
    try:
        http = requests.Session()
        answer = http.post(server.api + "/visitor/session", json={"name": "Ann"}, timeout=10)
        sent = http.post(
            server.api + "/visitor/messages",
            json={"client_msg_id": "l-1", "body": "hi"},
            timeout=10,
        )
        cid = sent.json()["message"]["conversation_id"]
        http.get(
            server.api + "/visitor/poll",
            params={"cursor": answer.json()["cursor"] + "x", "timeout": 1},
            timeout=10,
        )
        agent = requests.Session()
        agent.post(
            server.api + "/agent/login",
            json={"email": "live@example.com", "password": "no"},
            timeout=10,
        )
        login = agent.post(
            server.api + "/agent/login",
            json={"email": "live@example.com", "password": AGENT_PASSWORD},
            timeout=10,
        )
        csrf = login.json()["csrf_token"]
        headers = {"X-CSRF-Token": csrf}
        agent.post(
            server.api + f"/agent/conversations/{cid}/messages",
            json={"client_msg_id": "a-1", "body": "hello"},
            headers=headers,
            timeout=10,
        )
        agent.get(server.api + "/agent/poll", params={"timeout": 1}, timeout=10)
        values = {c.value for c in [*http.cookies, *agent.cookies]}
        agent.post(server.api + "/agent/logout", headers=headers, timeout=10)
    finally:
        server.stop()
    signer = Signer(LIVE_SECRET)
    tokens_ = {f[0] for v in values if (f := signer.unsign("agent", v, 1))}
    assert len(values) >= 3 and len(tokens_) == 1
    log_path = getattr(server, "log_path", tmp_path / f"server-{server.port}.log")
    output = Path(log_path).read_text(errors="replace")
    assert [s for s in values | tokens_ | {csrf} if s in output] == []
