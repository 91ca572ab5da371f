"""Prefix + load scoring as llm-d's endpoint picker runs it, in its two published
configurations.

Follows llm-d/llm-d-inference-scheduler (the Gateway API Inference Extension's endpoint picker,
now module ``llm-d-router``) at commit 520af478 (May 2026):

* ``prefix_load`` -- the default of the chart (``config/charts/epplib/templates/
  _config.yaml``, ``default-plugins.yaml``): ``prefix-cache-scorer`` weight 3,
  ``queue-scorer`` 2, ``kv-cache-utilization-scorer`` 2, ``max-score-picker``. The prefix
  score is *approximate*, fed by routing history (``approx-prefix-cache-producer``: the
  prompts the picker sent to each pod, 16-token blocks, at most 256 blocks, a per-pod LRU as
  large as the engine's KV cache): see :class:`~.framework.ApproxPrefixScorer`.
* ``prefix_load_precise`` -- ``deploy/config/epp-precise-prefix-cache-config.yaml``:
  ``precise-prefix-cache-scorer`` weight 2 (the engine's own prefix cache, learnt from vLLM's
  KV events, in 64-token blocks: ``cached_prefix_tokens`` here), ``kv-cache-utilization-
  scorer`` 1, ``queue-scorer`` 1, ``max-score-picker``.

Scorers: prefix = matched blocks / prompt blocks; queue = waiting requests
(``WaitingQueueSize``), min-max normalised over the candidates so the shortest queue scores
1 (all equal: 1); kv = ``1 - kv_utilization``. The max-score picker shuffles candidates
before its stable sort: ties break at random (from the seeded generator here).
``picker="weighted_random"`` or ``"power_of_two"`` swap the picker. Differences: no
``decode-filter`` / profile handler (no P/D here; ``healthy`` and ``model_match`` filter
instead), and the approximate index differs as :class:`~.framework.ApproxPrefixScorer` says.
"""

from __future__ import annotations

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.policies.routing.framework import (
    ApproxPrefixScorer,
    Profile,
    healthy,
    kv_score,
    model_match,
    picker_named,
    precise_prefix_score,
    queue_score,
)


def prefix_load(
    seed: int = 0,
    prefix_weight: float = 3.0,
    queue_weight: float = 2.0,
    kv_weight: float = 2.0,
    picker: str = "max",
    max_prefix_tokens: int = 256 * BLOCK_TOKENS,
    lru_blocks: int | None = None,
    unit_tokens: int = 64,
) -> Profile:
    """llm-d's chart default: approximate prefix 3, queue 2, kv-cache utilisation 2."""
    prefix = ApproxPrefixScorer(
        max_prefix_tokens=max_prefix_tokens, lru_blocks=lru_blocks, unit_tokens=unit_tokens
    )
    return Profile(
        filters=(healthy, model_match),
        scorers=((prefix, prefix_weight), (queue_score, queue_weight), (kv_score, kv_weight)),
        picker=picker_named(picker),
        seed=seed,
    )


def prefix_load_precise(
    seed: int = 0,
    prefix_weight: float = 2.0,
    queue_weight: float = 1.0,
    kv_weight: float = 1.0,
    picker: str = "max",
    block_tokens: int = 64,
) -> Profile:
    """llm-d's precise prefix-cache configuration: precise prefix 2, kv 1, queue 1."""
    return Profile(
        filters=(healthy, model_match),
        scorers=(
            (precise_prefix_score(block_tokens), prefix_weight),
            (kv_score, kv_weight),
            (queue_score, queue_weight),
        ),
        picker=picker_named(picker),
        seed=seed,
    )
