"""Active health checks, model discovery and load scraping, one task each per backend.

Off the request path, so they use aiohttp's client (one session for all). Every
``health.interval_s`` a backend gets ``GET health.path``: ``unhealthy_threshold`` failures in a
row take a healthy backend out, ``healthy_threshold`` successes bring it back (and, after
``ejection.min_ejection_s``, re-admit an ejected one); the first success after start admits
it at once, so the gateway serves while other backends are still down. A successful probe
also reads ``/v1/models`` unless the config names the backend's models. ``on_change(b,
state)`` is called after a change of ``b``'s state (``state`` True: health, ejection or
models) or load (False). With scraping on,
every ``scrape.interval_s`` ``GET scrape.path`` gives the backend's running and waiting
requests and KV use (:func:`~fleetsched.gateway.views.parse_load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from fleetsched.gateway.backends.ejection import may_readmit, readmit
from fleetsched.gateway.backends.registry import Backend
from fleetsched.gateway.config import EjectionConfig, HealthConfig, ScrapeConfig
from fleetsched.gateway.views import parse_load


class Prober:
    def __init__(
        self,
        health: HealthConfig,
        ejection: EjectionConfig,
        scrape: ScrapeConfig | None,
        on_change: Callable[[Backend, bool], None],
    ) -> None:
        self.health = health
        self.ejection = ejection
        self.scrape = scrape
        self.on_change = on_change
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[int, list[asyncio.Task[None]]] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                timeout=aiohttp.ClientTimeout(total=self.health.timeout_s),
            )
        return self._session

    def watch(self, b: Backend) -> None:
        tasks = [asyncio.create_task(self._probe_loop(b))]
        if self.scrape is not None:
            tasks.append(asyncio.create_task(self._scrape_loop(b, self.scrape)))
        self._tasks[b.index] = tasks

    def unwatch(self, b: Backend) -> None:
        for t in self._tasks.pop(b.index, []):
            t.cancel()

    async def close(self) -> None:
        tasks = [t for ts in self._tasks.values() for t in ts]
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---------------------------------------------------------------- probes
    async def _get(self, b: Backend, path: str, timeout_s: float) -> tuple[int, bytes]:
        async with self.session().get(
            b.url + path, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as r:
            return r.status, await r.read()

    async def probe(self, b: Backend) -> bool:
        """One health check (and model discovery); updates ``b``'s state."""
        ok = False
        models = set(b.cards)
        try:
            status, _ = await self._get(b, self.health.path, self.health.timeout_s)
            ok = status == 200
            if ok and b.cfg.models is None:
                status, body = await self._get(b, "/v1/models", self.health.timeout_s)
                ok = status == 200 and self._read_models(b, body)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            ok = False
        self._update(b, ok, set(b.cards) != models)
        return ok

    @staticmethod
    def _read_models(b: Backend, body: bytes) -> bool:
        import json

        doc: Any = json.loads(body)
        cards = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(cards, list):
            return False
        b.set_models([c for c in cards if isinstance(c, dict)])
        return True

    def _update(self, b: Backend, ok: bool, models_changed: bool = False) -> None:
        before = (b.healthy, b.ejected)
        first = not b.probed
        b.probed = True
        if ok:
            b.probe_failures = 0
            b.probe_successes += 1
            if not b.healthy and (first or b.probe_successes >= self.health.healthy_threshold):
                b.healthy = True
            if may_readmit(b, time.monotonic(), self.ejection, self.health):
                readmit(b)
        else:
            b.probe_successes = 0
            b.probe_failures += 1
            if b.healthy and b.probe_failures >= self.health.unhealthy_threshold:
                b.healthy = False
        if (b.healthy, b.ejected) != before or first or models_changed:
            self.on_change(b, True)

    async def _probe_loop(self, b: Backend) -> None:
        while not b.removed:
            await self.probe(b)
            # An ejected backend is probed more often, so it comes back soon after it may.
            interval = self.health.interval_s
            if b.ejected:
                interval = min(interval, max(self.ejection.min_ejection_s / 2, 0.05))
            await asyncio.sleep(interval)

    async def _scrape_loop(self, b: Backend, cfg: ScrapeConfig) -> None:
        while not b.removed:
            t = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                status, body = await self._get(b, cfg.path, cfg.timeout_s)
                if status == 200:
                    load = parse_load(body.decode("utf-8", "replace"), t, b.inflight)
                    if load is not None:
                        if load.num_gpu_blocks and not b.total_blocks:
                            b.total_blocks = load.num_gpu_blocks
                        b.load = load
                        self.on_change(b, False)
            await asyncio.sleep(max(cfg.interval_s - (time.monotonic() - t), 0.0))


__all__ = ["Prober"]
