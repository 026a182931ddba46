"""Hostile text never becomes markup in the widget or the console, in a real Chromium.

Every payload of the corpus (``xss_payloads.json``: script tags, event handlers,
``javascript:`` URLs, SVG and MathML, template injection, broken markup and
mutation-XSS shapes, RTL and zero-width tricks) goes into every field a
visitor or an agent controls: message bodies both ways, the visitor's name,
email, page URL, referrer, locale and browser, and the agent's name. The
payloads go in through the HTTP API, as an attacker would send them, in
batches, and are rendered by the real widget and console. The traps of
:mod:`.xss` count executions (each payload calls ``__xss(N)`` if it runs),
dialogs, popups and any element or attribute the UIs would not make; every
rendered field is read back and must show the payload's exact text with no
element in it but plain http(s) links. A payload over a field's limit must be
refused with 413 or 422, never stored half.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from livesupport.store import open_store

from ..live import LiveServer
from .conftest import (
    PASSWORD,
    agent_login,
    console,
    open_widget,
    start_server,
    visitor_says,
    widget,
)
from .xss import PAYLOADS, Watch, cheap_hash

# The protocol's limits on the visitor's details (schemas.VISITOR_SESSION).
LIMITS = {"name": 200, "email": 254, "page": 2000, "referrer": 2000, "locale": 35}
LOCALE_CHARS = LIMITS["locale"]
REFUSED = (413, 422)
RENDER_MS = 60_000  # hundreds of payloads at once on a shared 2-core machine
ARMED = 50  # payloads that run when put in as HTML, at least (the control)
BATCH = 100  # visitors in the console's queue at once: all it lists when it loads
# The widget puts names into its sentences with String.replace, which expands these.
DOLLAR = re.compile(r"\$[$&`']")
WIDGET_ROOT = "document.querySelector('ls-widget').shadowRoot"


@pytest.fixture(scope="module")
def xss_server(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One visitor sends the whole corpus, and hundreds of visitors come from one
    # address: lift the send and abuse limits, which are not what is tested here.
    live = start_server(
        tmp_path_factory.mktemp("xss"),
        LIVESUPPORT_MESSAGES_PER_MINUTE="100000",
        LIVESUPPORT_NEW_VISITORS_PER_IP="100000",
        LIVESUPPORT_NEW_CONVERSATIONS_PER_IP="100000",
    )
    yield live
    assert live.stop() == 0, live.output()


def test_the_corpus_is_large_and_varied() -> None:
    assert len(PAYLOADS) >= 300
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    classes = {
        "script tag": r"<script",
        "event handler": r"\bon[a-z]+\s*=",
        "javascript: URL": r"(?i)javascript:",
        "SVG": r"<svg",
        "MathML": r"<math",
        "template injection": r"\{\{.*constructor",
        "broken markup": r"^[\"'`]?>|</[a-z]+>?$|<!--|\]\]>",
        "bidi control": "[\u202a-\u202e\u2066-\u2069\u200e\u200f]",
        "zero width": "[\u200b-\u200d\ufeff\u2060]",
        "NUL": "\x00",
        "over the message limit": r"^.{10001,}$",
    }
    counts = {
        name: sum(1 for p in PAYLOADS if re.search(rx, p, re.S)) for name, rx in classes.items()
    }
    assert all(counts.values()), counts
    runnable = [i for i, p in enumerate(PAYLOADS) if f"__xss({i})" in p]
    assert len(runnable) >= 300, len(runnable)


def test_the_traps_catch_the_corpus_rendered_as_markup(xss_server, contexts):
    """The control: the same payloads put in as HTML (what the UIs must never do) run
    and inject elements, and the traps see it; so zero below means zero."""
    watch = Watch(contexts)
    page = watch.page()
    page.goto(xss_server.url + "/pricing")
    page.evaluate(
        """payloads => payloads.forEach(p => {
             const box = document.createElement('div');
             document.querySelector('main').appendChild(box);
             box.innerHTML = p;
           })""",
        PAYLOADS,
    )
    page.wait_for_function(f"() => new Set(__xssReport().calls).size >= {ARMED}")
    found = watch.verdict()
    ran = {int(m[1]) for n in found["calls"] if (m := re.search(r": (\d+)$", n))}
    assert len(ran) >= ARMED and len(found["injected"]) >= 150, (len(ran), len(found["injected"]))
    assert all(str(n) in PAYLOADS[n] for n in ran)  # each call names the payload that ran
    summary("control", ran_as_markup=len(ran), injected_seen=len(found["injected"]))


# -- helpers -----------------------------------------------------------------------------


def visitor_http(page: Any, server: LiveServer) -> requests.Session:
    """An HTTP client holding the cookies of the visitor whose widget runs in ``page``."""
    http = requests.Session()
    for cookie in page.context.cookies(server.url):
        http.cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"],
                         path=cookie["path"])  # fmt: skip
    return http


def agent_http(server: LiveServer, email: str) -> requests.Session:
    http = requests.Session()
    answer = http.post(server.api + "/agent/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    http.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return http


def supervisor(server: LiveServer) -> requests.Session:
    """A supervisor of this test's own, signed in over HTTP (it may close any conversation)."""
    email = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    store = open_store(server.store)
    store.create_agent(email, "Boss", "supervisor", cheap_hash(PASSWORD))
    store.dispose()
    return agent_http(server, email)


def post(http: requests.Session, url: str, body: Any, status: int | tuple[int, ...]) -> Any:
    answer = http.post(url, json=body, timeout=30)
    wanted = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in wanted, (url, answer.status_code, answer.text[:300])
    return answer


def away(watch: Watch, page: Any) -> None:
    """Leave the page (what its traps caught goes with it: check that first)."""
    watch.assert_clean()
    page.goto("about:blank")


def widget_away(watch: Watch, page: Any) -> None:
    """Leave the widget's page once it has stored a poll cursor, so hundreds of sends
    do not each wake a browser; back on the page, the widget catches up from that cursor."""
    page.wait_for_function(
        "() => Object.keys(localStorage).some(k => k.endsWith(':cur'))", timeout=RENDER_MS
    )
    away(watch, page)


def repeat_until(page: Any, condition: str, action: Callable[[], Any]) -> None:
    """``action`` until the JS ``condition`` holds: typing notices are ephemeral and may
    be lost, so a client repeats them (the UIs do, every few seconds while typing)."""
    deadline = time.monotonic() + RENDER_MS / 1000
    while True:
        action()
        try:
            page.wait_for_function(condition, timeout=2_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def wait_count(page: Any, expression: str, count: int) -> None:
    """Until ``expression`` (a JS expression of a node list) holds ``count`` nodes."""
    page.wait_for_function(f"n => ({expression}).length >= n", arg=count, timeout=RENDER_MS)


def plain(shape: dict[str, Any] | None, text: str, where: str) -> None:
    """The rendered node shows exactly ``text``, with no element but http(s) links."""
    assert shape is not None, f"{where}: not rendered"
    assert shape["bad"] == [], f"{where}: elements in user text: {shape['bad']}"
    assert shape["text"] == text, f"{where}: shows {shape['text']!r}, expected {text!r}"


def browser_url(page: Any, values: list[str]) -> list[str | None]:
    """What the console shows of a URL it makes a link of: the browser's own
    serialisation of an http(s) URL; None for anything else (shown as text)."""
    return list(
        page.evaluate(
            """values => values.map(v => {
                 try { const u = new URL(v); return /^https?:$/.test(u.protocol) ? u.href : null; }
                 catch (e) { return null; }
               })""",
            values,
        )
    )


def summary(name: str, **figures: Any) -> None:
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- message bodies ------------------------------------------------------------------------


def test_message_bodies_stay_text_in_the_widget_and_the_console(xss_server, contexts):
    started = time.monotonic()
    api = xss_server.api
    watch = Watch(contexts)
    ann = agent_http(xss_server, "ann@example.com")  # online: the widget offers the chat
    visitor_page = open_widget(watch.page(), xss_server)
    hello = f"Hello, corpus {uuid.uuid4().hex[:6]}"
    visitor_says(visitor_page, hello)
    first = widget(visitor_page, "message").filter(has_text=hello)
    sent = {int(first.get_attribute("data-seq") or 0): ("visitor", hello)}  # seq: (author, body)
    widget_away(watch, visitor_page)
    visitor = visitor_http(visitor_page, xss_server)

    refused: Counter[str] = Counter()
    cid = ""
    for i, payload in enumerate(PAYLOADS):
        answer = post(visitor, api + "/visitor/messages",
                      {"client_msg_id": f"v{i}", "body": payload}, (201, *REFUSED))  # fmt: skip
        if answer.status_code == 201:
            message = answer.json()["message"]
            assert message["body"] == payload
            sent[message["seq"]] = ("visitor", payload)
            cid = message["conversation_id"]
        else:
            refused["visitor message"] += 1
    post(ann, f"{api}/agent/conversations/{cid}/claim", None, 200)
    for i, payload in enumerate(PAYLOADS):
        answer = post(ann, f"{api}/agent/conversations/{cid}/messages",
                      {"client_msg_id": f"a{i}", "body": payload}, (201, *REFUSED))  # fmt: skip
        if answer.status_code == 201:
            message = answer.json()["message"]
            assert message["body"] == payload
            sent[message["seq"]] = ("agent", payload)
        else:
            refused["agent message"] += 1
    accepted = len(sent) - 1
    assert accepted >= 2 * 300, refused

    # The widget comes back and catches up from its cursor: the poll path of live messages.
    visitor_page.goto(xss_server.url + "/")
    widget_bubbles = f"{WIDGET_ROOT}.querySelectorAll('[data-ls=message][data-seq]')"
    wait_count(visitor_page, widget_bubbles, accepted)
    shown = check_widget_messages(visitor_page, sent, "widget (poll)")
    assert set(sent) - shown <= {min(sent)}, "messages sent while away are missing"
    checked = len(shown)
    # The console: the conversation with its whole history.
    agent_page = agent_login(watch.page(), xss_server)
    console(agent_page, "mine").locator(f"[data-id='{cid}']").click()
    bubbles = "document.querySelectorAll('#ls-messages [data-ls=message]')"
    wait_count(agent_page, bubbles, len(sent))
    rows = agent_page.evaluate(
        """() => Array.from(document.querySelectorAll('#ls-messages [data-ls=message]'))
             .map(r => ({seq: +r.dataset.seq, body: __xssShape(r.querySelector('.ls-bubble')),
                         meta: __xssShape(r.querySelector('.ls-meta'), '.ls-seen')}))"""
    )
    assert sorted(r["seq"] for r in rows) == sorted(sent)
    for row in rows:
        kind, body = sent[row["seq"]]
        plain(row["body"], body, f"console message {row['seq']}")
        assert row["meta"]["bad"] == []
        checked += 1
    # The widget after a reload: its history (the latest page of it) again.
    watch.assert_clean()
    visitor_page.reload()
    wait_count(visitor_page, widget_bubbles, 50)
    checked += len(check_widget_messages(visitor_page, sent, "widget (history)"))

    watch.assert_clean()
    assert contexts.errors == []
    summary(
        "message bodies",
        payloads=len(PAYLOADS),
        accepted=accepted,
        refused=dict(refused),
        renders_checked=checked,
        executions=0,
        seconds=round(time.monotonic() - started, 1),
    )


def check_widget_messages(page: Any, sent: dict[int, tuple[str, str]], where: str) -> set[int]:
    """Every message bubble in the widget against what was sent; the seqs shown."""
    rows = page.evaluate(
        f"""() => Array.from({WIDGET_ROOT}.querySelectorAll('[data-ls=message][data-seq]'))
             .map(r => ({{seq: +r.dataset.seq, mine: r.classList.contains('ls-mine'),
                          body: __xssShape(r.querySelector('.ls-bub')),
                          meta: __xssShape(r.querySelector('.ls-meta')),
                          avatar: __xssShape(r.querySelector('.ls-av'))}}))"""
    )
    for row in rows:
        kind, body = sent[row["seq"]]
        assert row["mine"] == (kind == "visitor"), row["seq"]
        plain(row["body"], body, f"{where} message {row['seq']}")
        for part in ("meta", "avatar"):
            assert row[part] is None or row[part]["bad"] == [], (where, row)
    shown = {r["seq"] for r in rows}
    assert len(shown) == len(rows), "a message is shown twice"
    return shown


# -- the visitor's details ---------------------------------------------------------------------


def user_agent(payload: str) -> str:
    """The payload as a User-Agent header where HTTP allows it (printable ASCII)."""
    fits = payload.isascii() and payload.isprintable() and payload == payload.strip()
    return payload if fits and len(payload) <= 500 else "Mozilla/5.0 (corpus)"


def new_visitor(api: str, index: int, payload: str) -> dict[str, Any]:
    """A visitor whose every detail is ``payload`` (where it fits), with one message."""
    http = requests.Session()
    http.headers["User-Agent"] = user_agent(payload)
    wanted = {field: payload[:LOCALE_CHARS] if field == "locale" else payload for field in LIMITS}
    details = {f: v for f, v in wanted.items() if len(v) <= LIMITS[f] and "\x00" not in v}
    visitor_id = post(http, api + "/visitor/session", details, 200).json()["visitor_id"]
    refused = [f for f in LIMITS if f not in details]
    for field in refused:  # too long for the field, or with U+0000: refused, nothing stored
        post(http, api + "/visitor/session", {field: wanted[field]}, REFUSED)
    body = payload
    answer = post(http, api + "/visitor/messages", {"client_msg_id": "m1", "body": body},
                  (201, *REFUSED))  # fmt: skip
    if answer.status_code != 201:
        refused.append("message")
        body = f"Hello from visitor {index}"
        answer = post(http, api + "/visitor/messages", {"client_msg_id": "m2", "body": body}, 201)
    return {
        "index": index, "http": http, "refused": refused, "body": body, "visitor_id": visitor_id,
        "cid": answer.json()["message"]["conversation_id"],
        "visitor": {f: details.get(f, "") for f in LIMITS}
        | {"user_agent": http.headers["User-Agent"]},
    }  # fmt: skip


# Each queue entry, then (clicked) the conversation's header and visitor details,
# which the console draws at once from the listed conversation.
SWEEP = """() => Array.from(document.querySelectorAll('#ls-queue [data-ls=conversation]'), b => {
  const $ = (id) => __xssShape(document.getElementById(id));
  const item = {id: b.dataset.id, avatar: __xssShape(b.children[0]),
                name: __xssShape(b.children[1]), preview: __xssShape(b.children[2])};
  b.click();
  Object.assign(item, {shown: !document.getElementById('ls-view').hidden, title: $('ls-title'),
                       subtitle: $('ls-subtitle'), viewAvatar: $('ls-view-avatar'), facts: {}});
  for (const row of document.querySelectorAll('#ls-facts > div')) {
    const label = row.querySelector('dt').textContent, dd = row.querySelector('dd');
    // The browser's name sits in a span of its own (a smaller font), alone.
    const ua = label === 'Browser' && dd.childNodes.length === 1 && dd.querySelector('.ls-ua');
    item.facts[label] = __xssShape(ua || dd);
  }
  return item;
})"""


def test_visitor_details_stay_text_in_the_console(xss_server, contexts):
    started = time.monotonic()
    api = xss_server.api
    watch = Watch(contexts)
    page = agent_login(watch.page(), xss_server)
    boss = supervisor(xss_server)
    refused: Counter[str] = Counter()
    checked = 0
    # In batches of what the console lists at once; the first arrives live (by the
    # console's poll), the others by the list the console reads when it loads.
    for start in range(0, len(PAYLOADS), BATCH):
        indexes = range(start, min(start + BATCH, len(PAYLOADS)))
        with ThreadPoolExecutor(4) as pool:
            visitors = list(pool.map(lambda i: new_visitor(api, i, PAYLOADS[i]), indexes))
        refused.update(f for v in visitors for f in v["refused"])
        by_cid = {v["cid"]: v for v in visitors}
        assert len(by_cid) == len(visitors)
        # What the server holds is exactly what was sent.
        stored = boss.get(api + "/agent/conversations?status=waiting&limit=100").json()
        mine = [c for c in stored["conversations"] if c["id"] in by_cid]
        assert len(mine) == len(by_cid)
        for conversation in mine:
            wanted = by_cid[conversation["id"]]["visitor"]
            assert {k: conversation["visitor"][k] for k in wanted} == wanted

        if start:
            page.goto(xss_server.url + "/livesupport/agent/")
        page.wait_for_function(
            "ids => ids.every(id => document.querySelector(`#ls-queue [data-id='${id}']`))",
            arg=list(by_cid),
            timeout=RENDER_MS,
        )
        items = [item for item in page.evaluate(SWEEP) if item["id"] in by_cid]
        assert len(items) == len(by_cid)
        checked += check_details(page, items, by_cid)
        checked += check_typing(page, api, visitors)
        away(watch, page)
        for cid in by_cid:
            post(boss, f"{api}/agent/conversations/{cid}/close", None, 200)

    watch.assert_clean()
    assert contexts.errors == []
    summary(
        "visitor details",
        visitors=len(PAYLOADS),
        refused=dict(refused),
        renders_checked=checked,
        executions=0,
        seconds=round(time.monotonic() - started, 1),
    )


def check_details(page: Any, items: list[dict[str, Any]], by_cid: dict[str, Any]) -> int:
    """The queue entries and each conversation's header and details against the visitors."""
    urls = [v["visitor"][f] for v in by_cid.values() for f in ("page", "referrer")]
    links = dict(zip(urls, browser_url(page, urls), strict=True))
    checked = 0
    for item in items:
        v = by_cid[item["id"]]
        d, where = v["visitor"], f"visitor {v['index']}"
        name = d["name"] or f"Visitor {v['visitor_id'][-4:].upper()}"
        plain(item["name"], name, f"{where} list name")
        assert item["preview"]["text"] in (v["body"], d["page"]), (where, item["preview"])
        plain(item["preview"], item["preview"]["text"], f"{where} list preview")
        assert item["shown"], where
        plain(item["title"], name, f"{where} title")
        subtitle = " · ".join(x for x in (d["email"], d["page"]) if x) or "No details given"
        plain(item["subtitle"], subtitle, f"{where} subtitle")
        for part in ("avatar", "viewAvatar"):
            assert item[part]["bad"] == [] and len(item[part]["text"]) <= 4, (where, item[part])
        facts = item["facts"]
        plain(facts["Name"], d["name"] or "Not given", f"{where} name")
        plain(facts["Email"], d["email"] or "Not given", f"{where} email")
        if d["page"]:
            plain(facts["Current page"], links[d["page"]] or d["page"], f"{where} page")
        else:
            assert "Current page" not in facts
        plain(facts["Referrer"], links.get(d["referrer"]) or d["referrer"] or "Direct visit",
              f"{where} referrer")  # fmt: skip
        plain(facts["Browser"], d["user_agent"], f"{where} browser")
        if d["locale"]:
            plain(facts["Locale"], d["locale"], f"{where} locale")
        checked += 12
    return checked


def check_typing(page: Any, api: str, visitors: list[dict[str, Any]]) -> int:
    """The console's "… is typing" line names the visitor too: a sample of nasty names."""
    sample = [v for v in visitors if re.search(r"[\u202e\u200b$<]", v["visitor"]["name"])][:2]
    for v in sample:
        console(page, "queue").locator(f"[data-id='{v['cid']}']").click()
        text = f"{v['visitor']['name']} is typing…"
        repeat_until(
            page,
            f"() => !document.getElementById('ls-typing').hidden && "
            f"document.getElementById('ls-typing').textContent === {json.dumps(text)}",
            lambda v=v: post(v["http"], api + "/visitor/typing", {"typing": True}, 204),
        )
        plain(page.evaluate("__xssShape(document.getElementById('ls-typing'))"), text, "typing")
    return len(sample)


# -- the agent's name --------------------------------------------------------------------------


def test_agent_names_stay_text_in_the_widget_and_the_console(xss_server, contexts):
    started = time.monotonic()
    api, tag = xss_server.api, uuid.uuid4().hex[:6]
    store = open_store(xss_server.store)
    hashed = cheap_hash(PASSWORD)
    sue = store.create_agent(f"sue-{tag}@example.com", "Sue Visor", "supervisor", hashed)
    agents = [store.create_agent(f"x{i}-{tag}@example.com", p, "agent", hashed)
              for i, p in enumerate(PAYLOADS)]  # fmt: skip
    store.dispose()

    watch = Watch(contexts)
    sue_http = agent_http(xss_server, sue.email)  # online: the widget offers the chat
    visitor_page = open_widget(watch.page(), xss_server)
    hello = f"Hello from the agent names test {tag}"
    visitor_says(visitor_page, hello)
    desk = agent_login(watch.page(), xss_server, sue.email)
    cid = visitor_page.locator("ls-widget .ls-conv").get_attribute("data-cid")
    console(desk, "queue").locator(f"[data-id='{cid}']").click()
    console(desk, "claim").click()
    expect(desk.locator("#ls-pill")).to_have_text("Active")
    joined = "Sue Visor joined the chat"
    expect(widget(visitor_page, "panel")).to_contain_text(joined, timeout=RENDER_MS)
    widget_away(watch, visitor_page)
    away(watch, desk)

    # Each agent in turn takes the conversation (from the one before) and writes.
    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(lambda a: agent_http(xss_server, a.email), agents))
    expected: dict[int, tuple[str, str]] = {}  # seq -> (what, agent name)
    for i, (agent, http) in enumerate(zip(agents, sessions, strict=True)):
        moved = post(sue_http, f"{api}/agent/conversations/{cid}/transfer",
                     {"agent_id": agent.id}, 200).json()["conversation"]  # fmt: skip
        expected[moved["last_seq"]] = ("transferred", agent.name)
        if i:
            expected[moved["last_seq"] - 1] = ("left", agents[i - 1].name)
        note = {"client_msg_id": f"n{i}", "body": f"note {i}"}
        sent = post(http, f"{api}/agent/conversations/{cid}/messages", note, 201).json()["message"]
        assert sent["author"]["name"] == agent.name
        expected[sent["seq"]] = ("message", agent.name)
    moved = post(sue_http, f"{api}/agent/conversations/{cid}/transfer", {"agent_id": sue.id}, 200)
    expected[moved.json()["conversation"]["last_seq"] - 1] = ("left", agents[-1].name)

    # The widget: "… left", "You're now chatting with …", and each agent's messages.
    visitor_page.goto(xss_server.url + "/")
    nodes = f"{WIDGET_ROOT}.querySelectorAll('[data-seq]')"
    top = max(expected) + 1
    visitor_page.wait_for_function(
        f"top => Array.from({nodes}).some(n => +n.dataset.seq >= top)", arg=top, timeout=RENDER_MS
    )
    shown = visitor_page.evaluate(
        f"""() => Object.fromEntries(Array.from({nodes}).map(n => [n.dataset.seq,
             n.classList.contains('ls-sys') ? {{sys: __xssShape(n)}}
             : {{meta: __xssShape(n.querySelector('.ls-meta')),
                 avatar: __xssShape(n.querySelector('.ls-av'))}}]))"""
    )
    checked = 0
    for seq, (what, name) in expected.items():
        node, where = shown[str(seq)], f"widget seq {seq}"
        if what in ("transferred", "left"):
            text = {"transferred": f"You're now chatting with {name}",
                    "left": f"{name} left the chat"}[what]  # fmt: skip
            plain(node["sys"], text, where)
        else:
            assert node["meta"]["bad"] == [] and node["avatar"]["bad"] == [], (where, node)
            assert node["meta"]["text"].startswith(f"{name} · "), (where, node["meta"], name)
        checked += 1

    # The widget's header and typing line name the agent holding the conversation.
    for agent in [a for a in agents if re.search(r"[\u202e$<]", a.name)][:4]:
        post(sue_http, f"{api}/agent/conversations/{cid}/transfer", {"agent_id": agent.id}, 200)
        http = agent_http(xss_server, agent.email)
        typing = f"{api}/agent/conversations/{cid}/typing"
        hidden = f"{WIDGET_ROOT}.querySelector('.ls-typing').hidden"
        repeat_until(visitor_page, f"() => !{hidden}",
                     lambda h=http, t=typing: post(h, t, {"typing": True}, 204))  # fmt: skip
        line, head, avatar = visitor_page.evaluate(
            f"() => ['.ls-tt', '.ls-sub', '.ls-avatar'].map("
            f"s => __xssShape({WIDGET_ROOT}.querySelector(s)))"
        )
        plain(line, f"{agent.name} is typing…", "widget typing")
        plain(head, f"Chatting with {agent.name}", "widget header")
        assert avatar["bad"] == [], avatar
        repeat_until(visitor_page, f"() => {hidden}",
                     lambda h=http, t=typing: post(h, t, {"typing": False}, 204))  # fmt: skip
        post(http, f"{api}/agent/conversations/{cid}/transfer", {"agent_id": sue.id}, 200)
        checked += 2

    # The console: the agents' messages in the conversation's history.
    desk.goto(xss_server.url + "/livesupport/agent/")  # it opens the conversation it showed
    wait_count(desk, "document.querySelectorAll('#ls-messages .ls-msg-other')", len(agents))
    metas = desk.evaluate(
        """() => Array.from(document.querySelectorAll('#ls-messages .ls-msg-other')).map(r =>
             [+r.dataset.seq, __xssShape(r.querySelector('.ls-meta'), '.ls-seen')])"""
    )
    for seq, meta in metas:
        what, name = expected[seq]
        assert what == "message" and meta["bad"] == [], (seq, meta)
        assert meta["text"].startswith(f"{name} · "), (seq, meta, name)
        checked += 1
    # The transfer menu lists every agent by name.
    listed = {a["id"]: a for a in sue_http.get(api + "/agent/agents").json()["agents"]}
    console(desk, "transfer").click()
    wait_count(desk, "document.querySelectorAll('#ls-transfer-menu button')", len(agents))
    menu = desk.evaluate(
        """() => Array.from(document.querySelectorAll('#ls-transfer-menu button')).map(b =>
             [b.dataset.agentId, __xssShape(b, ':scope > .ls-dot')])"""
    )
    for agent_id, shape in menu:
        a = listed[agent_id]
        status = "" if a["status"] == "online" else f" ({a['status'] or 'offline'})"
        plain(shape, a["name"] + status, f"transfer menu {agent_id}")
        checked += 1
    assert {a.id for a in agents} <= {agent_id for agent_id, _ in menu}
    # Transferring from the menu names the agent in a toast.
    target = agents[0]
    desk.locator(f"#ls-transfer-menu button[data-agent-id='{target.id}']").click()
    desk.wait_for_function(
        "t => document.getElementById('ls-toast').textContent === t",
        arg=f"Transferred to {target.name}",
    )
    plain(desk.evaluate("__xssShape(document.getElementById('ls-toast'))"),
          f"Transferred to {target.name}", "toast")  # fmt: skip
    # An agent's own name at the top of its console.
    for agent in agents[:3]:
        own = agent_login(watch.page(), xss_server, agent.email)
        plain(own.evaluate("__xssShape(document.getElementById('ls-me'))"), agent.name, "own name")
        checked += 1

    watch.assert_clean()
    assert contexts.errors == []
    summary(
        "agent names",
        agents=len(agents),
        renders_checked=checked + 1,
        executions=0,
        seconds=round(time.monotonic() - started, 1),
    )


def test_agent_names_with_dollar_patterns_are_shown_as_written(xss_server, contexts):
    name = next(p for p in PAYLOADS if DOLLAR.search(p))
    email = f"dollar-{uuid.uuid4().hex[:8]}@example.com"
    store = open_store(xss_server.store)
    store.create_agent(email, name, "agent", cheap_hash(PASSWORD))
    store.dispose()
    agent = agent_http(xss_server, email)
    watch = Watch(contexts)
    page = open_widget(watch.page(), xss_server)
    visitor_says(page, "Anyone there?")
    cid = page.locator("ls-widget .ls-conv").get_attribute("data-cid")
    post(agent, f"{xss_server.api}/agent/conversations/{cid}/claim", None, 200)
    joined = page.locator("ls-widget .ls-sys").last
    expect(joined).to_contain_text("joined the chat")
    watch.assert_clean()
    plain(page.evaluate("n => __xssShape(n)", joined.element_handle()),
          f"{name} joined the chat", "widget")  # fmt: skip
