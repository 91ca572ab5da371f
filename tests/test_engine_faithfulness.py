"""vLLM v1 semantics of the engine, against hand-derived expectations (issue 10, items 4-7).

Profile ``FLAT``: a step costs 4 ms + 10 us per prefill token + 0.2 ms per decoding request
(no attention terms), so step times are sums of those three figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import pairwise

import pytest
from tests.conftest import ToFirst

from fleetsched.core.config import (
    ArrivalConfig,
    EngineConfig,
    InstanceGroup,
    LengthConfig,
    PoliciesConfig,
    Scenario,
    SessionConfig,
    SyntheticConfig,
    WorkloadConfig,
)
from fleetsched.core.request import Request
from fleetsched.engine.defaults import resolve_engine_config
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.errors import InputError
from fleetsched.perf import FittedProfile, get_gpu, get_model
from fleetsched.policies.engine.colocate_admission import ColocateAdmission
from fleetsched.policies.routing import make_router
from fleetsched.sim.build import build_instances
from fleetsched.sim.kernel import Simulator, new_record
from fleetsched.sim.run import simulate
from fleetsched.workload import generate

FLAT = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.004,
    prefill_token_s=1e-5,
    prefill_pair_s=0.0,
    decode_token_s=2e-4,
    decode_ctx_token_s=0.0,
)
SMALL = dict(max_num_batched_tokens=256, max_num_seqs=8)


def run_one(reqs, blocks=1000, ff=True, **engine):
    inst = Instance(0, blocks, FLAT, EngineConfig(**{**SMALL, **engine}), fast_forward=ff)
    recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
    return recs, inst


# ------------------------------------------------------------------ item 4: cache every block
@pytest.mark.parametrize("ff", [True, False])
@pytest.mark.parametrize(
    ("out", "out_hashes", "hit"),
    [
        # 32 + 16 tokens: the answer's last token is never computed, block 2 is not full of KV.
        (16, (3,), 32),
        (17, (3,), 48),  # 48 computed tokens: block 2 is full and cached
        (40, (3, 4), 64),  # 71 computed tokens: blocks 2 and 3
    ],
)
def test_a_follow_up_turn_hits_the_blocks_the_previous_answer_filled(ff, out, out_hashes, hit):
    first = Request(0, 0.0, 32, out, block_hashes=(1, 2), output_block_hashes=out_hashes)
    # The next turn: that prompt, that answer and a new message (92 tokens, 5 full blocks).
    follow = Request(1, 1.0, 92, 2, block_hashes=(1, 2, 3, 4, 5))
    recs, _ = run_one([first, follow], ff=ff)
    assert recs[1].cached_prompt_tokens == hit


def test_synthetic_turns_carry_the_hashes_their_answer_gives_the_next_turn() -> None:
    cfg = SyntheticConfig(
        num_requests=400, sessions=SessionConfig(turns_mean=4), system_prompt_tokens=40
    )
    turns: dict[str, list[Request]] = defaultdict(list)
    for r in generate(cfg, 3):
        assert r.session_id is not None
        turns[r.session_id].append(r)
    pairs = 0
    for reqs in turns.values():
        for cur, nxt in pairwise(reqs):
            n, m = len(cur.block_hashes), (cur.prompt_tokens + cur.output_tokens) // 16
            assert n == cur.prompt_tokens // 16
            assert cur.output_block_hashes == nxt.block_hashes[n:m]
            assert len(cur.output_block_hashes) == m - n
            pairs += 1
    assert pairs > 100


def test_synthetic_follow_ups_hit_the_whole_previous_conversation() -> None:
    syn = SyntheticConfig(
        num_requests=120,
        arrival=ArrivalConfig(rate=0.1),
        prompt=LengthConfig(kind="uniform", low=20, high=120),
        output=LengthConfig(kind="uniform", low=5, high=60),
        sessions=SessionConfig(turns_mean=4, think_time_s=20.0),
    )
    engine = EngineConfig(num_gpu_blocks=100_000)  # nothing is ever evicted
    scenario = Scenario(
        workload=WorkloadConfig(synthetic=syn),
        cluster=[InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B", engine=engine)],
    )
    reqs = list(generate(syn, 0))
    recs = simulate(scenario, requests=reqs).records
    prev: dict[str, tuple[Request, float]] = {}
    checked = 0
    for req, rec in zip(reqs, recs, strict=True):
        assert req.session_id is not None
        last = prev.get(req.session_id)
        if last is not None and last[1] <= req.arrival_s:
            p = last[0]
            # Every full block the previous turn computed (prompt + answer - 1 tokens) is
            # cached, and the new prompt starts with exactly that content.
            full = (p.prompt_tokens + p.output_tokens - 1) // 16
            assert rec.cached_prompt_tokens == 16 * min(full, (req.prompt_tokens - 1) // 16)
            checked += 1
        prev[req.session_id] = (req, rec.finish_s)
    assert checked > 50


@pytest.mark.parametrize("ff", [True, False])
def test_a_request_without_hashes_hits_its_own_blocks_after_a_recompute_preemption(ff) -> None:
    # 9 blocks. Step 1 prefills both (4 + 4 blocks) and ends at 4 ms + 128 x 10 us = 5.28 ms.
    # Step 2: both decoders need a block, 1 is free: B takes it, A (the newest) is preempted;
    # its 4 full blocks stay cached under its own keys. A cannot come back while B holds 5
    # blocks (it needs those 4 + 1); B decodes alone in steps 2 and 3 (4.2 ms each) and ends.
    # Step 4: A hits its 4 blocks and recomputes 1 token (4.01 ms), then decodes twice.
    b = Request(0, 0.0, 64, 3)
    a = Request(1, 0.0, 64, 4)
    (rb, ra), inst = run_one([b, a], blocks=9, ff=ff)
    assert rb.finish_s == pytest.approx(0.00528 + 2 * 0.0042)
    assert ra.preemptions == 1 and inst.stats.recomputed_tokens == 64
    assert ra.finish_s == pytest.approx(0.00528 + 2 * 0.0042 + 0.00401 + 2 * 0.0042)


# ------------------------------------------------------------------ item 5: P/D handover
def run_pd(reqs, decode_seqs: int, ff: bool = True):
    insts = [
        Instance(0, 1000, FLAT, EngineConfig(**SMALL), role="prefill", fast_forward=ff),
        Instance(
            1,
            1000,
            FLAT,
            EngineConfig(max_num_batched_tokens=256, max_num_seqs=decode_seqs),
            role="decode",
            fast_forward=ff,
        ),
    ]
    # Everything goes to the prefill instance 0; kv_bytes_per_token = 0: the KV arrives the
    # instant the prefill ends.
    return Simulator(insts, ToFirst()).run(reqs, check=True)


@pytest.mark.parametrize("ff", [True, False])
def test_handed_over_requests_join_the_back_of_the_decode_queue(ff) -> None:
    # One prefill step for all three (4 ms + 48 x 10 us = 4.48 ms); the decode instance takes
    # one request at a time, in the order they were handed over: A (4 more tokens), B, C.
    reqs = [Request(0, 0.0, 16, 5), Request(1, 0.0, 16, 2), Request(2, 0.0, 16, 2)]
    a, b, c = run_pd(reqs, decode_seqs=1, ff=ff)
    assert a.finish_s == pytest.approx(0.00448 + 4 * 0.0042)
    assert b.finish_s == pytest.approx(0.00448 + 5 * 0.0042)
    assert c.finish_s == pytest.approx(0.00448 + 6 * 0.0042)


@pytest.mark.parametrize("ff", [True, False])
def test_a_handed_over_request_decodes_in_the_step_its_kv_arrives(ff) -> None:
    # X is prefilled by 4.16 ms and decodes on the decode instance from then on (4.2 ms
    # steps). Y's prefill ends at 8.32 ms, during X's step to 8.36 ms; the next step decodes
    # both (4.4 ms) and gives Y its second token, the one after its third.
    _, y = run_pd([Request(0, 0.0, 16, 100), Request(1, 0.001, 16, 3)], decode_seqs=8, ff=ff)
    assert y.first_token_s == pytest.approx(0.00832)
    assert y.finish_s == pytest.approx(0.00416 + 0.0042 + 2 * 0.0044)


@pytest.mark.parametrize("ff", [True, False])
def test_a_swapped_in_request_decodes_in_the_step_it_comes_back(ff) -> None:
    # 11 blocks; step 1 prefills B (4 blocks), C (2), A (4): 4 ms + 160 x 10 us = 5.6 ms.
    # Step 2: all three need a block, one is free: B takes it, C does not fit, A (the newest)
    # is swapped out (64 tokens x 1000 B at 25 GB/s = 2.56 us added), C takes a block.
    # C ends with step 2, A comes back in step 3 and decodes in it beside B (4.4 ms + 2.56 us),
    # then two more steps of both.
    reqs = [Request(0, 0.0, 64, 20), Request(1, 0.0, 32, 2), Request(2, 0.0, 64, 4)]
    inst = Instance(
        0,
        11,
        FLAT,
        EngineConfig(**SMALL, preemption_mode="swap"),
        fast_forward=ff,
        kv_bytes_per_token=1000,
    )
    recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
    swap = 64 * 1000 / 25e9
    assert recs[2].preemptions == 1 and inst.stats.swapped_blocks == 8
    assert recs[2].finish_s == pytest.approx(0.0056 + 4 * 0.0044 + 2 * swap)


@pytest.mark.parametrize("ff", [True, False])
def test_the_head_behind_a_forced_swap_in_is_admitted_the_next_step(ff) -> None:
    # One prefill step for both (4 ms + 96 x 10 us = 4.96 ms), handed over in order A, B to a
    # 10-block decode instance whose co-location admission keeps batch jobs under 5 blocks.
    # A (batch, 6 blocks) is refused, but an empty engine starts its head alone: A decodes in
    # step 1 (4.2 ms). B (2 blocks) is untried until step 2, which admits it: it decodes
    # beside A from then on (4.4 ms steps), rather than after A's last token.
    reqs = [Request(0, 0.0, 80, 10, slo_class="batch"), Request(1, 0.0, 16, 3)]
    decode = Instance(
        1,
        10,
        FLAT,
        EngineConfig(max_num_batched_tokens=256, max_num_seqs=8),
        role="decode",
        admission=ColocateAdmission(batch_kv_limit=0.5),
        fast_forward=ff,
    )
    prefill = Instance(0, 1000, FLAT, EngineConfig(**SMALL), role="prefill", fast_forward=ff)
    _, b = Simulator([prefill, decode], ToFirst()).run(reqs, check=True)
    assert b.first_token_s == pytest.approx(0.00496)
    assert b.finish_s == pytest.approx(0.00496 + 0.0042 + 2 * 0.0044)


# ------------------------------------------------------------------ item 6: vLLM's defaults
@pytest.mark.parametrize(
    ("gpu", "budget", "seqs"),
    [
        ("H100-SXM", 8192, 1024),
        ("H200", 8192, 1024),
        ("MI300X", 8192, 1024),
        ("A100-80GB", 2048, 256),  # 80 GB, but vLLM keeps the small defaults for A100
        ("A100-40GB", 2048, 256),
        ("L40S", 2048, 256),
        ("A10G", 2048, 256),
    ],
)
def test_budget_and_seats_default_to_vllm_serve_per_gpu(gpu, budget, seqs) -> None:
    e = resolve_engine_config(EngineConfig(), get_gpu(gpu), get_model("Llama-3.1-8B"))
    assert (e.max_num_batched_tokens, e.max_num_seqs, e.max_model_len) == (budget, seqs, 131072)


def test_built_instances_resolve_the_defaults() -> None:
    groups = [
        InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B"),
        InstanceGroup(gpu="A100-80GB", model="Mistral-7B-v0.3"),
    ]
    h100, a100 = build_instances(groups, PoliciesConfig())
    assert (h100.budget, h100.max_num_seqs, h100.max_model_len) == (8192, 1024, 131072)
    assert (a100.budget, a100.max_num_seqs, a100.max_model_len) == (2048, 256, 32768)


def test_explicit_knobs_and_vllm_caps() -> None:
    h100, llama = get_gpu("H100-SXM"), get_model("Llama-3.1-8B")

    def resolved(**kw: object) -> tuple[int | None, int | None, int | None]:
        e = resolve_engine_config(EngineConfig(**kw), h100, llama)  # type: ignore[arg-type]
        return e.max_num_batched_tokens, e.max_num_seqs, e.max_model_len

    assert resolved(max_num_seqs=64) == (8192, 64, 131072)
    assert resolved(max_num_batched_tokens=512) == (512, 512, 131072)  # seats <= budget
    assert resolved(max_model_len=4) == (4096, 1024, 4)  # budget <= seats x max_model_len
    # Without chunked prefill the budget grows to the context length.
    assert resolved(enable_chunked_prefill=False) == (131072, 1024, 131072)
    assert resolved(enable_chunked_prefill=False, max_model_len=4096) == (8192, 1024, 4096)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            dict(enable_chunked_prefill=False, max_num_batched_tokens=8192),
            "cluster.0.engine.max_num_batched_tokens: 8192 is below max_model_len (131072)",
        ),
        (dict(max_model_len=200_000), "cluster.0.engine.max_model_len: 200000 is above"),
        (
            dict(max_num_batched_tokens=128, max_num_seqs=256),
            "cluster.0.engine.max_num_batched_tokens: 128 is below max_num_seqs (256)",
        ),
    ],
)
def test_knobs_vllm_refuses_are_refused_naming_the_field(kw, message) -> None:
    group = InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B", engine=EngineConfig(**kw))
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_instances([group], PoliciesConfig())


def one_instance(reqs: list[Request], **engine: object):
    scenario = Scenario(
        workload=WorkloadConfig(trace="unused.jsonl"),
        cluster=[
            InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B", engine=EngineConfig(**engine))
        ],
    )
    return simulate(scenario, requests=reqs)


def test_without_chunked_prefill_a_prompt_longer_than_the_default_budget_runs() -> None:
    res = one_instance([Request(0, 0.0, 20_000, 4)], enable_chunked_prefill=False)
    assert res.summary["rejected"] == 0 and res.records[0].generated_tokens == 4


def test_prompts_that_leave_no_room_in_max_model_len_are_rejected() -> None:
    reqs = [
        Request(0, 0.0, 999, 5),  # 999 + 1 <= 1000: runs, and stops at 1000 tokens in all
        Request(1, 0.0, 1000, 5),  # 1000 + 1 > 1000: rejected, as vLLM rejects it
        Request(2, 0.0, 1500, 5),
        Request(3, 0.0, 500, 10),
    ]
    res = one_instance(reqs, max_model_len=1000)
    assert res.summary["rejected"] == 2
    assert [r.generated_tokens for r in res.records] == [1, 0, 0, 10]
    assert [math.isnan(r.finish_s) for r in res.records] == [False, True, True, False]


# ------------------------------------------------------------------ item 7: preemption, caching
def test_each_victim_is_freed_before_the_next_request_allocates() -> None:
    # 6 blocks: R1, R2 (1 block each), C (1 block, key 7, one token) and V (3 blocks) fill
    # them in step 1. C ends, its block stays cached. Step 2: R1 and R2 need a block each, one
    # is free (C's). As vLLM allocates request by request, R1 takes C's block (evicting key
    # 7); only then R2 does not fit and V (the newest) is preempted for it.
    reqs = [
        Request(0, 0.0, 16, 30),
        Request(1, 0.0, 16, 30),
        Request(2, 0.0, 16, 1, block_hashes=(7,)),
        Request(3, 0.0, 40, 30),
    ]
    inst = Instance(0, 6, FLAT, EngineConfig(**SMALL))
    seqs = [Seq(r, new_record(r)) for r in reqs]
    for s in seqs:
        inst.enqueue(s, 0.0)
    t1 = inst.on_event(0.0)  # step 1: the four prefills
    assert t1 is not None
    inst.on_event(t1)  # step 1 ends; step 2 is scheduled
    inst.check_invariants()
    assert seqs[3].rec.preemptions == 1 and seqs[2].rec.finish_s == t1
    assert 7 not in inst.kv.refs


@pytest.mark.parametrize("ff", [True, False])
def test_blocks_after_a_duplicate_are_cached_too(ff) -> None:
    # Chunks of 32 tokens. B caches keys 1-2 (step 1) and 3-4 (step 2); A, arriving during
    # step 1, hits 1-4 in step 2 and caches 5 itself. B's next chunk (step 3) fills 5 (a
    # duplicate of A's, kept private) and 6, then 7 (step 4): 6 and 7 are cached all the
    # same, so C later hits 1-7 (112 tokens).
    reqs = [
        Request(0, 0.0, 112, 20, block_hashes=(1, 2, 3, 4, 5, 6, 7)),
        Request(1, 0.001, 80, 20, block_hashes=(1, 2, 3, 4, 5)),
        Request(2, 1.0, 128, 1, block_hashes=(1, 2, 3, 4, 5, 6, 7, 8)),
    ]
    recs, _ = run_one(reqs, ff=ff, long_prefill_token_threshold=32)
    assert recs[1].cached_prompt_tokens == 64
    assert recs[2].cached_prompt_tokens == 112
