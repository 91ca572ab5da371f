"""Tenants and overload: API keys, rate limits, the central queue and its fair ordering, and
the in-flight accounting returning to zero on every path (a property test)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests._gateway import backend_app, emulators, gateway, run, until

from fleetsched.gateway import hash_key


def _tenants(**kw: dict[str, Any]) -> dict[str, Any]:
    return {name: {"keys": [hash_key(f"key-{name}")], **t} for name, t in kw.items()}


def _auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer key-{name}"}


def fixed(delay_s: float, tokens: int = 10) -> Any:
    async def h(r: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        body = await r.json()
        return web.json_response(
            {
                "choices": [{"text": "x"}],
                "user": body.get("user"),
                "usage": {"completion_tokens": tokens},
            }
        )

    return h


def test_api_keys_map_to_tenants() -> None:
    async def go() -> None:
        async with (
            backend_app(fixed(0)) as b,
            gateway([b], tenants=_tenants(a={}, b={})) as (
                gw,
                url,
            ),
            aiohttp.ClientSession() as s,
        ):
            for headers, status in (
                ({}, 401),
                ({"Authorization": "Bearer nope"}, 401),
                ({"Authorization": "key-a"}, 401),
                (_auth("a"), 200),
                (_auth("b"), 200),
            ):
                async with s.post(
                    url + "/v1/completions", json={"prompt": "x"}, headers=headers
                ) as r:
                    assert r.status == status
                    if status == 401:
                        e = (await r.json())["error"]
                        assert e["type"] == "AuthenticationError" and e["code"] == "invalid_api_key"
        assert {k[0] for k in gw.metrics.requests if k[2] == "200"} == {"a", "b"}

    run(go())


def test_per_tenant_request_and_token_rate_limits() -> None:
    async def go() -> None:
        tenants = _tenants(
            slow={"requests_per_s": 0.5, "request_burst": 1},
            thin={"tokens_per_s": 10, "token_burst": 100},
            free={},
        )
        async with (
            backend_app(fixed(0, tokens=1)) as b,
            gateway([b], tenants=tenants) as (
                gw,
                url,
            ),
            aiohttp.ClientSession() as s,
        ):

            async def post(t: str, n: int) -> aiohttp.ClientResponse:
                async with s.post(
                    url + "/v1/completions", json={"prompt": [1] * n}, headers=_auth(t)
                ) as r:
                    await r.read()
                    return r

            assert (await post("slow", 5)).status == 200
            r = await post("slow", 5)
            assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
            assert (await post("thin", 80)).status == 200  # 100 - 80 - 1 output = 19 left
            r = await post("thin", 80)
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 6
            for _ in range(5):  # the other tenants are not limited
                assert (await post("free", 80)).status == 200
        assert gw.metrics.rate_limited == {("slow", "requests"): 1, ("thin", "tokens"): 1}

    run(go())


def test_overload_queues_then_429_when_full_and_503_when_the_wait_is_too_long() -> None:
    async def go() -> None:
        async with (
            backend_app(fixed(0.4)) as b,
            gateway([b], saturation={"max_inflight": 1}, queue={"max_size": 1, "timeout_s": 5}) as (
                gw,
                url,
            ),
            aiohttp.ClientSession() as s,
        ):

            async def post() -> tuple[int, dict[str, Any], Any]:
                async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                    return r.status, await r.json(), r.headers

            first = asyncio.create_task(post())
            await until(lambda: gw.active == 1)
            second = asyncio.create_task(post())  # waits in the queue
            await until(lambda: gw.queue.size == 1)
            st3, body, headers = await post()  # the queue is full
            assert st3 == 429 and headers["Retry-After"] == "1"
            assert body["error"]["code"] == "queue_full"
            assert (await first)[0] == 200 and (await second)[0] == 200
        async with (
            backend_app(fixed(1.0)) as b,
            gateway(
                [b], saturation={"max_inflight": 1}, queue={"max_size": 8, "timeout_s": 0.2}
            ) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            first = asyncio.create_task(post())
            await until(lambda: gw.active == 1)
            st2, body, headers = await post()
            assert st2 == 503 and body["error"]["code"] == "queue_timeout"
            assert int(headers["Retry-After"]) >= 1
            assert (await first)[0] == 200
            assert gw.queue.size == 0

    run(go())


def test_backends_saturated_by_their_scraped_signals_hold_requests_in_the_queue() -> None:
    """Saturation read from the engines' own metrics: one backend with more requests waiting
    than ``max_waiting``, the other with its KV cache at ``max_kv``. A request waits in the
    central queue (503 ``queue_timeout`` when it waits too long), and is released to the
    first backend whose next scrape shows room."""
    state = {"waiting": 9}

    def vllm() -> str:
        return (
            f"vllm:num_requests_running 4\nvllm:num_requests_waiting {state['waiting']}\n"
            "vllm:kv_cache_usage_perc 0.3\n"
        )

    def answer(name: str) -> Any:
        async def h(r: web.Request) -> web.Response:
            return web.json_response({"choices": [{"text": name}]})

        return h

    async def go() -> None:
        async with (
            backend_app(answer("queued"), metrics=vllm) as a,
            backend_app(answer("full"), metrics="sglang:token_usage 0.95\n") as b,
            gateway(
                [a, b],
                scrape={"interval_s": 0.05},
                saturation={"max_waiting": 5, "max_kv": 0.9},
                queue={"timeout_s": 0.3},
            ) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            assert await until(lambda: all(x.load is not None for x in gw.registry))
            async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "queue_timeout"
            gw.queue.timeout_s = 10.0
            pending = asyncio.create_task(s.post(url + "/v1/completions", json={"prompt": "x"}))
            assert await until(lambda: gw.queue.size == 1)
            await asyncio.sleep(0.2)  # scrapes come and go: still saturated, still waiting
            assert gw.queue.size == 1 and not pending.done()
            state["waiting"] = 0
            r = await asyncio.wait_for(pending, 5)
            assert r.status == 200 and (await r.json())["choices"][0]["text"] == "queued"
            r.release()

    run(go())


@pytest.mark.parametrize("ordering", ["wfq", "vtc"])
def test_fair_queuing_gives_backlogged_tenants_their_weights_shares(ordering: str) -> None:
    """Two tenants, weights 2 and 1, each with 45 identical requests waiting for one backend
    that serves one at a time: while both are backlogged (the first 45 served), tenant a gets
    2/3 of them within 10 %. FCFS, for contrast, serves them in arrival order."""

    async def go(order: str) -> Counter[str]:
        tenants = _tenants(a={"weight": 2.0}, b={"weight": 1.0})
        async with (
            backend_app(fixed(0.004)) as b,
            gateway(
                [b],
                tenants=tenants,
                saturation={"max_inflight": 1},
                queue={"ordering": {"name": order}, "max_size": 1000, "timeout_s": 60},
            ) as (_, url),
            aiohttp.ClientSession() as s,
        ):
            served: list[str] = []

            async def post(t: str) -> None:
                async with s.post(
                    url + "/v1/completions", json={"prompt": [1] * 32, "user": t}, headers=_auth(t)
                ) as r:
                    assert r.status == 200
                    served.append(t)

            tasks = []
            for _ in range(45):  # a's requests arrive first, then b's: FCFS would favour a
                tasks.append(asyncio.create_task(post("a")))
                await asyncio.sleep(0)
            for _ in range(45):
                tasks.append(asyncio.create_task(post("b")))
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)
        return Counter(served[:45])

    got = run(go(ordering))
    share = got["a"] / 45
    assert abs(share / (2 / 3) - 1) <= 0.10, got
    fcfs = run(go("fcfs"))
    assert fcfs["a"] >= 40, fcfs  # arrival order, no weights


class CountingRouter:
    """Wraps the gateway's router and counts, per backend, routes minus finishes, and first
    tokens (never more than one per route)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.needs_views = inner.needs_views
        self.needs_prefix = inner.needs_prefix
        self.open: Counter[int] = Counter()
        self.first: Counter[int] = Counter()
        self.routes = 0

    def route(self, req: Any, views: Any) -> int:
        i = self.inner.route(req, views)
        self.open[req.id] += 1
        self.routes += 1
        return i

    def on_first_token(self, req: Any, index: int) -> None:
        self.first[req.id] += 1
        self.inner.on_first_token(req, index)

    def on_finish(self, req: Any, index: int) -> None:
        self.open[req.id] -= 1
        self.inner.on_finish(req, index)


OPS = (
    "stream",
    "whole",
    "bad_request",
    "timeout",
    "refused",
    "disconnect",
    "retry_503",
    "queued",
    "gone_early",
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(OPS), min_size=4, max_size=14))
def test_inflight_accounting_returns_to_zero_after_any_mix(ops: list[str]) -> None:
    """Whatever mix of successes, errors, timeouts, refused connections, client disconnects
    (mid-stream, and while queued or before the answer), retries and queued requests runs at
    once, afterwards every backend's in-flight count and prompt tokens are 0, the router saw
    a finish for every route, and its own ledger (``kv_overlap``'s: requests, prefill tokens,
    active blocks) is empty; nothing is queued."""

    async def hang(r: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async def overloaded(r: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "busy"}}, status=503)

    async def go() -> None:
        async with (
            emulators(2, speedup=5.0) as emus,
            backend_app(hang, models=("hang",)) as h,
            backend_app(overloaded, models=("busy",)) as o,
            backend_app(fixed(0.05), models=("queued",)) as q,
        ):
            # "dead" answers its first health check, then its process goes away: requests
            # find its port closed (the next probe is a minute away)
            dying = AsyncExitStack()
            d = await dying.enter_async_context(backend_app(fixed(0), models=("dead",)))
            backends = [{"url": e[1]} for e in emus] + [
                {"url": h},
                {"url": o},
                {"url": q, "max_inflight": 1},
                {"url": d},
            ]
            async with gateway(
                [],
                backends=backends,
                router={"name": "kv_overlap"},
                health={"interval_s": 60},
                timeouts={"first_token_s": 0.3},
                retries={"max_retries": 1},
                ejection={"consecutive_failures": 100},
            ) as (gw, url):
                await dying.aclose()
                ledger = gw.router.ledger
                counting = CountingRouter(gw.router)
                gw.router = counting
                gw._first_token_hook = counting.on_first_token
                async with aiohttp.ClientSession() as s:

                    async def one(op: str) -> None:
                        body: dict[str, Any] = {"prompt": list(range(40)), "max_tokens": 4}
                        if op == "stream":
                            body["stream"] = True
                        elif op == "bad_request":
                            body["max_tokens"] = 10**9  # the emulator's own 400
                        elif op == "timeout":
                            body["model"] = "hang"
                        elif op == "refused":
                            body["model"] = "dead"
                        elif op == "retry_503":
                            body["model"] = "busy"
                        elif op in ("queued", "gone_early"):
                            body["model"] = "queued"
                        elif op == "disconnect":
                            body.update(stream=True, max_tokens=400, ignore_eos=True)
                        if op == "gone_early":  # leaves while queued or before the answer
                            with contextlib.suppress(TimeoutError):
                                r = await asyncio.wait_for(
                                    s.post(url + "/v1/completions", json=body), 0.02
                                )
                                r.close()
                            return
                        async with s.post(url + "/v1/completions", json=body) as r:
                            if op == "disconnect":
                                with contextlib.suppress(Exception):
                                    await r.content.readany()
                                r.close()
                                return
                            await r.read()

                    await asyncio.gather(*(one(op) for op in ops))
                    assert await until(lambda: gw.active == 0, timeout=10)
                for b in gw.registry:
                    assert b.inflight == 0 and b.inflight_tokens == 0, b.name
                assert all(v == 0 for v in counting.open.values()), counting.open
                assert all(v == 1 for v in counting.first.values()), counting.first
                assert len(ledger) == 0 and counting.routes >= len(ops) - ops.count("gone_early")
                for xs in (ledger.requests, ledger.prefill_tokens, ledger.active_tokens):
                    assert not any(xs), (xs, ops)
                assert not ledger._owners
                kinds = {k for _, k in gw.metrics.errors}
                if "refused" in ops:  # the path was taken, not answered 503 before routing
                    assert "connect_refused" in kinds, kinds
                if "timeout" in ops:
                    assert "timeout" in kinds, kinds
                assert gw.queue.size == 0

    run(go())
