"""The llama.cpp engine model + a calibrated profile against a real llama-server.

Starts llama-server (gemma-3-270m Q4_K_M, 4 slots x 2048 tokens) on 127.0.0.1, calibrates a
profile (``fleetsched calibrate``'s plan and fit), then sends small synthetic traces to the
server with ``bench`` and simulates them with the llama.cpp engine kind and the fitted
profile (``fleetsched.fidelity.run_fidelity``), and prints TTFT / TPOT / E2E percentiles,
throughput and prefix hit rate, live vs simulated. The CPU time other processes used during
each run is measured (``/proc/stat`` minus the server's and this process's own time): on a
shared machine it is the first suspect of any error.

    .venv/bin/python experiments/llamacpp_fidelity.py                  # ~20 min on 2 cores
    .venv/bin/python experiments/llamacpp_fidelity.py --swa-full --traces shared
    .venv/bin/python experiments/llamacpp_fidelity.py --threads 1 --profile p.yaml
    .venv/bin/python experiments/llamacpp_fidelity.py --calibrate-each   # ~50 min

``--calibrate-each`` calibrates again right before every live run and simulates that run with
its own profile: this machine's speed drifts (a lone decode step measured 25.8 ms during one
calibration and 33 ms on the same idle VM 25 minutes later: memory bandwidth shared with other
tenants of the host, invisible in /proc/stat). A *drift probe* (one 512-token prefill, then one
stream of 64 tokens, on slot 0) runs right after each calibration and again right after each
live run; the table prints how much the engine's speed moved in between.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, markdown
from fleetsched.bench import BenchConfig
from fleetsched.calibrate.client import session, stream_completion
from fleetsched.calibrate.run import calibrate, measure, save_measurements
from fleetsched.cli.calibrate import print_fit
from fleetsched.core.config import Scenario
from fleetsched.fidelity import run_fidelity
from fleetsched.launch import LlamaServer
from fleetsched.launch.llamacpp import raise_priority
from fleetsched.perf.ubatch import LINEAR_COEFFICIENTS, load_llamacpp_profile
from fleetsched.sim.run import simulate
from fleetsched.workload import build_workload

LENGTHS = {"prompt": {"kind": "uniform", "low": 50, "high": 700},
           "output": {"kind": "uniform", "low": 16, "high": 128}}  # fmt: skip
#: Each trace: its synthetic workload and its load, a fraction of the engine's capacity (the
#: throughput of the calibrated engine model when the same requests all arrive at once).
TRACES: dict[str, dict[str, Any]] = {
    "light": {"load": 0.4},
    "medium": {"load": 0.65},
    "heavy": {"load": 0.9},
    "shared": {"load": 0.65, "system_prompt_tokens": 400,
               "prompt": {"kind": "uniform", "low": 50, "high": 300}},
    "multiturn": {"load": 0.5, "sessions": {"turns_mean": 4, "think_time_s": 3.0},
                  "prompt": {"kind": "uniform", "low": 50, "high": 200}},
}  # fmt: skip


def scenario(
    trace: str, profile: Path, threads: int, swa_full: bool, n: int, rate: float
) -> Scenario:
    syn = {**LENGTHS, **TRACES[trace], "num_requests": n, "arrival": {"rate": rate}}
    del syn["load"]
    return Scenario.model_validate(
        {
            "name": f"llamacpp-{trace}",
            "seed": 1,
            "workload": {"synthetic": syn},
            "cluster": [
                {
                    "device": "cpu",
                    "model": "gemma-3-270m",
                    "profile": str(profile),
                    "engine": {
                        "kind": "llamacpp",
                        "parallel": 4,
                        "ctx": 8192,
                        "threads": threads,
                        "swa_full": swa_full,
                    },
                }
            ],
        }
    )


def capacity(sc: Scenario) -> float:
    """Arrivals per second (sessions for multi-turn) that the simulated engine sustains: its
    request throughput when every request of ``sc``'s trace arrives at once, divided by the
    trace's mean turns per session. The trace itself is kept (built at ``sc``'s rate, then
    re-timed): a trace generated at a high rate instead would hold mostly first turns, whose
    prompts are short (that mistake made the multi-turn run of the README 3x over capacity)."""
    reqs = list(build_workload(sc.workload, sc.seed))
    turns = len(reqs) / len({r.session_id or r.id for r in reqs})
    res = simulate(sc, requests=[dataclasses.replace(r, arrival_s=0.0) for r in reqs])
    return float(res.summary["throughput_req_s"]) / turns


def weighted(profiles: list[Path], weights: list[float], out: Path) -> Path:
    """The profile whose every time coefficient is the ``weights``-weighted sum of the
    ``profiles``' (the first one's other fields), written to ``out``."""
    ps = [load_llamacpp_profile(p) for p in profiles]
    upd: dict[str, Any] = {
        n: sum(w * getattr(p, n) for p, w in zip(ps, weights, strict=True))
        for n in (*LINEAR_COEFFICIENTS, "request_s")
    }
    tables = zip(*(p.small_ubatch_s for p in ps), strict=True)
    upd["small_ubatch_s"] = [sum(w * v for v, w in zip(vs, weights, strict=True)) for vs in tables]
    out.write_text(ps[0].model_copy(update=upd).to_yaml())
    return out


def scaled(profile: Path, k: float) -> Path:
    """``profile`` with every time coefficient multiplied by ``k`` (a uniformly slower
    engine), written to the temporary directory."""
    return weighted([profile], [k], Path(tempfile.gettempdir()) / f"{profile.stem}_x{k:g}.yaml")


def sensitivity(args: argparse.Namespace, tag: str) -> None:
    """Simulate the traces of a finished run with the profile scaled by each factor: how much
    of a live-vs-simulated gap a uniformly slower engine explains."""
    out = json.loads((RESULTS / f"{tag}.json").read_text())
    for name, rate in out["rates"].items():
        for k in [float(x) for x in args.sensitivity.split(",")]:
            prof = scaled(args.profile, k)
            sc = scenario(name, prof, args.threads, args.swa_full, args.requests, rate["rate"])
            s = simulate(sc).summary
            cells = "  ".join(
                f"{m.upper()} " + "/".join(f"{s[m + '_s'][q]:.1f}" for q in ("p50", "p90", "p99"))
                for m in ("ttft", "e2e")
            )
            print(f"{name} x{k:g}: {cells} s, TPOT p50 {s['tpot_s']['p50'] * 1e3:.0f} ms")


def _busy_s() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _pid_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Others:
    """Cores other processes used (on average) between enter and exit."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid

    def __enter__(self) -> Others:
        t = os.times()
        self.t0, self.b0, self.p0 = time.monotonic(), _busy_s(), _pid_s(self.pid)
        self.s0 = t.user + t.system
        return self

    def __exit__(self, *exc: object) -> None:
        t = os.times()
        self.wall = time.monotonic() - self.t0
        mine = t.user + t.system - self.s0 + _pid_s(self.pid) - self.p0
        self.cores = (_busy_s() - self.b0 - mine) / self.wall


def drift_probe(url: str, seed: int) -> dict[str, float]:
    """One 512-token prefill then one stream of 64 tokens on slot 0: seconds to the first
    token and the median inter-token gap (the same probe before and after a run)."""

    async def go() -> Any:
        rng = np.random.default_rng(seed)
        async with session() as http:
            prompt = rng.integers(1000, 200_000, 512).tolist()
            return await stream_completion(http, url, prompt, 64, id_slot=0, cache_prompt=False)

    r = asyncio.run(go())
    gaps = np.diff(r.token_s[1:])
    return {"ttft_s": r.token_s[0] - r.send_s, "gap_s": float(np.median(gaps))}


def drift_corrected(
    sc: Scenario, profile: Path, drift: dict[str, float], live: dict[str, Any]
) -> dict[str, float]:
    """Re-simulate ``sc`` with ``profile`` scaled to the engine's speed half-way through the
    run (the drift probes bracket it: the mean of the prefill and decode drifts, halved) and
    give :func:`errors` (and the ``scale``)."""
    k = 1 + (drift["prefill"] + drift["decode"]) / 4
    return {"scale": k, **errors(sc, scaled(profile, k), live)}


def show(label: str, errs: dict[str, float]) -> None:
    print(f"  simulated {label}: " + ", ".join(f"{k} {v:+.0%}" for k, v in errs.items()))


def errors(sc: Scenario, profile: Path, live: dict[str, Any]) -> dict[str, float]:
    """(live - sim) / sim of TTFT, TPOT and E2E at p50 / p90 / p99 (keyed like ``ttft_p50``)
    when ``sc`` is simulated with ``profile``."""
    s = simulate(scenario_with(sc, profile)).summary
    return {
        f"{m}_{q}": live[m + "_s"][q] / s[m + "_s"][q] - 1
        for m in ("ttft", "tpot", "e2e")
        for q in ("p50", "p90", "p99")
    }


def scenario_with(sc: Scenario, profile: Path) -> Scenario:
    """``sc`` with its one instance group reading ``profile``."""
    group = sc.cluster[0].model_copy(update={"profile": str(profile)})
    return sc.model_copy(update={"cluster": [group]})


def calibrate_on(srv: LlamaServer, args: argparse.Namespace, path: Path) -> tuple[Any, dict]:
    """Calibrate on ``srv``, write the profile to ``path`` (and the measurements beside it,
    and the profile fitted to them without ``kv_read_s``, see :func:`without_kv_read`);
    (fit, drift probe after it)."""
    m = measure(srv.url, repeats=args.calibrate_repeats, progress=progress)
    print()
    save_measurements(m, path.with_name(path.stem + "_measurements.json"))
    kw = {"device": "cpu", "threads": args.threads, "swa_full": args.swa_full}
    fit, _ = calibrate(m, **kw)
    path.write_text(fit.profile.to_yaml())
    old, _ = calibrate(m, held_at_zero=("kv_read_s",), **kw)
    no_reads_path(path).write_text(old.profile.to_yaml())
    return fit, drift_probe(srv.url, 7)


def no_reads_path(profile: Path) -> Path:
    return profile.with_name(profile.stem + "_no_kv_read.yaml")


def without_kv_read(sc: Scenario, profile: Path, live: dict[str, Any]) -> dict[str, float]:
    """:func:`errors` with the profile fitted to the same measurements without ``kv_read_s``
    (decode attention priced like prefill attention, per pair): the model this experiment
    used before that coefficient existed, on the same live run."""
    return errors(sc, no_reads_path(profile), live)


def progress(done: int, total: int) -> None:
    print(f"\rcalibrating: experiment {done}/{total}", end="", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--traces", default="heavy,shared,multiturn,medium,light")
    ap.add_argument("--repeats", type=int, default=2, help="live runs of each trace")
    ap.add_argument("--calibrate-repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--swa-full", action="store_true")
    ap.add_argument("--profile", type=Path, help="use this profile instead of calibrating")
    ap.add_argument("--requests", type=int, default=100, help="requests per trace")
    ap.add_argument("--rate-scale", type=float, default=1.0, help="multiply arrival rates")
    ap.add_argument(
        "--priority",
        type=int,
        default=10,
        help="raise the server's and this "
        "process's scheduling priority (root only): less noise from other jobs",
    )
    ap.add_argument("--name", default="llamacpp_fidelity")
    ap.add_argument(
        "--calibrate-each",
        action="store_true",
        help="calibrate right before every live run (the machine's speed drifts), with a drift "
        "probe after the calibration and after the run",
    )
    ap.add_argument(
        "--calibrate-after",
        action="store_true",
        help="with --calibrate-each: calibrate again on a fresh server after every live run "
        "and simulate the run with that profile and with the mean of both",
    )
    ap.add_argument(
        "--sensitivity",
        help="only simulate the recorded traces with --profile "
        "scaled by these factors, e.g. 1,1.1,1.2",
    )
    args = ap.parse_args()
    tag = f"{args.name}{'_swafull' if args.swa_full else ''}_t{args.threads}"
    if args.sensitivity:
        return sensitivity(args, tag)
    raise_priority(args.priority)
    RESULTS.mkdir(exist_ok=True)
    extra = ["--swa-full"] if args.swa_full else []
    out: dict[str, Any] = {
        "swa_full": args.swa_full,
        "threads": args.threads,
        "rate_scale": args.rate_scale,
        "traces": {},
    }
    log = Path(f"/tmp/{tag}-server.log")

    def server() -> LlamaServer:
        # A fresh server for every run: a run must not find the previous one's prompts in
        # the slots or the host-RAM cache (the simulation starts cold too).
        return LlamaServer(
            parallel=4,
            ctx=8192,
            threads=args.threads,
            extra_args=extra,
            log_path=log,
            priority=args.priority,
        )

    if args.calibrate_each:
        profile_path = RESULTS / f"{tag}_profile.yaml"  # each run writes its own
    elif args.profile:
        profile_path = args.profile
        load_llamacpp_profile(profile_path)
    else:
        with server() as srv:
            assert srv._proc is not None
            with Others(srv._proc.pid) as o:
                m = measure(srv.url, repeats=args.calibrate_repeats, progress=progress)
        print(f"\ncalibration: {o.wall:.0f} s, other processes used {o.cores:.2f} cores")
        save_measurements(m, RESULTS / f"{tag}_measurements.json")
        fit, _ = calibrate(m, device="cpu", threads=args.threads, swa_full=args.swa_full)
        profile_path = RESULTS / f"{tag}_profile.yaml"
        profile_path.write_text(fit.profile.to_yaml())
        print_fit(fit)
        out["calibration"] = {
            "others_cores": o.cores,
            "wall_s": o.wall,
            "rows": [
                [r.name, r.samples, r.measured_s, r.predicted_s, r.noise_cv, r.fitted]
                for r in fit.rows
            ],
            "cache_mismatches": fit.cache_mismatches,
        }
    for name in args.traces.split(","):
        runs = []
        for k in range(args.repeats):
            drift: dict[str, Any] = {}
            if args.calibrate_each:
                profile_path = RESULTS / f"{tag}_{name}_{k + 1}_profile.yaml"
                with server() as srv:
                    fit, drift["before"] = calibrate_on(srv, args, profile_path)
                errs = sorted(abs(r.error) for r in fit.rows if r.fitted)
                print(f"{name} run {k + 1}: calibrated, median |error| {errs[len(errs) // 2]:.1%}")
            setup = (name, profile_path, args.threads, args.swa_full, args.requests)
            mu = capacity(scenario(*setup, 0.1))
            rate = TRACES[name]["load"] * mu * args.rate_scale
            sc = scenario(*setup, rate)
            print(f"{name}: capacity {mu:.3f}/s, arrivals at {rate:.3f}/s")
            out.setdefault("rates", {})[name] = {"capacity": mu, "rate": rate}
            with server() as srv:
                assert srv._proc is not None
                with Others(srv._proc.pid) as o:
                    res = run_fidelity(sc, BenchConfig(target=srv.url, timeout_s=1800))
                if args.calibrate_each:
                    drift["after"] = drift_probe(srv.url, 7)
            rows = {r.label: (r.live, r.simulated, r.rel_err) for r in res.rows}
            run: dict[str, Any] = {"others_cores": o.cores, "wall_s": o.wall, "rows": rows}
            run.update(capacity=mu, rate=rate)
            if drift:
                b, a = drift["before"], drift["after"]
                run["drift"] = {
                    "prefill": a["ttft_s"] / b["ttft_s"] - 1,
                    "decode": a["gap_s"] / b["gap_s"] - 1,
                }
                print(
                    f"  drift from calibration to after the run: prefill "
                    f"{run['drift']['prefill']:+.0%}, decode step {run['drift']['decode']:+.0%}"
                )
                run["profile"] = profile_path.name
                run["corrected"] = fix = drift_corrected(sc, profile_path, run["drift"], res.live)
                mid_run = {key: v for key, v in fix.items() if key != "scale"}
                show(f"at the mid-run speed (profile x {fix['scale']:.3f})", mid_run)
                run["without_kv_read"] = old = without_kv_read(sc, profile_path, res.live)
                show("without kv_read_s", old)
                if args.calibrate_after:
                    after = profile_path.with_name(profile_path.stem + "_after.yaml")
                    with server() as srv:
                        calibrate_on(srv, args, after)
                    # The engine's speed half-way between the two calibrations.
                    mean = after.with_name(after.stem + "_mean.yaml")
                    mid = weighted([profile_path, after], [0.5, 0.5], mean)
                    run["calibrated_after"] = aft = errors(sc, after, res.live)
                    run["mean_of_both"] = both = errors(sc, mid, res.live)
                    show("with the calibration after", aft)
                    show("with the mean of both", both)
            runs.append(run)
            errs = ", ".join(
                f"{lbl} {v[2]:+.0%}"
                for lbl, v in rows.items()
                if lbl.startswith(("TTFT", "E2E", "prefix"))
            )
            print(f"{name} run {k + 1}: {o.wall:.0f} s, others used {o.cores:.2f} cores; {errs}")
        out["traces"][name] = runs
        write(out, tag)  # after every trace: a cut-off run keeps what it measured


def write(out: dict[str, Any], tag: str) -> None:
    """The JSON of every figure and the markdown table, in experiments/results/."""
    (RESULTS / f"{tag}.json").write_text(json.dumps(out, indent=1))
    table = []
    for name, runs in out["traces"].items():
        for label in runs[0]["rows"]:
            vals = [r["rows"][label] for r in runs]
            scale = 1000 if label.startswith(("TTFT", "TPOT", "E2E")) else 1
            table.append(
                [
                    name,
                    label,
                    " / ".join(f"{v[0] * scale:,.3g}" for v in vals),
                    f"{vals[0][1] * scale:,.3g}",
                    " / ".join(f"{v[2]:+.0%}" for v in vals),
                ]
            )
    drifts = [r["drift"] for runs in out["traces"].values() for r in runs if "drift" in r]
    if drifts:
        table.append(
            [
                "(engine speed drift, prefill / decode)",
                "",
                " ; ".join(f"{d['prefill']:+.0%} / {d['decode']:+.0%}" for d in drifts),
                "",
                "",
            ]
        )
    table.append(
        [
            "(others' CPU, cores)",
            "",
            " / ".join(f"{r['others_cores']:.2f}" for runs in out["traces"].values() for r in runs),
            "",
            "",
        ]
    )
    md = markdown(
        ["trace", "figure (ms, req/s)", "live (runs)", "simulated", "(live − sim) / sim"], table
    )
    (RESULTS / f"{tag}.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
