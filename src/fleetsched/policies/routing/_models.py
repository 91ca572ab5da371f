"""Helpers of the model routers (``quality_first``, ``route_balance``, ``green_bandit``): the
models a fleet serves, a request's cost on each, and its predicted latency on an instance,
dead-reckoned from the router's own accounting (what it sent and has not seen come back).

**Latency** of request *r* on instance *i* serving model *m* on GPU *g*:
``(pending_i + prompt_r) * prefill_s(m, g) + out_r * tpot(m, g, batch_i + 1)``, where
``pending_i`` is the prompt tokens the router sent to *i* whose first token has not come
back, ``batch_i`` the requests it sent to *i* and has not seen finish, ``prefill_s`` the
per-token prefill time of a 2,048-token chunk and ``tpot`` the decode step time at that batch
size with contexts of ``prompt_r + out_r / 2`` tokens, both from the calibrated roofline
(``perf/``) -- the router's static profile of each deployment, as RouteBalance's latency
predictor is trained per instance type. ``out_r`` is the request's predicted output length,
else ``expected_output_tokens``. A router knows each backend's model and GPU but not its
tensor-parallel degree, so it assumes the smallest power of two whose GPUs hold the weights
in 60 % of their memory (Llama-3.1-8B: 1 H100, 70B: 4). A backend whose model or GPU is not
in the catalogs is priced as :data:`FALLBACK` (Llama-3.1-8B on an H100).

**Cost** of *r* on model *m*: ``(prompt_r + out_r) * active parameters of m`` (billions): a
price proportional to model size, RouteBalance's cost proxy when no price table is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.perf import build_step_model, get_gpu, get_model

#: Output length assumed for a request without a prediction.
EXPECTED_OUTPUT_TOKENS = 256

#: (GPU, model) assumed for a backend the catalogs do not know.
FALLBACK = ("H100-SXM", "Llama-3.1-8B")


@cache
def _known(gpu: str, model: str) -> tuple[str, str]:
    try:
        return get_gpu(gpu).name, get_model(model).name
    except InputError:
        return FALLBACK


def by_model(views: Sequence[InstanceView]) -> dict[str, list[InstanceView]]:
    """The views grouped by the model they serve (models in first-seen order)."""
    out: dict[str, list[InstanceView]] = {}
    for v in views:
        out.setdefault(v.model, []).append(v)
    return out


def expected_output(req: RequestView, default: int = EXPECTED_OUTPUT_TOKENS) -> int:
    p = req.predicted_output_tokens
    return p if p is not None else default


@cache
def assumed_tp(gpu: str, model: str) -> int:
    """Smallest power-of-two tensor-parallel degree whose GPUs hold the weights in 60 % of
    their memory (capped at a node)."""
    g, m = get_gpu(gpu), get_model(model)
    weights = m.total_params * m.dtype_bytes
    tp = 1
    while tp < g.gpus_per_node and weights > 0.6 * tp * g.mem_bytes:
        tp *= 2
    return tp


@cache
def _service(gpu: str, model: str) -> tuple[float, object]:
    gpu, model = _known(gpu, model)
    sm = build_step_model(gpu, model, assumed_tp(gpu, model))
    chunk = 2048
    return sm.step_time(chunk, chunk * (chunk + 1) / 2, 0, 0) / chunk, sm


@cache
def _tpot(gpu: str, model: str, batch: int, ctx: int) -> float:
    _, sm = _service(gpu, model)
    return sm.step_time(0, 0.0, batch, batch * ctx)  # type: ignore[attr-defined]


def predicted_latency_s(
    view: InstanceView, req: RequestView, pending_tokens: int, batch: int, out: int
) -> float:
    """Predicted end-to-end latency of ``req`` on ``view`` (see the module docstring)."""
    pf, _ = _service(view.gpu, view.model)
    # Contexts rounded to 256 tokens and batches to powers of two keep the cache small.
    ctx = max(256, (req.prompt_tokens + out // 2) // 256 * 256)
    b = 1 << max(batch, 0).bit_length()
    return (pending_tokens + req.prompt_tokens) * pf + out * _tpot(view.gpu, view.model, b, ctx)


@cache
def size_b(model: str) -> float:
    """Active parameters of ``model``, in billions."""
    return get_model(_known(FALLBACK[0], model)[1]).active_params / 1e9


def cost(req: RequestView, model: str, out: int) -> float:
    """Cost proxy of ``req`` on ``model`` (see the module docstring)."""
    return (req.prompt_tokens + out) * size_b(model)
