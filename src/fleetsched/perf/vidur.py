"""Measured kernel times from Vidur's profiler: the reference the roofline is calibrated on and
checked against (``fleetsched perf check``).

Vidur (Agrawal et al., MLSys 2024; microsoft/vidur, MIT) profiled one transformer layer's
operators with vLLM's kernels. Layout of a profile folder (``../shared/profiles/vidur/``)::

    compute/{a100,h100,a40}/<org>/<model>/mlp.csv     per (num_tokens, TP) row: ms per operator
    network/{a100,h100}_dgx/all_reduce.csv            NCCL all-reduce over size and world size

Each ``mlp.csv`` row gives ``time_stats.<op>.median`` (ms) for the layer's GEMMs
(``attn_pre_proj`` = QKV, ``attn_post_proj`` = O, ``mlp_up_proj`` = gate+up, ``mlp_down_proj``)
and elementwise kernels (norms, ``attn_rope``, ``mlp_act``, ``add``), and the model shape
(``n_head``, ``n_kv_head``, ``n_embd``, ``n_expanded_embd``, ``use_gated_mlp``). The roofline's
time for the same layer comes from :func:`~fleetsched.perf.roofline.gemm_time_s` and
:func:`~fleetsched.perf.roofline.elementwise_time_s`, the expressions the step-time model uses.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from fleetsched.errors import InputError
from fleetsched.perf.calibration import PerfParams, calibrated_params
from fleetsched.perf.hardware import GPU, get_gpu
from fleetsched.perf.roofline import (
    GEMMS_PER_LAYER,
    elementwise_bytes_per_token,
    elementwise_time_s,
    gemm_time_s,
)

#: Vidur's device folder -> GPU catalog name. Vidur's A100 profiles were taken on 80 GB SXM
#: parts and its H100 ones on SXM (the measured weight-read rates exceed what the 40 GB and
#: PCIe variants' bandwidths allow).
PROFILE_GPUS: dict[str, str] = {"a100": "A100-80GB", "h100": "H100-SXM", "a40": "A40"}
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
NORM_OPS = ("input_layernorm", "post_attention_layernorm")
ELEMENTWISE_OPS = (*NORM_OPS, "attn_rope", "mlp_act", "add")
_SHAPE = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "num_tokens")
_TP = "num_tensor_parallel_workers"


@dataclass(slots=True)
class KernelRows:
    """Profiled rows as columns (one entry per CSV row; times in seconds, per layer, per GPU)."""

    gpu: np.ndarray  #: catalog GPU name
    model: np.ndarray  #: profiled model (folder name)
    tp: np.ndarray
    tokens: np.ndarray
    gemm_weight_bytes: np.ndarray  #: bytes of the layer's four GEMM weights on one GPU
    gemm_flops_per_token: np.ndarray
    gemm_s: np.ndarray  #: measured: sum of the four GEMMs' median times
    elementwise_kernels: np.ndarray
    elementwise_bytes_per_token: np.ndarray
    elementwise_s: np.ndarray  #: measured: sum of the elementwise kernels' median times

    def __len__(self) -> int:
        return len(self.tokens)

    def select(self, mask: np.ndarray) -> KernelRows:
        return KernelRows(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


def _read_csv(path: Path, gpu: str, model: str) -> list[tuple[Any, ...]]:
    out = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        needed = [*_SHAPE, _TP, "use_gated_mlp", *(f"time_stats.{op}.median" for op in GEMM_OPS)]
        missing = [c for c in needed if c not in header]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}", f"{path}:1")
        present = [op for op in ELEMENTWISE_OPS if f"time_stats.{op}.median" in header]
        for line, r in enumerate(reader, start=2):
            try:
                heads, kv, hidden, mlp, tokens = (int(r[c]) for c in _SHAPE)
                tp = int(r[_TP])
                gated = r["use_gated_mlp"].strip().lower() == "true"
                gemm_ms = sum(float(r[f"time_stats.{op}.median"]) for op in GEMM_OPS)
                elem_ms = sum(float(r[f"time_stats.{op}.median"]) for op in present)
            except (TypeError, ValueError) as e:
                raise InputError(f"bad value: {e}", f"{path}:{line}") from None
            head_dim = hidden // heads
            q, k = heads * head_dim // tp, kv * head_dim // tp
            up = (2 if gated else 1) * mlp // tp
            params = hidden * (q + 2 * k) + q * hidden + hidden * up + mlp // tp * hidden
            elem_bytes = elementwise_bytes_per_token(
                hidden=hidden,
                heads=heads,
                kv_heads=kv,
                head_dim=head_dim,
                mlp=mlp,
                tp=tp,
                gated=gated,
                norms=sum(op in present for op in NORM_OPS),
                adds=int("add" in present),
                rotary="attn_rope" in present,
                activation="mlp_act" in present,
            )
            gemm = (2 * params, 2 * params, gemm_ms / 1e3)
            out.append((gpu, model, tp, tokens, *gemm, len(present), elem_bytes, elem_ms / 1e3))
    return out


def load_kernel_profiles(root: str | Path) -> KernelRows:
    """Every row of every ``compute/<gpu>/<org>/<model>/mlp.csv`` under ``root``."""
    base = Path(root) / "compute"
    if not base.is_dir():
        raise InputError(f"no Vidur compute profiles at {base} (expected compute/<gpu>/...)")
    rows: list[tuple[Any, ...]] = []
    for path in sorted(base.glob("*/*/*/mlp.csv")):
        device, model = path.parts[-4], path.parts[-2]
        if device in PROFILE_GPUS:
            rows.extend(_read_csv(path, PROFILE_GPUS[device], model))
    if not rows:
        raise InputError(f"no mlp.csv profiles of {', '.join(PROFILE_GPUS)} under {base}")
    cols = list(zip(*rows, strict=True))
    dtypes = (object, object, np.int64, np.float64, *([np.float64] * 6))
    names = [f.name for f in fields(KernelRows)]
    return KernelRows(
        **{n: np.asarray(c, dtype=d) for n, c, d in zip(names, cols, dtypes, strict=True)}
    )


Params = Callable[[str], PerfParams]
_Model = Callable[[KernelRows, GPU, PerfParams], Any]


def _gemm(r: KernelRows, gpu: GPU, p: PerfParams) -> Any:
    weights, flops = r.gemm_weight_bytes, r.gemm_flops_per_token
    return gemm_time_s(r.tokens, weights, flops, GEMMS_PER_LAYER, gpu, p)


def _elementwise(r: KernelRows, gpu: GPU, p: PerfParams) -> Any:
    moved, kernels = r.elementwise_bytes_per_token, r.elementwise_kernels
    return elementwise_time_s(r.tokens, moved, kernels, gpu, p)


def _per_gpu(rows: KernelRows, fn: _Model, params: Params) -> np.ndarray:
    out = np.empty(len(rows))
    for name in sorted(set(rows.gpu)):
        mask = rows.gpu == name
        out[mask] = fn(rows.select(mask), get_gpu(name), params(name))
    return out


def modelled_gemm_s(rows: KernelRows, params: Params = calibrated_params) -> np.ndarray:
    """The roofline's time for each row's four GEMMs (:func:`gemm_time_s`)."""
    return _per_gpu(rows, _gemm, params)


def modelled_elementwise_s(rows: KernelRows, params: Params = calibrated_params) -> np.ndarray:
    """The roofline's time for each row's elementwise kernels (:func:`elementwise_time_s`)."""
    return _per_gpu(rows, _elementwise, params)


# ---- fitting --------------------------------------------------------------------------------


def nelder_mead(
    f: Callable[[np.ndarray], float], x0: Sequence[float], iters: int = 600, step: float = 0.2
) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` with the Nelder-Mead simplex (deterministic; no SciPy)."""
    x = np.asarray(x0, dtype=float)
    simplex = [x] + [x + step * np.where(x == 0, 1.0, x) * np.eye(len(x))[i] for i in range(len(x))]
    values = [f(s) for s in simplex]
    for _ in range(iters):
        order = np.argsort(values, kind="stable")
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        centre = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        reflected = centre + (centre - worst)
        fr = f(reflected)
        if fr < values[0]:
            expanded = centre + 2 * (centre - worst)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centre + 0.5 * (worst - centre)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [best + 0.5 * (s - best) for s in simplex[1:]]
                values = [values[0]] + [f(s) for s in simplex[1:]]
    i = int(np.argmin(values))
    return simplex[i], float(values[i])


def _mean_abs_rel(pred: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - measured) / measured))


GEMM_KNOBS = ("gemm_latency_s", "bandwidth_efficiency", "compute_efficiency", "compute_half_tokens")
ELEMENTWISE_KNOBS = ("elementwise_latency_s", "elementwise_bandwidth_efficiency")


def _fit(
    rows: KernelRows,
    knobs: tuple[str, ...],
    starts: Sequence[Sequence[float]],
    measured: np.ndarray,
    model: _Model,
) -> dict[str, float]:
    name = str(rows.gpu[0])
    gpu, base = get_gpu(name), calibrated_params(name)
    bounded = [k.endswith("efficiency") for k in knobs]

    def loss(x: np.ndarray) -> float:
        if np.any(x < 0) or any(v > 1 or v == 0 for v, b in zip(x, bounded, strict=True) if b):
            return np.inf
        p = replace(base, **dict(zip(knobs, (float(v) for v in x), strict=True)))
        return _mean_abs_rel(model(rows, gpu, p), measured)

    best = min((nelder_mead(loss, s) for s in starts), key=lambda r: r[1])
    return dict(zip(knobs, (float(v) for v in best[0]), strict=True))


def fit_gpu(rows: KernelRows) -> dict[str, float]:
    """Fit the GEMM and elementwise knobs of one GPU's rows, minimising the mean absolute
    relative error (several deterministic starts; the best one wins)."""
    if len(set(rows.gpu)) != 1:
        raise InputError("fit_gpu needs the rows of exactly one GPU")
    starts = ([3e-6, 0.8, 0.7, 50.0], [1e-6, 0.7, 0.6, 100.0], [5e-6, 0.85, 0.75, 10.0])
    gemm = _fit(rows, GEMM_KNOBS, starts, rows.gemm_s, _gemm)
    elementwise = _fit(rows, ELEMENTWISE_KNOBS, ([2e-6, 0.5],), rows.elementwise_s, _elementwise)
    return {**gemm, **elementwise}


def fit_allreduce(root: str | Path, device: str, min_bytes: int = 2**20) -> float:
    """``allreduce_bandwidth_efficiency`` fitted to Vidur's NCCL all-reduce profile of one DGX
    node (``network/<device>_dgx/all_reduce.csv``, groups inside one node, messages >=
    ``min_bytes``): ``t = latency + bytes * 2 (n - 1) / n / (interconnect * efficiency)`` with a
    latency per group size, minimising the mean absolute relative error."""
    path = Path(root) / "network" / f"{device}_dgx" / "all_reduce.csv"
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["devices_per_node"] == r["num_workers"]]
            median = "time_stats.all_reduce.median"
            data = np.array(
                [
                    (int(r["num_workers"]), int(r["size"]), float(r[median]))
                    for r in rows
                    if int(r["size"]) >= min_bytes
                ],
                dtype=float,
            )
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"cannot read all-reduce profile: {e}", str(path)) from None
    link = get_gpu(PROFILE_GPUS[device]).interconnect_bw_bytes_s
    n, size, t = data[:, 0], data[:, 1], data[:, 2] / 1e3
    groups = np.unique(n)

    def loss(x: np.ndarray) -> float:
        eff, lat = x[0], x[1:]
        if not 0 < eff <= 1 or np.any(lat < 0):
            return np.inf
        pred = lat[np.searchsorted(groups, n)] + size * 2 * (n - 1) / n / (link * eff)
        return _mean_abs_rel(pred, t)

    x, _ = nelder_mead(loss, [0.7, *([2e-5] * len(groups))], iters=1500)
    return float(x[0])


# ---- the check ------------------------------------------------------------------------------


def abs_rel_error(modelled: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(modelled - measured) / measured


def median_errors(rows: KernelRows, err: np.ndarray, *keys: str) -> dict[tuple[Any, ...], float]:
    """Median of ``err`` per distinct combination of the named columns (sorted)."""
    cols = [getattr(rows, k) for k in keys]
    groups = sorted({tuple(c[i] for c in cols) for i in range(len(rows))})
    out = {}
    for g in groups:
        mask = np.ones(len(rows), dtype=bool)
        for c, v in zip(cols, g, strict=True):
            mask &= c == v
        out[g] = float(np.median(err[mask]))
    return out
