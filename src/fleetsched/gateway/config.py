"""The gateway's configuration file (YAML), as pydantic models.

Every section has working defaults; the smallest file is a list of backends. Errors name
``file:line: field.path`` like scenario files (:func:`load_gateway_config`). See
``docs/gateway.md`` for the format with an example.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from fleetsched.core.config import PolicyRef, SLOClass, _Model, parse_yaml_model, read_text
from fleetsched.errors import InputError

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """How a key is stored in the config file: ``sha256:`` and its hex digest."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _check_hashed(keys: list[str]) -> list[str]:
    for k in keys:
        if not _SHA256.match(k):
            raise ValueError(
                "keys are stored hashed: 'sha256:' and 64 lowercase hex digits "
                "(printf %s KEY | sha256sum), not the key itself"
            )
    return keys


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an ``http://host:port`` backend URL, or ValueError."""
    u = urlsplit(url)
    if u.scheme != "http":
        raise ValueError(f"backend URL must be http://host:port, got {url!r}")
    if not u.hostname:
        raise ValueError(f"backend URL has no host: {url!r}")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ValueError(f"backend URL must be http://host:port with no path, got {url!r}")
    try:
        port = u.port or 80
    except ValueError:
        raise ValueError(f"bad port in backend URL {url!r}") from None
    return u.hostname, port


class BackendConfig(_Model):
    url: str
    """``http://host:port`` of an OpenAI-compatible engine (vLLM, SGLang, llama.cpp, emulator)."""
    name: str | None = None
    """Name in metrics, logs and the admin API (default: ``host:port``)."""
    models: list[str] | None = None
    """Models it serves (default: what its ``/v1/models`` says, asked at every health check)."""
    max_inflight: int | None = Field(None, ge=1)
    """Saturated at this many requests in flight from this gateway (overrides ``saturation``)."""
    role: str = "mixed"
    """Role shown to routers (``mixed``; ``prefill``/``decode`` need engine-side handover)."""
    api_key_env: str | None = None
    """Environment variable holding the backend's own API key (sent as ``Authorization``)."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        split_url(v)
        return v.rstrip("/")

    @property
    def key(self) -> str:
        return self.name or self.url.split("://", 1)[1]


class HealthConfig(_Model):
    """Active health checks: every backend is probed every ``interval_s``."""

    interval_s: float = Field(2.0, gt=0)
    """Seconds between probes of one backend."""
    timeout_s: float = Field(1.0, gt=0)
    """A probe that takes longer fails."""
    path: str = "/health"
    """Probe path (vLLM, SGLang and llama.cpp all answer ``/health``)."""
    unhealthy_threshold: int = Field(2, ge=1)
    """Consecutive failed probes that take a healthy backend out."""
    healthy_threshold: int = Field(1, ge=1)
    """Consecutive successful probes that bring an unhealthy or ejected backend back."""


class EjectionConfig(_Model):
    """Passive outlier ejection, from the outcomes of real requests."""

    consecutive_failures: int = Field(3, ge=1)
    """Consecutive failures (connect error, reset, timeout, 5xx) that eject a backend."""
    min_ejection_s: float = Field(2.0, ge=0)
    """An ejected backend stays out at least this long, then needs ``healthy_threshold`` probes."""


class TimeoutConfig(_Model):
    connect_s: float = Field(2.0, gt=0)
    """Opening a connection to a backend."""
    first_token_s: float = Field(300.0, gt=0)
    """From sending a request to the first byte of the answer's body (prefill and queueing)."""
    idle_s: float = Field(60.0, gt=0)
    """Longest gap between two chunks of a stream."""
    keepalive_s: float | None = Field(None, gt=0)
    """Send an SSE comment (``: keepalive``) every this many seconds while a stream waits for its
    first token (None: off). The response's headers go out with the first one."""
    client_idle_s: float = Field(75.0, gt=0)
    """Close a client's keep-alive connection idle this long."""


class RetryConfig(_Model):
    max_retries: int = Field(2, ge=0)
    """Further backends tried while no byte has reached the client."""
    on_status: list[int] = Field(default_factory=lambda: [502, 503, 504])
    """Upstream statuses that are retried (connection failures and timeouts always are)."""


class ScrapeConfig(_Model):
    """Scraping each backend's Prometheus ``/metrics`` (vLLM, SGLang, llama.cpp names)."""

    interval_s: float = Field(0.05, gt=0)
    """Seconds between scrapes of one backend."""
    timeout_s: float = Field(1.0, gt=0)
    path: str = "/metrics"
    stale_s: float | None = Field(None, gt=0)
    """Signals older than this are not used (default: 4 intervals, at least 1 s)."""


class SaturationConfig(_Model):
    """When a backend counts as saturated (requests then wait in the central queue while every
    eligible backend is). Each bound is off when None; all are off by default."""

    max_inflight: int | None = Field(None, ge=1)
    """Requests in flight from this gateway to one backend."""
    max_waiting: int | None = Field(None, ge=0)
    """The backend's own waiting queue, as scraped (vLLM ``num_requests_waiting``)."""
    max_kv: float | None = Field(None, gt=0, le=1)
    """The backend's KV-cache use, as scraped (0..1)."""


class QueueConfig(_Model):
    """The central queue: requests waiting for a non-saturated backend."""

    ordering: PolicyRef = PolicyRef(name="fcfs")
    """An engine ordering policy (fcfs, priority, vtc, wfq, edf), the simulator's own object."""
    max_size: int = Field(1024, ge=0)
    """Requests waiting at most (then 429)."""
    timeout_s: float = Field(30.0, gt=0)
    """Longest wait (then 503)."""


class TenantConfig(_Model):
    keys: list[str] = Field(default_factory=list)
    """API keys of the tenant, hashed: ``sha256:<hex digest>``."""
    weight: float = Field(1.0, gt=0)
    """Share in fair queuing (vtc, wfq)."""
    priority: int = 0
    """Priority of its requests (larger = more important) for the ``priority`` ordering."""
    slo_class: str = "default"
    """SLO class of its requests (for ``edf``)."""
    requests_per_s: float | None = Field(None, gt=0)
    """Request-rate limit (token bucket), None: none."""
    request_burst: float | None = Field(None, ge=1)
    """Bucket size of the request limit (default: one second's worth, at least 1)."""
    tokens_per_s: float | None = Field(None, gt=0)
    """Token-rate limit: prompt tokens charged on arrival, output tokens as they are reported."""
    token_burst: float | None = Field(None, ge=1)
    """Bucket size of the token limit (default: ten seconds' worth)."""

    _hashed = field_validator("keys")(classmethod(lambda cls, v: _check_hashed(v)))


class PrefixConfig(_Model):
    block_tokens: int = Field(16, ge=1)
    """Tokens per hashed block of a prompt (the engines' KV block size)."""
    index_blocks: int = Field(200_000, ge=1)
    """Blocks remembered per backend by the gateway's index of what it sent (LRU), when the
    backend's KV capacity is unknown."""


class GatewayConfig(_Model):
    backends: list[BackendConfig] = Field(default_factory=list)
    """The engines behind the gateway; only these are ever contacted."""
    router: PolicyRef = PolicyRef(name="round_robin")
    """A routing policy from the registry, the simulator's own object."""
    seed: int = 0
    """Seed of the router's random choices."""
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    """Worker processes sharing the port (SO_REUSEPORT), each with its own accounting."""
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request body (413 above)."""
    health: HealthConfig = HealthConfig()
    ejection: EjectionConfig = EjectionConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    retries: RetryConfig = RetryConfig()
    scrape: ScrapeConfig | None = None
    """Scrape backends' /metrics for load signals (None: off; the gateway's own in-flight
    accounting is always on)."""
    saturation: SaturationConfig = SaturationConfig()
    queue: QueueConfig = QueueConfig()
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    """Tenants and their hashed API keys. With any key configured, every request needs one
    (``Authorization: Bearer KEY``); without, the tenant is the request's ``user`` field."""
    admin_keys: list[str] = Field(default_factory=list)
    """Hashed keys of the admin API (``/admin/*``); none: the admin API is off."""
    slo_classes: dict[str, SLOClass] = Field(default_factory=dict)
    """SLO classes for the ``edf`` ordering."""
    quality: dict[str, dict[str, float]] | None = None
    """Model routers (``quality_first``, ``route_balance``, ``green_bandit``): task class ->
    model -> probability of a correct answer, as in a scenario (None: the default table,
    ``workload/tasks.py``). A request names its class in an ``X-Task-Class`` header and may
    give an ``X-Difficulty`` (0..1)."""
    prefix: PrefixConfig = PrefixConfig()
    access_log: str | None = None
    """Where one JSON line per request goes: a file path, ``-`` for stdout, None for none."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long streams in flight may take to finish."""
    backend_header: bool = True
    """Name the backend that answered in an ``x-fleetsched-backend`` response header."""

    _admin = field_validator("admin_keys")(classmethod(lambda cls, v: _check_hashed(v)))

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        for task, row in (self.quality or {}).items():
            for model, q in row.items():
                if not 0 <= q <= 1:
                    raise ValueError(f"quality.{task}.{model}: expected a probability, got {q}")
        seen: set[str] = set()
        for b in self.backends:
            if b.key in seen:
                raise ValueError(f"two backends are named {b.key!r}")
            seen.add(b.key)
        owner: dict[str, str] = {}
        for name, t in self.tenants.items():
            for k in t.keys:
                if k in owner:
                    raise ValueError(f"tenants {owner[k]!r} and {name!r} share a key")
                owner[k] = name
        return self


def policy_problems(cfg: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """The router and ordering policy checked against their registries."""
    from fleetsched.policies.engine import ORDERING
    from fleetsched.policies.params import check_params
    from fleetsched.policies.routing import ROUTERS

    out: list[tuple[tuple[str | int, ...], str]] = []
    for loc, ref, registry, what, allowed in (
        (("router",), cfg.router, ROUTERS, "router", None),
        (("queue", "ordering"), cfg.queue.ordering, ORDERING, "ordering policy", QUEUE_ORDERINGS),
    ):
        if ref.name not in registry or (allowed is not None and ref.name not in allowed):
            known = ", ".join(sorted(allowed or registry))
            out.append(((*loc, "name"), f"unknown {what} {ref.name!r} (known: {known})"))
            continue
        _, problems = check_params(registry[ref.name], ref.params)
        out += [((*loc, *p_loc), msg) for p_loc, msg in problems]
    if cfg.router.name in NOT_LIVE:
        out.append((("router", "name"), f"router {cfg.router.name!r}: {NOT_LIVE[cfg.router.name]}"))
    return out


#: Orderings of the central queue: those that order requests that have not started.
QUEUE_ORDERINGS = ("fcfs", "priority", "vtc", "wfq", "edf", "sjf")

#: Routers that cannot run in front of unmodified engines, and why.
NOT_LIVE: dict[str, str] = {
    "pd_disagg": "prefill/decode disaggregation hands the KV cache from a prefill engine to a "
    "decode engine, which needs engine support (vLLM's KV connector, SGLang's disaggregation "
    "mode, Dynamo's NIXL transfer); a gateway alone cannot move it",
}


def parse_gateway_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parse and check gateway config YAML; errors name ``source:line: field.path``."""
    import yaml

    from fleetsched.core.config import format_problem

    cfg = parse_yaml_model(text, source, GatewayConfig, "a gateway config")
    problems = policy_problems(cfg)
    if problems:
        loc, msg = problems[0]
        raise InputError(format_problem(loc, msg, source, yaml.compose(text), len(problems)))
    return cfg


def load_gateway_config(path: str | Path) -> GatewayConfig:
    return parse_gateway_config(read_text(path, "gateway config"), str(path))


def check_config(cfg: GatewayConfig) -> GatewayConfig:
    """Check a config built in code (policy names and parameters)."""
    from fleetsched.core.config import format_problem

    problems = policy_problems(cfg)
    if problems:
        loc, msg = problems[0]
        raise InputError(format_problem(loc, msg, None, None, len(problems)))
    return cfg


def config_from(data: dict[str, Any]) -> GatewayConfig:
    """A checked config from a mapping (as the YAML file would give)."""
    from pydantic import ValidationError

    from fleetsched.core.config import format_problem

    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise InputError(
            format_problem(tuple(first["loc"]), msg, None, None, e.error_count())
        ) from None
    return check_config(cfg)


__all__ = [
    "NOT_LIVE",
    "QUEUE_ORDERINGS",
    "BackendConfig",
    "GatewayConfig",
    "check_config",
    "config_from",
    "hash_key",
    "load_gateway_config",
    "parse_gateway_config",
    "split_url",
]
