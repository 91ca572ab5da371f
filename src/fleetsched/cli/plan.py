"""``fleetsched plan``: the cheapest fleet that meets an SLO on a workload."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import ScenarioOpt, SeedOpt, resolve_scenario
from fleetsched.core.config import (
    ArrivalConfig,
    LengthConfig,
    Scenario,
    SLOClass,
    SyntheticConfig,
    WorkloadConfig,
)
from fleetsched.errors import InputError
from fleetsched.metrics.summary import _jsonable
from fleetsched.metrics.table import fmt_pct
from fleetsched.plan import PlanResult, frontier, load_prices, parse_slo, plan_fleet

EXAMPLES = """
Examples:

  fleetsched plan --slo 'ttft_p99<2s,tpot_p99<0.1s' --rate 40 --model Llama-3.1-70B
  --gpus h100-sxm,a100-80gb,l40s --tp 1,2,4,8

  fleetsched plan --slo "ttft_p99<5s" --trace azure_conv.csv
  --model Llama-3.1-8B --gpus h100-sxm,l40s --tp 1,2 --prices my_prices.yaml --ray
"""

Opt = typer.Option


def rate_workload(rate: float, duration_s: float) -> WorkloadConfig:
    """Poisson arrivals at ``rate`` req/s for ``duration_s``: chat-like lengths, no sessions."""
    return WorkloadConfig(
        synthetic=SyntheticConfig(
            num_requests=max(1, math.ceil(rate * duration_s)),
            arrival=ArrivalConfig(kind="poisson", rate=rate),
            prompt=LengthConfig(kind="lognormal", mean=1000, sigma=0.8, max=8192),
            output=LengthConfig(kind="lognormal", mean=250, sigma=0.8, max=2048),
        )
    )


def plan_base(
    scenario: Path | None,
    trace: Path | None,
    rate: float | None,
    duration_s: float,
    router: str | None,
    seed: int | None,
) -> Scenario:
    if (trace is None) == (rate is None) and scenario is None:
        raise InputError("give the workload as --rate R or --trace FILE (or a --scenario)")
    if trace is not None and rate is not None:
        raise InputError("--rate and --trace are alternatives; use --rate-scale in a scenario")
    if rate is not None and not rate > 0:
        raise InputError("--rate must be > 0")
    sc = resolve_scenario(scenario, trace=trace, router=router, seed=seed)
    if scenario is None and trace is None:
        sc = sc.model_copy(update={"workload": rate_workload(rate, duration_s), "name": "plan"})
    elif rate is not None:
        syn = sc.workload.synthetic
        if syn is None:
            raise InputError(
                "--rate applies to a synthetic workload; this scenario replays a trace"
            )
        sc = sc.model_copy(
            update={
                "workload": sc.workload.model_copy(
                    update={
                        "synthetic": syn.model_copy(
                            update={"arrival": syn.arrival.model_copy(update={"rate": rate})}
                        )
                    }
                )
            }
        )
    if scenario is None:
        # The SLO clauses decide; per-request attainment uses these loose defaults.
        sc = sc.model_copy(update={"slo_classes": {"default": SLOClass()}})
    return Scenario.model_validate(sc.model_dump())


def plan_tables(result: PlanResult, clause_label: str, clause: Any) -> tuple[Table, Table]:
    cand = Table(title="per GPU and TP: fewest replicas meeting the SLO")
    for h in ("GPU", "TP", "replicas", "GPUs", "$/hour", f"{clause_label} s", "simulated", "note"):
        cand.add_column(h, justify="left" if h in ("GPU", "note") else "right")
    for c in result.candidates:
        p = c.probes.get(c.hi) if c.hi is not None else None
        cand.add_row(
            c.gpu,
            str(c.tp),
            str(c.hi) if c.hi else "-",
            str(c.hi * c.tp) if c.hi else "-",
            f"{c.cost(c.hi):,.2f}" if c.hi else "-",
            f"{clause.observed(p.summary):.3f}" if p else "-",
            str(len(c.probes)),
            c.stopped if not c.hi else ("chosen" if c is result.best else ""),
        )
    fr = Table(title=f"cost vs {clause_label} frontier (simulated fleets)")
    for h in ("fleet", "$/hour", f"{clause_label} s", "SLO att.", "meets SLO"):
        fr.add_column(h, justify="left" if h == "fleet" else "right")
    for p in frontier(result.probes, clause):
        fr.add_row(
            f"{p.count} x {p.gpu} tp{p.tp}",
            f"{p.cost_per_h:,.2f}",
            f"{clause.observed(p.summary):.3f}",
            fmt_pct(p.summary.get("slo_attainment")),
            "yes" if p.meets else "no",
        )
    return cand, fr


def plan_json(result: PlanResult, slo: str) -> dict[str, Any]:
    b = result.best
    return _jsonable(
        {
            "slo": slo,
            "choice": None
            if b is None
            else {
                "gpu": b.gpu,
                "tp": b.tp,
                "replicas": b.hi,
                "gpus": b.hi * b.tp,
                "cost_per_hour": b.cost(b.hi),
            },
            "verified": result.verified,
            "verification": result.verification,
            "candidates": [
                {
                    "gpu": c.gpu,
                    "tp": c.tp,
                    "price_per_gpu_hour": c.price,
                    "min_replicas_bound": c.bounds.min_replicas if c.bounds.feasible else None,
                    "replicas": c.hi,
                    "note": c.stopped,
                    "probes": [
                        {
                            "replicas": p.count,
                            "cost_per_hour": p.cost_per_h,
                            "meets": p.meets,
                            "summary": p.summary,
                        }
                        for p in sorted(c.probes.values(), key=lambda p: p.count)
                    ],
                }
                for c in result.candidates
            ],
        }
    )


@app.command(epilog=EXAMPLES)
def plan(
    slo: Annotated[str, Opt(help="Clauses, e.g. 'ttft_p99<2s,tpot_p99<100ms,attainment>=0.99'.")],
    model: Annotated[str, Opt(help="Model to serve, e.g. Llama-3.1-70B.")],
    gpus: Annotated[str, Opt(help="GPU kinds to consider, comma-separated.")] = (
        "h100-sxm,a100-80gb,l40s"
    ),
    tp: Annotated[str, Opt("--tp", help="Tensor-parallel degrees to consider.")] = "1,2,4,8",
    rate: Annotated[float | None, Opt(help="Poisson workload at R req/s.")] = None,
    duration: Annotated[float, Opt(help="Seconds of --rate workload.")] = 60.0,
    trace: Annotated[Path | None, Opt(help="Replay this trace instead.")] = None,
    scenario: ScenarioOpt = None,
    router: Annotated[str | None, Opt(help="Routing policy.")] = None,
    prices: Annotated[Path | None, Opt(help="YAML prices: {GPU: USD per GPU-hour}.")] = None,
    max_replicas: Annotated[int, Opt(help="Largest replica count to try.")] = 256,
    seed: SeedOpt = None,
    jobs: Annotated[int, Opt(help="Parallel processes or Ray CPUs (default: CPU count).")] = 0,
    ray: Annotated[bool, Opt("--ray", help="Simulate on Ray.")] = False,
    ray_address: Annotated[str | None, Opt(help="Ray cluster address.")] = None,
    cache: Annotated[Path | None, Opt(help="Cache folder for simulated fleets.")] = None,
    summary_json: Annotated[Path | None, Opt(help="Write the plan as JSON.")] = None,
) -> None:
    """Find the cheapest GPU kind x TP x replica count that meets every SLO clause."""
    clauses = parse_slo(slo)
    try:
        tps = sorted({int(x) for x in tp.split(",") if x.strip()})
    except ValueError:
        raise InputError(f"--tp: {tp!r} is not a list of integers") from None
    kinds = [g.strip() for g in gpus.split(",") if g.strip()]
    if not tps or not kinds:
        raise InputError("--gpus and --tp need at least one value each")
    table = load_prices(prices)
    base = plan_base(scenario, trace, rate, duration, router, seed)

    def on_round(i: int, n: int) -> None:
        err_console.print(f"round {i}: simulated {n} fleets", highlight=False)

    result = plan_fleet(
        base,
        clauses,
        model=model,
        gpus=kinds,
        tps=tps,
        prices=table,
        max_replicas=max_replicas,
        jobs=jobs,
        ray=ray or ray_address is not None,
        ray_address=ray_address,
        cache_dir=cache,
        on_round=on_round,
    )
    main = next((c for c in clauses if c.stat is not None), clauses[0])
    cand, fr = plan_tables(result, main.label, main)
    console.print(cand)
    console.print(fr)
    b = result.best
    if b is None:
        console.print(f"no fleet meets {slo} within {max_replicas} replicas")
    else:
        v = result.verification
        fewer = (
            f"{v['one_fewer']} replicas miss it"
            if v.get("one_fewer_meets") is False
            else "1 replica is the minimum"
        )
        console.print(
            f"choice: {b.hi} x {b.gpu} tp{b.tp} = {b.hi * b.tp} GPUs, "
            f"${b.cost(b.hi):,.2f}/hour; verified: re-simulated it meets {slo}, {fewer}"
            if result.verified
            else f"choice: {b.hi} x {b.gpu} tp{b.tp} (NOT verified: {v})",
            highlight=False,
        )
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(plan_json(result, slo), indent=2, sort_keys=True) + "\n")
    if b is None:
        raise typer.Exit(1)
