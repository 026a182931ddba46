"""Widget injection into the host's HTML pages, and everything else passing through untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from .conftest import (
    HOST_GZIP_HTML,
    HOST_HTML,
    HOST_JSON,
    HOST_STREAM_CHUNKS,
    WIDGET_TAG,
    AppFactory,
    Client,
    call_wsgi,
    stdlib_host_app,
)

Headers = list[tuple[str, str]]


def page_app(body: bytes, headers: Headers, status: str = "200 OK") -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, list(headers))
        return [body]

    return app


def header(headers: Headers, name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


class Recording:
    """A host response body that records how far it was read and whether it was closed."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self.chunks = chunks
        self.produced = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def recording_app(body: Recording, content_type: str) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Recording:
        start_response("200 OK", [("Content-Type", content_type)])
        return body

    return app


# -- injected ------------------------------------------------------------------------


def test_widget_tag_goes_before_body_end_with_content_length_fixed(app: Client) -> None:
    response = app.get("/")
    expected = HOST_HTML.replace(b"</body>", WIDGET_TAG + b"</body>")
    assert response.body == expected
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.headers["X-Host"] == "yes"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    "page, expected",
    [
        (b"<body>a</body><p>b</p></BODY>!", b"<body>a</body><p>b</p>" + WIDGET_TAG + b"</BODY>!"),
        (b"<BODY>x</Body>", b"<BODY>x" + WIDGET_TAG + b"</Body>"),
        (b"</body></body></body>", b"</body></body>" + WIDGET_TAG + b"</body>"),
        (
            b"<body>caf\xc3\xa9 \xe2\x98\x95</bOdY>\n",
            b"<body>caf\xc3\xa9 \xe2\x98\x95" + WIDGET_TAG + b"</bOdY>\n",
        ),
    ],
)
def test_the_last_body_end_tag_in_any_case(
    make_app: AppFactory, page: bytes, expected: bytes
) -> None:
    client = Client(make_app(host=page_app(page, [("Content-Type", "text/html")])))
    response = client.get("/")
    assert response.body == expected
    assert response.headers["Content-Length"] == str(len(expected))


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "text/html; charset=utf-8", "TEXT/HTML", "text/html;charset=ISO-8859-1"],
)
def test_html_content_types_are_injected(make_app: AppFactory, content_type: str) -> None:
    page = b"<html><body>hi</body></html>"
    host = page_app(page, [("Content-Type", content_type), ("Content-Length", str(len(page)))])
    response = Client(make_app(host=host)).get("/")
    assert WIDGET_TAG in response.body
    assert response.headers["Content-Length"] == str(len(page) + len(WIDGET_TAG))


def test_html_split_across_chunks_is_injected(make_app: AppFactory) -> None:
    chunks = (b"<html><bo", b"dy>hello</bo", b"dy></ht", b"ml>")

    def host(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return iter(chunks)

    status, headers, body = call_wsgi(make_app(host=host), "GET", "/")
    assert body == b"<html><body>hello" + WIDGET_TAG + b"</body></html>"
    assert header(headers, "Content-Length") in (None, str(len(body)))


def test_visitor_nodes_inject(make_app: AppFactory) -> None:
    assert WIDGET_TAG in Client(make_app(role="visitor")).get("/").body


# -- not injected ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/data.json", "/gzip", "/stream", "/missing"])
def test_other_host_responses_are_byte_for_byte_identical(make_app: AppFactory, path: str) -> None:
    wrapped = call_wsgi(make_app(), "GET", path)
    plain = call_wsgi(stdlib_host_app, "GET", path)
    assert wrapped == plain


@pytest.mark.parametrize(
    "body, headers",
    [
        (HOST_GZIP_HTML, [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]),
        (
            b"<html><body>x</body></html>",
            [("Content-Type", "text/html"), ("Content-Encoding", "br")],
        ),
        (HOST_JSON, [("Content-Type", "application/json")]),
        (b"<html><body>x</body></html>", [("Content-Type", "application/xhtml+xml")]),
        (b"<html><body>x</body></html>", [("Content-Type", "text/plain")]),
        (b"<html><body>x</body></html>", []),
        (b"<html><p>no closing body tag</p></html>", [("Content-Type", "text/html")]),
        (b"<html><body>x</body ></html>", [("Content-Type", "text/html")]),
        (b"", [("Content-Type", "text/html")]),
    ],
    ids=[
        "gzip",
        "brotli",
        "json",
        "xhtml",
        "text-plain",
        "no-content-type",
        "no-body-tag",
        "body-tag-with-space",
        "empty",
    ],
)
def test_non_candidates_pass_through_unchanged(
    make_app: AppFactory, body: bytes, headers: Headers
) -> None:
    headers = [*headers, ("Content-Length", str(len(body))), ("X-Custom", "kept")]
    host = page_app(body, headers)
    assert call_wsgi(make_app(host=host), "GET", "/") == call_wsgi(host, "GET", "/")


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_html_statuses_pass_through(make_app: AppFactory, status: str) -> None:
    host = page_app(b"", [("Content-Type", "text/html"), ("ETag", '"x"')], status)
    assert call_wsgi(make_app(host=host), "GET", "/") == call_wsgi(host, "GET", "/")


def test_agent_nodes_inject_nothing(make_app: AppFactory) -> None:
    middleware = make_app(role="agent")
    assert call_wsgi(middleware, "GET", "/") == call_wsgi(stdlib_host_app, "GET", "/")


def test_host_pages_are_untouched_when_the_prefix_is_elsewhere(make_app: AppFactory) -> None:
    middleware = make_app(prefix="/chat")
    status, headers, body = call_wsgi(middleware, "GET", "/")
    assert b'<script src="/chat/widget.js" async></script></body>' in body
    assert call_wsgi(middleware, "GET", "/livesupport/healthz") == call_wsgi(
        stdlib_host_app, "GET", "/livesupport/healthz"
    )


# -- streaming, closing -------------------------------------------------------------


def test_streamed_non_html_passes_chunk_by_chunk(make_app: AppFactory) -> None:
    body = Recording((b"one\n", b"two\n", b"three\n"))
    middleware = make_app(host=recording_app(body, "text/plain"))
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/download"}
    setup_testing_defaults(env)
    started: list[str] = []
    result = middleware(env, lambda status, headers, exc_info=None: started.append(status))
    chunks = iter(result)
    assert next(chunks) == b"one\n"
    assert started == ["200 OK"]
    assert body.produced == 1  # not buffered: the rest is not read yet
    assert next(chunks) == b"two\n"
    assert body.produced == 2
    result.close()  # the client went away
    assert body.closed


def test_streamed_generator_is_closed_when_the_client_leaves(make_app: AppFactory) -> None:
    progress: list[int] = []
    finished: list[bool] = []

    def host(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def generate() -> Iterator[bytes]:
            try:
                for i in range(1000):
                    progress.append(i)
                    yield b"x" * 1024
            finally:
                finished.append(True)

        return generate()

    middleware = make_app(host=host)
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/big"}
    setup_testing_defaults(env)
    result = middleware(env, lambda *a: None)
    chunks = iter(result)
    next(chunks)
    assert progress == [0]
    result.close()
    assert finished == [True]


@pytest.mark.parametrize("consume", [True, False], ids=["read", "unread"])
def test_html_response_iterable_is_closed(make_app: AppFactory, consume: bool) -> None:
    body = Recording((b"<html><body>", b"hi</body></html>"))
    middleware = make_app(host=recording_app(body, "text/html"))
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    setup_testing_defaults(env)
    result = middleware(env, lambda *a: None)
    if consume:
        assert b"".join(result) == b"<html><body>hi" + WIDGET_TAG + b"</body></html>"
    result.close()  # PEP 3333: the server calls close() whether or not it read the body
    assert body.closed


def test_the_host_stream_through_webtest(app: Client) -> None:
    response = app.get("/stream")
    assert response.body == b"".join(HOST_STREAM_CHUNKS)
    assert response.headers["X-Host"] == "stream"


# -- HEAD, lazy start_response, write() ----------------------------------------------


def test_head_reports_the_same_headers_as_get(make_app: AppFactory) -> None:
    middleware = make_app()
    get = call_wsgi(middleware, "GET", "/")
    head = call_wsgi(middleware, "HEAD", "/")  # the host answers HEAD like GET
    assert head[0] == get[0] == 200
    assert header(head[1], "Content-Length") == header(get[1], "Content-Length")
    assert header(get[1], "Content-Length") == str(len(get[2]))


def test_head_with_an_empty_body_from_the_host(make_app: AppFactory) -> None:
    def host(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(HOST_HTML)))]
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [HOST_HTML]

    status, headers, body = call_wsgi(make_app(host=host), "HEAD", "/")
    assert status == 200
    assert body == b""
    assert header(headers, "Content-Type") == "text/html"
    response = Client(make_app(host=host)).head("/")
    assert response.status_int == 200


@pytest.mark.parametrize("content_type", ["text/html", "text/plain"])
def test_start_response_called_lazily_inside_the_generator(
    make_app: AppFactory, content_type: str
) -> None:
    page = b"<html><body>lazy</body></html>"

    def host(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(page)))]
        )
        yield page

    status, headers, body = call_wsgi(make_app(host=host), "GET", "/")
    assert status == 200
    if content_type == "text/html":
        assert body == b"<html><body>lazy" + WIDGET_TAG + b"</body></html>"
    else:
        assert body == page
    assert header(headers, "Content-Length") == str(len(body))
    response = Client(make_app(host=host)).get("/")  # WebTest's lint checks the WSGI side
    assert response.body == body


@pytest.mark.parametrize("content_type", ["text/html", "text/plain"])
def test_legacy_write_callable(make_app: AppFactory, content_type: str) -> None:
    def host(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", content_type)])
        write(b"<html><body>")
        write(b"written ")
        return [b"returned</body></html>"]

    status, headers, body = call_wsgi(make_app(host=host), "GET", "/")
    assert status == 200
    if content_type == "text/html":
        assert body == b"<html><body>written returned" + WIDGET_TAG + b"</body></html>"
        assert header(headers, "Content-Length") == str(len(body))
    else:
        assert body == b"<html><body>written returned</body></html>"
    response = Client(make_app(host=host)).get("/")
    assert response.body == body
