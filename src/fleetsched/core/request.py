"""The request record every layer shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Engine KV block size in tokens (vLLM's default).
BLOCK_TOKENS = 16


@dataclass(slots=True)
class Request:
    """One inference request as the workload describes it.

    ``block_hashes`` identify the prompt's prefix, one *chained* hash per block of
    ``hash_block_tokens`` tokens (equal hash at position i means the first i+1 blocks are
    identical). Only full blocks are hashed. Loaders chain raw per-block ids with
    :func:`chain_hashes`.

    ``output_block_hashes`` continue that chain over the full blocks of prompt + output that
    follow the prompt's full blocks (the block that holds the prompt's last tokens and the first
    output tokens, then output blocks), when the workload knows them: a multi-turn generator
    knows the next turn's prompt, which repeats this answer. An engine caches these blocks as
    the output fills them, so the next turn can hit them. Only used when ``block_hashes`` covers
    every full prompt block.

    Compound workloads add optional parts:

    * ``prompt_chunks``: the prompt arrives in pieces (retrieval streaming), as
      ``(offset_s, tokens)`` pairs: ``tokens`` more prompt tokens are available ``offset_s``
      seconds after ``arrival_s``. Offsets are non-decreasing, the first is 0, and the tokens
      sum to ``prompt_tokens``. Empty: the whole prompt is there at arrival.
    * ``task_class`` and ``difficulty`` (0..1): what a model router reads to pick a model
      (``workload/tasks.py``).
    * ``call``: the request is one call of an agent workflow (:class:`CallInfo`).
    """

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    block_hashes: tuple[int, ...] = ()
    hash_block_tokens: int = BLOCK_TOKENS
    tenant: str = "default"
    priority: int = 0
    session_id: str | None = None
    slo_class: str = "default"
    model: str | None = None
    deadline_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    output_block_hashes: tuple[int, ...] = ()
    #: Its output must not depend on what it is batched with (see ``engine.determinism``).
    deterministic: bool = False
    prompt_chunks: tuple[tuple[float, int], ...] = ()
    task_class: str | None = None
    difficulty: float | None = None
    call: CallInfo | None = None


@dataclass(slots=True, frozen=True)
class CallInfo:
    """Where a request sits in its agent workflow (``workload/workflows.py``).

    ``deadline_s`` is the whole workflow's absolute deadline (None: no deadline);
    ``rest_s`` the estimated time of the longest path of calls and tool gaps still to run
    after this call; ``next_gap_s`` the tool gap before the next call that extends this
    one's context (None when no later call does: its KV is not reused by the workflow).
    """

    workflow: int
    index: int
    deadline_s: float | None = None
    rest_s: float = 0.0
    next_gap_s: float | None = None


def chain_hashes(block_ids: Iterable[int], seed: int = 0) -> tuple[int, ...]:
    """Chain raw block ids into prefix hashes: h_i = hash((h_{i-1}, id_i)).

    Python hashes ints and tuples of ints deterministically (no PYTHONHASHSEED effect), so the
    result is stable across runs and machines of the same word size.
    """
    out: list[int] = []
    append = out.append
    h = seed
    for b in block_ids:
        h = hash((h, b))
        append(h)
    return tuple(out)
