"""Running the gateway: listen, serve, reload on SIGHUP, drain on SIGTERM; several workers.

:func:`serve` runs one gateway in the current event loop until SIGTERM or SIGINT, then
drains: it stops accepting connections, ``/ready`` fails, idle keep-alive connections close,
requests in flight (streams included) run to their end -- up to ``drain_timeout_s`` -- and
it exits. SIGHUP re-reads the config file's backend list (:meth:`Gateway.reload`) without
touching requests in flight.

:func:`run` with ``workers > 1`` starts that many worker processes that each bind the same
port with ``SO_REUSEPORT`` (the kernel spreads new connections over them) and run their own
gateway: their own accounting and router state, the same scraped signals (each worker
scrapes every backend). The parent forwards SIGTERM, SIGINT and SIGHUP to them and exits
when they have. See ``docs/gateway.md`` for what per-process accounting costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from fleetsched.gateway.app import Gateway
from fleetsched.gateway.config import GatewayConfig
from fleetsched.gateway.http import ClientConnection


async def serve(
    cfg: GatewayConfig,
    *,
    config_path: str | None = None,
    ready: Callable[[Gateway, int], None] | None = None,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve ``cfg`` until SIGTERM/SIGINT (or ``stop``); returns 0 when every request in
    flight finished, 1 if the drain timed out."""
    loop = asyncio.get_running_loop()
    gw = Gateway(cfg, config_path=config_path)
    await gw.first_probes(min(cfg.health.timeout_s, 2.0))
    gw.start_background()

    def factory() -> ClientConnection:
        return ClientConnection(gw, gw.conns)

    server = await loop.create_server(
        factory, cfg.host, cfg.port, reuse_port=reuse_port or None, backlog=2048
    )
    port = server.sockets[0].getsockname()[1]
    # What exists now (modules, config, the router) lives as long as the process: keep it out
    # of the cyclic collector's scans, so a full collection stays short (no latency spikes).
    gc.collect()
    gc.freeze()
    stop = stop or asyncio.Event()
    installed = []
    for sig, cb in (
        (signal.SIGTERM, stop.set),
        (signal.SIGINT, stop.set),
        (signal.SIGHUP, lambda: _reload(gw)),
    ):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, cb)
            installed.append(sig)
    if ready is not None:
        ready(gw, port)
    try:
        await stop.wait()
    finally:
        server.close()  # no new connections
        gw.begin_drain()
        clean = await gw.wait_idle(cfg.drain_timeout_s)
        for c in list(gw.conns):
            c.close()
        await gw.close()
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0 if clean else 1


def _reload(gw: Gateway) -> None:
    try:
        result = gw.reload()
        print(f"reloaded: added {result['added']}, removed {result['removed']}", flush=True)
    except Exception as e:
        print(f"reload failed: {e}", file=sys.stderr, flush=True)


def _describe(gw: Gateway, host: str, port: int) -> None:
    healthy = [b.name for b in gw.registry if b.eligible]
    down = [b.name for b in gw.registry if not b.eligible]
    print(
        f"fleetsched gateway: router {gw.policy}, {len(healthy)} of {len(gw.registry)} "
        f"backends healthy" + (f" (down: {', '.join(down)})" if down else ""),
        flush=True,
    )
    print(f"listening on http://{host}:{port}", flush=True)


def _worker(cfg_json: str, config_path: str | None, port: int, k: int, conn: Any) -> None:
    from fleetsched.api.aio import run_async

    cfg = GatewayConfig.model_validate_json(cfg_json).model_copy(update={"port": port})

    def ready(gw: Gateway, bound: int) -> None:
        conn.send(("ready", k, bound))
        conn.close()

    sys.exit(run_async(serve(cfg, config_path=config_path, ready=ready, reuse_port=True)))


def run(cfg: GatewayConfig, config_path: str | None = None) -> int:
    """Serve ``cfg`` in this process, or in ``cfg.workers`` worker processes."""
    from fleetsched.api.aio import run_async

    if cfg.workers == 1:

        def ready(gw: Gateway, port: int) -> None:
            _describe(gw, cfg.host, port)

        return run_async(serve(cfg, config_path=config_path, ready=ready))
    return _run_workers(cfg, config_path)


def _run_workers(cfg: GatewayConfig, config_path: str | None) -> int:
    # Reserve the port (bound, not listening: it gets no connections) so that port 0 means one
    # port for every worker.
    holder = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((cfg.host, cfg.port))
    port = holder.getsockname()[1]
    # fork where there is one: the workers start with the modules imported (spawn re-imports
    # them, seconds on a busy machine); nothing runs yet that a fork could break (no loop,
    # no threads)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs, pipes = [], []
    for k in range(cfg.workers):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker, args=(cfg.model_dump_json(), config_path, port, k, child), daemon=False
        )
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    forwarded = {"sig": None}

    def forward(sig: int, _frame: Any) -> None:
        forwarded["sig"] = sig
        for p in procs:
            if p.pid is not None and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    ok = 0
    for pipe in pipes:
        with contextlib.suppress(EOFError, OSError):
            if pipe.poll(60) and pipe.recv()[0] == "ready":
                ok += 1
    if ok == cfg.workers:
        print(
            f"fleetsched gateway: router {cfg.router.name}, {cfg.workers} worker processes "
            f"(SO_REUSEPORT), {len(cfg.backends)} backends",
            flush=True,
        )
        print(f"listening on http://{cfg.host}:{port}", flush=True)
    else:
        forward(signal.SIGTERM, None)
    codes = []
    for p in procs:
        p.join()
        codes.append(p.exitcode or 0)
    holder.close()
    return 0 if ok == cfg.workers and not any(codes) else 1


__all__ = ["run", "serve"]
