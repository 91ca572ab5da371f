"""Sweep results on disk: every point's summary as JSON and as one Parquet table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fleetsched.core.config import Scenario
from fleetsched.metrics.summary import _jsonable
from fleetsched.sweep.grid import PointResult


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys (``ttft_s.p99``); lists become JSON text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(_jsonable(list(v)))
        else:
            out[key] = _jsonable(v)
    return out


def fleet(scenario: Scenario) -> list[dict[str, Any]]:
    """The instance groups' GPU, TP and count (at the start, for an autoscaled fleet): what
    a point's cost follows."""
    return [{"gpu": g.gpu, "tp": g.tp, "count": g.count} for g in scenario.cluster]


def point_records(
    points: Sequence[Mapping[str, Any]],
    results: Sequence[PointResult],
    scenarios: Sequence[Scenario] | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready record per point: its grid values, fleet (with ``scenarios``), status,
    error and summary."""
    fleets = [fleet(sc) for sc in scenarios] if scenarios is not None else [None] * len(points)
    return [
        {
            "point": i,
            "grid": dict(ov),
            "fleet": fl,
            "key": r.key,
            "status": "ok" if r.ok else "failed",
            "error": r.error,
            "cached": r.cached,
            "summary": _jsonable(r.summary) if r.summary is not None else None,
        }
        for i, (ov, r, fl) in enumerate(zip(points, results, fleets, strict=True))
    ]


def write_json(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(records, sort_keys=True, indent=2, allow_nan=False) + "\n")


def write_parquet(path: Path, records: list[dict[str, Any]]) -> bool:
    """One row per point (grid values as ``grid.PATH`` columns, the summary flattened).
    Returns False when pyarrow is not installed (the ``parquet`` extra)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    rows = []
    for rec in records:
        row = {"point": rec["point"], "status": rec["status"], "error": rec["error"]}
        row.update({f"grid.{k}": v for k, v in rec["grid"].items()})
        row.update(flatten(rec["summary"] or {}))
        rows.append(row)
    columns = sorted(
        {k for r in rows for k in r},
        key=lambda k: (not k.startswith(("point", "status", "error", "grid.")), k),
    )
    data: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in columns}
    for c, vals in data.items():
        kinds = {type(v) for v in vals if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            data[c] = [None if v is None else str(v) for v in vals]
        elif kinds == {int, float}:
            data[c] = [None if v is None else float(v) for v in vals]
    pq.write_table(pa.table(data), path)
    return True
