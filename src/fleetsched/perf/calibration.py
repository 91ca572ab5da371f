"""Calibrated roofline knobs per GPU: what kernels really reach, fitted to measurements.

Every knob of :class:`PerfParams` scales or adds to the datasheet roofline (formula in
``roofline.py`` and docs/perf.md). The values in :data:`CALIBRATED` come from:

- GEMMs (``compute_efficiency``, ``compute_half_tokens``, ``bandwidth_efficiency``,
  ``gemm_latency_s``) and elementwise kernels (``elementwise_*``): fitted by
  :func:`fleetsched.perf.vidur.fit_gpu` to Vidur's measured per-operator kernel times (Vidur,
  Agrawal et al., MLSys 2024, microsoft/vidur commit 7d47513) for A100, H100 and A40 on eight
  model shapes with TP 1-8; ``fleetsched perf check --fit`` refits and prints them.
- ``allreduce_bandwidth_efficiency``: fitted by :func:`fleetsched.perf.vidur.fit_allreduce` to
  Vidur's NCCL all-reduce profiles of 2-8 GPUs in one DGX node (messages >= 1 MiB).
- ``allreduce_latency_s``: vLLM all-reduces small (decode) messages with its custom all-reduce
  kernel inside CUDA graphs, not with NCCL; 9 us is what that kernel measured on H100 at TP
  2/4/8 for the smallest messages of sgl-project/sglang PR #2904's benchmark (data size
  512-32,768, "vllm" column, 8.5-11.8 us, measured outside CUDA graphs, so an upper bound).
  Vidur's eager NCCL figures (7-60 us) are not used for it.
- ``overhead_s``: not in any kernel profile (scheduling, input preparation, sampling and the
  gaps between CUDA graphs of one step). 1 ms is the median, rounded, of the step time the
  kernels leave unexplained in five published vLLM decode figures (batch 1-2 inter-token
  latency of Llama-3-8B and -70B on A100 and H100); docs/perf.md lists them, so those figures
  check the model's shape across GPUs and models but not this one number.

GPUs without their own measurements borrow a measured GPU's values (:data:`BORROWED`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from fleetsched.errors import InputError


@dataclass(frozen=True, slots=True)
class PerfParams:
    """Knobs of the roofline step-time model (docs/perf.md, "Roofline formula").

    ``compute_efficiency``: fraction of the dense BF16 peak a large GEMM reaches (also used for
    attention FLOPs). ``compute_half_tokens``: a GEMM over ``T`` tokens runs at
    ``compute_efficiency * T / (T + compute_half_tokens)``, i.e. it costs as if
    ``compute_half_tokens`` more tokens were computed (tile padding, wave quantisation).
    ``bandwidth_efficiency``: fraction of peak memory bandwidth for weight and KV reads.
    ``gemm_latency_s``: fixed time of every GEMM kernel. ``elementwise_bandwidth_efficiency``
    and ``elementwise_latency_s``: the same for the norm, rotary, activation and residual-add
    kernels. ``allreduce_latency_s`` and ``allreduce_bandwidth_efficiency``: each tensor-parallel
    all-reduce costs the latency plus its ring traffic over the interconnect at that fraction of
    its peak. ``overhead_s``: fixed time per step outside the kernels.
    """

    compute_efficiency: float
    compute_half_tokens: float
    bandwidth_efficiency: float
    gemm_latency_s: float
    elementwise_bandwidth_efficiency: float
    elementwise_latency_s: float
    allreduce_latency_s: float
    allreduce_bandwidth_efficiency: float
    overhead_s: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("efficiency"):
                if not (isinstance(value, int | float) and 0 < value <= 1):
                    raise InputError(f"{f.name} must be in (0, 1], got {value!r}")
            elif not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise InputError(f"{f.name} must be a finite number >= 0, got {value!r}")

    def with_overrides(self, **overrides: Any) -> PerfParams:
        """A copy with the given knobs replaced; ``None`` values keep the current value."""
        set_ = _given(overrides)
        return replace(self, **set_) if set_ else self


#: Knob names, in declaration order (the scenario's ``perf:`` section uses the same names).
PERF_KNOBS: tuple[str, ...] = tuple(f.name for f in fields(PerfParams))


def _given(overrides: dict[str, Any]) -> dict[str, float]:
    """The knobs that are set (not ``None``), as floats; unknown names are an error."""
    unknown = sorted(set(overrides) - set(PERF_KNOBS))
    if unknown:
        raise InputError(
            f"unknown step-time option(s) {', '.join(unknown)}; known: {', '.join(PERF_KNOBS)}"
        )
    try:
        return {k: float(v) for k, v in overrides.items() if v is not None}
    except (TypeError, ValueError):
        bad = next(k for k, v in overrides.items() if not isinstance(v, int | float | None))
        raise InputError(f"{bad} must be a number, got {overrides[bad]!r}") from None


#: The datasheet roofline: peaks reached, no padding, latencies or overhead (elementwise traffic
#: at peak bandwidth, since its efficiency must be > 0). What the model was before calibration,
#: apart from its 1.5 ms overhead; useful to see what the calibration adds.
DATASHEET = PerfParams(
    compute_efficiency=1.0,
    compute_half_tokens=0.0,
    bandwidth_efficiency=1.0,
    gemm_latency_s=0.0,
    elementwise_bandwidth_efficiency=1.0,
    elementwise_latency_s=0.0,
    allreduce_latency_s=0.0,
    allreduce_bandwidth_efficiency=1.0,
    overhead_s=0.0,
)

#: All-reduce latency of vLLM's custom all-reduce on H100 (see the module docstring).
_ALLREDUCE_LATENCY_S = 9e-6
#: Fixed per-step overhead (see the module docstring).
_OVERHEAD_S = 1.0e-3

#: Calibrated knobs of each measured GPU (catalog name): fitted values to 3 significant digits.
#: The A40 has no all-reduce profile; it takes the A100's all-reduce efficiency.
CALIBRATED: dict[str, PerfParams] = {
    "A100-80GB": PerfParams(
        compute_efficiency=0.749,
        compute_half_tokens=78.1,
        bandwidth_efficiency=0.787,
        gemm_latency_s=6.40e-6,
        elementwise_bandwidth_efficiency=0.475,
        elementwise_latency_s=1.15e-6,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
        allreduce_bandwidth_efficiency=0.573,
        overhead_s=_OVERHEAD_S,
    ),
    "H100-SXM": PerfParams(
        compute_efficiency=0.763,
        compute_half_tokens=163.0,
        bandwidth_efficiency=0.935,
        gemm_latency_s=6.99e-6,
        elementwise_bandwidth_efficiency=0.556,
        elementwise_latency_s=1.61e-6,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
        allreduce_bandwidth_efficiency=0.770,
        overhead_s=_OVERHEAD_S,
    ),
    "A40": PerfParams(
        compute_efficiency=0.799,
        compute_half_tokens=107.0,
        bandwidth_efficiency=0.752,
        gemm_latency_s=8.60e-6,
        elementwise_bandwidth_efficiency=0.715,
        elementwise_latency_s=0.830e-6,
        allreduce_latency_s=_ALLREDUCE_LATENCY_S,
        allreduce_bandwidth_efficiency=0.573,
        overhead_s=_OVERHEAD_S,
    ),
}

#: Catalog GPUs without measurements -> the measured GPU whose knobs they use: same silicon
#: (A100-40GB, H200), the closest memory system (GDDR6 L40S, A10G, A10 and T4 take the A40's),
#: or, for MI300X (no public kernel profile here), the H100's as a placeholder.
BORROWED: dict[str, str] = {
    "A100-40GB": "A100-80GB",
    "H200": "H100-SXM",
    "L40S": "A40",
    "A10G": "A40",
    "A10": "A40",
    "T4": "A40",
    "MI300X": "H100-SXM",
}


def calibrated_params(gpu_name: str, **overrides: float | None) -> PerfParams:
    """The calibrated knobs for catalog GPU ``gpu_name`` (borrowed ones included), with
    ``overrides`` (``None`` = keep). A GPU without calibration needs every knob given."""
    base = CALIBRATED.get(BORROWED.get(gpu_name, gpu_name))
    if base is not None:
        return base.with_overrides(**overrides)
    given = _given(overrides)
    missing = [k for k in PERF_KNOBS if k not in given]
    if missing:
        raise InputError(
            f"no calibrated step-time knobs for GPU {gpu_name!r}: set {', '.join(missing)} "
            f"(calibrated GPUs: {', '.join([*CALIBRATED, *BORROWED])})"
        )
    return PerfParams(**given)
