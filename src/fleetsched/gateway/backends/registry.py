"""The backends the gateway may contact, and its own accounting of what it sent to each.

A :class:`Backend` gets an ``index`` when it is added and keeps it for life (routers keep
per-index state; a removed backend's index is never reused). Its in-flight count and prompt
tokens are taken when a request is dispatched to it and given back when that request ends,
on every path (:meth:`Registry.dispatch` / :meth:`Registry.release`); nothing resets them on
a timer. State: *healthy* (the active health checks say so), *ejected* (passive outlier
detection took it out until probes bring it back), *draining* (no new requests; streams in
flight finish; removed when the last one ends).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fleetsched.gateway.config import BackendConfig, split_url
from fleetsched.gateway.upstream import Pool
from fleetsched.gateway.views import Load, PrefixIndex


@dataclass(slots=True, eq=False)
class Backend:
    index: int
    cfg: BackendConfig
    name: str
    host: str
    port: int
    pool: Pool
    #: Model id -> its card from the backend's ``/v1/models`` (or a minimal one when configured).
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Whether the model list is known (configured, or read once from ``/v1/models``).
    models_known: bool = False
    healthy: bool = False
    probed: bool = False  # at least one probe finished
    ejected: bool = False
    ejected_at: float = 0.0
    draining: bool = False
    removed: bool = False
    inflight: int = 0
    inflight_tokens: int = 0
    consecutive_failures: int = 0
    probe_successes: int = 0
    probe_failures: int = 0
    ejections: int = 0
    #: Scraped engine signals (None until the first scrape, or without scraping).
    load: Load | None = None
    gpu: str = ""
    #: KV-cache blocks of the engine, when it says (model card or ``cache_config_info``).
    total_blocks: int = 0
    prefix: PrefixIndex | None = None
    #: Preformatted request-line suffix and headers for each path: ``POST <path> ...``.
    heads: dict[str, bytes] = field(default_factory=dict)
    requests: int = 0
    failures: int = 0

    @property
    def eligible(self) -> bool:
        return self.healthy and not self.ejected and not self.draining

    @property
    def url(self) -> str:
        return self.cfg.url

    def serves(self, model: str | None) -> bool:
        return model is None or model in self.cards

    def head(self, method: str, path: str) -> bytes:
        """``METHOD path HTTP/1.1`` and the fixed headers of a request to this backend."""
        key = method + path
        h = self.heads.get(key)
        if h is None:
            auth = b""
            env = self.cfg.api_key_env
            if env and os.environ.get(env):
                auth = b"authorization: Bearer " + os.environ[env].encode() + b"\r\n"
            h = f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n".encode() + auth
            self.heads[key] = h
        return h

    def set_models(self, cards: list[dict[str, Any]]) -> None:
        self.cards = {c["id"]: c for c in cards if isinstance(c.get("id"), str)}
        self.models_known = True
        for c in cards:
            fs = c.get("fleetsched")
            if isinstance(fs, dict):
                if isinstance(fs.get("num_gpu_blocks"), int):
                    self.total_blocks = fs["num_gpu_blocks"]
                if isinstance(fs.get("gpu"), str):
                    self.gpu = fs["gpu"]


class Registry:
    """Backends by name and by index."""

    def __init__(self, index_blocks: int = 200_000, max_idle: int = 512) -> None:
        self._by_name: dict[str, Backend] = {}
        self._by_index: list[Backend | None] = []
        self.index_blocks = index_blocks
        self.max_idle = max_idle
        #: Bumped whenever the set of backends or their state changes (views are cached on it).
        self.version = 0
        self._eligible: dict[tuple[str | None, int], list[Backend]] = {}

    def __iter__(self) -> Iterator[Backend]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    def by_index(self, i: int) -> Backend | None:
        return self._by_index[i] if 0 <= i < len(self._by_index) else None

    def add(self, cfg: BackendConfig) -> Backend:
        name = cfg.key
        if name in self._by_name:
            raise ValueError(f"a backend is already named {name!r}")
        host, port = split_url(cfg.url)
        b = Backend(
            index=len(self._by_index),
            cfg=cfg,
            name=name,
            host=host,
            port=port,
            pool=Pool(host, port, self.max_idle),
        )
        if cfg.models is not None:
            b.set_models(
                [{"id": m, "object": "model", "owned_by": "fleetsched"} for m in cfg.models]
            )
        self._by_index.append(b)
        self._by_name[name] = b
        self.version += 1
        return b

    def drain(self, b: Backend, remove: bool = False) -> None:
        """No new requests to ``b``; with ``remove``, forget it once its last request ends."""
        b.draining = True
        b.removed = b.removed or remove
        self.version += 1
        self._maybe_forget(b)

    def _maybe_forget(self, b: Backend) -> None:
        if b.removed and b.inflight == 0 and self._by_name.get(b.name) is b:
            del self._by_name[b.name]
            b.pool.close()
            self.version += 1

    def eligible(self, model: str | None) -> list[Backend]:
        """Healthy, not ejected or draining, serving ``model`` (cached until a change)."""
        key = (model, self.version)
        got = self._eligible.get(key)
        if got is None:
            if len(self._eligible) > 64:
                self._eligible.clear()
            got = self._eligible[key] = [
                b for b in self._by_name.values() if b.eligible and b.serves(model)
            ]
        return got

    def knows(self, model: str) -> bool:
        """Whether any backend serves ``model`` (or may: its model list is unknown yet)."""
        return any(
            (not b.models_known) or model in b.cards
            for b in self._by_name.values()
            if not b.removed
        )

    def cards(self) -> list[dict[str, Any]]:
        """The union of the backends' model cards (the first backend's card of each model)."""
        out: dict[str, dict[str, Any]] = {}
        for b in self._by_name.values():
            if b.removed:
                continue
            for mid, card in b.cards.items():
                out.setdefault(mid, card)
        return list(out.values())

    # ---------------------------------------------------------------- accounting
    def dispatch(self, b: Backend, prompt_tokens: int) -> None:
        b.inflight += 1
        b.inflight_tokens += prompt_tokens
        b.requests += 1

    def release(self, b: Backend, prompt_tokens: int) -> None:
        b.inflight -= 1
        b.inflight_tokens -= prompt_tokens
        if b.removed:
            self._maybe_forget(b)

    def prefix_index(self, b: Backend) -> PrefixIndex:
        if b.prefix is None:
            b.prefix = PrefixIndex(b.total_blocks or self.index_blocks)
        return b.prefix

    def close(self) -> None:
        for b in self._by_name.values():
            b.pool.close()


__all__ = ["Backend", "Registry"]
