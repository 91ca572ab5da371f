"""``fleetsched calibrate --engine vllm`` against the emulator, whose step times are a known
profile: the fit must give that profile back (the emulator runs our vLLM engine model in real
time, so every measured interval is whole steps plus HTTP and event-loop latency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests._live import emulator_process, fleetsched

from fleetsched.calibrate import run
from fleetsched.calibrate.plan import Measured, Probe
from fleetsched.calibrate.vllm import features, fit_vllm, vllm_plan
from fleetsched.perf.profile import FittedProfile, load_profile

TRUE = FittedProfile(
    model="Llama-3.1-8B",
    gpu="A10G",
    tp=1,
    c0_s=0.008,
    prefill_token_s=60e-6,
    prefill_pair_s=8e-9,
    decode_token_s=400e-6,
    decode_ctx_token_s=300e-9,
)


def test_plan_keeps_prompts_to_one_step_and_within_the_model_length() -> None:
    plan = vllm_plan(1100, seed=0)
    prefills = [e.probes[0].prompt_tokens for e in plan if e.name.startswith("prefill")]
    assert max(prefills) == 1024 and all(n <= 2048 for n in prefills)
    decodes = {e.name: len(e.probes) for e in plan if e.name.startswith("decode")}
    assert decodes["decode 32 x 1024"] == 32 and "decode 1 x 128" in decodes
    blocks = [b for e in plan for p in e.probes for b in p.blocks]
    assert len(blocks) == len(set(blocks))  # nothing shared, so nothing is a cache hit


def _stream(k: int, prompt: int, start: float, gap: float, n: int, i: int) -> Measured:
    p = Probe("decode", "gaps", 0, list(range(prompt // 16)), prompt % 16, n)
    return Measured(p, "decode", 0, 0.0, [start + gap * j for j in range(n)], 200)


def test_decode_features_count_every_streams_context() -> None:
    # Two streams of 32-token prompts; stream b starts a step later, so the gaps where both
    # decode are those after b's first token.
    a, b = _stream(2, 32, 1.0, 0.01, 5, 0), _stream(2, 32, 1.01, 0.01, 4, 1)
    fa = features(a, [a, b])
    assert len(fa) == 3  # gaps 1.01-1.02, 1.02-1.03, 1.03-1.04 (both decode in each)
    gap, f = fa[0]
    assert gap == pytest.approx(0.01)
    # context at 1.01: a has 2 tokens, b 1 (the first token is counted at its arrival)
    assert list(f) == [1.0, 0, 0, 2, 32 + 2 + 32 + 1, 0.0]


def test_fit_recovers_a_profile_from_exact_samples() -> None:
    rng = np.random.default_rng(0)
    runs = []
    for inst, n in enumerate((16, 64, 256, 512, 1024, 2048)):
        p = Probe(f"prefill {n}", "ttft", 0, list(range(n // 16)), 0, 1)
        ttft = 0.002 + TRUE.step_time(n, n * (n + 1) / 2, 0, 0)
        runs.append(Measured(p, p.row, inst, 1.0, [1.0 + ttft], 200))
    for k in (1, 2, 4, 8, 16):
        inst += 1
        # k streams decoding together: every step ends with one token for each of them;
        # stream i's prompt is 16 * (8 + i) tokens, its context grows by one a step.
        prompts = [16 * (8 + i) for i in range(k)]
        t, ts = 2.0, [2.0]
        for j in range(23):
            ctx = sum(prompts) + k * (j + 1)
            t += TRUE.step_time(0, 0, k, ctx) * (1 + 0.002 * rng.standard_normal())
            ts.append(t)
        for i in range(k):
            p = Probe(f"decode {k}", "gaps", 0, list(range(8 + i)), 0, 24)
            runs.append(Measured(p, p.row, inst, 1.9, ts, 200))
    prof, overhead, rows = fit_vllm(runs, model="Llama-3.1-8B", gpu="A10G", tp=1)
    assert overhead == pytest.approx(0.002, rel=0.05)
    for name in ("c0_s", "prefill_token_s", "prefill_pair_s", "decode_token_s"):
        assert getattr(prof, name) == pytest.approx(getattr(TRUE, name), rel=0.05), name
    assert max(abs(r.error) for r in rows) < 0.02


def test_calibrate_the_emulator_gives_its_profile_back(tmp_path: Path) -> None:
    truth = tmp_path / "truth.yaml"
    truth.write_text(TRUE.to_yaml())
    out = tmp_path / "fitted.yaml"
    with emulator_process(
        "--gpu", "A10G", "--model", "Llama-3.1-8B", "--profile", str(truth)
    ) as url:
        r = fleetsched(
            "calibrate", "--target", str(url), "--engine", "auto", "-o", str(out),
            "--quick", "--repeats", "2", "--measurements-out", str(tmp_path / "m.json"),
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "request overhead" in r.stdout and "median |error|" in r.stdout
    fitted = load_profile(out)
    assert (fitted.model, fitted.gpu, fitted.tp) == ("Llama-3.1-8B", "A10G", 1)
    # Step times over the range the plan measured, fitted vs true: HTTP and event-loop
    # latency on a shared 2-core machine is the noise (a few tenths of a ms a step).
    for pf, nd, ctx in ((32, 0, 0), (512, 0, 0), (2048, 0, 0), (0, 1, 130), (0, 4, 4200),
                        (0, 16, 17000)):  # fmt: skip
        want = TRUE.step_time(pf, pf * (pf + 1) / 2, nd, ctx)
        got = fitted.step_time(pf, pf * (pf + 1) / 2, nd, ctx)
        assert got == pytest.approx(want, rel=0.15), (pf, nd, ctx, got, want)
    # The saved measurements refit to the same profile, without a server.
    m = run.load_measurements(tmp_path / "m.json")
    assert m.engine == "vllm" and m.server["gpu"] == "A10G"
    again, _, _ = run.calibrate_vllm(m)
    assert again == fitted


def test_a_vllm_server_needs_the_device(tmp_path: Path) -> None:
    m = run.Measurements("http://127.0.0.1:1", "vllm", 0, 4096, "Llama-3.1-8B", [])
    with pytest.raises(run.InputError, match="--device"):
        run.calibrate_vllm(m)
