"""Fitted step-time profiles: a linear model of step time measured on a real engine.

    step = c0_s + prefill_token_s * prefill_tokens + prefill_pair_s * prefill_attn_pairs
                + decode_token_s * num_decodes + decode_ctx_token_s * decode_ctx_sum

(0 s for an empty step). A profile is a small YAML file::

    model: Llama-3.1-8B
    gpu: H100-SXM
    tp: 1
    c0_s: 0.0062
    prefill_token_s: 1.7e-05
    prefill_pair_s: 5.3e-10
    decode_token_s: 1.7e-05
    decode_ctx_token_s: 3.9e-08
    notes: fitted from 2,000 vLLM 0.6 steps      # optional

:func:`fit_profile` fits the coefficients by least squares from measured steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from fleetsched.core.config import parse_yaml_model, read_text
from fleetsched.errors import InputError

#: Coefficient names, in the column order of :func:`fit_profile`'s design matrix.
COEFFICIENTS = ("c0_s", "prefill_token_s", "prefill_pair_s", "decode_token_s", "decode_ctx_token_s")


class FittedProfile(BaseModel):
    """Linear step-time model for one (model, gpu, tp). Coefficients are seconds per unit, >= 0
    (a negative marginal cost is unphysical and would break monotonicity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    tp: int = Field(1, ge=1)
    c0_s: float = Field(ge=0, description="fixed seconds per step")
    prefill_token_s: float = Field(ge=0, description="seconds per prefill token")
    prefill_pair_s: float = Field(ge=0, description="seconds per prefill query-key pair")
    decode_token_s: float = Field(ge=0, description="seconds per decode token")
    decode_ctx_token_s: float = Field(ge=0, description="seconds per context token of decodes")
    notes: str = ""

    def _formula(self, prefill_tokens: float, pairs: float, decodes: float, ctx: Any) -> Any:
        # One formula for floats and float64 arrays (``ctx``); keep the operation order fixed.
        return (
            self.c0_s
            + self.prefill_token_s * prefill_tokens
            + self.prefill_pair_s * pairs
            + self.decode_token_s * decodes
            + self.decode_ctx_token_s * ctx
        )

    def step_time(
        self,
        prefill_tokens: int,
        prefill_attn_pairs: float,
        num_decodes: int,
        decode_ctx_sum: int,
    ) -> float:
        """Seconds for one step over a batch (same inputs as ``RooflineModel.step_time``)."""
        if prefill_tokens + num_decodes == 0:
            return 0.0
        return self._formula(
            float(prefill_tokens),
            float(prefill_attn_pairs),
            float(num_decodes),
            float(decode_ctx_sum),
        )

    def decode_line(self, num_decodes: int) -> tuple[float, float]:
        """(a, b) such that a decode-only step of ``num_decodes`` (>= 1) requests with context
        sum ``c`` (an int) takes ``a + c * b`` seconds, bitwise equal to ``step_time`` (the
        formula's last term is the context one)."""
        a = self.c0_s + self.prefill_token_s * 0.0 + self.prefill_pair_s * 0.0
        return a + self.decode_token_s * float(num_decodes), self.decode_ctx_token_s

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray:
        """Decode-only steps of ``num_decodes`` requests, one per context sum.

        Element ``i`` is bitwise equal to ``step_time(0, 0.0, num_decodes, int(ctx_sums[i]))``.
        """
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if num_decodes == 0:
            return np.zeros(ctx.shape, dtype=np.float64)
        out = self._formula(0.0, 0.0, float(num_decodes), ctx)
        return np.asarray(out, dtype=np.float64)

    def to_yaml(self) -> str:
        """YAML text that :func:`load_profile` reads back to an equal profile."""
        data = self.model_dump()
        if not data["notes"]:
            del data["notes"]
        return yaml.safe_dump(data, sort_keys=False)


def parse_profile(text: str, source: str = "<profile>") -> FittedProfile:
    """Parse and validate profile YAML; raise :class:`InputError` naming ``file:line: field``."""
    if re.search(r"^engine:\s*['\"]?llamacpp\b", text, flags=re.M):
        raise InputError(
            "a llama.cpp profile (fleetsched calibrate): it times a group whose engine is "
            "`kind: llamacpp` (docs/llamacpp.md), not the vLLM engine model",
            source,
        )
    return parse_yaml_model(text, source, FittedProfile, "a step-time profile")


def load_profile(path: str | Path) -> FittedProfile:
    """Read a profile YAML file (see the module docstring for the format)."""
    return parse_profile(read_text(path, "step-time profile"), str(path))


def fit_profile(
    samples: Iterable[Sequence[float]] | np.ndarray,
    *,
    model: str = "unknown",
    gpu: str = "unknown",
    tp: int = 1,
    notes: str = "",
) -> FittedProfile:
    """Least-squares fit of the profile coefficients to measured steps.

    ``samples`` are rows ``(prefill_tokens, prefill_attn_pairs, num_decodes, decode_ctx_sum,
    measured_s)``. Empty steps (no tokens) are skipped. Fitted with ``numpy.linalg.lstsq``;
    if a coefficient comes out negative, the most negative one is fixed at 0 and the rest
    refitted, until none is (coefficients must be >= 0). Columns the samples never vary (e.g.
    no prefill at all) get the minimum-norm solution, i.e. 0.
    """
    rows = np.asarray(samples if isinstance(samples, np.ndarray) else list(samples), dtype=float)
    if rows.ndim != 2 or rows.shape[1] != 5:
        raise InputError(
            "samples must be rows of (prefill_tokens, prefill_attn_pairs, num_decodes, "
            f"decode_ctx_sum, measured_s); got an array of shape {rows.shape}"
        )
    if not np.all(np.isfinite(rows)):
        raise InputError("samples contain NaN or infinite values")
    if np.any(rows < 0):
        raise InputError("samples contain negative values")
    rows = rows[(rows[:, 0] + rows[:, 2]) > 0]
    if len(rows) == 0:
        raise InputError("no non-empty steps to fit a profile to")
    design = np.column_stack([np.ones(len(rows)), rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]])
    target = rows[:, 4]
    # Columns span ~1 (c0) to ~1e9 (pairs): scale each to max 1 so lstsq's rank cutoff is fair.
    scale = np.max(np.abs(design), axis=0)
    scale[scale == 0] = 1.0
    design = design / scale
    active = list(range(len(COEFFICIENTS)))
    coef = np.zeros(len(COEFFICIENTS))
    while active:
        solution, *_ = np.linalg.lstsq(design[:, active], target, rcond=None)
        coef[:] = 0.0
        coef[active] = solution / scale[active]
        worst = int(np.argmin(coef))
        if coef[worst] >= 0:
            break
        active.remove(worst)
    return FittedProfile(
        model=model,
        gpu=gpu,
        tp=tp,
        notes=notes,
        **{name: float(value) for name, value in zip(COEFFICIENTS, coef, strict=True)},
    )
