"""Context-switch cost of swap preemption (vLLM per-block copies vs FastSwitch block groups,
overlap and host-copy reuse) and preemptive VTC fairness (issue 19, item 4)."""

from __future__ import annotations

import math
from dataclasses import astuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import PROF_4MS

from fleetsched.core.config import EngineConfig, parse_scenario
from fleetsched.core.request import Request
from fleetsched.engine.context_switch import context_switch
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.errors import InputError
from fleetsched.policies.engine.vtc import VTCQueue
from fleetsched.policies.engine.vtc_preempt import VTCVictim
from fleetsched.policies.routing import make_router
from fleetsched.sim.build import build_instances, group_context_switch
from fleetsched.sim.kernel import Simulator, new_record

PROF = PROF_4MS

# Llama-3.1-8B on one GPU: 131,072 B of KV per token, 32 layers; 16-token blocks; 25 GB/s.
KV, BT, L, LINK = 131_072, 16, 32, 25e9


def test_vllm_copies_each_block_of_each_layer() -> None:
    sw = context_switch(
        "vllm",
        kv_bytes_per_token=KV,
        block_tokens=BT,
        layers=L,
        link_bytes_s=LINK,
        copy_latency_s=5e-6,
    )
    # 100 blocks: 100 x 2 MiB / 25 GB/s = 8.39 ms of bytes, plus 100 x 64 copies x 5 us = 32 ms.
    assert sw.cost_s(100) == pytest.approx(100 * (KV * BT / LINK + 2 * L * 5e-6), rel=1e-12)
    assert not sw.overlap and not sw.reuse


def test_fastswitch_copies_block_groups() -> None:
    sw = context_switch(
        "fastswitch",
        kv_bytes_per_token=KV,
        block_tokens=BT,
        layers=L,
        link_bytes_s=LINK,
        copy_latency_s=5e-6,
        group_tokens=1024,
    )
    # A 1,024-token group is 64 blocks moved by 64 copies (K and V of 32 layers): one copy per
    # block on average instead of 64.
    assert sw.cost_s(100) == pytest.approx(100 * (KV * BT / LINK + 1 * 5e-6), rel=1e-12)
    assert sw.overlap and sw.reuse
    with pytest.raises(InputError, match="swap_group_tokens"):
        context_switch(
            "fastswitch",
            kv_bytes_per_token=KV,
            block_tokens=BT,
            layers=L,
            link_bytes_s=LINK,
            group_tokens=8,
        )


def _engine(kind: str | None) -> Instance:
    sw = None
    if kind is not None:
        sw = context_switch(
            kind,
            kv_bytes_per_token=KV,
            block_tokens=BT,
            layers=L,
            link_bytes_s=LINK,
            copy_latency_s=5e-6,
        )
    return Instance(0, 1000, PROF, EngineConfig(), kv_bytes_per_token=KV, context_switch=sw)


def _seq(prompt: int = 100) -> Seq:
    r = Request(id=0, arrival_s=0.0, prompt_tokens=prompt, output_tokens=10)
    return Seq(req=r, rec=new_record(r))


def test_fastswitch_reuses_host_copies_and_vllm_does_not() -> None:
    for kind, resend in (("vllm", 10), ("fastswitch", 2)):
        inst, seq = _engine(kind), _seq()
        inst._switch_cost(10, seq, out=True)  # out: 10 blocks
        seq.computed = 9 * BT + 5  # back in with 9 full blocks and a partial one
        inst._switch_cost(10, seq)
        inst._extra_s = 0.0
        before = inst.stats.swapped_blocks
        seq.computed = 10 * BT + 3  # one more block filled since
        inst._switch_cost(11, seq, out=True)
        # FastSwitch sends the partial block that changed and the new one; vLLM all 11 again.
        assert inst.stats.swapped_blocks - before == (11 if kind == "vllm" else resend)
        moved = inst.stats.swapped_blocks - before
        assert inst._extra_s == pytest.approx(inst.switch.cost_s(moved))


def test_overlap_takes_the_longer_of_compute_and_swap() -> None:
    assert _engine("fastswitch")._with_switch(0.010, 0.004) == 0.010
    assert _engine("fastswitch")._with_switch(0.010, 0.030) == 0.030
    assert _engine("vllm")._with_switch(0.010, 0.004) == 0.010 + 0.004
    assert _engine(None)._with_switch(0.010, 0.004) == 0.010 + 0.004


def test_default_engine_keeps_the_original_swap_model() -> None:
    sc = parse_scenario("workload: {synthetic: {num_requests: 1}}\n")
    assert group_context_switch(sc.cluster[0]) is None
    (inst,) = build_instances(sc.cluster, sc.policies)
    assert inst.switch is None
    fs = parse_scenario(
        "workload: {synthetic: {num_requests: 1}}\n"
        "cluster: [{engine: {context_switch: fastswitch, swap_copy_latency_s: 5.0e-6}}]\n"
    )
    sw = group_context_switch(fs.cluster[0])
    assert sw is not None and sw.copies_per_block == 2 * 32 * 16 / 1024


# --------------------------------------------------------------------------- preemptive VTC


def _running(tenants: list[str]) -> list[Seq]:
    out = []
    for i, t in enumerate(tenants):
        r = Request(id=i, arrival_s=0.0, prompt_tokens=10, output_tokens=10, tenant=t)
        out.append(Seq(req=r, rec=new_record(r)))
    return out


class _Engine:
    """Just what VTCQueue and VTCVictim read: each tenant's service, decode steps."""

    def __init__(self, service: dict[str, tuple[int, int]]) -> None:
        self.service = service
        self.waiting = VTCQueue()
        self.waiting.bind(self)  # type: ignore[arg-type]
        self.fresh: set[int] = set()  # requests that have not decoded since (re)starting

    def tenant_service(self, tenant: str) -> tuple[int, int]:
        return self.service.get(tenant, (0, 0))

    def decode_steps(self, seq: Seq) -> int:
        return 0 if seq.req.id in self.fresh else 5


def test_vtc_preempts_the_most_served_tenant_for_an_under_served_head() -> None:
    # Counters (1 x prompt + 2 x output): heavy 1,000 + 2 x 2,000 = 5,000; light 100 + 2 x 50.
    eng = _Engine({"heavy": (1000, 2000), "light": (100, 50)})
    pol = VTCVictim(min_gap=1000)
    pol.bind(eng)  # type: ignore[arg-type]
    running = _running(["heavy", "light", "heavy"])
    head = _running(["light"])[0]
    assert pol.victim_for_admission(head, running) is running[2]  # heavy's newest
    assert pol.victim(running) is running[2]
    # Within min_gap of each other: no preemption; the head's own tenant is never the victim.
    strict = VTCVictim(min_gap=5000)
    strict.bind(eng)  # type: ignore[arg-type]
    assert strict.victim_for_admission(head, running) is None
    heavy_head = _running(["heavy"])[0]
    assert pol.victim_for_admission(heavy_head, running) is None
    # A request that has not decoded since it started is not taken: the older one is.
    eng.fresh = {2}
    assert pol.victim_for_admission(head, running) is running[0]
    eng.fresh = {0, 2}
    assert pol.victim_for_admission(head, running) is None
    # Without the vtc ordering there are no counters: newest victim, no preempt-to-admit.
    plain = VTCVictim()
    assert plain.victim(running) is running[2]
    assert plain.victim_for_admission(head, running) is None
    with pytest.raises(InputError, match="min_gap"):
        VTCVictim(min_gap=-1)


# --------------------------------------------------------------------------- properties


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 50))
    reqs, t = [], 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.01, 0.05]))
        p, o = draw(st.integers(1, 300)), draw(st.integers(1, 100))
        reqs.append(Request(i, t, p, o, tenant=f"t{draw(st.integers(0, 2))}"))
    return reqs


def _simulate(reqs, *, ff, kind, gap, blocks):
    cfg = EngineConfig(max_num_batched_tokens=128, max_num_seqs=8, preemption_mode="swap")
    insts = []
    for i in range(2):
        sw = context_switch(
            kind,
            kv_bytes_per_token=4096,
            block_tokens=16,
            layers=4,
            link_bytes_s=1e9,
            copy_latency_s=2e-5,
            group_tokens=64,
        )
        insts.append(
            Instance(
                i,
                blocks,
                PROF,
                cfg,
                fast_forward=ff,
                kv_bytes_per_token=4096,
                context_switch=sw,
                ordering=VTCQueue(),
                preemption=VTCVictim(min_gap=gap),
            )
        )
    recs = Simulator(insts, make_router("round_robin")).run(reqs, check=True)
    return recs, insts


def vars_of(obj) -> dict:
    return {f: getattr(obj, f) for f in obj.__slots__}


def _key(rec) -> tuple:
    return tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in astuple(rec))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=workloads(),
    kind=st.sampled_from(["vllm", "fastswitch"]),
    gap=st.sampled_from([0.0, 200.0]),
    blocks=st.integers(24, 60),
)
def test_fast_forward_equals_step_by_step_with_context_switches(reqs, kind, gap, blocks) -> None:
    a, ia = _simulate(reqs, ff=True, kind=kind, gap=gap, blocks=blocks)
    b, ib = _simulate(reqs, ff=False, kind=kind, gap=gap, blocks=blocks)
    assert [_key(r) for r in a] == [_key(r) for r in b]

    def stats(insts):  # but `runs` (fewer when fast-forwarding) and busy_s (summed per run)
        return [{**vars_of(i.stats), "runs": None, "busy_s": None} for i in insts]

    assert stats(ia) == stats(ib)
    for r, req in zip(a, reqs, strict=True):
        assert math.isnan(r.finish_s) or r.generated_tokens == req.output_tokens


@pytest.mark.parametrize("kind", ["vllm", "fastswitch"])
def test_a_pressured_case_swaps_and_fast_forward_still_agrees(kind: str) -> None:
    reqs = [Request(i, 0.001 * i, 200, 80, tenant=f"t{i % 3}") for i in range(30)]
    a, ia = _simulate(reqs, ff=True, kind=kind, gap=0.0, blocks=30)
    b, _ = _simulate(reqs, ff=False, kind=kind, gap=0.0, blocks=30)
    assert [_key(r) for r in a] == [_key(r) for r in b]
    assert sum(i.stats.preemptions for i in ia) > 0 and sum(i.stats.swapped_blocks for i in ia) > 0
    assert all(r.generated_tokens == 80 for r in a)


def test_vllm_switch_without_copy_latency_is_the_default_swap_model() -> None:
    # The context-switch path (vLLM's per-block copies at 0 s each) and the engine's default
    # (bytes over the link) move the same blocks at the same times: blocks out of a victim as
    # it holds them, blocks in for the tokens it had computed (a swapped-in request decodes in
    # the step that brings its KV back).
    reqs = [Request(i, 0.001 * i, 200, 80, tenant=f"t{i % 3}") for i in range(30)]
    cfg = EngineConfig(max_num_batched_tokens=128, max_num_seqs=8, preemption_mode="swap")
    sw = context_switch(
        "vllm", kv_bytes_per_token=4096, block_tokens=16, layers=4, link_bytes_s=1e9
    )
    runs = []
    for switch in (None, sw):
        inst = Instance(
            0,
            30,
            PROF,
            cfg,
            kv_bytes_per_token=4096,
            host_link_bytes_s=1e9,
            context_switch=switch,
        )
        recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
        runs.append(([_key(r) for r in recs], vars_of(inst.stats)))
    (recs_a, stats_a), (recs_b, stats_b) = runs
    assert recs_a == recs_b
    # per block x blocks against bytes / link: equal up to rounding
    assert stats_b.pop("switch_s") == pytest.approx(stats_a.pop("switch_s"), rel=1e-12)
    assert stats_a == stats_b and stats_a["swapped_blocks"] > 0
