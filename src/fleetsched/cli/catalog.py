"""``fleetsched list gpus|cpus|models|policies``: every choice a scenario can name, with its key
figures, read from the catalogs and registries themselves."""

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
from fleetsched.errors import InputError
from fleetsched.perf.cpu import CPU_ALIASES, CPUS
from fleetsched.perf.hardware import GPU_ALIASES, GPUS, GiB
from fleetsched.perf.models import MODEL_ALIASES, MODELS
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
    """GPUs of the hardware catalog: memory, bandwidth, dense BF16 peak, links, node size."""
    rows = [
        {
            "name": g.name,
            "memory_gib": g.mem_bytes / GiB,
            "mem_bw_tb_s": g.mem_bw_bytes_s / 1e12,
            "bf16_tflops": g.bf16_flops / 1e12,
            "interconnect_gb_s": g.interconnect_bw_bytes_s / 1e9,
            "host_link_gb_s": g.host_link_bw_bytes_s / 1e9,
            "gpus_per_node": g.gpus_per_node,
            "aliases": _aliases(GPU_ALIASES, g.name),
        }
        for g in GPUS.values()
    ]
    t = Table(title="GPUs (--gpu, cluster[].gpu)", title_justify="left")
    t.add_column("name", no_wrap=True)
    for header in ("memory\nGiB", "memory\nTB/s", "BF16\nTFLOPS", "GPU link\nGB/s", "GPUs\n/node"):
        t.add_column(header, justify="right")
    for r in rows:
        t.add_row(
            r["name"],
            f"{r['memory_gib']:.0f}",
            f"{r['mem_bw_tb_s']:.2f}",
            f"{r['bf16_tflops']:,.0f}",
            f"{r['interconnect_gb_s']:.0f}",
            str(r["gpus_per_node"]),
        )
    t.caption = "GPU link: GPU-to-GPU bandwidth per direction (NVLink, Infinity Fabric or PCIe)"
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
