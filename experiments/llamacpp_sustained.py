"""Does llama-server decode slower under sustained load than in the calibration's bursts?

The near-saturation fidelity trace (0.9 of capacity) came out with live TPOT 9-16 % above the
simulated one in both calibrated runs, where the lighter traces scatter either side. Two
explanations predict different things: a machine that slows down under minutes of full load
(clock, memory bandwidth shared with other tenants) makes *pure* 4-stream decode steps slower
as the load goes on; a step model that misprices the steps mixing a prompt with decodes leaves
pure decode steps alone. This script measures both on one llama-server (4 slots x 2048 tokens,
gemma-3-270m):

1. bursts, as the calibration times them: 4 streams of 64 tokens from an idle server, 5 times;
2. ``--minutes`` of sustained load: every slot busy all the time, each request a fresh
   300-token prompt and 128 output tokens (about the heavy trace's mean);
3. bursts again.

A gap between two tokens of a stream is *pure decode* when all 4 streams were decoding over it
(no stream between its send and its first token); the others are *mixed* (a prompt ran in that
step). It prints the median pure gap of the bursts and of each minute of sustained load, and
the mixed gaps' median.

    .venv/bin/python experiments/llamacpp_sustained.py --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from _common import RESULTS
from fleetsched.calibrate.client import StreamResult, session, stream_completion
from fleetsched.launch import LlamaServer
from fleetsched.launch.llamacpp import raise_priority

SLOTS = 4


def gaps(streams: list[StreamResult]) -> tuple[list[tuple[float, float]], list[float]]:
    """(time, gap) of every pure 4-stream decode gap, and the mixed gaps."""
    prompt_phases = [(s.send_s, s.token_s[0]) for s in streams if s.token_s]
    spans = [(s.token_s[0], s.token_s[-1]) for s in streams if len(s.token_s) > 1]
    pure: list[tuple[float, float]] = []
    mixed: list[float] = []
    for s in streams:
        for a, b in zip(s.token_s, s.token_s[1:], strict=False):
            prompting = any(lo < b and hi > a for lo, hi in prompt_phases)
            decoding = sum(1 for lo, hi in spans if lo <= a and hi >= b)
            if not prompting and decoding == SLOTS:
                pure.append((a, b - a))
            elif prompting:
                mixed.append(b - a)
    return pure, mixed


async def burst(url: str, seed: int) -> list[StreamResult]:
    rng = np.random.default_rng(seed)
    async with session() as http:
        prompts = [rng.integers(1000, 30000, 64).tolist() for _ in range(SLOTS)]
        return list(
            await asyncio.gather(
                *(stream_completion(http, url, p, 64, id_slot=i) for i, p in enumerate(prompts))
            )
        )


async def sustained(url: str, seconds: float, seed: int) -> list[StreamResult]:
    rng = np.random.default_rng(seed)
    out: list[StreamResult] = []
    end = time.perf_counter() + seconds

    async def slot(i: int) -> None:
        async with session() as http:
            while time.perf_counter() < end:
                prompt = rng.integers(1000, 30000, 300).tolist()
                out.append(await stream_completion(http, url, prompt, 128, id_slot=i))

    await asyncio.gather(*(slot(i) for i in range(SLOTS)))
    return out


def median_ms(values: list[float]) -> float:
    return float(np.median(values)) * 1e3 if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--priority", type=int, default=0, help="raise scheduling priority (root)")
    args = ap.parse_args()
    raise_priority(args.priority)
    srv = LlamaServer(parallel=SLOTS, ctx=SLOTS * 2048, threads=args.threads,
                      priority=args.priority).start()  # fmt: skip
    result: dict[str, object] = {"minutes": args.minutes, "threads": args.threads}
    try:
        before = [g for k in range(5) for _, g in gaps(asyncio.run(burst(srv.url, k)))[0]]
        print(f"bursts before: median pure 4-stream decode gap {median_ms(before):.1f} ms")
        streams = asyncio.run(sustained(srv.url, args.minutes * 60, 99))
        pure, mixed = gaps(streams)
        t0 = min(s.send_s for s in streams)
        per_minute = []
        for m in range(int(np.ceil(args.minutes))):
            window = [g for t, g in pure if m * 60 <= t - t0 < (m + 1) * 60]
            per_minute.append(median_ms(window))
            print(f"sustained minute {m + 1}: median pure gap {per_minute[-1]:.1f} ms "
                  f"({len(window)} gaps)")  # fmt: skip
        all_pure = median_ms([g for _, g in pure])
        print(f"sustained: {len(streams)} requests; mixed gaps median {median_ms(mixed):.1f} ms "
              f"({len(mixed)}), pure {all_pure:.1f} ms ({len(pure)})")  # fmt: skip
        after = [g for k in range(5) for _, g in gaps(asyncio.run(burst(srv.url, 10 + k)))[0]]
        print(f"bursts after: median pure 4-stream decode gap {median_ms(after):.1f} ms")
        result.update(
            bursts_before_ms=median_ms(before),
            sustained_per_minute_ms=per_minute,
            sustained_mixed_ms=median_ms(mixed),
            sustained_pure_ms=all_pure,
            bursts_after_ms=median_ms(after),
            requests=len(streams),
        )
    finally:
        srv.stop()
    path = RESULTS / "llamacpp_sustained.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
