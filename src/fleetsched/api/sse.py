"""Server-sent events as the OpenAI streaming API frames them.

Each event is ``data: <json>\\n\\n``; the stream ends with ``data: [DONE]\\n\\n``. Lines
starting with ``:`` are comments (keepalives) and carry no data.
"""

from __future__ import annotations

import json
from typing import Any

#: The last event of an OpenAI stream.
DONE = b"data: [DONE]\n\n"
#: The payload of :data:`DONE`.
DONE_DATA = b"[DONE]"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def sse_data(obj: Any) -> bytes:
    """One event carrying ``obj`` as compact JSON."""
    return b"data: " + _dumps(obj).encode() + b"\n\n"


def sse_comment(text: str = "") -> bytes:
    """A comment event (ignored by clients; used as a keepalive)."""
    return b": " + text.encode() + b"\n\n"


class SSEDecoder:
    """Incremental parser: feed raw bytes as they arrive, get the data of complete events.

    An event's ``data:`` lines are joined with ``\\n``; events without data (comments) are
    skipped. ``\\r\\n`` line ends are accepted.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self._buf = events.pop()
        out = []
        append = out.append
        for ev in events:
            if ev[:6] == b"data: " and b"\n" not in ev:  # the common one-line event
                append(ev[6:])
                continue
            data = [ln[5:].lstrip(b" ") for ln in ev.split(b"\n") if ln.startswith(b"data:")]
            if data:
                append(b"\n".join(data))
        return out

    @property
    def pending(self) -> bytes:
        """Bytes of an incomplete event not yet terminated by a blank line."""
        return self._buf


__all__ = ["DONE", "DONE_DATA", "SSEDecoder", "sse_comment", "sse_data"]
