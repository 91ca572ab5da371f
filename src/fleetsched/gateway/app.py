"""The gateway: routes, request handling, routing decisions and accounting.

:class:`Gateway` is the application behind :class:`~fleetsched.gateway.http.ClientConnection`:

* ``POST /v1/completions``, ``POST /v1/chat/completions``: authenticate (401), read the
  routing fields (400), check the model (404), the tenant's rate limits (429), then
  :func:`~fleetsched.gateway.relay.forward`. ``POST /tokenize`` and ``/detokenize`` (vLLM's)
  go to any healthy backend of the model.
* ``GET /v1/models`` (the union of the backends' model cards), ``GET /health`` (alive),
  ``GET /ready`` (a healthy backend, not draining), ``GET /metrics``.
* ``/admin/*`` with an admin key: list, add, remove and drain backends, reload the config.

Routing: the eligible backends (healthy, not ejected or draining, serving the model) that
are not saturated go to the router as :class:`~fleetsched.core.views.InstanceView` s
(:mod:`fleetsched.gateway.views`); if every one is saturated the request waits in the central
queue and is routed when released. A dispatch is counted before the request is sent and
released on every path (:meth:`Gateway.release`); the router gets ``route`` (dispatched),
``on_first_token`` and ``on_finish`` exactly as the simulator sends them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from fleetsched.api.errors import APIError, bad_request
from fleetsched.core.hashing import block_hashes
from fleetsched.core.request import Request
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.gateway.backends.ejection import record_failure, record_success
from fleetsched.gateway.backends.health import Prober
from fleetsched.gateway.backends.registry import Backend, Registry
from fleetsched.gateway.config import BackendConfig, GatewayConfig
from fleetsched.gateway.http import JSON, ClientConnection, HTTPRequest, close_idle
from fleetsched.gateway.metrics import (
    E2E_BUCKETS,
    TTFT_BUCKETS,
    WAIT_BUCKETS,
    AccessLog,
    Metrics,
    exposition,
    make_registry,
)
from fleetsched.gateway.relay import FORWARD_HEADERS, forward, keepalive_tick, sse_error
from fleetsched.gateway.request import routing_fields
from fleetsched.gateway.tenants.keys import KeyRing
from fleetsched.gateway.tenants.limits import TenantLimits
from fleetsched.gateway.tenants.queue import CentralQueue, TenantService, Waiting
from fleetsched.gateway.views import backend_view
from fleetsched.policies.engine import ORDERING, make
from fleetsched.policies.routing import make_router
from fleetsched.workload.tasks import DEFAULT_QUALITY

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_GENERATE = frozenset(("/v1/completions", "/v1/chat/completions"))
#: Distinct tenant labels in metrics before the rest are counted as "other".
MAX_TENANT_LABELS = 100


def _json(obj: Any) -> bytes:
    return _DUMPS(obj).encode()


def _difficulty(raw: bytes | None) -> float | None:
    """The ``X-Difficulty`` header as a number in [0, 1] (400 otherwise; None if absent)."""
    if raw is None:
        return None
    try:
        d = float(raw)
    except ValueError:
        d = -1.0
    if not 0 <= d <= 1:
        raise bad_request("the X-Difficulty header must be a number in [0, 1]", "x-difficulty")
    return d


@dataclass(slots=True, eq=False)
class Call:
    """One generation request on its way through the gateway."""

    id: int
    conn: ClientConnection
    path: str
    body: bytes
    headers: bytes  # forwarded request headers, preformatted
    t0: float  # perf_counter when the request's headers were complete
    arrival: float  # monotonic clock
    tenant: str
    model: str | None
    stream: bool
    prompt_tokens: int
    rv: RequestView
    waiting: Waiting | None = None
    limits: TenantLimits | None = None
    extra_headers: bytes = b""
    committed: bool = False  # response headers sent to the client
    data_sent: bool = False  # a chunk of an upstream body sent to the client
    done: bool = False
    status: int = 0
    failure: str = ""
    backend: str = ""
    retries: int = 0
    t_token: float = 0.0  # perf_counter of the first chunk carrying a token
    events: int = 0  # SSE events relayed that carried a token
    usage_tokens: int | None = None
    keepalive: asyncio.TimerHandle | None = None
    queue_wait_s: float = 0.0
    max_tokens: int | None = None

    def request_bytes(self, b: Backend) -> bytes:
        return (
            b.head("POST", self.path)
            + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(self.body)
            + self.headers
            + b"\r\n"
            + self.body
        )


class Gateway:
    max_body_bytes: int

    def __init__(self, cfg: GatewayConfig, *, config_path: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.max_body_bytes = cfg.max_body_bytes
        self.loop = asyncio.get_event_loop()
        self.registry = Registry(cfg.prefix.index_blocks)
        self.router = make_router(
            cfg.router.name,
            cfg.router.params,
            cfg.seed,
            {"quality": cfg.quality} if cfg.quality is not None else None,
        )
        self.policy = cfg.router.name
        self.quality = cfg.quality if cfg.quality is not None else DEFAULT_QUALITY
        self.needs_views = bool(getattr(self.router, "needs_views", True))
        self.needs_prefix = bool(getattr(self.router, "needs_prefix", False))
        self._first_token_hook = getattr(self.router, "on_first_token", None)
        self.block_tokens = cfg.prefix.block_tokens
        self.retry_statuses = frozenset(cfg.retries.on_status)
        self.metrics = Metrics()
        self.log = AccessLog(cfg.access_log)
        self.tenant_keys = KeyRing({k: name for name, t in cfg.tenants.items() for k in t.keys})
        self.admin_keys = KeyRing({k: "admin" for k in cfg.admin_keys})
        now = time.monotonic()
        self.limits = {
            name: TenantLimits(
                t.requests_per_s, t.request_burst, t.tokens_per_s, t.token_burst, now
            )
            for name, t in cfg.tenants.items()
            if t.requests_per_s is not None or t.tokens_per_s is not None
        }
        self.service = TenantService()
        weights = {name: t.weight for name, t in cfg.tenants.items()}
        ordering = cfg.queue.ordering
        context = {
            "tenant_weights": weights,
            "slo_classes": dict(cfg.slo_classes),
            "seed": cfg.seed,
        }
        make(ORDERING, "ordering policy", ordering.name, ordering.params, context)  # checks now
        self.queue = CentralQueue(
            partial(make, ORDERING, "ordering policy", ordering.name, ordering.params, context),
            self.service,
            cfg.queue.max_size,
            cfg.queue.timeout_s,
        )
        self.prober = Prober(cfg.health, cfg.ejection, cfg.scrape, self._backend_changed)
        sc = cfg.scrape
        self.stale_s = (sc.stale_s or max(4 * sc.interval_s, 1.0)) if sc else 0.0
        self.prom = make_registry(self)
        self.conns: set[ClientConnection] = set()
        self.draining = False
        self.active = 0  # generation requests in progress
        self._idle = asyncio.Event()
        self._idle.set()
        self._ids = 0
        self._tenant_labels: set[str] = set(cfg.tenants) | {"default"}
        self._static_views: dict[tuple[Any, ...], list[InstanceView]] = {}
        self._pumping = False
        sat = cfg.saturation
        #: Whether any saturation bound is set (else nothing is ever saturated).
        self._bounded = (
            sat.max_inflight is not None
            or sat.max_waiting is not None
            or sat.max_kv is not None
            or any(bc.max_inflight is not None for bc in cfg.backends)
        )
        self._flusher: asyncio.TimerHandle | None = None
        self._ticks = 0
        self._models_at = -1
        self._models_known: set[str] = set()
        self._routes: dict[tuple[str, str], Callable[[HTTPRequest, ClientConnection], Any]] = {
            ("POST", "/v1/completions"): partial(self._generate, chat=False),
            ("POST", "/v1/chat/completions"): partial(self._generate, chat=True),
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/ready"): self._ready,
            ("GET", "/metrics"): self._metrics,
            ("POST", "/tokenize"): self._aux,
            ("POST", "/detokenize"): self._aux,
        }
        for bc in cfg.backends:
            self.registry.add(bc)

    # ================================================================ lifecycle
    def start_background(self) -> None:
        for b in self.registry:
            self.prober.watch(b)
        self._tick()

    async def first_probes(self, timeout_s: float) -> None:
        """One round of health checks (at most ``timeout_s``) before serving: backends that
        answer serve the first requests; the others keep being probed."""
        backends = list(self.registry)
        if backends:
            await asyncio.wait(
                [asyncio.ensure_future(self.prober.probe(b)) for b in backends], timeout=timeout_s
            )

    def _tick(self) -> None:
        """Housekeeping every 0.2 s: the access log's buffer, idle client connections."""
        self.log.flush()
        self._ticks += 1
        if self._ticks % 10 == 0:
            close_idle(self.conns, self.cfg.timeouts.client_idle_s)
        self._flusher = self.loop.call_later(0.2, self._tick)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.prober.close()
        self.registry.close()
        self.log.close()

    def begin_drain(self) -> None:
        """Stop taking new work: ``/ready`` fails, idle keep-alive connections close, busy ones
        close after their response."""
        self.draining = True
        for c in list(self.conns):
            c.close_when_idle()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no generation request is in progress (True), or ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    # ================================================================ routes
    def handle(self, req: HTTPRequest, conn: ClientConnection) -> Coroutine[Any, Any, None] | None:
        if self.draining:
            conn.close_after = True
        route = self._routes.get((req.method, req.path))
        if route is None:
            if req.path.startswith("/admin/") or req.path == "/admin":
                return self._guard(self._admin(req, conn), conn)
            if any(p == req.path for _, p in self._routes):
                allowed = ", ".join(m for m, p in self._routes if p == req.path)
                raise APIError(
                    405, f"method {req.method} not allowed on {req.path} (allowed: {allowed})"
                )
            raise APIError(404, f"no route {req.method} {req.path}")
        if req.path in _GENERATE:
            try:
                return route(req, conn)
            except APIError as e:  # refused before routing: counted and logged all the same
                self._refused(req, e)
                raise
        out = route(req, conn)
        return None if out is None else self._guard(out, conn)

    async def _guard(self, coro: Coroutine[Any, Any, None], conn: ClientConnection) -> None:
        """Run an endpoint's coroutine; its APIError (or a bug's 500) becomes the answer."""
        try:
            await coro
        except APIError as e:
            conn.send_error(e)
        except asyncio.CancelledError:
            raise
        except Exception:
            import logging

            logging.getLogger("fleetsched.gateway").exception("internal error")
            conn.send_error(APIError(500, "internal error in the gateway"))

    def _refused(self, req: HTTPRequest, e: APIError) -> None:
        kind = e.code if isinstance(e.code, str) else f"http_{e.status}"
        Metrics.inc(self.metrics.requests, ("unknown", "", str(e.status)))
        Metrics.inc(self.metrics.errors, ("unknown", kind))
        if self.log:
            self.log.write(
                {
                    "ts": round(time.time(), 3),
                    "path": req.path,
                    "status": e.status,
                    "error": kind,
                    "e2e_ms": round((time.perf_counter() - req.t0) * 1000, 3),
                }
            )

    def _health(self, req: HTTPRequest, conn: ClientConnection) -> None:
        conn.send_json(200, b'{"status":"ok"}')

    def _ready(self, req: HTTPRequest, conn: ClientConnection) -> None:
        healthy = sum(1 for b in self.registry if b.eligible)
        if self.draining:
            conn.send_json(503, _json({"status": "draining", "healthy_backends": healthy}))
        elif healthy == 0:
            conn.send_json(503, _json({"status": "no healthy backend", "healthy_backends": 0}))
        else:
            conn.send_json(200, _json({"status": "ready", "healthy_backends": healthy}))

    def _models(self, req: HTTPRequest, conn: ClientConnection) -> None:
        conn.send_json(200, _json({"object": "list", "data": self.registry.cards()}))

    def _metrics(self, req: HTTPRequest, conn: ClientConnection) -> None:
        conn.send(
            200,
            b"content-type: text/plain; version=0.0.4; charset=utf-8\r\n",
            exposition(self.prom),
        )

    # ================================================================ generation
    def _authenticate(self, req: HTTPRequest) -> str | None:
        if not self.tenant_keys:
            return None
        return self.tenant_keys.authenticate(req.headers.get(b"authorization", b""))

    def _generate(
        self, req: HTTPRequest, conn: ClientConnection, chat: bool
    ) -> Coroutine[Any, Any, None]:
        keyed = self._authenticate(req)
        f = routing_fields(req.body, chat)
        if (
            f.model is not None
            and f.model not in self._known_models()
            and not self.registry.knows(f.model)
        ):
            raise APIError(
                404, f"The model `{f.model}` does not exist.", "model", "model_not_found"
            )
        tenant = keyed or f.user or "default"
        tcfg = self.cfg.tenants.get(tenant)
        now = time.monotonic()
        limits = self.limits.get(tenant)
        if limits is not None:
            try:
                limits.admit(tenant, f.prompt_tokens, now)
            except APIError as e:
                Metrics.inc(
                    self.metrics.rate_limited,
                    (self._label(tenant), "tokens" if "tokens/s" in e.message else "requests"),
                )
                raise
        try:
            hashes = block_hashes(f.token_ids, self.block_tokens) if f.token_ids else ()
        except TypeError:
            raise bad_request("'prompt' must be a list of integers (token ids)", "prompt") from None
        self._ids += 1
        priority = (tcfg.priority if tcfg is not None else 0) - f.priority
        slo = tcfg.slo_class if tcfg is not None else "default"
        session = req.headers.get(b"x-session-id")
        task = req.headers.get(b"x-task-class")
        task_class = task.decode("latin-1") if task else None
        if task_class is not None and task_class not in self.quality:
            known = ", ".join(sorted(self.quality))
            raise bad_request(
                f"unknown task class {task_class!r} (the quality table has: {known})",
                "x-task-class",
            )
        difficulty = _difficulty(req.headers.get(b"x-difficulty"))
        rv = RequestView(
            id=self._ids,
            prompt_tokens=f.prompt_tokens,
            block_hashes=hashes,
            hash_block_tokens=self.block_tokens,
            tenant=tenant,
            priority=priority,
            session_id=session.decode("latin-1") if session else None,
            slo_class=slo,
            model=f.model,
            deadline_s=None,
            task_class=task_class,
            difficulty=difficulty,
            arrival_s=now,  # the gateway's monotonic clock (cache_aware's timed eviction)
        )
        hdrs = req.headers
        fwd = b"".join(n + b": " + hdrs[n] + b"\r\n" for n in FORWARD_HEADERS if n in hdrs)
        call = Call(
            id=self._ids,
            conn=conn,
            path=req.path,
            body=req.body,
            headers=fwd,
            t0=req.t0,
            arrival=now,
            tenant=tenant,
            model=f.model,
            stream=f.stream,
            prompt_tokens=f.prompt_tokens,
            rv=rv,
            limits=limits,
            max_tokens=f.max_tokens,
        )
        return self._run(call)

    async def _run(self, call: Call) -> None:
        self.active += 1
        self._idle.clear()
        ka = self.cfg.timeouts.keepalive_s
        if call.stream and ka is not None:
            call.keepalive = self.loop.call_later(ka, keepalive_tick, self, call)
        try:
            await forward(self, call)
        except APIError as e:
            call.failure = call.failure or (
                e.code if isinstance(e.code, str) else f"http_{e.status}"
            )
            self._answer_error(call, e)
        except asyncio.CancelledError:
            call.failure = "client_disconnect"
            call.status = 499
        except Exception as e:  # a bug: answer 500 rather than hang the client
            import logging

            logging.getLogger("fleetsched.gateway").exception("internal error")
            call.failure = f"internal:{type(e).__name__}"
            self._answer_error(call, APIError(500, "internal error in the gateway"))
        finally:
            self._finish(call)

    def _answer_error(self, call: Call, e: APIError) -> None:
        conn = call.conn
        if call.committed:
            if call.status == 0:
                call.status = 200
            conn.end_stream(sse_error(e.status, e.message))
        else:
            call.committed = True
            call.status = e.status
            conn.send_error(e)

    def _finish(self, call: Call) -> None:
        call.done = True
        if call.keepalive is not None:
            call.keepalive.cancel()
        if call.status == 0:
            call.status = 200 if call.committed else 0
        now = time.perf_counter()
        m = self.metrics
        tenant = self._label(call.tenant)
        # models no backend serves are one label: a client cannot grow the label set
        model = call.model or ""
        if model and model not in self._known_models():
            model = "other"
        Metrics.inc(m.requests, (tenant, model, str(call.status)))
        if call.failure:
            Metrics.inc(m.errors, (tenant, call.failure))
        ok = call.status == 200 and not call.failure
        if ok:
            t_first = call.t_token if call.t_token else now
            Metrics.hist(m.ttft, model, TTFT_BUCKETS).observe(t_first - call.t0)
            Metrics.hist(m.e2e, model, E2E_BUCKETS).observe(now - call.t0)
        tokens = call.usage_tokens
        if tokens is None and call.stream:
            tokens = call.events
        if call.limits is not None and tokens:
            call.limits.charge(tokens, time.monotonic())
        if not call.stream and tokens:
            self.service.add_output(call.tenant, tokens)
        self.active -= 1
        if self.active == 0:
            self._idle.set()
        if self.log:
            self.log.write(
                {
                    "ts": round(time.time(), 3),
                    "id": call.id,
                    "path": call.path,
                    "tenant": call.tenant,
                    "model": call.model,
                    "stream": call.stream,
                    "backend": call.backend or None,
                    "policy": self.policy,
                    "status": call.status,
                    "error": call.failure or None,
                    "retries": call.retries,
                    "queue_ms": round(call.queue_wait_s * 1000, 3),
                    "ttft_ms": round(((call.t_token or now) - call.t0) * 1000, 3) if ok else None,
                    "e2e_ms": round((now - call.t0) * 1000, 3),
                    "prompt_tokens": call.prompt_tokens,
                    "completion_tokens": tokens,
                }
            )

    def _known_models(self) -> set[str]:
        v = self.registry.version
        if self._models_at != v:
            self._models_at = v
            self._models_known = {m for b in self.registry for m in b.cards}
        return self._models_known

    def _label(self, tenant: str) -> str:
        labels = self._tenant_labels
        if tenant in labels:
            return tenant
        if len(labels) < MAX_TENANT_LABELS:
            labels.add(tenant)
            return tenant
        return "other"

    def no_backend(self, call: Call) -> APIError:
        what = f" serving model {call.model!r}" if call.model is not None else ""
        return APIError(
            503, f"no healthy backend{what}", None, "no_healthy_backend", {"retry-after": "1"}
        )

    # ================================================================ routing
    def saturated(self, b: Backend) -> bool:
        s = self.cfg.saturation
        cap = b.cfg.max_inflight or s.max_inflight
        if cap is not None and b.inflight >= cap:
            return True
        load = b.load
        if load is None or (s.max_waiting is None and s.max_kv is None):
            return False
        if time.monotonic() - load.t > self.stale_s:
            return False
        if s.max_waiting is not None and load.waiting > s.max_waiting:
            return True
        return s.max_kv is not None and load.kv >= s.max_kv

    def _views(self, call: Call, cands: list[Backend]) -> list[InstanceView]:
        model = call.model or ""
        if not self.needs_views:
            key = (model, self.registry.version, *(b.index for b in cands))
            views = self._static_views.get(key)
            if views is None:
                if len(self._static_views) > 256:
                    self._static_views.clear()
                views = self._static_views[key] = [backend_view(b, model, 0.0, 0.0) for b in cands]
            return views
        now = time.monotonic()
        stale = self.stale_s
        hashes = call.rv.block_hashes
        bt = self.block_tokens
        if self.needs_prefix and hashes:
            return [
                backend_view(b, model, now, stale, b.prefix.match(hashes) if b.prefix else 0, bt)
                for b in cands
            ]
        return [backend_view(b, model, now, stale) for b in cands]

    def _route(self, call: Call, cands: list[Backend]) -> Backend:
        i = self.router.route(call.rv, self._views(call, cands))
        b = self.registry.by_index(i)
        if b is None or b not in cands:  # a router must pick one of the views it was given
            raise RuntimeError(f"router {self.policy!r} returned index {i}, not a candidate")
        self.registry.dispatch(b, call.prompt_tokens)
        self.service.add_prompt(call.tenant, call.prompt_tokens)
        if self.needs_prefix and call.rv.block_hashes:
            self.registry.prefix_index(b).insert(call.rv.block_hashes)
        Metrics.inc(self.metrics.decisions, (self.policy, b.name))
        return b

    async def acquire(self, call: Call, tried: set[int]) -> Backend | None:
        """A backend for ``call``, dispatched: routed now, or after waiting in the central
        queue while every candidate is saturated. None when no eligible backend is left."""
        cands = self.registry.eligible(call.model)
        if tried:
            cands = [b for b in cands if b.index not in tried]
        if not cands:
            return None
        free = [b for b in cands if not self.saturated(b)] if self._bounded else cands
        if free:
            return self._route(call, free)
        w = Waiting(
            req=Request(
                id=call.id,
                arrival_s=call.arrival,
                prompt_tokens=call.prompt_tokens,
                output_tokens=call.max_tokens or 256,
                tenant=call.tenant,
                priority=call.rv.priority,
                slo_class=call.rv.slo_class,
                model=call.model,
            ),
            target=call.prompt_tokens,
            model=call.model,
            future=self.loop.create_future(),
            queued_at=time.monotonic(),
            owner=call,
            tried=frozenset(tried),
        )
        self.queue.put(w)  # raises the 429 of a full queue
        call.waiting = w
        try:
            b = await w.future
        except asyncio.CancelledError:
            self.queue.cancel(w)
            fut = w.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(call, fut.result())  # released to us just as the client left
            raise
        finally:
            wait = time.monotonic() - w.queued_at
            call.queue_wait_s += wait
            Metrics.hist(self.metrics.queue_wait, self._label(call.tenant), WAIT_BUCKETS).observe(
                wait
            )
        return b

    def pump(self) -> None:
        """Release queued requests while some backend of their model has room."""
        if self._pumping or not self.queue.size:
            return
        self._pumping = True
        try:
            now = time.monotonic()
            for model in self.queue.models():
                while True:
                    cands = [b for b in self.registry.eligible(model) if not self.saturated(b)]
                    if not cands:
                        break
                    w = self.queue.pop(model, now)
                    if w is None:
                        break
                    mine = [b for b in cands if b.index not in w.tried] or cands
                    if w.future.done():
                        continue
                    w.future.set_result(self._route(w.owner, mine))
        finally:
            self._pumping = False

    def release(self, call: Call, b: Backend) -> None:
        """The end of one dispatch to ``b``, on whatever path."""
        self.registry.release(b, call.prompt_tokens)
        self.router.on_finish(call.rv, b.index)
        w = call.waiting
        if w is not None:
            w.generated = call.usage_tokens if call.usage_tokens is not None else call.events
            self.queue.finished(w, time.monotonic())
            call.waiting = None
        if self.queue.size:
            self.pump()

    def first_token(self, call: Call, b: Backend) -> None:
        if self._first_token_hook is not None:
            self._first_token_hook(call.rv, b.index)

    def outcome(self, b: Backend, failed: bool) -> None:
        if failed:
            if record_failure(b, time.monotonic(), self.cfg.ejection):
                Metrics.inc(self.metrics.ejections, b.name)
                self.registry.version += 1
        else:
            record_success(b)

    def count_retry(self, call: Call, b: Backend) -> None:
        call.retries += 1
        Metrics.inc(self.metrics.retries, (b.name, call.failure or "unknown"))

    def _backend_changed(self, b: Backend, state: bool) -> None:
        if state:
            self.registry.version += 1
        if self.queue.size:
            self.pump()

    # ================================================================ aux endpoints
    async def _aux(self, req: HTTPRequest, conn: ClientConnection) -> None:
        """vLLM's /tokenize and /detokenize, answered by a healthy backend of the model."""
        from fleetsched.api.request import load_json_object

        body = load_json_object(req.body)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        cands = self.registry.eligible(model)
        if not cands:
            raise APIError(
                503, "no healthy backend", None, "no_healthy_backend", {"retry-after": "1"}
            )
        b = min(cands, key=lambda x: x.inflight)
        try:
            status, headers, data = await self._simple(b, req.path, req.body)
        except (OSError, TimeoutError) as e:
            raise APIError(502, f"backend {b.name!r} failed: {e}") from None
        conn.send(status, JSON, data)
        _ = headers

    async def _simple(self, b: Backend, path: str, body: bytes) -> tuple[int, list[Any], bytes]:
        import aiohttp

        async with self.prober.session().post(
            b.url + path,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeouts.first_token_s),
        ) as r:
            return r.status, list(r.headers.items()), await r.read()

    # ================================================================ admin
    async def _admin(self, req: HTTPRequest, conn: ClientConnection) -> None:
        if not self.admin_keys:
            raise APIError(404, "the admin API is off (no admin_keys in the config)")
        self.admin_keys.authenticate(req.headers.get(b"authorization", b""))
        parts = req.path.strip("/").split("/")
        if parts == ["admin", "backends"] and req.method == "GET":
            conn.send_json(200, _json({"data": [self.backend_info(b) for b in self.registry]}))
        elif parts == ["admin", "backends"] and req.method == "POST":
            from fleetsched.api.request import load_json_object

            try:
                bc = BackendConfig.model_validate(load_json_object(req.body))
            except ValueError as e:
                raise bad_request(str(e).splitlines()[-1].strip()) from None
            b = self.add_backend(bc)
            await self.prober.probe(b)
            conn.send_json(201, _json(self.backend_info(b)))
        elif len(parts) == 3 and parts[:2] == ["admin", "backends"] and req.method == "DELETE":
            b = self._named(parts[2])
            self.remove_backend(b)
            conn.send_json(200, _json(self.backend_info(b)))
        elif (
            len(parts) == 4
            and parts[:2] == ["admin", "backends"]
            and parts[3] == "drain"
            and req.method == "POST"
        ):
            b = self._named(parts[2])
            self.registry.drain(b)
            conn.send_json(200, _json(self.backend_info(b)))
        elif parts == ["admin", "reload"] and req.method == "POST":
            conn.send_json(200, _json(self.reload()))
        else:
            raise APIError(404, f"no admin route {req.method} {req.path}")

    def _named(self, name: str) -> Backend:
        b = self.registry.get(name)
        if b is None:
            raise APIError(404, f"no backend named {name!r}")
        return b

    def backend_info(self, b: Backend) -> dict[str, Any]:
        load = b.load
        return {
            "name": b.name,
            "url": b.url,
            "index": b.index,
            "models": sorted(b.cards),
            "healthy": b.healthy,
            "ejected": b.ejected,
            "draining": b.draining,
            "removed": b.removed,
            "inflight": b.inflight,
            "requests": b.requests,
            "failures": b.failures,
            "ejections": b.ejections,
            "load": None
            if load is None
            else {"running": load.running, "waiting": load.waiting, "kv": load.kv},
        }

    def add_backend(self, bc: BackendConfig) -> Backend:
        if bc.max_inflight is not None:
            self._bounded = True
        try:
            b = self.registry.add(bc)
        except ValueError as e:
            raise APIError(409, str(e)) from None
        self.prober.watch(b)
        return b

    def remove_backend(self, b: Backend) -> None:
        self.registry.drain(b, remove=True)
        self.prober.unwatch(b)

    def reload(self) -> dict[str, Any]:
        """Re-read the config file's backend list: new backends join, missing ones drain and
        go when their last request ends, the others keep their state and accounting."""
        from fleetsched.gateway.config import load_gateway_config

        if self.config_path is None:
            raise APIError(409, "the gateway was started without --config: nothing to reload")
        try:
            new = load_gateway_config(self.config_path)
        except Exception as e:
            raise APIError(400, f"reload failed, keeping the current backends: {e}") from None
        want = {bc.key: bc for bc in new.backends}
        added, removed = [], []
        for b in list(self.registry):
            if b.name not in want and not b.removed:
                self.remove_backend(b)
                removed.append(b.name)
        for name, bc in want.items():
            cur = self.registry.get(name)
            if cur is None:
                self.add_backend(bc)
                added.append(name)
            elif cur.removed:  # removed but still finishing: it stays
                cur.removed = cur.draining = False
                self.registry.version += 1
                self.prober.watch(cur)
                added.append(name)
        return {"added": added, "removed": removed, "backends": [b.name for b in self.registry]}


__all__ = ["Call", "Gateway"]
