"""Cost of per-instance sampling (queue, running, KV use) for the report's time series.

The simulator benchmark's workload (16 x H100, 10k requests, Poisson 160 req/s) is run:

- ``base``: the code without the sampler (a temporary git worktree of ``--baseline``; by
  default ``main`` while main has no sampler, else the commit before the sampler was
  added), the reference;
- ``off``: this tree with sampling off (must stay within 5 % of ``base``);
- ``on 1s`` and ``on 0.1s``: this tree sampling every 1 s and every 0.1 s of simulated time.

Each run is its own process; the variants are interleaved over ``--rounds`` rounds. The
best (minimum) wall and CPU seconds of each are printed with their ratio to ``base``: on a
shared machine the minimum is the steadiest estimate of a run's own cost (as ``timeit``
reports), the median is printed beside it. Sampling on and off must give the same
per-request results (and ``base`` too when it differs from this tree only by the sampler).

    python benchmarks/bench_sampling.py [--rounds 3] [--requests 10000] [--baseline REF]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLER = "src/fleetsched/sim/sampler.py"


def default_baseline() -> str:
    """``main`` while it has no sampler, else the commit before the sampler was added."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)

    if git("cat-file", "-e", f"main:{SAMPLER}").returncode != 0:
        return "main"
    added = git("log", "--diff-filter=A", "--format=%H", "--", SAMPLER).stdout.split()
    return f"{added[-1]}^" if added else "main"


def one(n: int, interval: float | None) -> dict:
    import fleetsched
    from bench_sim import scenario
    from fleetsched.sim.run import simulate

    sc = scenario(n, 160.0)
    c0, t0 = time.process_time(), time.perf_counter()
    res = simulate(sc) if interval is None else simulate(sc, sample_interval_s=interval)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    digest = hashlib.sha256(
        repr([(r.first_token_s, r.finish_s, r.instance) for r in res.records]).encode()
    ).hexdigest()
    series = getattr(res, "timeseries", None)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "digest": digest,
        "samples": 0 if series is None else int(series.t_s.size),
        "code": str(Path(fleetsched.__file__).parents[1]),
    }


def child(src: Path, n: int, interval: float | None) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"}
    args = [sys.executable, __file__, "--one", str(n)]
    if interval is not None:
        args += ["--interval", str(interval)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--baseline", default=None, help="git ref of the reference (see above)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.interval)))
        return 0
    a.baseline = a.baseline or default_baseline()
    with tempfile.TemporaryDirectory(prefix="fleetsched-base-") as tmp:
        base = Path(tmp) / "base"
        made = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), a.baseline],
            capture_output=True,
            text=True,
        )
        variants: dict[str, tuple[Path, float | None]] = {
            "off": (REPO / "src", None),
            "on 1s": (REPO / "src", 1.0),
            "on 0.1s": (REPO / "src", 0.1),
        }
        if made.returncode == 0:
            variants = {"base": (base / "src", None), **variants}
        else:
            print(f"no baseline ({a.baseline} not checked out: {made.stderr.strip()})")
        try:
            runs: dict[str, list[dict]] = {k: [] for k in variants}
            for _ in range(a.rounds):
                for name, (src, interval) in variants.items():
                    runs[name].append(child(src, a.requests, interval))
        finally:
            if made.returncode == 0:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                    check=False,
                )
    print(
        f"sampling cost: 16 x H100, {a.requests:,} requests, Poisson 160 req/s; best (min) of "
        f"{a.rounds} runs each, one process per run, the median beside it"
    )
    ref = "base" if "base" in runs else "off"
    if ref == "base":
        assert runs["base"][0]["code"] == str(base / "src"), "the baseline ran this tree's code"

    def best(name: str, key: str) -> float:
        return min(r[key] for r in runs[name])

    print(
        f"{'variant':>8} {'wall s':>7} {'CPU s':>7} {'wall/' + ref:>9} {'CPU/' + ref:>9} "
        f"{'median wall':>11} {'median CPU':>10} {'samples':>8}"
    )
    digests: dict[str, set[str]] = {}
    for name, rs in runs.items():
        wall, cpu = best(name, "wall_s"), best(name, "cpu_s")
        digests[name] = {r["digest"] for r in rs}
        print(
            f"{name:>8} {wall:>7.2f} {cpu:>7.2f} {wall / best(ref, 'wall_s'):>9.3f} "
            f"{cpu / best(ref, 'cpu_s'):>9.3f} {statistics.median(r['wall_s'] for r in rs):>11.2f} "
            f"{statistics.median(r['cpu_s'] for r in rs):>10.2f} {rs[0]['samples']:>8}"
        )
    mine = set().union(*(d for k, d in digests.items() if k != "base"))
    ok = len(mine) == 1
    print(f"identical per-request results, sampling off and on: {'yes' if ok else 'NO'}")
    if ref == "base":
        same = digests["base"] == mine
        print(
            f"baseline {a.baseline} gives the same results: "
            + ("yes" if same else "no (it differs from this tree in more than the sampler)")
        )
        for key, label in (("wall_s", "wall"), ("cpu_s", "CPU")):
            r = best("off", key) / best("base", key)
            verdict = "within" if r <= 1.05 else "OVER"
            print(f"sampling off vs base, {label}: x{r:.3f} ({verdict} the 5 % budget)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
