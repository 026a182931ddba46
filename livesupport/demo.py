"""The host site and set-up behind ``livesupport demo``.

:func:`app` is a plain WSGI application (no framework) for a fictional tea
shop: a few full HTML pages, so the middleware has somewhere to inject the
widget. :func:`prepare` keeps the demo's state in one local folder: the secret
key (generated once, so visitor and agent cookies survive restarts), the SQLite
database and the demo agent's password, generated on first start and printed
on every start.

Not for production: use ``livesupport serve`` with your own application.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.base import Store

DEFAULT_DATA_DIR = "livesupport-demo"
AGENT_EMAIL = "demo@example.com"
AGENT_NAME = "Dana (demo agent)"
NODE_ID = "demo"  # fixed, so the affinity cookie stays valid across restarts

StartResponse = Callable[..., Any]

_STYLE = """
body{margin:0;font:16px/1.55 system-ui,sans-serif;color:#2b2a28;background:#faf7f2}
header{background:#234a3a;color:#fff;padding:1rem 0}
.wrap{max-width:56rem;margin:0 auto;padding:0 1.25rem}
header .wrap{display:flex;align-items:center;justify-content:space-between;flex-wrap:wrap}
header a{color:#e9f2ec;text-decoration:none;margin-left:1.25rem}
header a.on{color:#fff;border-bottom:2px solid #f0c05a}
.brand{font-weight:700;font-size:1.3rem;margin:0}
main{padding:2.5rem 0 4rem}
h1{font-size:2.1rem;line-height:1.2;margin:0 0 .75rem}
.lead{font-size:1.15rem;color:#55524c;max-width:40rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:1.25rem;margin-top:2rem}
.card{background:#fff;border:1px solid #e6e0d6;border-radius:12px;padding:1.25rem 1.5rem}
.card h2{margin:.2rem 0 .4rem;font-size:1.2rem}
.price{font-size:1.8rem;font-weight:700;color:#234a3a}
.note{margin-top:2.5rem;padding:1rem 1.25rem;border-left:4px solid #f0c05a;background:#fff}
footer{border-top:1px solid #e6e0d6;color:#7a756c;font-size:.9rem;padding:1.5rem 0}
"""

_PAGES: dict[str, tuple[str, str]] = {
    "/": (
        "Home",
        """<h1>Small-batch tea, brewed with care</h1>
<p class="lead">Kettle &amp; Leaf sources single-estate teas from twelve family
gardens and ships them fresh every Monday.</p>
<div class="cards">
<div class="card"><h2>Morning Assam</h2><p>Malty, brisk, made for milk.</p></div>
<div class="card"><h2>Sencha Asahi</h2><p>Grassy and sweet, steamed the day it was picked.</p></div>
<div class="card"><h2>Old Tree Oolong</h2><p>Stone fruit and honey; five infusions.</p></div>
</div>
<p class="note">Questions about a blend? Open the chat in the corner: the demo
agent answers from the console.</p>""",
    ),
    "/pricing": (
        "Pricing",
        """<h1>Tea subscriptions</h1>
<p class="lead">Pause or cancel any time. Shipping is free above two tins.</p>
<div class="cards">
<div class="card"><h2>Taster</h2><p class="price">&euro;9<small>/month</small></p>
<p>Two 25&nbsp;g sample pouches.</p></div>
<div class="card"><h2>Daily Cup</h2><p class="price">&euro;19<small>/month</small></p>
<p>Two 100&nbsp;g tins of the season&rsquo;s picks.</p></div>
<div class="card"><h2>Tea House</h2><p class="price">&euro;49<small>/month</small></p>
<p>For offices and caf&eacute;s: 1&nbsp;kg, your choice of gardens.</p></div>
</div>""",
    ),
    "/contact": (
        "Contact",
        """<h1>Talk to us</h1>
<p class="lead">The quickest way is the chat button on every page. We also read
every letter.</p>
<div class="cards">
<div class="card"><h2>Shop</h2><p>Kettle &amp; Leaf<br>14 Harbour Lane<br>Porthleven</p></div>
<div class="card"><h2>Hours</h2><p>Monday to Friday, 9:00&ndash;17:00.<br>
Chat outside these hours and we reply in the morning.</p></div>
</div>""",
    ),
}


def _render(path: str, title: str, content: str) -> bytes:
    nav = "".join(
        f'<a href="{href}"{" class=on" if href == path else ""}>{label}</a>'
        for href, (label, _) in _PAGES.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} &middot; Kettle &amp; Leaf</title><style>{_STYLE}</style></head>
<body><header><div class="wrap"><p class="brand">Kettle &amp; Leaf</p>
<nav>{nav}</nav></div></header>
<main class="wrap">{content}</main>
<footer><div class="wrap">A fictional shop, served by <code>livesupport demo</code>.</div></footer>
</body></html>
""".encode()


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The demo shop: ``/``, ``/pricing`` and ``/contact``; anything else is 404."""
    path = environ.get("PATH_INFO") or "/"
    page = _PAGES.get(path.rstrip("/") or "/")
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        status, body = "405 Method Not Allowed", _render(path, "Oops", "<h1>Read-only shop</h1>")
    elif page is None:
        status, body = "404 Not Found", _render(path, "Not found", "<h1>No such page</h1>")
    else:
        status, body = "200 OK", _render(path, page[0], page[1])
    start_response(
        status,
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


@dataclass(frozen=True)
class DemoState:
    """What :func:`prepare` found or made in the data folder."""

    data_dir: Path
    secret_key: str
    store_url: str
    password: str
    password_is_new: bool  # the agent's stored hash must be set to it


def _read_or_create(path: Path, make: Callable[[], str], min_len: int) -> tuple[str, bool]:
    """The file's stripped contents, or ``make()`` written there (owner-only) if the
    file is missing or shorter than ``min_len``. The flag says it was just made."""
    try:
        value = path.read_text(encoding="utf-8").strip()
        if len(value) >= min_len:
            return value, False
    except FileNotFoundError:
        pass
    value = make()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    os.replace(tmp, path)
    return value, True


def prepare(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> DemoState:
    """Create the data folder and its secret key and agent password if missing."""
    folder = Path(data_dir).resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # holds the agent's password
    # 48 random bytes: long enough that the demo needs no insecure_demo switch.
    secret_key, _ = _read_or_create(folder / "secret-key", lambda: secrets.token_urlsafe(48), 32)
    password, is_new = _read_or_create(
        folder / "agent-password", lambda: secrets.token_urlsafe(12), 8
    )
    store_url = f"sqlite:///{folder / 'livesupport.db'}"
    return DemoState(folder, secret_key, store_url, password, is_new)


def ensure_agent(store: Store, state: DemoState) -> None:
    """Make the demo agent exist, be enabled and have the password in the data folder."""
    from .passwords import hash_password

    agent = store.get_agent_by_email(AGENT_EMAIL)
    if agent is None:
        store.create_agent(AGENT_EMAIL, AGENT_NAME, "supervisor", hash_password(state.password))
        return
    if state.password_is_new:
        store.update_agent(agent.id, password_hash=hash_password(state.password))
    if agent.disabled:
        store.update_agent(agent.id, disabled=False)


def banner(state: DemoState, url: str, prefix: str) -> str:
    """What ``livesupport demo`` prints once it listens on ``url``."""
    return (
        f"livesupport demo, data in {state.data_dir}\n"
        f"  site:     {url}/\n"
        f"  console:  {url}{prefix}/agent/\n"
        f"  email:    {AGENT_EMAIL}\n"
        f"  password: {state.password}\n"
        "Open the site and the console in two browser windows. Ctrl-C to stop."
    )
