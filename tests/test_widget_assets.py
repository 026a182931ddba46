"""The middleware's own files and headers: widget.js, the console page, security headers,
/healthz, and which routes each role serves."""

from __future__ import annotations

import re
from typing import Any

import pytest

from livesupport.routes import ROUTES

from .conftest import (
    API,
    PREFIX,
    AppFactory,
    Client,
    assert_error,
    new_agent,
    new_visitor,
    route_url,
)


def csp_directives(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


# -- widget.js -------------------------------------------------------------------------


def test_widget_js_is_cacheable_with_an_etag(app: Client) -> None:
    response = app.get(PREFIX + "/widget.js")
    assert response.status_int == 200
    assert response.content_type in ("text/javascript", "application/javascript")
    assert b"LiveSupport" in response.body
    etag = response.headers["ETag"]
    assert re.fullmatch(r'(W/)?"[^"]+"', etag), etag
    assert "no-store" not in response.headers.get("Cache-Control", "")

    again = app.get(PREFIX + "/widget.js", headers={"If-None-Match": etag}, status=304)
    assert again.body == b""
    assert again.headers["ETag"] == etag
    weak = etag if etag.startswith("W/") else "W/" + etag
    app.get(PREFIX + "/widget.js", headers={"If-None-Match": weak}, status=304)
    app.get(PREFIX + "/widget.js", headers={"If-None-Match": f'"other", {etag}'}, status=304)
    app.get(PREFIX + "/widget.js", headers={"If-None-Match": "*"}, status=304)
    changed = app.get(PREFIX + "/widget.js", headers={"If-None-Match": '"stale"'})
    assert changed.status_int == 200 and changed.body == response.body


def test_widget_js_etag_is_stable_across_nodes(make_app: AppFactory) -> None:
    one = Client(make_app()).get(PREFIX + "/widget.js").headers["ETag"]
    two = Client(make_app(node_id="web-2")).get(PREFIX + "/widget.js").headers["ETag"]
    assert one == two


# -- the console -------------------------------------------------------------------------


def test_console_page_has_a_strict_csp(app: Client) -> None:
    response = app.get(PREFIX + "/agent/")
    assert response.status_int == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    directives = csp_directives(policy)
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives.get("default-src") == ["'none'"]
    assert "*" not in policy.split()
    for name in ("script-src", "style-src"):
        assert name in directives or directives["default-src"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers.get("Referrer-Policy") == "no-referrer"
    assert "ls_vid" not in response.headers.get("Set-Cookie", "")


def test_console_page_works_under_its_csp(app: Client) -> None:
    """No inline script, style or event handler that the policy would block."""
    html = app.get(PREFIX + "/agent/").text
    for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I):
        assert "src=" in match.group(1), match.group(0)
        assert match.group(2).strip() == ""
    assert not re.search(r"<style\b", html, re.I)
    assert not re.search(r"\sstyle\s*=", html, re.I)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)
    assert "javascript:" not in html.lower()
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        if src.startswith(("http:", "https:", "//", "data:")):
            continue
        asset = app.get(PREFIX + "/agent/" + src, expect_errors=True)
        assert asset.status_int == 200, src


def test_console_page_is_served_when_signed_in_too(app: Client) -> None:
    client, _, _ = new_agent(app)
    assert client.get(PREFIX + "/agent/").status_int == 200


# -- security headers on the API --------------------------------------------------------


def _api_answers(app: Client) -> list[tuple[str, Any]]:
    guest = new_visitor(app)
    return [
        ("session 200", app.post_json(API + "/visitor/session", {})),
        ("send 201", guest.send("hi")),
        ("typing 204", guest.post_api("/visitor/typing", {"typing": True})),
        ("history 200", guest.get_api("/visitor/history")),
        ("401", app.get_api("/visitor/history")),
        ("404", app.get(PREFIX + "/nope", expect_errors=True)),
        ("405", app.get(API + "/visitor/messages", expect_errors=True)),
        ("413", guest.post_raw("/api/v1/visitor/messages", b"x" * 70_000)),
        ("422", guest.post_api("/visitor/read", {"seq": "x"})),
        ("login 401", app.post_api("/agent/login", {"email": "a@b.c", "password": "x"})),
    ]


def test_security_headers_on_api_answers(app: Client) -> None:
    for name, response in _api_answers(app):
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("Referrer-Policy") == "no-referrer", name
        policy = csp_directives(headers.get("Content-Security-Policy", ""))
        assert policy.get("default-src") == ["'none'"], name
        assert policy.get("frame-ancestors") == ["'none'"], name
        assert headers.get("Cache-Control") == "no-store", name  # private, per-visitor data
        if response.status_int not in (204,):
            assert response.content_type == "application/json", name


def test_no_content_answers_have_no_content_type(app: Client, visitor) -> None:
    """RFC 9110: a 204 has no content, so no Content-Type either."""
    guest = visitor(app)
    guest.send("hi")
    for path, body in (("/visitor/typing", {"typing": True}), ("/visitor/read", {"seq": 1})):
        response = guest.post_api(path, body)
        assert response.status_int == 204
        assert response.body == b""
        assert "Content-Type" not in response.headers, response.headers


def test_host_responses_get_no_security_headers(app: Client) -> None:
    response = app.get("/data.json")
    assert "Content-Security-Policy" not in response.headers
    assert "X-Frame-Options" not in response.headers


# -- healthz, roles ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["all", "visitor", "agent"])
def test_healthz(make_app: AppFactory, role: str) -> None:
    client = Client(make_app(role=role, node_id="web-7"))
    response = client.get(PREFIX + "/healthz")
    assert response.status_int == 200
    assert response.json == {
        "status": "ok",
        "node_id": "web-7",
        "role": role,
        "store": "ok",
        "bus": "ok",
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_without_the_store(make_app: AppFactory) -> None:
    middleware = make_app()
    client = Client(middleware)

    def down() -> None:
        from livesupport.store import StoreUnavailable

        raise StoreUnavailable("connection refused")

    middleware.store.ping = down  # type: ignore[method-assign]
    response = client.get(PREFIX + "/healthz", expect_errors=True)
    assert response.status_int == 503
    assert response.json["status"] != "ok"
    assert response.json["store"] != "ok"
    assert response.json["bus"] == "ok"
    assert int(response.headers["Retry-After"]) >= 1


def _path(route: Any) -> str:
    return route_url(route, cid="c_x")


def test_a_visitor_node_serves_no_console(make_app: AppFactory) -> None:
    client = Client(make_app(role="visitor"))
    assert client.get(PREFIX + "/widget.js").status_int == 200
    assert client.post_json(API + "/visitor/session", {}).status_int == 200
    for route in ROUTES:
        if route.side == "agent":
            response = client.request(_path(route), method=route.method, expect_errors=True)
            assert_error(response, 404)


def test_an_agent_node_serves_no_visitor_routes(make_app: AppFactory) -> None:
    client = Client(make_app(role="agent"))
    assert client.get(PREFIX + "/agent/").status_int == 200
    assert client.get(PREFIX + "/healthz").json["role"] == "agent"
    for route in ROUTES:
        if route.side == "visitor":
            response = client.request(_path(route), method=route.method, expect_errors=True)
            assert_error(response, 404)
