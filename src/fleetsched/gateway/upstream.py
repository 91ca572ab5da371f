"""The gateway's backend side: HTTP/1.1 client connections over httptools, pooled per backend.

An :class:`UpstreamConnection` carries one exchange at a time. Its response callbacks go
straight to the exchange's :class:`Sink` (the relay), so a streamed chunk is passed on inside
the socket read that brought it, with no task switch. Body pieces that httptools hands over
within one socket read are joined into one call (nothing waits for more data: they arrived
together). A :class:`Pool` keeps idle keep-alive connections per backend; a connection the
backend closed while idle is dropped, and a request whose reused connection turns out to be
closed before any byte of the answer is retried once on a fresh one (the backend never saw
it), as aiohttp and Envoy do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Protocol

import httptools


class Sink(Protocol):
    """What receives one upstream response."""

    def on_headers(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_complete(self) -> None: ...
    def on_lost(self, reason: str) -> None:
        """The connection failed before the response was complete (``reason``: ``reset``,
        ``bad_response``)."""
        ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_got_bytes",
        "_headers",
        "_parts",
        "_reading",
        "closed",
        "keep_alive",
        "parser",
        "pool",
        "reused",
        "sink",
        "transport",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.closed = False
        self.keep_alive = True
        self.reused = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._parts: list[bytes] = []
        self._reading = False  # inside data_received: body pieces are collected
        self._got_bytes = False

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.on_lost("reset")

    def data_received(self, data: bytes) -> None:
        if self.sink is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        self._got_bytes = True
        self._reading = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reading = False
            sink = self.sink
            self.sink = None
            self.abort()
            if sink is not None:
                sink.on_lost("bad_response")
            return
        self._reading = False
        if self._parts:
            self._flush()

    def _flush(self) -> None:
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        if self.sink is not None:
            self.sink.on_body(data)

    # ------------------------------------------------------------------ httptools
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.sink is not None:
            self.sink.on_headers(self.parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self._reading:
            self._parts.append(body)
        elif self.sink is not None:
            self.sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._parts:
            self._flush()
        self.keep_alive = self.parser.should_keep_alive()
        sink = self.sink
        self.sink = None
        if sink is not None:
            sink.on_complete()

    # ------------------------------------------------------------------ use
    def send(self, data: bytes, sink: Sink) -> None:
        self.sink = sink
        self._got_bytes = False
        assert self.transport is not None
        self.transport.write(data)

    @property
    def answered(self) -> bool:
        """Whether any byte of the current response has arrived."""
        return self._got_bytes

    def abort(self) -> None:
        """Drop the connection at once (the backend sees the client go away)."""
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class Pool:
    """Idle keep-alive connections to one backend, reused newest first."""

    __slots__ = ("_idle", "connecting", "host", "loop", "max_idle", "opened", "port")

    def __init__(self, host: str, port: int, max_idle: int = 512) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self._idle: deque[UpstreamConnection] = deque()
        self.loop = asyncio.get_event_loop()
        self.opened = 0  # connections opened so far
        self.connecting = 0

    def take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            c = idle.pop()
            if not c.closed:
                c.reused = True
                return c
        return None

    async def connect(self, timeout_s: float) -> UpstreamConnection:
        """A new connection (raises ``TimeoutError`` or ``OSError``)."""
        self.connecting += 1
        try:
            async with asyncio.timeout(timeout_s):
                _, proto = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.host, self.port
                )
        finally:
            self.connecting -= 1
        self.opened += 1
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection whose exchange completed cleanly."""
        if conn.closed:
            return
        if conn.keep_alive and len(self._idle) < self.max_idle:
            conn.reused = False
            self._idle.append(conn)
        else:
            conn.abort()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it if it was idle (rare: O(idle))."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    @property
    def idle(self) -> int:
        return sum(1 for c in self._idle if not c.closed)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()


__all__ = ["Pool", "Sink", "UpstreamConnection"]
