"""Forwarding one request: attempts on backends, the held response, streaming, failures.

:func:`forward` runs a request's attempts. Each attempt takes a backend from the gateway
(routed by the policy, maybe after waiting in the central queue), sends the client's body
bytes unchanged on a pooled connection, and lets an :class:`Exchange` receive the answer:

* **Held headers.** Nothing reaches the client until the first chunk of the answer's body
  (or its end). Until then a failure -- connection refused or reset, a first-token timeout, a
  retriable status (``retries.on_status``) -- is retried on another backend, up to
  ``retries.max_retries``; the client never sees it.
* **Streams** (``stream: true`` and status 200) are relayed chunk by chunk as they arrive,
  with no buffering. A failure after the first chunk cannot be retried: the stream ends with
  an SSE error event and ``data: [DONE]``, as vLLM ends a failed stream.
* **Whole answers** are buffered until complete, then sent with ``Content-Length`` (a failure
  before the end is still retriable).
* **Timeouts**: connect, first body byte (``timeouts.first_token_s``), gap between chunks
  (``timeouts.idle_s``). A client that goes away cancels the request's task, which aborts the
  upstream connection at once: the engine sees the disconnect and frees the request's KV.

Every attempt is released exactly once (``finally``): the backend's in-flight count and the
router's ``on_finish``, on every path.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from fleetsched.api.errors import APIError, error_body
from fleetsched.api.sse import DONE
from fleetsched.gateway.upstream import UpstreamConnection

if TYPE_CHECKING:
    from fleetsched.gateway.app import Call, Gateway
    from fleetsched.gateway.backends.registry import Backend

# Outcomes of one exchange.
OK = 0  # answered (a stream relayed to its end, or a whole answer buffered to be sent)
RETRY = 1  # failed before any byte reached the client: may go to another backend
BROKEN = 2  # failed after bytes reached the client: the stream ended with an error event
STALE = 3  # a reused idle connection was closed before the request reached the backend

#: Hop-by-hop and recomputed headers, not copied from an upstream response.
_DROP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"date",
        b"server",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    )
)
#: Request headers passed on to the backend besides the body's (tracing and request ids).
FORWARD_HEADERS = (b"accept", b"x-request-id", b"traceparent", b"tracestate", b"user-agent")
SSE_HEADERS = b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
#: A chunk carrying output: text (completions), content, reasoning (vLLM's reasoning parsers:
#: ``reasoning_content``, newer ``reasoning``) or tool-call arguments (chat). A role-only
#: first chunk (``"content":""``) carries none.
_TOKEN = re.compile(rb'"(?:text|content|reasoning_content|reasoning|arguments)":"[^"]')
_USAGE = re.compile(rb'"completion_tokens":\s*(\d+)')
KEEPALIVE = b": keepalive\n\n"


_KEEP: dict[bytes, bool] = {}


def response_headers(headers: list[tuple[bytes, bytes]], extra: bytes) -> bytes:
    """The upstream response's headers to pass on (hop-by-hop ones dropped), plus ``extra``."""
    keep = _KEEP
    out = []
    for n, v in headers:
        k = keep.get(n)
        if k is None:
            k = keep[n] = n.lower() not in _DROP
            if len(keep) > 1024:
                keep.clear()
        if k:
            out.append(n + b": " + v + b"\r\n")
    out.append(extra)
    return b"".join(out)


def token_events(data: bytes) -> int:
    """SSE events in ``data`` that carry a token (non-empty ``text``, ``content`` or
    reasoning)."""
    n = (
        data.count(b'"text":"')
        + data.count(b'"content":"')
        - data.count(b'"text":""')
        - data.count(b'"content":""')
    )
    if b'"reasoning' in data:
        for f in (b'"reasoning_content":"', b'"reasoning":"'):
            n += data.count(f) - data.count(f + b'"')
    return n


def sse_error(status: int, message: str) -> bytes:
    import json

    body = error_body(status, message)
    body["error"]["object"] = "error"
    return b"data: " + json.dumps(body).encode() + b"\n\n" + DONE


class Exchange:
    """One request on one upstream connection (the connection's :class:`Sink`)."""

    __slots__ = (
        "b",
        "body",
        "call",
        "conn",
        "ended",
        "failure",
        "first_timer",
        "gw",
        "headers",
        "idle_timer",
        "last",
        "parts",
        "status",
        "streaming",
        "tail",
    )

    def __init__(self, gw: Gateway, call: Call, b: Backend, conn: UpstreamConnection) -> None:
        self.gw = gw
        self.call = call
        self.b = b
        self.conn = conn
        loop = gw.loop
        self.ended: asyncio.Future[int] = loop.create_future()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.body = b""
        self.streaming = False
        self.failure = ""
        self.last = 0.0
        self.tail = b""
        self.first_timer: asyncio.TimerHandle | None = loop.call_later(
            gw.cfg.timeouts.first_token_s, self._first_timeout
        )
        self.idle_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- sink callbacks
    def on_headers(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers
        self.streaming = status == 200 and self.call.stream

    def on_body(self, data: bytes) -> None:
        if not self.streaming:
            self.parts.append(data)
            return
        call = self.call
        client = call.conn
        now = time.perf_counter()
        self.last = now
        if not call.data_sent:
            call.data_sent = True
            if self.first_timer is not None:
                self.first_timer.cancel()
                self.first_timer = None
            idle = self.gw.cfg.timeouts.idle_s
            self.idle_timer = self.gw.loop.call_later(idle, self._idle_check)
            if call.committed:  # headers went out with a keepalive comment
                client.send_chunk(data)
            else:
                call.committed = True
                client.start_stream(200, response_headers(self.headers, call.extra_headers), data)
        else:
            client.send_chunk(data)
        if call.t_token == 0.0 and _TOKEN.search(data):
            call.t_token = now
            self.gw.first_token(call, self.b)
        n = token_events(data)
        call.events += n
        self.gw.service.add_output(call.tenant, n)
        self.tail = data

    def on_complete(self) -> None:
        self._stop_timers()
        self.b.pool.release(self.conn)
        call = self.call
        if self.streaming:
            if not call.data_sent:  # a 200 stream with an empty body
                call.data_sent = True
                if call.committed:
                    call.conn.end_stream()
                else:
                    call.committed = True
                    call.conn.start_stream(200, response_headers(self.headers, call.extra_headers))
                    call.conn.end_stream()
            else:
                call.conn.end_stream()
            m = _USAGE.search(self.tail)
            if m is not None:
                call.usage_tokens = int(m.group(1))
            self._end(OK)
            return
        parts = self.parts
        self.body = parts[0] if len(parts) == 1 else b"".join(parts)
        if self.status in self.gw.retry_statuses:
            self.failure = f"status_{self.status}"
            self._end(RETRY)
        else:
            self._end(OK)

    def on_lost(self, reason: str) -> None:
        self._stop_timers()
        call = self.call
        if self.streaming and call.data_sent:
            self.failure = "reset" if reason == "reset" else reason
            self._break(f"the backend's connection failed mid-stream ({self.failure})")
            return
        if reason == "reset" and self.conn.reused and not self.conn.answered:
            self._end(STALE)
            return
        self.failure = reason
        self._end(RETRY)

    # ---------------------------------------------------------------- timers
    def _first_timeout(self) -> None:
        self.first_timer = None
        if self.ended.done():
            return
        self.conn.abort()
        self.failure = "timeout"
        self._stop_timers()
        self._end(RETRY)

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.ended.done():
            return
        idle = self.gw.cfg.timeouts.idle_s
        late = time.perf_counter() - self.last
        if late < idle:
            self.idle_timer = self.gw.loop.call_later(idle - late, self._idle_check)
            return
        self.conn.abort()
        self.failure = "idle_timeout"
        self._break(f"no chunk from the backend for {idle:g} s (the gateway's idle timeout)")

    def _stop_timers(self) -> None:
        if self.first_timer is not None:
            self.first_timer.cancel()
            self.first_timer = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    # ---------------------------------------------------------------- endings
    def _break(self, message: str) -> None:
        self._stop_timers()
        self.call.conn.end_stream(sse_error(502, message))
        self._end(BROKEN)

    def _end(self, outcome: int) -> None:
        if not self.ended.done():
            self.ended.set_result(outcome)

    def abort(self) -> None:
        """The client went away (or the task was cancelled): drop the upstream connection."""
        self._stop_timers()
        self.conn.abort()


async def _attempt(gw: Gateway, call: Call, b: Backend) -> tuple[Exchange | None, int]:
    """One backend's answer and its outcome (a stale pooled connection is retried once on a
    fresh one); no exchange when no connection could be opened (``call.failure`` says why)."""
    fresh = False
    while True:
        conn = None if fresh else b.pool.take_idle()
        if conn is None:
            try:
                conn = await b.pool.connect(gw.cfg.timeouts.connect_s)
            except TimeoutError:
                call.failure = "connect_timeout"
                return None, RETRY
            except OSError as e:
                refused = isinstance(e, ConnectionRefusedError)
                call.failure = "connect_refused" if refused else "connect_error"
                return None, RETRY
        ex = Exchange(gw, call, b, conn)
        call.conn.on_pause, call.conn.on_resume = conn.pause, conn.resume
        conn.send(call.request_bytes(b), ex)
        try:
            outcome = await ex.ended
        except asyncio.CancelledError:
            ex.abort()
            raise
        if outcome == STALE and not fresh:
            fresh = True
            continue
        if outcome == STALE:
            outcome, ex.failure = RETRY, "reset"
        if outcome != OK:
            call.failure = ex.failure
        return ex, outcome


async def forward(gw: Gateway, call: Call) -> None:
    """Answer ``call`` from the backends (see the module docstring)."""
    tried: set[int] = set()
    answer: Exchange | None = None  # the last failure's buffered answer (a retriable status)
    attempts = 0
    while True:
        b = await gw.acquire(call, tried)
        if b is None:  # no eligible backend (left)
            break
        attempts += 1
        call.backend = b.name
        if gw.cfg.backend_header:
            call.extra_headers = b"x-fleetsched-backend: " + b.name.encode() + b"\r\n"
        call.failure = ""
        try:
            ex, outcome = await _attempt(gw, call, b)
        finally:
            gw.release(call, b)
        gw.outcome(b, outcome != OK or (ex is not None and ex.status >= 500))
        if outcome == OK:
            assert ex is not None
            if not ex.streaming:
                _send_buffered(call, ex)
            return
        if outcome == BROKEN:  # the stream ended with an error event
            return
        answer = ex if ex is not None and ex.status else None
        tried.add(b.index)
        if attempts > gw.cfg.retries.max_retries:
            break
        gw.count_retry(call, b)
    if attempts == 0:
        raise gw.no_backend(call)
    if answer is not None:  # retries exhausted: the backend's own error answer
        _send_buffered(call, answer)
        return
    raise _failure_error(call)


def _send_buffered(call: Call, ex: Exchange) -> None:
    status = ex.status
    call.status = status
    if call.committed:  # keepalive comments went out: the answer can only be an event now
        if status == 200:
            call.conn.end_stream(ex.body)
        else:
            call.conn.end_stream(b"data: " + ex.body + b"\n\n" + DONE)
        return
    call.committed = True
    call.conn.send(status, response_headers(ex.headers, call.extra_headers), ex.body)
    if status == 200:
        m = _USAGE.search(ex.body)
        if m is not None:
            call.usage_tokens = int(m.group(1))


def _failure_error(call: Call) -> APIError:
    f = call.failure or "unknown"
    where = f"backend {call.backend!r}" if call.backend else "the backend"
    if f == "timeout":
        return APIError(504, f"{where} sent no answer in time (the gateway's first-token timeout)")
    if f == "connect_timeout":
        return APIError(504, f"{where}: connection timed out")
    return APIError(502, f"{where} failed: {f.replace('_', ' ')}")


def keepalive_tick(gw: Gateway, call: Call) -> None:
    """Every ``timeouts.keepalive_s`` while a stream has no first chunk: an SSE comment."""
    call.keepalive = None
    if call.done or call.data_sent or call.conn.closing:
        return
    if not call.committed:
        call.committed = True
        call.status = 200
        call.conn.start_stream(200, SSE_HEADERS + call.extra_headers, KEEPALIVE)
    else:
        call.conn.send_chunk(KEEPALIVE)
    ka = gw.cfg.timeouts.keepalive_s
    assert ka is not None
    call.keepalive = gw.loop.call_later(ka, keepalive_tick, gw, call)


__all__ = ["BROKEN", "OK", "RETRY", "Exchange", "forward", "keepalive_tick", "sse_error"]
