"""The router's own accounting of what it sent to each instance and has not seen finish.

A gateway sees no engine internals, so a router that balances load must count what it sent:
taken at dispatch (``route``), released on every path out (``on_finish``), the prompt-side
part released when the first token comes back (``on_first_token``). Per instance index:
``requests`` (sent, not finished), ``routed`` (ever sent) and ``prefill_tokens`` (prompts of
requests whose first token has not come back). Releases are idempotent and keyed by request
id, so a runtime may report a request twice without the counts drifting.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.core.views import RequestView


@dataclass(slots=True)
class _Sent:
    index: int
    prefill_tokens: int
    prefilled: bool


class Ledger:
    __slots__ = ("_sent", "prefill_tokens", "requests", "routed")

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.routed: list[int] = []
        self.prefill_tokens: list[int] = []
        self._sent: dict[int, _Sent] = {}

    def grow(self, n: int) -> None:
        """Make room for instance indices below ``n``."""
        k = n - len(self.requests)
        if k > 0:
            for xs in (self.requests, self.routed, self.prefill_tokens):
                xs.extend([0] * k)

    def __len__(self) -> int:
        """Requests sent and not finished, over all instances."""
        return len(self._sent)

    def index_of(self, req: RequestView) -> int | None:
        """Where ``req`` was sent (None if it is not outstanding)."""
        s = self._sent.get(req.id)
        return None if s is None else s.index

    def dispatch(self, req: RequestView, index: int, prefill_tokens: int | None = None) -> None:
        """``req`` was sent to ``index``; ``prefill_tokens`` (default: the whole prompt) is
        the prefill work it is charged until its first token."""
        if req.id in self._sent:
            self.finish(req)
        if index >= len(self.requests):
            self.grow(index + 1)
        pf = req.prompt_tokens if prefill_tokens is None else max(int(prefill_tokens), 0)
        self._sent[req.id] = _Sent(index, pf, False)
        self.requests[index] += 1
        self.routed[index] += 1
        self.prefill_tokens[index] += pf

    def first_token(self, req: RequestView) -> None:
        """The first output token of ``req`` came back: its prompt is computed."""
        s = self._sent.get(req.id)
        if s is not None and not s.prefilled:
            s.prefilled = True
            self.prefill_tokens[s.index] -= s.prefill_tokens

    def finish(self, req: RequestView) -> None:
        """``req`` left the instance it was sent to (any path)."""
        s = self._sent.pop(req.id, None)
        if s is None:
            return
        self.requests[s.index] -= 1
        if not s.prefilled:
            self.prefill_tokens[s.index] -= s.prefill_tokens
