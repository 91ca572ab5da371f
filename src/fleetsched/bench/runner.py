"""The open-loop load generator: send a request stream on its schedule, measure each reply.

Requests leave at their arrival times (trace time divided by ``time_scale``), whether or not
earlier ones have answered (open loop); ``max_concurrency`` optionally caps requests in
flight, as ``vllm bench serve --max-concurrency`` does. One aiohttp session with a bounded
connection pool carries them. For each request the client records, on its own clock: when it
was sent, when each chunk carrying a token arrived, and when the last one did. Times are
reported in the trace's seconds (wall seconds times ``time_scale``) from the trace's first
arrival, so a run against an emulator at ``--speedup K`` with ``time_scale=K`` reads like its
simulation. Every failure is recorded with its kind (``http_429``, ``timeout``,
``connect``, ``incomplete``, ``cancelled``, ...), never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fleetsched.api.sse import DONE_DATA, SSEDecoder
from fleetsched.bench.prompts import Endpoint, request_body
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.metrics.records import RequestRecord
from fleetsched.sim.kernel import new_record

_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(slots=True)
class BenchConfig:
    target: str
    endpoint: Endpoint = "completions"
    model: str | None = None
    stream: bool = True
    max_concurrency: int | None = None
    #: Connections kept to the target (the pool bound); requests beyond it wait for one.
    pool_size: int = 1024
    timeout_s: float = 600.0
    #: Trace seconds per wall second (the emulator's ``--speedup``).
    #: None: the emulator's advertised ``speedup``, else 1.
    time_scale: float | None = None
    seed: int = 0
    ignore_eos: bool = True
    #: Prompt tokens the chat template adds (None: ask the server's ``/tokenize``).
    chat_overhead: int | None = None


@dataclass(slots=True)
class Outcome:
    """One request as the client saw it: its record plus what only a live run has."""

    record: RequestRecord
    scheduled_s: float  # when the schedule wanted it sent (trace seconds)
    requested_prompt_tokens: int
    requested_output_tokens: int
    status: int = 0  # HTTP status (0: no response)
    error: str = ""  # empty when it succeeded
    chunks: int = 0  # chunks that carried a token
    cached_reported: bool = False  # the server reported cached prompt tokens
    gaps: array = field(default_factory=lambda: array("d"))  # inter-chunk gaps (trace s)


@dataclass(slots=True)
class Progress:
    sent: int = 0
    done: int = 0
    failed: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    chunks: int = 0


@dataclass(slots=True)
class BenchRun:
    config: BenchConfig  # as resolved against the server (model, time scale, chat overhead)
    outcomes: list[Outcome]
    wall_s: float
    not_sent: int
    interrupted: bool
    server_info: dict[str, Any]
    metrics_before: str | None
    metrics_after: str | None
    peak_inflight: int


_scan_once = json.JSONDecoder().scan_once


def _loads(data: bytes) -> Any:
    """``json.loads`` of one SSE payload, faster (no encoding detection or whitespace regex
    for the compact JSON servers send); anything unusual goes through ``json.loads``."""
    try:
        obj, end = _scan_once(data.decode(), 0)
    except (StopIteration, UnicodeDecodeError):
        return json.loads(data)
    if end != len(data):
        return json.loads(data)
    return obj


def _error_kind(e: BaseException) -> str:
    """A short name for what went wrong with one request."""
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "incomplete"
    if isinstance(e, ValueError):
        return "bad_response"  # a body or chunk that is not the JSON it should be
    return type(e).__name__


async def server_info(session: aiohttp.ClientSession, target: str) -> dict[str, Any]:
    """The target's first model card (``/v1/models``), or {} when it has none."""
    try:
        async with session.get(target + "/v1/models") as r:
            if r.status != 200:
                return {}
            data = await r.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return {}
    cards = data.get("data") if isinstance(data, dict) else None
    return cards[0] if isinstance(cards, list) and cards and isinstance(cards[0], dict) else {}


def resolve_time_scale(asked: float | None, info: dict[str, Any]) -> float:
    """The time scale to use: the one asked for, checked against the speedup an emulator
    advertises in its model card, or that speedup, or 1."""
    fs = info.get("fleetsched")
    served = fs.get("speedup") if isinstance(fs, dict) else None
    if not isinstance(served, int | float) or isinstance(served, bool) or served <= 0:
        served = None
    if asked is None:
        return float(served) if served is not None else 1.0
    if served is not None and not math.isclose(asked, served):
        raise InputError(
            f"--speedup {asked:g} but the target emulator runs at speedup {served:g}: "
            "leave --speedup out to use the target's"
        )
    return asked


async def chat_overhead(session: aiohttp.ClientSession, target: str, model: str | None) -> int:
    """Tokens the target's chat template adds around one user message, from its
    ``/tokenize`` (vLLM's), else the documented tokenizer's template."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": ""}]}
    if model:
        body["model"] = model
    try:
        async with session.post(target + "/tokenize", json=body) as r:
            if r.status == 200:
                n = (await r.json(content_type=None)).get("count")
                if isinstance(n, int) and n >= 0:
                    return n
    except (TimeoutError, aiohttp.ClientError, ValueError):
        pass
    from fleetsched.api.tokenizer import chat_overhead as template_overhead

    return template_overhead(["user"])


async def scrape(session: aiohttp.ClientSession, target: str) -> str | None:
    """The target's ``/metrics`` text, or None when it has none."""
    try:
        async with session.get(target + "/metrics") as r:
            return await r.text() if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


class _Runner:
    def __init__(self, cfg: BenchConfig, session: aiohttp.ClientSession, t0: float, a0: float):
        self.cfg = cfg
        self.session = session
        self.url = cfg.target + _PATHS[cfg.endpoint]
        self.t0 = t0
        self.a0 = a0
        assert cfg.time_scale is not None
        self.scale = cfg.time_scale
        self.sem = asyncio.Semaphore(cfg.max_concurrency) if cfg.max_concurrency else None
        self.progress = Progress()
        self.outcomes: list[Outcome] = []

    def trace_time(self, wall: float) -> float:
        return self.a0 + (wall - self.t0) * self.scale

    async def send(self, req: Request, body: bytes) -> None:
        if self.sem is None:
            await self._send(req, body)
        else:
            async with self.sem:
                await self._send(req, body)

    async def _send(self, req: Request, body: bytes) -> None:
        cfg, p = self.cfg, self.progress
        clock = time.perf_counter
        t_send = clock()
        arrival = self.trace_time(t_send)
        rec = new_record(req)
        rec.arrival_s = rec.dispatch_s = arrival
        out = Outcome(rec, req.arrival_s, req.prompt_tokens, req.output_tokens)
        self.outcomes.append(out)
        p.sent += 1
        p.inflight += 1
        if p.inflight > p.peak_inflight:
            p.peak_inflight = p.inflight
        usage: dict[str, Any] | None = None
        first = last = math.nan
        chunks = 0
        done = False
        try:
            async with self.session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                out.status = resp.status
                if resp.status != 200:
                    out.error = f"http_{resp.status}"
                    await resp.read()
                elif cfg.stream:
                    chat = cfg.endpoint == "chat"
                    dec = SSEDecoder()
                    gaps = out.gaps
                    scale = self.scale
                    loads = _loads
                    async for data in resp.content.iter_any():
                        now = clock()
                        for ev in dec.feed(data):
                            if ev == DONE_DATA:
                                done = True
                                continue
                            obj = loads(ev)
                            choices = obj.get("choices")
                            if choices:
                                c = choices[0]
                                if chat:
                                    delta = c.get("delta") or {}
                                    tok = delta.get("content")
                                else:
                                    tok = c.get("text")
                                if tok or c.get("finish_reason"):
                                    if chunks:
                                        gaps.append((now - last) * scale)
                                    else:
                                        first = now
                                    last = now
                                    chunks += 1
                            u = obj.get("usage")
                            if u:
                                usage = u
                            if "error" in obj and not choices:
                                out.error = "stream_error"
                    p.chunks += chunks
                    if not done and not out.error:
                        out.error = "incomplete"
                else:
                    obj = await resp.json(content_type=None)
                    first = last = clock()
                    usage = obj.get("usage")
                    chunks = 1
                    done = True
        except asyncio.CancelledError:
            out.error = "cancelled"
            raise
        except Exception as e:  # every failure is recorded by its kind
            out.error = _error_kind(e)
        finally:
            p.inflight -= 1
            out.chunks = chunks
            if not math.isnan(first):
                rec.first_token_s = self.trace_time(first)
            if usage:
                pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
                if isinstance(pt, int):
                    rec.prompt_tokens = pt
                details = usage.get("prompt_tokens_details") or {}
                cached = details.get("cached_tokens") if isinstance(details, dict) else None
                if isinstance(cached, int):
                    rec.cached_prompt_tokens = cached
                    out.cached_reported = True
                got = ct if isinstance(ct, int) else chunks
            else:
                got = chunks
            rec.generated_tokens = got
            if not out.error and chunks:
                rec.output_tokens = got
                rec.finish_s = self.trace_time(last)
                p.done += 1
            else:
                if not out.error:
                    out.error = "empty"
                p.failed += 1


async def run_bench(
    requests: Iterable[Request],
    cfg: BenchConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> BenchRun:
    """Send ``requests`` (sorted by arrival) to ``cfg.target`` on their schedule and measure
    them. Setting ``stop`` ends the run early: nothing more is sent, requests in flight are
    cancelled and recorded as ``cancelled``."""
    if cfg.time_scale is not None and cfg.time_scale <= 0:
        raise InputError("the time scale (--speedup) must be > 0")
    target = cfg.target.rstrip("/")
    limit = cfg.max_concurrency or cfg.pool_size
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=min(cfg.timeout_s, 30.0))
    stop = stop or asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    interrupted = False
    not_sent = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        info = await server_info(session, target)
        cfg = dataclasses.replace(
            cfg,
            target=target,
            model=cfg.model or (info.get("id") if isinstance(info.get("id"), str) else None),
            time_scale=resolve_time_scale(cfg.time_scale, info),
        )
        if cfg.endpoint == "chat" and cfg.chat_overhead is None:
            cfg.chat_overhead = await chat_overhead(session, target, cfg.model)
        model = cfg.model
        before = await scrape(session, target)
        it = iter(requests)
        first = next(it, None)
        t0 = time.perf_counter() + 0.05
        wall0 = t0
        runner = _Runner(cfg, session, t0, first.arrival_s if first else 0.0)
        ticker = asyncio.create_task(_tick(runner, on_progress)) if on_progress else None
        stop_wait = asyncio.ensure_future(stop.wait())
        req = first
        try:
            while req is not None:
                body = request_body(
                    req,
                    endpoint=cfg.endpoint,
                    model=model,
                    stream=cfg.stream,
                    seed=cfg.seed,
                    chat_overhead=cfg.chat_overhead,
                    ignore_eos=cfg.ignore_eos,
                )
                delay = t0 + (req.arrival_s - runner.a0) / cfg.time_scale - time.perf_counter()
                if delay > 0:
                    await asyncio.wait([stop_wait], timeout=delay)
                if stop.is_set():
                    interrupted = True
                    not_sent = 1 + sum(1 for _ in it)
                    break
                task = asyncio.create_task(runner.send(req, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                req = next(it, None)
            if tasks:
                waiter = asyncio.ensure_future(asyncio.wait(set(tasks)))
                await asyncio.wait([waiter, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    interrupted = True
                    waiter.cancel()
        finally:
            for t in list(tasks):
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            stop_wait.cancel()
            if ticker is not None:
                ticker.cancel()
                on_progress(runner.progress)  # type: ignore[misc]
        wall = time.perf_counter() - wall0
        after = await scrape(session, target) if before is not None else None
    runner.outcomes.sort(key=lambda o: o.record.id)
    return BenchRun(
        cfg,
        runner.outcomes, wall, not_sent, interrupted, info, before, after,
        runner.progress.peak_inflight,
    )  # fmt: skip


async def _tick(runner: _Runner, cb: Callable[[Progress], None] | None) -> None:
    assert cb is not None
    while True:
        cb(runner.progress)
        await asyncio.sleep(0.25)


__all__ = ["BenchConfig", "BenchRun", "Outcome", "Progress", "run_bench", "scrape", "server_info"]
