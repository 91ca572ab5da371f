"""What the routing policy sees: :class:`~fleetsched.core.views.InstanceView` per backend, built
from the gateway's own accounting, its prefix index of what it sent, and scraped engine load.

* **In-flight accounting** (exact, this process): requests and prompt tokens dispatched to a
  backend and not yet finished (:class:`~fleetsched.gateway.backends.registry.Registry`).
* **Prefix index** (:class:`PrefixIndex`): the chained block hashes of every prompt sent to a
  backend, in an LRU of the backend's KV capacity (its ``num_gpu_blocks`` when the backend
  says, else ``prefix.index_blocks``). ``cached_prefix_tokens`` is the longest prefix of the
  request's blocks found there: what the engine's prefix cache likely holds, as SGLang's and
  llm-d's approximate indexes estimate it.
* **Scraped load** (:class:`Load`, optional): running and waiting requests and KV-cache use
  from each backend's ``/metrics``, under vLLM's, SGLang's or llama.cpp's names
  (:data:`SIGNALS`). Like the simulator's stale views (``view_refresh_s``), a view combines
  the last scrape with the exact accounting since: outstanding requests are the scrape's
  running + waiting plus what this gateway dispatched since the scrape minus what finished,
  and never fewer than this gateway's own in-flight count; without a (fresh) scrape they are
  the own in-flight count, all shown as running.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetsched.core.views import InstanceView

if TYPE_CHECKING:
    from fleetsched.gateway.backends.registry import Backend

#: Scraped signal -> Prometheus sample names, in the order they are tried (vLLM v1, vLLM's
#: deprecated name, SGLang, llama.cpp).
SIGNALS: dict[str, tuple[str, ...]] = {
    "running": (
        "vllm:num_requests_running",
        "sglang:num_running_reqs",
        "llamacpp:requests_processing",
    ),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred"),
    "kv": (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
        "llamacpp:kv_cache_usage_ratio",
    ),
    "preemptions": ("vllm:num_preemptions_total", "vllm:num_preemptions"),
}
_WANTED_SET = frozenset(
    {n for names in SIGNALS.values() for n in names} | {"vllm:cache_config_info"}
)
_WANTED = tuple(_WANTED_SET)
_GPU_BLOCKS = re.compile(r'num_gpu_blocks="(\d+)"')


@dataclass(slots=True)
class Load:
    """One backend's load as scraped at ``t`` (gateway clock), with this gateway's own
    in-flight count at that moment."""

    t: float
    running: float
    waiting: float
    kv: float
    preemptions: float
    inflight_at: int
    num_gpu_blocks: int = 0


def parse_load(text: str, t: float, inflight: int) -> Load | None:
    """The load signals in a Prometheus exposition (None if it has none of them).

    A line scan: only the samples of the wanted metrics are read (``name{labels} value
    [timestamp]``), so a large exposition (vLLM's histograms) costs one pass over its lines:
    0.1 ms for the emulator's 25 kB, a third of the time with prometheus_client's parser."""
    values: dict[str, float] = {}
    series: dict[str, int] = {}
    blocks = 0
    for ln in text.splitlines():
        if not ln.startswith(_WANTED):
            continue
        b = ln.find("{")
        if b >= 0:
            name = ln[:b]
            e = ln.rfind("}")
            labels, rest = ln[b + 1 : e], ln[e + 1 :].split()
        else:
            name, _, tail = ln.partition(" ")
            labels, rest = "", tail.split()
        if name not in _WANTED_SET or not rest:
            continue
        if name == "vllm:cache_config_info":
            m = _GPU_BLOCKS.search(labels)
            if m is not None:
                blocks = int(m.group(1))
            continue
        try:
            v = float(rest[0])
        except ValueError:
            continue
        if not math.isfinite(v):  # NaN or Inf: no reading
            continue
        values[name] = values.get(name, 0.0) + v
        series[name] = series.get(name, 0) + 1
    got: dict[str, float] = {}
    for key, names in SIGNALS.items():
        for n in names:
            if n in values:
                # One series per engine of a data-parallel server: requests add up, the KV
                # use is the engines' mean.
                got[key] = values[n] / series[n] if key == "kv" else values[n]
                break
    if not got:
        return None
    kv = got.get("kv", 0.0)
    return Load(
        t=t,
        running=got.get("running", 0.0),
        waiting=got.get("waiting", 0.0),
        kv=min(max(kv, 0.0), 1.0),
        preemptions=got.get("preemptions", 0.0),
        inflight_at=inflight,
        num_gpu_blocks=blocks,
    )


class PrefixIndex:
    """Chained block hashes of the prompts sent to one backend, least recently used first."""

    __slots__ = ("_d", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 1)
        self._d: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are in the index."""
        d = self._d
        n = 0
        for h in hashes:
            if h not in d:
                break
            n += 1
        return n

    def insert(self, hashes: Sequence[int]) -> None:
        d = self._d
        move = d.move_to_end
        for h in hashes:
            if h in d:
                move(h)
            else:
                d[h] = None
        extra = len(d) - self.capacity
        for _ in range(extra if extra > 0 else 0):
            d.popitem(last=False)


def backend_view(
    b: Backend,
    model: str,
    now: float,
    stale_s: float,
    cached_blocks: int = 0,
    block_tokens: int = 16,
) -> InstanceView:
    """The view of backend ``b`` (see the module docstring). Its ``model`` is the one the
    request asks for, else the first model the backend serves (what a model router reads)."""
    own = b.inflight
    load = b.load
    total = b.total_blocks
    if load is not None and now - load.t <= stale_s:
        outstanding = int(load.running + load.waiting) + own - load.inflight_at
        if outstanding < own:
            outstanding = own
        running = min(int(load.running), outstanding)
        kv = load.kv
    else:
        outstanding = running = own
        kv = 0.0
    used = int(kv * total)
    return InstanceView(
        index=b.index,
        name=b.name,
        model=model or next(iter(b.cards), ""),
        gpu=b.gpu,
        role=b.cfg.role,
        healthy=b.eligible,
        queue_len=outstanding - running,
        running=running,
        kv_utilization=kv,
        free_blocks=total - used,
        total_blocks=total,
        inflight_tokens=b.inflight_tokens,
        cached_prefix_tokens=cached_blocks * block_tokens,
        # a cumulative counter: the last scraped value, however old
        preemptions=int(load.preemptions) if load is not None else 0,
    )


def request_prefix_blocks(b: Backend, hashes: Sequence[int]) -> int:
    return b.prefix.match(hashes) if b.prefix is not None and hashes else 0


__all__ = ["SIGNALS", "Load", "PrefixIndex", "backend_view", "parse_load", "request_prefix_blocks"]
