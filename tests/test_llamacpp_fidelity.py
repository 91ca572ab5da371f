"""The llama.cpp engine model against a real llama-server (started by the test, 127.0.0.1).

A fixed sequence of prompts, one at a time, exercises slot choice (LRU, LCP), prefix reuse
(checkpoint-only for gemma-3's sliding window, plain LCP with ``--swa-full``), identical and
extended prompts, and the host-RAM prompt cache (a state evicted from its slot and loaded
back). For every request the server's reused tokens (``timings.cache_n``) and slot
(``id_slot``) must equal what the engine model computes. Then a short calibration fits a
profile that ``simulate`` runs.
"""

from __future__ import annotations

import asyncio

import pytest

from fleetsched.calibrate.client import session, stream_completion
from fleetsched.calibrate.fit import replay
from fleetsched.calibrate.plan import Measured, Probe, probe_tokens
from fleetsched.core.config import LlamaCppConfig
from fleetsched.launch import LlamaServer
from fleetsched.perf import get_model
from fleetsched.perf.ubatch import LlamaCppProfile

pytestmark = pytest.mark.llamacpp

GEMMA = get_model("gemma-3-270m")
PROF = LlamaCppProfile(model="gemma-3-270m", device="cpu", ubatch_s=0.01, token_s=0.003,
                       output_s=0.01, pair_s=0.0)  # fmt: skip
SYS = list(range(100, 125))  # a 400-token system prompt (25 blocks)


def blocks(start: int, tokens: int) -> list[int]:
    return list(range(start, start + tokens // 16))


# (blocks of the prompt, why) — each sent after the previous one finished.
SEQUENCE = [
    (SYS + blocks(1000, 208), "first: LRU takes the highest slot"),
    (SYS + blocks(2000, 208), "same system prompt: LCP slot, reuse from a checkpoint"),
    (blocks(3000, 320), "unrelated: LRU takes the other slot"),
    (SYS + blocks(4000, 208), "system prompt again"),
    (SYS + blocks(4000, 208), "identical prompt"),
    (SYS + blocks(4000, 208) + blocks(5000, 208), "extended prompt (next turn)"),
    (blocks(6000, 320), "unrelated: LRU evicts the unrelated prompt to host RAM"),
    (blocks(3000, 320), "that prompt again: loaded back from host RAM"),
]


async def _send(url: str, sequence=SEQUENCE) -> list[tuple[int, int]]:
    out = []
    async with session() as http:
        for bl, _ in sequence:
            p = Probe("", "", 0, bl, 0, 2)
            r = await stream_completion(http, url, probe_tokens(p), 2)
            assert r.status == 200, r.error
            out.append((r.cache_n, r.id_slot))
    return out


def _model(swa_full: bool, sequence=SEQUENCE, ctx: int = 2048) -> list[tuple[int, int]]:
    runs = [
        Measured(Probe("", "", 0, bl, 0, 2), "seq", i, 100.0 * i, [], 200)
        for i, (bl, _) in enumerate(sequence)
    ]
    engine = LlamaCppConfig(kind="llamacpp", parallel=2, ctx=ctx, swa_full=swa_full)
    rp = replay(runs, PROF, engine, GEMMA)
    return [(rp.cached[i], rp.slot[i]) for i in range(len(runs))]


@pytest.mark.parametrize("swa_full", [False, True])
def test_engine_model_reuses_what_llama_server_reuses(swa_full: bool) -> None:
    extra = ["--swa-full"] if swa_full else []
    with LlamaServer(parallel=2, ctx=2048, extra_args=extra) as srv:
        real = asyncio.run(_send(srv.url))
    model = _model(swa_full)
    lines = [f"{why}: server {r}, model {m}" for (_, why), r, m in zip(SEQUENCE, real, model,
                                                                     strict=True)]  # fmt: skip
    assert real == model, "\n".join(lines)
    # What the rules imply, by hand from server-context.cpp (prompts of 608 = 400 + 208):
    # 2nd: LCP 400 <= n_swa, so only a checkpoint helps: the first prompt left ones at 92
    # and 604 tokens, 92 <= 400, resume at 92 - 1. Identical 608: LCP 608 > 512 + pos_min 0,
    # the window cache still holds what is needed: full reuse, minus the one token llama.cpp
    # always evaluates. Extended: full reuse of 608. Back from RAM: 320 tokens, checkpoint at
    # 316, resume at 315. With --swa-full: plain LCP everywhere.
    swa = [0, 400, 0, 400, 607, 608, 0, 319]
    expected = swa if swa_full else [0, 91, 0, 91, 607, 608, 0, 315]
    assert [c for c, _ in real] == expected
    assert [s for _, s in real] == [1, 1, 0, 1, 1, 1, 0, 1]


LONG = [
    (blocks(7000, 1200), "1200 tokens: more than the 1024-cell window cache of a slot"),
    (blocks(7000, 1200) + blocks(8000, 208), "extended: the window still covers LCP - 512"),
    (blocks(7000, 800) + blocks(9000, 96), "shares 800: the window lost it, checkpoint at 684"),
]


def test_sequences_longer_than_the_window_cache() -> None:
    # 2048-token slots, so a slot's sliding-window cache (1024 cells) wraps around.
    with LlamaServer(parallel=2, ctx=4096) as srv:
        real = asyncio.run(_send(srv.url, LONG))
    model = _model(False, LONG, ctx=4096)
    assert real == model
    # By hand: full reuse (1200) while the window cache's lowest position (1201 - 1024 = 177)
    # is below LCP - 512 = 688; then LCP 800 needs positions >= 288 but the cache starts at
    # 1401 - 1024 = 377: resume from the checkpoint taken at 684 tokens.
    assert [c for c, _ in real] == [0, 1200, 683]


def test_quick_calibration_fits_a_profile_simulate_runs(tmp_path) -> None:
    from fleetsched.calibrate.run import calibrate, measure
    from fleetsched.core.config import parse_scenario
    from fleetsched.sim.run import simulate

    with LlamaServer(parallel=2, ctx=2048) as srv:
        m = measure(srv.url, repeats=1, quick=True)
    assert all(r.status == 200 for r in m.runs)
    fit, _ = calibrate(m, device="cpu", threads=2)
    # The engine model knew what every request reused, so each TTFT spans the right steps.
    assert fit.cache_mismatches == [] and fit.cache_checked == len(m.runs)
    assert {r.name for r in fit.rows} >= {"prefill 304", "decode 2 x 32", "decode 1 x 304"}
    assert all(r.predicted_s > 0 for r in fit.rows)
    prof = tmp_path / "gemma.yaml"
    prof.write_text(fit.profile.to_yaml())
    sc = parse_scenario(f"""
workload:
  synthetic: {{num_requests: 20, arrival: {{rate: 1.0}}, prompt: {{kind: fixed, value: 300}},
              output: {{kind: fixed, value: 16}}}}
cluster:
  - {{device: cpu, model: gemma-3-270m, profile: {prof},
     engine: {{kind: llamacpp, parallel: 2, ctx: 2048, threads: 2}}}}
""")
    res = simulate(sc)
    assert res.summary["completed"] == 20
