"""Summaries of per-request records: latency distributions, throughput, goodput, SLOs, fairness.

:func:`summarize` reads each record once into numpy columns and computes everything with
array operations, so 100k+ records take a fraction of a second. The result is a plain dict
of floats, ints, strings, lists and dicts; undefined values are NaN and become ``null`` in
:func:`summary_to_json`. Every metric is defined in ``docs/metrics.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from operator import attrgetter
from typing import Any

import numpy as np

from fleetsched.core.config import SLOClass
from fleetsched.metrics.records import RecordTable, RequestRecord
from fleetsched.metrics.stats import (
    coefficient_of_variation,
    dist_summary,
    jain_index,
    nanmean,
    percentiles,
)

NAN = math.nan

#: Latency distributions in a summary, each a :func:`~fleetsched.metrics.stats.dist_summary`.
LATENCY_KEYS: tuple[str, ...] = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "norm_latency_s")

# Columns pulled from the records, by type.
_STR_COLS = ("tenant", "slo_class")
_INT_COLS = (
    "id",
    "priority",
    "prompt_tokens",
    "output_tokens",
    "instance",
    "cached_prompt_tokens",
    "preemptions",
    "migrations",
)
_FLOAT_COLS = (
    "arrival_s",
    "first_scheduled_s",
    "first_token_s",
    "finish_s",
    "deadline_s",
    "quality",
    "correct",
    "energy_j",
)


def record_columns(records: Iterable[RequestRecord]) -> dict[str, np.ndarray]:
    """Read the records into numpy columns, sorted into a canonical order.

    Each column is filled straight from the record attributes by ``np.fromiter`` (no
    per-record tuples or dicts). The canonical order (by id, then every other column)
    makes float sums, and hence the whole summary, independent of the input order.
    """
    cols: dict[str, np.ndarray] = {}
    if isinstance(records, RecordTable) and len(records):  # packed: no record objects made
        n = len(records)
        for name in (*_STR_COLS, *_INT_COLS, *_FLOAT_COLS):
            cols[name] = records.column(name)
    else:
        recs = records if isinstance(records, list | tuple) else list(records)
        n = len(recs)
        for name in _STR_COLS:
            cols[name] = np.array(list(map(attrgetter(name), recs)), dtype=str).reshape(n)
        for name in _INT_COLS:
            cols[name] = np.fromiter(map(attrgetter(name), recs), dtype=np.int64, count=n)
        for name in _FLOAT_COLS:
            cols[name] = np.fromiter(map(attrgetter(name), recs), dtype=np.float64, count=n)
    if n < 2:
        return cols
    ids = cols["id"]
    if (np.diff(ids) > 0).all():
        return cols  # already in the canonical order (the simulator's): no reordered copies
    order = np.argsort(ids, kind="stable")
    if (np.diff(ids[order]) == 0).any():
        # Repeated ids: break ties on every column. np.lexsort's last key is the primary
        # one; NaN sorts last, the same way every time.
        keys = [np.unique(cols[name], return_inverse=True)[1] for name in _STR_COLS]
        keys += [cols[name] for name in (*_INT_COLS[1:], *_FLOAT_COLS)]
        keys.append(cols["id"])
        order = np.lexsort(keys)
    return {name: col[order] for name, col in cols.items()}


def request_latencies(c: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-request ``ttft_s, tpot_s, e2e_s, queue_s, norm_latency_s`` from
    :func:`record_columns`; NaN where undefined and for every unfinished request."""
    done = ~np.isnan(c["finish_s"])
    return {k: _latency(k, c, done) for k in LATENCY_KEYS}


def _latency(key: str, c: Mapping[str, np.ndarray], done: np.ndarray) -> np.ndarray:
    """One of :func:`request_latencies` (one at a time: a million records' columns are 8 MB
    each, and :func:`summarize` keeps few of them alive at once)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if key == "ttft_s":
            return np.where(done, c["first_token_s"] - c["arrival_s"], NAN)
        if key == "queue_s":
            return np.where(done, c["first_scheduled_s"] - c["arrival_s"], NAN)
        out = c["output_tokens"]
        if key == "tpot_s":
            return np.where(
                done & (out > 1),
                (c["finish_s"] - c["first_token_s"]) / np.maximum(out - 1, 1),
                NAN,
            )
        e2e = np.where(done, c["finish_s"] - c["arrival_s"], NAN)
        if key == "e2e_s":
            return e2e
        assert key == "norm_latency_s", key
        return np.where(done & (out > 0), e2e / np.maximum(out, 1), NAN)


class _TableColumns(Mapping[str, np.ndarray]):
    """A packed table's columns read on demand, not all at once (summarize's memory peak;
    its string columns come from :func:`_categories`, as codes)."""

    def __init__(self, table: RecordTable) -> None:
        self.table = table

    def __getitem__(self, name: str) -> np.ndarray:
        return self.table.column(name)

    def __iter__(self) -> Iterator[str]:
        return iter((*_STR_COLS, *_INT_COLS, *_FLOAT_COLS))

    def __len__(self) -> int:
        return len(_STR_COLS) + len(_INT_COLS) + len(_FLOAT_COLS)


def _columns(records: Iterable[RequestRecord]) -> Mapping[str, np.ndarray]:
    """:func:`record_columns`, or for a packed table already in id order (the simulator's)
    the table itself read column by column."""
    table = isinstance(records, RecordTable) and len(records) > 1
    if table and (np.diff(records.column("id")) > 0).all():  # type: ignore[attr-defined]
        return _TableColumns(records)  # type: ignore[arg-type]
    return record_columns(records)


def _per_second(count: float, duration_s: float) -> float:
    return float(count) / duration_s if duration_s > 0 else NAN


def _categories(c: Mapping[str, np.ndarray], name: str) -> tuple[list[str], np.ndarray]:
    """The sorted distinct values of string column ``name`` and each record's index into
    them (``np.unique(..., return_inverse=True)``; a packed table gives them from its codes
    without sorting a million strings)."""
    if isinstance(c, _TableColumns):
        return c.table.categories(name)
    names, inverse = np.unique(c[name], return_inverse=True)
    return names.tolist(), inverse.reshape(-1)


def _slo_targets(
    names: list[str], inverse: np.ndarray, slo_classes: Mapping[str, SLOClass] | None
) -> tuple[Any, Any, Any]:
    """Per-request (has_slo, ttft target, tpot target) from each request's class (one value
    each, broadcast, when every request has the same class)."""
    slo_classes = slo_classes or {}
    has = np.zeros(len(names), dtype=bool)
    ttft = np.full(len(names), np.inf)
    tpot = np.full(len(names), np.inf)
    for i, name in enumerate(names):
        cls = slo_classes.get(name, slo_classes.get("default"))
        if cls is not None:
            has[i], ttft[i], tpot[i] = True, cls.ttft_s, cls.tpot_s
    if len(names) == 1:
        return has[0], ttft[0], tpot[0]
    return has[inverse], ttft[inverse], tpot[inverse]


def summarize(
    records: Iterable[RequestRecord],
    slo_classes: Mapping[str, SLOClass] | None = None,
    *,
    wall_s: float | None = None,
    num_instances: int | None = None,
) -> dict[str, Any]:
    """Summarise per-request records into one JSON-ready dict (see ``docs/metrics.md``).

    ``slo_classes`` maps class names to targets; a request whose class is missing uses the
    ``"default"`` class, and without that has no target (it meets its SLO once finished).
    ``wall_s`` is the real time the run took, reported as is. ``num_instances`` makes the
    per-instance metrics cover instances ``0..num_instances-1`` including idle ones;
    without it they cover ``0..max(instance)``.
    """
    c = _columns(records)
    finish, out = c["finish_s"], c["output_tokens"]
    n = int(finish.size)
    done = ~np.isnan(finish)
    n_done = int(done.sum())
    duration = float(finish[done].max() - c["arrival_s"].min()) if n_done else NAN

    # Latencies one at a time; kept: the ones the per-class and per-tenant parts read.
    dists = {}
    for key in ("e2e_s", "queue_s"):
        dists[key] = dist_summary(_latency(key, c, done))
    ttft, tpot, norm = (_latency(k, c, done) for k in ("ttft_s", "tpot_s", "norm_latency_s"))
    for key, values in (("ttft_s", ttft), ("tpot_s", tpot), ("norm_latency_s", norm)):
        dists[key] = dist_summary(values)
    multi = out > 1
    with np.errstate(invalid="ignore"):
        class_names, class_of = _categories(c, "slo_class")
        has_slo, ttft_target, tpot_target = _slo_targets(class_names, class_of, slo_classes)
        ttft_ok = ttft <= ttft_target
        tpot_ok = ~multi | (tpot <= tpot_target)
    del ttft_target, tpot_target, multi
    met = done & (~has_slo | (ttft_ok & tpot_ok))
    del has_slo, ttft_ok, tpot_ok
    n_met = int(met.sum())

    out_done = int(out[done].sum())
    prompt_done = int(c["prompt_tokens"][done].sum())
    cached_done = int(c["cached_prompt_tokens"][done].sum())
    energy = c["energy_j"]

    summary: dict[str, Any] = {
        "requests": n,
        "completed": n_done,
        "duration_s": duration,
        "wall_s": NAN if wall_s is None else float(wall_s),
        "ttft_s": dists["ttft_s"],
        "tpot_s": dists["tpot_s"],
        "e2e_s": dists["e2e_s"],
        "queue_s": dists["queue_s"],
        "norm_latency_s": dists["norm_latency_s"],
        "throughput_req_s": _per_second(n_done, duration),
        "throughput_tok_s": _per_second(out_done, duration),
        "input_tok_s": _per_second(prompt_done, duration),
        "output_tok_s": _per_second(out_done, duration),
        "goodput_req_s": _per_second(n_met, duration),
        "slo_attainment": n_met / n if n else NAN,
        "prefix_hit_rate": cached_done / prompt_done if prompt_done else NAN,
        "preemptions": int(c["preemptions"].sum()),
        "migrations": int(c["migrations"].sum()),
        "accuracy": nanmean(c["correct"]),
        "mean_quality": nanmean(c["quality"][done]),
        "energy_j": float(energy.sum()),
        "energy_per_request_j": float(energy[done].sum()) / n_done if n_done else NAN,
    }
    del energy

    # Per SLO class.
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(class_names):
        m = class_of == i
        k = int(m.sum())
        k_met = int(met[m].sum())
        per_class[name] = {
            "requests": k,
            "attainment": k_met / k,
            "goodput_req_s": _per_second(k_met, duration),
            "ttft_p99": percentiles(ttft[m], (99,))["p99"],
            "tpot_p99": percentiles(tpot[m], (99,))["p99"],
        }
    summary["per_class"] = per_class
    del ttft, tpot, met, class_of

    # Deadlines (batch jobs, EDF): tardiness = max(0, finish - deadline); unfinished = missed.
    deadline = c["deadline_s"]
    has_dl = ~np.isnan(deadline)
    n_dl = int(has_dl.sum())
    with np.errstate(invalid="ignore"):
        tard = np.maximum(finish - deadline, 0.0)
    del deadline
    on_time = has_dl & done & (tard <= 0)
    summary["deadlines"] = {
        "requests": n_dl,
        "met": int(on_time.sum()),
        "met_rate": int(on_time.sum()) / n_dl if n_dl else NAN,
        "total_tardiness_s": float(tard[has_dl & done].sum()) if n_dl else 0.0,
        "max_tardiness_s": float(tard[has_dl & done].max()) if (has_dl & done).any() else NAN,
    }
    del tard, has_dl, on_time

    # Per tenant.
    per_tenant: dict[str, dict[str, Any]] = {}
    tenant_names, tenant_of = _categories(c, "tenant")
    tenant_means = []
    for i, name in enumerate(tenant_names):
        m = tenant_of == i
        mean_norm = nanmean(norm[m])
        tenant_means.append(mean_norm)
        per_tenant[name] = {
            "requests": int(m.sum()),
            "output_tokens": int(out[m & done].sum()),
            "mean_norm_latency_s": mean_norm,
        }
    summary["per_tenant"] = per_tenant
    del norm, tenant_of
    finite_means = [x for x in tenant_means if not math.isnan(x)]
    summary["fairness_jain"] = jain_index(finite_means) if finite_means else NAN

    # Per instance.
    inst = c["instance"]
    routed = inst >= 0
    top = int(inst.max()) + 1 if routed.any() else 0
    if num_instances is not None:
        if top > num_instances:
            raise ValueError(f"a record names instance {top - 1} but num_instances={num_instances}")
        top = num_instances
    req_per_inst = np.bincount(inst[routed], minlength=top)
    served = routed & done
    tokens = c["prompt_tokens"][served] + out[served]
    tok_per_inst = np.bincount(inst[served], weights=tokens.astype(np.float64), minlength=top)
    summary["per_instance_requests"] = [int(x) for x in req_per_inst]
    summary["per_instance_tokens"] = [int(x) for x in tok_per_inst]
    summary["load_cov"] = coefficient_of_variation(tok_per_inst) if top else NAN
    return summary


def _jsonable(x: Any) -> Any:
    """Plain JSON types, NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


def summary_to_json(summary: Mapping[str, Any]) -> str:
    """Serialise a summary: sorted keys, 2-space indent, NaN -> ``null``, trailing newline.

    The same summary always gives byte-identical text (floats are written with ``repr``).
    """
    return json.dumps(_jsonable(summary), sort_keys=True, indent=2, allow_nan=False) + "\n"
