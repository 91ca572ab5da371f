"""Model routers live: the gateway reads a request's task class (``X-Task-Class``) and
difficulty (``X-Difficulty``) and its own quality table, and the simulator's router objects
pick the backend serving the right model; bad headers are OpenAI-style 400s."""

from __future__ import annotations

from contextlib import asynccontextmanager

import aiohttp
from tests._gateway import gateway, run, until

from fleetsched.core.config import InstanceGroup
from fleetsched.emulator import build_emulator, start

SMALL, LARGE = "Llama-3.1-8B", "Llama-3.1-70B"
QUALITY = {"sql": {SMALL: 0.3, LARGE: 0.9}, "chat": {SMALL: 0.9, LARGE: 0.5}}


@asynccontextmanager
async def two_models():
    """An 8B emulator (A10G) and a 70B one (4 x H100) on 127.0.0.1."""
    groups = [
        InstanceGroup(gpu="A10G", model=SMALL),
        InstanceGroup(gpu="H100-SXM", model=LARGE, tp=4),
    ]
    runners, urls = [], []
    try:
        for g in groups:
            runner, port = await start(build_emulator(g, speedup=20.0), "127.0.0.1", 0)
            runners.append(runner)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for r in runners:
            await r.cleanup()


def test_quality_first_sends_each_task_to_its_best_model_live() -> None:
    async def go() -> None:
        async with (
            two_models() as urls,
            gateway(urls, router={"name": "quality_first"}, quality=QUALITY) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            small, large = (u.split("://")[1] for u in urls)
            assert await until(lambda: all(b.models_known for b in gw.registry))
            seen: dict[str, set[str]] = {"sql": set(), "chat": set()}
            for i in range(8):
                task = "sql" if i % 2 else "chat"
                body = {"prompt": [1, 2, 3, i], "max_tokens": 2}
                hdrs = {"x-task-class": task, "x-difficulty": "0.5"}
                async with s.post(url + "/v1/completions", json=body, headers=hdrs) as r:
                    assert r.status == 200, await r.text()
                    seen[task].add(r.headers["x-fleetsched-backend"])
                    await r.read()
            assert seen == {"sql": {large}, "chat": {small}}
            assert all(b.inflight == 0 for b in gw.registry)
            assert gw.router.ledger.requests == [0, 0] and len(gw.router.ledger) == 0

    run(go())


def test_bad_difficulty_and_unknown_task_are_client_errors() -> None:
    async def go() -> None:
        async with (
            two_models() as urls,
            gateway(urls, router={"name": "route_balance"}, quality=QUALITY) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            assert await until(lambda: all(b.models_known for b in gw.registry))
            body = {"prompt": "hello", "max_tokens": 2}
            async with s.post(
                url + "/v1/completions", json=body, headers={"x-task-class": "poetry"}
            ) as r:
                assert r.status == 400
                err = (await r.json())["error"]
                assert err["param"] == "x-task-class" and "chat, sql" in err["message"]
            for bad in ("2", "hard"):
                hdrs = {"x-task-class": "sql", "x-difficulty": bad}
                async with s.post(url + "/v1/completions", json=body, headers=hdrs) as r:
                    assert r.status == 400
                    err = (await r.json())["error"]
                    assert err["param"] == "x-difficulty" and "[0, 1]" in err["message"]
            async with s.post(
                url + "/v1/completions", json=body, headers={"x-task-class": "sql"}
            ) as r:
                assert r.status == 200, await r.text()

    run(go())
