"""The hash key of a request's prompt prefix, for routers that map prefixes to instances
(``dualmap``, ``consistent_hash``).

A key on the first block alone sends every request of a trace with a shared system prompt to
the same place (Mooncake's conversation trace: one key for all 12,031 requests). The key must
cover the shared part and stop inside what tells requests apart, while every turn of one
conversation (whose prompt extends the previous turn's) keeps its key.

* **Adaptive** (``key_tokens=None``, the default), after DualMap's adaptive prefix length:
  the router learns where prompts branch. Walking a prompt's chained block hashes (in
  ``unit_tokens`` blocks, at most ``max_key_tokens``), it records each node's first child and
  marks a node *branching* once a second, different child follows it. The key is the block
  just after the last branching node on the path: past a system prompt that many prompts
  share (however many blocks long), at the first block of this conversation's own content --
  which its later turns share, since they extend it. A node's first child is kept in a
  bounded table (``max_nodes``; cleared when full, so it relearns).
* **Fixed** (``key_tokens=N``): the chained hash of the first ``N`` tokens (rounded up to a
  hash block). Stateless, so several gateway replicas agree without sharing anything; the
  right N depends on the workload's shared prefix length.

Prompts shorter than one block have no prefix: they key on the session, then the request id
(so they spread instead of piling up).
"""

from __future__ import annotations

from fleetsched.core.views import RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import mix64, str_hash64
from fleetsched.policies.routing.prefix_index import strided


class PrefixKey:
    __slots__ = (
        "_branching",
        "_first",
        "key_tokens",
        "max_key_tokens",
        "max_nodes",
        "unit_tokens",
    )

    def __init__(
        self,
        key_tokens: int | None = None,
        unit_tokens: int = 64,
        max_key_tokens: int = 4096,
        max_nodes: int = 1 << 18,
    ) -> None:
        if key_tokens is not None and key_tokens < 1:
            raise InputError(f"key_tokens must be >= 1 or None (adaptive), got {key_tokens}")
        if unit_tokens < 1 or max_key_tokens < 1 or max_nodes < 1:
            raise InputError("unit_tokens, max_key_tokens and max_nodes must be >= 1")
        self.key_tokens = key_tokens
        self.unit_tokens = unit_tokens
        self.max_key_tokens = max_key_tokens
        self.max_nodes = max_nodes
        self._first: dict[int, int] = {}
        self._branching: set[int] = set()

    def depth(self, req: RequestView) -> int:
        """Tokens of the prompt the key covers (0: no prefix, keyed on session or id)."""
        return self._key(req)[1]

    def __call__(self, req: RequestView) -> int:
        """The 64-bit key of ``req`` (and, adaptive, learn from its prompt)."""
        return self._key(req)[0]

    def _key(self, req: RequestView) -> tuple[int, int]:
        hs = req.block_hashes
        if not hs:
            if req.session_id is not None:
                return str_hash64(req.session_id), 0
            return mix64(req.id ^ 0x5BD1E995), 0
        bt = req.hash_block_tokens
        if self.key_tokens is not None:
            d = min(-(-self.key_tokens // bt), len(hs))
            return mix64(hs[d - 1]), d * bt
        path, unit = strided(hs, bt, self.unit_tokens)
        n = min(len(path), max(self.max_key_tokens // unit, 1))
        if n == 0:  # shorter than one unit: the whole hashed prefix
            return mix64(hs[-1]), len(hs) * bt
        first, branching = self._first, self._branching
        if len(first) > self.max_nodes:
            first.clear()
            if len(branching) > self.max_nodes:
                branching.clear()
        last = -1
        for d in range(n - 1):
            h = path[d]
            if h in branching:
                last = d
                continue
            c = path[d + 1]
            f = first.get(h)
            if f is None:
                first[h] = c
            elif f != c:
                branching.add(h)
                last = d
        return mix64(path[last + 1]), (last + 2) * unit


__all__ = ["PrefixKey"]
