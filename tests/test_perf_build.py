"""build_step_model: roofline by default, a fitted profile when given, checked against the group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetsched.errors import InputError
from fleetsched.perf import (
    FittedProfile,
    RooflineModel,
    StepTimeModel,
    build_step_model,
    get_gpu,
    get_model,
)

PROFILE_YAML = """\
model: meta-llama/Llama-3.1-8B-Instruct
gpu: h100
tp: 2
c0_s: 0.004
prefill_token_s: 1.0e-05
prefill_pair_s: 3.0e-10
decode_token_s: 1.0e-05
decode_ctx_token_s: 2.0e-08
"""


def test_default_is_roofline() -> None:
    m = build_step_model("h100-sxm", "Llama-3.1-8B")
    assert isinstance(m, RooflineModel) and isinstance(m, StepTimeModel)
    ref = RooflineModel(get_gpu("H100-SXM"), get_model("Llama-3.1-8B"))
    assert m.step_time(10, 55.0, 3, 300) == ref.step_time(10, 55.0, 3, 300)


def test_overrides_reach_roofline() -> None:
    m = build_step_model("H100-SXM", "Llama-3.1-8B", tp=2, overhead_s=0.0, compute_efficiency=0.5)
    assert isinstance(m, RooflineModel)
    assert (m.tp, m.params.overhead_s, m.params.compute_efficiency) == (2, 0.0, 0.5)
    # None means "the calibrated value", as a scenario's unset perf knobs are passed on
    d = build_step_model("H100-SXM", "Llama-3.1-8B", overhead_s=None)
    assert d.params == RooflineModel(get_gpu("H100-SXM"), get_model("Llama-3.1-8B")).params


def test_unknown_override_is_input_error() -> None:
    with pytest.raises(InputError, match="overhead_ms"):
        build_step_model("H100-SXM", "Llama-3.1-8B", overhead_ms=1.0)


def test_unknown_names_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown GPU"):
        build_step_model("TPU-v9", "Llama-3.1-8B")
    with pytest.raises(InputError, match="unknown model"):
        build_step_model("H100-SXM", "GPT-7")


def test_profile_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_YAML)
    m = build_step_model("H100-SXM", "Llama-3.1-8B", tp=2, profile_path=path)
    assert isinstance(m, FittedProfile) and isinstance(m, StepTimeModel)
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(0.004 + 1e-5)
    assert m.decode_step_times(1, np.array([0]))[0] == m.step_time(0, 0.0, 1, 0)


@pytest.mark.parametrize(
    ("gpu", "model", "tp", "expected"),
    [
        ("A100-80GB", "Llama-3.1-8B", 2, "gpu"),
        ("H100-SXM", "Llama-3.1-70B", 2, "model"),
        ("H100-SXM", "Llama-3.1-8B", 1, "tp=2"),
    ],
)
def test_profile_must_match_group(
    tmp_path: Path, gpu: str, model: str, tp: int, expected: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_YAML)
    with pytest.raises(InputError) as exc:
        build_step_model(gpu, model, tp=tp, profile_path=path)
    assert expected in str(exc.value) and str(path) in str(exc.value)


def test_profile_rejects_roofline_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE_YAML)
    with pytest.raises(InputError, match="roofline model only"):
        build_step_model("H100-SXM", "Llama-3.1-8B", tp=2, profile_path=path, overhead_s=0.0)
    # unset (None) knobs are fine with a profile
    assert isinstance(
        build_step_model("H100-SXM", "Llama-3.1-8B", tp=2, profile_path=path, overhead_s=None),
        FittedProfile,
    )
