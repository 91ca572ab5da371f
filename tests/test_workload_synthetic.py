"""Synthetic generators: statistical properties, determinism, sessions, streaming."""

from __future__ import annotations

import math
import tracemalloc
from collections import Counter, defaultdict
from itertools import islice, pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetsched.core.config import (
    ArrivalConfig,
    LengthConfig,
    SessionConfig,
    SyntheticConfig,
    TenantConfig,
)
from fleetsched.errors import InputError
from fleetsched.workload import arrival_times, generate, length_sampler, write_jsonl

FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
SMALL = LengthConfig(kind="fixed", value=8)  # shorter than a block: no hashing work


def _cfg(n: int, arrival: ArrivalConfig, **kw: object) -> SyntheticConfig:
    return SyntheticConfig(num_requests=n, arrival=arrival, prompt=SMALL, output=SMALL, **kw)


def _gaps(times: list[float]) -> np.ndarray:
    return np.diff(np.asarray(times))


@FAST
@given(rate=st.floats(0.05, 2000), seed=SEEDS)
def test_poisson_rate_and_cv(rate: float, seed: int) -> None:
    n = 10_000
    times = [r.arrival_s for r in generate(_cfg(n, ArrivalConfig(rate=rate)), seed)]
    gaps = _gaps(times)
    # Mean gap of n-1 exponential gaps has standard error (1/rate)/sqrt(n-1): allow 5 sigma.
    assert abs(gaps.mean() * rate - 1) < 5 / math.sqrt(n - 1)
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1) < 5 * math.sqrt(2 / n)  # sd of the sample CV of exponentials ~ 1/sqrt(n)


@FAST
@given(rate=st.floats(0.05, 2000), cv=st.floats(0.2, 3.0), seed=SEEDS)
def test_gamma_rate_and_cv(rate: float, cv: float, seed: int) -> None:
    n = 10_000
    times = [
        r.arrival_s for r in generate(_cfg(n, ArrivalConfig(kind="gamma", rate=rate, cv=cv)), seed)
    ]
    gaps = _gaps(times)
    m = len(gaps)
    assert abs(gaps.mean() * rate - 1) < 5 * cv / math.sqrt(m)
    # Sample CV: delta method with the gamma's excess kurtosis 6 cv^2 for the sd part.
    sd_rel = 0.5 * math.sqrt((2 + 6 * cv**2) / m)
    tol = 5 * math.sqrt(sd_rel**2 + cv**2 / m)
    assert abs(gaps.std() / gaps.mean() / cv - 1) < tol


def test_bursty_keeps_mean_rate_and_is_burstier_than_poisson() -> None:
    n = 50_000
    arr = ArrivalConfig(kind="bursty", rate=100, on_s=0.1, off_s=0.1, off_rate_factor=0.0)
    times = [r.arrival_s for r in generate(_cfg(n, arr), 11)]
    gaps = _gaps(times)
    # ~2,500 on/off cycles: the on-time fraction has ~2% relative sd -> 10% is 5 sigma.
    assert abs(gaps.mean() * 100 - 1) < 0.10
    assert gaps.std() / gaps.mean() > 1.3  # Poisson would give 1
    # Partly-on: off_rate_factor=0.5 still averages to the requested rate.
    arr = ArrivalConfig(kind="bursty", rate=50, on_s=0.2, off_s=0.6, off_rate_factor=0.5)
    times = [r.arrival_s for r in generate(_cfg(n, arr), 12)]
    assert abs(_gaps(times).mean() * 50 - 1) < 0.10


@FAST
@given(mean=st.floats(20, 3000), sigma=st.floats(0.05, 1.2), seed=SEEDS)
def test_lognormal_lengths_hold_their_mean(mean: float, sigma: float, seed: int) -> None:
    n = 10_000
    rng = np.random.Generator(np.random.PCG64(seed))
    cfg = LengthConfig(kind="lognormal", mean=mean, sigma=sigma, max=10**9)
    x = length_sampler(cfg, rng)(n)
    assert x.dtype.kind == "i" and x.min() >= 1
    se = mean * math.sqrt(math.expm1(sigma**2)) / math.sqrt(n)
    assert abs(x.mean() - mean) < 5 * se + 0.5  # + rounding to integers


@FAST
@given(low=st.integers(1, 5000), width=st.integers(0, 5000), seed=SEEDS)
def test_uniform_lengths_hold_their_mean_and_bounds(low: int, width: int, seed: int) -> None:
    n = 10_000
    high = low + width
    rng = np.random.Generator(np.random.PCG64(seed))
    x = length_sampler(LengthConfig(kind="uniform", low=low, high=high, max=10**9), rng)(n)
    assert x.min() >= low and x.max() <= high
    se = math.sqrt(((width + 1) ** 2 - 1) / 12) / math.sqrt(n)
    assert abs(x.mean() - (low + high) / 2) < 5 * se + 1e-9


def test_fixed_and_cap() -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    assert set(length_sampler(LengthConfig(kind="fixed", value=77), rng)(100).tolist()) == {77}
    capped = length_sampler(LengthConfig(kind="lognormal", mean=5000, sigma=1.0, max=300), rng)
    assert capped(5000).max() == 300


def test_empirical_lengths_come_from_the_trace(tmp_path: Path) -> None:
    p = tmp_path / "v.csv"
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100,7\n1,200,9\n2,300,11\n")
    rng = np.random.Generator(np.random.PCG64(5))
    x = length_sampler(LengthConfig(kind="empirical", path=str(p), column="output"), rng)(3000)
    counts = Counter(x.tolist())
    assert set(counts) == {7, 9, 11}
    assert all(abs(c - 1000) < 5 * math.sqrt(3000 * (1 / 3) * (2 / 3)) for c in counts.values())
    with pytest.raises(InputError, match="no such file"):
        length_sampler(LengthConfig(kind="empirical", path=str(tmp_path / "x.csv")), rng)


CHAT = SyntheticConfig(
    num_requests=3000,
    arrival=ArrivalConfig(kind="gamma", rate=20, cv=1.5),
    prompt=LengthConfig(kind="lognormal", mean=120, sigma=0.6),
    output=LengthConfig(kind="lognormal", mean=60, sigma=0.6),
    sessions=SessionConfig(turns_mean=4, think_time_s=3),
    system_prompt_tokens=100,
    num_system_prompts=3,
    tenants=[
        TenantConfig(name="gold", weight=1, priority=2, slo_class="interactive"),
        TenantConfig(name="bronze", weight=3, priority=0, slo_class="batch"),
    ],
    model="llama",
)


def _key(r: object) -> tuple:
    return tuple(getattr(r, f) for f in r.__slots__ if f != "extra")  # type: ignore[attr-defined]


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_equal_seeds_identical_different_seeds_differ(seed: int) -> None:
    a = [_key(r) for r in generate(CHAT, seed)]
    b = [_key(r) for r in generate(CHAT, seed)]
    c = [_key(r) for r in generate(CHAT, seed + 1)]
    assert a == b
    assert a != c
    assert [r[1] for r in a] != [r[1] for r in c]  # arrival times differ too


def test_identical_files_for_equal_seeds(tmp_path: Path) -> None:
    write_jsonl(generate(CHAT, 9), tmp_path / "a.jsonl")
    write_jsonl(generate(CHAT, 9), tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_sorted_ids_and_counts(seed: int) -> None:
    reqs = list(generate(CHAT, seed))
    assert len(reqs) == CHAT.num_requests
    assert [r.id for r in reqs] == list(range(len(reqs)))
    times = [r.arrival_s for r in reqs]
    assert times == sorted(times) and times[0] == 0.0
    assert all(r.model == "llama" and r.hash_block_tokens == 16 for r in reqs)
    assert all(len(r.block_hashes) == r.prompt_tokens // 16 for r in reqs)


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_sessions_later_turns_extend_earlier_prefix(seed: int) -> None:
    by_session = defaultdict(list)
    for r in generate(CHAT, seed):
        by_session[r.session_id].append(r)
    assert None not in by_session
    multi = [turns for turns in by_session.values() if len(turns) > 1]
    assert multi
    for turns in by_session.values():
        assert len({(t.tenant, t.priority, t.slo_class) for t in turns}) == 1
        for prev, nxt in pairwise(turns):
            assert nxt.arrival_s >= prev.arrival_s
            # prompt_{k+1} = prompt_k + output_k + a new message (>= 1 token)
            assert nxt.prompt_tokens >= prev.prompt_tokens + prev.output_tokens + 1
            assert nxt.block_hashes[: len(prev.block_hashes)] == prev.block_hashes
            assert len(nxt.block_hashes) > len(prev.block_hashes)


def test_session_turn_counts_are_geometric_with_requested_mean() -> None:
    cfg = SyntheticConfig(
        num_requests=40_000,
        arrival=ArrivalConfig(rate=1000),
        prompt=SMALL,
        output=SMALL,
        sessions=SessionConfig(turns_mean=3, think_time_s=0.01),
    )
    counts = Counter(r.session_id for r in generate(cfg, 2))
    # Sessions still open at the end are truncated; drop the last 1% of session ids.
    ids = sorted(counts, key=lambda s: int(s[1:]))
    turns = np.array([counts[s] for s in ids[: int(len(ids) * 0.99)]])
    # Geometric(p=1/3): mean 3, variance (1-p)/p^2 = 6.
    assert abs(turns.mean() - 3) < 5 * math.sqrt(6 / len(turns))
    assert turns.min() == 1


def test_system_prompts_are_shared_across_sessions() -> None:
    reqs = list(generate(CHAT, 4))
    sys_blocks = CHAT.system_prompt_tokens // 16  # 6 full blocks of system prompt
    first_turn = {}
    for r in reqs:
        first_turn.setdefault(r.session_id, r)
    heads = Counter(r.block_hashes[:sys_blocks] for r in first_turn.values())
    assert len(heads) == CHAT.num_system_prompts  # 3 distinct system prompts, all used
    assert all(c > 10 for c in heads.values())
    # Past the system prompt, different sessions never share a block.
    owner: dict[int, str | None] = {}
    for r in reqs:
        for h in r.block_hashes[sys_blocks:]:
            assert owner.setdefault(h, r.session_id) == r.session_id


def test_no_system_prompt_means_no_sharing_between_single_turn_requests() -> None:
    cfg = SyntheticConfig(num_requests=500, prompt=LengthConfig(kind="fixed", value=64))
    seen: set[int] = set()
    for r in generate(cfg, 0):
        assert r.session_id is None and len(r.block_hashes) == 4
        assert not seen.intersection(r.block_hashes)
        seen.update(r.block_hashes)


def test_tenant_weights_priorities_and_slo_classes() -> None:
    reqs = list(generate(CHAT.model_copy(update={"sessions": SessionConfig()}), 1))
    counts = Counter(r.tenant for r in reqs)
    n = len(reqs)
    assert abs(counts["gold"] / n - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
    for r in reqs:
        expected = (2, "interactive") if r.tenant == "gold" else (0, "batch")
        assert (r.priority, r.slo_class) == expected


def test_think_time_separates_turns() -> None:
    cfg = CHAT.model_copy(update={"sessions": SessionConfig(turns_mean=5, think_time_s=0.5)})
    by_session = defaultdict(list)
    for r in generate(cfg, 8):
        by_session[r.session_id].append(r.arrival_s)
    end = max(ts[-1] for ts in by_session.values())
    # Only sessions that started early enough to have finished (the stream stops after
    # num_requests, which censors the long gaps of sessions still open at the end).
    early = [ts for ts in by_session.values() if ts[0] < end / 3 and len(ts) > 1]
    gaps = np.concatenate([np.diff(ts) for ts in early])
    assert abs(gaps.mean() / 0.5 - 1) < 5 / math.sqrt(len(gaps))


def test_streaming_a_million_requests_is_lazy() -> None:
    cfg = SyntheticConfig(
        num_requests=1_000_000, sessions=SessionConfig(turns_mean=3), system_prompt_tokens=256
    )
    tracemalloc.start()
    try:
        it = generate(cfg, 0)
        head = list(islice(it, 2000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(head) == 2000 and head[-1].id == 1999
    assert peak < 20 * 2**20  # 1M requests would need far more than 20 MiB


def test_arrival_times_first_is_zero_and_nondecreasing() -> None:
    for kind in ("poisson", "gamma", "bursty"):
        rng = np.random.Generator(np.random.PCG64(3))
        t = list(islice(arrival_times(ArrivalConfig(kind=kind, rate=5, cv=2), rng), 5000))
        assert t[0] == 0.0 and all(a <= b for a, b in pairwise(t))


def test_negative_seed_is_an_input_error() -> None:
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        generate(SyntheticConfig(), -1)
