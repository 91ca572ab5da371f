"""Synthetic workloads from a :class:`~fleetsched.core.config.SyntheticConfig`.

Model
-----
* **Sessions** start at the times of the arrival process (``arrival.rate`` is the session start
  rate). A session has ``T ~ Geometric(1 / turns_mean)`` turns (so ``turns_mean=1`` gives
  single-turn requests). Turn k+1 arrives ``Exp(think_time_s)`` seconds after turn k arrived.
* **Prompts** of turn 1 are ``system_prompt_tokens`` (one of ``num_system_prompts`` shared
  system prompts, picked uniformly per session) plus a user message whose length is drawn from
  ``prompt``. Turn k+1's prompt is turn k's prompt + turn k's output + a new user message, so it
  extends turn k's prefix. Outputs are drawn from ``output``.
* **Prefix hashes** use ``hash_block_tokens = 16`` and model token content by position: a
  block entirely inside system prompt j has id (j, block index); any other block of a session
  holds that session's own text and has id (session, block index). Equal content therefore
  gives equal chained hashes (shared system prompts across sessions, conversation history
  within a session) and different content different ones. A turn that has a next turn also
  carries ``output_block_hashes``: the hashes of the full blocks of its prompt + answer past its
  prompt's full blocks, which are exactly the next turn's hashes there, so an engine that caches
  the blocks its answer fills lets the next turn hit them (as vLLM's prefix cache does).
* **Tenants** are drawn per session by weight; each request carries its tenant's ``priority``
  and ``slo_class``.
* **Streamed prompts** (``streaming``): the prompt is cut into ``chunks`` near-equal pieces
  (earlier pieces get the remainder); the first arrives with the request, each next one an
  Exp(``gap_s``) gap later (``Request.prompt_chunks``).
* **Task classes** (``tasks``): drawn per request by weight; with ``difficulty`` each request
  also gets a difficulty uniform in [0, 1].

Randomness: one ``numpy.random.Generator(PCG64(seed))`` whose spawned children feed separate
streams (arrivals, prompt lengths, output lengths, turns, tenants, system prompts, think
times, task classes, difficulties, piece gaps). Equal seeds give identical workloads, and
changing e.g. the output distribution leaves the arrival times unchanged (common random
numbers across scenarios). Draws are buffered in chunks, so the stream is lazy and memory
stays bounded for any ``num_requests``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fleetsched.core.config import ArrivalConfig, LengthConfig, SyntheticConfig, TenantConfig
from fleetsched.core.request import BLOCK_TOKENS, Request, chain_hashes
from fleetsched.errors import InputError

_CHUNK = 1024


class _Draws:
    """Buffered scalar draws: ``fn(n)`` returns n samples; calling the object returns one."""

    __slots__ = ("_buf", "_fn", "_i")

    def __init__(self, fn: Callable[[int], np.ndarray]) -> None:
        self._fn = fn
        self._buf: list = []
        self._i = 0

    def __call__(self):
        i = self._i
        if i >= len(self._buf):
            self._buf = self._fn(_CHUNK).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.Generator(np.random.PCG64(int(seed)))


# ---------------------------------------------------------------------------------- arrivals


def arrival_times(cfg: ArrivalConfig, rng: np.random.Generator) -> Iterator[float]:
    """Endless, non-decreasing arrival times (s) of the process ``cfg``; the first is 0.

    * ``poisson``: exponential gaps with mean ``1/rate``.
    * ``gamma``: gamma gaps with mean ``1/rate`` and coefficient of variation ``cv``
      (shape ``1/cv**2``); cv > 1 is burstier than Poisson, cv < 1 smoother.
    * ``bursty``: on/off Markov-modulated Poisson. On and off periods last ``Exp(on_s)`` and
      ``Exp(off_s)``; the rate while off is ``off_rate_factor`` times the rate while on, and the
      on rate is set so the long-run mean rate is ``rate``. The first period's state is drawn
      from the stationary distribution.
    """
    rate = cfg.rate
    if cfg.kind == "poisson":
        gaps = _Draws(lambda n: rng.exponential(1.0 / rate, n))
    elif cfg.kind == "gamma":
        shape = 1.0 / (cfg.cv * cfg.cv)
        gaps = _Draws(lambda n: rng.gamma(shape, 1.0 / (rate * shape), n))
    elif cfg.kind == "bursty":
        return _bursty_times(cfg, rng)
    else:  # pragma: no cover - pydantic restricts kind
        raise InputError(f"unknown arrival kind {cfg.kind!r}")
    return _renewal_times(gaps)


def _renewal_times(gaps: _Draws) -> Iterator[float]:
    t = 0.0
    while True:
        yield t
        t += gaps()


def _bursty_times(cfg: ArrivalConfig, rng: np.random.Generator) -> Iterator[float]:
    on_s, off_s, f = cfg.on_s, cfg.off_s, cfg.off_rate_factor
    r_on = cfg.rate * (on_s + off_s) / (on_s + f * off_s)
    r_off = f * r_on
    on = bool(rng.random() < on_s / (on_s + off_s))
    e = _Draws(rng.standard_exponential)
    t = 0.0
    end = e() * (on_s if on else off_s)
    first: float | None = None
    while True:
        r = r_on if on else r_off
        if r > 0:
            nxt = t + e() / r
            if nxt < end:
                t = nxt
                if first is None:
                    first = t
                yield t - first
                continue
        # No arrival before the period ends: switch state (memoryless, so redraw from there).
        t = end
        on = not on
        end = t + e() * (on_s if on else off_s)


# ----------------------------------------------------------------------------------- lengths


def empirical_values(path: str, column: str) -> np.ndarray:
    """Token lengths of one column (``prompt`` or ``output``) of a trace file, any format."""
    from fleetsched.workload.loaders import load_trace

    attr = "prompt_tokens" if column == "prompt" else "output_tokens"
    values = np.fromiter((getattr(r, attr) for r in load_trace(path)), dtype=np.int64)
    if values.size == 0:  # pragma: no cover - loaders raise on traces without rows
        raise InputError("empirical length distribution: no requests", path)
    return values


def length_sampler(cfg: LengthConfig, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """A function ``n -> n`` token lengths drawn from ``cfg``, each in ``[1, cfg.max]``.

    ``lognormal`` is parameterized by its mean: ``mu = ln(mean) - sigma**2 / 2``. Samples are
    rounded to the nearest integer.
    """
    cap = cfg.max
    if cfg.kind == "fixed":
        v = min(max(cfg.value, 1), cap)
        return lambda n: np.full(n, v, dtype=np.int64)
    if cfg.kind == "uniform":
        return lambda n: np.minimum(rng.integers(cfg.low, cfg.high + 1, n), cap)
    if cfg.kind == "lognormal":
        mu = math.log(cfg.mean) - cfg.sigma**2 / 2
        return lambda n: np.clip(np.rint(rng.lognormal(mu, cfg.sigma, n)), 1, cap).astype(np.int64)
    if cfg.kind == "empirical":
        assert cfg.path is not None  # checked by LengthConfig
        values = np.clip(empirical_values(cfg.path, cfg.column), 1, cap)
        return lambda n: rng.choice(values, n)
    raise InputError(f"unknown length kind {cfg.kind!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------- sessions


@dataclass(slots=True)
class _Session:
    uid: int
    system: int  # index of the system prompt
    tenant: TenantConfig
    turns_left: int
    context: int  # tokens of the conversation so far (prompt + output of the last turn)
    chain: list[int]  # chained hashes of the conversation's full blocks computed so far


def _sys_block_id(prompt: int, block: int) -> int:
    return ((prompt << 32) | block) << 1


def _session_block_id(session: int, block: int) -> int:
    """Odd ids, two apart for consecutive blocks of a session (blocks < 2**32)."""
    return (((session << 32) | block) << 1) | 1


def generate(cfg: SyntheticConfig, seed: int = 0) -> Iterator[Request]:
    """Stream ``cfg.num_requests`` synthetic requests sorted by arrival time, ids 0..N-1.

    Distributions are set up now (an empirical length file is read and checked here);
    requests are produced lazily.
    """
    root = _rng(seed)
    streams = root.spawn(10)
    arrivals = arrival_times(cfg.arrival, streams[0])
    prompt_len = _Draws(length_sampler(cfg.prompt, streams[1]))
    output_len = _Draws(length_sampler(cfg.output, streams[2]))
    p_turn = 1.0 / cfg.sessions.turns_mean
    turns = _Draws(lambda n: streams[3].geometric(p_turn, n))
    tenants = cfg.tenants
    weights = np.array([t.weight for t in tenants], dtype=float)
    weights /= weights.sum()
    tenant_idx = _Draws(lambda n: streams[4].choice(len(tenants), n, p=weights))
    n_sys = cfg.num_system_prompts
    sys_idx = _Draws(lambda n: streams[5].integers(0, n_sys, n))
    think_mean = cfg.sessions.think_time_s
    think = _Draws(lambda n: streams[6].exponential(think_mean, n))
    extras = _extras(cfg, streams[7:])
    return _stream(cfg, arrivals, prompt_len, output_len, turns, tenant_idx, sys_idx, think, extras)


def _extras(
    cfg: SyntheticConfig, streams: list[np.random.Generator]
) -> Callable[[int], dict] | None:
    """Per-request optional fields (task class, difficulty, prompt pieces), or None."""
    tasks, stream_cfg = cfg.tasks, cfg.streaming
    if not tasks and stream_cfg is None:
        return None
    task_draw = None
    if tasks:
        w = np.array([t.weight for t in tasks], dtype=float)
        w /= w.sum()
        names = [t.name for t in tasks]
        idx = _Draws(lambda n: streams[0].choice(len(names), n, p=w))
        task_draw = lambda: names[idx()]  # noqa: E731
    diff = _Draws(lambda n: streams[1].random(n)) if tasks and cfg.difficulty else None
    gaps = None
    if stream_cfg is not None and stream_cfg.chunks > 1:
        g = stream_cfg.gap_s
        gaps = _Draws(lambda n: streams[2].exponential(g, n)) if g > 0 else (lambda: 0.0)

    def extras(prompt: int) -> dict:
        d: dict = {}
        if task_draw is not None:
            d["task_class"] = task_draw()
        if diff is not None:
            d["difficulty"] = diff()
        if gaps is not None:
            d["prompt_chunks"] = split_prompt(prompt, stream_cfg.chunks, gaps)
        return d

    return extras


def split_prompt(
    prompt: int, chunks: int, gap: Callable[[], float]
) -> tuple[tuple[float, int], ...]:
    """``prompt`` tokens in ``min(chunks, prompt)`` near-equal pieces (the first pieces get
    the remainder) at offsets 0, then cumulative ``gap()`` draws."""
    k = min(chunks, prompt)
    base, extra = divmod(prompt, k)
    out = []
    t = 0.0
    for i in range(k):
        if i:
            t += gap()
        out.append((t, base + (1 if i < extra else 0)))
    return tuple(out)


def _stream(
    cfg: SyntheticConfig,
    arrivals: Iterator[float],
    prompt_len: _Draws,
    output_len: _Draws,
    turns: _Draws,
    tenant_idx: _Draws,
    sys_idx: _Draws,
    think: _Draws,
    extras: Callable[[int], dict] | None,
) -> Iterator[Request]:
    bt = BLOCK_TOKENS
    sys_tokens = cfg.system_prompt_tokens
    sys_blocks = sys_tokens // bt  # blocks made only of system prompt text
    sys_chains: dict[int, tuple[int, ...]] = {}
    tenants = cfg.tenants
    one_tenant = len(tenants) == 1
    multi_turn = cfg.sessions.turns_mean > 1
    one_sys = cfg.num_system_prompts == 1
    has_think = cfg.sessions.think_time_s > 0
    model = cfg.model

    pending: list[tuple[float, int, _Session]] = []  # (arrival, session uid, session)
    next_start = next(arrivals)
    uid = 0
    for i in range(cfg.num_requests):
        if pending and pending[0][0] <= next_start:
            t, _, s = heapq.heappop(pending)
        else:
            t = next_start
            next_start = next(arrivals)
            k = 0 if one_sys else sys_idx()
            chain = sys_chains.get(k)
            if chain is None:
                chain = chain_hashes([_sys_block_id(k, b) for b in range(sys_blocks)])
                sys_chains[k] = chain
            s = _Session(
                uid=uid,
                system=k,
                tenant=tenants[0] if one_tenant else tenants[tenant_idx()],
                turns_left=turns() if multi_turn else 1,
                context=sys_tokens,
                chain=list(chain),
            )
            uid += 1
        prompt = s.context + prompt_len()
        output = output_len()
        n_blocks = prompt // bt
        more = s.turns_left > 1  # the next turn's prompt repeats this prompt and answer
        n_known = (prompt + output) // bt if more else n_blocks
        chain = s.chain
        if len(chain) < n_known:
            su = s.uid
            # _session_block_id(su, b) for b = len(chain) .. n_known - 1, as one range
            first = _session_block_id(su, len(chain))
            new = range(first, first + 2 * (n_known - len(chain)), 2)
            chain.extend(chain_hashes(new, chain[-1] if chain else 0))
        tenant = s.tenant
        yield Request(
            id=i,
            arrival_s=t,
            prompt_tokens=prompt,
            output_tokens=output,
            block_hashes=tuple(chain[:n_blocks]),
            hash_block_tokens=bt,
            tenant=tenant.name,
            priority=tenant.priority,
            session_id=f"s{s.uid}" if multi_turn else None,
            slo_class=tenant.slo_class,
            model=model,
            output_block_hashes=tuple(chain[n_blocks:n_known]),
            **(extras(prompt) if extras is not None else {}),
            deterministic=tenant.deterministic,
        )
        s.turns_left -= 1
        if s.turns_left > 0:
            s.context = prompt + output
            heapq.heappush(pending, (t + (think() if has_think else 0.0), s.uid, s))
