"""Helpers shared by the trace readers: opening files, CSV headers, field parsing, errors.

Every reader streams: it checks the file and its header eagerly (so a bad path fails when the
loader is called) and then returns a generator that re-opens the file and yields one
:class:`~fleetsched.core.request.Request` per row.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fleetsched.core.request import Request
from fleetsched.errors import InputError, at_line

PathLike = str | os.PathLike[str]


def open_text(path: Path) -> IO[str]:
    """Open a text trace for reading (``.gz`` transparently); a UTF-8 BOM is skipped."""
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError("no such file", str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a trace file", str(path)) from None
    except OSError as e:
        raise InputError(f"cannot read trace: {e.strerror}", str(path)) from None


def lines(f: IO[str], path: Path) -> Iterator[str]:
    """Iterate the lines of ``f``, turning decoding and I/O failures into :class:`InputError`."""
    n = 0
    try:
        for n, line in enumerate(f, 1):  # noqa: B007 - n is read in the except clause
            yield line
    except UnicodeDecodeError as e:
        # Text files decode in chunks, so find the offending line by scanning the bytes.
        raise InputError(
            f"not UTF-8 text ({e.reason})", at_line(path, _bad_utf8_line(path))
        ) from None
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read trace: {e}", at_line(path, n + 1)) from None


def _bad_utf8_line(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return n
    return 1  # pragma: no cover - the decoder failed on a multi-line sequence


def check_not_empty(path: Path) -> None:
    """Raise :class:`InputError` if ``path`` is missing, unreadable or has no content."""
    with open_text(path) as f:
        for line in lines(f, path):
            if line.strip():
                return
    raise InputError("empty file: no header and no requests", at_line(path, 1))


def _first_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The first row with any content (the header), skipping blank lines."""
    for row in reader:
        if any(x.strip() for x in row):
            return row
    return None


def csv_names(path: Path, what: str = "CSV") -> list[str]:
    """The header of a CSV trace: column names with surrounding spaces stripped."""
    with open_text(path) as f:
        header = _first_row(csv.reader(lines(f, path)))
    if header is None:
        raise InputError(f"empty file: expected the {what} header", at_line(path, 1))
    return [h.strip() for h in header]


def column_indices(
    names: list[str], required: tuple[str, ...], what: str, path: Path
) -> dict[str, int]:
    """Map each required column to its index in ``names``; extra columns are allowed."""
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}: {what} traces need the header "
            f"'{','.join(required)}' (found '{','.join(names)}')",
            at_line(path, 1),
        )
    return {c: names.index(c) for c in required}


def csv_header(path: Path, required: tuple[str, ...], what: str) -> dict[str, int]:
    """Read the header of a CSV trace and map each required column to its index."""
    return column_indices(csv_names(path, what), required, what, path)


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-blank data row (header skipped).

    Rows whose field count differs from the header's raise :class:`InputError`.
    """
    with open_text(path) as f:
        reader = csv.reader(lines(f, path))
        header = _first_row(reader)
        n = len(header) if header else 0
        for row in reader:
            if len(row) != n:
                if not row or not any(x.strip() for x in row):
                    continue
                raise InputError(
                    f"expected {n} comma-separated fields like the header, got {len(row)}",
                    at_line(path, reader.line_num),
                )
            yield reader.line_num, row


def parse_count(text: Any, column: str, path: Path, line: int) -> int:
    """Parse a non-negative integer token count (``"12"`` or ``"12.0"``)."""
    if isinstance(text, bool):
        raise InputError(
            f"{column}: expected an integer token count, got {text!r}", at_line(path, line)
        )
    if isinstance(text, int):
        v = text
    else:
        try:
            v = int(text)
        except (TypeError, ValueError):
            try:
                f = float(text)
            except (TypeError, ValueError):
                raise InputError(
                    f"{column}: expected an integer token count, got {text!r}", at_line(path, line)
                ) from None
            if not f.is_integer():
                raise InputError(
                    f"{column}: expected an integer token count, got {text!r}", at_line(path, line)
                ) from None
            v = int(f)
    if v < 0:
        raise InputError(f"{column}: negative value {text!r}", at_line(path, line))
    return v


def row_counts(
    row: list[str], ip: int, io: int, columns: tuple[str, str], path: Path, line: int
) -> tuple[int, int]:
    """Prompt and output token counts of a CSV row (fast path for plain integers)."""
    try:
        prompt = int(row[ip])
        output = int(row[io])
        if prompt >= 0 and output >= 0:
            return prompt, output
    except ValueError:
        pass
    return parse_count(row[ip], columns[0], path, line), parse_count(
        row[io], columns[1], path, line
    )


def row_seconds(text: str, column: str, path: Path, line: int) -> float:
    """A time in seconds from a CSV field (fast path for plain numbers)."""
    try:
        t = float(text)
        if 0 <= t < float("inf"):
            return t
    except ValueError:
        pass
    return parse_seconds(text, column, path, line)


def parse_seconds(text: Any, column: str, path: Path, line: int) -> float:
    """Parse a finite, non-negative time in seconds."""
    if isinstance(text, bool):
        raise InputError(f"{column}: expected a number, got {text!r}", at_line(path, line))
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(
            f"{column}: expected a number, got {text!r}", at_line(path, line)
        ) from None
    if not math.isfinite(v):
        raise InputError(f"{column}: expected a finite number, got {text!r}", at_line(path, line))
    if v < 0:
        raise InputError(f"{column}: negative value {text!r}", at_line(path, line))
    return v


def backwards(column: str, t: object, prev: object, path: Path, line: int) -> InputError:
    return InputError(
        f"timestamp goes backwards: {column} {t} is earlier than the previous row's {prev} "
        "(traces must be sorted by arrival time)",
        at_line(path, line),
    )


def no_rows(path: Path, line: int) -> InputError:
    return InputError("no requests: the file has no data rows", at_line(path, line))


def make_request(i: int, arrival_s: float, prompt: int, output: int, **kw: Any) -> Request:
    """Build a request from a foreign trace row, clamping zero lengths to 1 token.

    Every fleetsched request has at least one prompt and one output token (an engine always
    prefills something and emits a first token). The original value is kept in ``extra``.
    """
    if prompt < 1 or output < 1:
        extra: dict[str, object] = {}
        if prompt < 1:
            extra["original_prompt_tokens"] = prompt
            prompt = 1
        if output < 1:
            extra["original_output_tokens"] = output
            output = 1
        kw["extra"] = extra
    return Request(id=i, arrival_s=arrival_s, prompt_tokens=prompt, output_tokens=output, **kw)
