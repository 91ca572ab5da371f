"""``bench`` against real servers on 127.0.0.1: in-process emulators and stub servers."""

from __future__ import annotations

import asyncio
import csv
import json
import math
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from tests._live import emulator_process, fleetsched

from fleetsched.bench import BenchConfig, bench_summary, run_bench, write_bench_records
from fleetsched.bench.prompts import prompt_token_ids, request_body
from fleetsched.bench.report import EXTRA_COLUMNS, counter_totals
from fleetsched.bench.runner import resolve_time_scale
from fleetsched.core.config import EngineConfig, InstanceGroup, SyntheticConfig
from fleetsched.core.request import Request, chain_hashes
from fleetsched.emulator import build_emulator, start
from fleetsched.errors import InputError
from fleetsched.metrics.io import COLUMNS, read_records_csv
from fleetsched.metrics.summary import summarize
from fleetsched.workload import generate

A10G = InstanceGroup(gpu="A10G", model="Llama-3.1-8B")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


@asynccontextmanager
async def emulated(speedup: float = 50.0, **engine: Any) -> AsyncIterator[str]:
    g = A10G.model_copy(update={"engine": EngineConfig(**engine)})
    runner, port = await start(build_emulator(g, speedup=speedup), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def stub(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def chat_workload(n: int = 30, rate: float = 4.0) -> list[Request]:
    cfg = SyntheticConfig.model_validate(
        {
            "num_requests": n,
            "arrival": {"kind": "poisson", "rate": rate},
            "prompt": {"kind": "uniform", "low": 20, "high": 200},
            "output": {"kind": "uniform", "low": 2, "high": 30},
            "sessions": {"turns_mean": 2.0, "think_time_s": 1.0},
            "system_prompt_tokens": 128,
        }
    )
    return list(generate(cfg, seed=5))


# ------------------------------------------------------------------------------ prompts
def test_prompts_have_exact_lengths_and_share_what_the_hashes_share() -> None:
    a = Request(0, 0.0, 1300, 5, block_hashes=chain_hashes([1, 2]), hash_block_tokens=512)
    b = Request(1, 0.0, 1100, 5, block_hashes=chain_hashes([1, 3]), hash_block_tokens=512)
    c = Request(2, 0.0, 1300, 5, block_hashes=chain_hashes([1, 2]), hash_block_tokens=512)
    ta, tb, tc = (prompt_token_ids(r) for r in (a, b, c))
    assert (ta.size, tb.size) == (1300, 1100)
    assert np.array_equal(ta[:512], tb[:512])  # the first block is shared ...
    assert not np.array_equal(ta[512:1024], tb[512:1024])  # ... the second is not
    assert np.array_equal(ta[:1024], tc[:1024])  # same hashes, same prefix
    assert not np.array_equal(ta[1024:], tc[1024:])  # each request's own tail
    assert np.array_equal(prompt_token_ids(a), ta)  # deterministic


def test_request_body_forces_the_output_length() -> None:
    r = Request(3, 0.0, 40, 17, tenant="t1", priority=2)
    body = json.loads(request_body(r, model="m"))
    assert body["prompt"] == prompt_token_ids(r).tolist() and len(body["prompt"]) == 40
    assert (body["max_tokens"], body["min_tokens"], body["ignore_eos"]) == (17, 17, True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["model"], body["user"], body["priority"]) == ("m", "t1", -2)
    chat = json.loads(request_body(r, endpoint="chat", stream=False, chat_overhead=11))
    assert "stream_options" not in chat and chat["messages"][0]["role"] == "user"
    from fleetsched.api.tokenizer import count

    assert count(chat["messages"][0]["content"]) == 40 - 11


def test_time_scale_comes_from_the_emulator_and_mismatches_are_refused() -> None:
    info = {"fleetsched": {"speedup": 8.0}}
    assert resolve_time_scale(None, info) == 8.0
    assert resolve_time_scale(None, {}) == 1.0
    assert resolve_time_scale(3.0, {}) == 3.0
    with pytest.raises(InputError, match="speedup 8"):
        resolve_time_scale(4.0, info)


# ------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_bench_against_an_emulator_writes_the_simulators_formats(
    endpoint: str, tmp_path: Path
) -> None:
    reqs = chat_workload()

    async def go() -> Any:
        async with emulated() as url:
            return await run_bench(reqs, BenchConfig(target=url, endpoint=endpoint))  # type: ignore[arg-type]

    result = run(go())
    assert result.config.time_scale == 50.0 and result.config.model == "Llama-3.1-8B"
    outs = result.outcomes
    assert [o.record.id for o in outs] == [r.id for r in reqs]
    assert all(o.error == "" and o.status == 200 for o in outs)
    for o, r in zip(outs, reqs, strict=True):
        assert o.record.prompt_tokens == r.prompt_tokens  # exact, as the server counted
        assert o.record.output_tokens == o.chunks == r.output_tokens
        assert o.record.first_token_s <= o.record.finish_s
        assert len(o.gaps) == r.output_tokens - 1
    assert sum(o.record.cached_prompt_tokens for o in outs) > 0  # shared system prompt, turns
    s = bench_summary(result)
    sim_keys = set(summarize([o.record for o in outs]))
    assert sim_keys <= set(s)  # the simulator's keys, none renamed
    assert s["completed"] == s["requests"] == len(reqs) and s["failed"] == 0
    assert s["prefix_hit_rate"] == pytest.approx(s["server"]["prefix_hit_rate"])
    assert s["chunks"] == sum(r.output_tokens for r in reqs)
    assert s["itl_s"]["mean"] > 0 and s["peak_concurrency"] >= 1
    assert s["output_mismatch"] == 0 and s["server"]["generation_tokens"] == s["chunks"]
    path = tmp_path / "r.csv"
    assert write_bench_records(result, path) == len(reqs)
    with path.open() as f:
        header = next(csv.reader(f))
    assert tuple(header) == (*COLUMNS, *EXTRA_COLUMNS)
    back = read_records_csv(path)
    assert [r.finish_s for r in back] == [o.record.finish_s for o in outs]


def test_failures_are_counted_by_kind_never_dropped() -> None:
    reqs = [Request(i, 0.01 * i, 100, 3) for i in range(5)]
    reqs[2] = Request(2, 0.02, 5000, 3)  # longer than the engine's 1,024-token context

    async def go() -> Any:
        async with emulated(num_gpu_blocks=64) as url:
            return await run_bench(reqs, BenchConfig(target=url))

    result = run(go())
    s = bench_summary(result)
    assert (s["requests"], s["completed"], s["failed"]) == (5, 4, 1)
    assert s["errors"] == {"http_400": 1}
    bad = result.outcomes[2]
    assert bad.status == 400 and math.isnan(bad.record.finish_s)


def test_timeouts_and_broken_streams_are_errors() -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError

    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"text":" a"}]}\n\n')
        assert request.transport is not None
        request.transport.close()  # dies without [DONE]
        return resp

    async def go() -> tuple[Any, Any]:
        reqs = [Request(i, 0.0, 10, 5) for i in range(3)]
        async with stub(hang) as url:
            slow = await run_bench(reqs, BenchConfig(target=url, timeout_s=0.3, time_scale=1))
        async with stub(broken) as url:
            cut = await run_bench(reqs, BenchConfig(target=url, time_scale=1))
        return slow, cut

    slow, cut = run(go())
    assert bench_summary(slow)["errors"] == {"timeout": 3}
    errs = bench_summary(cut)["errors"]
    assert sum(errs.values()) == 3 and set(errs) <= {"incomplete", "disconnected"}
    assert all(o.chunks == 1 and not o.record.finished for o in cut.outcomes)


def test_stopping_keeps_what_was_measured() -> None:
    reqs = [Request(i, 0.5 * i, 100, 400) for i in range(40)]  # 20 s of schedule at 1x

    async def go() -> Any:
        stop = asyncio.Event()
        async with emulated(speedup=1.0) as url:
            asyncio.get_running_loop().call_later(1.2, stop.set)
            return await run_bench(reqs, BenchConfig(target=url, time_scale=1.0), stop=stop)

    result = run(go())
    s = bench_summary(result)
    assert result.interrupted and s["interrupted"]
    assert 1 <= s["requests"] < 40 and s["not_sent"] == 40 - s["requests"]
    assert s["errors"].get("cancelled", 0) >= 1  # in flight when stopped
    assert s["requests"] == s["completed"] + s["failed"]


def test_counter_totals_read_vllm_names() -> None:
    text = (
        "# TYPE vllm:prefix_cache_hits counter\n"
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 30.0\n'
        'vllm:prefix_cache_hits_total{engine="1",model_name="m"} 12.0\n'
        "# TYPE vllm:prefix_cache_queries counter\n"
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0\n'
    )
    assert counter_totals(text) == {"prefix_cache_hits": 42.0, "prefix_cache_queries": 100.0}
    assert counter_totals(None) == {}


# ------------------------------------------------------------------------------ CLI
def test_bench_cli_end_to_end_against_an_emulator_process(tmp_path: Path) -> None:
    js, rows = tmp_path / "live.json", tmp_path / "live.csv"
    with emulator_process("--gpu", "A10G", "--speedup", "50") as url:
        p = fleetsched(
            "bench", "--target", url, "--rate", "2", "--duration", "10", "--prompt-tokens",
            "64", "--output-tokens", "8", "--summary-json", str(js), "--requests-out",
            str(rows), "-q",
        )  # fmt: skip
    assert p.returncode == 0, p.stderr
    s = json.loads(js.read_text())
    assert s["bench"]["time_scale"] == 50.0 and s["failed"] == 0
    assert s["completed"] == s["requests"] > 5
    assert len(read_records_csv(rows)) == s["requests"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bench", "--target", "http://127.0.0.1:1", "--rate", "1"], "--duration"),
        (["bench", "--target", "http://127.0.0.1:1"], "exactly one of"),
        (["bench", "--target", "http://127.0.0.1:1", "--rate", "1", "--duration", "1"],
         "cannot reach"),
        (["bench", "--target", "localhost:8000", "--rate", "1", "--duration", "1"], "http://"),
        (["emulate", "--gpu", "Z80"], "Z80"),
        (["emulate", "--max-model-len", "100000000"], "max-model-len"),
        (["fidelity", "--scenario", "nope.yaml", "--target", "http://127.0.0.1:1"], "nope.yaml"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line_and_exit_2(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from fleetsched.cli.app import main

    monkeypatch.setattr("sys.argv", ["fleetsched", *args])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert fragment in err and len(err.strip().splitlines()) == 1, err
