"""The gateway's Prometheus metrics and its access log.

Counters and histograms are plain Python numbers updated on the request path (a dict
increment, a bisect): no locks, no label lookups through prometheus_client. A custom
collector turns them into metric families when ``/metrics`` is scraped, and
prometheus_client writes the exposition. Names (all ``fleetsched:gateway_*``):

====================================================  =========  ============================
metric                                                type       labels
====================================================  =========  ============================
``requests_total``                                    counter    tenant, model, status
``errors_total``                                      counter    tenant, kind
``ttft_seconds``, ``e2e_seconds``                     histogram  model (as the client saw them)
``backend_inflight``, ``backend_healthy``             gauge      backend
``backend_ejected``, ``backend_draining``             gauge      backend
``backend_running``, ``backend_waiting``,             gauge      backend (scraped; absent
``backend_kv_usage``                                             without scraping)
``decisions_total``                                   counter    policy, backend
``retries_total``                                     counter    backend, reason
``ejections_total``                                   counter    backend
``queue_depth``                                       gauge      tenant
``queue_wait_seconds``                                histogram  tenant
``rate_limited_total``                                counter    tenant, limit
``upstream_connections_total``                        counter    backend
====================================================  =========  ============================
"""

from __future__ import annotations

import io
import json
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from fleetsched.gateway.app import Gateway

P = "fleetsched:gateway_"

#: vLLM's TTFT buckets (seconds), so gateway and engine histograms line up.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
)
E2E_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Hist:
    """Counts per bucket (upper bounds ``buckets``, then +Inf), sum."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.buckets, v)] += 1
        self.sum += v

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for b, c in zip(self.buckets, self.counts, strict=False):
            acc += c
            out.append((repr(float(b)), float(acc)))
        acc += self.counts[-1]
        out.append(("+Inf", float(acc)))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


class Metrics:
    """Every counter of the gateway (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.ttft: dict[str, Hist] = {}
        self.e2e: dict[str, Hist] = {}
        self.decisions: dict[tuple[str, str], int] = {}
        self.retries: dict[tuple[str, str], int] = {}
        self.ejections: dict[str, int] = {}
        self.queue_wait: dict[str, Hist] = {}
        self.rate_limited: dict[tuple[str, str], int] = {}

    @staticmethod
    def inc(d: dict[Any, int], key: Any, n: int = 1) -> None:
        d[key] = d.get(key, 0) + n

    @staticmethod
    def hist(d: dict[str, Hist], key: str, buckets: tuple[float, ...]) -> Hist:
        h = d.get(key)
        if h is None:
            h = d[key] = Hist(buckets)
        return h


def _counter(name: str, doc: str, labels: list[str], d: dict[Any, int]) -> CounterMetricFamily:
    c = CounterMetricFamily(P + name, doc, labels=labels)
    for k, v in sorted(d.items()):
        c.add_metric(list(k) if isinstance(k, tuple) else [k], v)
    return c


def _hists(name: str, doc: str, label: str, d: dict[str, Hist]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(P + name, doc, labels=[label])
    for k, hist in sorted(d.items()):
        h.add_metric([k], hist.cumulative(), hist.sum)
    return h


class _Collector(Collector):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Any]:
        gw = self.gw
        m = gw.metrics
        yield _counter(
            "requests",
            "Requests answered, by tenant, model and HTTP status.",
            ["tenant", "model", "status"],
            m.requests,
        )
        yield _counter(
            "errors", "Requests that failed, by tenant and kind.", ["tenant", "kind"], m.errors
        )
        yield _hists("ttft_seconds", "Time to first token as the client saw it.", "model", m.ttft)
        yield _hists("e2e_seconds", "Request latency as the client saw it.", "model", m.e2e)
        backends = list(gw.registry)

        def gauge(name: str, doc: str, value: Callable[[Any], float | None]) -> GaugeMetricFamily:
            g = GaugeMetricFamily(P + name, doc, labels=["backend"])
            for b in backends:
                v = value(b)
                if v is not None:
                    g.add_metric([b.name], float(v))
            return g

        yield gauge(
            "backend_inflight",
            "Requests in flight to the backend (this process).",
            lambda b: b.inflight,
        )
        yield gauge("backend_healthy", "1 if active health checks pass.", lambda b: b.healthy)
        yield gauge(
            "backend_ejected", "1 if passive outlier detection took it out.", lambda b: b.ejected
        )
        yield gauge("backend_draining", "1 if it takes no new requests.", lambda b: b.draining)
        yield gauge(
            "backend_running",
            "Running requests, as last scraped.",
            lambda b: b.load.running if b.load else None,
        )
        yield gauge(
            "backend_waiting",
            "Waiting requests, as last scraped.",
            lambda b: b.load.waiting if b.load else None,
        )
        yield gauge(
            "backend_kv_usage",
            "KV-cache usage (0..1), as last scraped.",
            lambda b: b.load.kv if b.load else None,
        )
        yield gauge(
            "upstream_connections",
            "Connections opened to the backend so far.",
            lambda b: b.pool.opened,
        )
        yield _counter(
            "decisions",
            "Routing decisions, by policy and chosen backend.",
            ["policy", "backend"],
            m.decisions,
        )
        yield _counter(
            "retries",
            "Requests retried on another backend, by the backend that failed and why.",
            ["backend", "reason"],
            m.retries,
        )
        yield _counter("ejections", "Passive outlier ejections.", ["backend"], m.ejections)
        q = GaugeMetricFamily(
            P + "queue_depth", "Requests waiting in the central queue.", labels=["tenant"]
        )
        for t, n in sorted(gw.queue.by_tenant.items()):
            q.add_metric([t], n)
        yield q
        yield _hists(
            "queue_wait_seconds", "Time spent in the central queue.", "tenant", m.queue_wait
        )
        yield _counter(
            "rate_limited", "Requests refused by a rate limit.", ["tenant", "limit"], m.rate_limited
        )


def make_registry(gw: Gateway) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(gw))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


class AccessLog:
    """One JSON line per request, written through a buffer flushed every 0.2 s (not per line:
    a write per request would cost more than routing it)."""

    def __init__(self, target: str | None) -> None:
        self.out: TextIO | None = None
        self._own = False
        if target == "-":
            self.out = sys.stdout
        elif target:
            self.out = open(target, "a", buffering=1 << 16)  # noqa: SIM115 - closed in close()
            self._own = True
        self._buf = io.StringIO()
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode

    def __bool__(self) -> bool:
        return self.out is not None

    def write(self, rec: dict[str, Any]) -> None:
        self._buf.write(self._dumps(rec))
        self._buf.write("\n")

    def flush(self) -> None:
        if self.out is None:
            return
        text = self._buf.getvalue()
        if text:
            self._buf = io.StringIO()
            try:
                self.out.write(text)
                self.out.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.flush()
        if self._own and self.out is not None:
            self.out.close()


__all__ = ["AccessLog", "Hist", "Metrics", "exposition", "make_registry"]
