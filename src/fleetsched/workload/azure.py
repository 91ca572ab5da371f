"""Azure LLM inference trace 2023 (``TIMESTAMP,ContextTokens,GeneratedTokens``).

``TIMESTAMP`` is wall-clock ``YYYY-MM-DD HH:MM:SS.fffffff`` (seven fractional digits). Arrival
times are returned relative to the first row, so the trace starts at 0 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from fleetsched.core.request import Request
from fleetsched.errors import InputError, at_line
from fleetsched.workload._common import (
    PathLike,
    backwards,
    csv_header,
    csv_rows,
    make_request,
    no_rows,
    row_counts,
)

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


_NS = 1_000_000_000


def parse_wallclock(ts: str, days: dict[str, int]) -> tuple[int, int]:
    """Split ``YYYY-MM-DD HH:MM:SS[.f...][Z|+HH:MM]`` into (proleptic day number, ns of day).

    Parsed by hand (``datetime.strptime`` rejects 7 fractional digits and is slow) into integer
    nanoseconds, so differences of timestamps are exact decimals (no float noise).
    ``days`` caches the date part. Raises ``ValueError`` on malformed input.
    """
    ts = ts.strip()
    if len(ts) < 19 or ts[10] not in " T":
        raise ValueError(ts)
    date = ts[:10]
    day = days.get(date)
    if day is None:
        day = dt.date.fromisoformat(date).toordinal()
        days[date] = day
    clock = ts[11:]
    offset = 0
    if clock.endswith("Z"):
        clock = clock[:-1]
    elif len(clock) > 8 and clock[-6] in "+-" and clock[-3] == ":":
        sign = 1 if clock[-6] == "+" else -1
        offset = sign * (int(clock[-5:-3]) * 3600 + int(clock[-2:]) * 60)
        clock = clock[:-6]
    h, m, s = clock.split(":")
    whole, _, frac = s.partition(".")
    hh, mm, ss = int(h), int(m), int(whole)
    if (
        len(h) != 2
        or len(m) != 2
        or len(whole) != 2
        or not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 61)
        or (frac and not frac.isdigit())
    ):
        raise ValueError(ts)
    ns = int(frac[:9].ljust(9, "0")) if frac else 0
    return day, (hh * 3600 + mm * 60 + ss - offset) * _NS + ns


def load_azure(path: PathLike) -> Iterator[Request]:
    """Stream an Azure LLM 2023 trace. Checks the header now; rows are read lazily."""
    p = Path(path)
    cols = csv_header(p, COLUMNS, "Azure LLM 2023")
    return _rows(p, cols)


def _rows(path: Path, cols: dict[str, int]) -> Iterator[Request]:
    its, ip, io = cols["TIMESTAMP"], cols["ContextTokens"], cols["GeneratedTokens"]
    days: dict[str, int] = {}
    day0 = ns0 = 0
    prev = 0.0
    prev_ts = ""
    i = 0
    line = 1
    for line, row in csv_rows(path):
        ts = row[its]
        try:
            day, ns = parse_wallclock(ts, days)
        except ValueError:
            raise InputError(
                f"TIMESTAMP: expected 'YYYY-MM-DD HH:MM:SS.fffffff', got {ts!r}",
                at_line(path, line),
            ) from None
        if i == 0:
            day0, ns0 = day, ns
        t = ((day - day0) * 86400 * _NS + ns - ns0) / _NS
        if t < prev:
            raise backwards("TIMESTAMP", ts.strip(), prev_ts.strip(), path, line)
        prev, prev_ts = t, ts
        prompt, output = row_counts(row, ip, io, ("ContextTokens", "GeneratedTokens"), path, line)
        yield make_request(i, t, prompt, output)
        i += 1
    if i == 0:
        raise no_rows(path, line + 1)
