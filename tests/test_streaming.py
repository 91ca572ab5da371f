"""Streamed prompts (Stream2LLM): the engine prefills only what has arrived, hand-checked
timings, the wait-for-the-whole-prompt baseline, and property tests."""

from __future__ import annotations

import math
from dataclasses import astuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator


class Linear:
    """Step time = a + b * prefill tokens + c * decodes (hand-checkable)."""

    def __init__(self, a: float = 0.01, b: float = 0.001, c: float = 0.0) -> None:
        self.a, self.b, self.c = a, b, c

    def step_time(self, pf: int, pairs: float, nd: int, ctx: int) -> float:
        return 0.0 if pf + nd == 0 else self.a + self.b * pf + self.c * nd

    def decode_step_times(self, nd, ctx):
        import numpy as np

        return np.full(len(ctx), self.step_time(0, 0.0, nd, 0))


def run(reqs, *, stream=True, blocks=1000, budget=64, ff=True, check=True, n=1, probe=None):
    cfg = EngineConfig(max_num_batched_tokens=budget, max_num_seqs=8, num_gpu_blocks=blocks)
    insts = [Instance(i, blocks, Linear(), cfg, fast_forward=ff) for i in range(n)]
    sim = Simulator(insts, make_router("round_robin"), stream_prompts=stream)
    if probe is not None:
        for inst in insts:
            orig = inst.check_invariants

            def checked(orig=orig, inst=inst):
                orig()
                probe(sim, inst)

            inst.check_invariants = checked
    return sim.run(reqs, check=check)


def test_prefill_follows_the_pieces_by_hand() -> None:
    # 100 tokens in pieces of 40, 30, 30 at 0, 1, 2 s; budget 64 per step; step = 0.01 +
    # 0.001 / token. Piece 1: one step of 40 tokens, 0.05 s. Piece 2 at 1.0: 30 tokens,
    # 0.04 s. Piece 3 at 2.0: 30 tokens, 0.04 s -> first token at 2.04; one decode step
    # (0.01 s) for the second output token -> 2.05.
    r = Request(0, 0.0, 100, 2, prompt_chunks=((0.0, 40), (1.0, 30), (2.0, 30)))
    (rec,) = run([r])
    assert rec.first_token_s == pytest.approx(2.04)
    assert rec.finish_s == pytest.approx(2.05)
    # Waiting for the whole prompt: sent at 2.0, then 64 + 36 tokens: 0.074 + 0.046.
    (rec,) = run([r], stream=False)
    assert rec.first_scheduled_s == pytest.approx(2.0)
    assert rec.first_token_s == pytest.approx(2.12)
    assert rec.ttft_s == pytest.approx(2.12)  # from the request's arrival at 0


def test_streaming_hides_the_prefill_behind_the_retrieval() -> None:
    # A long prompt in 10 pieces 0.5 s apart: streamed, only the last piece is left to
    # prefill when it arrives; buffered, the whole prompt is.
    pieces = tuple((0.5 * i, 200) for i in range(10))
    r = Request(0, 0.0, 2000, 1, prompt_chunks=pieces)
    (a,) = run([r], budget=256)
    (b,) = run([r], stream=False, budget=256)
    assert a.ttft_s == pytest.approx(4.5 + 0.01 + 0.2)
    assert b.ttft_s > a.ttft_s + 1.5  # 8 steps of 256 tokens after 4.5 s


_PIECES = st.lists(st.tuples(st.floats(0, 2), st.integers(1, 120)), min_size=1, max_size=5)


@st.composite
def streamed(draw: st.DrawFn) -> list[Request]:
    out = []
    t = 0.0
    for i in range(draw(st.integers(1, 8))):
        t += draw(st.floats(0, 1))
        gaps = draw(_PIECES)
        off, pieces = 0.0, []
        for j, (g, tok) in enumerate(gaps):
            off = 0.0 if j == 0 else off + g
            pieces.append((off, tok))
        prompt = sum(tok for _, tok in pieces)
        out.append(Request(i, t, prompt, draw(st.integers(1, 30)), prompt_chunks=tuple(pieces)))
    return out


def _arrived(req: Request, now: float) -> int:
    return sum(tok for off, tok in req.prompt_chunks if req.arrival_s + off <= now + 1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=streamed(), n=st.integers(1, 2), blocks=st.sampled_from([40, 200]))
def test_never_prefilled_beyond_what_has_arrived(reqs: list[Request], n: int, blocks: int):
    seen = []

    def probe(sim, inst) -> None:
        for seq in list(inst.running.values()):
            if seq.req.prompt_chunks and seq.state != 2:  # not decoding yet
                arrived = _arrived(seq.req, sim.now)
                if arrived < seq.req.prompt_tokens:  # (a recompute past the prompt is fine)
                    assert seq.computed <= arrived
                seen.append(seq.computed)

    recs = run(reqs, blocks=blocks, n=n, probe=probe)
    for req, rec in zip(reqs, recs, strict=True):
        if not math.isnan(rec.first_token_s):
            last = req.arrival_s + req.prompt_chunks[-1][0]
            assert rec.first_token_s > last - 1e-12  # the first token needs the whole prompt
            assert rec.generated_tokens == req.output_tokens
    # Fast-forward changes nothing.
    assert [astuple(r) for r in recs] == [
        astuple(r) for r in run(reqs, blocks=blocks, n=n, ff=False, check=False)
    ]


def test_stream_stalled_preempts_the_stream_waiting_for_its_next_piece() -> None:
    """10 blocks of 16 tokens. B streams 128 tokens (48 at 0 s, 80 at 5 s) and stalls after
    its first piece holding 3 blocks; A (32 + 100 tokens) decodes beside it and needs a 9th
    block... vLLM's newest-first preempts A, which then waits for B to finish; the stalled
    stream goes first instead, and loses nothing: its blocks stay cached."""
    from fleetsched.policies.engine.stream_stalled import StalledStreamVictim

    def go(preemption):
        cfg = EngineConfig(max_num_batched_tokens=64, max_num_seqs=8, num_gpu_blocks=10)
        inst = Instance(0, 10, Linear(), cfg, preemption=preemption)
        sim = Simulator([inst], make_router("round_robin"))
        b = Request(0, 0.0, 128, 2, prompt_chunks=((0.0, 48), (5.0, 80)))
        a = Request(1, 0.01, 32, 100)
        return sorted(sim.run([b, a], check=True), key=lambda r: r.id)

    b, a = go(StalledStreamVictim())
    # A: B's 48-token step ends at 0.058; A's 32-token prefill (0.042 s) -> first token 0.1;
    # 99 decode steps of 0.01 s -> 1.09. B: 64 + 16 tokens after 5 s (0.074 + 0.026 s) ->
    # 5.1, one decode step -> 5.11: its preemption cost it nothing.
    assert (a.first_token_s, a.finish_s, a.preemptions) == pytest.approx((0.1, 1.09, 0))
    assert (b.finish_s, b.preemptions) == pytest.approx((5.11, 1))
    b0, a0 = go(None)  # newest first
    assert a0.preemptions == 1 and a0.finish_s > 5.11 and b0.finish_s == pytest.approx(5.11)
