"""The wire contract as OpenAPI 3.1, built from the route table and the schemas
that also validate requests, so the document cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any

from . import __version__
from . import schemas as s
from .routes import Route

_ERRORS = {
    400: "Unparseable JSON, query or cursor",
    401: "Missing or invalid session or cookie",
    403: "Missing or wrong CSRF token",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    422: "Well-formed JSON with wrong content",
    429: "Rate limited; see Retry-After",
    503: "Store or bus unavailable; see Retry-After",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _without_nul(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every unpatterned string refusing U+0000, as the validator does."""
    copy = dict(schema)
    if copy.get("type") == "string" and "pattern" not in copy:
        copy["pattern"] = "^[^\\x00]*$"
    if "properties" in copy:
        copy["properties"] = {k: _without_nul(v) for k, v in copy["properties"].items()}
    return copy


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.endpoint,
        "summary": route.summary,
        "tags": [route.side],
    }
    params = [
        {
            "name": n,
            "in": "query",
            "required": False,
            "description": d,
            "schema": t if isinstance(t, dict) else {"type": t},
        }
        for n, t, d in route.query
    ]
    names = re.findall(r"<(?:\w+:)?(\w+)>", route.path)
    params += [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": s.ID_PATTERN},
        }
        for n in names
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": not route.body_optional,
            "content": {"application/json": {"schema": _without_nul(route.body)}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if route.status != 204:
        schema = route.answer or ({"type": "string"} if route.media != "application/json" else {})
        ok["content"] = {route.media: {"schema": schema}}
    responses: dict[str, Any] = {str(route.status): ok}
    if route.status == 201:
        responses["200"] = {"description": "A repeat of an earlier send", "content": ok["content"]}
    codes = [400, 404, 405, 503, *route.errors]
    if route.auth:
        codes.append(401)
    if route.csrf:
        codes.append(403)
    if route.method == "POST":
        codes += [409, 413, 415, 422, 429]
    if route.endpoint == "widget":
        responses["304"] = {"description": "Not modified"}
    for code in sorted(set(codes)):
        responses[str(code)] = _error(_ERRORS[code])
    op["responses"] = responses
    if route.auth == "visitor":
        op["security"] = [{"visitorCookie": []}]
    elif route.auth == "agent":
        op["security"] = (
            [{"agentSession": [], "csrfToken": []}] if route.csrf else [{"agentSession": []}]
        )
    return op


def document(routes: tuple[Route, ...], prefix: str) -> dict[str, Any]:
    """The OpenAPI document for the routes a node serves, mounted at ``prefix``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "livesupport",
            "version": __version__,
            "description": "The livesupport wire protocol, v1: visitor widget and agent console.",
        },
        "servers": [{"url": prefix}],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": s.ERROR,
                "Message": s.MESSAGE,
                "Event": s.EVENT,
                "Conversation": s.CONVERSATION,
            },
            "securitySchemes": {
                "visitorCookie": {"type": "apiKey", "in": "cookie", "name": "ls_vid"},
                "agentSession": {"type": "apiKey", "in": "cookie", "name": "ls_agent"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }
