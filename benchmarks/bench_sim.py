"""Simulator speed: 16 x H100 Llama-3.1-8B, synthetic chat (mean 1,000 in / 250 out tokens).

Prints CPU seconds per request (``time.process_time`` of the whole ``simulate``: workload
generation, simulation, summary) and simulated seconds per CPU second for 10k and 100k
requests (and 1M with --million), and the peak RSS of each run (each in its own process),
for this tree and for the baseline commit (``--baseline``, default the commit the issue-15
speed work started from), timed in the same invocation, with whether their per-request
results are identical; then decode fast-forward on vs off on the same workload.

    python benchmarks/bench_sim.py [--million] [--rate 160] [--baseline cb7d60b|none]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

import numpy as np

from bench_speed import BASELINE, export
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


_KEY = np.dtype([("first_token_s", "<f8"), ("finish_s", "<f8"), ("instance", "<i8")])


def digest(records: Iterable) -> str:
    """SHA-256 of every record's first-token time, finish time and instance, streamed in
    chunks (a list of a million tuples would add ~250 MB to the peak it measures)."""
    h = hashlib.sha256()
    it = iter(records)
    while chunk := list(islice(it, 65536)):
        rows = [(r.first_token_s, r.finish_s, r.instance) for r in chunk]
        h.update(np.array(rows, dtype=_KEY).tobytes())
    return h.hexdigest()


def one(n: int, rate: float, ff: bool) -> dict:
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = simulate(scenario(n, rate), fast_forward=ff)
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    s = res.summary
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the digest's work
    return {
        "digest": digest(res.records),
        "runs": sum(e.runs for e in res.engine_stats),
        "requests": n,
        "fast_forward": ff,
        "wall_s": wall,
        "cpu_s": cpu,
        "sim_s": s["duration_s"],
        "completed": s["completed"],
        "steps": s["engine_steps"],
        "rss_mib": rss,
        "ttft_p99": s["ttft_s"]["p99"],
    }


def in_subprocess(n: int, rate: float, ff: bool, src: Path | None = None) -> dict:
    """One run in its own process; ``src``: a fleetsched ``src`` tree to run instead."""
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(n), "--rate", str(rate)]
        + ([] if ff else ["--no-ff"]),
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout)


def sizes_table(sizes: list[int], rate: float, base_src: Path | None, base: str) -> list[dict]:
    """Each size here, then (``base_src``) on the baseline: CPU per request and peak RSS."""
    print(
        f"{'requests':>9} {'tree':>8} {'CPU s':>8} {'CPU us/req':>10} {'sim s/CPU s':>11} "
        f"{'steps':>10} {'RSS MiB':>8} {'identical':>9}"
    )
    rows = []
    for n in sizes:
        print(f"  ... {n:,} requests", end="\r", flush=True)
        r = in_subprocess(n, rate, True)
        rows.append(r)
        assert r["completed"] == n, "every request must complete"
        sides = [("this", r)]
        if base_src is not None:
            print(f"  ... {n:,} requests on {base}", end="\r", flush=True)
            sides.append((base[:8], in_subprocess(n, rate, True, base_src)))
        for name, x in sides:
            same = "yes" if x["digest"] == r["digest"] else "NO"
            print(
                f"{n:>9} {name:>8} {x['cpu_s']:>8.2f} {x['cpu_s'] / n * 1e6:>10.0f} "
                f"{x['sim_s'] / x['cpu_s']:>11.1f} {x['steps']:>10} {x['rss_mib']:>8.0f} "
                f"{same if x is not r else '':>9}"
            )
        if base_src is not None:
            b = sides[1][1]
            print(
                f"{'':>9} {'ratio':>8} {b['cpu_s'] / r['cpu_s']:>7.2f}x {'':>10} {'':>11} "
                f"{'':>10} {b['rss_mib'] / r['rss_mib']:>7.2f}x  (baseline / this tree)"
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=160.0, help="arrivals per second")
    ap.add_argument("--million", action="store_true", help="also run 1M requests")
    ap.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"commit timed beside this tree (default {BASELINE}; 'none' to skip)",
    )
    ap.add_argument("--sizes", default="10000,100000", help="request counts, comma-separated")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-ff", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.rate, not a.no_ff)))
        return
    sizes = [int(x) for x in a.sizes.split(",")] + ([1_000_000] if a.million else [])
    print(
        f"simulator: 16 x H100-SXM / Llama-3.1-8B, Poisson {a.rate:g} req/s, "
        "lognormal prompts (mean 1000) and outputs (mean 250)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base_src = None if a.baseline == "none" else export(a.baseline, Path(tmp))
        rows = sizes_table(sizes, a.rate, base_src, a.baseline)
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
    per = [r["cpu_s"] / r["requests"] * 1e6 for r in rows]
    print(
        "CPU per request (us), this tree: "
        + ", ".join(f"{r['requests']}: {p:.0f}" for r, p in zip(rows, per, strict=True))
    )


if __name__ == "__main__":
    main()
