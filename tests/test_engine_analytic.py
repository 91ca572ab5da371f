"""Engine timing against hand-derived results."""

from __future__ import annotations

import math

import pytest
from tests.conftest import PROF_5MS

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.perf import RooflineModel, get_gpu, get_model, kv_capacity_blocks
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

PROF = PROF_5MS


def run(reqs, *, blocks=10_000, n=1, model=PROF, ff=True, **engine):
    insts = [Instance(i, blocks, model, EngineConfig(**engine), fast_forward=ff) for i in range(n)]
    recs = Simulator(insts, make_router("round_robin")).run(reqs, check=True)
    return recs, insts


@pytest.mark.parametrize("ff", [True, False])
def test_lone_request_ttft_and_e2e(ff: bool) -> None:
    p, o = 1000, 50
    (rec,), _ = run([Request(0, 2.0, p, o)], ff=ff)
    pairs = p * (0 + (p + 1) / 2)
    prefill = 0.005 + 2e-5 * p + 1e-9 * pairs
    decode = sum(0.005 + 1e-4 + 3e-8 * (p + i) for i in range(1, o))
    assert rec.ttft_s == pytest.approx(prefill, rel=1e-12)
    assert rec.e2e_s == pytest.approx(prefill + decode, rel=1e-12)
    assert rec.queue_s == 0.0
    assert rec.generated_tokens == o


def test_lone_request_roofline_8b_h100() -> None:
    gpu, model = get_gpu("H100-SXM"), get_model("Llama-3.1-8B")
    rm = RooflineModel(gpu, model)
    p, o = 2000, 100
    (rec,), _ = run([Request(0, 0.0, p, o)], model=rm, blocks=kv_capacity_blocks(gpu, model))
    assert rec.ttft_s == pytest.approx(rm.step_time(p, p * (p + 1) / 2, 0, 0), rel=1e-12)
    want = rec.ttft_s + sum(rm.step_time(0, 0.0, 1, p + i) for i in range(1, o))
    assert rec.e2e_s == pytest.approx(want, rel=1e-9)
    # A decode step reads the layers and the LM head, 15,009,849,344 B at the calibrated
    # 3.35e12 x 0.935 B/s = 4.792 ms, plus its KV (context 2,001..2,099, mean 2,050 x 131,072 B
    # = 0.086 ms) and one token's embedding row and elementwise traffic (2.8 us), and fixed costs:
    # 129 GEMMs x 6.99 us + 160 elementwise kernels x 1.61 us + 1 ms overhead = 2.159 ms.
    bw = 3.35e12 * 0.935
    step = (15_009_849_344 + 2_050 * 131_072) / bw + 2.817e-6 + 2.1593e-3
    tpot = (rec.finish_s - rec.first_token_s) / (o - 1)
    assert tpot == pytest.approx(step, rel=1e-4)  # 7.040 ms


def test_chunked_prefill_splits_long_prompt() -> None:
    # 1000-token prompt, 256-token budget: chunks 256,256,256,232 -> first token after 4 steps.
    (rec,), insts = run([Request(0, 0.0, 1000, 2)], max_num_batched_tokens=256, max_num_seqs=8)
    ctx = 0
    want = 0.0
    for c in (256, 256, 256, 232):
        want += 0.005 + 2e-5 * c + 1e-9 * c * (ctx + (c + 1) / 2)
        ctx += c
    assert rec.ttft_s == pytest.approx(want, rel=1e-12)
    assert insts[0].stats.steps == 5


def test_prefix_cache_hit_counts_full_blocks_only() -> None:
    hs = tuple(range(1, 64))  # 63 blocks of 16 = 1008 tokens
    a = Request(0, 0.0, 1010, 4, block_hashes=hs)
    b = Request(1, 10.0, 1010, 4, block_hashes=hs)
    c = Request(2, 20.0, 1008, 4, block_hashes=hs)  # a full hit is capped: last token computed
    recs, insts = run([a, b, c])
    assert [r.cached_prompt_tokens for r in recs] == [0, 1008, 992]
    assert recs[1].ttft_s < recs[0].ttft_s
    assert insts[0].stats.cached_tokens == 2000


def test_max_num_seqs_queues_and_fcfs_order() -> None:
    reqs = [Request(i, 0.0, 100, 20) for i in range(5)]
    recs, _ = run(reqs, max_num_seqs=2, max_num_batched_tokens=256)
    firsts = [r.first_scheduled_s for r in recs]
    assert firsts == sorted(firsts)
    assert firsts[2] >= recs[0].finish_s or firsts[2] >= recs[1].finish_s
    assert all(r.generated_tokens == 20 for r in recs)


def test_kv_exhaustion_preempts_newest_by_recompute() -> None:
    # 10 blocks of 16 tokens; two requests each growing to 4+ blocks... 3 requests must collide.
    reqs = [Request(i, 0.0, 40, 60) for i in range(3)]
    recs, insts = run(reqs, blocks=14, max_num_seqs=8, max_num_batched_tokens=256)
    assert insts[0].stats.preemptions >= 1
    assert recs[0].preemptions == 0  # the oldest is never the victim
    assert recs[2].preemptions >= 1
    assert insts[0].stats.recomputed_tokens > 0
    assert all(r.generated_tokens == 60 and not math.isnan(r.finish_s) for r in recs)


def test_swap_preemption_costs_host_link_time() -> None:
    reqs = [Request(i, 0.0, 40, 60) for i in range(3)]
    kw = dict(blocks=14, max_num_seqs=8, max_num_batched_tokens=256)
    recs, insts = run(reqs, preemption_mode="swap", **kw)
    st = insts[0].stats
    assert st.preemptions >= 1 and st.recomputed_tokens == 0 and st.swapped_blocks > 0
    assert st.switch_s == 0.0  # kv_bytes_per_token defaults to 0 in this hand-built engine
    assert all(r.generated_tokens == 60 for r in recs)


def test_request_that_can_never_fit_is_rejected() -> None:
    recs, insts = run([Request(0, 0.0, 1000, 100), Request(1, 0.0, 10, 5)], blocks=20)
    assert math.isnan(recs[0].finish_s) and recs[1].generated_tokens == 5
    assert insts[0].stats.rejected == 1


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preempted_request_resumes_where_it_stopped(mode: str) -> None:
    # Three requests grow until the newest is preempted; whatever happens, a request produces
    # exactly its output tokens, and the recompute re-prefills prompt + generated tokens.
    reqs = [Request(i, 0.0, 40, 60) for i in range(3)]
    recs, insts = run(
        reqs, blocks=14, max_num_seqs=8, max_num_batched_tokens=256, preemption_mode=mode
    )
    inst = insts[0]
    assert recs[2].preemptions >= 1
    # Decode steps each request took part in: output - 1 per request plus nothing else, so the
    # engine's total output service equals the sum of outputs.
    assert inst.tenant_service("default")[1] == 3 * 60
    if mode == "recompute":
        # Every victim here is decoding (prompts fit one step), so its re-prefill computes the
        # KV it threw away plus its last sampled token, whose KV was never computed.
        st = inst.stats
        assert inst.tenant_service("default")[0] == 3 * 40 + st.recomputed_tokens + st.preemptions
