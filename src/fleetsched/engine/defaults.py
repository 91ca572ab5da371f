"""vLLM's own values for the engine knobs a scenario leaves unset (``None``).

Followed: vLLM's ``EngineArgs.get_batch_defaults`` and
``_set_default_max_num_seqs_and_batched_tokens_args`` (``vllm/engine/arg_utils.py``, the
v0.12-era main branch as stored in the public code index) and ``SchedulerConfig.
verify_max_model_len`` (``vllm/config/scheduler.py``), for the usage context of a serving fleet,
the OpenAI API server (``vllm serve``):

- GPUs with at least 70 GiB of memory whose name does not contain "a100" (H100, H200, MI300X):
  ``max_num_batched_tokens`` 8192, ``max_num_seqs`` 1024; every other GPU 2048 and 256 (vLLM:
  "Setting large max_num_batched_tokens for A100 reduces throughput", PR #17885).
- An unset budget with chunked prefill off grows to ``max_model_len`` (any prompt fits one step);
  an unset budget never exceeds ``max_num_seqs * max_model_len``; an unset ``max_num_seqs``
  never exceeds the budget.
- ``max_model_len`` defaults to the model's ``max_position_embeddings``; a larger value is
  refused, as vLLM refuses a ``max_model_len`` above the one derived from the model config.
- Refused as vLLM refuses them: a budget below ``max_model_len`` with chunked prefill off, and a
  budget below ``max_num_seqs``.

Deliberate difference: vLLM's offline ``LLM`` class uses larger budgets (16384 / 8192); the
simulator models servers, so it uses the API server's.
"""

from __future__ import annotations

from fleetsched.core.config import EngineConfig
from fleetsched.errors import InputError
from fleetsched.perf.hardware import GPU, GiB
from fleetsched.perf.models import ModelSpec

#: (max_num_batched_tokens, max_num_seqs) of ``vllm serve`` on large GPUs and on the others.
LARGE_GPU_DEFAULTS = (8192, 1024)
OTHER_GPU_DEFAULTS = (2048, 256)
#: vLLM's threshold for a "large" GPU: total device memory, and names it excludes.
LARGE_GPU_MIN_BYTES = 70 * GiB


def batch_defaults(gpu: GPU | None) -> tuple[int, int]:
    """vLLM's default (max_num_batched_tokens, max_num_seqs) for ``gpu`` (None: unknown)."""
    if gpu is not None and gpu.mem_bytes >= LARGE_GPU_MIN_BYTES and "a100" not in gpu.name.lower():
        return LARGE_GPU_DEFAULTS
    return OTHER_GPU_DEFAULTS


def resolve_engine_config(
    cfg: EngineConfig, gpu: GPU | None, model: ModelSpec | None, where: str = "engine"
) -> EngineConfig:
    """``cfg`` with every ``None`` knob set as vLLM would set it on ``gpu`` serving ``model``.

    Without a model (e.g. a fitted profile of an unknown model) ``max_model_len`` stays unset
    and no context-length check applies. Raises :class:`InputError` naming ``where.field`` for
    combinations vLLM refuses.
    """
    max_len = cfg.max_model_len
    if model is not None:
        if max_len is None:
            max_len = model.max_position_embeddings
        elif max_len > model.max_position_embeddings:
            raise InputError(
                f"{where}.max_model_len: {max_len} is above {model.name}'s context length "
                f"({model.max_position_embeddings} tokens), which vLLM refuses"
            )
    budget_default, seqs_default = batch_defaults(gpu)
    seqs = cfg.max_num_seqs if cfg.max_num_seqs is not None else seqs_default
    budget = cfg.max_num_batched_tokens
    if budget is None:
        budget = budget_default
        if max_len is not None:
            if not cfg.enable_chunked_prefill:
                budget = max(max_len, budget)
            budget = min(seqs * max_len, budget)
    if cfg.max_num_seqs is None:
        seqs = min(seqs, budget)
    if max_len is not None and not cfg.enable_chunked_prefill and budget < max_len:
        raise InputError(
            f"{where}.max_num_batched_tokens: {budget} is below max_model_len ({max_len}) with "
            "enable_chunked_prefill off, which vLLM refuses (longer prompts could never run); "
            "raise it, lower max_model_len or leave max_num_batched_tokens unset"
        )
    if budget < seqs:
        raise InputError(
            f"{where}.max_num_batched_tokens: {budget} is below max_num_seqs ({seqs}), which "
            "vLLM refuses"
        )
    return cfg.model_copy(
        update={"max_num_batched_tokens": budget, "max_num_seqs": seqs, "max_model_len": max_len}
    )
