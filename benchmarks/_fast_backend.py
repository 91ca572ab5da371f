"""A trivial, fast OpenAI-style backend for the gateway benchmark (its own process).

``python benchmarks/_fast_backend.py [PORT]`` prints the port it listens on. ``POST`` with
``"stream":true`` answers ``max_tokens`` SSE chunks (chunked encoding), one every ``gap_ms``
(a field of the body; 0: all at once), each carrying ``"t":`` its send time on
``time.perf_counter()`` (CLOCK_MONOTONIC, the same in every process), then ``data: [DONE]``;
without it, a canned completion. ``GET /health`` 200, ``GET /v1/models`` one model, the rest
404. A raw asyncio protocol over httptools, so the backend costs little next to what it
measures.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import httptools

MAXT = re.compile(rb'"max_tokens":\s*(\d+)')
GAP = re.compile(rb'"gap_ms":\s*([\d.]+)')
WHOLE = (
    b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,'
    b'"text":" ba be","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":8,'
    b'"completion_tokens":2,"total_tokens":10}}'
)
MODELS = b'{"object":"list","data":[{"id":"m","object":"model","owned_by":"bench"}]}'


def head(status: bytes, ctype: bytes, length: int | None) -> bytes:
    te = b"transfer-encoding: chunked\r\n" if length is None else b"content-length: %d\r\n" % length
    return b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype + b"\r\n" + te + b"\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class Backend(asyncio.Protocol):
    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t
        self.p = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.url = b""

    def data_received(self, d: bytes) -> None:
        try:
            self.p.feed_data(d)
        except httptools.HttpParserError:
            self.t.close()

    def on_url(self, u: bytes) -> None:
        self.url = u

    def on_body(self, b: bytes) -> None:
        self.body.append(b)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.body = []
        method = self.p.get_method()
        if method == b"GET":
            if self.url == b"/health":
                self.t.write(head(b"200 OK", b"text/plain", 0))
            elif self.url == b"/v1/models":
                self.t.write(head(b"200 OK", b"application/json", len(MODELS)) + MODELS)
            else:
                self.t.write(head(b"404 Not Found", b"text/plain", 0))
            return
        if b'"stream":true' not in body:
            self.t.write(head(b"200 OK", b"application/json", len(WHOLE)) + WHOLE)
            return
        m, g = MAXT.search(body), GAP.search(body)
        n = int(m.group(1)) if m else 1
        gap = float(g.group(1)) / 1000 if g else 0.0
        self.t.write(head(b"200 OK", b"text/event-stream", None))
        if gap <= 0:
            ev = b"".join(self._event(i) for i in range(n))
            self.t.write(chunk(ev) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            return
        asyncio.get_running_loop().create_task(self._paced(n, gap))

    @staticmethod
    def _event(i: int) -> bytes:
        return (
            b'data: {"id":"c","object":"text_completion","choices":[{"index":0,"text":" ba",'
            b'"finish_reason":null}],"t":%.9f}\n\n' % time.perf_counter()
        )

    async def _paced(self, n: int, gap: float) -> None:
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.t.is_closing():
                return
            self.t.write(chunk(self._event(i)))
        self.t.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


async def main(port: int) -> None:
    srv = await asyncio.get_running_loop().create_server(Backend, "127.0.0.1", port, backlog=2048)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
