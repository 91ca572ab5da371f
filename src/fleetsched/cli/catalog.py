"""``fleetsched list gpus|cpus|models|numerics|policies``: every choice a scenario can name,
with its key figures, read from the catalogs and registries themselves."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fleetsched.cli.app import app, console
from fleetsched.engine.context_switch import CONTEXT_SWITCHES
from fleetsched.engine.determinism import DETERMINISM_MODES
from fleetsched.errors import InputError
from fleetsched.perf.cpu import CPU_ALIASES, CPUS
from fleetsched.perf.hardware import GPU_ALIASES, GPUS, GiB
from fleetsched.perf.kv_compression import KV_LAYOUTS
from fleetsched.perf.models import MODEL_ALIASES, MODELS
from fleetsched.perf.precision import (
    DTYPE_NOTES,
    DTYPES,
    FP8_ATTENTION_DEQUANT,
    IN_KERNEL_DEQUANT,
    KV_DTYPES,
    WEIGHT_BYTES,
    kv_bytes_per_value,
)
from fleetsched.policies.params import REQUIRED, policy_params
from fleetsched.sim.check import POLICY_KINDS

list_app = typer.Typer(
    help="List the GPUs, CPUs, models and policies a scenario can name, with their key figures.",
    no_args_is_help=True,
)
app.add_typer(list_app, name="list")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _aliases(table: dict[str, str], name: str) -> list[str]:
    return sorted(k for k, v in table.items() if v == name)


def _emit(rows: list[dict[str, Any]], table: Table, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(table)


@list_app.command("gpus")
def gpus(as_json: JsonOpt = False) -> None:
    """GPUs of the hardware catalog: memory, bandwidth, dense peaks by dtype, links, hosts."""
    rows = [
        {
            "name": g.name,
            "memory_gib": g.mem_bytes / GiB,
            "mem_bw_tb_s": g.mem_bw_bytes_s / 1e12,
            "bf16_tflops": g.bf16_flops / 1e12,
            "fp8_tflops": g.fp8_flops / 1e12,
            "int8_tops": g.int8_ops / 1e12,
            "int4_tops": g.int4_ops / 1e12,
            "host_mem_bw_gb_s": g.host_mem_bw_bytes_s / 1e9,
            "host_cpu_tflops": g.host_cpu_flops / 1e12,
            "host_mem_gib": g.host_mem_bytes / GiB,
            "interconnect_gb_s": g.interconnect_bw_bytes_s / 1e9,
            "host_link_gb_s": g.host_link_bw_bytes_s / 1e9,
            "gpus_per_node": g.gpus_per_node,
            "aliases": _aliases(GPU_ALIASES, g.name),
        }
        for g in GPUS.values()
    ]
    t = Table(title="GPUs (--gpu, cluster[].gpu)", title_justify="left")
    t.add_column("name", no_wrap=True)
    for header in (
        "memory\nGiB",
        "memory\nTB/s",
        "BF16\nTFLOPS",
        "FP8\nTFLOPS",
        "INT8\nTOPS",
        "INT4\nTOPS",
        "GPU link\nGB/s",
        "GPUs\n/node",
        "host\nGB/s",
    ):
        t.add_column(header, justify="right")
    for r in rows:
        t.add_row(
            r["name"],
            f"{r['memory_gib']:.0f}",
            f"{r['mem_bw_tb_s']:.2f}",
            f"{r['bf16_tflops']:,.0f}",
            *(f"{r[k]:,.0f}" if r[k] else "-" for k in ("fp8_tflops", "int8_tops", "int4_tops")),
            f"{r['interconnect_gb_s']:.0f}",
            str(r["gpus_per_node"]),
            f"{r['host_mem_bw_gb_s']:.0f}" if r["host_mem_bw_gb_s"] else "-",
        )
    t.caption = (
        "dense tensor-core peaks ('-': none; T4's BF16 column is FP16); GPU link: GPU-to-GPU "
        "bandwidth per direction (NVLink, Infinity Fabric or PCIe); host: one GPU's share of "
        "its server's DRAM bandwidth, for CPU offload"
    )
    t.caption_justify = "left"
    _emit(rows, t, as_json)


@list_app.command("cpus")
def cpus(as_json: JsonOpt = False) -> None:
    """CPUs of the catalog (devices of llamacpp engines): cores, FP32 peak, memory bandwidth."""
    rows = [
        {
            "name": c.name,
            "cores": c.cores,
            "fp32_gflops_per_core": c.fp32_flops_per_core / 1e9,
            "mem_bw_gb_s": c.mem_bw_bytes_s / 1e9,
            "memory_gib": c.mem_bytes / GiB,
            "source": c.source,
            "aliases": _aliases(CPU_ALIASES, c.name),
        }
        for c in CPUS.values()
    ]
    t = Table(title="CPUs (cluster[].device of a llamacpp engine)", title_justify="left")
    t.add_column("name", no_wrap=True)
    for header in ("cores", "FP32 GFLOP/s\n/core", "memory\nGB/s", "memory\nGiB"):
        t.add_column(header, justify="right")
    t.add_column("aliases")
    for r in rows:
        t.add_row(
            r["name"],
            str(r["cores"]),
            f"{r['fp32_gflops_per_core']:.1f}",
            f"{r['mem_bw_gb_s']:.1f}",
            f"{r['memory_gib']:.0f}",
            ", ".join(r["aliases"]),
        )
    _emit(rows, t, as_json)


@list_app.command("models")
def models(as_json: JsonOpt = False) -> None:
    """Models of the catalog: parameters, layers, attention shape, KV bytes, context length."""
    rows = [
        {
            "name": m.name,
            "params_b": m.total_params / 1e9,
            "active_params_b": m.active_params / 1e9,
            "layers": m.num_layers,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "kv_kib_per_token": m.kv_bytes_per_token / 1024,
            "max_model_len": getattr(m, "max_model_len", None),
            "aliases": _aliases(MODEL_ALIASES, m.name),
        }
        for m in MODELS.values()
    ]
    t = Table(title="Models (--model, cluster[].model)", title_justify="left")
    t.add_column("name", no_wrap=True)
    for header in ("params\nB", "active\nB", "layers", "heads\n/KV", "KV KiB\n/token", "context"):
        t.add_column(header, justify="right")
    for r in rows:
        ctx = r["max_model_len"]
        t.add_row(
            r["name"],
            f"{r['params_b']:.1f}",
            f"{r['active_params_b']:.1f}",
            str(r["layers"]),
            f"{r['heads']}/{r['kv_heads']}",
            f"{r['kv_kib_per_token']:.0f}",
            "-" if ctx is None else f"{ctx:,}",
        )
    t.caption = "also accepted: Hugging Face ids such as meta-llama/Llama-3.1-8B-Instruct"
    t.caption_justify = "left"
    _emit(rows, t, as_json)


@list_app.command("numerics")
def numerics(as_json: JsonOpt = False) -> None:
    """Precisions, KV compression layouts and the engine's numerics knobs, with their bytes."""
    dtypes = [
        {
            "dtype": d,
            "weights": d in DTYPES,
            "activations": d in DTYPES,
            "kv": d in KV_DTYPES,
            "weight_bytes_per_param": float(WEIGHT_BYTES[d]),
            "kv_bytes_per_value": float(kv_bytes_per_value(d)) if d in KV_DTYPES else None,
            "notes": DTYPE_NOTES[d],
        }
        for d in DTYPES
    ]
    layouts = [
        {
            "layout": x.name,
            "over_allocation": x.over_allocation,
            "reclaim_fraction": x.reclaim_fraction,
            "about": x.about,
        }
        for x in KV_LAYOUTS.values()
    ]
    engine = [
        {"knob": "engine.context_switch", "values": list(CONTEXT_SWITCHES)},
        {"knob": "engine.determinism.mode", "values": list(DETERMINISM_MODES)},
        {"knob": "offload.host_kv_gib", "values": ["GiB of host KV per GPU (APEX)"]},
    ]
    if as_json:
        out = {"dtypes": dtypes, "kv_layouts": layouts, "engine": engine}
        typer.echo(json.dumps(out, indent=2))
        return
    t = Table(title="Precisions (cluster[].precision)", title_justify="left")
    for header in ("dtype", "weights /\nactivations", "KV", "bytes /\nweight", "bytes /\nKV value"):
        t.add_column(header, justify="left" if header == "dtype" else "right")
    t.add_column("notes")
    for r in dtypes:
        kvb = r["kv_bytes_per_value"]
        t.add_row(
            r["dtype"],
            "yes",
            "yes" if r["kv"] else "-",
            f"{r['weight_bytes_per_param']:.4g}",
            "-" if kvb is None else f"{kvb:.4g}",
            r["notes"],
        )
    t.caption = (
        f"a quantised KV read costs 1 + kv_dequant_overhead times its bytes' time: default "
        f"{FP8_ATTENTION_DEQUANT} for fp8 on FP8 tensor cores, else {IN_KERNEL_DEQUANT} "
        "(docs/perf.md)"
    )
    t.caption_justify = "left"
    console.print(t)
    t = Table(
        title="KV compression layouts (precision.kv_compression.layout)", title_justify="left"
    )
    t.add_column("layout", no_wrap=True)
    t.add_column("over-\nallocation", justify="right")
    t.add_column("reclaim\n(prefill)", justify="right")
    t.add_column("what it is")
    for r in layouts:
        t.add_row(
            r["layout"],
            f"{r['over_allocation']:g}",
            f"{r['reclaim_fraction']:.0%}",
            r["about"],
        )
    t.caption = "memory per token = min(1, ratio x over-allocation) of the uncompressed KV"
    t.caption_justify = "left"
    console.print(t)
    t = Table(title="Engine knobs (cluster[].engine, cluster[].offload)", title_justify="left")
    t.add_column("knob", no_wrap=True)
    t.add_column("values")
    for r in engine:
        t.add_row(r["knob"], ", ".join(r["values"]))
    t.caption = "docs/simulator.md (context switches, determinism), docs/perf.md (CPU offload)"
    t.caption_justify = "left"
    console.print(t)


def summary(factory: Callable[..., Any]) -> str:
    """The first paragraph of a policy's module docstring: what it does, after whom."""
    doc = inspect.getdoc(inspect.getmodule(factory)) or ""
    text = " ".join(doc.split("\n\n", 1)[0].split()).replace("``", "`")
    return re.sub(r":(class|func|meth|mod|attr):", "", text)


def _default(v: Any) -> Any:
    if v is REQUIRED:
        return "(required)"
    return list(v) if isinstance(v, tuple) else v


@list_app.command("policies")
def policies(
    kind: Annotated[
        str | None,
        typer.Argument(help=f"Only one kind: {', '.join(POLICY_KINDS)}."),
    ] = None,
    name: Annotated[
        str | None, typer.Argument(help="One policy: print its whole documentation.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Policies by kind: what each does and after whom, its parameters and their defaults."""
    if kind is not None and kind not in POLICY_KINDS:
        raise InputError(f"unknown policy kind {kind!r} (known: {', '.join(POLICY_KINDS)})")
    rows = []
    for k, (registry, what) in POLICY_KINDS.items():
        if kind not in (None, k):
            continue
        if name is not None and name not in registry:
            raise InputError(f"unknown {what} {name!r} (known: {', '.join(registry)})")
        for n, factory in registry.items():
            if name not in (None, n):
                continue
            params = [
                {"name": p.name, "type": p.type, "default": _default(p.default)}
                for p in policy_params(factory)
            ]
            rows.append({"kind": k, "name": n, "params": params, "about": summary(factory)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        console.print(Text.assemble((f"{r['kind']} ", "dim"), (r["name"], "bold")))
        if name is None:
            console.print(Text(r["about"]))
        else:  # the whole docstring, as written (sources, versions followed, differences)
            factory = POLICY_KINDS[r["kind"]][0][r["name"]]
            typer.echo(inspect.getdoc(inspect.getmodule(factory)) or "")
            typer.echo("\nParameters:" if r["params"] else "\nNo parameters.")
        for p in r["params"]:
            console.print(Text(f"    {p['name']}: {p['type']} = {p['default']!r}"))
    if name is None:
        console.print(
            Text(
                "In a scenario: policies: {<kind>: {name: ..., params: {...}}}; "
                "fleetsched list policies <kind> <name> prints one policy's documentation."
            )
        )
