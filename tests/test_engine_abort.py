"""``Instance.abort``: a request whose client went away leaves at once and frees its KV."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request, chain_hashes
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import DECODE, DONE, PREFILL, Seq
from fleetsched.perf import FittedProfile
from fleetsched.sim.kernel import new_record

PROF = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.004,
    prefill_token_s=1e-5,
    prefill_pair_s=0.0,
    decode_token_s=2e-4,
    decode_ctx_token_s=0.0,
)


class Driver:
    """The event loop of one instance (what the simulator's kernel or the emulator does)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.next: float | None = None
        self.finished: list[tuple[Seq, float]] = []
        inst.on_finish = lambda seq, now: self.finished.append((seq, now))

    def advance(self, t: float) -> None:
        """Process every event up to ``t``, then bring the instance to ``t``."""
        while self.next is not None and self.next <= t:
            ev, self.next = self.next, None
            self.next = self.inst.on_event(ev)
            self.inst.check_invariants()
        self.inst.sync(t)

    def push(self, nt: float | None) -> None:
        if nt is not None:
            self.next = nt

    def submit(self, req: Request, t: float) -> Seq:
        self.advance(t)
        seq = Seq(req, new_record(req))
        self.push(self.inst.enqueue(seq, t))
        return seq

    def abort(self, seq: Seq, t: float) -> None:
        self.advance(t)
        self.push(self.inst.abort(seq, t))
        self.inst.check_invariants()

    def drain(self) -> None:
        while self.next is not None:
            self.advance(self.next)


def make(ff: bool = False, blocks: int = 1000, **cfg: object) -> tuple[Instance, Driver]:
    inst = Instance(0, blocks, PROF, EngineConfig(**cfg), fast_forward=ff)  # type: ignore[arg-type]
    return inst, Driver(inst)


@pytest.mark.parametrize("ff", [False, True])
def test_aborting_a_decoding_request_frees_its_blocks_now(ff: bool) -> None:
    inst, d = make(ff)
    a = d.submit(Request(0, 0.0, 160, 400), 0.0)
    b = d.submit(Request(1, 0.0, 320, 400), 0.0)
    d.advance(0.05)  # both decode by now
    assert a.state == b.state == DECODE
    held_a = inst.blocks_held(a)
    used = inst.kv.used
    d.abort(a, 0.05)
    assert inst.kv.used == used - held_a
    assert a.state == DONE and math.isnan(a.rec.finish_s)
    assert inst.outstanding == 1 and inst.stats.aborted == 1
    assert d.finished[0][0] is a and math.isnan(d.finished[0][1])
    assert 0 < inst.generated_tokens(a) == a.generated < 400
    d.drain()
    assert b.rec.finish_s > 0.05 and b.generated == 400
    assert inst.kv.used == 0 and not inst.busy and inst.outstanding == 0


def test_aborting_a_waiting_request_removes_it_from_the_queue() -> None:
    inst, d = make(max_num_seqs=1)
    a = d.submit(Request(0, 0.0, 100, 50), 0.0)
    b = d.submit(Request(1, 0.0, 100, 50), 0.0)
    d.advance(0.01)
    assert inst.view(0.01).queue_len == 1
    d.abort(b, 0.01)
    assert inst.view(0.01).queue_len == 0
    d.drain()
    assert a.generated == 50 and b.generated == 0
    assert math.isnan(b.rec.first_scheduled_s) and math.isnan(b.rec.finish_s)
    assert len(inst.waiting) == 0 and inst.kv.used == 0 and not inst.busy


def test_an_engine_whose_only_waiting_request_was_aborted_goes_idle() -> None:
    inst, _ = make()
    a = Seq(Request(0, 0.0, 100, 5), new_record(Request(0, 0.0, 100, 5)))
    wake = inst.enqueue(a, 0.0)
    assert wake == 0.0
    assert inst.abort(a, 0.0) is None
    assert inst.on_event(0.0) is None  # nothing to run: no crash, no reject
    assert not inst.busy and inst.stats.rejected == 0 and inst.stats.aborted == 1


def test_aborting_a_request_mid_prefill_frees_its_chunks() -> None:
    inst, d = make(max_num_batched_tokens=64, max_num_seqs=8)
    a = d.submit(Request(0, 0.0, 640, 10), 0.0)
    d.advance(0.0)
    d.advance(d.next + 1e-9)  # one 64-token chunk done, the next in progress
    assert a.state == PREFILL and 0 < a.computed < 640
    assert inst.kv.used > 0
    d.abort(a, d.next - 1e-9)
    assert inst.kv.used == 0
    d.drain()
    assert not inst.busy and math.isnan(a.rec.first_token_s)


def test_cached_prefix_blocks_stay_cached_after_an_abort() -> None:
    inst, d = make()
    hashes = chain_hashes(list(range(10)))
    a = d.submit(Request(0, 0.0, 160, 100, block_hashes=hashes), 0.0)
    d.advance(0.05)
    d.abort(a, 0.05)
    assert inst.kv.used == 0
    b = d.submit(Request(1, 0.06, 176, 5, block_hashes=hashes), 0.06)
    d.drain()
    assert b.rec.cached_prompt_tokens == 10 * 16  # the cache kept all of a's prompt blocks


@settings(max_examples=60, deadline=None)
@given(
    st.booleans(),
    st.lists(
        st.tuples(
            st.floats(0.0, 0.02),  # gap before the op
            st.integers(0, 2),  # 0, 1: submit; 2: abort one live request
            st.integers(1, 300),  # prompt tokens
            st.integers(1, 60),  # output tokens
            st.integers(0, 3),  # shared prefix group
            st.integers(0, 10**6),  # pick
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_any_mix_of_arrivals_and_aborts_keeps_kv_accounting_exact(ff: bool, ops: list) -> None:
    inst, d = make(ff, blocks=60, max_num_batched_tokens=128, max_num_seqs=6)
    t = 0.0
    seqs: list[Seq] = []
    aborted: set[int] = set()
    for i, (gap, op, p, o, grp, pick) in enumerate(ops):
        t += gap
        d.advance(t)
        live = [s for s in seqs if s.state != DONE]
        if op == 2 and live:
            s = live[pick % len(live)]
            d.abort(s, t)
            aborted.add(id(s))
        else:
            hashes = chain_hashes([grp] * (p // 16), seed=grp)
            seqs.append(d.submit(Request(i, t, p, o, block_hashes=hashes), t))
        inst.check_invariants()
    d.drain()
    assert not inst.busy and inst.outstanding == 0 and inst.kv.used == 0
    assert inst.view(t).queue_len == 0
    for s in seqs:
        if id(s) in aborted:
            assert math.isnan(s.rec.finish_s)
        elif not math.isnan(s.rec.finish_s):
            assert s.generated == s.req.output_tokens
        else:
            assert inst.stats.rejected > 0  # only a request that can never fit ends unfinished
    assert inst.stats.aborted == len(aborted)
