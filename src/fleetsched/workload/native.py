"""fleetsched's native trace format: JSON Lines, one request per line.

Required keys: ``id`` (int), ``arrival_s`` (seconds, non-decreasing down the file),
``prompt_tokens`` and ``output_tokens`` (ints >= 1). Optional keys, omitted when they hold the
default: ``block_hashes`` (chained prefix hashes, ints), ``hash_block_tokens`` (16),
``tenant`` ("default"), ``priority`` (0), ``session_id`` (null), ``slo_class`` ("default"),
``model`` (null), ``deadline_s`` (null), ``extra`` (a JSON object), ``output_block_hashes``
(the chain continued over the output's full blocks, see :class:`~fleetsched.core.request.Request`),
``prompt_chunks`` (``[[offset_s, tokens], ...]``: a prompt that arrives in pieces), ``task_class``
(null) and ``difficulty`` (null, 0..1). Unknown keys are an error. :func:`write_jsonl` then
:func:`read_jsonl` gives back equal requests.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from fleetsched.core.request import BLOCK_TOKENS, Request
from fleetsched.errors import InputError, at_line
from fleetsched.workload._common import (
    PathLike,
    backwards,
    check_not_empty,
    lines,
    no_rows,
    open_text,
)
from fleetsched.workload.mooncake import parse_json_line

REQUIRED_KEYS = ("id", "arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL_KEYS = (
    "block_hashes",
    "hash_block_tokens",
    "tenant",
    "priority",
    "session_id",
    "slo_class",
    "model",
    "deadline_s",
    "extra",
    "output_block_hashes",
    "prompt_chunks",
    "task_class",
    "difficulty",
)
_ALLOWED = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS)


def request_to_dict(r: Request) -> dict[str, Any]:
    """The native JSON object of a request (optional keys only when not at their default)."""
    d: dict[str, Any] = {
        "id": r.id,
        "arrival_s": r.arrival_s,
        "prompt_tokens": r.prompt_tokens,
        "output_tokens": r.output_tokens,
    }
    if r.block_hashes:
        d["block_hashes"] = list(r.block_hashes)
    if r.hash_block_tokens != BLOCK_TOKENS:
        d["hash_block_tokens"] = r.hash_block_tokens
    if r.tenant != "default":
        d["tenant"] = r.tenant
    if r.priority != 0:
        d["priority"] = r.priority
    if r.session_id is not None:
        d["session_id"] = r.session_id
    if r.slo_class != "default":
        d["slo_class"] = r.slo_class
    if r.model is not None:
        d["model"] = r.model
    if r.deadline_s is not None:
        d["deadline_s"] = r.deadline_s
    if r.extra:
        d["extra"] = r.extra
    if r.output_block_hashes:
        d["output_block_hashes"] = list(r.output_block_hashes)
    if r.prompt_chunks:
        d["prompt_chunks"] = [list(c) for c in r.prompt_chunks]
    if r.task_class is not None:
        d["task_class"] = r.task_class
    if r.difficulty is not None:
        d["difficulty"] = r.difficulty
    return d


def _open_write(path: Path, gz: bool) -> IO[str]:
    if gz:
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def write_jsonl(requests: Iterable[Request], path: PathLike) -> int:
    """Write ``requests`` as native JSONL (``.gz`` compresses); return how many were written.

    Streams: memory stays bounded however long ``requests`` is. The file is written under a
    temporary name and renamed at the end, so a failure never leaves a half-written trace.
    """
    return write_json_rows(map(request_to_dict, requests), path, "trace")


def write_json_rows(rows: Iterable[dict[str, Any]], path: PathLike, what: str) -> int:
    """Write ``rows`` one JSON object a line (``.gz`` compresses) under a temporary name
    renamed at the end; return how many were written. A write error names ``what``."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    try:
        with _open_write(tmp, p.suffix == ".gz") as f:
            write = f.write
            for row in rows:
                write(dumps(row))
                write("\n")
                n += 1
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {what}: {e.strerror or e}", str(p)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def read_jsonl(path: PathLike) -> Iterator[Request]:
    """Stream a native JSONL trace. Checks the file now; lines are read lazily."""
    p = Path(path)
    check_not_empty(p)
    return json_rows(p, request_from_dict, no_rows)


class _Arriving(Protocol):
    arrival_s: float


_T = TypeVar("_T", bound=_Arriving)


def json_rows(
    path: Path,
    parse: Callable[[dict[str, Any], Path, int], _T],
    empty: Callable[[Path, int], InputError],
) -> Iterator[_T]:
    """Each non-blank JSON line of ``path`` as ``parse(obj, path, line)``, checked to arrive in
    order; ``empty(path, line)`` is raised when the file has no data line."""
    prev = 0.0
    n = 0
    line = 0
    with open_text(path) as f:
        for line, text in enumerate(lines(f, path), 1):
            if not text.strip():
                continue
            r = parse(parse_json_line(text, path, line), path, line)
            if r.arrival_s < prev:
                raise backwards("arrival_s", r.arrival_s, prev, path, line)
            prev = r.arrival_s
            n += 1
            yield r
    if n == 0:
        raise empty(path, line + 1)


def _bad(key: str, want: str, got: object, path: Path, line: int) -> InputError:
    return InputError(f"{key}: expected {want}, got {got!r}", at_line(path, line))


def _int(d: dict[str, Any], key: str, lo: int | None, path: Path, line: int) -> int:
    v = d[key]
    if type(v) is not int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _bad(key, "an integer", v, path, line)
    if lo is not None and v < lo:
        what = "negative value" if v < 0 else f"must be at least {lo}, got"
        raise InputError(f"{key}: {what} {v}", at_line(path, line))
    return v


def _time(d: dict[str, Any], key: str, path: Path, line: int) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(key, "a number of seconds", v, path, line)
    v = float(v)
    if not math.isfinite(v):
        raise _bad(key, "a finite number", v, path, line)
    if v < 0:
        raise InputError(f"{key}: negative value {v}", at_line(path, line))
    return v


def _str(d: dict[str, Any], key: str, nullable: bool, path: Path, line: int) -> str | None:
    v = d[key]
    if isinstance(v, str) or (nullable and v is None):
        return v
    raise _bad(key, "a string or null" if nullable else "a string", v, path, line)


def request_from_dict(d: dict[str, Any], path: Path, line: int) -> Request:
    """Validate one native JSON object; errors name ``path:line`` and the key."""
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise InputError(
            f"missing key(s) {', '.join(missing)}: a native line needs keys "
            f"{', '.join(REQUIRED_KEYS)}",
            at_line(path, line),
        )
    unknown = [k for k in d if k not in _ALLOWED]
    if unknown:
        raise InputError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
            f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}",
            at_line(path, line),
        )
    r = Request(
        id=_int(d, "id", 0, path, line),
        arrival_s=_time(d, "arrival_s", path, line),
        prompt_tokens=_int(d, "prompt_tokens", 1, path, line),
        output_tokens=_int(d, "output_tokens", 1, path, line),
    )
    if len(d) == 4:
        return r
    if "hash_block_tokens" in d:
        r.hash_block_tokens = _int(d, "hash_block_tokens", 1, path, line)
    if "block_hashes" in d:
        hs = d["block_hashes"]
        if not isinstance(hs, list) or any(type(h) is not int for h in hs):
            raise _bad("block_hashes", "a list of integers", hs, path, line)
        if len(hs) > r.prompt_tokens // r.hash_block_tokens:
            raise InputError(
                f"block_hashes: {len(hs)} hashes but prompt_tokens={r.prompt_tokens} has only "
                f"{r.prompt_tokens // r.hash_block_tokens} full blocks of "
                f"{r.hash_block_tokens} tokens",
                at_line(path, line),
            )
        r.block_hashes = tuple(hs)
    if "output_block_hashes" in d:
        hs = d["output_block_hashes"]
        if not isinstance(hs, list) or any(type(h) is not int for h in hs):
            raise _bad("output_block_hashes", "a list of integers", hs, path, line)
        room = (r.prompt_tokens + r.output_tokens) // r.hash_block_tokens - len(r.block_hashes)
        if len(hs) > room:
            raise InputError(
                f"output_block_hashes: {len(hs)} hashes but prompt and output hold only {room} "
                f"more full blocks of {r.hash_block_tokens} tokens",
                at_line(path, line),
            )
        r.output_block_hashes = tuple(hs)
    if "tenant" in d:
        r.tenant = _str(d, "tenant", False, path, line)  # type: ignore[assignment]
    if "priority" in d:
        r.priority = _int(d, "priority", None, path, line)
    if "session_id" in d:
        r.session_id = _str(d, "session_id", True, path, line)
    if "slo_class" in d:
        r.slo_class = _str(d, "slo_class", False, path, line)  # type: ignore[assignment]
    if "model" in d:
        r.model = _str(d, "model", True, path, line)
    if d.get("deadline_s") is not None:
        r.deadline_s = _time(d, "deadline_s", path, line)
    if "extra" in d:
        if not isinstance(d["extra"], dict):
            raise _bad("extra", "a JSON object", d["extra"], path, line)
        r.extra = d["extra"]
    if d.get("prompt_chunks"):
        r.prompt_chunks = _chunks(d["prompt_chunks"], r.prompt_tokens, path, line)
    if "task_class" in d:
        r.task_class = _str(d, "task_class", True, path, line)
    if d.get("difficulty") is not None:
        v = d["difficulty"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise _bad("difficulty", "a number in [0, 1]", v, path, line)
        r.difficulty = float(v)
    return r


def _chunks(v: object, prompt: int, path: Path, line: int) -> tuple[tuple[float, int], ...]:
    """``[[offset_s, tokens], ...]``: offsets from 0, non-decreasing; tokens sum to the prompt."""
    want = "a list of [offset_s, tokens] pairs"
    if not isinstance(v, list):
        raise _bad("prompt_chunks", want, v, path, line)
    out: list[tuple[float, int]] = []
    prev = 0.0
    total = 0
    for i, pair in enumerate(v):
        where = f"prompt_chunks[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise _bad(where, "an [offset_s, tokens] pair", pair, path, line)
        off, tok = pair
        if isinstance(off, bool) or not isinstance(off, int | float) or not 0 <= off < math.inf:
            raise _bad(f"{where}[0]", "a number of seconds >= 0", off, path, line)
        off = float(off)
        if type(tok) is not int or tok < 1:
            raise _bad(f"{where}[1]", "an integer >= 1", tok, path, line)
        if i == 0 and off != 0:
            raise InputError(
                f"{where}: the first piece arrives with the request (offset 0), got {off}",
                at_line(path, line),
            )
        if off < prev:
            raise InputError(
                f"{where}: offset {off} is before the previous piece's {prev}",
                at_line(path, line),
            )
        prev = off
        total += tok
        out.append((off, tok))
    if total != prompt:
        raise InputError(
            f"prompt_chunks: pieces sum to {total} tokens but prompt_tokens={prompt}",
            at_line(path, line),
        )
    return tuple(out)
