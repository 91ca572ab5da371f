"""Simulator speed: 16 x H100 Llama-3.1-8B, synthetic chat (mean 1,000 in / 250 out tokens).

Prints simulated seconds per wall second and requests per wall second for 10k and 100k
requests (and 1M with --million), peak RSS of each run (each in its own process), and decode
fast-forward on vs off on the same workload (the baseline, run in this same invocation).

    python benchmarks/bench_sim.py [--million] [--rate 160]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

from fleetsched.core.config import (
    ArrivalConfig,
    InstanceGroup,
    LengthConfig,
    Scenario,
    SyntheticConfig,
    WorkloadConfig,
)
from fleetsched.sim.run import simulate


def scenario(n: int, rate: float) -> Scenario:
    syn = SyntheticConfig(
        num_requests=n,
        arrival=ArrivalConfig(kind="poisson", rate=rate),
        prompt=LengthConfig(kind="lognormal", mean=1000, sigma=0.7, max=16384),
        output=LengthConfig(kind="lognormal", mean=250, sigma=0.7, max=4096),
        system_prompt_tokens=200,
        num_system_prompts=8,
    )
    return Scenario(
        name="bench",
        workload=WorkloadConfig(synthetic=syn),
        cluster=[InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B", count=16)],
    )


def one(n: int, rate: float, ff: bool) -> dict:
    t0 = time.perf_counter()
    res = simulate(scenario(n, rate), fast_forward=ff)
    wall = time.perf_counter() - t0
    s = res.summary
    digest = hashlib.sha256(
        repr([(r.first_token_s, r.finish_s, r.instance) for r in res.records]).encode()
    ).hexdigest()
    return {
        "digest": digest,
        "runs": sum(e.runs for e in res.engine_stats),
        "requests": n,
        "fast_forward": ff,
        "wall_s": wall,
        "sim_s": s["duration_s"],
        "completed": s["completed"],
        "steps": s["engine_steps"],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ttft_p99": s["ttft_s"]["p99"],
    }


def in_subprocess(n: int, rate: float, ff: bool) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(n), "--rate", str(rate)]
        + ([] if ff else ["--no-ff"]),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=160.0, help="arrivals per second")
    ap.add_argument("--million", action="store_true", help="also run 1M requests")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-ff", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.rate, not a.no_ff)))
        return
    sizes = [10_000, 100_000] + ([1_000_000] if a.million else [])
    print(
        f"simulator: 16 x H100-SXM / Llama-3.1-8B, Poisson {a.rate:g} req/s, "
        "lognormal prompts (mean 1000) and outputs (mean 250)"
    )
    print(
        f"{'requests':>9} {'ff':>3} {'wall s':>8} {'sim s':>8} {'sim s/wall s':>12} "
        f"{'req/wall s':>10} {'steps':>10} {'RSS MiB':>8}"
    )
    rows = []
    for n in sizes:
        print(f"  ... {n:,} requests", end="\r", flush=True)
        r = in_subprocess(n, a.rate, True)
        rows.append(r)
        print(
            f"{n:>9} {'on':>3} {r['wall_s']:>8.2f} {r['sim_s']:>8.1f} "
            f"{r['sim_s'] / r['wall_s']:>12.1f} {n / r['wall_s']:>10.0f} {r['steps']:>10} "
            f"{r['rss_mib']:>8.0f}"
        )
        assert r["completed"] == n, "every request must complete"
    print(
        "\ndecode fast-forward on vs off, 10k requests (the baseline is the same engine "
        "stepping one step per event):"
    )
    print(
        f"{'rate':>6} {'ff on s':>8} {'ff off s':>9} {'speed-up':>8} {'events on':>10} "
        f"{'events off':>10} {'identical':>9}"
    )
    for rate in (a.rate, a.rate / 4):
        print(f"  ... {rate:g} req/s", end="\r", flush=True)
        on = in_subprocess(10_000, rate, True)
        off = in_subprocess(10_000, rate, False)
        same = on["digest"] == off["digest"]
        print(
            f"{rate:>6g} {on['wall_s']:>8.2f} {off['wall_s']:>9.2f} "
            f"{off['wall_s'] / on['wall_s']:>7.1f}x {on['runs']:>10} {off['runs']:>10} "
            f"{'yes' if same else 'NO':>9}"
        )
    per = [r["wall_s"] / r["requests"] * 1e6 for r in rows]
    print(
        "wall per request (us): "
        + ", ".join(f"{r['requests']}: {p:.0f}" for r, p in zip(rows, per, strict=True))
    )


if __name__ == "__main__":
    main()
