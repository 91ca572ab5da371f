"""The microbenchmark plan of ``fleetsched calibrate`` and the runner that measures it.

A plan is a list of experiments, each a few requests sent at fixed offsets (open loop) to
pinned slots; the runner waits for an experiment to finish and the server to go idle before
the next. Prompts are token ids built from 16-token blocks (a block id always gives the same
tokens), so which prefixes two prompts share is known exactly, and the engine model can replay
the very same requests (:mod:`fleetsched.calibrate.fit`).

Experiments (``n`` slots, ``c`` tokens of context per slot):

``prefill``   one prompt of each length (32 ... 1536 tokens), 2 output tokens: TTFT;
``decode``    ``k = 1..n`` streams at once on slots ``0..k-1`` at several context lengths:
              the inter-token gaps while all ``k`` decode (one engine step each);
``split``     2 streams on slots 0 and 2: llama.cpp splits their decode tokens into two
              ubatches (not consecutive sequences);
``mixed``     ``n - 1`` streams decoding when a prompt arrives on the last slot: the
              decoding streams' whole generation (mixed steps included), and as a check the
              prompt's TTFT;
``cached``    a prompt, then the same prompt extended: the second prefill runs after a
              cached prefix (attention over context), and the server's ``cache_n`` shows
              what it reused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fleetsched.calibrate.client import StreamResult, session, stream_completion

BLOCK = 16
#: Requests of one experiment leave this far apart, so that they reach the server's queue in
#: a known order (llama-server's HTTP threads may post simultaneous requests in any order,
#: and the order decides what the host-RAM prompt cache holds for each).
STAGGER_S = 0.02
#: Token ids are drawn from this range (gemma-3 and llama vocabularies: ordinary tokens).
TOKEN_LOW, TOKEN_HIGH = 1000, 30000


@dataclass(slots=True)
class Probe:
    """One planned request. ``row`` names the measurement it feeds; ``measure`` is what it
    measures: ``ttft``, ``gaps`` (steady decode gaps), ``span`` (first to last token),
    ``ttft_check`` (a TTFT reported next to its prediction but not fitted: it arrives in the
    middle of a step, at a phase the client cannot see) or ``""`` (it only sets the stage)."""

    row: str
    measure: str
    offset_s: float
    blocks: list[int]
    tail: int
    n_predict: int
    id_slot: int = -1
    tail_seed: int = 0

    @property
    def prompt_tokens(self) -> int:
        return BLOCK * len(self.blocks) + self.tail


@dataclass(slots=True)
class Experiment:
    name: str
    probes: list[Probe]


@dataclass(slots=True)
class Measured:
    """A probe and what the client saw (times in seconds from the start of the run)."""

    probe: Probe
    experiment: str
    instance: int  # which run of an experiment (its position in the whole session)
    send_s: float
    token_s: list[float]
    status: int
    error: str = ""
    cache_n: int = -1
    prompt_n: int = -1
    id_slot: int = -1  # the slot the server used


@dataclass(slots=True)
class Measurements:
    """Everything ``calibrate`` measured: the server, the probes and their timings."""

    target: str
    engine: str
    slots: int
    slot_ctx: int
    model_path: str  # llama.cpp: the GGUF path; vLLM: the served model name
    runs: list[Measured] = field(default_factory=list)
    #: What the server says of itself beyond that (the emulator: model, gpu, tp).
    server: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Measurements:
        runs = [Measured(**{**m, "probe": Probe(**m["probe"])}) for m in data.get("runs", [])]
        return Measurements(**{**data, "runs": runs})


def block_tokens(block_id: int) -> list[int]:
    """The 16 token ids of block ``block_id`` (the same on every call and machine)."""
    rng = np.random.default_rng([0x5EED, block_id])
    return rng.integers(TOKEN_LOW, TOKEN_HIGH, BLOCK).tolist()


def probe_tokens(p: Probe) -> list[int]:
    tokens: list[int] = []
    for b in p.blocks:
        tokens += block_tokens(b)
    if p.tail:
        rng = np.random.default_rng([0x7A11, p.tail_seed])
        tokens += rng.integers(TOKEN_LOW, TOKEN_HIGH, p.tail).tolist()
    return tokens


class FreshBlocks:
    """Fresh block ids: never shared unless reused on purpose."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self, tokens: int) -> list[int]:
        """Block ids for ``tokens`` tokens (a multiple of the block size)."""
        if tokens % BLOCK:
            raise ValueError(f"{tokens} is not a whole number of {BLOCK}-token blocks")
        ids = list(range(self.next, self.next + tokens // BLOCK))
        self.next += len(ids)
        return ids


def llamacpp_plan(
    slots: int, slot_ctx: int, *, quick: bool = False, seed: int = 0
) -> list[Experiment]:
    """The experiments for a llama-server with ``slots`` slots of ``slot_ctx`` tokens.

    Every prompt is a whole number of blocks, so the engine model (which compares prompts by
    block) sees exactly the prefixes the server sees, identical prompts included.
    """
    fresh = FreshBlocks(1_000_000 * (seed + 1))
    room = slot_ctx - 8
    exps: list[Experiment] = []
    prefill = [64, 304, 704] if quick else [32, 128, 256, 512, 768, 1024, 1536]
    for n in (x for x in prefill if x + 2 < room):
        b = fresh.take(n)
        exps.append(Experiment(f"prefill {n}", [Probe(f"prefill {n}", "ttft", 0, b, 0, 2, 0)]))
    gen = 12 if quick else 32
    ctxs = [32, 304] if quick else [32, 512, 1024]
    for ctx in (x for x in ctxs if x + gen < room):
        b = fresh.take(ctx)  # one prompt per context length, on every slot
        for k in range(1, slots + 1):
            row = f"decode {k} x {ctx}"
            probes = [Probe(row, "gaps", STAGGER_S * i, b, 0, gen, i) for i in range(k)]
            exps.append(Experiment(row, probes))
    if slots >= 3:
        b = fresh.take(32)
        row = "decode 2 x 32 on slots 0, 2"
        probes = [Probe(row, "gaps", STAGGER_S * j, b, 0, gen, i) for j, i in enumerate((0, 2))]
        exps.append(Experiment(row, probes))
    mixed = [304] if quick else [256, 704]
    for n in (x for x in mixed if x + 2 < room):
        name = f"mixed {slots - 1} decoding + prefill {n}"
        probes = [
            Probe(name + " (decoding stream)", "span", STAGGER_S * i, fresh.take(32), 0, 2 * gen, i)
            for i in range(slots - 1)
        ]
        offset = 0.25 if quick else 0.5
        probes.append(Probe(name, "ttft_check", offset, fresh.take(n), 0, 2, slots - 1))
        exps.append(Experiment(name, probes))
    cached = [(208, 128)] if quick else [(208, 256), (608, 256)]
    for prefix, extra in (c for c in cached if sum(c) + 2 < room):
        b = fresh.take(prefix)
        row = f"prefill {extra} after {prefix} cached"
        exps.append(Experiment(row, [Probe("", "", 0, b, 0, 1, 0)]))
        exps.append(Experiment(row, [Probe(row, "ttft", 0, b + fresh.take(extra), 0, 2, 0)]))
    return exps


#: Sends one probe and times it: ``(http session, url, probe) -> StreamResult``.
Send = Callable[[Any, str, Probe], Awaitable[StreamResult]]


async def llamacpp_send(http: Any, url: str, p: Probe) -> StreamResult:
    """One probe as llama.cpp's native ``/completion``, pinned to its slot."""
    return await stream_completion(http, url, probe_tokens(p), p.n_predict, id_slot=p.id_slot)


async def _run_experiment(
    http: Any, url: str, exp: Experiment, t0: float, instance: int, send: Send
) -> list[Measured]:
    async def one(p: Probe) -> tuple[Probe, StreamResult]:
        await asyncio.sleep(max(0.0, start + p.offset_s - time.perf_counter()))
        return p, await send(http, url, p)

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in exp.probes))
    return [
        Measured(
            probe=p,
            experiment=exp.name,
            instance=instance,
            send_s=r.send_s - t0,
            token_s=[x - t0 for x in r.token_s],
            status=r.status,
            error=r.error,
            cache_n=r.cache_n,
            prompt_n=r.prompt_n,
            id_slot=r.id_slot,
        )
        for p, r in results
    ]


async def run_plan(
    url: str,
    plans: list[list[Experiment]],
    *,
    send: Send = llamacpp_send,
    idle_s: float = 0.3,
    progress: Callable[[int, int], None] | None = None,
) -> list[Measured]:
    """Measure the experiments of every plan in ``plans`` (usually the same plan with fresh
    prompts, so that the repeats of one measurement are spread in time), one experiment at a
    time, ``idle_s`` apart; ``send`` speaks the server's API."""
    out: list[Measured] = []
    total = sum(len(p) for p in plans)
    done = 0
    async with session() as http:
        t0 = time.perf_counter()
        for plan in plans:
            for exp in plan:
                out += await _run_experiment(http, url, exp, t0, done, send)
                done += 1
                if progress is not None:
                    progress(done, total)
                await asyncio.sleep(idle_s)
    return out
