"""Roofline step-time model for one engine step, and KV-cache capacity.

One step runs one forward pass over a batch mixing prefill chunks and decode tokens. Its time
(per GPU of a tensor-parallel group of ``tp`` GPUs; every term below is already per GPU):

    T       = prefill_tokens + num_decodes                 tokens of the forward pass
    S       = num_decodes + (1 if prefill_tokens else 0)   positions the LM head runs on
    gemm(M, W, P, n) = n * gemm_latency_s
                       + max(W / tp / BW, 2 * P * (M + compute_half_tokens) / tp / F)
    linear  = gemm(T, W_layers, P_layers, 4 L) + gemm(S, W_head, P_head, 1)
    embed   = T * hidden * dtype_bytes / tp / BW           the rows of the batch's tokens
    elemw   = L * (5 * elementwise_latency_s + T * elementwise_bytes_per_token / BW_elementwise)
    prefill = 4 * L * H * D * prefill_attn_pairs / tp / F
    decode  = decode_ctx_sum * max(kv_bytes_per_token_per_gpu / BW, 4 * L * H * D / tp / F)
    comm    = 2 L * (allreduce_latency_s + T * hidden * dtype_bytes * 2 (tp - 1) / tp / IC)
              (tp > 1 only)
    step    = linear + embed + elemw + prefill + decode + comm + overhead_s

with F = bf16_flops * compute_efficiency, BW = mem_bw * bandwidth_efficiency, BW_elementwise =
mem_bw * elementwise_bandwidth_efficiency, IC = interconnect_bw * allreduce_bandwidth_efficiency,
L layers, H query heads, D head_dim. ``W_layers`` / ``P_layers`` are the bytes / parameters of
the transformer layers (every parameter but the embedding table and LM head; for a mixture of
experts the weights read are ``dense + experts * min(E, T k) / E``), ``W_head`` / ``P_head`` those
of the LM head (``vocab * hidden``; with tied embeddings it is the embedding table, read once).
The knobs (:class:`~fleetsched.perf.calibration.PerfParams`) default to the values calibrated
for the GPU (``calibration.py``). An empty step (no tokens) takes 0 s.

Approximations, all deliberate:

- Linear layers read every weight once per step. ``compute_half_tokens`` makes small GEMMs
  slower than the peak rate (a GEMM of ``M`` tokens costs as if it had ``M +
  compute_half_tokens``), fitted to measured kernels; ``gemm_latency_s`` is each GEMM kernel's
  fixed time (4 per layer: QKV, O, gate-up, down; 1 for the LM head).
- The embedding lookup has no FLOPs; it reads the batch's rows only. The LM head is a real GEMM
  over the positions that produce logits. vLLM v1 computes logits at the last scheduled
  position of *every* request in the batch (``logits_indices = query_start_loc[1:] - 1`` in
  ``gpu_model_runner``, partial prefill chunks included, their samples discarded); the step's
  inputs do not say how many prefill chunks it holds, so ``S`` counts one for any prefill. Each
  missed chunk is ``2 * hidden * vocab`` FLOPs (~1 us on an H100 for Llama-3.1-8B), next to a
  prefill step of milliseconds.
- Elementwise kernels (two RMSNorms, rotary, gated activation, residual add: 5 per layer as
  Vidur profiles them) move ``2 * (7 hidden + 3 mlp k / tp + 2 (H + H_kv) D / tp)`` bytes per
  token per layer (``k`` experts per token).
- Mixture of experts: the weights read assume each token's ``k`` experts are distinct from the
  others' (no-collision upper bound), so they are pessimistic for a few tokens and exact once
  ``T * k >= E``.
- Attention FLOPs are 4 * L * H * D per query-key pair (QK^T and PV, 2 FLOPs per MAC), at the
  GEMMs' ``compute_efficiency``; prefill is compute-bound and causal (``prefill_attn_pairs``
  counts each chunk's pairs, ``chunk * (context_before + (chunk + 1) / 2)``); decode reads the
  request's whole KV. Re-reading a cached prefix's KV during prefill is ignored.
- KV heads are split across TP ranks; when ``tp > num_kv_heads`` each rank holds one full copy
  of a KV head (as vLLM does), so KV bytes per GPU stop shrinking.
- Terms do not overlap; all-reduce is a ring, two per layer (after attention and after the MLP),
  each of ``T * hidden * dtype_bytes`` bytes.

Precision and KV compression (:class:`~fleetsched.perf.precision.Precision`; the default, bf16
everywhere and no compression, is the formula above unchanged):

    W_layers = layer parameters * bytes of weight_dtype (the embedding and LM head stay bf16)
    F        = peak(activation_dtype) * compute_efficiency      for the layers' GEMMs
    pad      = compute_half_tokens * bytes of weight_dtype / 2  for the layers' GEMMs
    F_attn   = peak(fp8 if kv_dtype is fp8 and the GPU has FP8 tensor cores else bf16)
               * compute_efficiency                              for prefill and decode attention
    decode   = decode_ctx_sum * m * max(kv_bytes(kv_dtype) * (1 + kv_dequant_overhead) / BW,
                                        4 * L * H * D / tp / F_attn)
    reclaim  = prefill_tokens * f / (1 - f) * (2 * P_layers / tp / F + per-token terms)

where ``m`` is the KV compression's memory fraction (1 without) and ``f`` its reclaim fraction
(:mod:`fleetsched.perf.kv_compression`); ``reclaim`` is ``f`` of a compute-bound prefill's time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fleetsched.errors import InputError
from fleetsched.perf import precision as _precision
from fleetsched.perf.calibration import PerfParams, calibrated_params
from fleetsched.perf.hardware import GPU, GiB
from fleetsched.perf.models import ModelSpec
from fleetsched.perf.precision import DEFAULT_PRECISION, Precision, embedding_params, weight_bytes

#: Tokens of the dummy forward pass the activation reserve is sized for (vLLM's default
#: ``max_num_batched_tokens`` with chunked prefill).
ACTIVATION_PROFILE_TOKENS = 8192
#: Fixed part of the activation reserve: CUDA context, cuBLAS/NCCL workspaces, CUDA graphs.
FIXED_RESERVE_BYTES = 1 * GiB
#: GEMM kernels per transformer layer (QKV, O, gate-up, down projections).
GEMMS_PER_LAYER = 4
#: Elementwise kernels per layer (input and post-attention RMSNorm, rotary, activation, add).
ELEMENTWISE_PER_LAYER = 5


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


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int, kv_dtype: str = "bf16") -> int:
    """Bytes of KV cache one token occupies on each GPU of a ``tp`` group, at ``kv_dtype``
    (:func:`fleetsched.perf.precision.kv_bytes_per_token_per_gpu`; uncompressed)."""
    return _precision.kv_bytes_per_token_per_gpu(model, tp, kv_dtype)


def gemm_time_s(
    tokens: Any, weight_bytes: Any, flops_per_token: Any, kernels: Any, gpu: GPU, p: PerfParams
) -> Any:
    """Seconds of ``kernels`` GEMMs over ``tokens`` tokens that read ``weight_bytes`` once and do
    ``flops_per_token`` FLOPs per token (one GPU's share):
    ``kernels * gemm_latency_s + max(weights / BW, (tokens + compute_half_tokens) * flops / F)``.

    Works on floats and on numpy arrays (``fleetsched perf check`` evaluates it over every
    profiled row); :class:`RooflineModel` folds the same expression into its constants.
    """
    weights_s = weight_bytes / (gpu.mem_bw_bytes_s * p.bandwidth_efficiency)
    flops = gpu.bf16_flops * p.compute_efficiency
    flops_s = (tokens + p.compute_half_tokens) * flops_per_token / flops
    return kernels * p.gemm_latency_s + np.maximum(weights_s, flops_s)


def elementwise_time_s(
    tokens: Any, bytes_per_token: Any, kernels: Any, gpu: GPU, p: PerfParams
) -> Any:
    """Seconds of ``kernels`` elementwise kernels moving ``bytes_per_token`` per token:
    ``kernels * elementwise_latency_s + tokens * bytes / BW_elementwise`` (floats or arrays)."""
    bw = gpu.mem_bw_bytes_s * p.elementwise_bandwidth_efficiency
    return kernels * p.elementwise_latency_s + tokens * bytes_per_token / bw


def elementwise_bytes_per_token(
    *,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    mlp: int,
    tp: int,
    dtype_bytes: int = 2,
    gated: bool = True,
    norms: int = 2,
    adds: int = 1,
    rotary: bool = True,
    activation: bool = True,
) -> int:
    """Bytes one token moves per layer through the elementwise kernels, on one GPU of ``tp``.

    Each RMSNorm reads and writes ``hidden`` values (replicated on every rank); a residual add
    reads two and writes one; the activation reads ``2 * mlp`` (gated) or ``mlp`` values and
    writes ``mlp``, sharded; rotary reads and writes the query and key heads, sharded.
    """
    values = (2 * norms + 3 * adds) * hidden
    if activation:
        values += (3 if gated else 2) * mlp // tp
    if rotary:
        values += 2 * (heads + kv_heads) * head_dim // tp
    return values * dtype_bytes


class RooflineModel:
    """Step time of one engine step from datasheet peaks and calibrated knobs (formula in the
    module docstring). ``knobs`` are :class:`~fleetsched.perf.calibration.PerfParams` fields;
    each one left out or ``None`` takes the GPU's calibrated value.

    ``step_time`` and ``decode_step_times`` share one formula, so
    ``decode_step_times(n, c)[i]`` is bitwise ``step_time(0, 0.0, n, int(c[i]))``, and a
    decode-only step is ``base(n) + decode_ctx_sum * slope``: affine in the context sum.
    Inputs are trusted (non-negative counts); this is the simulator's hot path.
    """

    __slots__ = (
        "_attn_flop_s",
        "_ctx_s",
        "_expert_weights_s",
        "_experts",
        "_experts_per_token",
        "_fixed_s",
        "_head_flop_s",
        "_head_weights_s",
        "_layer_flop_s",
        "_layer_weights_s",
        "_pad",
        "_pad_layers",
        "_reclaim_s",
        "_token_s",
        "gpu",
        "model",
        "params",
        "precision",
        "tp",
    )

    def __init__(
        self,
        gpu: GPU,
        model: ModelSpec,
        tp: int = 1,
        precision: Precision | None = None,
        **knobs: float | None,
    ) -> None:
        check_tp(model, tp)
        p = calibrated_params(gpu.name, **knobs)
        q = precision or DEFAULT_PRECISION
        q.check_gpu(gpu)
        self.gpu = gpu
        self.model = model
        self.tp = tp
        self.params = p
        self.precision = q

        flops = gpu.bf16_flops * p.compute_efficiency  # per GPU: LM head (kept in bf16)
        gemm_flops = gpu.peak(q.gemm_dtype) * p.compute_efficiency  # the layers' GEMMs
        attn_flops = gpu.peak(q.attention_dtype(gpu)) * p.compute_efficiency
        bw = gpu.mem_bw_bytes_s * p.bandwidth_efficiency  # per GPU
        dtype = model.dtype_bytes
        wdtype = (
            dtype if q.weight_dtype == "bf16" else float(_precision.WEIGHT_BYTES[q.weight_dtype])
        )
        L = model.num_layers
        table = model.vocab_size * model.hidden_size  # embedding table == LM head, parameters
        tables = embedding_params(model)
        # Per-GPU seconds per unit of each input; fixed once so both methods use equal floats.
        self._layer_weights_s = (model.dense_params - tables) * wdtype / tp / bw
        self._expert_weights_s = model.expert_params * wdtype / tp / bw
        self._experts = float(model.num_experts)
        self._experts_per_token = float(model.experts_per_token)
        self._layer_flop_s = 2 * (model.active_params - tables) / tp / gemm_flops
        self._head_weights_s = table * dtype / tp / bw
        self._head_flop_s = 2 * table / tp / flops
        self._pad = p.compute_half_tokens
        # Small-GEMM padding is a cost per weight staged through the tensor cores: a kernel
        # reading fewer bytes per weight pads proportionally less (docs/perf.md).
        self._pad_layers = p.compute_half_tokens * (wdtype / dtype)
        attn_flops_per_pair = 4 * L * model.num_heads * model.head_dim
        self._attn_flop_s = attn_flops_per_pair / tp / attn_flops
        kv_read_s = kv_bytes_per_token_per_gpu(model, tp, q.kv_dtype) / bw
        if q.kv_dtype != "bf16":
            kv_read_s *= 1 + q.dequant_overhead(gpu)
        self._ctx_s = max(kv_read_s, self._attn_flop_s)
        if q.kv_compression is not None:
            self._ctx_s *= q.kv_memory_fraction
        elementwise = elementwise_bytes_per_token(
            hidden=model.hidden_size,
            heads=model.num_heads,
            kv_heads=model.num_kv_heads,
            head_dim=model.head_dim,
            mlp=model.intermediate_size * model.experts_per_token,
            tp=tp,
            dtype_bytes=dtype,
        )
        token_s = model.hidden_size * dtype / tp / bw  # embedding rows
        token_s += L * elementwise_time_s(1, elementwise, 0, gpu, p)
        fixed_s = (GEMMS_PER_LAYER * L + 1) * p.gemm_latency_s
        fixed_s += L * ELEMENTWISE_PER_LAYER * p.elementwise_latency_s
        if tp > 1:
            ring = 2 * (tp - 1) / tp
            link = gpu.interconnect_bw_bytes_s * p.allreduce_bandwidth_efficiency
            token_s += 2 * L * model.hidden_size * dtype * ring / link
            fixed_s += 2 * L * p.allreduce_latency_s
        self._token_s = token_s
        self._fixed_s = fixed_s + p.overhead_s
        f = q.reclaim_fraction
        self._reclaim_s = f / (1 - f) * (self._layer_flop_s + token_s) if f else 0.0

    def __repr__(self) -> str:
        return (
            f"RooflineModel(gpu={self.gpu.name!r}, model={self.model.name!r}, tp={self.tp}, "
            f"params={self.params!r}"
            + ("" if self.precision.is_default else f", precision={self.precision!r}")
            + ")"
        )

    @property
    def kv_bytes_per_token_per_gpu(self) -> int:
        """Bytes of KV cache one token occupies on each GPU of the TP group (before
        compression)."""
        return kv_bytes_per_token_per_gpu(self.model, self.tp, self.precision.kv_dtype)

    def linear_time_s(self, tokens: int) -> float:
        """Seconds of one forward pass's transformer-layer GEMMs (QKV, O, gate-up, down of
        every layer; no LM head) over ``tokens`` tokens: the ``gemm`` term of the formula, at
        the model's precision (for comparing kernels across precisions)."""
        weights = self._layer_weights_s
        if self._expert_weights_s:
            touched = min(self._experts, tokens * self._experts_per_token) / self._experts
            weights += self._expert_weights_s * touched
        flops = (tokens + self._pad_layers) * self._layer_flop_s
        kernels = GEMMS_PER_LAYER * self.model.num_layers * self.params.gemm_latency_s
        return kernels + max(weights, flops)

    def _base(self, tokens: float, sampled: float, pairs: float) -> float:
        """Everything but the decode-attention term: the one formula of both methods (keep
        its operation order fixed). ``max`` is spelled as conditionals for speed."""
        weights = self._layer_weights_s
        if self._expert_weights_s:  # mixture of experts: the experts the tokens can touch
            touched = min(self._experts, tokens * self._experts_per_token) / self._experts
            weights += self._expert_weights_s * touched
        flops = (tokens + self._pad_layers) * self._layer_flop_s
        head = (sampled + self._pad) * self._head_flop_s
        if head < self._head_weights_s:
            head = self._head_weights_s
        return (
            (weights if weights > flops else flops)
            + head
            + pairs * self._attn_flop_s
            + tokens * self._token_s
            + self._fixed_s
        )

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
        sampled = num_decodes + 1 if prefill_tokens else num_decodes
        # ints mix with floats exactly as float(int) would (counts are far below 2**53)
        base = self._base(tokens, sampled, prefill_attn_pairs)
        if self._reclaim_s:  # KV compression reclaiming pages after prefill (0 for decodes)
            base += prefill_tokens * self._reclaim_s
        return base + decode_ctx_sum * self._ctx_s

    def decode_line(self, num_decodes: int) -> tuple[float, float]:
        """(a, b) such that a decode-only step of ``num_decodes`` (>= 1) requests with context
        sum ``c`` (an int) takes ``a + c * b`` seconds, bitwise equal to ``step_time``."""
        return self._base(num_decodes, num_decodes, 0.0), self._ctx_s

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray:
        """Seconds of decode-only steps of ``num_decodes`` requests, one per context sum.

        ``ctx_sums`` holds integers (any integer or float dtype); element ``i`` of the result is
        bitwise equal to ``step_time(0, 0.0, num_decodes, int(ctx_sums[i]))``.
        """
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if num_decodes == 0:
            return np.zeros(ctx.shape, dtype=np.float64)
        base = self._base(num_decodes, num_decodes, 0.0)
        return np.asarray(base + ctx * self._ctx_s, dtype=np.float64)


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
    precision: Precision | None = None,
) -> int:
    """KV-cache blocks that fit on each GPU of a ``tp`` group, like vLLM's ``num_gpu_blocks``.

    ``floor((mem_bytes * utilisation - weight_bytes / tp - reserve)
            / (kv_bytes_per_token_per_gpu * m * block_tokens))``; ``reserve`` defaults to
    :func:`default_activation_reserve_bytes`. ``precision`` sets the weights' and KV cache's
    bytes and ``m``, the KV compression's memory fraction (1 without): a compressed block holds
    ``block_tokens`` tokens of context in ``m`` times the bytes. Raises :class:`InputError` if not
    even one block fits.
    """
    q = precision or DEFAULT_PRECISION
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
    weights = weight_bytes(model, q.weight_dtype) / tp
    free = usable - weights - activation_reserve_bytes
    block_bytes = kv_bytes_per_token_per_gpu(model, tp, q.kv_dtype) * block_tokens
    if q.kv_compression is not None:
        block_bytes *= q.kv_memory_fraction
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
