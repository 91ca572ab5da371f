"""Prefix + load scoring as in llm-d's default scheduling profile.

llm-d inference scheduler (the Gateway API Inference Extension endpoint picker with llm-d
plugins): its default ``EndpointPickerConfig`` (the ``default-plugins.yaml`` of the
``inferencepool`` Helm chart used by the "intelligent inference scheduling" well-lit path)
runs one profile with ``prefix-cache-scorer`` weight 3, ``queue-scorer`` weight 2 and
``kv-cache-utilization-scorer`` weight 2, and the ``max-score-picker``. Those are the
defaults here (3:2:2); some llm-d examples use 2:1:1 or 1:1:1, set the weights to taste.

Built as a :class:`~fleetsched.policies.routing.framework.Profile`: filters ``healthy`` and
``model_match``, scorers prefix (cached share of the prompt, from the engine's prefix cache
as llm-d's precise prefix-cache scorer sees it through KV events), queue (outstanding,
normalised over candidates) and kv (``1 - kv_utilization``), picker max score (ties: lowest
index), or ``picker="weighted_random"`` / ``"power_of_two"``.
"""

from __future__ import annotations

from fleetsched.policies.routing.framework import (
    Profile,
    healthy,
    kv_score,
    model_match,
    picker_named,
    prefix_score,
    queue_score,
)


def prefix_load(
    seed: int = 0,
    prefix_weight: float = 3.0,
    queue_weight: float = 2.0,
    kv_weight: float = 2.0,
    picker: str = "max",
) -> Profile:
    return Profile(
        filters=(healthy, model_match),
        scorers=((prefix_score, prefix_weight), (queue_score, queue_weight), (kv_score, kv_weight)),
        picker=picker_named(picker),
        seed=seed,
    )
