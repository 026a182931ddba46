"""Reading requests and writing answers in the protocol's conventions.

Checks come in the protocol's order: body too large (413), wrong content type
(415), unparseable JSON or query (400), then content (422, via
:func:`livesupport.schemas.validate`).
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from .errors import ApiError, BadRequest, TooLarge, UnsupportedMediaType
from .schemas import validate

JSON_TYPE = "application/json"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json(request: Request, schema: dict[str, Any] | None, limit: int) -> dict[str, Any]:
    """The request's JSON object, checked against ``schema``.

    With ``schema`` ``None`` the route takes no body: an empty body is ``{}``,
    and anything sent is still parsed so that garbage is refused.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    if not raw.strip():
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
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        # Lone surrogates parse but cannot be stored or sent back as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
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
    raw = request.args.get(name)
    if raw is None or raw == "":
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
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    response = Response(body, status=status, mimetype=JSON_TYPE, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def no_content() -> Response:
    response = Response(status=204)
    del response.headers["Content-Type"]  # a 204 has no content, so no type either
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(error: ApiError) -> Response:
    response = Response(error.body(), status=error.status, mimetype=JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
