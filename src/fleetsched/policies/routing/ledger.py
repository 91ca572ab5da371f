"""The router's own accounting of what it sent to each instance and has not seen finish.

A gateway sees no engine internals, so a router that balances load must count what it sent:
taken at dispatch (``route``), released on every path out (``on_finish``), the prompt-side
part released when the first token comes back (``on_first_token``). Per instance index:

* ``requests``: requests sent and not finished (SGLang's worker load, Llumnix's and Dynamo's
  active requests);
* ``routed``: requests ever sent (SGLang's ``processed`` tie-break);
* ``prefill_tokens``: prefill work of requests whose first token has not come back -- what
  the router charged at dispatch, by default the whole prompt (Dynamo charges the uncached
  part: ``initial_effective_prefill_tokens``);
* ``unprefilled_tokens``: whole prompts of those requests (the waiting demand Llumnix counts);
* with ``track_blocks``: ``active_tokens``, the prompt tokens of unfinished requests with
  blocks shared between them counted once (Dynamo's ``ActiveSequences`` with
  ``router_assume_kv_reuse``). Blocks are deduplicated by chained hash in ``unit_tokens``
  (64) token units (every 4th 16-token hash: a quarter of the bookkeeping); the rest of each
  prompt past its last full unit counts per request.

Every release is idempotent and keyed by request id, so a runtime may report a request twice
(first token after a retry, finish after an error) without the counts drifting.

Block tracking costs O(log n) Python steps plus the blocks that become active or inactive:
reference counts are two ``Counter`` s per instance (sent, released) updated in C, and an
instance's active set is a union of chains, so the new (or freed) blocks of a prompt are a
suffix of its chain, found by binary search.
"""

from __future__ import annotations

from collections import Counter, _count_elements  # the C counting loop behind Counter
from collections.abc import Sequence
from dataclasses import dataclass

from fleetsched.core.views import RequestView
from fleetsched.policies.routing.prefix_index import held_prefix, match_lengths, strided


@dataclass(slots=True)
class _Sent:
    index: int
    prompt_tokens: int
    prefill_tokens: int
    prefilled: bool
    hashes: tuple[int, ...]
    unit_tokens: int
    tail_tokens: int


class Ledger:
    __slots__ = (
        "_added",
        "_owners",
        "_path",
        "_released",
        "_sent",
        "active_tokens",
        "prefill_tokens",
        "requests",
        "routed",
        "track_blocks",
        "unit_tokens",
        "unprefilled_tokens",
    )

    def __init__(self, track_blocks: bool = False, unit_tokens: int = 64) -> None:
        self.track_blocks = track_blocks
        self.unit_tokens = unit_tokens
        self.requests: list[int] = []
        self.routed: list[int] = []
        self.prefill_tokens: list[int] = []
        self.unprefilled_tokens: list[int] = []
        self.active_tokens: list[int] = []
        # Per instance: references taken and released per block hash (active: taken > released).
        self._added: list[Counter[int]] = []
        self._released: list[Counter[int]] = []
        self._owners: dict[int, int] = {}  # block hash -> bitmask of instances it is active on
        self._sent: dict[int, _Sent] = {}
        self._path: tuple[RequestView | None, Sequence[int], int] = (None, (), 0)

    def grow(self, n: int) -> None:
        """Make room for instance indices below ``n``."""
        k = n - len(self.requests)
        if k > 0:
            for xs in (
                self.requests,
                self.routed,
                self.prefill_tokens,
                self.unprefilled_tokens,
                self.active_tokens,
            ):
                xs.extend([0] * k)
            self._added.extend(Counter() for _ in range(k))
            self._released.extend(Counter() for _ in range(k))

    def __len__(self) -> int:
        """Requests sent and not finished, over all instances."""
        return len(self._sent)

    def index_of(self, req: RequestView) -> int | None:
        """Where ``req`` was sent (None if it is not outstanding)."""
        s = self._sent.get(req.id)
        return None if s is None else s.index

    # --------------------------------------------------------------------- events
    def dispatch(self, req: RequestView, index: int, prefill_tokens: int | None = None) -> None:
        """``req`` was sent to ``index``; ``prefill_tokens`` (default: the whole prompt) is
        the prefill work it is charged until its first token."""
        if req.id in self._sent:
            self.finish(req)
        if index >= len(self.requests):
            self.grow(index + 1)
        p = req.prompt_tokens
        pf = p if prefill_tokens is None else max(int(prefill_tokens), 0)
        hs: Sequence[int] = ()
        tail = unit = 0
        if self.track_blocks:
            hs, unit = self.path(req)
            tail = max(p - len(hs) * unit, 0)
            owners, bit = self._owners, 1 << index
            lo = held_prefix(hs, owners, bit)  # hs[:lo] already active on index
            if lo < len(hs):
                get = owners.get
                owners.update({h: get(h, 0) | bit for h in hs[lo:]})
            _count_elements(self._added[index], hs)
            self.active_tokens[index] += (len(hs) - lo) * unit + tail
        self._sent[req.id] = _Sent(index, p, pf, False, tuple(hs), unit, tail)
        self.requests[index] += 1
        self.routed[index] += 1
        self.prefill_tokens[index] += pf
        self.unprefilled_tokens[index] += p

    def first_token(self, req: RequestView) -> None:
        """The first output token of ``req`` came back: its prompt is computed."""
        s = self._sent.get(req.id)
        if s is not None and not s.prefilled:
            s.prefilled = True
            self.prefill_tokens[s.index] -= s.prefill_tokens
            self.unprefilled_tokens[s.index] -= s.prompt_tokens

    def finish(self, req: RequestView) -> None:
        """``req`` left the instance it was sent to (any path)."""
        s = self._sent.pop(req.id, None)
        if s is None:
            return
        i = s.index
        if not s.prefilled:
            self.prefill_tokens[i] -= s.prefill_tokens
            self.unprefilled_tokens[i] -= s.prompt_tokens
        self.requests[i] -= 1
        if s.hashes or s.tail_tokens:
            hs = s.hashes
            added, released = self._added[i], self._released[i]
            _count_elements(released, hs)
            # References fall along the chain: the blocks now free are a suffix.
            lo, hi = 0, len(hs)
            while lo < hi:
                mid = (lo + hi) // 2
                h = hs[mid]
                if added[h] > released[h]:
                    lo = mid + 1
                else:
                    hi = mid
            owners, clear = self._owners, ~(1 << i)
            for h in hs[lo:]:
                del added[h], released[h]
                m = owners[h] & clear
                if m:
                    owners[h] = m
                else:
                    del owners[h]
            self.active_tokens[i] -= (len(hs) - lo) * s.unit_tokens + s.tail_tokens

    # --------------------------------------------------------------------- queries
    def path(self, req: RequestView) -> tuple[Sequence[int], int]:
        """The request's chain in tracking units, and the tokens per unit (the last request's
        is kept: a router asks for it while scoring and again at dispatch)."""
        last = self._path
        if last[0] is req:
            return last[1], last[2]
        hs, unit = strided(req.block_hashes, req.hash_block_tokens, self.unit_tokens)
        self._path = (req, hs, unit)
        return hs, unit

    def active_prefix(self, hashes: Sequence[int], mask: int) -> dict[int, int]:
        """``{index: units of the chain hashes (see :meth:`path`) already active there}`` for
        the instances in ``mask`` (absent: none). Each instance's active set is a union of
        chains, hence prefix-closed, so :func:`~.prefix_index.match_lengths` applies."""
        return match_lengths(hashes, self._owners, mask)


__all__ = ["Ledger"]
