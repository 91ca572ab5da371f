"""Deterministic filler tokens: an emulated model's output, and synthetic prompt content.

* :func:`output_ids` is what the emulator "generates": token ids drawn from a numpy
  ``Generator(PCG64)`` seeded with ``(seed, digest of the prompt ids)``, so the same seed and
  prompt always give the same text, like greedy decoding. :func:`eos_length` draws, from the
  same seed and prompt, where an emulated end-of-sequence falls: geometric with the given mean
  (a constant end-of-sequence probability per token).
* :func:`keyed_ids` turns 64-bit keys into token ids with the SplitMix64 finaliser, one block
  of ``n`` tokens per key, vectorised: equal keys give equal blocks. ``bench`` uses it to turn
  a trace's prefix block hashes into really shared prompt prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleetsched.api.tokenizer import VOCAB_SIZE

_MASK = (1 << 64) - 1


def prompt_digest(prompt_ids: Sequence[int]) -> int:
    """A stable 63-bit digest of token ids (Python hashes tuples of ints without salt)."""
    return hash(tuple(prompt_ids)) & 0x7FFFFFFFFFFFFFFF


def _rng(seed: int, digest: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed & _MASK, digest, stream]))


def output_ids(seed: int, digest: int, n: int) -> np.ndarray:
    """``n`` output token ids for a prompt with ``digest`` (see :func:`prompt_digest`)."""
    return _rng(seed, digest, 0).integers(0, VOCAB_SIZE, size=n, dtype=np.int64)


def eos_length(seed: int, digest: int, mean: float) -> int:
    """Output length at which an emulated end-of-sequence token falls (>= 1)."""
    if mean <= 1:
        return 1
    return int(_rng(seed, digest, 1).geometric(1.0 / mean))


def keyed_ids(keys: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Token ids, ``n`` per key (``len(keys) * n`` in all): block ``i`` depends on ``keys[i]``
    only. Keys may be any Python ints (negative hashes included)."""
    k = np.asarray([x & _MASK for x in keys], dtype=np.uint64)
    pos = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = k[:, None] + (pos[None, :] + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(VOCAB_SIZE)).astype(np.int64).ravel()


__all__ = ["eos_length", "keyed_ids", "output_ids", "prompt_digest"]
