"""Reading requests and writing answers in the protocol's conventions.

Checks come in the protocol's order: body too large (413), wrong content type
(415), unparseable JSON or query (400), then content (422, via
:func:`livesupport.schemas.validate`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.exceptions import ClientDisconnected
from werkzeug.sansio.http import parse_cookie
from werkzeug.utils import cached_property
from werkzeug.wrappers import Request, Response

from .errors import ApiError, BadRequest, TooLarge, UnsupportedMediaType
from .schemas import validate

JSON_TYPE = "application/json"
# Every API answer carries these; the middleware adds them to its other responses.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_API_TAIL = (("Cache-Control", "no-store"), *SECURITY_HEADERS, ("Content-Security-Policy", API_CSP))
# One encoder for every answer: json.dumps with arguments builds a new one each call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class APIRequest(Request):
    """A werkzeug :class:`Request` whose cookies are parsed from the one WSGI
    ``HTTP_COOKIE`` value: werkzeug's own goes through every header of the
    environ to find it, which costs a poll more than the rest of its parsing."""

    @cached_property
    def cookies(self) -> ImmutableMultiDict[str, str]:
        # The sans-IO parser, as werkzeug's own Request uses: it takes the header as the
        # WSGI server decoded it (latin-1), so bytes that are not UTF-8 are no error.
        cookie = self.environ.get("HTTP_COOKIE", "")
        return parse_cookie(cookie, cls=self.dict_storage_class)  # type: ignore[return-value]


class APIResponse(Response):
    """A werkzeug :class:`Response` of the API, built in one step.

    Its headers are constants and a computed length, so it skips werkzeug's
    per-header validation, content-type negotiation and ``get_wsgi_headers``
    fix-ups (no ``Location`` to make absolute; the length is set): they cost
    as much as the rest of a poll's answer. It is otherwise a plain
    ``Response``: handlers set cookies and headers on it as usual.
    """

    def __init__(self, body: bytes, status: int, headers: Iterable[tuple[str, str]]) -> None:
        fast = Headers()
        fast._list = list(headers)  # trusted constants: no newline can be in them
        self.headers = fast
        self.status = status
        self.direct_passthrough = False
        self._on_close = []
        self.response = [body] if body else []

    def get_wsgi_headers(self, environ: Any) -> Headers:
        return self.headers

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        # The body is one bytes object already: no encoding iterator, no closing wrapper.
        start_response(self.status, self.headers.to_wsgi_list())
        if environ.get("REQUEST_METHOD") == "HEAD" or self.status_code in (204, 304):
            return []
        return self.response  # type: ignore[return-value]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def read_json(request: Request, schema: dict[str, Any] | None, limit: int) -> dict[str, Any]:
    """The request's JSON object, checked against ``schema``.

    With ``schema`` ``None`` the route takes no body: an empty body is ``{}``,
    and anything sent is still parsed so that garbage is refused.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    try:
        if length is not None:
            # The server's input already stops at Content-Length; werkzeug's stream
            # wrapper would only add a second limit.
            raw = request.environ["wsgi.input"].read(length)
        else:
            raw = request.stream.read(limit + 1)
    except (OSError, ClientDisconnected):
        raise BadRequest("the body ended before its Content-Length") from None
    if len(raw) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    if not raw:  # whitespace is not an absent body: it is unparseable JSON
        if schema is None:
            return {}
        if request.mimetype != JSON_TYPE:
            raise UnsupportedMediaType("send the body as application/json")
        raise BadRequest("the body is empty; send a JSON object")
    if request.mimetype != JSON_TYPE:
        raise UnsupportedMediaType("send the body as application/json")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON bodies must be UTF-8")
    try:
        value = _decode(raw.decode("utf-8"))
        # Lone surrogates parse but cannot be stored or sent back as UTF-8.
        _encode(value).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid UTF-8 JSON") from None
    validate(value, schema or {"type": "object"})
    return value


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    """An integer query parameter; 400 if present but not a number."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        if len(raw) > 20:
            raise ValueError
        return int(raw, 10)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a whole number") from None


def query_number(request: Request, name: str) -> float | None:
    """A numeric query parameter; 400 if present but not a number (empty included)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if len(raw) > 20:
            raise ValueError
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"query parameter {name!r} must be a finite number")
    return value


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = _encode(data).encode("utf-8")
    head = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))), *_API_TAIL]
    if headers:
        head += headers.items()
    return APIResponse(body, status, head)


def no_content() -> Response:
    # A 204 has no content, so no type either.
    return APIResponse(b"", 204, _API_TAIL)


def error_response(error: ApiError) -> Response:
    body = error.body()
    head = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))), *_API_TAIL]
    return APIResponse(body, error.status, [*head, *error.headers.items()])
