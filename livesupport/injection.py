"""Widget injection into the host application's HTML pages.

A response of the host with ``Content-Type: text/html``, no
``Content-Encoding`` and a ``</body>`` tag (any case) gets the widget's
``<script>`` before its last ``</body>``, with ``Content-Length`` fixed.
Only such candidate responses are buffered, and only up to ``max_buffer``
bytes: past that the page goes out unchanged as it streams. Everything else
passes through untouched, the application's own iterable included.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]

CLOSING_TAG = b"</body>"


def _header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def _is_candidate(headers: Headers, max_buffer: int) -> bool:
    # One pass over the headers: this runs for every page of the host.
    content_type = length = None
    for key, value in headers:
        name = key.lower()
        if name == "content-type":
            if content_type is None:
                content_type = value
        elif name == "content-encoding":
            return False
        elif name == "content-length" and length is None:
            length = value
    if (content_type or "").split(";")[0].strip().lower() != "text/html":
        return False
    return not (length is not None and length.isdigit() and int(length) > max_buffer)


def insert_before_body_end(page: bytes, snippet: bytes) -> bytes | None:
    """``page`` with ``snippet`` before its last ``</body>``; ``None`` if it has none."""
    at = page.lower().rfind(CLOSING_TAG)
    if at < 0:
        return None
    return page[:at] + snippet + page[at:]


class _Response:
    """One host response on its way out: decides at ``start_response`` time
    whether to pass it through or hold it for injection."""

    def __init__(self, start_response: StartResponse, snippet: bytes, max_buffer: int) -> None:
        self.start_response = start_response
        self.snippet = snippet
        self.max_buffer = max_buffer
        self.held: tuple[str, Headers, Any] | None = None
        self.decided = False
        self.chunks: list[bytes] = []
        self.size = 0
        self.result_closed = False

    def capture(
        self, status: str, headers: Headers, exc_info: Any = None
    ) -> Callable[[bytes], object]:
        if self.decided and self.held is None:
            return self.start_response(status, headers, exc_info)
        self.decided = True
        if not _is_candidate(headers, self.max_buffer):
            self.held = None
            return self.start_response(status, headers, exc_info)
        self.held = (status, list(headers), exc_info)
        return self._hold

    def _hold(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def _release_unchanged(self) -> Iterator[bytes]:
        assert self.held is not None
        status, headers, exc_info = self.held
        self.held = None
        self.start_response(status, headers, exc_info)
        yield from self.chunks
        self.chunks = []

    def _finish(self) -> Iterator[bytes]:
        assert self.held is not None
        status, headers, exc_info = self.held
        page = b"".join(self.chunks)
        changed = insert_before_body_end(page, self.snippet)
        if changed is not None:
            page = changed
            # The whole page is known now, so its length can always be stated.
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(page))))
        self.held = None
        self.start_response(status, headers, exc_info)
        if page:
            yield page

    def body(self, result: Iterable[bytes]) -> Generator[bytes, None, None]:
        try:
            for chunk in result:
                if self.held is None:
                    yield chunk
                    continue
                self._hold(chunk)
                if self.size > self.max_buffer:
                    yield from self._release_unchanged()
            if self.held is not None:
                yield from self._finish()
            elif not self.decided:
                raise RuntimeError("the host application never called start_response")
        finally:
            self.close_result(result)

    def close_result(self, result: Iterable[bytes]) -> None:
        if not self.result_closed:
            self.result_closed = True
            close = getattr(result, "close", None)
            if close is not None:
                close()


class _Closing:
    """The changed body, closing the host's iterable even if the server never
    iterates it (PEP 3333: ``close()`` must reach the application)."""

    def __init__(self, response: _Response, result: Iterable[bytes]) -> None:
        self._response = response
        self._result = result
        self._body = response.body(result)

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        self._body.close()  # runs body()'s finally if it had started
        self._response.close_result(self._result)


def inject(app: WSGIApp, snippet: bytes, *, max_buffer: int = 2 * 1024 * 1024) -> WSGIApp:
    """Wrap ``app`` so its HTML pages get ``snippet`` before ``</body>``.

    :param max_buffer: Largest page, in bytes, held back to be changed.
    """

    def injecting(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = _Response(start_response, snippet, max_buffer)
        result = app(environ, response.capture)
        if response.decided and response.held is None:
            return result  # not a candidate: the host's iterable, untouched
        if response.held is not None and type(result) in (list, tuple):
            # The page is all there already (the usual case): change it now, without
            # the streaming machinery that a generator's page needs.
            size = response.size + sum(len(chunk) for chunk in result)
            if size <= max_buffer:
                response.chunks.extend(result)
                response.size = size
                return list(response.body(()))
        return _Closing(response, result)

    return injecting
