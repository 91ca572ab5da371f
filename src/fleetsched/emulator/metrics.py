"""Prometheus metrics of the emulator, under vLLM's names (``vllm:...``).

Engine state is read when ``/metrics`` is scraped (a custom collector), request histograms
are observed as tokens and requests end. Times are the engine's **modelled** seconds (wall
seconds times ``--speedup``), so a dashboard reads the same at any speedup. Names, label sets
(``model_name``, ``engine``) and buckets follow vLLM v1's ``PrometheusStatLogger``; the
deprecated ``vllm:gpu_cache_usage_perc`` is exported beside ``vllm:kv_cache_usage_perc``
for older scrapers. ``fleetsched:*`` metrics describe the emulator itself (step timing).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetsched.emulator.engine import EngineLoop, Stream

_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
_LATENESS_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)

disable_created_metrics()  # as vLLM does: no ``*_created`` series


def build_1_2_5_buckets(max_value: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_value`` (vLLM's token-count buckets)."""
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(v)
        exp += 1


class _EngineCollector(Collector):
    def __init__(self, metrics: EmulatorMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        loop = m.loop
        inst = loop.inst
        inst.sync(loop.now())
        st = inst.stats
        labels, values = ["model_name", "engine"], [m.model_name, "0"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, value)
            return c

        view = inst.view(loop.now())
        usage = inst.kv.used / inst.kv.num_blocks
        yield gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.",
            view.running,
        )  # fmt: skip
        yield gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            view.queue_len,
        )  # fmt: skip
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage)
        yield gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. "
            "DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
            usage,
        )
        yield counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            st.prompt_tokens,
        )
        yield counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            st.cached_tokens,
        )
        yield counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            st.preemptions,
        )  # fmt: skip
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", m.prompt_tokens)
        yield counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", loop.stats.tokens
        )
        ok = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*labels, "finished_reason"],
        )
        for reason in ("stop", "length", "abort"):
            ok.add_metric([*values, reason], m.finished.get(reason, 0))
        yield ok
        ls = loop.stats
        yield gauge(
            "fleetsched:speedup", "Engine seconds per wall second of this emulator.", loop.speedup
        )
        yield counter("fleetsched:engine_steps", "Engine steps run.", ls.steps)
        yield counter(
            "fleetsched:step_slips",
            "Steps that ended more than the allowed lag after their modelled end (re-anchored).",
            ls.slips,
        )
        yield counter(
            "fleetsched:step_lateness_seconds",
            "Wall seconds step-end timers fired after their modelled end, summed.",
            ls.lateness_sum_s,
        )


class EmulatorMetrics:
    """The emulator's registry; ``observe_*`` are the engine loop's token and end hooks."""

    def __init__(self, loop: EngineLoop, model_name: str, max_model_len: int) -> None:
        self.loop = loop
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        self.prompt_tokens = 0
        self.finished: dict[str, int] = {}
        reg = self.registry
        labels = ["model_name", "engine"]

        def hist(name: str, doc: str, buckets: tuple[float, ...] | list[int]) -> Histogram:
            h = Histogram(name, doc, labelnames=labels, buckets=buckets, registry=reg)
            return h.labels(model_name, "0")

        tok = build_1_2_5_buckets(max_model_len)
        self.ttft = hist(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            _TTFT_BUCKETS,
        )  # fmt: skip
        self.itl = hist(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            _ITL_BUCKETS,
        )  # fmt: skip
        self.tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            _ITL_BUCKETS,
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            _LATENCY_BUCKETS,
        )  # fmt: skip
        self.queue = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            _LATENCY_BUCKETS,
        )
        self.inference = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            _LATENCY_BUCKETS,
        )
        self.prefill = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            _LATENCY_BUCKETS,
        )
        self.decode = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            _LATENCY_BUCKETS,
        )
        self.req_prompt = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tok
        )
        self.req_gen = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tok
        )
        self.lateness = Histogram(
            "fleetsched:step_lateness_wall_seconds",
            "Wall seconds each step-end timer fired after its step's modelled end.",
            buckets=_LATENESS_BUCKETS,
            registry=reg,
        )
        reg.register(_EngineCollector(self))
        loop.on_token = self.observe_token
        loop.on_end = self.observe_end
        loop.on_step = self.lateness.observe

    def observe_token(self, s: Stream, now: float, first: bool) -> None:
        if first:
            rec = s.record
            self.ttft.observe(now - rec.arrival_s)
            self.prompt_tokens += s.prompt_tokens
        else:
            self.itl.observe(now - s.last_token_t)

    def observe_end(self, s: Stream, now: float) -> None:
        rec = s.record
        if math.isnan(now):
            if s.aborted:
                self.finished["abort"] = self.finished.get("abort", 0) + 1
            return
        self.finished[s.finish_reason] = self.finished.get(s.finish_reason, 0) + 1
        self.e2e.observe(now - rec.arrival_s)
        self.queue.observe(rec.first_scheduled_s - rec.arrival_s)
        self.inference.observe(now - rec.first_scheduled_s)
        self.prefill.observe(rec.first_token_s - rec.first_scheduled_s)
        self.decode.observe(now - rec.first_token_s)
        self.req_prompt.observe(rec.prompt_tokens)
        self.req_gen.observe(s.produced)
        if s.produced > 1:
            self.tpot.observe((now - rec.first_token_s) / (s.produced - 1))
