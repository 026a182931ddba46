"""The route table: every route of the protocol, once.

The werkzeug URL map, the checks each route needs (visitor cookie, agent
session, CSRF token, body schema) and the OpenAPI document all come from
:data:`ROUTES`, filtered by the node's role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from werkzeug.routing import BaseConverter, Map, MapAdapter, Rule

from . import schemas as s

Side = Literal["visitor", "agent", "public"]
Auth = Literal["visitor", "agent", None]


# eq=False: werkzeug keys rules by endpoint, so a route hashes by identity.
@dataclass(frozen=True, slots=True, eq=False)
class Route:
    method: str
    path: str  # werkzeug rule syntax, relative to the prefix
    endpoint: str  # the handler's method name
    side: Side
    summary: str
    auth: Auth = None
    csrf: bool = False
    body: dict[str, Any] | None = None  # request schema; None: no body
    body_optional: bool = False
    status: int = 200
    answer: dict[str, Any] | None = None  # response schema for OpenAPI
    media: str = "application/json"
    # (name, JSON type or schema, description)
    query: tuple[tuple[str, str | dict[str, Any], str], ...] = ()
    errors: tuple[int, ...] = ()  # statuses beyond those its checks imply, for OpenAPI
    # False: the handler gets the visitor id from the signed cookie and reads the
    # store only when it must (polls answered from memory read none).
    loads_visitor: bool = True


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


CONVERSATION_ANSWER = _obj(conversation=s.CONVERSATION)
SEND_ANSWER = _obj(message=s.MESSAGE)
POLL_QUERY = (
    (
        "cursor",
        {"type": "string", "minLength": 1},
        "From the previous answer; absent: from the start (visitor) or now (agent).",
    ),
    ("timeout", "number", "Seconds to hold the request, clamped to 1..55 (default 25)."),
)
AGENT_JSON = _obj(id={"type": "string"}, name={"type": "string"}, email={"type": "string"},
                  role={"type": "string"})  # fmt: skip

ROUTES: tuple[Route, ...] = (
    # -- visitor ---------------------------------------------------------------
    Route("POST", "/api/v1/visitor/session", "visitor_session", "visitor",
          "Start or resume a visitor session; sets ls_vid and ls_node.",
          body=s.VISITOR_SESSION, body_optional=True,
          answer=_obj(visitor_id={"type": "string"}, conversation_id={"type": ["string", "null"]},
                      cursor={"type": "string"}, node_id={"type": "string"},
                      agents_online={"type": "boolean"})),
    Route("POST", "/api/v1/visitor/messages", "visitor_send", "visitor",
          "Send a message; opens a conversation if none is open. 201, or 200 on a repeat.",
          auth="visitor", body=s.SEND, status=201, answer=SEND_ANSWER),
    Route("GET", "/api/v1/visitor/poll", "visitor_poll", "visitor",
          "Long-poll for the visitor's events.", auth="visitor", loads_visitor=False,
          answer=s.POLL_ANSWER,
          query=POLL_QUERY),
    Route("GET", "/api/v1/visitor/history", "visitor_history", "visitor",
          "Messages of the current or last conversation.", auth="visitor",
          answer=_obj(messages={"type": "array", "items": s.MESSAGE}),
          query=(("before", "integer", "Only messages with a smaller seq."),
                 ("limit", "integer", "At most this many (1..100, default 50)."))),
    Route("POST", "/api/v1/visitor/typing", "visitor_typing", "visitor",
          "Tell the agent whether the visitor is typing.", auth="visitor", body=s.TYPING,
          status=204),
    Route("POST", "/api/v1/visitor/read", "visitor_read", "visitor",
          "Tell the agent what the visitor has read.", auth="visitor", body=s.READ, status=204),
    Route("POST", "/api/v1/visitor/close", "visitor_close", "visitor",
          "Close the visitor's conversation.", auth="visitor", answer=CONVERSATION_ANSWER),
    Route("POST", "/api/v1/visitor/rating", "visitor_rating", "visitor",
          "Rate the current or last conversation.", auth="visitor", body=s.RATING, status=204),
    Route("GET", "/widget.js", "widget", "visitor", "The visitor widget.",
          media="text/javascript"),
    # -- agent -----------------------------------------------------------------
    Route("GET", "/agent/", "console", "agent", "The agent console page.", media="text/html"),
    Route("GET", "/agent/console.js", "console_script", "agent", "The console's script.",
          media="text/javascript"),
    Route("GET", "/agent/console.css", "console_style", "agent", "The console's style sheet.",
          media="text/css"),
    Route("POST", "/api/v1/agent/login", "agent_login", "agent",
          "Sign in; sets ls_agent. 401 on bad credentials, 429 after repeated failures.",
          body=s.LOGIN, errors=(401,),
          answer=_obj(agent=AGENT_JSON, csrf_token={"type": "string"})),
    Route("GET", "/api/v1/agent/session", "agent_session", "agent",
          "The signed-in agent and its CSRF token (for a console reloaded after login).",
          auth="agent", answer=_obj(agent=AGENT_JSON, csrf_token={"type": "string"})),
    Route("POST", "/api/v1/agent/logout", "agent_logout", "agent",
          "Sign out; held conversations go back to the queue.", auth="agent", csrf=True,
          status=204),
    Route("POST", "/api/v1/agent/status", "agent_status", "agent", "Set presence.",
          auth="agent", csrf=True, body=s.AGENT_STATUS, status=204),
    Route("GET", "/api/v1/agent/agents", "agent_list", "agent",
          "Agents, for transfers.", auth="agent",
          answer=_obj(agents={"type": "array", "items": AGENT_JSON})),
    Route("GET", "/api/v1/agent/conversations", "agent_conversations", "agent",
          "Conversations, newest first.", auth="agent",
          answer=_obj(conversations={"type": "array", "items": s.CONVERSATION}),
          query=(("status", {"type": "string", "enum": ["waiting", "active", "closed"]},
                  "Only conversations in this state."),
                 ("limit", "integer", "1..100, default 50."),
                 ("before", {"type": "string", "pattern": s.ID_PATTERN},
                  "A conversation id: only older ones."))),
    Route("GET", "/api/v1/agent/conversations/<id:cid>", "agent_conversation", "agent",
          "A conversation and its messages.", auth="agent",
          answer=_obj(conversation=s.CONVERSATION, messages={"type": "array", "items": s.MESSAGE}),
          query=(("after_seq", "integer", "Only messages with a larger seq."),)),
    Route("POST", "/api/v1/agent/conversations/<id:cid>/claim", "agent_claim", "agent",
          "Take a waiting conversation; 409 if another agent holds it.",
          auth="agent", csrf=True, answer=CONVERSATION_ANSWER),
    Route("POST", "/api/v1/agent/conversations/<id:cid>/messages", "agent_send", "agent",
          "Reply; claims a waiting conversation first. 201, or 200 on a repeat.",
          auth="agent", csrf=True, body=s.SEND, status=201, answer=SEND_ANSWER),
    Route("POST", "/api/v1/agent/conversations/<id:cid>/typing", "agent_typing", "agent",
          "Tell the visitor whether the agent is typing.",
          auth="agent", csrf=True, body=s.TYPING, status=204),
    Route("POST", "/api/v1/agent/conversations/<id:cid>/transfer", "agent_transfer", "agent",
          "Hand the conversation to another agent.",
          auth="agent", csrf=True, body=s.TRANSFER, answer=CONVERSATION_ANSWER),
    Route("POST", "/api/v1/agent/conversations/<id:cid>/close", "agent_close", "agent",
          "Close the conversation.", auth="agent", csrf=True, answer=CONVERSATION_ANSWER),
    Route("GET", "/api/v1/agent/poll", "agent_poll", "agent",
          "Long-poll for the agent's events.", auth="agent", answer=s.POLL_ANSWER,
          query=POLL_QUERY),
    # -- both ------------------------------------------------------------------
    Route("GET", "/healthz", "healthz", "public", "Liveness of the node, its store and bus.",
          answer={"type": "object", "required": ["status", "node_id", "role", "store", "bus"]}),
    Route("GET", "/api/v1/openapi.json", "openapi", "public", "This contract, as OpenAPI 3.1."),
)  # fmt: skip


def routes_for(role: str) -> tuple[Route, ...]:
    """The routes a node of ``role`` serves."""
    if role == "all":
        return ROUTES
    return tuple(r for r in ROUTES if r.side in (role, "public"))


class IdConverter(BaseConverter):
    """Ids are opaque but made of these characters; anything else is no route (404),
    so a hostile path segment never reaches the store."""

    regex = "[A-Za-z0-9_-]{1,64}"


def url_map(routes: tuple[Route, ...]) -> Map:
    # strict_slashes off: "/agent" must not answer a redirect outside the error shape.
    return Map(
        [Rule(r.path, endpoint=r, methods=[r.method]) for r in routes],
        strict_slashes=False,
        merge_slashes=False,
        converters={"id": IdConverter},
    )


_PARAM = re.compile(r"<id:(\w+)>")


class Router:
    """Finds the route of a path, as ``url_map(routes)`` would, without walking werkzeug's
    matcher for the routes requests actually take.

    Exact paths are a dictionary lookup and the few with an id one regular expression
    each; anything else (an unknown path, a wrong method, a slash too many) goes to
    the werkzeug map, which then raises the same errors it always did. werkzeug
    gives static rules precedence over converters, and no dynamic route here can
    match a static route's path, so both agree on every path the fast part takes.
    """

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.urls: MapAdapter = url_map(routes).bind("localhost")
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: list[tuple[str, re.Pattern[str], Route]] = []
        for route in routes:
            if "<" not in route.path:
                self._static[(route.method, route.path)] = route
            else:
                pattern = _PARAM.sub(rf"(?P<\1>{IdConverter.regex})", route.path)
                self._dynamic.append((route.method, re.compile(pattern + r"\Z"), route))

    def match(self, path: str, method: str) -> tuple[Route, Mapping[str, Any]]:
        """The route and its arguments; werkzeug's ``NotFound``, ``MethodNotAllowed``
        or ``RequestRedirect`` as ``MapAdapter.match`` raises them."""
        route = self._static.get((method, path))
        if route is not None:
            return route, {}
        for wanted, pattern, route in self._dynamic:
            if wanted == method:
                found = pattern.match(path)
                if found is not None:
                    return route, found.groupdict()
        matched: tuple[Route, Mapping[str, Any]] = self.urls.match(path, method=method)
        return matched
