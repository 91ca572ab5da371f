"""Prefix block hashes of token ids, as engines and the gateway's prefix index need them.

:func:`block_hashes` cuts a prompt into full blocks of ``block_tokens`` token ids, gives each
block a content id (the hash of its tuple of ids) and chains the ids exactly like
:func:`fleetsched.core.request.chain_hashes`: ``h_i = hash((h_{i-1}, id_i))`` with
``h_{-1} = seed``. Equal hashes at position ``i`` therefore mean equal first ``i + 1`` blocks.

Only ints and tuples of ints are hashed, which Python hashes without the per-process salt
(``PYTHONHASHSEED`` only affects str/bytes), so the result is the same in every process and
on every machine of the same word size. Speed: tens of millions of tokens per second (see
``benchmarks/bench_route.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleetsched.core.request import BLOCK_TOKENS


def block_hashes(
    token_ids: Sequence[int] | np.ndarray, block_tokens: int = BLOCK_TOKENS, seed: int = 0
) -> tuple[int, ...]:
    """Chained hashes of the full ``block_tokens``-token blocks of ``token_ids``.

    The trailing partial block is not hashed. Equivalent to
    ``chain_hashes([hash(tuple(block)) for block in full_blocks], seed)``.
    """
    if block_tokens <= 0:
        raise ValueError(f"block_tokens must be positive, got {block_tokens}")
    if isinstance(token_ids, np.ndarray):
        token_ids = token_ids.tolist()  # Python ints hash like numpy ints, and faster
    toks = token_ids if isinstance(token_ids, tuple) else tuple(token_ids)
    end = len(toks) - len(toks) % block_tokens
    out: list[int] = []
    append = out.append
    h = seed
    for i in range(0, end, block_tokens):
        h = hash((h, hash(toks[i : i + block_tokens])))
        append(h)
    return tuple(out)


__all__ = ["block_hashes"]
