"""BurstGPT traces (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``).

``Timestamp`` is seconds from the start of the trace and is kept as is. ``Model`` (e.g.
``ChatGPT``, ``GPT-4``) becomes :attr:`Request.model`. ``Total tokens`` and ``Log Type`` are not
used. Rows with 0 response tokens (failed requests in BurstGPT) are kept with
``output_tokens=1`` and ``extra={"original_output_tokens": 0}``, so row counts match the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fleetsched.core.request import Request
from fleetsched.workload._common import (
    PathLike,
    backwards,
    csv_header,
    csv_rows,
    make_request,
    no_rows,
    row_counts,
    row_seconds,
)

COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
_USED = ("Timestamp", "Model", "Request tokens", "Response tokens")


def load_burstgpt(path: PathLike) -> Iterator[Request]:
    """Stream a BurstGPT CSV. Checks the header now; rows are read lazily."""
    p = Path(path)
    cols = csv_header(p, COLUMNS, "BurstGPT")
    return _rows(p, cols)


def _rows(path: Path, cols: dict[str, int]) -> Iterator[Request]:
    it, im, ip, io = (cols[c] for c in _USED)
    models: dict[str, str] = {}
    prev = 0.0
    i = 0
    line = 1
    for line, row in csv_rows(path):
        t = row_seconds(row[it], "Timestamp", path, line)
        if t < prev:
            raise backwards("Timestamp", row[it].strip(), prev, path, line)
        prev = t
        prompt, output = row_counts(row, ip, io, ("Request tokens", "Response tokens"), path, line)
        name = row[im].strip()
        model = models.setdefault(name, name) or None  # intern repeated model names
        yield make_request(i, t, prompt, output, model=model)
        i += 1
    if i == 0:
        raise no_rows(path, line + 1)
