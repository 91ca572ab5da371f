"""The gateway's client side: an HTTP/1.1 server as an asyncio protocol over httptools.

One :class:`ClientConnection` per accepted connection. httptools (llhttp, the parser Node.js
uses) parses requests; the body is collected in memory up to ``max_body_bytes`` (a larger
``Content-Length`` is answered 413 before any of it is read). A complete request goes to the
application's ``handle(request, conn)``; the response is written with :meth:`send` (a whole
body with ``Content-Length``) or :meth:`start_stream` / :meth:`send_chunk` / :meth:`end_stream`
(``Transfer-Encoding: chunked``, every chunk written the moment it is given). Keep-alive and
pipelining: requests on one connection are answered in order; reading pauses while a response
is in progress and resumes after it. ``Expect: 100-continue`` is answered at once.

When the client goes away, :attr:`on_lost` (set by whoever is answering) is called, so an
upstream request can be aborted at once. When the client reads slower than the upstream
sends, :attr:`on_pause` / :attr:`on_resume` pass the back-pressure on.

Nothing here knows about routing; it is the part of aiohttp's server the gateway needs, at a
fraction of its cost per request (see ``benchmarks/bench_gateway.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

import httptools

from fleetsched.api.errors import APIError

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Unknown\r\n".encode()


class _Clock:
    """The ``Date`` header, formatted once per second."""

    __slots__ = ("_header", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._header = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._sec:
            self._sec = now
            self._header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


DATE = _Clock()


@dataclass(slots=True)
class HTTPRequest:
    method: str
    path: str
    query: bytes
    #: Header names lower-cased; a repeated header keeps its last value.
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    #: ``time.perf_counter()`` when the request's headers were complete.
    t0: float

    def header(self, name: bytes, default: bytes = b"") -> bytes:
        return self.headers.get(name, default)


class Application(Protocol):
    max_body_bytes: int

    def handle(
        self, request: HTTPRequest, conn: ClientConnection
    ) -> Coroutine[Any, Any, None] | None:
        """Answer ``request`` on ``conn``: at once (return None) or in a coroutine."""
        ...


JSON = b"content-type: application/json\r\n"


class ClientConnection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_busy",
        "_headers",
        "_last_name",
        "_pending",
        "_rejected",
        "_streaming",
        "_t0",
        "_url",
        "app",
        "close_after",
        "closing",
        "conns",
        "idle_since",
        "loop",
        "on_lost",
        "on_pause",
        "on_resume",
        "parser",
        "peer",
        "transport",
    )

    def __init__(self, app: Application, conns: set[ClientConnection]) -> None:
        self.app = app
        self.conns = conns
        self.loop = asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        #: ``time.monotonic()`` since when the connection waits for a request (0: busy);
        #: :func:`close_idle` closes those idle too long.
        self.idle_since = time.monotonic()
        self._pending: deque[HTTPRequest] = deque()
        self._busy = False  # a response is being written
        self._streaming = False
        self._rejected = False  # the current request was answered before its body was read
        self.closing = False
        self.close_after = False  # close the connection after the current response (drain)
        self.on_lost: Callable[[], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self.peer = ""
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._last_name = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._t0 = 0.0

    # ---------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conns.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.conns.discard(self)
        cb = self.on_lost
        self.on_lost = None
        if cb is not None:
            cb()

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(APIError(400, "protocol upgrades are not supported"))
        except httptools.HttpParserError as e:
            if not self._rejected:
                self._fail(APIError(400, f"malformed HTTP request: {e}"))
            else:
                self.close()

    # ---------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._rejected = False
        self.idle_since = 0.0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._t0 = time.perf_counter()
        h = self._headers
        cl = h.get(b"content-length")
        limit = self.app.max_body_bytes
        if cl is not None and cl.isdigit() and int(cl) > limit:
            self._reject(
                APIError(
                    413,
                    f"the request body ({int(cl):,} bytes) is larger than the "
                    f"gateway's limit of {limit:,} bytes",
                )
            )
            return
        if h.get(b"expect", b"").lower() == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_size += len(body)
        if self._body_size > self.app.max_body_bytes:
            self._reject(
                APIError(
                    413,
                    f"the request body is larger than the gateway's limit of "
                    f"{self.app.max_body_bytes:,} bytes",
                )
            )
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejected:  # answered already; the body was read only to let the client see it
            self.close()
            return
        p = self.parser
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        url = self._url
        q = url.find(b"?")
        path, query = (url, b"") if q < 0 else (url[:q], url[q + 1 :])
        if path[:1] != b"/":  # absolute form (a proxy request): only the path counts
            s = path.find(b"/", path.find(b"//") + 2) if b"//" in path else -1
            path = path[s:] if s >= 0 else b"/"
        req = HTTPRequest(
            p.get_method().decode(),
            path.decode("latin-1"),
            query,
            self._headers,
            body,
            p.should_keep_alive(),
            self._t0,
        )
        self._body = []
        if self._busy:  # pipelined: answered in order
            self._pending.append(req)
            if len(self._pending) > 16 and self.transport is not None:
                self.transport.pause_reading()  # until the queue is worked off
            return
        self._dispatch(req)

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self, req: HTTPRequest) -> None:
        self._busy = True
        if not req.keep_alive:
            self.close_after = True
        try:
            coro = self.app.handle(req, self)
        except APIError as e:
            self.send_error(e)
            return
        if coro is not None:
            task = self.loop.create_task(coro)
            if self._busy:  # still answering: a disconnect cancels the task
                self.on_lost = task.cancel

    def _reject(self, e: APIError) -> None:
        """Answer ``e`` before the body is read; read and drop the body (closing at once could
        reset the connection before the client reads the answer), then close: at the body's
        end, or after 2 s."""
        self._rejected = True
        self.close_after = True
        self._busy = True
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in e.headers.items())
            body = e.json_bytes()
            self.transport.write(
                self._head(e.status, JSON + extra)
                + b"content-length: %d\r\n\r\n" % len(body)
                + body
            )
        self.loop.call_later(2.0, self.close)

    def _fail(self, e: APIError) -> None:
        self.close_after = True
        if not self._busy:
            self._busy = True
            self.send_error(e)
        else:
            self.close()

    def _done(self) -> None:
        """The current response is complete: next request, or wait for one."""
        self._busy = False
        self._streaming = False
        self.on_lost = self.on_pause = self.on_resume = None
        if self.closing:
            return
        if self.close_after:
            self.close()
            return
        if self._pending:
            if len(self._pending) == 16 and self.transport is not None:
                self.transport.resume_reading()
            self._dispatch(self._pending.popleft())
            return
        self.idle_since = time.monotonic()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def close_when_idle(self) -> None:
        """Drain: close now if idle, else after the response in progress."""
        self.close_after = True
        if not self._busy:
            self.close()

    # ---------------------------------------------------------------- responses
    def _head(self, status: int, headers: bytes) -> bytes:
        conn = b"connection: close\r\n" if self.close_after else b""
        return status_line(status) + DATE.header() + headers + conn

    def send(self, status: int, headers: bytes, body: bytes) -> None:
        """A whole response; ``headers`` are preformatted lines (``name: value\\r\\n``)."""
        if self.closing or self.transport is None:
            self._done()
            return
        self.transport.write(
            self._head(status, headers) + b"content-length: %d\r\n\r\n" % len(body) + body
        )
        self._done()

    def send_json(self, status: int, body: bytes, headers: bytes = b"") -> None:
        self.send(status, JSON + headers, body)

    def send_error(self, e: APIError) -> None:
        extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in e.headers.items())
        self.send_json(e.status, e.json_bytes(), extra)

    def start_stream(self, status: int, headers: bytes, first: bytes = b"") -> None:
        """Response headers for a chunked body (and its first chunk, in the same write)."""
        self._streaming = True
        if self.closing or self.transport is None:
            return
        data = self._head(status, headers) + b"transfer-encoding: chunked\r\n\r\n"
        if first:
            data += b"%x\r\n" % len(first) + first + b"\r\n"
        self.transport.write(data)

    def send_chunk(self, data: bytes) -> None:
        if data and not self.closing and self.transport is not None:
            self.transport.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_stream(self, last: bytes = b"") -> None:
        if not self.closing and self.transport is not None:
            tail = b"%x\r\n" % len(last) + last + b"\r\n0\r\n\r\n" if last else b"0\r\n\r\n"
            self.transport.write(tail)
        self._done()

    def abort_stream(self) -> None:
        """End a response that cannot be finished cleanly: close the connection."""
        self.close_after = True
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.abort()
        self._done()

    @property
    def streaming(self) -> bool:
        return self._streaming


def close_idle(conns: set[ClientConnection], timeout_s: float) -> int:
    """Close the keep-alive connections that have waited for a request longer than
    ``timeout_s`` (one sweep, run every few seconds, instead of a timer per request)."""
    cutoff = time.monotonic() - timeout_s
    n = 0
    for c in list(conns):
        if c.idle_since and c.idle_since < cutoff and not c._busy:
            c.close()
            n += 1
    return n


__all__ = [
    "DATE",
    "JSON",
    "Application",
    "ClientConnection",
    "HTTPRequest",
    "close_idle",
    "status_line",
]
