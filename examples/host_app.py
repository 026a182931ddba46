"""A minimal host site with live chat: the smallest complete example.

``app`` is an ordinary WSGI application that knows nothing about chat. The
``livesupport`` server wraps it in the middleware itself::

    export LIVESUPPORT_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')
    livesupport agents add --store sqlite:///livesupport.db --email me@example.com \\
        --name Me --password-stdin <<< 'a long password'
    livesupport serve --store sqlite:///livesupport.db examples.host_app:app

then open http://127.0.0.1:8000/ (the widget) and
http://127.0.0.1:8000/livesupport/agent/ (the console).

Under another WSGI server, serve :func:`make_application` instead; it reads
the same ``LIVESUPPORT_*`` variables. With gunicorn, use the gevent worker (it
monkey-patches before loading the app) and allow a connection per parked poll,
since the worker counts them against ``--worker-connections`` (default 1000)::

    gunicorn -k gevent --worker-connections 10000 -b 127.0.0.1:8000 \\
        'examples.host_app:make_application()'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example host</title></head>
<body>
<h1>Example host application</h1>
<p>This page comes from the host app; the chat button was added by livesupport.</p>
</body></html>
"""


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every path with the same HTML page."""
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))],
    )
    return [PAGE]


def make_application() -> Callable[..., Iterable[bytes]]:
    """``app`` wrapped in the middleware, configured from ``LIVESUPPORT_*``.

    A factory rather than a module-level object, so that importing this module
    (as ``livesupport serve`` does) opens no database.
    """
    from livesupport import LiveSupport

    return LiveSupport(app)
