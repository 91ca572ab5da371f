"""Regression tests: each case once lost requests, leaked blocks or broke fast-forward."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple

import pytest
from tests.conftest import PROF_4MS

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.engine.instance import Instance
from fleetsched.engine.kv_cache import KVCache
from fleetsched.perf import FittedProfile
from fleetsched.policies.engine import ColocateAdmission
from fleetsched.policies.engine.colocate_preemption import ColocateVictim
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

PROF = PROF_4MS
FLAT = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.004,
    prefill_token_s=1e-5,
    prefill_pair_s=0.0,
    decode_token_s=2e-4,
    decode_ctx_token_s=0.0,
)


def key(recs) -> list[tuple]:
    return [
        tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in astuple(r))
        for r in recs
    ]


def one(reqs, cfg: EngineConfig, blocks: int = 1000, model=PROF, ff: bool = True, **policies):
    inst = Instance(0, blocks, model, cfg, fast_forward=ff, **policies)
    return Simulator([inst], make_router("round_robin")).run(reqs, check=True), inst


@pytest.mark.parametrize("ff", [True, False])
def test_deferred_prefills_do_not_deadlock_when_the_urgent_request_cannot_start(ff) -> None:
    # Two partial prefills hold 8 of 9 blocks and yield to an urgent request that needs 4.
    cfg = EngineConfig(
        max_num_batched_tokens=64,
        max_num_seqs=8,
        long_prefill_token_threshold=32,
        preemptible_prefill=True,
    )
    reqs = [Request(0, 0.0, 100, 2), Request(1, 0.0, 100, 2), Request(2, 0.0092, 64, 2, priority=1)]
    recs, inst = one(reqs, cfg, blocks=9, model=FLAT, ff=ff)
    assert [r.generated_tokens for r in recs] == [2, 2, 2]
    assert inst.kv.used == 0


def test_prompt_longer_than_the_step_without_chunking_is_rejected_not_lost() -> None:
    cfg = EngineConfig(enable_chunked_prefill=False, max_num_batched_tokens=256)
    recs, inst = one([Request(0, 0.0, 300, 4), Request(1, 0.0, 100, 4)], cfg)
    assert math.isnan(recs[0].finish_s) and inst.stats.rejected == 1
    assert recs[1].generated_tokens == 4


def test_an_idle_engine_starts_a_batch_job_above_the_kv_ceiling() -> None:
    recs, _ = one(
        [Request(0, 0.0, 200, 4, slo_class="batch")],
        EngineConfig(),
        blocks=20,
        admission=ColocateAdmission(batch_kv_limit=0.5),
    )
    assert recs[0].generated_tokens == 4


def test_colocate_victim_does_not_preempt_under_an_order_that_requeues_it_first() -> None:
    reqs = [Request(0, 0.0, 100, 50, slo_class="batch"), Request(1, 0.01, 100, 5)]
    recs, inst = one(reqs, EngineConfig(max_num_seqs=1), preemption=ColocateVictim())
    assert inst.stats.preemptions == 0  # FCFS would put the victim back first: no ping-pong
    assert all(r.generated_tokens == r.output_tokens for r in recs)


def test_duplicate_block_keys_do_not_leak() -> None:
    kv = KVCache(10)
    kv.allocate(2)
    assert kv.insert_run([7, 7]) == [7]
    recs, inst = one([Request(0, 0.0, 64, 3, block_hashes=(7, 7, 7, 7))], EngineConfig())
    assert inst.kv.used == 0 and recs[0].generated_tokens == 3


@pytest.mark.parametrize("budget", [16, 20, 32])
def test_blocks_filled_without_a_new_allocation_are_cached(budget: int) -> None:
    hs = (1, 2, 3, 4, 5)
    reqs = [Request(0, 0.0, 64, 2, block_hashes=hs[:4]), Request(1, 1.0, 80, 2, block_hashes=hs)]
    recs, _ = one(reqs, EngineConfig(max_num_batched_tokens=budget, max_num_seqs=16))
    assert recs[1].cached_prompt_tokens == 64  # all four of A's full blocks


def test_prefix_keys_follow_each_instance_block_size() -> None:
    class ToOne:
        needs_views = True
        needs_prefix = True

        def route(self, req: RequestView, views: Sequence[InstanceView]) -> int:
            return 1

        def on_finish(self, req: RequestView, index: int) -> None:
            pass

    def run(first_bt: int) -> list[int]:
        insts = [
            Instance(0, 1000, PROF, EngineConfig(block_tokens=first_bt)),
            Instance(1, 1000, PROF, EngineConfig(block_tokens=32)),
        ]
        reqs = [
            Request(0, 0.0, 100, 4, block_hashes=(10, 20, 21), hash_block_tokens=32),
            Request(1, 1.0, 100, 4, block_hashes=(10, 30, 31), hash_block_tokens=32),
        ]
        return [r.cached_prompt_tokens for r in Simulator(insts, ToOne()).run(reqs, check=True)]

    assert run(16) == run(32) == [0, 32]  # only the first 32-token block is shared


def test_finished_requests_leave_no_migration_entry() -> None:
    class Mig:
        needs_views = True
        needs_prefix = False
        migration_interval_s = 0.05

        def route(self, req, views):
            return 0

        def on_finish(self, req, i):
            pass

        def plan_migrations(self, views):
            return [(0, 1)] if views[0].running > 1 else []

    for link in (1.0e6 + 5e3 * i for i in range(0, 400, 7)):
        insts = [Instance(i, 1000, PROF, EngineConfig(), kv_bytes_per_token=1000) for i in range(2)]
        sim = Simulator(insts, Mig(), kv_link_bytes_s=link)
        sim.run([Request(0, 0.0, 100, 30), Request(1, 0.0, 500, 400)], check=True)
        assert not sim._migrating


def test_stale_views_with_prefix_routing_match_step_by_step() -> None:
    x = tuple(range(100, 110))

    class FullHit:
        """Tenant a goes to instance 0; others follow a full prefix hit there."""

        needs_views = True
        needs_prefix = True

        def route(self, req, views):
            if req.tenant == "a":
                return 0
            return 0 if views[0].cached_prefix_tokens >= 160 else 1

        def on_finish(self, req, i):
            pass

    def go(ff: bool, t2: float, blocks: int, out: int) -> list:
        insts = [Instance(i, blocks, PROF, EngineConfig(), fast_forward=ff) for i in range(2)]
        reqs = [
            Request(0, 0.0, 160, 1, block_hashes=x, tenant="a"),
            Request(1, 0.1, 16, out, tenant="a"),
            Request(2, t2, 160, 1, block_hashes=x, tenant="b"),
        ]
        return key(Simulator(insts, FullHit(), view_refresh_s=10.0).run(reqs, check=True))

    # With 12 blocks, request 1's decode evicts request 0's cached prefix mid-run (t = 0.2 s):
    # the router must see that eviction, as a step-by-step engine shows it.
    for blocks, out in ((12, 100), (20, 300)):
        for t2 in (0.2 + 0.05 * i for i in range(40)):
            assert go(True, t2, blocks, out) == go(False, t2, blocks, out)
