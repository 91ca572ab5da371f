"""Read a report's inputs: the files ``simulate``, ``compare``, ``sweep``, ``plan``, ``bench``
and ``fidelity`` write, or folders of them. The kind of each file is told by its content.

JSON (the exact contracts are in ``docs/report.md``):

- a **summary** (has ``requests`` and ``ttft_s``; ``simulate`` and ``bench``): one run;
- a **comparison** (an object whose values are all summaries; ``compare --summary-json``):
  one run per key, named by it;
- a **sweep** (``sweep -o DIR``'s ``summaries.json``: a list of ``{"grid", "summary"}``);
- a **plan** (``plan --summary-json``: ``slo``, ``candidates`` with their ``probes``);
- a **fidelity** pair (``fidelity --summary-json``: ``simulated`` and ``live`` summaries).

CSV or Parquet: **per-request records** (the ``--requests-out`` columns) or a **time series**
(``--timeseries-out``: ``t_s, instance, queue_len, running, kv_utilization``); other tables
in a folder (a sweep's ``summaries.parquet``) are skipped. A records or
time-series file belongs to the run named like the file (``round_robin.csv``,
``round_robin.requests.csv`` or ``round_robin.timeseries.csv`` belong to run
``round_robin``); when only one run came from summaries, files that match no name belong to
it. Records without a summary make a run of their own, summarised without SLO targets.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fleetsched.errors import InputError
from fleetsched.metrics.io import import_pyarrow, read_records
from fleetsched.metrics.records import RECORD_FIELDS
from fleetsched.metrics.summary import summarize
from fleetsched.metrics.timeseries import InstanceSeries, is_series_header, read_series
from fleetsched.report.data import (
    Fidelity,
    Plan,
    PlanCandidate,
    ReportData,
    Run,
    Sweep,
    SweepPoint,
    request_columns,
)

SUFFIXES = (".json", ".csv", ".parquet")
_RECORD_REQUIRED = set(RECORD_FIELDS[:7])  # id .. arrival_s: the fields without a default


def is_summary(d: Any) -> bool:
    return isinstance(d, dict) and "requests" in d and isinstance(d.get("ttft_s"), dict)


def expand(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) of ``paths``, a folder standing for its own .json, .csv and
    .parquet files (sorted)."""
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())
            if not found:
                raise InputError("no .json, .csv or .parquet file in this folder", str(p))
            out.extend((f, False) for f in found)
        elif p.is_file():
            out.append((p, True))
        else:
            raise InputError("no such file or folder", str(p))
    return out


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", str(p)) from None
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", f"{p}:{e.lineno}") from None


def _header(p: Path) -> list[str]:
    if p.suffix.lower() == ".parquet":
        _, pq = import_pyarrow(p)
        try:
            return list(pq.read_schema(p).names)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read Parquet: {e}", str(p)) from None
    try:
        with p.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", str(p)) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", str(p)) from None


def file_label(p: Path) -> str:
    """``out/round_robin.requests.csv`` -> ``round_robin``."""
    stem = p.stem
    for tail in (".requests", ".timeseries"):
        stem = stem.removesuffix(tail)
    return stem


def _dig(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)  # type: ignore[assignment]
    return d


def _need(cond: bool, msg: str, where: str) -> None:
    if not cond:
        raise InputError(msg, where)


def is_sweep(d: Any) -> bool:
    """``fleetsched sweep -o DIR``'s ``summaries.json``: a list of points, each with its
    ``grid`` values and ``summary`` (null when it failed)."""
    return (
        isinstance(d, list)
        and bool(d)
        and all(isinstance(x, dict) and "grid" in x and "summary" in x for x in d)
    )


def fleet_cost(fleet: Any, prices: dict[str, float], where: str) -> float | None:
    """USD per hour of a sweep point's ``fleet`` (``[{"gpu", "tp", "count"}, ...]``); None
    when a GPU has no price."""
    from fleetsched.perf.hardware import get_gpu

    _need(isinstance(fleet, list) and bool(fleet), "fleet: expected a list of groups", where)
    total = 0.0
    for k, g in enumerate(fleet):
        ok = isinstance(g, dict) and isinstance(g.get("gpu"), str)
        ok = ok and all(isinstance(g.get(f), int) and g[f] >= 1 for f in ("tp", "count"))
        _need(ok, "expected {gpu: name, tp: int >= 1, count: int >= 1}", f"{where}.fleet[{k}]")
        try:
            price = prices.get(get_gpu(g["gpu"]).name)
        except InputError:
            price = None
        if price is None:
            return None
        total += g["count"] * g["tp"] * price
    return total


def parse_sweep(
    d: list[Any], where: str, name: str, prices: dict[str, float] | None = None
) -> Sweep:
    points = []
    for i, pt in enumerate(d):
        at = f"{where}: [{i}]"
        grid, summary = pt["grid"], pt["summary"]
        _need(isinstance(grid, dict), "grid: expected an object of field -> value", at)
        _need(
            summary is None or is_summary(summary),
            "summary: expected a fleetsched summary (or null for a failed point)",
            at,
        )
        err = pt.get("error")
        cost = None
        if pt.get("fleet") is not None and prices is not None:
            cost = fleet_cost(pt["fleet"], prices, at)
        points.append(SweepPoint(dict(grid), summary, None if err is None else str(err), cost))
    return Sweep(name, points)


def is_plan(d: Any) -> bool:
    """``fleetsched plan --summary-json``: the SLO text, the candidates' probes, the choice."""
    return isinstance(d, dict) and isinstance(d.get("slo"), str) and "candidates" in d


def parse_plan(d: dict[str, Any], where: str, name: str) -> Plan:
    from fleetsched.plan.slo import parse_slo

    try:
        clauses = parse_slo(d["slo"])
    except InputError as e:
        raise InputError(f"slo: {e.message}", where) from None
    slo = {c.metric + (f".{c.stat}" if c.stat else ""): c.value for c in clauses}
    _need(isinstance(d["candidates"], list), "candidates: expected a list", where)
    cands = []
    for i, c in enumerate(d["candidates"]):
        at = f"{where}: candidates[{i}]"
        _need(isinstance(c, dict), "a candidate must be an object", at)
        _need(isinstance(c.get("gpu"), str) and isinstance(c.get("tp"), int), "gpu, tp", at)
        for k, pr in enumerate(c.get("probes") or []):
            pat = f"{at}.probes[{k}]"
            _need(isinstance(pr, dict), "a probe must be an object", pat)
            ok = isinstance(pr.get("replicas"), int) and isinstance(
                pr.get("cost_per_hour"), int | float
            )
            _need(ok, "replicas and cost_per_hour: missing or not numbers", pat)
            _need(is_summary(pr.get("summary")), "summary: expected a fleetsched summary", pat)
            cands.append(
                PlanCandidate(
                    c["gpu"],
                    c["tp"],
                    pr["replicas"],
                    float(pr["cost_per_hour"]),
                    bool(pr.get("meets")),
                    pr["summary"],
                )
            )
    choice = None
    if d.get("choice") is not None:
        ch = d["choice"]
        _need(isinstance(ch, dict), "choice: expected an object {gpu, tp, replicas}", where)
        key = (ch.get("gpu"), ch.get("tp"), ch.get("replicas"))
        match = [c for c in cands if (c.gpu, c.tp, c.replicas) == key]
        _need(bool(match), f"choice: {key} is not one of the simulated fleets", where)
        choice = match[0]
    return Plan(name, slo, cands, choice)


def is_fidelity(d: Any) -> bool:
    """``fleetsched fidelity --summary-json``: ``{"simulated", "live", "comparison"}``."""
    return isinstance(d, dict) and is_summary(d.get("simulated")) and is_summary(d.get("live"))


def parse_fidelity(d: dict[str, Any], where: str, name: str) -> Fidelity:
    live = d["live"]
    target = _dig(live, "bench", "target")
    return Fidelity(
        name,
        Run("simulated", d["simulated"], sources=[where]),
        Run("live", live, sources=[where]),
        target if isinstance(target, str) else None,
    )


def _folder_stem(p: Path, generic: str) -> str:
    """The file's stem, or its folder's name for a generic one (``bench/summary.json``)."""
    return p.parent.name if p.stem == generic and p.parent.name else p.stem


def _run_label(summary: dict[str, Any], stem: str) -> str:
    router = _dig(summary, "scenario", "policies", "router", "name")
    return router if isinstance(router, str) else stem


def load(
    paths: Sequence[str | Path], title: str | None = None, prices: str | Path | None = None
) -> ReportData:
    """Read every input (see the module doc) into one :class:`ReportData`. A sweep's
    fleets are priced from ``prices`` (a ``plan --prices`` file) over the shipped table."""
    from fleetsched.plan.prices import load_prices

    price_table = load_prices(prices)
    data = ReportData()
    records_files: list[Path] = []
    series_files: list[Path] = []
    skipped: list[str] = []
    for p, explicit in expand(paths):
        where = str(p)
        if p.suffix.lower() == ".json":
            d = _read_json(p)
            if is_fidelity(d):
                data.fidelity.append(parse_fidelity(d, where, p.stem))
            elif is_plan(d):
                data.plans.append(parse_plan(d, where, p.stem))
            elif is_sweep(d):
                stem = _folder_stem(p, "summaries")
                data.sweeps.append(parse_sweep(d, where, stem, price_table))
            elif is_summary(d):
                data.runs.append(Run(_run_label(d, _folder_stem(p, "summary")), d, sources=[where]))
            elif isinstance(d, dict) and d and all(is_summary(v) for v in d.values()):
                data.runs.extend(Run(str(k), v, sources=[where]) for k, v in d.items())
            else:
                keys = ", ".join(list(d)[:8]) if isinstance(d, dict) else type(d).__name__
                raise InputError(
                    "not a fleetsched summary, comparison, sweep, plan or fidelity file"
                    f" (top level: {keys})",
                    where,
                )
            continue
        cols = _header(p)
        if is_series_header(cols):
            series_files.append(p)
        elif set(cols) >= _RECORD_REQUIRED:
            records_files.append(p)
        else:
            why = (
                "neither per-request records (id, tenant, ..., arrival_s, ...) nor a time"
                f" series (t_s, instance, queue_len, running, kv_utilization): columns are"
                f" {', '.join(cols[:8]) or 'none'}"
            )
            if explicit:
                raise InputError(why, where)
            skipped.append(f"{where} ({why})")  # another table in a folder (summaries.parquet)
    _unique_labels(data.runs)
    from_summaries = len(data.runs)
    for p in records_files:
        run = _owner(data.runs, p, from_summaries, "requests")
        recs = read_records(p)
        if run is None:
            s = summarize(recs)
            data.runs.append(Run(file_label(p), s, request_columns(recs), sources=[str(p)]))
        else:
            run.requests = request_columns(recs)
            run.sources.append(str(p))
    for p in series_files:
        run = _owner(data.runs, p, from_summaries, "series")
        if run is None:
            names = ", ".join(r.label for r in data.runs) or "none"
            raise InputError(
                f"this time series belongs to no run (runs: {names}); name it"
                " <run>.timeseries.csv or give the run's summary or records too",
                str(p),
            )
        run.series = _checked_series(read_series(p), run, p)
        run.sources.append(str(p))
    if not (data.runs or data.sweeps or data.plans or data.fidelity):
        raise InputError("nothing to report" + "".join(f"; skipped {x}" for x in skipped))
    data.title = title or default_title(data)
    return data


def default_title(data: ReportData) -> str:
    """The scenario names of the runs (or the sweep/plan/fidelity names) and the run count."""
    names = [
        str(r.scenario.get("name")) for r in data.runs if r.scenario and r.scenario.get("name")
    ]
    names += [x.name for x in (*data.sweeps, *data.plans, *data.fidelity)]
    head = ", ".join(dict.fromkeys(names)) or "fleetsched report"
    n = len(data.runs)
    return head + (f": {n} runs" if n > 1 else "")


def _unique_labels(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} ({Path(r.sources[0]).stem})"
    counts: dict[str, int] = {}
    for r in runs:  # still equal (same file stem in two folders): number them
        n = counts[r.label] = counts.get(r.label, 0) + 1
        if n > 1:
            r.label = f"{r.label} #{n}"


def _owner(runs: list[Run], p: Path, from_summaries: int, what: str) -> Run | None:
    label = file_label(p)
    named = [r for r in runs if r.label == label]
    if named:
        run = named[0]
    elif from_summaries == 1:
        run = runs[0]
    else:
        return None
    if getattr(run, what) is not None:
        raise InputError(f"run {run.label!r} already has {what} from {run.sources[-1]}", str(p))
    return run


def _checked_series(s: InstanceSeries, run: Run, p: Path) -> InstanceSeries:
    per = run.summary.get("per_instance_requests")
    if isinstance(per, list) and per and len(per) != len(s.names):
        raise InputError(
            f"{len(s.names)} instances in the time series but {len(per)} in run {run.label!r}",
            str(p),
        )
    return s
