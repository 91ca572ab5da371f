"""``fleetsched emulate``: an OpenAI-compatible engine whose timing is the simulator's."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from fleetsched.api.aio import run_async
from fleetsched.cli.app import app, print_error
from fleetsched.core.config import (
    EngineConfig,
    InstanceGroup,
    LlamaCppConfig,
    PoliciesConfig,
    PolicyRef,
    SLOClass,
    load_scenario,
)
from fleetsched.errors import InputError

EXAMPLES = """
Examples:

  fleetsched emulate --model Llama-3.1-8B --gpu H100-SXM --port 8000

  fleetsched emulate --scenario my.yaml --group h100 --speedup 10 --port 8001

  curl localhost:8000/v1/completions -d '{"prompt": "Hello", "max_tokens": 8, "stream": true}'
"""

Opt = typer.Option


def pick_group(
    scenario: Path | None, group: str | None
) -> tuple[InstanceGroup, PoliciesConfig, dict[str, SLOClass], int]:
    """The instance group to emulate (from ``scenario`` or a default group), its scenario's
    policies, SLO classes and seed."""
    if scenario is None:
        if group is not None:
            raise InputError("--group needs --scenario")
        return InstanceGroup(), PoliciesConfig(), {"default": SLOClass()}, 0
    sc = load_scenario(scenario)
    names = [g.name for g in sc.cluster]
    if group is None:
        if len(sc.cluster) != 1:
            raise InputError(
                f"the scenario has {len(names)} instance groups ({', '.join(names)}): "
                "name one with --group",
                str(scenario),
            )
        g = sc.cluster[0]
    else:
        found = [g for g in sc.cluster if g.name == group]
        if not found:
            raise InputError(
                f"no instance group {group!r}; groups: {', '.join(names)}", str(scenario)
            )
        g = found[0]
    return g, sc.policies, dict(sc.slo_classes), sc.seed


_SCENARIO_HELP = "Take the instance group, engine settings and policies from this scenario."
_LAG_HELP = "A step end later than this (wall ms) is a slip: the engine re-anchors to the clock."
_EOS_HELP = "Mean output length of requests without ignore_eos (emulated end of sequence)."


@app.command(epilog=EXAMPLES)
def emulate(
    model: Annotated[str | None, Opt(help="Model name, e.g. Llama-3.1-8B.")] = None,
    gpu: Annotated[str | None, Opt(help="GPU name, e.g. H100-SXM.")] = None,
    tp: Annotated[int | None, Opt(help="Tensor-parallel degree.")] = None,
    profile: Annotated[Path | None, Opt(help="Fitted step-time profile YAML.")] = None,
    scenario: Annotated[Path | None, Opt("--scenario", "-s", help=_SCENARIO_HELP)] = None,
    group: Annotated[str | None, Opt(help="The scenario's instance group to emulate.")] = None,
    host: Annotated[str, Opt(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port (0 picks a free one and prints it).")] = 8000,
    speedup: Annotated[float, Opt(help="Run this many times faster than real time.")] = 1.0,
    seed: Annotated[int | None, Opt(help="Seed of the filler text and emulated lengths.")] = None,
    served_model_name: Annotated[str | None, Opt(help="Model name clients must use.")] = None,
    max_model_len: Annotated[
        int | None, Opt(help="Longest prompt + output (default: what the KV cache holds).")
    ] = None,
    eos_mean: Annotated[float, Opt(help=_EOS_HELP)] = 256.0,
    max_num_seqs: Annotated[int | None, Opt(help="Engine batch size cap.")] = None,
    max_num_batched_tokens: Annotated[int | None, Opt(help="Engine step token budget.")] = None,
    num_gpu_blocks: Annotated[int | None, Opt(help="KV cache blocks (override).")] = None,
    prefix_caching: Annotated[
        bool | None, Opt("--prefix-caching/--no-prefix-caching", help="Prefix caching.")
    ] = None,
    admission: Annotated[str | None, Opt(help="Admission policy.")] = None,
    ordering: Annotated[str | None, Opt(help="Waiting-queue order policy.")] = None,
    preemption: Annotated[str | None, Opt(help="Preemption victim policy.")] = None,
    max_lag_ms: Annotated[float, Opt(help=_LAG_HELP)] = 50.0,
) -> None:
    """Serve an OpenAI-compatible engine (vLLM's endpoints and metrics) whose batching, KV cache
    and step times are the simulator's own engine model, in real time divided by --speedup."""
    from fleetsched.emulator import build_emulator, start

    g, pol, slo, sc_seed = pick_group(scenario, group)
    if isinstance(g.engine, LlamaCppConfig):
        raise InputError(
            "the emulator runs the vLLM engine model; a llamacpp group is served by a real "
            "llama-server (`make llamacpp`, docs/llamacpp.md) or simulated",
            "--scenario",
        )
    upd: dict[str, object] = {
        k: v for k, v in (("model", model), ("gpu", gpu), ("tp", tp)) if v is not None
    }
    if profile is not None:
        if not profile.exists():
            raise InputError("no such profile file", str(profile))
        upd["profile"] = str(profile)
    e = g.engine.model_dump()
    for k, v in (
        ("max_num_seqs", max_num_seqs),
        ("max_num_batched_tokens", max_num_batched_tokens),
        ("num_gpu_blocks", num_gpu_blocks),
        ("enable_prefix_caching", prefix_caching),
    ):
        if v is not None:
            e[k] = v
    try:
        upd["engine"] = EngineConfig.model_validate(e)
        g = InstanceGroup.model_validate({**g.model_dump(), **upd, "count": 1})
    except ValueError as err:
        raise InputError(str(err).splitlines()[0]) from None
    for field, name in (
        ("admission", admission),
        ("ordering", ordering),
        ("preemption", preemption),
    ):
        if name is not None:
            pol = pol.model_copy(update={field: PolicyRef(name=name)})
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    emu = build_emulator(
        g,
        pol,
        speedup=speedup,
        seed=sc_seed if seed is None else seed,
        eos_mean=eos_mean,
        served_model_name=served_model_name,
        max_model_len=max_model_len,
        slo_classes=slo,
        max_lag_s=max_lag_ms / 1000.0,
    )

    async def serve() -> None:
        runner, bound = await start(emu, host, port)
        info = emu.info
        print(
            f"fleetsched emulator: {emu.served_model_name} = {info['model']} on {g.tp} x "
            f"{info['gpu']}, {info['num_gpu_blocks']:,} KV blocks of {info['block_tokens']} "
            f"tokens, max_model_len {emu.max_model_len:,}, speedup {speedup:g}x",
            flush=True,
        )
        print(f"listening on http://{host}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        run_async(serve())
    except OSError as err:
        print_error(f"--port: cannot listen on {host}:{port}: {err.strerror or err}")
        sys.exit(2)
