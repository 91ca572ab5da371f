"""The emulator over HTTP: real aiohttp servers on 127.0.0.1 (a free port each), in-process.

In-process servers start in milliseconds and let a test reach the engine (the simulator's own
``Instance``) directly; the equivalence test (tests/test_fidelity.py) runs the emulator as
its own process, as users run it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetsched.api import tokenizer
from fleetsched.api.filler import eos_length, output_ids, prompt_digest
from fleetsched.core.config import EngineConfig, InstanceGroup
from fleetsched.core.request import Request
from fleetsched.emulator import Emulator, build_emulator, start
from fleetsched.engine.instance import Instance
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

A10G = InstanceGroup(gpu="A10G", model="Llama-3.1-8B")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def emulator(speedup: float = 20.0, seed: int = 0, **engine: Any) -> Emulator:
    g = A10G.model_copy(update={"engine": EngineConfig(**engine)})
    return build_emulator(g, speedup=speedup, seed=seed)


@asynccontextmanager
async def serving(emu: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    runner, port = await start(emu, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as s:
            yield s
    finally:
        await runner.cleanup()


async def sse(resp: aiohttp.ClientResponse) -> list[tuple[float, Any]]:
    """(arrival time, payload) of each event; payload is parsed JSON or the string [DONE]."""
    out = []
    buf = b""
    async for data in resp.content.iter_any():
        now = time.perf_counter()
        buf += data
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            assert ev.startswith(b"data: ")
            body = ev[6:]
            out.append((now, "[DONE]" if body == b"[DONE]" else json.loads(body)))
    assert buf == b""
    return out


async def metrics(s: aiohttp.ClientSession) -> dict[str, float]:
    async with s.get("/metrics") as r:
        assert r.status == 200
        text = await r.text()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            key = sample.name
            if "finished_reason" in sample.labels:
                key += ":" + sample.labels["finished_reason"]
            if "le" not in sample.labels:
                out[key] = sample.value
    return out


async def until(s: aiohttp.ClientSession, pred: Any, timeout: float = 10.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = await metrics(s)
        if pred(m) or time.monotonic() > deadline:
            return m
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------ streaming
def test_completion_stream_one_chunk_per_token_in_order_with_usage() -> None:
    async def go() -> None:
        emu = emulator(speedup=4.0)
        ids = list(range(100, 300))
        async with serving(emu) as s:
            body = {"prompt": ids, "max_tokens": 12, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            async with s.post("/v1/completions", json=body) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                events = await sse(r)
            async with s.post("/v1/completions", json={**body, "stream": False,
                                                        "stream_options": None}) as r:  # fmt: skip
                whole = await r.json()
        assert events[-1][1] == "[DONE]"
        usage_ev = events[-2][1]
        assert usage_ev["choices"] == [] and usage_ev["object"] == "text_completion"
        assert usage_ev["usage"]["prompt_tokens"] == 200
        assert usage_ev["usage"]["completion_tokens"] == 12
        assert usage_ev["usage"]["total_tokens"] == 212
        tokens = events[:-2]
        assert len(tokens) == 12  # one chunk per token
        texts = [e["choices"][0]["text"] for _, e in tokens]
        assert all(tokenizer.count(t) == 1 for t in texts)
        assert "".join(texts) == whole["choices"][0]["text"]  # in order
        reasons = [e["choices"][0]["finish_reason"] for _, e in tokens]
        assert reasons == [None] * 11 + ["length"]
        assert len({e["id"] for _, e in tokens}) == 1
        # Not buffered: the chunks arrive spread over the modelled decode time (a lower
        # bound: the emulator never emits a token before its step's modelled end).
        step = emu.instance.step_model.step_time(0, 0.0, 1, 200)
        assert tokens[-1][0] - tokens[0][0] > 0.25 * 11 * step / 4.0

    run(go())


def test_chat_stream_role_first_then_tokens() -> None:
    async def go() -> None:
        async with serving(emulator()) as s:
            msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
            body = {"messages": msgs, "max_tokens": 5, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            async with s.post("/v1/chat/completions", json=body) as r:
                events = [e for _, e in await sse(r)]
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        deltas = [e["choices"][0]["delta"]["content"] for e in events[1:6]]
        assert len(deltas) == 5 and all(tokenizer.count(d) == 1 for d in deltas)
        assert events[5]["choices"][0]["finish_reason"] == "length"
        assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
        prompt = tokenizer.render_chat([("system", "be brief"), ("user", "hi")])
        assert events[6]["usage"]["prompt_tokens"] == tokenizer.count(prompt)
        assert events[7] == "[DONE]"

    run(go())


# ------------------------------------------------------------------------------ schema
def test_non_streaming_bodies_follow_the_openai_schema() -> None:
    async def go() -> None:
        async with serving(emulator()) as s:
            async with s.post(
                "/v1/completions", json={"prompt": "Hello, world 42!", "max_tokens": 3}
            ) as r:
                c = await r.json()
            async with s.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                      "ignore_eos": True},
            ) as r:  # fmt: skip
                ch = await r.json()
        assert c["id"].startswith("cmpl-") and c["object"] == "text_completion"
        assert isinstance(c["created"], int) and c["model"] == "Llama-3.1-8B"
        (choice,) = c["choices"]
        assert set(choice) == {"index", "text", "logprobs", "finish_reason", "stop_reason"}
        assert choice["finish_reason"] in ("length", "stop")
        u = c["usage"]
        assert u["prompt_tokens"] == 6  # the documented tokenizer's count
        assert u["completion_tokens"] == tokenizer.count(choice["text"]) <= 3
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        assert u["prompt_tokens_details"] == {"cached_tokens": 0}
        assert ch["id"].startswith("chatcmpl-") and ch["object"] == "chat.completion"
        (cc,) = ch["choices"]
        assert cc["message"]["role"] == "assistant" and cc["finish_reason"] == "length"
        assert tokenizer.count(cc["message"]["content"]) == ch["usage"]["completion_tokens"] == 4

    run(go())


def test_models_health_tokenize_detokenize() -> None:
    async def go() -> None:
        emu = emulator(speedup=7.0)
        async with serving(emu) as s:
            async with s.get("/health") as r:
                assert r.status == 200
            async with s.get("/v1/models") as r:
                models = await r.json()
            msgs = [{"role": "user", "content": "count me, please"}]
            async with s.post("/tokenize", json={"messages": msgs}) as r:
                tk = await r.json()
            async with s.post("/tokenize", json={"prompt": "a b c"}) as r:
                tp = await r.json()
            async with s.post("/detokenize", json={"tokens": [0, 1]}) as r:
                dt = await r.json()
            async with s.post(
                "/v1/chat/completions", json={"messages": msgs, "max_tokens": 1}
            ) as r:
                usage = (await r.json())["usage"]
        (card,) = models["data"]
        assert models["object"] == "list" and card["id"] == "Llama-3.1-8B"
        assert card["max_model_len"] == emu.max_model_len
        assert card["fleetsched"]["speedup"] == 7.0
        assert tk["count"] == len(tk["tokens"]) == usage["prompt_tokens"]
        assert tp["count"] == 3 and tp["max_model_len"] == emu.max_model_len
        assert dt == {"prompt": " ba be"}

    run(go())


# ------------------------------------------------------------------------------ errors
def test_a_prompt_that_can_never_fit_gets_vllms_400() -> None:
    async def go() -> None:
        emu = emulator(num_gpu_blocks=64)  # 1,024 tokens of KV
        assert emu.max_model_len == 1024
        async with serving(emu) as s:
            async with s.post("/v1/completions", json={"prompt": [1] * 1024}) as r:
                too_long = (r.status, await r.json())
            async with s.post(
                "/v1/completions", json={"prompt": [1] * 1000, "max_tokens": 100}
            ) as r:
                too_much = (r.status, await r.json())
            async with s.post("/v1/completions", json={"prompt": [1], "max_tokens": 5000}) as r:
                too_many = (r.status, await r.json())
            async with s.post(
                "/v1/completions", json={"prompt": [1] * 900, "max_tokens": 124}
            ) as r:
                fits = r.status
        assert too_long == (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 1024 tokens. However, "
                    "your request has 1024 input tokens. Please reduce the length of the "
                    "input messages. (parameter=input_tokens, value=1024)",
                    "type": "BadRequestError",
                    "param": "input_tokens",
                    "code": 400,
                }
            },
        )
        assert too_much[0] == 400
        assert too_much[1]["error"]["message"].startswith(
            "This model's maximum context length is 1024 tokens. However, you requested 100 "
            "output tokens and your prompt contains 1000 input tokens, for a total of 1100 tokens."
        )
        assert too_many[0] == 400 and too_many[1]["error"]["param"] == "max_tokens"
        assert fits == 200

    run(go())


def test_other_errors_are_openai_json() -> None:
    async def go() -> None:
        async with serving(emulator()) as s:
            got = {}
            for name, method, path, body in (
                ("model", "POST", "/v1/completions", {"model": "gpt-9", "prompt": "x"}),
                ("json", "POST", "/v1/completions", b"{oops"),
                ("field", "POST", "/v1/chat/completions", {"messages": "hi"}),
                ("vocab", "POST", "/v1/completions", {"prompt": [tokenizer.VOCAB_SIZE]}),
                ("route", "GET", "/v2/nothing", None),
                ("method", "GET", "/v1/completions", None),
            ):
                kw: dict[str, Any] = (
                    {"data": body} if isinstance(body, bytes) else {"json": body} if body else {}
                )
                async with s.request(method, path, **kw) as r:
                    got[name] = (r.status, (await r.json())["error"])
        assert got["model"] == (
            404,
            {"message": "The model `gpt-9` does not exist.", "type": "NotFoundError",
             "param": "model", "code": 404},
        )  # fmt: skip
        assert got["json"][0] == 400 and "invalid JSON" in got["json"][1]["message"]
        assert got["field"][0] == 400 and got["field"][1]["param"] == "messages"
        assert got["vocab"][0] == 400 and "out of vocabulary" in got["vocab"][1]["message"]
        assert got["route"][0] == 404 and got["route"][1]["type"] == "NotFoundError"
        assert got["method"][0] == 405

    run(go())


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_filler_text() -> None:
    async def text(seed: int, prompt: list[int], **kw: Any) -> tuple[str, str]:
        async with (
            serving(emulator(seed=seed)) as s,
            s.post("/v1/completions", json={"prompt": prompt, **kw}) as r,
        ):
            body = await r.json()
        return body["choices"][0]["text"], body["choices"][0]["finish_reason"]

    async def go() -> None:
        p = list(range(50))
        a = await text(7, p, max_tokens=20, ignore_eos=True)
        b = await text(7, p, max_tokens=20, ignore_eos=True)
        c = await text(8, p, max_tokens=20, ignore_eos=True)
        d = await text(7, p[1:], max_tokens=20, ignore_eos=True)
        assert a == b
        assert a[0] != c[0] and a[0] != d[0]
        assert a[0] == tokenizer.decode(output_ids(7, prompt_digest(p), 20).tolist())
        # Without ignore_eos the emulated end of sequence falls where the seed says.
        eos = eos_length(7, prompt_digest(p), 256.0)
        txt, reason = await text(7, p, max_tokens=eos + 10)
        assert tokenizer.count(txt) == eos and reason == "stop"
        txt, reason = await text(7, p, max_tokens=eos + 10, min_tokens=eos + 5)
        assert tokenizer.count(txt) == eos + 5 and reason == "stop"

    run(go())


def test_engine_timing_is_the_simulators() -> None:
    """One request alone: its engine-side TTFT and E2E (modelled seconds, in /metrics) equal
    what the simulator computes for the same request on the same instance."""

    async def go() -> tuple[float, float]:
        emu = emulator(speedup=10.0)
        async with serving(emu) as s:
            async with s.post(
                "/v1/completions", json={"prompt": list(range(700)), "max_tokens": 30,
                                         "ignore_eos": True}
            ) as r:  # fmt: skip
                assert r.status == 200
            m = await metrics(s)
        assert emu.loop.stats.slips == 0
        return m["vllm:time_to_first_token_seconds_sum"], m["vllm:e2e_request_latency_seconds_sum"]

    ttft, e2e = run(go())
    ref = emulator().instance
    inst = Instance(0, ref.kv.num_blocks, ref.step_model, ref.cfg)
    (rec,) = Simulator([inst], make_router("round_robin")).run([Request(0, 0.0, 700, 30)])
    assert ttft == pytest.approx(rec.ttft_s, rel=1e-9)
    assert e2e == pytest.approx(rec.e2e_s, rel=1e-9)


# ------------------------------------------------------------------------------ metrics
def test_metrics_parse_and_gauges_move_with_load() -> None:
    async def go() -> None:
        emu = emulator(speedup=1.0, max_num_seqs=4)
        async with serving(emu) as s:
            idle = await metrics(s)
            for name in (
                "vllm:num_requests_running",
                "vllm:num_requests_waiting",
                "vllm:kv_cache_usage_perc",
                "vllm:gpu_cache_usage_perc",
                "vllm:prefix_cache_hits_total",
                "vllm:prefix_cache_queries_total",
                "vllm:num_preemptions_total",
                "vllm:time_to_first_token_seconds_count",
                "vllm:inter_token_latency_seconds_count",
                "vllm:e2e_request_latency_seconds_count",
            ):
                assert name in idle, name
            assert idle["vllm:num_requests_running"] == idle["vllm:kv_cache_usage_perc"] == 0

            async def stream(i: int) -> None:
                body = {"prompt": [i] * 64 + list(range(300)), "max_tokens": 2000,
                        "ignore_eos": True, "stream": True}  # fmt: skip
                async with s.post("/v1/completions", json=body) as r:
                    async for _ in r.content.iter_any():
                        pass

            two = [asyncio.create_task(stream(i)) for i in range(2)]
            m2 = await until(s, lambda m: m["vllm:num_requests_running"] == 2)
            six = two + [asyncio.create_task(stream(i)) for i in range(2, 6)]
            m6 = await until(s, lambda m: m["vllm:num_requests_waiting"] == 2)
            assert m2["vllm:num_requests_running"] == 2 and m2["vllm:num_requests_waiting"] == 0
            assert m6["vllm:num_requests_running"] == 4 and m6["vllm:num_requests_waiting"] == 2
            assert 0 < m2["vllm:kv_cache_usage_perc"] < m6["vllm:kv_cache_usage_perc"] < 1
            assert m6["vllm:kv_cache_usage_perc"] == m6["vllm:gpu_cache_usage_perc"]
            for t in six:
                t.cancel()
            await asyncio.gather(*six, return_exceptions=True)
            end = await until(s, lambda m: m["vllm:num_requests_running"] == 0)
            assert end["vllm:num_requests_waiting"] == 0
            assert end["vllm:kv_cache_usage_perc"] == 0
            assert end["vllm:request_success_total:abort"] == 6

    run(go())


def test_a_disconnect_mid_stream_frees_the_kv() -> None:
    async def go() -> None:
        emu = emulator(speedup=2.0)
        async with serving(emu) as s:
            body = {"prompt": list(range(1000)), "max_tokens": 5000, "ignore_eos": True,
                    "stream": True}  # fmt: skip
            r = await s.post("/v1/completions", json=body)
            got = 0
            async for data in r.content.iter_any():
                got += data.count(b"data: ")
                if got >= 3:
                    break
            busy = await metrics(s)
            r.close()  # the client goes away mid-stream
            freed = await until(s, lambda m: m["vllm:kv_cache_usage_perc"] == 0)
        assert busy["vllm:num_requests_running"] == 1 and busy["vllm:kv_cache_usage_perc"] > 0
        assert freed["vllm:kv_cache_usage_perc"] == 0
        assert freed["vllm:num_requests_running"] == 0
        assert freed["vllm:request_success_total:abort"] == 1
        assert emu.instance.stats.aborted == 1 and emu.instance.kv.used == 0
        assert 3 <= freed["vllm:generation_tokens_total"] < 5000

    run(go())


def test_prefix_cache_hits_show_in_usage_and_metrics() -> None:
    async def go() -> None:
        async with serving(emulator()) as s:
            shared = list(range(512))
            cached = []
            for tail in (1, 2):
                body = {"prompt": shared + [tail] * 20, "max_tokens": 2}
                async with s.post("/v1/completions", json=body) as r:
                    cached.append(
                        (await r.json())["usage"]["prompt_tokens_details"]["cached_tokens"]
                    )
            m = await metrics(s)
        assert cached == [0, 512]
        assert m["vllm:prefix_cache_hits_total"] == 512
        assert m["vllm:prefix_cache_queries_total"] == 2 * 532

    run(go())


def test_bad_emulator_settings_fail_before_serving() -> None:
    from fleetsched.errors import InputError

    with pytest.raises(InputError, match="max-model-len"):
        build_emulator(A10G, max_model_len=10**9)
    with pytest.raises(InputError, match="speedup"):
        build_emulator(A10G, speedup=0)
    assert math.isfinite(emulator().max_model_len)
