"""The gateway's own cost: CPU per proxied request, added latency, per-chunk latency, RSS.

Everything runs against trivial fast backends (``_fast_backend.py``: a raw asyncio protocol
answering at once) so what is measured is the gateway, with the same load sent to the
backends directly in the same run as the baseline:

1. **CPU per proxied request at saturation**: 64 keep-alive connections send requests
   back to back (closed loop, non-streaming, 256 token-id prompts) through ``fleetsched
   serve`` with ``round_robin`` and with ``cache_aware`` in front of 2 backends; the gateway
   process's CPU seconds (``/proc``) per request, and requests/s, against the same load sent
   to the backends directly. For comparison, the same measurement of a minimal aiohttp
   proxy (aiohttp server + aiohttp client on uvloop, no routing at all). Target <= 200 us.
   Each path is measured 3 times, the paths in turn; the best round is the figure (the other
   jobs on the shared cores inflate a round's CPU per request: cache misses, preemptions).
2. **Added latency at 200 req/s**: open-loop Poisson arrivals at 200 req/s, each request's
   latency on the client, through the gateway minus direct: p50 and p99 (targets 0.6 ms and
   3 ms), the best of 3 windows per path taken in turn (a burst of other jobs on the shared
   cores lands in one window).
3. **Added latency per streamed chunk**: streams of 50 chunks 5 ms apart, each stamped by the
   backend with its send time (CLOCK_MONOTONIC, shared by every process): receive - send per
   chunk, through the gateway against direct.
4. **RSS over a 100k-request soak** (``--quick``: 30k): the gateway's resident memory after
   10k requests and at the end.
5. **Several worker processes** (``--workers 2``, SO_REUSEPORT): requests/s and CPU per request
   at saturation, and the trade-off of per-process accounting: with ``cache_aware``, the share
   of requests of each of 16 shared prefixes that went to that prefix's usual backend
   (cache affinity), 1 worker against 2.

The load generator is a callback-driven asyncio protocol (no task per request) in this
process; the benchmark's processes run at a raised priority in their own sessions where
allowed (root). ``python benchmarks/bench_gateway.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httptools
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests._live import CLI, raise_priority  # noqa: E402

PROMPT = list(range(1000, 1256))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _read_port(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("listening on "):
            return line.split()[-1]
        if line.strip().isdigit():
            return f"http://127.0.0.1:{line.strip()}"
    raise RuntimeError(f"process exited: {p.stderr.read() if p.stderr else ''}")


@contextmanager
def process(args: list[str]) -> Any:
    p = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: raise_priority(10),
    )
    try:
        url = _read_port(p)
        yield url, p.pid
    finally:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def backend() -> Any:
    return process([sys.executable, str(HERE / "_fast_backend.py")])


def gateway(urls: list[str], router: str, *extra: str) -> Any:
    return process(
        [*CLI, "serve", "--backends", ",".join(urls), "--router", router, "--port", "0", *extra]
    )


AIOHTTP_PROXY = r"""
import sys, aiohttp, uvloop
from aiohttp import web
UP = sys.argv[1].split(",")
async def main():
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    n = [0]
    async def h(request):
        body = await request.read()
        n[0] += 1
        async with s.post(UP[n[0] % len(UP)] + request.path, data=body,
                          headers={"Content-Type": "application/json"}) as r:
            data = await r.read()
            return web.Response(body=data, status=r.status, content_type=r.content_type)
    app = web.Application()
    app.router.add_post("/v1/completions", h)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1], flush=True)
    import asyncio
    await asyncio.Event().wait()
uvloop.run(main())
"""


# ------------------------------------------------------------------------- load generator
class Conn(asyncio.Protocol):
    """One keep-alive client connection; ``on_done(conn)`` after each response."""

    def __init__(self, on_done: Callable[[Conn], None], on_chunk: Callable[[bytes], None] | None):
        self.p = httptools.HttpResponseParser(self)
        self.on_done = on_done
        self.on_chunk_cb = on_chunk
        self.t: asyncio.Transport | None = None
        self.sent = 0.0
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, d: bytes) -> None:
        self.p.feed_data(d)

    def on_message_begin(self) -> None:
        self.headers = {}

    def on_header(self, n: bytes, v: bytes) -> None:
        self.headers[n.lower()] = v

    def on_headers_complete(self) -> None:
        self.status = self.p.get_status_code()

    def on_body(self, b: bytes) -> None:
        if self.on_chunk_cb is not None:
            self.on_chunk_cb(b)

    def on_message_complete(self) -> None:
        self.on_done(self)

    def send(self, data: bytes) -> None:
        self.sent = time.perf_counter()
        assert self.t is not None
        self.t.write(data)


def request(body: dict[str, Any], host: str) -> bytes:
    b = json.dumps(body, separators=(",", ":")).encode()
    return (
        b"POST /v1/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (host.encode(), len(b))
    ) + b


def _hostport(url: str) -> tuple[str, int]:
    h, p = url.split("://", 1)[1].rsplit(":", 1)
    return h, int(p)


async def closed_loop(
    urls: list[str],
    n: int,
    conc: int,
    data: Callable[[int], bytes],
    on_resp: Callable[[int, Conn], None] | None = None,
) -> float:
    """``n`` requests over ``conc`` connections spread over ``urls``, back to back; wall s."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    state = {"next": 0, "done": 0, "bad": 0}
    conns = []

    def fire(c: Conn) -> None:
        i = state["next"]
        if i < n:
            state["next"] = i + 1
            c.idx = i  # type: ignore[attr-defined]
            c.send(data(i))

    def on_done(c: Conn) -> None:
        state["done"] += 1
        if c.status != 200:
            state["bad"] += 1
        if on_resp is not None:
            on_resp(c.idx, c)  # type: ignore[attr-defined]
        if state["done"] == n and not done.done():
            done.set_result(None)
        else:
            fire(c)

    for k in range(conc):
        h, p = _hostport(urls[k % len(urls)])
        _, c = await loop.create_connection(lambda: Conn(on_done, None), h, p)
        conns.append(c)
    t0 = time.perf_counter()
    for c in conns:
        fire(c)
    await done
    wall = time.perf_counter() - t0
    for c in conns:
        c.t.close()
    if state["bad"]:
        raise RuntimeError(f"{state['bad']} of {n} requests failed")
    return wall


async def open_loop(
    url: str, rate: float, duration: float, data: bytes, seed: int = 0
) -> np.ndarray:
    """Poisson arrivals at ``rate``; each request on an idle connection (or a new one).
    Returns per-request latencies (s)."""
    loop = asyncio.get_running_loop()
    h, p = _hostport(url)
    idle: list[Conn] = []
    lat: list[float] = []
    pending = [0]
    finished = loop.create_future()

    def on_done(c: Conn) -> None:
        lat.append(time.perf_counter() - c.sent)
        idle.append(c)
        pending[0] -= 1
        if pending[0] == 0 and sending_over[0] and not finished.done():
            finished.set_result(None)

    sending_over = [False]
    for _ in range(16):
        _, c = await loop.create_connection(lambda: Conn(on_done, None), h, p)
        idle.append(c)
    rng = random.Random(seed)
    t = time.perf_counter() + 0.1
    end = t + duration
    while t < end:
        t += rng.expovariate(rate)
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle:
            c = idle.pop()
        else:
            _, c = await loop.create_connection(lambda: Conn(on_done, None), h, p)
        pending[0] += 1
        c.send(data)
    sending_over[0] = True
    if pending[0]:
        await finished
    for c in idle:
        c.t.close()
    return np.asarray(lat[200:])  # the first second warms the connections up


async def chunk_latency(url: str, streams: int, chunks: int, gap_ms: float) -> np.ndarray:
    """Receive - send time of every chunk of ``streams`` paced streams, 8 at a time."""
    loop = asyncio.get_running_loop()
    h, p = _hostport(url)
    lags: list[float] = []

    def on_chunk(b: bytes) -> None:
        now = time.perf_counter()
        i = b.find(b'"t":')
        while i >= 0:
            j = b.find(b"}", i)
            lags.append(now - float(b[i + 4 : j]))
            i = b.find(b'"t":', j)

    body = request(
        {"prompt": PROMPT[:16], "max_tokens": chunks, "stream": True, "gap_ms": gap_ms}, f"{h}:{p}"
    )
    sem = asyncio.Semaphore(8)

    async def one() -> None:
        async with sem:
            fut = loop.create_future()
            _, c = await loop.create_connection(
                lambda: Conn(lambda c: fut.set_result(None), on_chunk), h, p
            )
            c.send(body)
            await fut
            c.t.close()

    await asyncio.gather(*(one() for _ in range(streams)))
    return np.asarray(lags)


# ------------------------------------------------------------------------- the figures
def body_for(host: str, prompt: list[int] = PROMPT) -> bytes:
    return request({"model": "m", "prompt": prompt, "max_tokens": 2}, host)


def saturation(urls: list[str], quick: bool) -> None:
    n = 6000 if quick else 20000
    rounds = 3
    print(
        f"\n1. CPU per proxied request at saturation: {n:,} non-streaming requests, 64 "
        f"connections, 256-token prompts, 2 trivial backends; best of {rounds} rounds taken in "
        f"turn (median in brackets); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(f"{'path':<34} {'req/s':>8} {'gateway us CPU/req':>22} {'client+backends us/req':>23}")
    bpids = BACKEND_PIDS

    def measure(target: list[str], pid: int | None) -> tuple[float, float, float]:
        data = body_for(target[0].split("://")[1])
        c0 = cpu_s(pid) if pid else 0.0
        b0 = sum(cpu_s(p) for p in bpids)
        k0 = time.process_time()
        wall = asyncio.run(closed_loop(target, n, 64, lambda i: data))
        c1 = cpu_s(pid) if pid else 0.0
        b1 = sum(cpu_s(p) for p in bpids)
        k1 = time.process_time()
        return n / wall, 1e6 * (c1 - c0) / n, 1e6 * ((b1 - b0) + (k1 - k0)) / n

    with (
        gateway(urls, "round_robin") as (rr, rp),
        gateway(urls, "cache_aware") as (ca, cp),
        process([sys.executable, "-c", AIOHTTP_PROXY, ",".join(urls)]) as (ah, ap),
    ):
        paths = {
            "direct to the backends": (urls, None),
            "fleetsched serve, round_robin": ([rr], rp),
            "fleetsched serve, cache_aware": ([ca], cp),
            "minimal aiohttp proxy (baseline)": ([ah], ap),
        }
        for target, _ in paths.values():  # warm up: connections, caches, the JIT-less code
            data = body_for(target[0].split("://")[1])
            asyncio.run(closed_loop(target, 1000, 64, lambda i, d=data: d))
        got: dict[str, list[tuple[float, float, float]]] = {k: [] for k in paths}
        for _ in range(rounds):
            for name, (target, pid) in paths.items():
                got[name].append(measure(target, pid))
    keys = {"fleetsched serve, round_robin": "cpu_round_robin",
            "fleetsched serve, cache_aware": "cpu_cache_aware",
            "minimal aiohttp proxy (baseline)": "cpu_aiohttp"}  # fmt: skip
    for name, rows in got.items():
        rps = max(r[0] for r in rows)
        other = min(r[2] for r in rows)
        if paths[name][1] is None:
            print(f"{name:<34} {rps:>8,.0f} {'-':>22} {other:>23,.0f}")
            continue
        cpus = sorted(r[1] for r in rows)
        RESULTS[keys[name]] = cpus[0]
        cell = f"{cpus[0]:,.0f} [{cpus[len(cpus) // 2]:,.0f}]"
        print(f"{name:<34} {rps:>8,.0f} {cell:>22} {other:>23,.0f}")
    print(
        f"=> fleetsched serve costs {RESULTS['cpu_round_robin']:.0f} us (round_robin) / "
        f"{RESULTS['cpu_cache_aware']:.0f} us (cache_aware) of CPU per proxied request "
        f"(target <= 200), {RESULTS['cpu_round_robin'] / RESULTS['cpu_aiohttp']:.2f}x a "
        "minimal aiohttp proxy that does no routing"
    )


def _best_windows(
    paths: dict[str, str], windows: int, measure: Callable[[str], np.ndarray]
) -> dict[str, tuple[float, float]]:
    """Per path, the best (smallest) p50 and p99 in ms over ``windows`` windows taken in
    turn: a burst of the other jobs on the shared cores lands in one window, not the figure."""
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
    for _ in range(windows):
        for name, url in paths.items():
            lat = measure(url)
            p50, p99 = np.percentile(lat, [50, 99]) * 1000
            got[name].append((float(p50), float(p99)))
    return {k: (min(v[0] for v in w), min(v[1] for v in w)) for k, w in got.items()}


def latency(urls: list[str], quick: bool) -> None:
    dur = 2.0 if quick else 4.0
    print(
        f"\n2. Added latency at 200 req/s (open loop, non-streaming; best of 3 windows of "
        f"{dur:g} s per path, taken in turn)"
    )
    data = body_for(urls[0].split("://")[1])
    with gateway(urls, "round_robin") as (rr, _), gateway(urls, "cache_aware") as (ca, _):
        best = _best_windows(
            {"direct": urls[0], "round_robin": rr, "cache_aware": ca},
            3,
            lambda u: asyncio.run(open_loop(u, 200, dur, data)),
        )
    print(f"{'path':<26} {'p50 ms':>8} {'p99 ms':>8}")
    d50, d99 = best["direct"]
    print(f"{'direct':<26} {d50:>8.3f} {d99:>8.3f}")
    for router in ("round_robin", "cache_aware"):
        v50, v99 = best[router]
        RESULTS[f"lat_{router}"] = (v50 - d50, v99 - d99)
        print(
            f"{'via gateway, ' + router:<26} {v50:>8.3f} {v99:>8.3f}   added p50 "
            f"{v50 - d50:+.3f} ms, p99 {v99 - d99:+.3f} ms (targets 0.6 / 3)"
        )


def chunks(urls: list[str], quick: bool) -> None:
    streams = 16 if quick else 32
    print(
        f"\n3. Added latency per streamed chunk ({streams} streams x 50 chunks, 5 ms apart, 8 at "
        "a time; best of 3 windows per path, taken in turn)"
    )
    cpu: dict[str, list[float]] = {"round_robin": [], "cache_aware": []}
    with gateway(urls, "round_robin") as (rr, rp), gateway(urls, "cache_aware") as (ca, cp):
        pids = {rr: ("round_robin", rp), ca: ("cache_aware", cp)}

        def measure(u: str) -> np.ndarray:
            name, pid = pids.get(u, ("", 0))
            c0 = cpu_s(pid) if pid else 0.0
            lags = asyncio.run(chunk_latency(u, streams, 50, 5.0))
            if pid:
                cpu[name].append(1e6 * (cpu_s(pid) - c0) / max(len(lags), 1))
            return lags

        best = _best_windows({"direct": urls[0], "round_robin": rr, "cache_aware": ca}, 3, measure)
    print(f"{'path':<26} {'p50 ms':>8} {'p99 ms':>8} {'gateway us CPU/chunk':>21}")
    d50, d99 = best["direct"]
    print(f"{'direct':<26} {d50:>8.3f} {d99:>8.3f} {'-':>21}")
    for router in ("round_robin", "cache_aware"):
        v50, v99 = best[router]
        print(
            f"{'via gateway, ' + router:<26} {v50:>8.3f} {v99:>8.3f} "
            f"{min(cpu[router]):>21.1f}   added p50 {v50 - d50:+.3f} ms, "
            f"p99 {v99 - d99:+.3f} ms"
        )


def soak(urls: list[str], quick: bool) -> None:
    total = 30_000 if quick else 100_000
    print(f"\n4. RSS over a {total:,}-request soak (round_robin, 64 connections)")
    with gateway(urls, "round_robin") as (gurl, gpid):
        data = body_for(gurl.split("://")[1])
        done = 0
        marks = []
        step = 10_000
        while done < total:
            asyncio.run(closed_loop([gurl], step, 64, lambda i: data))
            done += step
            marks.append((done, rss_mib(gpid)))
    print("  ".join(f"{k // 1000}k: {v:.1f} MiB" for k, v in marks))
    growth = marks[-1][1] - marks[0][1]
    print(
        f"=> RSS after 10k requests {marks[0][1]:.1f} MiB, after {total // 1000}k "
        f"{marks[-1][1]:.1f} MiB ({growth:+.1f} MiB)"
    )


def workers(urls: list[str], quick: bool) -> None:
    n = 6000 if quick else 20000
    print(
        f"\n5. Worker processes (SO_REUSEPORT): saturation ({n:,} requests, 64 connections) "
        "and cache affinity (cache_aware, 16 prefixes)"
    )
    print(f"{'workers':>7} {'req/s':>8} {'gateway us CPU/req':>19} {'prefix affinity':>16}")
    prefixes = [[7000 + 97 * k + j for j in range(256)] for k in range(16)]
    for w in (1, 2):
        with gateway(urls, "cache_aware", "--workers", str(w)) as (gurl, gpid):
            host = gurl.split("://")[1]
            data = body_for(host)
            asyncio.run(closed_loop([gurl], 1000, 64, lambda i, d=data: d))
            pids = [gpid, *children(gpid)]
            c0 = sum(cpu_s(p) for p in pids)
            wall = asyncio.run(closed_loop([gurl], n, 64, lambda i, d=data: d))
            cpu = sum(cpu_s(p) for p in pids) - c0
            seen: dict[int, Counter[bytes]] = defaultdict(Counter)
            bodies = [body_for(host, [*p, 1, 2, 3, 4]) for p in prefixes]

            def on_resp(i: int, c: Conn, seen: dict[int, Counter[bytes]] = seen) -> None:
                seen[i % 16][c.headers.get(b"x-fleetsched-backend", b"")] += 1

            asyncio.run(
                closed_loop([gurl], 3200, 64, lambda i, b=bodies: b[i % 16], on_resp)  # type: ignore[misc]
            )
            affinity = sum(max(c.values()) for c in seen.values()) / sum(
                sum(c.values()) for c in seen.values()
            )
        print(f"{w:>7} {n / wall:>8,.0f} {1e6 * cpu / n:>19,.0f} {affinity:>16.1%}")


RESULTS: dict[str, Any] = {}
BACKEND_PIDS: list[int] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    ap.add_argument("--only", default="", help="comma-separated parts to run (1-5)")
    a = ap.parse_args()
    quick = a.quick or bool(os.environ.get("CI"))
    parts = {int(x) for x in a.only.split(",") if x} or {1, 2, 3, 4, 5}
    raise_priority(10)
    with backend() as (u1, p1), backend() as (u2, p2):
        BACKEND_PIDS[:] = [p1, p2]
        urls = [u1, u2]
        for k, fn in ((1, saturation), (2, latency), (3, chunks), (4, soak), (5, workers)):
            if k in parts:
                fn(urls, quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
