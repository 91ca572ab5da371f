"""The roofline against measured kernels: Vidur's GEMM profiles (issue 10, item 2).

`fleetsched perf check` compares the roofline's linear-layer time with Vidur's measured GEMM
kernel times (microsoft/vidur, MIT; read from ../shared/profiles like the traces). The bounds:
median absolute error <= 10 % over every profiled row, <= 20 % for every GPU/model.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from fleetsched.perf import get_gpu
from fleetsched.perf.calibration import BORROWED, CALIBRATED, DATASHEET, PerfParams
from fleetsched.perf.hardware import GPUS
from fleetsched.perf.vidur import (
    abs_rel_error,
    fit_allreduce,
    fit_gpu,
    load_kernel_profiles,
    median_errors,
    modelled_gemm_s,
)

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


@pytest.fixture(scope="module")
def rows(profiles: Path):
    return load_kernel_profiles(profiles / "vidur")


def test_linear_layers_within_error_bounds(rows) -> None:
    # every row of every mlp.csv: 8 model shapes on A100 (8), H100 (6) and A40 (6), TP 1-8
    assert len(rows) == 20_091
    err = abs_rel_error(modelled_gemm_s(rows), rows.gemm_s)
    assert np.median(err) <= 0.10
    per_group = median_errors(rows, err, "gpu", "model")
    assert len(per_group) == 20
    assert max(per_group.values()) <= 0.20


def test_datasheet_roofline_misses_the_bounds(rows) -> None:
    # The uncalibrated roofline (100 % of peak, no padding or kernel latency) is what the issue
    # measured: 0.44-0.81x of the kernel time, far outside the bounds -- the check can fail.
    ratio = modelled_gemm_s(rows, lambda _: DATASHEET) / rows.gemm_s
    assert np.median(np.abs(ratio - 1)) > 0.25 and np.median(ratio) < 0.8


def test_one_row_by_hand(rows) -> None:
    # A100, Llama-2-7b (hidden 4096, 32 heads = 32 KV heads, MLP 11008, gated), TP 1, 4,096
    # tokens, the first row of its mlp.csv: QKV 1.911 + O 0.611 + gate-up 3.3655 + down 1.604 ms.
    # Weights: 4096 x 12288 + 4096 x 4096 + 4096 x 22016 + 11008 x 4096 = 202,375,168 parameters.
    # Modelled: 4 x 6.40 us + (4096 + 78.1) x 2 x 202,375,168 / (312e12 x 0.749) = 7.2552 ms
    # (the weight read, 404,750,336 B / (2.039e12 x 0.787) = 0.252 ms, is far below).
    i = np.flatnonzero(
        (rows.gpu == "A100-80GB") & (rows.model == "Llama-2-7b-hf") & (rows.tp == 1)
    )[0]
    assert rows.tokens[i] == 4096 and rows.gemm_weight_bytes[i] == 2 * 202_375_168
    assert rows.gemm_s[i] == pytest.approx((1.911 + 0.611 + 3.3655 + 1.604) / 1e3, rel=1e-12)
    modelled = 4 * 6.40e-6 + (4096 + 78.1) * 2 * 202_375_168 / (312e12 * 0.749)
    assert modelled_gemm_s(rows.select(np.arange(len(rows)) == i))[0] == pytest.approx(modelled)
    assert modelled == pytest.approx(7.2552e-3, rel=1e-4)  # -3.2 % of the measured 7.4915 ms


def test_shipped_knobs_are_the_fit(rows, profiles: Path) -> None:
    # The calibrated defaults are what the fit gives on these profiles (to the 3 significant
    # digits shipped), so `fleetsched perf check --fit` reproduces them.
    for name in ("A100-80GB", "H100-SXM", "A40"):
        fitted = fit_gpu(rows.select(rows.gpu == name))
        for knob, value in fitted.items():
            assert getattr(CALIBRATED[name], knob) == pytest.approx(value, rel=5e-3), (name, knob)
    for device, name in (("a100", "A100-80GB"), ("h100", "H100-SXM")):
        fitted = fit_allreduce(profiles / "vidur", device)
        assert CALIBRATED[name].allreduce_bandwidth_efficiency == pytest.approx(fitted, rel=5e-3)


def test_every_catalog_gpu_has_knobs() -> None:
    assert set(GPUS) == set(CALIBRATED) | set(BORROWED)
    assert set(BORROWED.values()) <= set(CALIBRATED)
    for name in CALIBRATED:
        get_gpu(name)
        assert all(getattr(CALIBRATED[name], f.name) >= 0 for f in fields(PerfParams))


def test_cli_check_prints_rows_and_medians(profiles: Path) -> None:
    args = ["perf", "check", "--profiles", str(profiles / "vidur"), "--gpu", "a40"]
    p = subprocess.run(
        [*CLI, *args, "--model", "phi-2", "--tokens", "1,4096"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    # A40 phi-2, TP 1, 1 token: measured 297.0 us for the four GEMMs of one layer
    assert "297.0" in out and "phi-2" in out and "4,096" in out
    assert "median absolute error" in out and "over 261 rows" in out
    # a bound that cannot be met makes the check fail
    strict = subprocess.run(
        [*CLI, *args, "--max-median", "0.001"], capture_output=True, text=True, timeout=120
    )
    assert strict.returncode == 1 and "bounds exceeded" in strict.stderr


def test_cli_check_bad_input_is_one_line(tmp_path: Path) -> None:
    p = subprocess.run(
        [*CLI, "perf", "check", "--profiles", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "no Vidur compute profiles" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    bad = subprocess.run(
        [*CLI, "perf", "check", "--tokens", "1,x"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--tokens" in bad.stderr
