"""The WSGI middleware: the chat under a prefix, the host application everywhere else.

Use it around the WSGI application a site already runs::

    from livesupport import LiveSupport
    application = LiveSupport(app, secret_key=os.environ["SECRET"], store="sqlite:///chat.db")

Requests under ``prefix`` are the chat's (see PROTOCOL.md); all others go to
the host application untouched, except that its HTML pages get the widget's
script tag (not on ``role="agent"`` nodes).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound as WzNotFound
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from . import assets
from .agent import AgentAPI
from .agent_log import AgentLog
from .auth import Auth, cross_site
from .buffers import VisitorBuffers
from .bus import BusUnavailable, open_bus
from .config import Config
from .context import Context
from .delivery import Delivery
from .errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    Unavailable,
)
from .http import APIRequest, APIResponse, error_response, json_response, read_json
from .hub import PollHub
from .injection import StartResponse, WSGIApp, inject
from .openapi import document
from .routes import Route, Router, routes_for
from .schemas import validate
from .signing import Signer
from .store import StoreUnavailable, open_store
from .visitor import VisitorAPI
from .widget_config import widget_script

log = logging.getLogger("livesupport")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class LiveSupport:
    """Live support chat for the WSGI application ``app``.

    :param app: The host WSGI application.
    :param settings: Any field of :class:`~livesupport.config.Config`
        (``secret_key``, ``store``, ``bus``, ``prefix``, ``node_id``, ``role``,
        ``identify``, limits...); those not given are read from
        ``LIVESUPPORT_<NAME>`` environment variables, then defaults.

    Constructing it opens the store (creating or migrating its schema) and
    the bus; :meth:`shutdown` answers every parked poll, :meth:`close`
    releases connections.
    """

    def __init__(self, app: WSGIApp, **settings: Any) -> None:
        self.app = app
        self.config = config = Config.from_env(**settings)
        self.store = open_store(config.store)
        self.bus = open_bus(config.bus)
        self.hub = PollHub(max_per_key=config.max_polls_per_visitor)
        self.buffers = VisitorBuffers()
        self.agent_log = AgentLog()
        self.delivery = Delivery(
            self.bus,
            self.hub,
            self.buffers,
            self.agent_log,
            node_id=config.node_id,
            role=config.role,
        )
        signer = Signer(config.secret_key)
        self.ctx = Context(
            config=config,
            store=self.store,
            signer=signer,
            auth=Auth(config, signer, self.store),
            hub=self.hub,
            delivery=self.delivery,
            buffers=self.buffers,
        )
        self.delivery.forget_session = self.ctx.auth.forget
        if config.role != "visitor":  # the nodes that answer agents' polls
            self.store.on_commit = self.delivery.committed
        self.routes = routes_for(config.role)
        self._urls = Router(self.routes)
        self._injecting: dict[str, WSGIApp] = {}  # by SCRIPT_NAME
        self._handlers: dict[str, Any] = {}
        for api in (VisitorAPI(self.ctx), AgentAPI(self.ctx), self):
            for route in self.routes:
                if hasattr(api, route.endpoint):
                    self._handlers.setdefault(route.endpoint, getattr(api, route.endpoint))
        self._openapi: dict[str, bytes] = {}
        self._host = app if config.role == "agent" else None
        self._gevent_checked = False
        hops = config.trusted_proxies
        self._chat: WSGIApp = (
            ProxyFix(self._routes, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
            if hops
            else self._routes
        )
        self.delivery.start()

    # -- WSGI ------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        prefix = self.config.prefix
        if path == prefix or path.startswith(prefix + "/"):
            return self._chat(environ, start_response)
        if self._host is None:
            script_name = environ.get("SCRIPT_NAME", "")
            injecting = self._injecting.get(script_name)
            if injecting is None:  # one wrapper per mount point, not one per request
                script = escape(script_name + prefix + "/widget.js")
                snippet = f'<script src="{script}" async></script>'.encode()
                injecting = inject(self.app, snippet)
                if len(self._injecting) < 64:
                    self._injecting[script_name] = injecting
            return injecting(environ, start_response)
        return self._host(environ, start_response)

    def _routes(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The chat's own routes (``_chat``: behind ``ProxyFix`` when proxies are trusted,
        so only these requests see the forwarded address; the host's pass untouched)."""
        if not self._gevent_checked:
            self._check_gevent(environ)
        request = APIRequest(environ)
        prefix = self.config.prefix
        sub = environ.get("PATH_INFO", "")[len(prefix) :] or "/"
        if sub == "/agent" and self.config.role != "visitor":
            # The console's assets are relative to /agent/, so it must end in a slash.
            target = request.script_root + prefix + "/agent/"
            headers = {"Location": target, **SECURITY_HEADERS}
            headers["Content-Security-Policy"] = API_CSP
            return Response(status=308, headers=headers)(environ, start_response)
        response = self._handle(request, sub)
        return response(environ, start_response)

    def _handle(self, request: Request, path: str) -> Response:
        try:
            try:
                route, args = self._urls.match(path, method=request.method)
            except WzMethodNotAllowed as exc:
                raise MethodNotAllowed(
                    "method not allowed here", list(exc.valid_methods or [])
                ) from None
            except (WzNotFound, RequestRedirect):
                raise NotFound("no such route") from None
            response = self._dispatch(route, request, args)
        except ApiError as error:
            response = error_response(error)
        except StoreUnavailable:
            log.warning("store unavailable", exc_info=True)
            response = error_response(
                Unavailable("the chat's storage is unavailable; retry shortly")
            )
        except BusUnavailable:
            log.warning("bus unavailable", exc_info=True)
            response = error_response(
                Unavailable("the chat's message bus is unavailable; retry shortly")
            )
        except Exception:
            # A bug, not the client's doing: logged in full, answered in the error shape.
            log.exception("error handling %s %s", request.method, request.path)
            response = error_response(InternalError("internal error; it has been logged"))
        if not isinstance(response, APIResponse):  # those carry them already
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Content-Security-Policy", API_CSP)
        return response

    def _dispatch(self, route: Route, request: Request, args: Mapping[str, Any]) -> Response:
        handler = self._handlers[route.endpoint]
        who: Any = None
        if route.auth == "visitor":
            auth = self.ctx.auth
            who = auth.visitor(request) if route.loads_visitor else auth.visitor_id(request)
        elif route.auth == "agent":
            who = self.ctx.auth.agent(request, csrf=route.csrf)
        if route.side == "agent" and route.method == "POST" and cross_site(request):
            raise Forbidden("agent actions are accepted from the console's own origin only")
        try:
            request.args  # noqa: B018 (parsed here, once, so bad bytes answer 400 in order)
        except UnicodeDecodeError:
            raise BadRequest("the query string is not valid UTF-8") from None
        if route.side == "public" or route.media != "application/json":  # pages and files
            return handler(request)
        body: dict[str, Any] = {}
        if route.method == "POST":
            limit = self.config.max_body_bytes
            if route.body is None or route.body_optional:
                body = read_json(request, None, limit)
                if route.body is not None:
                    validate(body, route.body)
            else:
                body = read_json(request, route.body, limit)
        if who is None:
            return handler(request, body)
        return handler(request, body, who, **args)

    def _check_gevent(self, environ: dict[str, Any]) -> None:
        self._gevent_checked = True
        if "gevent" not in sys.modules:
            return
        from gevent import monkey

        server = str(environ.get("SERVER_SOFTWARE", "")).lower()
        if "gevent" in server and not monkey.is_module_patched("threading"):
            log.error(
                "livesupport runs under gevent without monkey-patching: every parked "
                "long-poll blocks the whole process. Call gevent.monkey.patch_all() first "
                "(livesupport serve does)."
            )

    # -- the middleware's own routes ------------------------------------------
    def widget(self, request: Request) -> Response:
        data, etag = widget_script(self.config)
        return assets.serve(request, data, etag, "text/javascript", "public, max-age=300")

    def console(self, request: Request) -> Response:
        data, etag = assets.load("console.html")
        response = assets.serve(request, data, etag, "text/html", "no-cache")
        response.headers["Content-Security-Policy"] = CONSOLE_CSP
        return response

    def console_script(self, request: Request) -> Response:
        data, etag = assets.load("console.js")
        return assets.serve(request, data, etag, "text/javascript", "no-cache")

    def console_style(self, request: Request) -> Response:
        data, etag = assets.load("console.css")
        return assets.serve(request, data, etag, "text/css", "no-cache")

    def healthz(self, request: Request) -> Response:
        parts = {"store": "ok", "bus": "ok"}
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            parts["store"] = f"unavailable: {exc}"[:200]
        try:
            self.bus.ping()
        except BusUnavailable as exc:
            parts["bus"] = f"unavailable: {exc}"[:200]
        ok = all(v == "ok" for v in parts.values())
        data: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "node_id": self.config.node_id,
            "role": self.config.role,
            **parts,
        }
        if ok:
            return json_response(data)
        failing = ", ".join(k for k, v in parts.items() if v != "ok")
        data["error"] = {"code": "unavailable", "message": f"{failing} unavailable"}
        return json_response(data, 503, {"Retry-After": "5"})

    def openapi(self, request: Request) -> Response:
        prefix = request.script_root + self.config.prefix
        body = self._openapi.get(prefix)
        if body is None:
            body = self._openapi[prefix] = json.dumps(document(self.routes, prefix)).encode()
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    # -- life cycle ------------------------------------------------------------
    def shutdown(self) -> None:
        """Answer every parked poll now and every later one at once (before stopping)."""
        self.hub.release_all()

    def close(self) -> None:
        self.shutdown()
        self.bus.close()
        self.store.dispose()
