"""Simulation-loop CPU and per-request output against a baseline commit, in the same run.

The baseline commit's ``src`` is exported (``git archive``) into a temporary directory and
each job runs once per side in its own process (``PYTHONPATH`` selects the side), so both
are measured under the same machine load. For each job it prints the CPU seconds of the
simulation loop (``Simulator.run``, ``time.process_time``, best of ``--repeat``), the ratio,
and whether the per-request records (the CSV ``fleetsched simulate --records`` writes) are
byte-identical: every column the baseline writes, compared as text, over every baseline run,
every run of this tree and a fast-forward-off run. Columns added since the baseline (the
judge's ``quality``/``correct``, ``energy_j``) have no baseline to match; they are compared
between fast-forward on and off, ``energy_j`` within 1e-9 relative (a fast-forward run sums a
run's joules in closed form). It exits 1 if any job's records differ.

Jobs: the Azure LLM conv trace (19,366 requests) on 4 x A100-80GB / Llama-3.1-8B with
chunked prefill budget 8192, 256 seqs, round robin; the embedded default scenario (this
tree's file, on both sides); the Mooncake conversation trace (12,031 requests, prefix
hashes) on 4 x H100.

    python benchmarks/bench_speed.py [--baseline cb7d60b] [--repeat 3] [--jobs azure,default]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
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


def run_one(job: str, ff: bool, out: Path) -> dict:
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
    write_records(res.records, out)
    return {
        "cpu_s": cpu[0],
        "requests": len(requests),
        "events": sum(s.runs for s in res.engine_stats),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def columns(path: Path) -> dict[str, list[str]]:
    """The CSV at ``path`` by column, as text."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}


def digest(cols: dict[str, list[str]], names: list[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + "\n".join(cols[name]).encode())
    return h.hexdigest()


def compare(base: list[Path], new: list[Path], off: Path) -> tuple[bool, str]:
    """(records agree, what was compared): the baseline's columns byte for byte over every
    file, the newer columns between fast-forward on (``new[0]``) and off (``off``)."""
    b0, n0, o = columns(base[0]), columns(new[0]), columns(off)
    shared = [c for c in b0 if c in n0]
    if len(shared) < len(b0):
        return False, f"columns gone: {sorted(set(b0) - set(n0))}"
    same = len({digest(columns(p), shared) for p in [*base, *new, off]}) == 1
    added = [c for c in n0 if c not in b0]
    for c in added:
        if c == "energy_j":
            ok = all(
                math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12)
                for x, y in zip(n0[c], o[c], strict=True)
            )
        else:
            ok = n0[c] == o[c]
        same &= ok
    return same, f"{len(shared)} columns identical, {len(added)} newer ones ff on = off"


def export(commit: str, dest: Path) -> Path:
    """The ``src`` tree of ``commit`` under ``dest`` (for PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def in_subprocess(src: Path, job: str, out: Path, ff: bool = True) -> dict:
    """Run ``job`` on the ``src`` tree in its own process; its records CSV goes to ``out``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, __file__, "--one", job, "--out", str(out)]
    out_ = subprocess.run(
        args + ([] if ff else ["--no-ff"]), check=True, capture_output=True, text=True, env=env
    )
    return {**json.loads(out_.stdout), "csv": out}


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
    notes: list[str] = []
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
            t = Path(tmp)
            base = [in_subprocess(base_src, job, t / f"b{i}.csv") for i in range(a.repeat)]
            new = [in_subprocess(here_src, job, t / f"n{i}.csv") for i in range(a.repeat)]
            off = in_subprocess(here_src, job, t / "off.csv", ff=False)
            b = min(r["cpu_s"] for r in base)
            n = min(r["cpu_s"] for r in new)
            same, what = compare([r["csv"] for r in base], [r["csv"] for r in new], off["csv"])
            ok &= same
            notes.append(f"{job}: {what}")
            print(
                f"{job:>9} {new[0]['requests']:>9} {new[0]['events']:>8} {b:>10.3f} {n:>9.3f} "
                f"{b / n:>7.2f}x {n / new[0]['events'] * 1e6:>8.1f} "
                f"{'yes' if same else 'NO':>17}"
            )
        print("(records identical: every baseline run, every run here, and fast-forward off)")
        for line in notes:
            print("  " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
