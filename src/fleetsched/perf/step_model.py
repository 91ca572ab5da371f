"""The step-time interface the engine uses, and the factory that picks an implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fleetsched.errors import InputError
from fleetsched.perf.calibration import PERF_KNOBS
from fleetsched.perf.hardware import get_gpu
from fleetsched.perf.models import get_model
from fleetsched.perf.precision import Precision
from fleetsched.perf.profile import load_profile
from fleetsched.perf.roofline import RooflineModel


@runtime_checkable
class StepTimeModel(Protocol):
    """Seconds one engine step takes, given what the batch holds.

    ``prefill_tokens``: new prompt tokens computed this step (sum of chunk lengths);
    ``prefill_attn_pairs``: sum over chunks of ``chunk * (context_before + (chunk + 1) / 2)``;
    ``num_decodes``: decode tokens (one per decoding request); ``decode_ctx_sum``: sum of those
    requests' context lengths. An empty step takes 0 s. ``decode_step_times(n, c)[i]`` must be
    bitwise equal to ``step_time(0, 0.0, n, int(c[i]))``.
    """

    def step_time(
        self,
        prefill_tokens: int,
        prefill_attn_pairs: float,
        num_decodes: int,
        decode_ctx_sum: int,
    ) -> float: ...

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray: ...


def _canonical(name: str, lookup: Any) -> str:
    try:
        return str(lookup(name).name)
    except InputError:
        return name.strip().lower()


def build_step_model(
    gpu_name: str,
    model_name: str,
    tp: int = 1,
    profile_path: str | Path | None = None,
    precision: Precision | None = None,
    **overrides: float | None,
) -> StepTimeModel:
    """A step-time model for ``model_name`` on ``tp`` x ``gpu_name``.

    Without ``profile_path``: a :class:`RooflineModel` at ``precision`` (default bf16
    everywhere); ``overrides`` are its knobs (:data:`~fleetsched.perf.calibration.PERF_KNOBS`),
    ``None`` meaning the GPU's calibrated value. With ``profile_path``: the fitted profile in that
    file, which must be for the same model, GPU and tp; knobs are then not allowed, and
    ``precision`` does not change its step times (it was measured at the precision it was).
    """
    unknown = sorted(set(overrides) - set(PERF_KNOBS))
    if unknown:
        raise InputError(
            f"unknown step-time option(s) {', '.join(unknown)}; known: {', '.join(PERF_KNOBS)}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if profile_path is None:
        return RooflineModel(get_gpu(gpu_name), get_model(model_name), tp, precision, **overrides)
    if overrides:
        raise InputError(
            f"options {', '.join(sorted(overrides))} apply to the roofline model only, "
            f"not to the fitted profile {profile_path}"
        )
    profile = load_profile(profile_path)
    for field, wanted, got, lookup in (
        ("model", model_name, profile.model, get_model),
        ("gpu", gpu_name, profile.gpu, get_gpu),
    ):
        if _canonical(wanted, lookup) != _canonical(got, lookup):
            raise InputError(
                f"profile is for {field} {got!r} but the instance group runs {wanted!r}",
                str(profile_path),
            )
    if profile.tp != tp:
        raise InputError(
            f"profile is for tp={profile.tp} but the instance group runs tp={tp}",
            str(profile_path),
        )
    return profile
