"""The gateway over HTTP: in-process gateway and backends on 127.0.0.1 (free ports).

Streaming, byte-identical bodies, every error path, routing by model, health and ejection,
retries, timeouts, disconnects, the admin API, metrics. Tenants, limits and the central
queue are in ``test_gateway_tenants.py``; processes (drain on SIGTERM, workers, failover with
a killed backend) in ``test_gateway_process.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests._gateway import MODEL, backend_app, emulators, gateway, run, sse, text_of, until

from fleetsched.gateway import hash_key

ADMIN = "admin-secret"


def test_stream_chunks_arrive_in_order_as_the_engine_makes_them() -> None:
    """Each engine step's chunk reaches the client when the step ends, not at the end: the
    arrival times through the gateway spread over the stream like those of a direct request,
    and the text (seeded filler) is the same, in the same order."""

    async def go() -> None:
        # speedup 0.5: an A10G decode step of ~8 ms modelled takes ~16 ms of wall time
        async with emulators(1, speedup=0.5) as emus, gateway([emus[0][1]]) as (_, url):
            body = {
                "prompt": list(range(100, 164)),
                "max_tokens": 24,
                "ignore_eos": True,
                "stream": True,
            }
            async with aiohttp.ClientSession() as s:
                got = {}
                for name, base in (("direct", emus[0][1]), ("gateway", url)):
                    t0 = time.perf_counter()
                    async with s.post(base + "/v1/completions", json=body) as r:
                        assert r.status == 200
                        assert r.headers["Content-Type"].startswith("text/event-stream")
                        ev = await sse(r)
                    got[name] = (t0, ev)
        t0, ev = got["gateway"]
        assert text_of(ev) == text_of(got["direct"][1])  # same tokens, same order
        assert ev[-1][1] == "[DONE]"
        token_times = [t for t, e in ev if isinstance(e, dict) and e["choices"]]
        assert len(token_times) >= 12  # one chunk per step, not one at the end
        assert token_times == sorted(token_times)
        span = token_times[-1] - token_times[0]
        direct = [t for t, e in got["direct"][1] if isinstance(e, dict) and e["choices"]]
        assert span >= 0.7 * (direct[-1] - direct[0]) > 0.1
        # the first chunk was not held back for the rest: it came a whole span before the last
        assert token_times[0] - t0 < 0.5 * (token_times[-1] - t0)

    run(go())


def test_the_body_reaches_the_backend_byte_identical() -> None:
    seen: list[bytes] = []

    async def capture(r: web.Request) -> web.Response:
        seen.append(await r.read())
        return web.json_response({"choices": [{"text": "ok"}], "usage": {"completion_tokens": 1}})

    async def go() -> None:
        odd = (
            '{ "model" : "Llama-3.1-8B",\n  "prompt":"héllo \\u00e9 wörld", "zzz_unknown": '
            '[1, {"a": null}], "temperature": 0.70, "n": 3, "max_tokens": 5 }'
        ).encode()
        async with (
            backend_app(capture) as b,
            gateway([b]) as (_, url),
            aiohttp.ClientSession() as s,
        ):
            async with s.post(
                url + "/v1/completions", data=odd, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 200
                assert r.headers["x-fleetsched-backend"].startswith("127.0.0.1:")
                assert (await r.json())["choices"][0]["text"] == "ok"
            chat = json.dumps(
                {
                    "model": MODEL,
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "hi"},
                                {"type": "image_url", "image_url": {"url": "x"}},
                            ],
                        }
                    ],
                    "tools": [{"type": "function"}],
                },
                indent=3,
            ).encode()
            async with s.post(url + "/v1/chat/completions", data=chat) as r:
                assert r.status == 200
        assert seen == [odd, chat]

    run(go())


def _err(status: int, body: dict[str, Any], type_: str, param: str | None = None) -> None:
    e = body["error"]
    assert set(e) >= {"message", "type", "param", "code"}
    assert e["type"] == type_ and e["message"]
    if param is not None:
        assert e["param"] == param


def test_every_error_is_an_openai_error_body_with_its_status() -> None:
    async def slow(r: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async def fail(r: web.Request) -> web.Response:
        return web.json_response(
            {
                "error": {
                    "message": "engine died",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                }
            },
            status=500,
        )

    async def reset(r: web.Request) -> web.Response:
        assert r.transport is not None
        r.transport.abort()  # the engine process died under the request: a reset, no answer
        return web.Response()

    async def go() -> None:
        async with (
            emulators(1) as emus,
            backend_app(slow, models=("slow",)) as slow_url,
            backend_app(fail, models=("fails",)) as fail_url,
            backend_app(reset, models=("resets",)) as reset_url,
            gateway(
                [],
                max_body_bytes=4096,
                timeouts={"first_token_s": 0.3},
                retries={"max_retries": 0},
                backends=[
                    {"url": emus[0][1]},
                    {"url": slow_url},
                    {"url": fail_url},
                    {"url": reset_url},
                    {"url": "http://127.0.0.1:9", "models": ["dead"]},
                ],
            ) as (_, url),
            aiohttp.ClientSession() as s,
        ):

            async def post(path: str, data: Any, **kw: Any) -> tuple[int, dict[str, Any], Any]:
                raw = data if isinstance(data, bytes) else json.dumps(data).encode()
                async with s.post(url + path, data=raw, **kw) as r:
                    return r.status, await r.json(content_type=None), r.headers

            st, b, _ = await post("/v1/completions", b'{"prompt": [1, 2')
            assert st == 400
            _err(st, b, "BadRequestError")
            st, b, _ = await post("/v1/completions", {"prompt": "x", "stream": "yes"})
            assert st == 400
            _err(st, b, "BadRequestError", "stream")
            st, b, _ = await post("/v1/chat/completions", {"messages": "hi"})
            assert st == 400
            _err(st, b, "BadRequestError", "messages")
            st, b, _ = await post("/v1/completions", {"prompt": ["a", 3]})
            assert st == 400
            _err(st, b, "BadRequestError", "prompt")
            st, b, _ = await post("/v1/completions", {"model": "gpt-9", "prompt": "x"})
            assert st == 404
            _err(st, b, "NotFoundError", "model")
            st, b, _ = await post("/v1/completions", {"prompt": list(range(2000))})
            assert st == 413
            _err(st, b, "RequestTooLargeError")
            st, b, _ = await post("/v1/nothing", {})
            assert st == 404
            _err(st, b, "NotFoundError")
            async with s.get(url + "/v1/completions") as r:
                assert r.status == 405
                _err(405, await r.json(), "MethodNotAllowedError")
            # the only backend serving "dead" refuses connections, so its probes fail: 503
            st, b, h = await post("/v1/completions", {"model": "dead", "prompt": "x"})
            assert st == 503 and h["Retry-After"] == "1"
            _err(st, b, "ServiceUnavailableError")
            assert b["error"]["code"] == "no_healthy_backend" and "'dead'" in b["error"]["message"]
            # a healthy backend that drops the connection under the request: 502
            st, b, _ = await post("/v1/completions", {"model": "resets", "prompt": "x"})
            assert st == 502
            _err(st, b, "BadGatewayError")
            assert "reset" in b["error"]["message"]
            # first-token timeout: 504
            st, b, _ = await post("/v1/completions", {"model": "slow", "prompt": "x"})
            assert st == 504
            _err(st, b, "GatewayTimeoutError")
            # the backend's own error answer is passed on as it is
            st, b, _ = await post("/v1/completions", {"model": "fails", "prompt": "x"})
            assert st == 500 and b["error"]["message"] == "engine died"
            # the emulator's own 400 (prompt too long) is passed on
            st, b, _ = await post(
                "/v1/completions", {"model": MODEL, "prompt": [1] * 500, "max_tokens": 10**9}
            )
            assert st == 400 and b["error"]["param"] == "max_tokens"

    run(go())


def test_no_healthy_backend_is_a_503_and_ready_says_so() -> None:
    async def go() -> None:
        dead = [{"url": "http://127.0.0.1:9", "models": [MODEL]}]
        async with gateway([], backends=dead) as (_, url), aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "1"
                _err(503, await r.json(), "ServiceUnavailableError")
            async with s.get(url + "/ready") as r:
                assert r.status == 503
            async with s.get(url + "/health") as r:
                assert r.status == 200

    run(go())


def test_requests_go_only_to_backends_serving_their_model() -> None:
    hits: dict[str, int] = {"a": 0, "b": 0}

    def answer(name: str) -> Any:
        async def h(r: web.Request) -> web.Response:
            hits[name] += 1
            return web.json_response({"choices": [{"text": name}]})

        return h

    async def go() -> None:
        async with (
            backend_app(answer("a"), models=("m-a", "shared")) as a,
            backend_app(answer("b"), models=("m-b", "shared")) as b,
            gateway([a, b], router={"name": "round_robin"}) as (_, url),
            aiohttp.ClientSession() as s,
        ):
            async with s.get(url + "/v1/models") as r:
                ids = sorted(c["id"] for c in (await r.json())["data"])
            assert ids == ["m-a", "m-b", "shared"]
            for _ in range(6):
                async with s.post(
                    url + "/v1/completions", json={"model": "m-b", "prompt": "x"}
                ) as r:
                    assert (await r.json())["choices"][0]["text"] == "b"
            assert hits == {"a": 0, "b": 6}
            for _ in range(6):
                async with s.post(url + "/v1/completions", json={"model": "shared", "prompt": "x"}):
                    pass
            assert hits == {"a": 3, "b": 9}

    run(go())


def test_the_gateway_never_contacts_what_a_request_names() -> None:
    """No open proxy: an absolute URL or a Host header naming another server changes
    nothing; only the configured backend is contacted."""
    contacted: list[str] = []

    async def trap(r: web.Request) -> web.Response:
        contacted.append("trap")
        return web.json_response({})

    async def ok(r: web.Request) -> web.Response:
        return web.json_response({"choices": [{"text": "configured"}]})

    async def go() -> None:
        async with backend_app(trap) as other, backend_app(ok) as mine, gateway([mine]) as (_, url):
            host, port = url.split("://")[1].split(":")
            other_hp = other.split("://")[1]
            body = b'{"prompt": "x"}'
            raw = (
                f"POST {other}/v1/completions HTTP/1.1\r\nHost: {other_hp}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(raw)
            answer = await reader.read()
            writer.close()
            assert b"200 OK" in answer and b"configured" in answer
            assert contacted == []

    run(go())


def test_a_client_disconnect_reaches_the_engine_within_100_ms() -> None:
    async def go() -> None:
        async with emulators(1, speedup=1.0) as emus, gateway([emus[0][1]]) as (gw, url):
            emu = emus[0][0]
            aborted: list[float] = []
            real_abort = emu.loop.abort

            def abort(stream: Any) -> None:
                if not stream.done:
                    aborted.append(time.perf_counter())
                real_abort(stream)

            emu.loop.abort = abort  # type: ignore[method-assign]
            body = {
                "prompt": list(range(200)),
                "max_tokens": 5000,
                "ignore_eos": True,
                "stream": True,
            }
            async with aiohttp.ClientSession() as s:
                r = await s.post(url + "/v1/completions", json=body)
                n = 0
                async for data in r.content.iter_any():
                    n += data.count(b"data: ")
                    if n >= 3:
                        break
                t_close = time.perf_counter()
                r.close()
                assert await until(lambda: bool(aborted), timeout=2.0)
            assert aborted[0] - t_close <= 0.100, aborted[0] - t_close
            assert await until(lambda: emu.instance.kv.used == 0)
            assert await until(lambda: all(b.inflight == 0 for b in gw.registry))
            assert emu.instance.stats.aborted == 1

    run(go())


def test_a_failed_backend_is_retried_elsewhere_then_ejected_and_readmitted() -> None:
    state = {"fail": True, "calls": 0}

    async def flaky(r: web.Request) -> web.Response:
        state["calls"] += 1
        if state["fail"]:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return web.json_response({"choices": [{"text": "flaky"}]})

    async def good(r: web.Request) -> web.Response:
        return web.json_response({"choices": [{"text": "good"}]})

    async def go() -> None:
        async with (
            backend_app(flaky) as f,
            backend_app(good) as g,
            gateway(
                [f, g],
                router={"name": "round_robin"},
                ejection={"consecutive_failures": 2, "min_ejection_s": 0.3},
                health={"interval_s": 0.1, "healthy_threshold": 2},
            ) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            texts = []
            for _ in range(6):
                async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                    assert r.status == 200  # the 503 never reaches the client
                    texts.append((await r.json())["choices"][0]["text"])
            assert texts == ["good"] * 6
            fb = gw.registry.get(f.split("://")[1])
            assert fb is not None and fb.ejected and state["calls"] == 2
            state["fail"] = False
            assert await until(lambda: not fb.ejected, timeout=5)  # probes brought it back
            seen = set()
            for _ in range(4):
                async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                    seen.add((await r.json())["choices"][0]["text"])
            assert seen == {"flaky", "good"}
            async with s.get(url + "/metrics") as r:
                m = _metrics(await r.text())
            assert m[("fleetsched:gateway_ejections_total", (("backend", fb.name),))] == 1
            assert (
                m[
                    (
                        "fleetsched:gateway_retries_total",
                        (("backend", fb.name), ("reason", "status_503")),
                    )
                ]
                == 2
            )

    run(go())


def test_serving_starts_with_a_backend_down_and_takes_it_when_it_comes_up() -> None:
    async def go() -> None:
        async with emulators(1) as emus:
            import socket

            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            late_port = sock.getsockname()[1]
            sock.close()
            late = f"http://127.0.0.1:{late_port}"
            async with (
                gateway([emus[0][1], late], health={"interval_s": 0.1}) as (gw, url),
                aiohttp.ClientSession() as s,
            ):
                async with s.get(url + "/ready") as r:
                    assert r.status == 200 and (await r.json())["healthy_backends"] == 1
                async with s.post(
                    url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}
                ) as r:
                    assert r.status == 200
                from fleetsched.emulator import start

                runner, _ = await start(emulator_for_port(), "127.0.0.1", late_port)
                try:
                    lb = gw.registry.get(f"127.0.0.1:{late_port}")
                    assert lb is not None
                    assert await until(lambda: lb.eligible, timeout=5)
                finally:
                    await runner.cleanup()

    run(go())


def emulator_for_port() -> Any:
    from tests._gateway import emulator

    return emulator()


def test_keepalive_comments_while_the_first_token_is_slow() -> None:
    async def slow_first(r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        await asyncio.sleep(0.35)
        await resp.write(b'data: {"choices":[{"index":0,"text":" ba"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def go() -> None:
        async with (
            backend_app(slow_first) as b,
            gateway([b], timeouts={"keepalive_s": 0.1}) as (_, url),
            aiohttp.ClientSession() as s,
            s.post(url + "/v1/completions", json={"prompt": "x", "stream": True}) as r,
        ):
            assert r.status == 200
            raw = await r.read()
        assert raw.count(b": keepalive\n\n") >= 2
        assert raw.index(b": keepalive") < raw.index(b"data: {")
        assert raw.endswith(b"data: [DONE]\n\n")

    run(go())


def test_an_idle_stream_ends_with_an_error_event() -> None:
    async def stalls(r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        await resp.write(b'data: {"choices":[{"index":0,"text":" ba"}]}\n\n')
        await asyncio.sleep(30)
        return resp

    async def go() -> None:
        async with backend_app(stalls) as b, gateway([b], timeouts={"idle_s": 0.2}) as (gw, url):
            async with (
                aiohttp.ClientSession() as s,
                s.post(url + "/v1/completions", json={"prompt": "x", "stream": True}) as r,
            ):
                ev = await sse(r)
            assert text_of(ev) == " ba"
            assert "error" in ev[-2][1] and ev[-1][1] == "[DONE]"
            assert await until(lambda: all(x.inflight == 0 for x in gw.registry))

    run(go())


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_metrics_and_access_log(tmp_path: Any) -> None:
    log = tmp_path / "access.jsonl"

    async def go() -> None:
        async with (
            emulators(2) as emus,
            gateway(
                [e[1] for e in emus], router={"name": "least_requests"}, access_log=str(log)
            ) as (_gw, url),
            aiohttp.ClientSession() as s,
        ):
            for i in range(4):
                body = {
                    "model": MODEL,
                    "prompt": [i + 1] * 20,
                    "max_tokens": 3,
                    "stream": i % 2 == 0,
                }
                async with s.post(url + "/v1/completions", json=body) as r:
                    await r.read()
            async with s.post(url + "/v1/completions", json={"prompt": 5}) as r:
                assert r.status == 400
            async with s.get(url + "/metrics") as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                m = _metrics(await r.text())
            await asyncio.sleep(0.3)  # the log is flushed every 0.2 s
        p = "fleetsched:gateway_"
        assert (
            m[(p + "requests_total", (("model", MODEL), ("status", "200"), ("tenant", "default")))]
            == 4
        )
        assert (
            m[(p + "requests_total", (("model", ""), ("status", "400"), ("tenant", "unknown")))]
            == 1
        )
        assert m[(p + "errors_total", (("kind", "http_400"), ("tenant", "unknown")))] == 1
        assert m[(p + "ttft_seconds_count", (("model", MODEL),))] == 4
        assert m[(p + "e2e_seconds_count", (("model", MODEL),))] == 4
        decisions = {k[1]: v for k, v in m.items() if k[0] == p + "decisions_total"}
        assert sum(decisions.values()) == 4 and all(
            dict(k)["policy"] == "least_requests" for k in decisions
        )
        for e in emus:
            name = e[1].split("://")[1]
            assert m[(p + "backend_inflight", (("backend", name),))] == 0
            assert m[(p + "backend_healthy", (("backend", name),))] == 1
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert len(lines) == 5 and sorted(x["status"] for x in lines) == [200] * 4 + [400]
        ok = [x for x in lines if x["status"] == 200]
        assert all(
            x["backend"] and x["policy"] == "least_requests" and x["ttft_ms"] > 0 for x in ok
        )
        assert sorted(x["completion_tokens"] for x in ok) == [3, 3, 3, 3]

    run(go())


def test_admin_api_needs_its_key_and_manages_backends() -> None:
    async def go() -> None:
        async with (
            emulators(2) as emus,
            gateway([emus[0][1]], admin_keys=[hash_key(ADMIN)]) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            async with s.get(url + "/admin/backends") as r:
                assert r.status == 401
                _err(401, await r.json(), "AuthenticationError")
            auth = {"Authorization": "Bearer wrong"}
            async with s.get(url + "/admin/backends", headers=auth) as r:
                assert r.status == 401
            auth = {"Authorization": f"Bearer {ADMIN}"}
            async with s.post(
                url + "/admin/backends", headers=auth, json={"url": emus[1][1], "name": "second"}
            ) as r:
                assert r.status == 201 and (await r.json())["healthy"]
            async with s.get(url + "/admin/backends", headers=auth) as r:
                names = [b["name"] for b in (await r.json())["data"]]
            assert len(names) == 2 and "second" in names
            async with s.post(url + "/admin/backends/second/drain", headers=auth) as r:
                assert (await r.json())["draining"]
            assert [b.name for b in gw.registry.eligible(MODEL)] == [emus[0][1].split("://")[1]]
            async with s.delete(url + "/admin/backends/second", headers=auth) as r:
                assert r.status == 200
            assert gw.registry.get("second") is None
            async with s.post(url + "/admin/backends", headers=auth, json={"url": "ftp://x"}) as r:
                assert r.status == 400

    run(go())


def test_reload_keeps_streams_and_accounting(tmp_path: Any) -> None:
    """The config file's backend list is re-read (SIGHUP or the admin API): a removed backend
    drains (its stream in flight finishes), a new one joins."""
    cfg = tmp_path / "gw.yaml"

    async def go() -> None:
        async with emulators(2, speedup=2.0) as emus:
            a, b = emus[0][1], emus[1][1]
            cfg.write_text(f"backends:\n  - url: {a}\nadmin_keys: ['{hash_key(ADMIN)}']\n")
            from fleetsched.gateway import load_gateway_config, serve

            c = load_gateway_config(cfg).model_copy(update={"port": 0})
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[Any] = loop.create_future()
            stop = asyncio.Event()
            task = asyncio.create_task(
                serve(
                    c,
                    config_path=str(cfg),
                    stop=stop,
                    ready=lambda gw, p: ready.set_result((gw, p)),
                )
            )
            gw, port = await ready
            url = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {ADMIN}"}
            async with aiohttp.ClientSession() as s:
                body = {
                    "prompt": list(range(64)),
                    "max_tokens": 30,
                    "ignore_eos": True,
                    "stream": True,
                }
                stream = await s.post(url + "/v1/completions", json=body)
                cfg.write_text(f"backends:\n  - url: {b}\nadmin_keys: ['{hash_key(ADMIN)}']\n")
                os.kill(os.getpid(), signal.SIGHUP)  # the gateway's handler in this loop
                assert await until(lambda: gw.registry.get(b.split("://")[1]) is not None)
                old = gw.registry.get(a.split("://")[1])
                assert old is not None and old.draining and old.inflight == 1
                ev = await sse(stream)
                assert len([e for _, e in ev if isinstance(e, dict) and e["choices"]]) == 30
                assert ev[-1][1] == "[DONE]"
                assert await until(lambda: gw.registry.get(a.split("://")[1]) is None)
                assert await until(lambda: bool(gw.registry.eligible(None)))
                async with s.post(
                    url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}
                ) as r:
                    assert r.headers["x-fleetsched-backend"] == b.split("://")[1]
                # the admin API reloads the same way
                cfg.write_text(
                    f"backends:\n  - url: {a}\n  - url: {b}\nadmin_keys: ['{hash_key(ADMIN)}']\n"
                )
                async with s.post(url + "/admin/reload", headers=auth) as r:
                    res = await r.json()
                assert res["added"] == [a.split("://")[1]] and res["removed"] == []
            stop.set()
            assert await task == 0

    run(go())


@pytest.mark.parametrize("router", ["cache_aware", "prefix_load", "kv_overlap", "dualmap"])
def test_cache_aware_routers_see_the_prefixes_the_gateway_sent(router: str) -> None:
    """Requests sharing a long prefix end up where that prefix was sent (the gateway's prefix
    index / the router's tree), so the engine's prefix cache serves them."""

    async def go() -> None:
        async with (
            emulators(3) as emus,
            gateway([e[1] for e in emus], router={"name": router}) as (_gw, url),
            aiohttp.ClientSession() as s,
        ):
            cached = []
            for k in range(2):
                shared = [3000 + 7 * k + j for j in range(512)]
                for tail in range(4):
                    body = {"prompt": shared + [tail + 1] * 16, "max_tokens": 2}
                    async with s.post(url + "/v1/completions", json=body) as r:
                        cached.append(
                            (await r.json())["usage"]["prompt_tokens_details"]["cached_tokens"]
                        )
        # the first request of each prefix misses; the next three hit its 512 tokens
        assert sum(c >= 512 for c in cached) >= 5, cached

    run(go())


def test_every_router_that_makes_sense_live_runs_live() -> None:
    """Each registered router but pd_disagg (it needs engine-side KV handover) routes real
    requests through the gateway (two emulators, shared by the routers' gateways in turn),
    with the gateway's accounting and the router's own ledger back to zero after."""
    from fleetsched.gateway.config import NOT_LIVE
    from fleetsched.policies.routing import ROUTERS

    live = [r for r in ROUTERS if r not in NOT_LIVE]
    assert set(ROUTERS) - set(live) == {"pd_disagg"}

    async def go() -> None:
        async with emulators(2) as emus, aiohttp.ClientSession() as s:
            for router in live:
                async with gateway(
                    [e[1] for e in emus], router={"name": router}, scrape={"interval_s": 0.05}
                ) as (gw, url):
                    await until(lambda: all(b.load is not None for b in gw.registry), timeout=3)
                    for i in range(6):
                        body = {
                            "prompt": list(range(300)) + [i] * 20,
                            "max_tokens": 2,
                            "stream": i % 2 == 0,
                        }
                        async with s.post(
                            url + "/v1/completions",
                            json=body,
                            headers={"x-session-id": f"s{i % 2}"},
                        ) as r:
                            assert r.status == 200, (router, await r.text())
                            await r.read()
                    assert all(b.inflight == 0 for b in gw.registry), router
                    ledger = getattr(gw.router, "ledger", None)
                    if ledger is not None:
                        assert len(ledger) == 0 and not any(ledger.requests), router
                        assert sum(ledger.routed) == 6, router

    run(go(), timeout=120)


def test_cache_aware_evicts_its_tree_on_the_gateways_clock() -> None:
    """The router's timed maintenance runs live: cache_aware evicts its trees every
    ``eviction_interval_s`` of the clock in ``RequestView.arrival_s``, which the gateway fills
    with its own (the simulator with simulated time)."""

    async def ok(r: web.Request) -> web.Response:
        return web.json_response({"choices": [{"text": "x"}]})

    async def go() -> None:
        params = {"eviction_interval_s": 0.2, "max_tree_tokens": 128}  # 2 blocks of 64 tokens
        async with (
            backend_app(ok) as a,
            backend_app(ok) as b,
            gateway([a, b], router={"name": "cache_aware", "params": params}) as (gw, url),
            aiohttp.ClientSession() as s,
        ):
            router = gw.router

            def blocks() -> list[int]:
                return [router.tree_blocks(x.index) for x in gw.registry]

            body = {"prompt": list(range(256)), "max_tokens": 1}  # 4 tree blocks: within 2x
            async with s.post(url + "/v1/completions", json=body) as r:
                assert r.status == 200
            assert sorted(blocks()) == [0, 4]
            await asyncio.sleep(0.3)  # past the interval: the next request evicts
            async with s.post(url + "/v1/completions", json={"prompt": [1], "max_tokens": 1}):
                pass
            assert max(blocks()) <= 2, blocks()

    run(go())


def _exposition(kind: str, running: int, waiting: int, kv: float, preempted: int = 0) -> str:
    """A backend's /metrics as vLLM (v1, and before 0.10), SGLang or llama.cpp write it."""
    if kind == "llamacpp":  # no labels
        return (
            "# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE llamacpp:kv_cache_usage_ratio gauge\n"
            f"llamacpp:kv_cache_usage_ratio {kv}\n"
            "# TYPE llamacpp:requests_processing gauge\n"
            f"llamacpp:requests_processing {running}\n"
            "# TYPE llamacpp:requests_deferred gauge\n"
            f"llamacpp:requests_deferred {waiting}\n"
            "# TYPE llamacpp:tokens_predicted_total counter\n"
            "llamacpp:tokens_predicted_total 1234\n"
        )
    names = {
        "vllm": (
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
        ),
        "vllm_old": (
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:gpu_cache_usage_perc",
        ),
        "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage"),
    }[kind]
    lab = '{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}'
    out = []
    for name, v in zip(names, (running, waiting, kv), strict=True):
        out += [f"# HELP {name} help text", f"# TYPE {name} gauge", f"{name}{lab} {float(v)}"]
    if kind.startswith("vllm"):
        out += [
            "# TYPE vllm:num_preemptions counter",
            f"vllm:num_preemptions_total{lab} {float(preempted)}",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            f'vllm:time_to_first_token_seconds_bucket{{le="0.001",{lab[1:-1]}}} 0.0',
            'vllm:cache_config_info{block_size="16",num_gpu_blocks="2048"} 1.0',
        ]
    return "\n".join(out) + "\n"


def test_scraped_signals_of_vllm_sglang_and_llamacpp() -> None:
    """The load signals are read under each engine's own names (vLLM v1 and its deprecated KV
    name, SGLang, llama.cpp), combined with the gateway's own accounting in the views, and
    a router that reads them routes on them: least_kv sends everything to the emptiest
    cache."""
    from fleetsched.gateway.views import backend_view, parse_load

    load = parse_load(_exposition("vllm", 3, 2, 0.25, preempted=5), 10.0, 1)
    assert load is not None
    assert (load.running, load.waiting, load.kv, load.preemptions) == (3, 2, 0.25, 5)
    assert load.num_gpu_blocks == 2048 and load.inflight_at == 1
    for kind in ("vllm_old", "sglang", "llamacpp"):
        got = parse_load(_exposition(kind, 4, 1, 0.5), 0.0, 0)
        assert got is not None and (got.running, got.waiting, got.kv) == (4, 1, 0.5), kind
    assert parse_load("# TYPE other gauge\nother 1\n", 0.0, 0) is None
    odd = parse_load(
        'vllm:num_requests_running{model_name="a b}"} 2 1700000000000\n'  # a timestamp
        "vllm:num_requests_running_other 9\n"  # another metric with the same prefix
        "vllm:kv_cache_usage_perc NaN\n",
        0.0,
        0,
    )
    assert odd is not None and (odd.running, odd.kv) == (2, 0.0)
    # data-parallel engines: one series per engine; requests add up, KV use is their mean
    two = _exposition("vllm", 3, 2, 0.2) + _exposition("vllm", 1, 0, 0.6).replace(
        'engine="0"', 'engine="1"'
    )
    both = parse_load(two, 0.0, 0)
    assert both is not None and (both.running, both.waiting) == (4, 2)
    assert both.kv == pytest.approx(0.4)

    exp = {
        "sglang": _exposition("sglang", 3, 2, 0.8),
        "llamacpp": _exposition("llamacpp", 1, 0, 0.1),
    }
    exp["vllm"] = _exposition("vllm", 0, 0, 0.5, preempted=7)

    def backend(kind: str) -> Any:
        async def ok(r: web.Request) -> web.Response:
            return web.json_response({"choices": [{"text": kind}]})

        return ok

    async def go() -> None:
        async with AsyncExitStack() as stack:
            urls = {
                kind: await stack.enter_async_context(backend_app(backend(kind), metrics=text))
                for kind, text in exp.items()
            }
            gw, url = await stack.enter_async_context(
                gateway(
                    [],
                    backends=[{"url": u, "name": k} for k, u in urls.items()],
                    router={"name": "least_kv"},
                    scrape={"interval_s": 0.05},
                )
            )
            assert await until(lambda: all(b.load is not None for b in gw.registry), timeout=3)
            now = time.monotonic()
            views = {b.name: backend_view(b, MODEL, now, gw.stale_s) for b in gw.registry}
            assert (views["sglang"].running, views["sglang"].queue_len) == (3, 2)
            assert views["sglang"].kv_utilization == pytest.approx(0.8)
            assert (views["llamacpp"].running, views["llamacpp"].kv_utilization) == (1, 0.1)
            assert views["vllm"].preemptions == 7 and views["vllm"].total_blocks == 2048
            s = await stack.enter_async_context(aiohttp.ClientSession())
            for _ in range(5):
                async with s.post(url + "/v1/completions", json={"prompt": "x"}) as r:
                    assert (await r.json())["choices"][0]["text"] == "llamacpp"

    run(go())


def test_first_token_is_the_first_output_chunk_reasoning_included() -> None:
    """A chat stream's role-only first chunk is not its first token; a reasoning model's
    first reasoning chunk is: the router hears ``on_first_token`` then, once."""
    gap = 0.25

    async def reasoning(r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        for delta in (
            {"role": "assistant", "content": ""},
            {"reasoning_content": "Let me"},
            {"content": "Hi"},
        ):
            ev = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
            await resp.write(b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n")
            await asyncio.sleep(gap)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def go() -> None:
        async with backend_app(reasoning) as b, gateway([b]) as (gw, url):
            seen: list[float] = []
            gw._first_token_hook = lambda req, index: seen.append(time.perf_counter())
            body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with aiohttp.ClientSession() as s:
                t0 = time.perf_counter()
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    await r.read()
            assert len(seen) == 1
            assert gap * 0.8 <= seen[0] - t0 < gap * 1.8  # the reasoning chunk, not the role's

    run(go())
