"""The front-end files from ``js/`` (package ``livesupport.js``), served with ETags."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files

from werkzeug.wrappers import Request, Response


@lru_cache(maxsize=16)
def load(name: str) -> tuple[bytes, str]:
    """A file's bytes and its strong ETag, read once per process."""
    data = files("livesupport.js").joinpath(name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


def serve(request: Request, data: bytes, etag: str, mimetype: str, cache: str) -> Response:
    """``data`` with an ``ETag``; 304 when the client already has it."""
    response = Response(data, mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache
    return response.make_conditional(request)
