"""Replay a workload open-loop against a llama-server and record what the client saw.

A minimal stand-in for ``fleetsched bench`` (which replaces it): each request is sent at its
arrival time, as token ids, streamed, with ``ignore_eos`` so it generates exactly its output
length. Prompt tokens come from the request's prefix block hashes (equal hashes, equal
tokens), the rest of the prompt from the request id, so prefixes the workload shares are
shared on the server exactly as the simulator's engine model sees them.

The records use the simulator's :class:`RequestRecord`, so a replay and a simulation of the
same workload summarise and compare field by field.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from fleetsched.calibrate.client import check_loopback, session, stream_completion
from fleetsched.calibrate.plan import TOKEN_HIGH, TOKEN_LOW
from fleetsched.core.request import Request
from fleetsched.metrics.records import RequestRecord
from fleetsched.sim.kernel import new_record


def request_tokens(req: Request) -> list[int]:
    """The prompt of ``req`` as token ids (see the module docstring)."""
    bt = req.hash_block_tokens
    n_hashed = min(len(req.block_hashes), req.prompt_tokens // bt)
    tokens: list[int] = []
    for h in req.block_hashes[:n_hashed]:
        rng = np.random.default_rng([0xB10C, h & 0xFFFFFFFFFFFFFFFF])
        tokens += rng.integers(TOKEN_LOW, TOKEN_HIGH, bt).tolist()
    rest = req.prompt_tokens - len(tokens)
    if rest:
        rng = np.random.default_rng([0x0DD, req.id])
        tokens += rng.integers(TOKEN_LOW, TOKEN_HIGH, rest).tolist()
    return tokens


async def _replay(
    url: str, reqs: Sequence[Request], progress: Callable[[int], None] | None
) -> list[RequestRecord]:
    records: list[RequestRecord] = [new_record(r) for r in reqs]
    done = 0
    t_first = reqs[0].arrival_s if reqs else 0.0

    async def one(i: int, r: Request) -> None:
        nonlocal done
        rec = records[i]
        await asyncio.sleep(max(0.0, t0 + (r.arrival_s - t_first) - time.perf_counter()))
        res = await stream_completion(http, url, request_tokens(r), r.output_tokens)
        base = res.send_s - t0 + t_first  # the request's time on the workload's clock
        rec.arrival_s = rec.dispatch_s = base
        rec.instance = 0
        rec.generated_tokens = len(res.token_s)
        if res.status == 200 and res.token_s:
            rec.first_token_s = res.token_s[0] - t0 + t_first
            rec.finish_s = res.token_s[-1] - t0 + t_first
            rec.cached_prompt_tokens = max(res.cache_n, 0)
        else:
            rec.finish_s = math.nan
        done += 1
        if progress is not None:
            progress(done)

    async with session() as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
    return records


def replay_trace(
    url: str, reqs: Sequence[Request], progress: Callable[[int], None] | None = None
) -> list[RequestRecord]:
    """Send ``reqs`` (sorted by arrival) to the llama-server at ``url`` (loopback only) at
    their arrival times; one record each, times on the workload's clock."""
    check_loopback(url)
    return asyncio.run(_replay(url.rstrip("/"), reqs, progress))
