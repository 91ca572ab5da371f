"""One-pass summary statistics of a request stream (``fleetsched trace info``)."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from fleetsched.core.request import Request

PERCENTILES = (50, 90, 99)


def _lengths(values: array) -> dict[str, float | int]:
    a = np.frombuffer(values, dtype=np.int64)
    p50, p90, p99 = np.percentile(a, PERCENTILES).tolist()
    return {
        "mean": float(a.mean()),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": int(a.max()),
        "total": int(a.sum()),
    }


def trace_stats(stream: Iterable[Request]) -> dict[str, Any]:
    """Summarize a request stream in one pass.

    Returns a JSON-ready dict: ``rows``; ``first_arrival_s``, ``duration_s`` (last minus first
    arrival) and ``mean_rate`` (rows / duration, req/s); ``prompt_tokens`` and
    ``output_tokens`` with mean, p50, p90, p99, max and total; ``prefix_sharing_ratio``, the
    fraction of all prompt tokens lying in blocks whose chained hash appeared earlier in the
    stream (an upper bound on what an infinite prefix cache could reuse; ``None`` when no
    request has hashes); ``hash_block_tokens``; and the number of distinct ``tenants``,
    ``models``, ``slo_classes`` and ``sessions``.

    Memory: two int64 per request (for exact percentiles) plus the set of distinct hashes.
    """
    prompts = array("q")
    outputs = array("q")
    seen: set[int] = set()
    shared_tokens = 0
    hashed = False
    block_sizes: set[int] = set()
    tenants: set[str] = set()
    models: set[str | None] = set()
    slo_classes: set[str] = set()
    sessions: set[str] = set()
    first = last = 0.0
    n = 0
    add_prompt, add_output = prompts.append, outputs.append
    for r in stream:
        if n == 0:
            first = r.arrival_s
        last = r.arrival_s
        n += 1
        add_prompt(r.prompt_tokens)
        add_output(r.output_tokens)
        tenants.add(r.tenant)
        models.add(r.model)
        slo_classes.add(r.slo_class)
        if r.session_id is not None:
            sessions.add(r.session_id)
        hs = r.block_hashes
        if hs:
            hashed = True
            block_sizes.add(r.hash_block_tokens)
            before = len(seen)
            seen.update(hs)
            # Chained hashes are distinct within a request, so the ones not added were seen.
            shared_tokens += (len(hs) - (len(seen) - before)) * r.hash_block_tokens
    if n == 0:
        return {"rows": 0}
    duration = last - first
    prompt = _lengths(prompts)
    return {
        "rows": n,
        "first_arrival_s": first,
        "duration_s": duration,
        "mean_rate": n / duration if duration > 0 else None,
        "prompt_tokens": prompt,
        "output_tokens": _lengths(outputs),
        "prefix_sharing_ratio": shared_tokens / prompt["total"] if hashed else None,
        "hash_block_tokens": sorted(block_sizes)
        if len(block_sizes) > 1
        else next(iter(block_sizes), None),
        "tenants": len(tenants),
        "models": len(models),
        "slo_classes": len(slo_classes),
        "sessions": len(sessions),
    }
