"""End to end: ask the server what it is, run the plan, fit the profile."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

from fleetsched.calibrate.client import check_loopback, detect_engine, get_json, session
from fleetsched.calibrate.fit import FitResult, Row, fit_llamacpp
from fleetsched.calibrate.plan import Measured, Measurements, llamacpp_plan, run_plan
from fleetsched.calibrate.vllm import fit_vllm, openai_send, served_model, vllm_plan
from fleetsched.core.config import LlamaCppConfig
from fleetsched.errors import FleetschedError, InputError
from fleetsched.perf.cpu import find_cpu
from fleetsched.perf.hardware import get_gpu
from fleetsched.perf.models import MODELS, get_model
from fleetsched.perf.profile import FittedProfile


async def _server(url: str, engine: str) -> tuple[str, dict]:
    async with session(30.0) as http:
        if engine == "auto":
            engine = await detect_engine(http, url)
        if engine == "vllm":
            return engine, await served_model(http, url)
        props = await get_json(http, url + "/props")
    return engine, props


def measure(
    url: str,
    *,
    engine: str = "auto",
    repeats: int = 3,
    quick: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Measurements:
    """Run the microbenchmark plan against the server at ``url`` (loopback only)."""
    check_loopback(url)
    url = url.rstrip("/")
    if repeats < 1:
        raise InputError("--repeats must be >= 1")
    engine, props = asyncio.run(_server(url, engine))
    if engine == "vllm":
        return _measure_vllm(url, props, repeats, quick, progress)
    try:
        slots = int(props["total_slots"])
        slot_ctx = int(props["default_generation_settings"]["n_ctx"])
    except (KeyError, TypeError, ValueError):
        raise FleetschedError(
            f"{url}/props lacks total_slots or n_ctx: not a llama-server?"
        ) from None
    plans = [llamacpp_plan(slots, slot_ctx, quick=quick, seed=s) for s in range(repeats)]
    runs = asyncio.run(run_plan(url, plans, progress=progress))
    _check_some_succeeded(runs)
    return Measurements(url, engine, slots, slot_ctx, str(props.get("model_path", "")), runs)


def _measure_vllm(
    url: str,
    card: dict,
    repeats: int,
    quick: bool,
    progress: Callable[[int, int], None] | None,
) -> Measurements:
    name = str(card.get("id", ""))
    try:
        max_len = int(card["max_model_len"])
    except (KeyError, TypeError, ValueError):
        raise FleetschedError(f"{url}/v1/models: the model card lacks max_model_len") from None
    plans = [vllm_plan(max_len, quick=quick, seed=s) for s in range(repeats)]
    runs = asyncio.run(run_plan(url, plans, send=openai_send(name), idle_s=0.1, progress=progress))
    _check_some_succeeded(runs)
    info = card.get("fleetsched") if isinstance(card.get("fleetsched"), dict) else {}
    return Measurements(url, "vllm", 0, max_len, name, runs, server=info)


def _check_some_succeeded(runs: list[Measured]) -> None:
    failed = [m for m in runs if m.status != 200]
    if len(failed) == len(runs):
        raise FleetschedError(f"every request failed, e.g.: {failed[0].error or failed[0].status}")


def calibrate_vllm(
    m: Measurements, *, model: str | None = None, device: str | None = None, tp: int | None = None
) -> tuple[FittedProfile, float, list[Row]]:
    """Fit a vLLM step-time profile to measurements of a vLLM-compatible server. The model,
    GPU and tensor parallelism default to what the server says (the emulator says all three;
    vLLM only the served model name)."""
    model = model or m.server.get("model") or m.model_path
    device = device or m.server.get("gpu")
    if device is None:
        raise InputError("--device: the GPU the vLLM server runs on (a catalog name, e.g. H100)")
    tp = tp or int(m.server.get("tp", 1))
    spec, gpu = get_model(model), get_gpu(device)
    notes = f"fleetsched calibrate: {len(m.runs)} requests to {m.engine} at {m.target}"
    return fit_vllm(m.runs, model=spec.name, gpu=gpu.name, tp=tp, notes=notes)


def guess_model(path: str) -> str | None:
    """The catalog model named in a GGUF file name (``gemma-3-270m-q4_k_m.gguf``)."""
    flat = re.sub(r"[^a-z0-9]", "", Path(path).name.lower())
    for name in MODELS:
        if re.sub(r"[^a-z0-9]", "", name.lower()) in flat:
            return name
    return None


def calibrate(
    m: Measurements,
    *,
    model: str | None = None,
    device: str = "cpu",
    threads: int = 2,
    swa_full: bool = False,
    n_batch: int = 2048,
    n_ubatch: int = 512,
    cache_ram_mib: int = 8192,
    held_at_zero: tuple[str, ...] = (),
) -> tuple[FitResult, LlamaCppConfig]:
    """Fit a profile to measurements of a llama-server started with these options
    (``held_at_zero``: see :func:`~fleetsched.calibrate.fit.fit_llamacpp`)."""
    name = model or guess_model(m.model_path)
    if name is None:
        raise InputError(f"cannot tell the model from {m.model_path!r}; pass --model")
    spec = get_model(name)
    cpu = find_cpu(device)
    bw = cpu.mem_bw_bytes_s if cpu is not None else get_gpu(device).mem_bw_bytes_s
    device_name = cpu.name if cpu is not None else get_gpu(device).name
    engine = LlamaCppConfig(
        kind="llamacpp",
        parallel=m.slots,
        ctx=m.slots * m.slot_ctx,
        threads=threads,
        swa_full=swa_full,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        cache_ram_mib=cache_ram_mib,
    )
    notes = (
        f"fleetsched calibrate: {len(m.runs)} requests to {m.engine} at {m.target} "
        f"({m.slots} slots x {m.slot_ctx} tokens, swa_full={swa_full}, threads={threads})"
    )
    fit = fit_llamacpp(
        m.runs, engine, spec, device=device_name, copy_byte_s=2 / bw, notes=notes,
        held_at_zero=held_at_zero,
    )  # fmt: skip
    return fit, engine


def save_measurements(m: Measurements, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m.to_json()))


def load_measurements(path: Path) -> Measurements:
    try:
        return Measurements.from_json(json.loads(path.read_text()))
    except OSError as e:
        raise InputError(f"cannot read measurements: {e.strerror}", str(path)) from None
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f"not a calibrate measurements file: {e}", str(path)) from None
