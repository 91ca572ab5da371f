"""The llama.cpp engine model under random workloads and configurations (hypothesis).

Every run asserts the engine's accounting after every event (``check=True``): no slot holds
more than its context, slot states agree with the requests in them, every request is in
exactly one place (HTTP, queue, or a slot).
"""

from __future__ import annotations

import math
from dataclasses import astuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetsched.core.config import LlamaCppConfig
from fleetsched.core.request import Request, chain_hashes
from fleetsched.engine.llamacpp import LlamaCppInstance
from fleetsched.perf import get_model
from fleetsched.perf.ubatch import LlamaCppProfile
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

PROF = LlamaCppProfile(
    model="m",
    device="cpu",
    ubatch_s=0.004,
    token_s=0.0005,
    output_s=0.003,
    pair_s=1e-8,
    checkpoint_s=0.002,
    request_s=0.01,
    small_ubatch_s=[0.01, 0.018, 0.03],
    copy_byte_s=1e-11,
)


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 40))
    parallel = 4
    reqs = []
    t = 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.02, 0.1, 0.5]))
        fam = draw(st.integers(0, 3))
        shared = draw(st.integers(0, 12))
        own = draw(st.integers(0, 20))
        blocks = [fam * 1000 + j for j in range(shared)] + [10**6 + i * 100 + j for j in range(own)]
        p = 16 * len(blocks) + draw(st.integers(1, 15))
        o = draw(st.integers(1, 60))
        extra: dict[str, object] = {}
        if draw(st.integers(0, 4)) == 0:
            extra["id_slot"] = draw(st.integers(-1, parallel))  # parallel: an unknown slot
        reqs.append(
            Request(
                i, t, p, o, block_hashes=chain_hashes(blocks), hash_block_tokens=16, extra=extra
            )
        )
    return reqs


@st.composite
def engines(draw: st.DrawFn) -> tuple[LlamaCppConfig, str]:
    parallel = draw(st.integers(1, 4))
    n_ubatch = draw(st.sampled_from([8, 16, 64, 512]))
    cfg = LlamaCppConfig(
        kind="llamacpp",
        parallel=parallel,
        ctx=parallel * draw(st.sampled_from([128, 300, 512, 2048])),
        n_batch=draw(st.sampled_from([n_ubatch, 2 * n_ubatch, 2048])),
        n_ubatch=n_ubatch,
        swa_full=draw(st.booleans()),
        cache_ram_mib=draw(st.sampled_from([0, 1, 8192, -1])),
        cache_idle_slots=draw(st.booleans()),
        ctx_checkpoints=draw(st.sampled_from([0, 1, 2, 32])),
        checkpoint_min_step=draw(st.sampled_from([0, 64, 8192])),
        slot_prompt_similarity=draw(st.sampled_from([0.0, 0.1, 0.5])),
        cache_prompt=draw(st.booleans()),
    )
    return cfg, draw(st.sampled_from(["gemma-3-270m", "Llama-3.1-8B"]))


def simulate(reqs: list[Request], cfg: LlamaCppConfig, model: str, n: int = 1):
    insts = [LlamaCppInstance(i, PROF, cfg, get_model(model)) for i in range(n)]
    recs = Simulator(insts, make_router("round_robin")).run(reqs, check=True)
    return recs, insts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=workloads(), eng=engines(), n=st.integers(1, 2))
def test_every_request_ends_once_within_its_slot_context(reqs, eng, n) -> None:
    cfg, model = eng
    recs, insts = simulate(reqs, cfg, model, n)
    n_ctx = cfg.ctx // cfg.parallel
    assert [r.id for r in recs] == [q.id for q in reqs]
    for r, q in zip(recs, reqs, strict=True):
        if q.prompt_tokens >= n_ctx:  # rejected when it reached its slot
            assert math.isnan(r.finish_s) and math.isnan(r.first_token_s)
            continue
        assert r.generated_tokens == min(q.output_tokens, n_ctx - q.prompt_tokens)
        assert r.arrival_s + PROF.request_s <= r.first_scheduled_s + 1e-12
        assert r.first_scheduled_s < r.first_token_s <= r.finish_s
        assert 0 <= r.cached_prompt_tokens < q.prompt_tokens
        if not cfg.cache_prompt:
            assert r.cached_prompt_tokens == 0
    for inst in insts:
        assert inst.outstanding == 0 and not inst.running and not inst.busy
        assert all(s.cache.n_tokens <= n_ctx for s in inst.slots)
        served = [q for q in reqs if q.prompt_tokens < n_ctx and recs[q.id].instance == inst.index]
        assert inst.stats.prompt_tokens == sum(q.prompt_tokens for q in served)
        if model != "gemma-3-270m" or cfg.swa_full or cfg.ctx_checkpoints == 0:
            assert inst.stats.checkpoints == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=workloads(), eng=engines())
def test_same_input_same_records(reqs, eng) -> None:
    cfg, model = eng
    a, _ = simulate(reqs, cfg, model)
    b, _ = simulate(reqs, cfg, model)
    assert [astuple(r) for r in a] == [astuple(r) for r in b] or all(
        str(astuple(x)) == str(astuple(y)) for x, y in zip(a, b, strict=True)
    )
