"""Calibrating a vLLM-compatible server (vLLM itself, or ``fleetsched emulate``) from the client.

The step model of a vLLM engine is linear in a step's contents (:class:`FittedProfile`:
``c0 + prefill tokens + prefill query-key pairs + decodes + decode context``), so the plan
uses measurements that each span known engine steps by construction, on an idle engine:

``prefill L``    one request alone, a prompt of ``L`` tokens given as token ids and one output
                 token. ``L`` stays within 2,048 tokens, the smallest step token budget vLLM
                 defaults to, so the prompt runs as one step that also samples the first token:
                 TTFT = the request's serving overhead + that step.
``decode k x C`` ``k`` requests of ``C``-token prompts sent together, 24 output tokens each.
                 Once all ``k`` decode, every step gives each stream one token, so each gap
                 between two tokens of a stream is one decode-only step of ``k`` requests; its
                 context sum is the prompts plus the tokens each stream has received.

The fit is non-negative least squares on the relative errors of every sample (TTFTs span
10-1000x the gaps) over ``[1, L, pairs, k, context sum]`` plus a per-request overhead column on
TTFT samples only (HTTP, tokenisation, scheduling latency: not a step cost, so it is printed
and kept out of the profile). Unlike llama.cpp (:mod:`fleetsched.calibrate.fit`) no replay is
needed: the plan keeps every measured interval to whole steps of known contents.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import aiohttp
import numpy as np

from fleetsched.calibrate.client import StreamResult, get_json, post_stream
from fleetsched.calibrate.fit import Row, trimmed
from fleetsched.calibrate.plan import (
    STAGGER_S,
    Experiment,
    FreshBlocks,
    Measured,
    Probe,
    Send,
    probe_tokens,
)
from fleetsched.errors import FleetschedError
from fleetsched.perf.nnls import nnls
from fleetsched.perf.profile import FittedProfile

#: Longest measured prompt: vLLM's smallest default step budget (``max_num_batched_tokens``).
MAX_PREFILL = 2048
DECODE_TOKENS = 24


def vllm_plan(max_model_len: int, *, quick: bool = False, seed: int = 0) -> list[Experiment]:
    """The experiments of one repeat (fresh prompts per ``seed``, so nothing is cached)."""
    fresh = FreshBlocks(1_000_000 * (seed + 1))
    top = min(MAX_PREFILL, max_model_len - 2)
    lengths = [n for n in (32, 128, 512, 1024, 2048) if n <= top] if quick else [
        n for n in (16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048) if n <= top
    ]  # fmt: skip
    exps = [
        Experiment(f"prefill {n}", [Probe(f"prefill {n}", "ttft", 0, fresh.take(n), 0, 1)])
        for n in lengths
    ]
    concurrency = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32)
    contexts = [c for c in (128, 1024) if c + DECODE_TOKENS + 2 <= max_model_len]
    for c in contexts:
        for k in concurrency:
            row = f"decode {k} x {c}"
            probes = [
                Probe(row, "gaps", STAGGER_S / 4 * i, fresh.take(c), 0, DECODE_TOKENS)
                for i in range(k)
            ]
            exps.append(Experiment(row, probes))
    return exps


async def stream_openai(
    http: aiohttp.ClientSession, url: str, model: str, prompt: list[int], max_tokens: int
) -> StreamResult:
    """POST one streamed ``/v1/completions`` (token-id prompt, ``ignore_eos``) and record when
    each token's event arrives."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "temperature": 0.0,
    }

    def on_event(ev: dict[str, Any], now: float, res: StreamResult) -> bool:
        if any(c.get("text") for c in ev.get("choices", ())):
            res.token_s.append(now)
        return False

    return await post_stream(http, url + "/v1/completions", body, on_event)


async def served_model(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The first model card of ``GET /v1/models``."""
    cards = (await get_json(http, url + "/v1/models")).get("data") or []
    if not cards:
        raise FleetschedError(f"{url}/v1/models lists no model")
    return dict(cards[0])


def features(m: Measured, others: list[Measured]) -> list[tuple[float, np.ndarray]]:
    """(measured seconds, features) of each interval ``m`` measures (see the module doc)."""
    p = m.probe
    if p.measure == "ttft":
        n = p.prompt_tokens
        return [(m.token_s[0] - m.send_s, np.array([1.0, n, n * (n + 1) / 2, 0, 0, 1.0]))]
    lo = max(o.token_s[0] for o in others)  # every stream of the experiment decodes from here
    hi = min(o.token_s[-1] for o in others)
    out = []
    ts = m.token_s
    for j in range(len(ts) - 1):
        if ts[j] < lo or ts[j + 1] > hi:
            continue
        ctx = sum(o.probe.prompt_tokens + int(np.searchsorted(o.token_s, ts[j], "right"))
                  for o in others)  # fmt: skip
        out.append((ts[j + 1] - ts[j], np.array([1.0, 0, 0, len(others), ctx, 0.0])))
    return out


def fit_vllm(
    runs: list[Measured], *, model: str, gpu: str, tp: int, notes: str = ""
) -> tuple[FittedProfile, float, list[Row]]:
    """The profile, the per-request overhead (seconds) and the rows of measured vs fitted."""
    by_instance: dict[int, list[Measured]] = defaultdict(list)
    for m in runs:
        if m.status == 200 and m.token_s:
            by_instance[m.instance].append(m)
    samples: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    for members in by_instance.values():
        if members[0].probe.measure == "gaps" and any(
            len(o.token_s) != o.probe.n_predict for o in members
        ):
            continue  # a stream was cut short: the steps are not what the plan says
        for m in members:
            samples[m.probe.row] += features(m, members)
    if not samples:
        raise FleetschedError("no usable measurement: every request failed or was cut short")
    rows_x, rows_y = [], []
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, s in samples.items():
        y = np.array([v for v, _ in s])
        x = np.array([f for _, f in s])
        keep = trimmed(y)  # the steadiest 80 % of gaps (scheduling jitter on both sides)
        kept[name] = (y[keep], x[keep])
        rows_y.append(np.ones(len(keep)))  # relative errors: each sample divided by itself
        rows_x.append(x[keep] / y[keep][:, None])
    coef = nnls(np.vstack(rows_x), np.concatenate(rows_y))
    c0, tok, pair, dec, ctx, overhead = (float(v) for v in coef)
    noise = [float(np.std(y) / np.mean(y)) for y, _ in kept.values() if len(y) > 1]
    profile = FittedProfile(
        model=model,
        gpu=gpu,
        tp=tp,
        c0_s=c0,
        prefill_token_s=tok,
        prefill_pair_s=pair,
        decode_token_s=dec,
        decode_ctx_token_s=ctx,
        notes=(notes + f"; request overhead {overhead * 1e3:.2f} ms (not a step cost)").strip("; ")
        + (f"; median noise {np.median(noise):.1%}" if noise else ""),
    )
    rows = [
        Row(
            name=name,
            samples=len(y),
            measured_s=float(np.mean(y)),
            predicted_s=float(np.mean(x @ coef)),
            noise_cv=float(np.std(y) / np.mean(y)) if len(y) > 1 else float("nan"),
            features=x.mean(axis=0),
        )
        for name, (y, x) in kept.items()
    ]
    return profile, overhead, rows


def openai_send(model: str) -> Send:
    """A :data:`~fleetsched.calibrate.plan.Send` for OpenAI-compatible servers."""

    async def send(http: Any, url: str, p: Probe) -> StreamResult:
        return await stream_openai(http, url, model, probe_tokens(p), p.n_predict)

    return send
