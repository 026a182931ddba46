"""The applications the benchmark serves.

- ``host``: a plain WSGI site with one HTML page of about 3 KB, what the
  middleware wraps (``livesupport serve benchmarks.apps:host``); the page is a
  constant, or with ``BENCH_PAGE=rendered`` built per request like a template's;
- ``chat``: that site already wrapped, with ``BENCH_AGENTS`` agents seeded
  (``bench-agent-<i>@example.com``, password :data:`AGENT_PASSWORD`). Their
  password hashes use Argon2id's smallest cost so that signing in a thousand
  agents takes no minute; the protocol path is the same;
- ``python -m benchmarks.apps --port P``: the bare host on livesupport's own
  gevent server, the baseline of the passthrough scenario.
"""

from __future__ import annotations

import os
from typing import Any

AGENT_PASSWORD = "bench-agent-password"
PAGE = (
    b"<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
    b"<link rel=stylesheet href=/static/site.css></head><body><header><h1>Shop</h1>"
    b"<nav><a href=/>Home</a> <a href=/cart>Cart</a></nav></header><main>"
    + b"".join(
        b"<article><h2>Product %d</h2><p>A fine product, described at some length so "
        b"that the page weighs what a real one does.</p><p>Price: %d.00</p></article>" % (i, i)
        for i in range(20)
    )
    + b"</main><footer>&copy; Shop</footer></body></html>"
)


PRODUCTS = [(i, f"Product {i}", f"{i}.00") for i in range(20)]
ITEM = (
    "<article><h2>{name}</h2><p>A fine product, described at some length so that the page "
    "weighs what a real one does.</p><p>Price: {price}</p><a href=/p/{id}>Buy</a></article>"
)
# BENCH_PAGE=rendered: the page is built per request, as a template engine would
# (about 20 µs here); static: a constant, the cheapest page a host can serve.
RENDERED = os.environ.get("BENCH_PAGE") == "rendered"


def render_page() -> bytes:
    items = "".join(ITEM.format(id=i, name=name, price=price) for i, name, price in PRODUCTS)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
        "<link rel=stylesheet href=/static/site.css></head><body><header><h1>Shop</h1>"
        f"<nav><a href=/>Home</a> <a href=/cart>Cart</a></nav></header><main>{items}</main>"
        "<footer>&copy; Shop</footer></body></html>"
    ).encode()


def host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("PATH_INFO") == "/":
        page = render_page() if RENDERED else PAGE
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
        )
        return [page]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


def cheap_hash(password: str) -> str:
    """An Argon2id PHC string at the smallest cost (benchmark agents only)."""
    from livesupport.passwords import _b64, _derive

    salt = os.urandom(16)
    digest = _derive(password, salt, 8, 1, 1, 32)
    return f"$argon2id$v=19$m=8,t=1,p=1${_b64(salt)}${_b64(digest)}"


def agent_email(index: int) -> str:
    return f"bench-agent-{index}@example.com"


def _chat() -> Any:
    if not os.environ.get("LIVESUPPORT_STORE"):
        return None  # imported for ``host`` or the bare server
    from livesupport import LiveSupport

    middleware = LiveSupport(host)
    hashed = cheap_hash(AGENT_PASSWORD)
    for i in range(int(os.environ.get("BENCH_AGENTS", "0"))):
        if middleware.store.get_agent_by_email(agent_email(i)) is None:
            middleware.store.create_agent(agent_email(i), f"Agent {i}", "agent", hashed)
    return middleware


chat = _chat() if os.environ.get("BENCH_AGENTS") is not None else None


def main() -> None:
    import argparse

    from gevent import monkey

    monkey.patch_all()
    from livesupport.server import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(host, "127.0.0.1", args.port, on_ready=lambda url: None)


if __name__ == "__main__":
    main()
