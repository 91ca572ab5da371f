"""What ``bench`` writes: the simulator's summary and per-request rows, plus live-only fields.

:func:`bench_summary` is :func:`~fleetsched.metrics.summary.summarize` over the client-side
records (same keys, same definitions) with fields only a live run has added (never
renamed), in the spirit of ``vllm bench serve`` and guidellm:

* ``itl_s``: inter-token latency, every gap between consecutive token chunks of every request
  pooled (vLLM's ITL). ``tpot_s`` is per request (last - first) / (tokens - 1), which vLLM
  calls TPOT and guidellm inter-token latency; ``norm_latency_s`` (E2E / tokens) is close to
  guidellm's time per output token.
* ``failed`` and ``errors`` (count by kind), ``not_sent`` and ``interrupted`` (Ctrl-C).
* ``send_lag_s``: how late requests left the client against their schedule (a lagging
  client shows here instead of silently lowering the load).
* ``total_tok_s`` (input + output tokens per second), ``peak_output_tok_s`` (most output
  tokens in one second of the run), ``peak_concurrency`` (most requests in flight), ``chunks``.
* ``output_mismatch``: completed requests that got another number of tokens than asked.
* ``server``: deltas of the target's Prometheus counters over the run (vLLM names): prefix
  cache hits/queries and their ``prefix_hit_rate``, preemptions, prompt and generation tokens.
* ``bench``: how the run was made (target, endpoint, streaming, time scale, concurrency).

The per-request CSV is :func:`~fleetsched.metrics.io.write_records` with extra columns
:data:`EXTRA_COLUMNS`. Only the client's view exists: ``first_scheduled_s`` (hence
``queue_s``) and ``instance`` are unknown (NaN, -1); ``arrival_s`` is when the request left
the client; ``prefix_hit_rate`` is NaN unless the server reports cached prompt tokens in
``usage.prompt_tokens_details``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from fleetsched.bench.runner import BenchRun
from fleetsched.core.config import SLOClass
from fleetsched.metrics.io import write_records
from fleetsched.metrics.stats import dist_summary
from fleetsched.metrics.summary import summarize
from fleetsched.metrics.table import fmt_int, fmt_ms, fmt_num, fmt_pct

NAN = math.nan

EXTRA_COLUMNS = (
    "scheduled_s",
    "requested_prompt_tokens",
    "requested_output_tokens",
    "status",
    "error",
    "chunks",
    "itl_max_s",
)

#: Server counters read before and after a run: (summary key, Prometheus sample names).
_SERVER_COUNTERS = {
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prefix_cache_queries": (
        "vllm:prefix_cache_queries_total",
        "vllm:gpu_prefix_cache_queries_total",
    ),
    "preemptions": ("vllm:num_preemptions_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
}


def counter_totals(text: str | None) -> dict[str, float]:
    """Sum of each known counter over its label sets in a Prometheus exposition."""
    if not text:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[s.name] = samples.get(s.name, 0.0) + float(s.value)
    out = {}
    for key, names in _SERVER_COUNTERS.items():
        for name in names:
            if name in samples:
                out[key] = samples[name]
                break
    return out


def server_deltas(before: str | None, after: str | None) -> dict[str, float]:
    a, b = counter_totals(before), counter_totals(after)
    d = {k: b[k] - a.get(k, 0.0) for k in b}
    q = d.get("prefix_cache_queries")
    if q is not None:
        d["prefix_hit_rate"] = d.get("prefix_cache_hits", 0.0) / q if q > 0 else NAN
    return d


def _peak_per_second(outcomes: list[Any]) -> float:
    """Most token chunks that arrived within one second of trace time."""
    times = []
    for o in outcomes:
        ft = o.record.first_token_s
        if o.chunks and not math.isnan(ft):
            gaps = np.frombuffer(o.gaps, dtype=np.float64)
            times.append(ft + np.concatenate(([0.0], np.cumsum(gaps))))
    if not times:
        return NAN
    t = np.concatenate(times)
    edges = np.floor(t - t.min()).astype(np.int64)
    return float(np.bincount(edges).max())


def bench_summary(
    run: BenchRun, slo_classes: Mapping[str, SLOClass] | None = None
) -> dict[str, Any]:
    """The summary of a bench run (see the module docstring)."""
    cfg = run.config
    outs = run.outcomes
    recs = [o.record for o in outs]
    s = summarize(recs, slo_classes, wall_s=run.wall_s)
    done = [o for o in outs if o.record.finished]
    if not any(o.cached_reported for o in done):
        s["prefix_hit_rate"] = NAN
    gaps = [np.frombuffer(o.gaps, dtype=np.float64) for o in outs if len(o.gaps)]
    s["itl_s"] = dist_summary(np.concatenate(gaps) if gaps else [])
    s["send_lag_s"] = dist_summary([o.record.arrival_s - o.scheduled_s for o in outs])
    errors = Counter(o.error for o in outs if o.error)
    s["failed"] = sum(errors.values())
    s["errors"] = dict(sorted(errors.items()))
    s["not_sent"] = run.not_sent
    s["interrupted"] = run.interrupted
    dur = s["duration_s"]
    tokens = sum(o.record.prompt_tokens + o.record.output_tokens for o in done)
    s["total_tok_s"] = tokens / dur if dur and dur > 0 else NAN
    s["peak_output_tok_s"] = _peak_per_second(done)
    s["peak_concurrency"] = run.peak_inflight
    s["chunks"] = sum(o.chunks for o in outs)
    s["output_mismatch"] = sum(
        1 for o in done if o.record.output_tokens != o.requested_output_tokens
    )
    s["server"] = server_deltas(run.metrics_before, run.metrics_after)
    info = run.server_info
    s["bench"] = {
        "target": cfg.target,
        "endpoint": cfg.endpoint,
        "model": cfg.model,
        "stream": cfg.stream,
        "time_scale": cfg.time_scale,
        "max_concurrency": cfg.max_concurrency,
        "server": (info.get("fleetsched") or {}).get("engine", info.get("owned_by")),
    }
    return s


def write_bench_records(run: BenchRun, path: str | Path) -> int:
    """Per-request rows: the simulator's columns, then :data:`EXTRA_COLUMNS`."""
    outs = run.outcomes
    extra = {
        "scheduled_s": [o.scheduled_s for o in outs],
        "requested_prompt_tokens": [o.requested_prompt_tokens for o in outs],
        "requested_output_tokens": [o.requested_output_tokens for o in outs],
        "status": [o.status for o in outs],
        "error": [o.error for o in outs],
        "chunks": [o.chunks for o in outs],
        "itl_max_s": [max(o.gaps) if len(o.gaps) else NAN for o in outs],
    }
    return write_records([o.record for o in outs], path, extra)


def live_table(s: Mapping[str, Any], title: str | None = "Live") -> Table:
    """The live-only figures of a bench summary."""
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("mean / value", justify="right")
    t.add_column("p50", justify="right")
    t.add_column("p99", justify="right")
    for label, key in (("ITL (ms)", "itl_s"), ("send lag (ms)", "send_lag_s")):
        d = s.get(key) or {}
        t.add_row(label, *(fmt_ms(d.get(k)) for k in ("mean", "p50", "p99")))
    t.add_section()
    errs = s.get("errors") or {}
    err_text = ", ".join(f"{k} {v}" for k, v in errs.items()) or "none"
    srv = s.get("server") or {}
    rows = (
        ("failed", f"{fmt_int(s.get('failed'))} ({err_text})"),
        ("not sent", fmt_int(s.get("not_sent"))),
        ("peak concurrency", fmt_int(s.get("peak_concurrency"))),
        ("total throughput (tok/s)", fmt_num(s.get("total_tok_s"), 1)),
        ("peak output (tok/s)", fmt_num(s.get("peak_output_tok_s"), 1)),
        ("server prefix hit rate", fmt_pct(srv.get("prefix_hit_rate"))),
        ("server preemptions", fmt_int(srv.get("preemptions"))),
    )
    for label, value in rows:
        t.add_row(label, value, "", "")
    return t


__all__ = [
    "EXTRA_COLUMNS",
    "bench_summary",
    "counter_totals",
    "live_table",
    "server_deltas",
    "write_bench_records",
]
