"""Helpers of the gateway tests: in-process emulators and gateway on 127.0.0.1, SSE reading."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from fleetsched.core.config import EngineConfig, InstanceGroup
from fleetsched.emulator import Emulator, build_emulator, start
from fleetsched.gateway import Gateway, config_from, serve

A10G = InstanceGroup(gpu="A10G", model="Llama-3.1-8B")
MODEL = "Llama-3.1-8B"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


def emulator(speedup: float = 20.0, seed: int = 0, **engine: Any) -> Emulator:
    g = A10G.model_copy(update={"engine": EngineConfig(**engine)})
    return build_emulator(g, speedup=speedup, seed=seed)


@asynccontextmanager
async def emulators(n: int, **kw: Any) -> AsyncIterator[list[tuple[Emulator, str, web.AppRunner]]]:
    out = []
    try:
        for _ in range(n):
            emu = emulator(**kw)
            runner, port = await start(emu, "127.0.0.1", 0)
            out.append((emu, f"http://127.0.0.1:{port}", runner))
        yield out
    finally:
        for _, _, runner in out:
            await runner.cleanup()


@asynccontextmanager
async def backend_app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    models: tuple[str, ...] = (MODEL,),
    metrics: str | Callable[[], str] | None = None,
) -> AsyncIterator[str]:
    """A tiny aiohttp backend: ``handler`` answers the generation endpoints; /health and
    /v1/models answer as vLLM's do; /metrics, when given, is that Prometheus text (or what
    that function returns at each scrape)."""

    async def health(r: web.Request) -> web.Response:
        return web.Response()

    async def cards(r: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in models]})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", cards)
    app.router.add_post("/v1/completions", handler)
    app.router.add_post("/v1/chat/completions", handler)
    if metrics is not None:

        async def exposition(r: web.Request) -> web.Response:
            text = metrics() if callable(metrics) else metrics
            return web.Response(text=text, content_type="text/plain")

        app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def gateway(urls: list[str], **cfg: Any) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway in this event loop in front of ``urls``; ``cfg`` is the rest of its config."""
    data: dict[str, Any] = {
        "backends": [{"url": u} for u in urls],
        "port": 0,
        "health": {"interval_s": 0.2, "timeout_s": 1.0},
        **cfg,
    }
    if cfg.get("backends") is not None:
        data["backends"] = cfg["backends"]
    config = config_from(data)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[tuple[Gateway, int]] = loop.create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(config, ready=lambda gw, port: ready.set_result((gw, port)), stop=stop)
    )
    done, _ = await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    gw, port = ready.result()
    try:
        yield gw, f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task


async def sse(resp: aiohttp.ClientResponse) -> list[tuple[float, Any]]:
    """(arrival time, payload) of each event: parsed JSON, or the string [DONE]."""
    out: list[tuple[float, Any]] = []
    buf = b""
    async for data in resp.content.iter_any():
        now = time.perf_counter()
        buf += data
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if ev.startswith(b"data: "):
                payload = ev[6:]
                out.append((now, "[DONE]" if payload == b"[DONE]" else json.loads(payload)))
    return out


def text_of(events: list[tuple[float, Any]]) -> str:
    return "".join(
        e["choices"][0].get("text", "")
        for _, e in events
        if isinstance(e, dict) and e.get("choices")
    )


async def until(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()
