"""Shared helpers of the experiment scripts: trace scenarios, tables, result files."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from fleetsched.cli.options import resolve_scenario
from fleetsched.core.config import Scenario, SLOClass
from fleetsched.metrics.summary import summary_to_json

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
RESULTS = Path(__file__).parent / "results"


def trace_scenario(
    trace: str,
    instances: int,
    *,
    ttft_s: float,
    tpot_s: float = 0.1,
    requests: int | None = None,
    gpu: str | None = None,
    **kw: Any,
) -> Scenario:
    sc = resolve_scenario(
        None, trace=TRACES / trace, instances=instances, requests=requests, gpu=gpu
    )
    return Scenario.model_validate(
        sc.model_copy(
            update={"slo_classes": {"default": SLOClass(ttft_s=ttft_s, tpot_s=tpot_s)}, **kw}
        ).model_dump()
    )


def ms(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1000:,.0f}"


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.1f}%"


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, data: Any, table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(summary_to_json(data))
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *a: object) -> None:
        print(f"\n(wall {time.perf_counter() - self.t0:.0f} s)")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)


# --------------------------------------------------------------------------- engine experiments
VIDUR = "vidur/processed_traces"
LENGTH_TRACES = {
    "sharegpt": f"{VIDUR}/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "arxiv": f"{VIDUR}/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
}


def length_trace_scenario(
    trace: str,
    rate: float,
    *,
    requests: int,
    gpu: str,
    ttft_s: float,
    tpot_s: float,
    model: str = "Llama-3.1-8B",
    instances: int = 1,
    seed: int = 0,
) -> Scenario:
    """A length-only trace (a Vidur stats CSV, by key of ``LENGTH_TRACES`` or a path under
    ``TRACES``) with Poisson arrivals at ``rate`` req/s, its first ``requests`` rows, on
    ``instances`` x ``gpu``, one SLO class."""
    from fleetsched.core.config import InstanceGroup, TransformConfig, WorkloadConfig

    path = TRACES / LENGTH_TRACES.get(trace, trace)
    return Scenario(
        name=f"{trace}@{rate:g}",
        seed=seed,
        workload=WorkloadConfig(
            trace=str(path), generated_rate=rate, transforms=TransformConfig(first_n=requests)
        ),
        cluster=[InstanceGroup(gpu=gpu, model=model, count=instances)],
        slo_classes={"default": SLOClass(ttft_s=ttft_s, tpot_s=tpot_s)},
    )


def fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{nd}f}"
