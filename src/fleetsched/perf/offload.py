"""CPU offload with hybrid attention (APEX): KV cache that does not fit on the GPU lives in host
memory, and the decode attention over it runs on the CPU while the GPU computes the rest.

Source: Fan, Zhang, Li and Nikolopoulos, "APEX: Asynchronous Parallel CPU-GPU Execution for
Online LLM Inference on Constrained GPUs", arXiv:2506.03296 (v4). The GPU runs every linear layer
and the attention of GPU-resident requests; the CPU runs decode attention over host-resident KV
(memory-bandwidth bound on both devices, where the CPU-GPU gap is smallest); each offloaded
token's query, key and value cross PCIe to the host and its attention output comes back. APEX
"predicts the execution times of CPU and GPU subtasks" and overlaps them without splitting the
batch (its Asynchronous Overlap); the dispatch policy is ``apex`` admission
(:mod:`fleetsched.policies.engine.apex`).

A decode-heavy step with ``ctx`` tokens of decode context, ``G`` of which fit in GPU KV:

    host    = max(0, ctx - G)                       context whose KV is in host memory
    n_host  = n * host / ctx                        decoding tokens attending on the CPU
    gpu     = step_time(prefill, pairs, n, ctx - host)    (the GPU model: every linear layer)
    cpu     = host * max(kv_bytes / (host_bw * eff), 4 L H D / host_flops)
              + n_host * (L (H + 2 H_kv) D * dtype) / pcie        q, k, v to the host
    step    = max(gpu, cpu) (overlap)  or  gpu + cpu (no overlap: the GPU waits)

Which requests are on the host does not change the step (attention is linear in context), so
the model tracks the host's share of context, not requests (``n_host`` spreads the decodes in
proportion). Without host context the step is the GPU model's, bit for bit. The two pieces are
each affine in the context sum, so a decode-only step is piecewise affine (``max`` of two) and
``decode_step_times`` computes the same floating-point operations as ``step_time``.
Not modelled: copying a prefill's KV to the host (APEX targets short prefills and long decodes),
the attention outputs' return trip (the smaller direction of a full-duplex link), CPU
scheduling overhead, and which requests the real scheduler keeps on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fleetsched.errors import InputError

if TYPE_CHECKING:
    from fleetsched.perf.step_model import StepTimeModel


@dataclass(frozen=True, slots=True)
class HostAttention:
    """Per-token costs of decode attention on the host: ``ctx_s`` per token of host context,
    ``token_s`` per decoding token attending there (its q, k, v over PCIe)."""

    ctx_s: float
    token_s: float

    def __post_init__(self) -> None:
        for field in ("ctx_s", "token_s"):
            v = getattr(self, field)
            if not (isinstance(v, int | float) and 0 <= v < float("inf")):
                raise InputError(f"{field} must be a finite number >= 0, got {v!r}")


def host_attention(
    *,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    kv_bytes_per_token: float,
    dtype_bytes: int,
    host_mem_bw_bytes_s: float,
    host_cpu_flops: float,
    host_link_bw_bytes_s: float,
    bandwidth_efficiency: float,
) -> HostAttention:
    """The CPU's per-token costs (module docstring): reading the KV at ``bandwidth_efficiency``
    of the host's memory bandwidth or computing ``4 L H D`` FLOPs per token of context at its
    vector peak, whichever is slower; each decoding token's q, k, v over the PCIe link."""
    if not (host_mem_bw_bytes_s > 0 and host_cpu_flops > 0 and host_link_bw_bytes_s > 0):
        raise InputError(
            "CPU offload needs the host's memory bandwidth, CPU FLOPS and PCIe bandwidth "
            "(> 0); set offload.host_mem_gb_s and offload.host_cpu_tflops for this GPU"
        )
    read = kv_bytes_per_token / (host_mem_bw_bytes_s * bandwidth_efficiency)
    flops = 4 * layers * heads * head_dim / host_cpu_flops
    qkv = layers * (heads + 2 * kv_heads) * head_dim * dtype_bytes
    return HostAttention(ctx_s=max(read, flops), token_s=qkv / host_link_bw_bytes_s)


class HybridStepModel:
    """A GPU step-time model plus CPU attention over the context beyond ``gpu_ctx_tokens``
    (module docstring). ``overlap``: CPU and GPU run in parallel (APEX), else one after the
    other."""

    __slots__ = ("gpu_ctx_tokens", "host", "inner", "overlap")

    def __init__(
        self,
        inner: StepTimeModel,
        gpu_ctx_tokens: int,
        host: HostAttention,
        overlap: bool = True,
    ) -> None:
        if not (isinstance(gpu_ctx_tokens, int) and gpu_ctx_tokens >= 0):
            raise InputError(f"gpu_ctx_tokens must be an integer >= 0, got {gpu_ctx_tokens!r}")
        self.inner = inner
        self.gpu_ctx_tokens = gpu_ctx_tokens
        self.host = host
        self.overlap = overlap

    def __getattr__(self, name: str) -> object:
        # precision, params, kv_bytes_per_token_per_gpu, ... of the GPU model
        return getattr(self.inner, name)

    def parts(
        self, prefill_tokens: int, prefill_attn_pairs: float, num_decodes: int, decode_ctx_sum: int
    ) -> tuple[float, float]:
        """(GPU seconds, CPU seconds) of a step; the step is their max (or sum)."""
        g = self.gpu_ctx_tokens
        host = decode_ctx_sum - g if decode_ctx_sum > g else 0
        gpu = self.inner.step_time(
            prefill_tokens, prefill_attn_pairs, num_decodes, decode_ctx_sum - host
        )
        if not host:
            return gpu, 0.0
        n_host = num_decodes * host / decode_ctx_sum
        return gpu, host * self.host.ctx_s + n_host * self.host.token_s

    def step_time(
        self, prefill_tokens: int, prefill_attn_pairs: float, num_decodes: int, decode_ctx_sum: int
    ) -> float:
        gpu, cpu = self.parts(prefill_tokens, prefill_attn_pairs, num_decodes, decode_ctx_sum)
        if not cpu:
            return gpu
        if self.overlap:
            return gpu if gpu > cpu else cpu
        return gpu + cpu

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray:
        """Element ``i`` is bitwise ``step_time(0, 0.0, num_decodes, int(ctx_sums[i]))``."""
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        g = float(self.gpu_ctx_tokens)
        host = np.where(ctx > g, ctx - g, 0.0)
        gpu = self.inner.decode_step_times(num_decodes, ctx - host)
        if not host.any():
            return gpu
        with np.errstate(invalid="ignore", divide="ignore"):
            n_host = num_decodes * host / ctx
        cpu = host * self.host.ctx_s + n_host * self.host.token_s
        cpu = np.where(host > 0, cpu, 0.0)  # no host context: the GPU step alone, as above
        return np.asarray(np.maximum(gpu, cpu) if self.overlap else gpu + cpu, dtype=np.float64)
