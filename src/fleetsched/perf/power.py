"""GPU power and the energy of an engine step.

Each GPU draws ``idle_w`` when idle and up to its board power limit ``tdp_w`` when busy. A
step of ``dt`` seconds on a tensor-parallel group of ``tp`` GPUs takes

    energy = tp * (idle_w + (tdp_w - idle_w) * u) * dt,

where ``u`` is the step's roofline utilisation: the larger of the share of the datasheet
FLOP/s its arithmetic needs and the share of the memory bandwidth its reads need, over
``dt`` (capped at 1). A compute-bound prefill runs near the power limit, a small decode batch
well below it, a large memory-bound decode batch in between, which is the shape measured
for LLM inference (Patel et al., Splitwise, ISCA 2024, Sec. 3: prefill near TDP, decode
lower). Between steps an instance draws its idle power.

Board power limits are the datasheets' maximum TDP (NVIDIA H100 SXM5 700 W, H200 SXM 700 W,
A100 SXM 400 W, A40 300 W, L40S 350 W, A10 150 W (also for AWS's A10G), T4 70 W; AMD MI300X
750 W). Idle
power is taken as 15 % of it (nvidia-smi idle readings of data-centre boards with memory
clocks up are 50-90 W on A100/H100): an assumption, set ``idle_fraction`` to change it.
"""

from __future__ import annotations

import math

import numpy as np

from fleetsched.errors import InputError
from fleetsched.perf.hardware import GPU
from fleetsched.perf.models import ModelSpec
from fleetsched.perf.roofline import kv_bytes_per_token_per_gpu

#: Board power limit (W) per catalog GPU.
TDP_W: dict[str, float] = {
    "H100-SXM": 700.0,
    "H200": 700.0,
    "A100-80GB": 400.0,
    "A100-40GB": 400.0,
    "A40": 300.0,
    "L40S": 350.0,
    "A10G": 150.0,
    "A10": 150.0,
    "T4": 70.0,
    "MI300X": 750.0,
}

#: Idle power as a share of the power limit (an assumption; see the module docstring).
IDLE_FRACTION = 0.15


def tdp_w(gpu: GPU) -> float:
    try:
        return TDP_W[gpu.name]
    except KeyError:
        raise InputError(
            f"no power figure for GPU {gpu.name!r} (known: {', '.join(TDP_W)})"
        ) from None


class StepPower:
    """Energy of engine steps of ``model`` on ``tp`` x ``gpu`` (see the module docstring)."""

    __slots__ = ("_attn_flops", "_busy_w", "_flops_tok", "_idle_w", "_kv_bytes", "_weights")

    def __init__(
        self, gpu: GPU, model: ModelSpec, tp: int = 1, idle_fraction: float = IDLE_FRACTION
    ) -> None:
        if not 0 <= idle_fraction <= 1:
            raise InputError(f"idle_fraction must be in [0, 1], got {idle_fraction}")
        tdp = tdp_w(gpu)
        self._idle_w = tp * idle_fraction * tdp
        self._busy_w = tp * (1 - idle_fraction) * tdp
        flops, bw = gpu.bf16_flops * tp, gpu.mem_bw_bytes_s * tp
        # Seconds at datasheet peak per unit of each input, over the whole TP group.
        self._flops_tok = 2 * model.active_params / flops
        self._attn_flops = 4 * model.num_layers * model.num_heads * model.head_dim / flops
        active = model.dense_params + model.expert_params * model.experts_per_token / max(
            model.num_experts, 1
        )
        self._weights = active * model.dtype_bytes / bw
        self._kv_bytes = kv_bytes_per_token_per_gpu(model, tp) * tp / bw

    @property
    def idle_w(self) -> float:
        """Power of the whole instance while it runs no step."""
        return self._idle_w

    def _busy_s(
        self, prefill_tokens: int, prefill_pairs: float, num_decodes: int, ctx_sum: float
    ) -> float:
        """Seconds the step keeps the GPUs at their limit: the larger of its compute and its
        memory time at datasheet peak (the attributes are seconds per unit)."""
        compute = (prefill_tokens + num_decodes) * self._flops_tok + (
            prefill_pairs + ctx_sum
        ) * self._attn_flops
        memory = self._weights + (ctx_sum + prefill_tokens) * self._kv_bytes
        return compute if compute > memory else memory

    def utilisation(
        self, prefill_tokens: int, prefill_pairs: float, num_decodes: int, ctx_sum: float, dt: float
    ) -> float:
        """Roofline utilisation of one step (0..1)."""
        if dt <= 0:
            return 0.0
        u = self._busy_s(prefill_tokens, prefill_pairs, num_decodes, ctx_sum) / dt
        return u if u < 1.0 else 1.0

    def energy_j(
        self, prefill_tokens: int, prefill_pairs: float, num_decodes: int, ctx_sum: float, dt: float
    ) -> float:
        """Joules of one step of ``dt`` seconds."""
        if dt <= 0:
            return 0.0
        busy = self._busy_s(prefill_tokens, prefill_pairs, num_decodes, ctx_sum)
        if busy > dt:
            busy = dt
        return self._idle_w * dt + self._busy_w * busy

    def decode_run_energy_j(
        self, num_decodes: int, ctx0: int, steps: int, span_s: float, line: tuple[float, float]
    ) -> float | None:
        """Joules of ``steps`` decode-only steps of ``num_decodes`` (>= 1) requests over
        ``span_s`` seconds, the context sum ``ctx0`` at the first step and growing by
        ``num_decodes`` a step, in O(1): the sum of :meth:`energy_j` over the steps, in closed
        form. ``line`` is the step time's ``(a, b)`` (``a + ctx * b`` seconds, the step model's
        ``decode_line``; the first step may be longer, by its swap time). None when a step's
        busy time could exceed its duration (utilisation capped at 1): sum the steps instead.

        Busy time is the larger of two lines in the step index (compute and memory); it is
        convex, the step time is linear, so the busy time is below the step time at every step
        when it is at the first and the last. The sum of the larger line is split where the
        two cross."""
        n = num_decodes
        a, b = line
        c1, m1 = n * self._attn_flops, n * self._kv_bytes  # growth a step
        c0 = n * self._flops_tok + ctx0 * self._attn_flops  # compute time at step 0
        m0 = self._weights + ctx0 * self._kv_bytes  # memory time at step 0
        last = steps - 1
        cl, ml = c0 + last * c1, m0 + last * m1  # ... at the last step
        if (c0 if c0 > m0 else m0) > a + ctx0 * b or (cl if cl > ml else ml) > a + (
            ctx0 + n * last
        ) * b:
            return None
        tri = last * steps / 2  # sum of the step indices
        if c0 <= m0 and cl <= ml:  # memory-bound throughout (small decode batches)
            busy = steps * m0 + m1 * tri
        elif c0 >= m0 and cl >= ml:  # compute-bound throughout
            busy = steps * c0 + c1 * tri
        else:  # the lines cross at step x: the larger one on each side
            x = (m0 - c0) / (c1 - m1)
            if c1 > m1:  # memory first, compute from step jc on
                jc = min(max(math.ceil(x), 0), steps)
                p0, p1, q0, q1 = m0, m1, c0, c1
            else:
                jc = min(max(math.floor(x) + 1, 0), steps)
                p0, p1, q0, q1 = c0, c1, m0, m1
            # steps 0..jc-1 on the first line, jc..steps-1 on the second
            busy = jc * p0 + p1 * ((jc - 1) * jc / 2)
            busy += (steps - jc) * q0 + q1 * ((jc + steps - 1) * (steps - jc) / 2)
        return self._idle_w * span_s + self._busy_w * busy

    def decode_energy_j(self, num_decodes: int, ctx_sums: np.ndarray, dts: np.ndarray) -> float:
        """Joules of a run of decode-only steps (one context sum and duration per step)."""
        if num_decodes == 0 or len(dts) == 0:
            return float(np.sum(dts)) * self._idle_w
        compute = num_decodes * self._flops_tok + ctx_sums * self._attn_flops
        memory = self._weights + ctx_sums * self._kv_bytes
        u = np.minimum(np.maximum(compute, memory) / np.maximum(dts, 1e-30), 1.0)
        return float(np.sum((self._idle_w + self._busy_w * u) * dts))
