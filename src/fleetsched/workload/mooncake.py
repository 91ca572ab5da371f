"""Mooncake FAST'25 traces: one JSON object a line.

Keys: ``timestamp`` (ms from the start of the trace), ``input_length``, ``output_length`` and
``hash_ids`` (one id per 512-token block of the prompt; equal ids mean identical blocks given
identical preceding blocks). Only *full* blocks are hashed: ``input_length // 512`` of the ids
are chained with :func:`~fleetsched.core.request.chain_hashes`; the last, partial block's id is
dropped. ``hash_ids`` may be omitted (no prefix information).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from fleetsched.core.request import Request, chain_hashes
from fleetsched.errors import InputError, at_line
from fleetsched.workload._common import (
    PathLike,
    backwards,
    check_not_empty,
    lines,
    make_request,
    no_rows,
    open_text,
    parse_count,
    parse_seconds,
)

#: Tokens per Mooncake hash block.
MOONCAKE_BLOCK_TOKENS = 512
REQUIRED_KEYS = ("timestamp", "input_length", "output_length")


def load_mooncake(path: PathLike) -> Iterator[Request]:
    """Stream a Mooncake JSONL trace. Checks the file now; lines are read lazily."""
    p = Path(path)
    check_not_empty(p)
    return _rows(p)


def parse_json_line(text: str, path: Path, line: int) -> dict[str, object]:
    """Decode one JSONL line that must hold a JSON object."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # json's own messages may end in "at" (before a position)
        raise InputError(f"bad JSON: {msg} at column {e.pos + 1}", at_line(path, line)) from None
    if not isinstance(obj, dict):
        raise InputError(
            f"expected a JSON object per line, got {type(obj).__name__}", at_line(path, line)
        )
    return obj


def _rows(path: Path) -> Iterator[Request]:
    bt = MOONCAKE_BLOCK_TOKENS
    prev = 0.0
    i = 0
    line = 0
    with open_text(path) as f:
        for line, text in enumerate(lines(f, path), 1):
            if not text.strip():
                continue
            obj = parse_json_line(text, path, line)
            try:
                ts, il, ol = obj["timestamp"], obj["input_length"], obj["output_length"]
            except KeyError as e:
                raise InputError(
                    f"missing key {e.args[0]!r}: a Mooncake line needs keys "
                    f"{', '.join(REQUIRED_KEYS)} (and optionally hash_ids)",
                    at_line(path, line),
                ) from None
            if type(ts) is not int or ts < 0:
                ts = parse_seconds(ts, "timestamp", path, line)
            if type(il) is not int or il < 0:
                il = parse_count(il, "input_length", path, line)
            if type(ol) is not int or ol < 0:
                ol = parse_count(ol, "output_length", path, line)
            if ts < prev:
                raise backwards("timestamp", ts, prev, path, line)
            prev = ts
            ids = obj.get("hash_ids", ())
            if not isinstance(ids, list | tuple):
                raise InputError(
                    f"hash_ids: expected a list of integers, got {type(ids).__name__}",
                    at_line(path, line),
                )
            full = ids[: il // bt]
            for x in full:
                if type(x) is not int:
                    raise InputError(f"hash_ids: expected integers, got {x!r}", at_line(path, line))
            yield make_request(
                i, ts / 1000.0, il, ol, block_hashes=chain_hashes(full), hash_block_tokens=bt
            )
            i += 1
    if i == 0:
        raise no_rows(path, line + 1)
