"""Routing-decision latency of every registered router, and prompt-hashing throughput.

64 instances, 2,048-token prompts (32 shared 1,536-token system prompts + a unique tail),
block hashes precomputed, ``cached_prefix_tokens`` filled, views pre-built: only
``route()`` is timed (``time.perf_counter_ns``), 2,000 decisions after 500 of warm-up.
Finished requests are reported to the router (``on_first_token`` 32 decisions after
dispatch, ``on_finish`` 256 after, both untimed) so router-side loads stay at ~256
outstanding, ~32 of them still in prefill. Targets: median <= 50 us, p99 <= 200 us;
hashing >= 1M tokens/s.
The baseline is round_robin, measured in the same run.

    python benchmarks/bench_route.py [--instances 64] [--decisions 2000] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from fleetsched.core.hashing import block_hashes
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing import ROUTERS, make_router

MEDIAN_TARGET_US = 50.0
P99_TARGET_US = 200.0
HASH_TARGET_TOK_S = 1e6


def build_requests(n: int, prompt_tokens: int, groups: int, seed: int) -> list[RequestView]:
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, 128_000, size=(groups, prompt_tokens * 3 // 4))
    out = []
    for i in range(n):
        g = i % groups
        tail = rng.integers(0, 128_000, size=prompt_tokens - shared.shape[1])
        toks = np.concatenate([shared[g], tail])
        out.append(
            RequestView(
                id=i,
                prompt_tokens=prompt_tokens,
                block_hashes=block_hashes(toks),
                hash_block_tokens=16,
                tenant="default",
                priority=int(i % 10 == 0),
                session_id=f"s{i % 500}",
                slo_class="default",
                model=None,
                deadline_s=None,
            )
        )
    return out


def build_views(
    reqs: Sequence[RequestView], instances: int, groups: int, seed: int
) -> list[list[InstanceView]]:
    """Per request, one view per instance with random load; instances holding the request's
    system prompt (a quarter of them) report it as cached."""
    rng = np.random.default_rng(seed + 1)
    total = 30_000
    out = []
    for r in reqs:
        g = r.id % groups
        q = rng.integers(0, 8, instances).tolist()
        run = rng.integers(0, 64, instances).tolist()
        used = rng.integers(0, total, instances).tolist()
        views = []
        for i in range(instances):
            cached = r.prompt_tokens * 3 // 4 if i % 4 == g % 4 else 0
            views.append(
                InstanceView(
                    index=i,
                    name=f"inst-{i}",
                    model="Llama-3.1-8B",
                    gpu="H100-SXM",
                    role="mixed",
                    healthy=True,
                    queue_len=q[i],
                    running=run[i],
                    kv_utilization=used[i] / total,
                    free_blocks=total - used[i],
                    total_blocks=total,
                    inflight_tokens=(q[i] + run[i]) * 1500,
                    cached_prefix_tokens=cached,
                )
            )
        out.append(views)
    return out


def with_roles(views: list[list[InstanceView]]) -> list[list[InstanceView]]:
    return [
        [dataclasses.replace(v, role="prefill" if v.index % 2 == 0 else "decode") for v in vs]
        for vs in views
    ]


def time_router(
    name: str,
    reqs: Sequence[RequestView],
    views: Sequence[Sequence[InstanceView]],
    warmup: int,
    seed: int = 0,
) -> np.ndarray:
    router = make_router(name, {}, seed=seed)
    first_token = getattr(router, "on_first_token", None)
    pending: deque[tuple[RequestView, int]] = deque()
    ns = []
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for k, (r, vs) in enumerate(zip(reqs, views, strict=True)):
            t0 = clock()
            i = router.route(r, vs)
            t1 = clock()
            if k >= warmup:
                ns.append(t1 - t0)
            pending.append((r, i))
            if first_token is not None and len(pending) > 32:
                first_token(*pending[-33])
            if len(pending) > 256:
                router.on_finish(*pending.popleft())
    finally:
        gc.enable()
    return np.asarray(ns, dtype=np.float64)


def hash_throughput(prompt_tokens: int, reps: int = 2000) -> dict[str, float]:
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 128_000, prompt_tokens)
    lst = arr.tolist()
    res = {}
    for label, x in (("numpy", arr), ("list", lst)):
        t0 = time.perf_counter()
        for _ in range(reps):
            block_hashes(x)
        res[label] = reps * prompt_tokens / (time.perf_counter() - t0)
    return res


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=64)
    ap.add_argument("--decisions", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--prompt-tokens", type=int, default=2048)
    ap.add_argument("--json", action="store_true", help="print results as JSON only")
    a = ap.parse_args(argv)
    groups = 32
    n = a.warmup + a.decisions
    reqs = build_requests(n, a.prompt_tokens, groups, seed=0)
    views = build_views(reqs, a.instances, groups, seed=0)
    role_views = with_roles(views)

    rows: dict[str, dict[str, float]] = {}
    for name in ROUTERS:
        vs = role_views if name == "pd_disagg" else views
        ns = time_router(name, reqs, vs, a.warmup)
        rows[name] = {
            "median_us": float(np.median(ns)) / 1e3,
            "p99_us": float(np.percentile(ns, 99)) / 1e3,
        }
    base = rows["round_robin"]["median_us"]
    for r in rows.values():
        r["vs_round_robin"] = r["median_us"] / base

    # Llumnix's periodic migration planning (not on the request path).
    llm = make_router("llumnix")
    t0 = time.perf_counter_ns()
    for vs in views[:500]:
        llm.plan_migrations(vs)  # type: ignore[attr-defined]
    plan_us = (time.perf_counter_ns() - t0) / 500 / 1e3

    hashing = hash_throughput(a.prompt_tokens)
    result = {
        "instances": a.instances,
        "decisions": a.decisions,
        "prompt_tokens": a.prompt_tokens,
        "routers": rows,
        "llumnix_plan_migrations_us": plan_us,
        "hash_tokens_per_s": hashing,
    }
    if a.json:
        print(json.dumps(result, indent=1))
        return result

    print(
        f"route() latency: {a.instances} instances, {a.prompt_tokens}-token prompts "
        f"({a.prompt_tokens // 16} block hashes), {a.decisions} decisions after {a.warmup} "
        f"warm-up; target median <= {MEDIAN_TARGET_US:g} us, p99 <= {P99_TARGET_US:g} us"
    )
    print(f"{'router':<18} {'median us':>10} {'p99 us':>9} {'x round_robin':>14}  target")
    for name, r in rows.items():
        ok = r["median_us"] <= MEDIAN_TARGET_US and r["p99_us"] <= P99_TARGET_US
        print(
            f"{name:<18} {r['median_us']:>10.1f} {r['p99_us']:>9.1f} "
            f"{r['vs_round_robin']:>14.1f}  {'ok' if ok else 'MISS'}"
        )
    print(f"llumnix plan_migrations: {plan_us:.1f} us per call (every 0.1 s, off the path)")
    print(
        "prompt hashing (block_hashes, 16-token blocks): "
        + ", ".join(f"{k} {v / 1e6:.1f}M tokens/s" for k, v in hashing.items())
        + f"; target >= {HASH_TARGET_TOK_S / 1e6:g}M tokens/s"
    )
    return result


if __name__ == "__main__":
    main()
