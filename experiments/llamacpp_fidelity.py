"""The llama.cpp engine model + a calibrated profile against a real llama-server.

Starts llama-server (gemma-3-270m Q4_K_M, 4 slots x 2048 tokens, 2 threads) on 127.0.0.1,
calibrates a profile (``fleetsched calibrate``'s plan and fit), then replays small synthetic
traces open-loop against the server and simulates the same traces with the llama.cpp engine
kind and the fitted profile, and prints TTFT / TPOT / E2E percentiles and throughput, real vs
simulated. The CPU time other processes used during each run is measured (``/proc/stat``
minus the server's and this process's own time) and printed: on a shared machine it is the
first suspect of any error.

    .venv/bin/python experiments/llamacpp_fidelity.py                # ~15 min on 2 cores
    .venv/bin/python experiments/llamacpp_fidelity.py --swa-full --traces shared
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _common import RESULTS, markdown
from fleetsched.calibrate.fit import FitResult
from fleetsched.calibrate.replay import replay_trace
from fleetsched.calibrate.run import calibrate, measure, save_measurements
from fleetsched.core.config import LlamaCppConfig, SyntheticConfig
from fleetsched.engine.llamacpp import LlamaCppInstance
from fleetsched.launch import LlamaServer
from fleetsched.metrics.summary import summarize
from fleetsched.perf import get_model
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator
from fleetsched.workload.synthetic import generate

TRACES = {
    # name: synthetic workload (prompts 50-700 tokens, outputs 16-128, Poisson arrivals)
    "light": dict(num_requests=30, arrival={"rate": 0.15}),
    "medium": dict(num_requests=40, arrival={"rate": 0.3}),
    "heavy": dict(num_requests=40, arrival={"rate": 0.5}),
    "shared": dict(num_requests=40, arrival={"rate": 0.3}, system_prompt_tokens=400,
                   prompt={"kind": "uniform", "low": 50, "high": 300}),
    "multiturn": dict(num_requests=40, arrival={"rate": 0.1},
                      sessions={"turns_mean": 4, "think_time_s": 3.0},
                      prompt={"kind": "uniform", "low": 50, "high": 200}),
}  # fmt: skip
BASE = dict(prompt={"kind": "uniform", "low": 50, "high": 700},
            output={"kind": "uniform", "low": 16, "high": 128})  # fmt: skip


def workload(name: str, seed: int, n: int | None = None) -> list:
    spec = {**BASE, **TRACES[name]}
    if n is not None:
        spec["num_requests"] = n
    return list(generate(SyntheticConfig.model_validate(spec), seed))


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of this process and its children)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(v) - v[3] - v[4]) / hz
    t = os.times()
    return busy, t.user + t.system


def pid_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Others:
    """CPU seconds other processes used between start and stop."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def __enter__(self) -> Others:
        self.t0 = time.monotonic()
        self.b0, self.s0 = cpu_seconds()
        self.p0 = pid_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        b1, s1 = cpu_seconds()
        self.wall = time.monotonic() - self.t0
        self.server = pid_seconds(self.pid) - self.p0
        self.others = (b1 - self.b0) - (s1 - self.s0) - self.server
        self.others_cores = self.others / self.wall


def simulate(reqs: list, profile, engine: LlamaCppConfig) -> list:
    inst = LlamaCppInstance(0, profile, engine, get_model("gemma-3-270m"))
    return Simulator([inst], make_router("round_robin")).run(reqs)


def compare(real: list, sim: list) -> dict:
    rs, ss = summarize(real), summarize(sim)
    out = {}
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        for q in ("p50", "p90", "p99"):
            a, b = rs[metric][q], ss[metric][q]
            out[f"{metric}:{q}"] = (a, b, b / a - 1 if a else float("nan"))
    a, b = rs["throughput_req_s"], ss["throughput_req_s"]
    out["throughput_req_s"] = (a, b, b / a - 1)
    hit_r = sum(r.cached_prompt_tokens for r in real) / max(1, sum(r.prompt_tokens for r in real))
    hit_s = sum(r.cached_prompt_tokens for r in sim) / max(1, sum(r.prompt_tokens for r in sim))
    out["prefix_hit"] = (hit_r, hit_s, hit_s - hit_r)
    return out


def progress(done: int, total: int) -> None:
    print(f"\rcalibrating: experiment {done}/{total}", end="", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default="light,medium,heavy,shared,multiturn")
    ap.add_argument("--repeats", type=int, default=2, help="replays of each trace")
    ap.add_argument("--calibrate-repeats", type=int, default=2)
    ap.add_argument("--swa-full", action="store_true")
    ap.add_argument("--profile", help="use this profile instead of calibrating")
    ap.add_argument("--name", default="llamacpp_fidelity")
    ap.add_argument("--requests", type=int, help="only this many requests per trace")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    extra = ["--swa-full"] if args.swa_full else []
    engine = LlamaCppConfig(kind="llamacpp", parallel=4, ctx=8192, threads=2,
                            swa_full=args.swa_full)  # fmt: skip
    results: dict = {"swa_full": args.swa_full, "traces": {}}
    log = Path(f"/tmp/{args.name}-server.log")
    with LlamaServer(parallel=4, ctx=8192, threads=2, extra_args=extra, log_path=log) as srv:
        assert srv._proc is not None
        pid = srv._proc.pid
        if args.profile:
            from fleetsched.perf.ubatch import load_llamacpp_profile

            profile = load_llamacpp_profile(args.profile)
        else:
            with Others(pid) as o:
                m = measure(srv.url, repeats=args.calibrate_repeats, progress=progress)
            print(f"\ncalibration: {o.wall:.0f} s, other processes used {o.others_cores:.2f} cores")
            save_measurements(m, RESULTS / f"{args.name}_measurements.json")
            fit: FitResult
            fit, _ = calibrate(m, device="cpu", threads=2, swa_full=args.swa_full)
            profile = fit.profile
            (RESULTS / f"{args.name}_profile.yaml").write_text(profile.to_yaml())
            from fleetsched.cli.calibrate import print_fit

            print_fit(fit)
            results["calibration"] = {
                "others_cores": o.others_cores,
                "wall_s": o.wall,
                "rows": [
                    (r.name, r.samples, r.measured_s, r.predicted_s, r.noise_cv) for r in fit.rows
                ],
                "cache_mismatches": fit.cache_mismatches,
            }
        for name in args.traces.split(","):
            reqs = workload(name, seed=1, n=args.requests)
            sim = simulate(reqs, profile, engine)
            runs = []
            for k in range(args.repeats):
                with Others(pid) as o:
                    real = replay_trace(srv.url, reqs)
                cmp = compare(real, sim)
                runs.append({"others_cores": o.others_cores, "wall_s": o.wall, "cmp": cmp})
                shown = [m for m in cmp if m.endswith(("p50", "p99")) or m == "throughput_req_s"]
                errors = ", ".join(f"{m} {cmp[m][2]:+.0%}" for m in shown)
                print(f"{name} run {k + 1}: {o.wall:.0f} s, others {o.others_cores:.2f} cores")
                print(f"  errors: {errors}")
            results["traces"][name] = {"requests": len(reqs), "runs": runs}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    rows = []
    for name, tr in results["traces"].items():
        for key in tr["runs"][0]["cmp"]:
            vals = [r["cmp"][key] for r in tr["runs"]]
            real = [v[0] for v in vals]
            err = [v[2] for v in vals]
            unit = 1000 if key.endswith(("p50", "p90", "p99")) else 1
            rows.append([
                name, key,
                " / ".join(f"{x * unit:,.3g}" for x in real),
                f"{vals[0][1] * unit:,.3g}",
                " / ".join(f"{e:+.0%}" for e in err),
            ])  # fmt: skip
    md = markdown(["trace", "metric (ms, req/s)", "real (runs)", "simulated", "error (runs)"], rows)
    (RESULTS / f"{args.name}.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
