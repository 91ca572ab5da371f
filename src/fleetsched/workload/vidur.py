"""Vidur processed traces (microsoft/vidur ``data/processed_traces``).

Two shapes:

* with arrivals: ``arrived_at,num_prefill_tokens,num_decode_tokens`` (``arrived_at`` in seconds);
* length-only: ``num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio``. These have no
  times, so requests get Poisson arrivals at ``generated_rate`` req/s from a
  ``numpy.random.Generator(PCG64(seed))``; the first request arrives at 0 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fleetsched.core.config import ArrivalConfig
from fleetsched.core.request import Request
from fleetsched.errors import InputError, at_line
from fleetsched.workload._common import (
    PathLike,
    backwards,
    column_indices,
    csv_names,
    csv_rows,
    make_request,
    no_rows,
    row_counts,
    row_seconds,
)

COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")
LENGTH_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")
#: Full header of the length-only files (only the first two columns are used).
LENGTH_HEADER = ("num_prefill_tokens", "num_decode_tokens", "num_total_tokens", "pd_ratio")


def load_vidur(path: PathLike, *, generated_rate: float = 4.0, seed: int = 0) -> Iterator[Request]:
    """Stream a Vidur trace of either shape. Checks the header now; rows are read lazily."""
    p = Path(path)
    names = csv_names(p, "Vidur")
    if "arrived_at" in names:
        return _rows(p, column_indices(names, COLUMNS, "Vidur", p))
    if all(c in names for c in LENGTH_COLUMNS):
        if not generated_rate > 0:
            raise InputError(f"generated_rate must be > 0, got {generated_rate}")
        return _length_rows(
            p, column_indices(names, LENGTH_COLUMNS, "Vidur", p), generated_rate, seed
        )
    raise InputError(
        f"missing columns: a Vidur trace needs the header '{','.join(COLUMNS)}' or "
        f"'{','.join(LENGTH_HEADER)}' (found '{','.join(names)}')",
        at_line(p, 1),
    )


def _rows(path: Path, cols: dict[str, int]) -> Iterator[Request]:
    it, ip, io = cols["arrived_at"], cols["num_prefill_tokens"], cols["num_decode_tokens"]
    prev = 0.0
    i = 0
    line = 1
    for line, row in csv_rows(path):
        t = row_seconds(row[it], "arrived_at", path, line)
        if t < prev:
            raise backwards("arrived_at", row[it].strip(), prev, path, line)
        prev = t
        prompt, output = _lengths(row, ip, io, path, line)
        yield make_request(i, t, prompt, output)
        i += 1
    if i == 0:
        raise no_rows(path, line + 1)


def _length_rows(path: Path, cols: dict[str, int], rate: float, seed: int) -> Iterator[Request]:
    from fleetsched.workload.synthetic import arrival_times

    ip, io = cols["num_prefill_tokens"], cols["num_decode_tokens"]
    rng = np.random.Generator(np.random.PCG64(seed))
    times = arrival_times(ArrivalConfig(kind="poisson", rate=rate), rng)
    i = 0
    line = 1
    for line, row in csv_rows(path):
        prompt, output = _lengths(row, ip, io, path, line)
        yield make_request(i, next(times), prompt, output)
        i += 1
    if i == 0:
        raise no_rows(path, line + 1)


def _lengths(row: list[str], ip: int, io: int, path: Path, line: int) -> tuple[int, int]:
    return row_counts(row, ip, io, ("num_prefill_tokens", "num_decode_tokens"), path, line)
