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
  ``router_assume_kv_reuse``). Hashed blocks are deduplicated by chained hash; the un-hashed
  tail of each prompt counts per request.

Every release is idempotent and keyed by request id, so a runtime may report a request twice
(first token after a retry, finish after an error) without the counts drifting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleetsched.core.views import RequestView


@dataclass(slots=True)
class _Sent:
    index: int
    prompt_tokens: int
    prefill_tokens: int
    prefilled: bool
    hashes: tuple[int, ...]
    tail_tokens: int


class Ledger:
    __slots__ = (
        "_blocks",
        "_sent",
        "active_tokens",
        "prefill_tokens",
        "requests",
        "routed",
        "track_blocks",
        "unprefilled_tokens",
    )

    def __init__(self, track_blocks: bool = False) -> None:
        self.track_blocks = track_blocks
        self.requests: list[int] = []
        self.routed: list[int] = []
        self.prefill_tokens: list[int] = []
        self.unprefilled_tokens: list[int] = []
        self.active_tokens: list[int] = []
        self._blocks: list[dict[int, int]] = []  # per instance: block hash -> refcount
        self._sent: dict[int, _Sent] = {}

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
            self._blocks.extend({} for _ in range(k))

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
        hs: tuple[int, ...] = ()
        tail = 0
        if self.track_blocks:
            hs = req.block_hashes
            tail = max(p - len(hs) * req.hash_block_tokens, 0)
            blocks = self._blocks[index]
            new = 0
            for h in hs:
                c = blocks.get(h)
                if c is None:
                    blocks[h] = 1
                    new += 1
                else:
                    blocks[h] = c + 1
            self.active_tokens[index] += new * req.hash_block_tokens + tail
        self._sent[req.id] = _Sent(index, p, pf, False, hs, tail)
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
            blocks = self._blocks[i]
            gone = 0
            for h in s.hashes:
                c = blocks[h]
                if c == 1:
                    del blocks[h]
                    gone += 1
                else:
                    blocks[h] = c - 1
            self.active_tokens[i] -= gone * req.hash_block_tokens + s.tail_tokens

    # --------------------------------------------------------------------- queries
    def new_tokens(self, index: int, hashes: Sequence[int], block_tokens: int) -> int:
        """Tokens of the hashed prefix ``hashes`` not already active on ``index``. The active
        set of an instance is a union of chains, hence prefix-closed: binary search."""
        if index >= len(self._blocks):
            return len(hashes) * block_tokens
        blocks = self._blocks[index]
        lo, hi = 0, len(hashes)
        while lo < hi:
            mid = (lo + hi) // 2
            if hashes[mid] in blocks:
                lo = mid + 1
            else:
                hi = mid
        return (len(hashes) - lo) * block_tokens


__all__ = ["Ledger"]
