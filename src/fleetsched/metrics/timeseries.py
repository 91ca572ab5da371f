"""Per-instance engine state over time (waiting queue, running batch, KV use), and its files.

The simulator fills an :class:`InstanceSeries` when asked to sample (``simulate
--sample-interval``); the report draws queue length over time and per-instance heat maps
from it. A file holds one row per (sample time, instance), in time order:

``t_s,instance,name,queue_len,running,kv_utilization``

``t_s`` in seconds of simulated time, ``queue_len`` and ``running`` request counts,
``kv_utilization`` the fraction of KV blocks in use (0..1). CSV by default, Parquet when the
path ends in ``.parquet`` (needs the ``parquet`` extra). Floats are written with ``repr``, so
the same series always gives byte-identical files.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleetsched.errors import InputError, at_line
from fleetsched.metrics.io import import_pyarrow

#: Column header of a time-series file.
SERIES_COLUMNS: tuple[str, ...] = (
    "t_s",
    "instance",
    "name",
    "queue_len",
    "running",
    "kv_utilization",
)


@dataclass(slots=True)
class InstanceSeries:
    """``n`` samples of ``k`` instances: ``t_s`` has shape (n,), the others (n, k)."""

    t_s: np.ndarray
    names: list[str]
    queue_len: np.ndarray
    running: np.ndarray
    kv_utilization: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.t_s.size, len(self.names))
        for field in ("queue_len", "running", "kv_utilization"):
            got = getattr(self, field).shape
            if got != shape:
                raise ValueError(f"{field} has shape {got}, expected {shape}")

    @property
    def load(self) -> np.ndarray:
        """Outstanding requests per instance (waiting + running), shape (n, k)."""
        return self.queue_len + self.running


def write_series(series: InstanceSeries, path: str | Path) -> int:
    """Write ``series`` to ``path`` (CSV, or Parquet by suffix); return the number of rows."""
    p = Path(path)
    n, k = series.queue_len.shape
    t = np.repeat(series.t_s, k)
    inst = np.tile(np.arange(k), n)
    names = [series.names[i] for i in inst.tolist()]
    q, r = series.queue_len.ravel().tolist(), series.running.ravel().tolist()
    kv = series.kv_utilization.ravel().tolist()
    if p.suffix.lower() == ".parquet":
        pa, pq = import_pyarrow(p)
        table = pa.table(
            {
                "t_s": pa.array(t, pa.float64()),
                "instance": pa.array(inst, pa.int64()),
                "name": pa.array(names, pa.string()),
                "queue_len": pa.array(q, pa.int64()),
                "running": pa.array(r, pa.int64()),
                "kv_utilization": pa.array(kv, pa.float64()),
            }
        )
        pq.write_table(table, p)
        return n * k
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SERIES_COLUMNS)
        for row in zip(t.tolist(), inst.tolist(), names, q, r, kv, strict=True):
            w.writerow([repr(row[0]), row[1], row[2], row[3], row[4], repr(row[5])])
    return n * k


def is_series_header(columns: list[str]) -> bool:
    """Whether a file with these columns is a time-series file (see :data:`SERIES_COLUMNS`)."""
    return {"t_s", "instance", "queue_len", "running", "kv_utilization"} <= set(columns)


def read_series(path: str | Path) -> InstanceSeries:
    """Read a file written by :func:`write_series`; errors name ``file:line`` and the column."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        _, pq = import_pyarrow(p)
        try:
            data = pq.read_table(p).to_pydict()
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read Parquet time series: {e}", str(p)) from None
        cols = list(data)
        if not is_series_header(cols):
            raise InputError(f"not a time-series file (columns: {', '.join(cols)})", str(p))
        rows = list(
            zip(*(data.get(c, [""] * len(data["t_s"])) for c in SERIES_COLUMNS), strict=True)
        )
        return _assemble(rows, lambda i: str(p))
    try:
        f = p.open(newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read time series: {e.strerror}", str(p)) from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        if not is_series_header(header):
            raise InputError(
                f"not a time-series file: expected columns {', '.join(SERIES_COLUMNS)}",
                at_line(p, 1),
            )
        idx = [header.index(c) if c in header else -1 for c in SERIES_COLUMNS]
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(
                    f"expected {len(header)} values, got {len(row)}", at_line(p, line_no)
                )
            rows.append(tuple(row[i] if i >= 0 else "" for i in idx))
    return _assemble(rows, lambda i: at_line(p, i + 2))


def _assemble(rows: list[tuple[Any, ...]], where: Callable[[int], str]) -> InstanceSeries:
    """Rows of (t_s, instance, name, queue_len, running, kv_utilization) -> a series.

    Every sample time must list the same instances (0..k-1); ``where(i)`` names row ``i``.
    """
    parsed = []
    for i, (t, inst, name, q, r, kv) in enumerate(rows):
        try:
            parsed.append((float(t), int(inst), str(name), int(q), int(r), float(kv)))
        except ValueError:
            raise InputError(
                "t_s and kv_utilization must be numbers, instance/queue_len/running integers",
                where(i),
            ) from None
    if not parsed:
        raise InputError("a time-series file needs at least one row", where(-1))
    k = max(row[1] for row in parsed) + 1
    if len(parsed) % k:
        raise InputError(
            f"{len(parsed)} rows are not a whole number of samples of {k} instances",
            where(len(parsed) - 1),
        )
    n = len(parsed) // k
    names = [""] * k
    t = np.empty(n)
    q = np.empty((n, k), dtype=np.int64)
    r = np.empty((n, k), dtype=np.int64)
    kv = np.empty((n, k))
    for i, (ti, inst, name, qi, ri, kvi) in enumerate(parsed):
        s, j = divmod(i, k)
        if inst != j or (j and ti != t[s]):
            raise InputError(
                f"expected instance {j} at row {i + 1} of the samples, got instance {inst} at"
                f" {ti} s (rows in time order, instances 0..{k - 1} at each sample time)",
                where(i),
            )
        if j == 0:
            if s and ti <= t[s - 1]:
                raise InputError("sample times must increase", where(i))
            t[s] = ti
        names[j] = name or f"instance-{j}"
        q[s, j], r[s, j], kv[s, j] = qi, ri, kvi
    return InstanceSeries(t_s=t, names=names, queue_len=q, running=r, kv_utilization=kv)
