"""Task classes and the quality table of multi-model workloads.

A request may carry a ``task_class`` (and a ``difficulty`` in [0, 1]); a scenario's quality
table gives, per task class and model, the probability that the model answers a request of
that class correctly. Model routers read the table (RouteBalance's quality predictor, a
quality-first router); the simulator's judge draws each answer's correctness from it, so a
learning router (GreenServ's bandit) gets the partial feedback it would get live.

**Default table** (:data:`DEFAULT_QUALITY`): Meta's published scores of the instruction-tuned
Llama 3.1 models (Llama 3.1 model card, "Instruction tuned models" table, July 2024), read
as success probabilities:

=============  =========================  ==============  ===============
task class     benchmark (shots)          Llama-3.1-8B    Llama-3.1-70B
=============  =========================  ==============  ===============
``knowledge``  MMLU (5)                   0.694           0.836
``code``       HumanEval (0), pass@1      0.726           0.805
``math_word``  GSM-8K (8, CoT)            0.845           0.951
``math``       MATH (0, CoT)              0.519           0.680
=============  =========================  ==============  ===============

Any other (class, model) pair must be given in the scenario (``quality:``); a pair missing
from the table used by a run is an input error.

**Difficulty** (synthetic, not from a benchmark): a request of difficulty ``d`` succeeds with
probability ``sigmoid(logit(q) + 4 * (0.5 - d))``, ``q`` the table entry: ``d = 0.5`` is the
benchmark average, easier requests succeed more often on every model and harder ones less, and
the gap between models is widest in the middle. Without a difficulty, ``q`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fleetsched.errors import InputError

#: task class -> model -> probability of a correct answer (see the module docstring).
DEFAULT_QUALITY: dict[str, dict[str, float]] = {
    "knowledge": {"Llama-3.1-8B": 0.694, "Llama-3.1-70B": 0.836},
    "code": {"Llama-3.1-8B": 0.726, "Llama-3.1-70B": 0.805},
    "math_word": {"Llama-3.1-8B": 0.845, "Llama-3.1-70B": 0.951},
    "math": {"Llama-3.1-8B": 0.519, "Llama-3.1-70B": 0.680},
}

#: Slope of the difficulty adjustment on the logit scale.
DIFFICULTY_SLOPE = 4.0

QualityTable = Mapping[str, Mapping[str, float]]


def check_quality(table: QualityTable, where: str = "quality") -> None:
    """Raise :class:`InputError` unless every entry is a probability."""
    for task, row in table.items():
        for model, q in row.items():
            if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 1:
                raise InputError(
                    f"expected a probability in [0, 1], got {q!r}", f"{where}.{task}.{model}"
                )


def quality(table: QualityTable, task: str | None, model: str, difficulty: float | None) -> float:
    """Probability that ``model`` answers a request of class ``task`` correctly; NaN for a
    request without a task class. A (class, model) pair missing from the table raises
    :class:`InputError`."""
    if task is None:
        return math.nan
    row = table.get(task)
    if row is None or model not in row:
        known = ", ".join(sorted(table)) or "none"
        raise InputError(
            f"no quality for task class {task!r} on model {model!r} (task classes in the "
            f"table: {known}); add it under the scenario's quality: section"
        )
    q = float(row[model])
    if difficulty is None or q in (0.0, 1.0):
        return q
    z = math.log(q / (1 - q)) + DIFFICULTY_SLOPE * (0.5 - difficulty)
    return 1 / (1 + math.exp(-z))
