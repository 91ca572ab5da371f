"""KV retention across tool gaps: hand-checked pins, expiry, giving pins up under memory
pressure, and the engine's invariants with pins (check=True)."""

from __future__ import annotations

from dataclasses import astuple

import pytest
from tests.test_streaming import Linear

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import CallInfo, Request, chain_hashes
from fleetsched.engine.instance import Instance
from fleetsched.policies.engine import RETENTION, make
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator


def call(i: int, t: float, prompt: int, ids: list[int], gap: float | None, wf: int = 0) -> Request:
    return Request(
        i,
        t,
        prompt,
        1,
        block_hashes=chain_hashes(ids),
        call=CallInfo(workflow=wf, index=i, next_gap_s=gap),
    )


def run(reqs, retention: str, blocks: int, ff: bool = True, **params):
    cfg = EngineConfig(max_num_batched_tokens=512, max_num_seqs=8, num_gpu_blocks=blocks)
    inst = Instance(0, blocks, Linear(), cfg, fast_forward=ff)
    inst.retention = make(RETENTION, "retention", retention, params)
    if inst.retention is not None:
        inst.retention.bind(inst)
    recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
    return recs, inst


def scenario() -> list[Request]:
    # Call 0 (8 blocks, workflow 0) finishes at 0.01 + 0.128 = 0.138 s; its follow-up call 2
    # (the same 8 blocks and 2 more) comes at 2.0 s. In between, at 1.0 s, a stranger of 10
    # blocks on a 12-block cache must evict LRU blocks: without retention, call 0's.
    a = call(0, 0.0, 128, list(range(8)), gap=1.8)
    b = Request(1, 1.0, 160, 1, block_hashes=chain_hashes(list(range(100, 110))))
    c = call(2, 2.0, 160, list(range(10)), gap=None)
    return [a, b, c]


def test_without_retention_the_gap_loses_the_context() -> None:
    # The stranger takes the 4 empty blocks and evicts 6 LRU ones: call 0's, tail first (as
    # vLLM frees them), so only its first 2 blocks survive.
    recs, _ = run(scenario(), "none", blocks=12)
    assert recs[2].cached_prompt_tokens == 32


def test_ttl_pin_keeps_the_context_and_the_stranger_still_runs() -> None:
    recs, inst = run(scenario(), "ttl", blocks=20, ttl_s=5.0)
    assert recs[2].cached_prompt_tokens == 128  # 8 blocks kept across the gap
    assert recs[1].finished and inst.retention.pins.pinned == 1


def test_pins_are_given_up_before_anything_is_preempted() -> None:
    # 12 blocks: the stranger needs 10, only 4 are free beside the 8 pinned: the pin goes.
    recs, inst = run(scenario(), "ttl", blocks=12, ttl_s=5.0)
    assert all(r.finished for r in recs) and sum(r.preemptions for r in recs) == 0
    assert recs[2].cached_prompt_tokens == 32 and inst.retention.pins.blocks == 0


def test_a_pin_expires_at_its_time_to_live() -> None:
    recs, inst = run(scenario(), "ttl", blocks=20, ttl_s=0.5)  # expires at 0.638 < 2.0
    assert recs[2].cached_prompt_tokens == 128  # not evicted: expired to the LRU, still cached
    assert inst.retention.pins.blocks == 0
    recs, _ = run(scenario(), "ttl", blocks=12, ttl_s=0.5)  # expired, then evicted at 1.0
    assert recs[2].cached_prompt_tokens == 32


def test_workflow_retention_gives_up_the_least_valuable_pin() -> None:
    # Two finished calls pinned: workflow 0 (8 blocks, next gap 1.8 s: value 129/1.8 = 72)
    # and workflow 1 (4 blocks, gap 0.2 s: value 65/0.2 = 325). The stranger needs the room
    # of one: the lower value (workflow 0) goes.
    a = call(0, 0.0, 128, list(range(8)), gap=1.8)
    b = call(1, 0.0, 64, list(range(50, 54)), gap=0.2, wf=1)
    x = Request(2, 0.3, 112, 1, block_hashes=chain_hashes(list(range(100, 107))))
    _recs, inst = run([a, b, x], "workflow", blocks=18, slack=20.0)  # 6 free, 7 needed
    pins = inst.retention.pins
    assert pins.blocks == 4 and set(pins.held()) == set(chain_hashes(list(range(50, 54))))


def test_fast_forward_is_exact_with_pins_expiring_mid_run() -> None:
    long = Request(9, 0.0, 32, 400)  # a long decode: fast-forward runs across the expiry
    reqs = sorted([*scenario(), long], key=lambda r: r.arrival_s)
    a, _ = run(reqs, "ttl", blocks=40, ttl_s=0.7)
    b, _ = run(reqs, "ttl", blocks=40, ttl_s=0.7, ff=False)
    assert [astuple(r) for r in a] == [astuple(r) for r in b]


@pytest.mark.parametrize("name", ["ttl", "workflow"])
def test_bad_parameters(name: str) -> None:
    from fleetsched.errors import InputError

    bad = {"ttl": {"ttl_s": 0}, "workflow": {"slack": 0.5}}[name]
    with pytest.raises(InputError):
        make(RETENTION, "retention", name, bad)
