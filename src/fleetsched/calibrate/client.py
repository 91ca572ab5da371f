"""A small aiohttp client that times a streaming engine from the client side.

Every request is one streamed completion with the prompt given as token ids, so the engine
counts exactly the tokens we chose; every token arrives as its own server-sent event, and its
arrival time (``time.perf_counter``) is recorded. llama-server closes streamed connections
after each response, so no connection is reused (``force_close``).

llama.cpp's native ``/completion`` endpoint is used for llama-server: it takes ``id_slot`` (to
pin a request to a slot) and reports ``timings.cache_n`` (prompt tokens reused).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from fleetsched.errors import FleetschedError, InputError


@dataclass(slots=True)
class StreamResult:
    """What the client saw of one streamed completion (times in seconds, perf_counter)."""

    send_s: float
    token_s: list[float] = field(default_factory=list)
    done_s: float = float("nan")
    status: int = 0
    error: str = ""
    cache_n: int = -1  # prompt tokens the server reused (timings.cache_n), -1 if unknown
    prompt_n: int = -1  # prompt tokens it computed
    id_slot: int = -1


def check_loopback(url: str) -> None:
    """Refuse any target but this machine: calibration sends load."""
    host = URL(url).host or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(f"--target must be a loopback address (127.0.0.1), not {host!r}")


def session(timeout_s: float = 600.0) -> aiohttp.ClientSession:
    """A client session that opens a new connection per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with http.get(url) as r:
            if r.status != 200:
                raise FleetschedError(f"GET {url}: HTTP {r.status}")
            return await r.json(content_type=None)
    except aiohttp.ClientError as e:
        raise FleetschedError(f"GET {url}: {e}") from None


async def stream_completion(
    http: aiohttp.ClientSession,
    url: str,
    prompt: Sequence[int],
    n_predict: int,
    *,
    id_slot: int = -1,
    cache_prompt: bool = True,
) -> StreamResult:
    """POST one streamed ``/completion`` of ``n_predict`` tokens (``ignore_eos``) to
    llama-server at ``url`` and record when each token arrives."""
    body: dict[str, Any] = {
        "prompt": list(prompt),
        "n_predict": n_predict,
        "ignore_eos": True,
        "stream": True,
        "cache_prompt": cache_prompt,
    }
    if id_slot >= 0:
        body["id_slot"] = id_slot

    def on_event(ev: dict[str, Any], now: float, res: StreamResult) -> bool:
        if ev.get("stop"):
            t = ev.get("timings") or {}
            res.cache_n = int(t.get("cache_n", -1))
            res.prompt_n = int(t.get("prompt_n", -1))
            res.id_slot = int(ev.get("id_slot", -1))
            return True
        res.token_s.append(now)
        return False

    return await post_stream(http, url + "/completion", body, on_event)


async def post_stream(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    on_event: Callable[[dict[str, Any], float, StreamResult], bool],
) -> StreamResult:
    """POST ``body`` to ``url`` and hand each server-sent ``data:`` event (parsed, with its
    arrival time) to ``on_event``, which records what it means and says whether it was the
    last; a refusal or a transport error is recorded, not raised."""
    res = StreamResult(send_s=time.perf_counter())
    try:
        async with http.post(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        ) as r:
            res.status = r.status
            if r.status != 200:
                res.error = (await r.text())[:300]
                res.done_s = time.perf_counter()
                return res
            async for line in r.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                now = time.perf_counter()  # arrival, before parsing
                if on_event(json.loads(line[6:]), now, res):
                    break
    except (TimeoutError, aiohttp.ClientError) as e:
        res.error = f"{type(e).__name__}: {e}"
    res.done_s = time.perf_counter()
    return res


async def detect_engine(http: aiohttp.ClientSession, url: str) -> str:
    """``llamacpp`` if the server answers llama.cpp's ``/props``, ``vllm`` if ``/version``."""
    try:
        async with http.get(url + "/props") as r:
            if r.status == 200 and "total_slots" in await r.json(content_type=None):
                return "llamacpp"
        async with http.get(url + "/version") as r:
            if r.status == 200:
                return "vllm"
    except aiohttp.ClientError as e:
        raise FleetschedError(f"cannot reach {url}: {e}") from None
    raise FleetschedError(f"{url} is neither a llama.cpp server (/props) nor vLLM (/version)")
