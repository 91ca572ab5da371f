"""Roofline step-time model for one engine step, and KV-cache capacity.

One step runs one forward pass over a batch mixing prefill chunks and decode tokens. Its time
(per GPU of a tensor-parallel group of ``tp`` GPUs; every term below is already per GPU):

    tokens  = prefill_tokens + num_decodes
    linear  = max(W / tp / BW,  2 * active_params * tokens / tp / F)
    prefill = 4 * L * H * D * prefill_attn_pairs / tp / F
    decode  = max(kv_bytes_per_token_per_gpu * decode_ctx_sum / BW,
                  4 * L * H * D * decode_ctx_sum / tp / F)
    comm    = 2 * L * (latency + tokens * hidden * dtype_bytes * 2 (tp - 1) / tp / IC)   [tp > 1]
    step    = linear + prefill + decode + comm + overhead_s

with F = bf16_flops * compute_efficiency, BW = mem_bw * bandwidth_efficiency, IC the per-GPU
one-direction interconnect bandwidth, L layers, H query heads, D head_dim. An empty step (no
tokens) takes 0 s.

Approximations, all deliberate:

- Linear layers read every weight once per step (``W``); their FLOPs use ``active_params``
  including the embedding table and LM head for every token (vLLM computes logits only for
  sampled positions; the gap is ~6% of FLOPs for Llama-3.1-8B).
- Mixture of experts: a step reads the dense part plus the experts its tokens can touch,
  ``W = dense + experts * min(E, tokens * k) / E``. This is the no-collision upper bound (each
  token's k experts assumed distinct from the others'); real routing overlaps, so it is
  pessimistic for batches of a few tokens and exact once ``tokens * k >= E``.
- Attention FLOPs are 4 * L * H * D per query-key pair (QK^T and PV, 2 FLOPs per MAC);
  prefill is compute-bound and causal (``prefill_attn_pairs`` counts each chunk's pairs,
  ``chunk * (context_before + (chunk + 1) / 2)``); decode reads the request's whole KV.
  Re-reading a cached prefix's KV during prefill is ignored.
- KV heads are split across TP ranks; when ``tp > num_kv_heads`` each rank holds one full copy
  of a KV head (as vLLM does), so KV bytes per GPU stop shrinking.
- Compute and memory traffic of different terms do not overlap; all-reduce is a ring, two per
  layer (after attention and after the MLP), each of ``tokens * hidden * dtype_bytes`` bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fleetsched.errors import InputError
from fleetsched.perf.hardware import GPU, GiB
from fleetsched.perf.models import ModelSpec

#: Tokens of the dummy forward pass the activation reserve is sized for (vLLM's default
#: ``max_num_batched_tokens`` with chunked prefill).
ACTIVATION_PROFILE_TOKENS = 8192
#: Fixed part of the activation reserve: CUDA context, cuBLAS/NCCL workspaces, CUDA graphs.
FIXED_RESERVE_BYTES = 1 * GiB


def check_tp(model: ModelSpec, tp: int) -> None:
    """Raise :class:`InputError` unless ``tp`` can shard ``model``'s attention heads.

    Same rule as vLLM: query heads divide evenly; KV heads divide evenly or, when there are
    fewer KV heads than ranks, ``tp`` is a multiple of them (each KV head is replicated).
    """
    if not (isinstance(tp, int) and tp >= 1):
        raise InputError(f"tp must be an integer >= 1, got {tp!r}")
    if model.num_heads % tp:
        raise InputError(
            f"tp={tp} does not divide the {model.num_heads} attention heads of {model.name}"
        )
    kv = model.num_kv_heads
    if kv % tp and tp % kv:
        raise InputError(f"tp={tp} and the {kv} KV heads of {model.name} do not divide one another")


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each of ``tp`` ranks stores (at least one: heads are replicated, not split)."""
    return max(1, model.num_kv_heads // tp)


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int) -> int:
    """Bytes of KV cache one token occupies on each GPU of a ``tp`` group."""
    return 2 * model.num_layers * kv_heads_per_gpu(model, tp) * model.head_dim * model.dtype_bytes


class RooflineModel:
    """Step time of one engine step from datasheet peaks (formula in the module docstring).

    ``step_time`` and ``decode_step_times`` share one formula, so
    ``decode_step_times(n, c)[i]`` is bitwise ``step_time(0, 0.0, n, int(c[i]))``.
    Inputs are trusted (non-negative counts); this is the simulator's hot path.
    """

    __slots__ = (
        "_allreduce_fixed_s",
        "_allreduce_token_s",
        "_attn_flop_s",
        "_dense_weights_s",
        "_expert_weights_s",
        "_experts",
        "_experts_per_token",
        "_kv_read_s",
        "_linear_flop_s",
        "allreduce_latency_s",
        "bandwidth_efficiency",
        "compute_efficiency",
        "gpu",
        "model",
        "overhead_s",
        "tp",
    )

    def __init__(
        self,
        gpu: GPU,
        model: ModelSpec,
        tp: int = 1,
        overhead_s: float = 0.0015,
        compute_efficiency: float = 1.0,
        bandwidth_efficiency: float = 1.0,
        allreduce_latency_s: float = 5e-6,
    ) -> None:
        check_tp(model, tp)
        for name, value in (
            ("compute_efficiency", compute_efficiency),
            ("bandwidth_efficiency", bandwidth_efficiency),
        ):
            if not 0 < value <= 1:
                raise InputError(f"{name} must be in (0, 1], got {value!r}")
        for name, value in (
            ("overhead_s", overhead_s),
            ("allreduce_latency_s", allreduce_latency_s),
        ):
            if not (0 <= value < math.inf):
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        self.gpu = gpu
        self.model = model
        self.tp = tp
        self.overhead_s = float(overhead_s)
        self.compute_efficiency = float(compute_efficiency)
        self.bandwidth_efficiency = float(bandwidth_efficiency)
        self.allreduce_latency_s = float(allreduce_latency_s)

        flops = gpu.bf16_flops * compute_efficiency  # per GPU
        bw = gpu.mem_bw_bytes_s * bandwidth_efficiency  # per GPU
        attn_flops_per_pair = 4 * model.num_layers * model.num_heads * model.head_dim
        # Per-GPU seconds per unit of each input; fixed once so both methods use equal floats.
        self._dense_weights_s = model.dense_params * model.dtype_bytes / tp / bw
        self._expert_weights_s = model.expert_params * model.dtype_bytes / tp / bw
        self._experts = float(model.num_experts)
        self._experts_per_token = float(model.experts_per_token)
        self._linear_flop_s = 2 * model.active_params / tp / flops
        self._attn_flop_s = attn_flops_per_pair / tp / flops
        self._kv_read_s = kv_bytes_per_token_per_gpu(model, tp) / bw
        if tp > 1:
            ring = 2 * (tp - 1) / tp
            per_token_bytes = model.hidden_size * model.dtype_bytes * ring
            self._allreduce_token_s = (
                2 * model.num_layers * per_token_bytes / (gpu.interconnect_bw_bytes_s)
            )
            self._allreduce_fixed_s = 2 * model.num_layers * self.allreduce_latency_s
        else:
            self._allreduce_token_s = 0.0
            self._allreduce_fixed_s = 0.0

    def __repr__(self) -> str:
        return (
            f"RooflineModel(gpu={self.gpu.name!r}, model={self.model.name!r}, tp={self.tp}, "
            f"overhead_s={self.overhead_s}, compute_efficiency={self.compute_efficiency}, "
            f"bandwidth_efficiency={self.bandwidth_efficiency}, "
            f"allreduce_latency_s={self.allreduce_latency_s})"
        )

    @property
    def kv_bytes_per_token_per_gpu(self) -> int:
        """Bytes of KV cache one token occupies on each GPU of the TP group."""
        return kv_bytes_per_token_per_gpu(self.model, self.tp)

    def _formula(self, tokens: float, pairs: float, ctx: Any, maximum: Callable[..., Any]) -> Any:
        """The one step-time formula. ``ctx`` is a float or a float64 array; ``maximum`` is
        ``max`` or ``np.maximum`` — both return one of their operands exactly, so the two
        choices give bitwise-equal results. Keep the operation order fixed."""
        touched = min(self._experts, tokens * self._experts_per_token) / self._experts
        weights_s = self._dense_weights_s + self._expert_weights_s * touched
        linear_s = maximum(weights_s, tokens * self._linear_flop_s)
        prefill_attn_s = pairs * self._attn_flop_s
        decode_attn_s = maximum(ctx * self._kv_read_s, ctx * self._attn_flop_s)
        comm_s = self._allreduce_fixed_s + tokens * self._allreduce_token_s
        return linear_s + prefill_attn_s + decode_attn_s + comm_s + self.overhead_s

    def step_time(
        self,
        prefill_tokens: int,
        prefill_attn_pairs: float,
        num_decodes: int,
        decode_ctx_sum: int,
    ) -> float:
        """Seconds for one step over a batch (see the module docstring for the inputs)."""
        tokens = prefill_tokens + num_decodes
        if tokens == 0:
            return 0.0
        return self._formula(float(tokens), float(prefill_attn_pairs), float(decode_ctx_sum), max)

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray:
        """Seconds of decode-only steps of ``num_decodes`` requests, one per context sum.

        ``ctx_sums`` holds integers (any integer or float dtype); element ``i`` of the result is
        bitwise equal to ``step_time(0, 0.0, num_decodes, int(ctx_sums[i]))``.
        """
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if num_decodes == 0:
            return np.zeros(ctx.shape, dtype=np.float64)
        out = self._formula(float(0 + num_decodes), 0.0, ctx, np.maximum)
        return np.asarray(out, dtype=np.float64)


def default_activation_reserve_bytes(
    model: ModelSpec, tp: int = 1, max_num_batched_tokens: int = ACTIVATION_PROFILE_TOKENS
) -> int:
    """Memory per GPU kept free of KV cache for activations and runtime buffers (a heuristic).

    ``1 GiB`` (CUDA context, cuBLAS/NCCL workspaces, CUDA graphs) plus the largest activations of
    one forward pass over ``max_num_batched_tokens`` tokens: the MLP's gate and up projections
    (``2 * intermediate_size``) and a few hidden-size buffers (``4 * hidden_size``), in the model
    dtype, sharded over ``tp``. For Llama-3.1-8B on one GPU this is 1.69 GiB, in line with the
    ~1.2 GiB activation peak plus non-torch memory vLLM reports when profiling.
    """
    per_token = (2 * model.intermediate_size + 4 * model.hidden_size) * model.dtype_bytes
    return FIXED_RESERVE_BYTES + max_num_batched_tokens * per_token // tp


def kv_capacity_blocks(
    gpu: GPU,
    model: ModelSpec,
    tp: int = 1,
    gpu_memory_utilization: float = 0.9,
    block_tokens: int = 16,
    activation_reserve_bytes: int | None = None,
) -> int:
    """KV-cache blocks that fit on each GPU of a ``tp`` group, like vLLM's ``num_gpu_blocks``.

    ``floor((mem_bytes * utilisation - weight_bytes / tp - reserve)
            / (kv_bytes_per_token_per_gpu * block_tokens))``; ``reserve`` defaults to
    :func:`default_activation_reserve_bytes`. Raises :class:`InputError` if not even one block
    fits.
    """
    check_tp(model, tp)
    if not 0 < gpu_memory_utilization <= 1:
        raise InputError(
            f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}"
        )
    if not (isinstance(block_tokens, int) and block_tokens >= 1):
        raise InputError(f"block_tokens must be an integer >= 1, got {block_tokens!r}")
    if activation_reserve_bytes is None:
        activation_reserve_bytes = default_activation_reserve_bytes(model, tp)
    elif activation_reserve_bytes < 0:
        raise InputError(f"activation_reserve_bytes must be >= 0, got {activation_reserve_bytes}")
    usable = gpu.mem_bytes * gpu_memory_utilization
    weights = model.weight_bytes / tp
    free = usable - weights - activation_reserve_bytes
    block_bytes = kv_bytes_per_token_per_gpu(model, tp) * block_tokens
    blocks = math.floor(free / block_bytes) if free > 0 else 0
    if blocks < 1:
        raise InputError(
            f"{model.name} does not fit on {gpu.name} with tp={tp}: "
            f"{gpu_memory_utilization:g} x {gpu.mem_bytes / GiB:.1f} GiB = "
            f"{usable / GiB:.1f} GiB usable per GPU, weights take {weights / GiB:.1f} GiB and "
            f"the activation reserve {activation_reserve_bytes / GiB:.1f} GiB, leaving "
            f"{free / GiB:.2f} GiB for KV cache (one block needs {block_bytes / GiB:.4f} GiB); "
            "use a larger tp, a bigger GPU or a higher gpu_memory_utilization"
        )
    return blocks
