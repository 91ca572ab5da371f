"""Simulation-loop CPU and per-request output against a baseline commit, in the same run.

The baseline commit's ``src`` is exported (``git archive``) into a temporary directory and
each job runs once per side in its own process (``PYTHONPATH`` selects the side), so both
are measured under the same machine load. For each job it prints the CPU seconds of the
simulation loop (``Simulator.run``, ``time.process_time``, best of ``--repeat``), the ratio,
and whether the per-request records (the CSV ``fleetsched simulate --records`` writes) are
byte-identical. It exits 1 if any job's records differ.

Jobs: the Azure LLM conv trace (19,366 requests) on 4 x A100-80GB / Llama-3.1-8B with
chunked prefill budget 8192, 256 seqs, round robin; the embedded default scenario (this
tree's file, on both sides); the Mooncake conversation trace (12,031 requests, prefix
hashes) on 4 x H100.

    python benchmarks/bench_speed.py [--baseline cb7d60b] [--repeat 3] [--jobs azure,default]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
#: The commit issue 15's speed work started from.
BASELINE = "cb7d60b"

JOBS: dict[str, dict] = {
    "azure": {
        "trace": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
        "instances": 4,
        "gpu": "A100-80GB",
        "model": "Llama-3.1-8B",
        "router": "round_robin",
        "engine": {"max_num_batched_tokens": 8192, "max_num_seqs": 256},
    },
    # This tree's embedded default scenario, given as a file so both sides run the same one.
    "default": {"scenario": ROOT / "src" / "fleetsched" / "data" / "default_scenario.yaml"},
    "mooncake": {
        "trace": "mooncake_fast25/conversation_trace.jsonl",
        "instances": 4,
        "gpu": "H100-SXM",
        "model": "Llama-3.1-8B",
        "router": "round_robin",
    },
}


def run_one(job: str, ff: bool, out: Path | None) -> dict:
    """Run ``job`` in this process (whichever fleetsched is on the path)."""
    from fleetsched.cli.options import resolve_scenario
    from fleetsched.metrics.io import write_records
    from fleetsched.sim.kernel import Simulator
    from fleetsched.sim.run import simulate
    from fleetsched.workload import build_workload

    spec = dict(JOBS[job])
    trace = spec.pop("trace", None)
    path = spec.pop("scenario", None)
    sc = resolve_scenario(path, trace=TRACES / trace if trace else None, **spec)
    requests = list(build_workload(sc.workload, sc.seed))
    cpu: list[float] = []
    orig = Simulator.run

    def timed(self, *a, **k):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        try:
            return orig(self, *a, **k)
        finally:
            cpu.append(time.process_time() - t0)

    Simulator.run = timed  # type: ignore[method-assign]
    res = simulate(sc, requests=requests, fast_forward=ff)
    path = out or Path(tempfile.mkstemp(suffix=".csv")[1])
    write_records(res.records, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if out is None:
        path.unlink()
    return {
        "cpu_s": cpu[0],
        "requests": len(requests),
        "events": sum(s.runs for s in res.engine_stats),
        "digest": digest,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def export(commit: str, dest: Path) -> Path:
    """The ``src`` tree of ``commit`` under ``dest`` (for PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def in_subprocess(src: Path, job: str, ff: bool = True) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, __file__, "--one", job] + ([] if ff else ["--no-ff"])
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default=BASELINE, help="commit to compare against")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (best CPU kept)")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated: " + ", ".join(JOBS))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--no-ff", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, not a.no_ff, a.out)))
        return 0
    jobs = [j for j in a.jobs.split(",") if j]
    if not (TRACES / JOBS["azure"]["trace"]).exists():
        print(f"skipped: traces not found under {TRACES}")
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base_src = export(a.baseline, Path(tmp))
        here_src = ROOT / "src"
        print(
            f"simulation-loop CPU s (Simulator.run, best of {a.repeat}) and per-request records, "
            f"this tree vs {a.baseline} in the same run"
        )
        print(
            f"{'job':>9} {'requests':>9} {'events':>8} {'base CPU s':>10} {'new CPU s':>9} "
            f"{'speed-up':>8} {'us/event':>8} {'records identical':>17}"
        )
        for job in jobs:
            print(f"  ... {job}", end="\r", flush=True)
            base = [in_subprocess(base_src, job) for _ in range(a.repeat)]
            new = [in_subprocess(here_src, job) for _ in range(a.repeat)]
            off = in_subprocess(here_src, job, ff=False)
            b = min(r["cpu_s"] for r in base)
            n = min(r["cpu_s"] for r in new)
            digests = {r["digest"] for r in base + new + [off]}
            same = len(digests) == 1
            ok &= same
            print(
                f"{job:>9} {new[0]['requests']:>9} {new[0]['events']:>8} {b:>10.3f} {n:>9.3f} "
                f"{b / n:>7.2f}x {n / new[0]['events'] * 1e6:>8.1f} "
                f"{'yes' if same else 'NO':>17}"
            )
        print("(records identical: every baseline run, every run here, and fast-forward off)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
