"""A determinism-required traffic class, and the step-time cost of each way to serve it.

Source: Gond, Kamath, Ramjee and Panwar, "LLM-42: Enabling Determinism in LLM Inference with
Verified Speculation", arXiv:2601.17768 (v2, Jan 2026). The same prompt can give different
outputs across runs because dynamic batching changes the shapes, hence the floating-point
reduction orders, of the kernels. Requests marked ``deterministic`` (``Request.deterministic``;
a synthetic tenant's ``deterministic: true``) must not vary. Three ways, the engine knob
``engine.determinism.mode``:

- ``no_batching``: deterministic requests are never batched. Each runs its own steps (a decode
  alone: ``step_time(0, 0, 1, ctx_i)``; a prefill chunk alone), sequenced with the batch of the
  others, whose step no longer holds them.
- ``batch_invariant``: batch-invariant kernels for everything (a server flag, as SGLang's
  deterministic mode and vLLM's batch-invariant mode are): every step takes ``1 + overhead``
  times as long, whatever share of the traffic needs it. Default overhead 0.45: SGLang's
  deterministic mode ran at 0.64-0.72x its normal throughput in LLM-42's offline comparison
  (ArXiv, ShareGPT and synthetic workloads; read from the paper's figure), 1 / 0.69 - 1.
- ``llm42``: decode on the normal (non-deterministic) fast path in the dynamic batch, then
  verify: every ``window`` tokens a request's candidates are replayed in a fixed-shape pass of
  ``group`` windows (``group * window`` tokens; padded when fewer requests wait, so its cost is
  fixed), tokens after a mismatch rolled back and decoded again. Per step, for ``n`` decoding
  deterministic requests with context ``c``:

      verify   = ceil(n / group) * pass_s / window + (c + n (window + 1) / 2) * pair_s
      rollback = r * (n * token_s + c * ctx_s),   r = mismatch_rate * (window - 1) / (2 window)
      extra    = (1 + r) * verify + rollback

  ``pass_s`` is a ``group * window``-token prefill-only step of the step-time model (weights,
  fixed costs, per-token work), ``pair_s`` its attention per query-key pair, ``token_s`` and
  ``ctx_s`` a decode token's marginal cost and its cost per token of context. A mismatch in a
  window (``mismatch_rate``, per window) discards on average ``(window - 1) / 2`` tokens.
  Rolled-back tokens are charged as the marginal work of decoding and verifying them again in
  the batch, not as extra steps of their request. The defaults (window 32, group 8, mismatch 5 %)
  are assumptions: the paper's values were not available.

Prefills of deterministic requests are charged under ``no_batching`` only (LLM-42 verifies
decoded tokens; batch-invariant kernels cover prefill in their overhead). Every formula is
affine in the context sums, and :meth:`DeterminismCost.decode_step_times` computes the same
floating-point operations as :meth:`DeterminismCost.step_time`, so fast-forward stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fleetsched.errors import InputError

if TYPE_CHECKING:
    from fleetsched.perf.step_model import StepTimeModel

#: ``engine.determinism.mode`` values (``none``: determinism not enforced).
DETERMINISM_MODES: tuple[str, ...] = ("none", "no_batching", "batch_invariant", "llm42")

_C = 1 << 20  # context used to read a model's cost per context token (exact for affine models)


@dataclass(frozen=True, slots=True)
class DetBatch:
    """The deterministic part of a step: decodes, their context sum, prefill chunks."""

    decodes: int = 0
    ctx: int = 0
    prefills: tuple[tuple[int, float], ...] = ()  # (tokens, attention pairs) per chunk


class DeterminismCost:
    """Step time with deterministic requests served by ``mode`` (module docstring), on top of
    ``model``."""

    __slots__ = (
        "_k",
        "_pair_s",
        "_pass_s",
        "_r",
        "_solo_base",
        "_solo_ctx",
        "_token_s",
        "group",
        "mode",
        "model",
        "window",
    )

    def __init__(
        self,
        mode: str,
        model: StepTimeModel,
        *,
        batch_invariant_overhead: float = 0.45,
        window: int = 32,
        group: int = 8,
        mismatch_rate: float = 0.05,
    ) -> None:
        if mode not in DETERMINISM_MODES or mode == "none":
            raise InputError(f"determinism mode must be one of {', '.join(DETERMINISM_MODES[1:])}")
        if not (window >= 1 and group >= 1 and 0 <= mismatch_rate <= 1):
            raise InputError("window and group must be >= 1 and mismatch_rate in [0, 1]")
        if not batch_invariant_overhead >= 0:
            raise InputError("batch_invariant_overhead must be >= 0")
        self.mode, self.model, self.window, self.group = mode, model, window, group
        self._k = 1.0 + batch_invariant_overhead
        solo = model.step_time(0, 0.0, 1, 0)
        self._solo_base = solo
        self._solo_ctx = (model.step_time(0, 0.0, 1, _C) - solo) / _C
        tokens = group * window
        self._pass_s = model.step_time(tokens, 0.0, 0, 0)
        pairs = float(tokens * _C)
        self._pair_s = (model.step_time(tokens, pairs, 0, 0) - self._pass_s) / pairs
        self._token_s = model.step_time(0, 0.0, 2, 0) - solo
        self._r = mismatch_rate * (window - 1) / (2 * window)

    def _llm42_extra(self, n: int, ctx: float | np.ndarray) -> float | np.ndarray:
        w = self.window
        passes = -(-n // self.group)
        verify = passes * self._pass_s / w + (ctx + n * (w + 1) / 2) * self._pair_s
        return (1 + self._r) * verify + self._r * (n * self._token_s + ctx * self._solo_ctx)

    def step_time(
        self,
        prefill_tokens: int,
        prefill_attn_pairs: float,
        num_decodes: int,
        ctx_sum: int,
        det: DetBatch,
    ) -> float:
        """Seconds of one engine step whose batch holds ``det`` (a part of the totals)."""
        m = self.model
        if self.mode == "batch_invariant":
            return self._k * m.step_time(prefill_tokens, prefill_attn_pairs, num_decodes, ctx_sum)
        if self.mode == "llm42":
            t = m.step_time(prefill_tokens, prefill_attn_pairs, num_decodes, ctx_sum)
            return t + self._llm42_extra(det.decodes, det.ctx) if det.decodes else t
        # no_batching: the others batched; each deterministic decode and prefill chunk alone
        if not det.decodes and not det.prefills:
            return m.step_time(prefill_tokens, prefill_attn_pairs, num_decodes, ctx_sum)
        pf = prefill_tokens - sum(c for c, _ in det.prefills)
        pairs = prefill_attn_pairs - sum(p for _, p in det.prefills)
        t = m.step_time(pf, pairs, num_decodes - det.decodes, ctx_sum - det.ctx)
        t = t + det.decodes * self._solo_base + det.ctx * self._solo_ctx
        for c, p in det.prefills:
            t += m.step_time(c, p, 0, 0)
        return t

    def decode_step_times(
        self, num_decodes: int, ctx_sums: np.ndarray, det_decodes: int, det_ctx: np.ndarray
    ) -> np.ndarray:
        """Decode-only steps; element ``i`` is bitwise ``step_time(0, 0.0, num_decodes,
        int(ctx_sums[i]), DetBatch(det_decodes, int(det_ctx[i])))``."""
        m = self.model
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if self.mode == "batch_invariant":
            return self._k * m.decode_step_times(num_decodes, ctx)
        dc = np.asarray(det_ctx, dtype=np.float64)
        if not det_decodes:
            return m.decode_step_times(num_decodes, ctx)
        if self.mode == "llm42":
            return m.decode_step_times(num_decodes, ctx) + self._llm42_extra(det_decodes, dc)
        t = m.decode_step_times(num_decodes - det_decodes, ctx - dc)
        return t + det_decodes * self._solo_base + dc * self._solo_ctx
