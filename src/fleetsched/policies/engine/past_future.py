"""Past-Future admission (LightLLM): admit while the batch's predicted *peak* KV use fits
(Gong et al., ASPLOS 2025).

Gong et al., "Past-Future Scheduler for LLM Serving under SLA Guarantees", ASPLOS'25; the
scheduler of LightLLM (github.com/ModelTC/lightllm, ``req_queue/continues_batch``).

*Past*: the output lengths of the last ``window`` requests that finished on this engine.
*Future*: for every running request and the candidate, a total output length is predicted as
the ``quantile`` of the past lengths *longer than what the request has already generated*
(``g``): ``L = Q_q({L' in past : L' > g})``. With no such length (cold start, or a request that
outlived the whole past) the prediction is ``max(prior_output_tokens, g + 1)``.

Each request then holds ``current = prompt + g`` tokens and will grow by ``remaining = L - g``
before it finishes and frees its KV. Sorting remaining lengths in decreasing order
``r_1 >= r_2 >= ... >= r_n``, right before the j-th longest finishes (``r_j`` decode steps
from now) only requests ``1..j`` are left, each ``r_j`` tokens longer, so the batch's KV use
over the future peaks at::

    peak = max_j  sum_{i <= j} ceil((current_i + r_j) / block_tokens)     (blocks)

(LightLLM's ``max_j(cumsum(current)_j + r_j * j)`` in tokens, here with each request rounded
up to whole blocks). The candidate is admitted when ``peak <= total KV blocks`` (and its
first blocks are free now). An engine with nothing running always admits (the engine has
already rejected requests that can never fit).

The peak shrinks as requests approach their predicted ends, so a refusal can turn into an
admission without anything finishing: ``monotone`` is False.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from fleetsched.errors import InputError
from fleetsched.policies.engine._history import LengthHistory
from fleetsched.policies.engine._params import check_quantile

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


def peak_blocks(current: np.ndarray, remaining: np.ndarray, block_tokens: int) -> int:
    """Peak over the future of ``sum ceil((current_i + t) / block_tokens)`` over the requests
    with ``remaining_i >= t`` (each request frees its KV when it finishes).

    Exact, in O(n log n + n * block_tokens) numpy work (no n x n matrix).
    """
    n = len(current)
    if n == 0:
        return 0
    bt = block_tokens
    order = np.argsort(-remaining, kind="stable")
    r = remaining[order].astype(np.int64)
    a = current[order].astype(np.int64) + (bt - 1)
    # ceil((c + r) / bt) = floor((a + r) / bt) = a // bt + r // bt + [a % bt + r % bt >= bt]
    rho = a % bt
    onehot = np.zeros((n, bt + 1), dtype=np.int64)
    onehot[np.arange(n), rho] = 1
    upto = np.cumsum(onehot, axis=0)  # upto[j, v]: requests i <= j with residue v
    at_least = np.cumsum(upto[:, ::-1], axis=1)[:, ::-1]  # requests i <= j with residue >= v
    thresh = bt - r % bt  # in 1..bt; column bt is all zeros
    carries = at_least[np.arange(n), thresh]
    j = np.arange(1, n + 1, dtype=np.int64)
    peaks = np.cumsum(a // bt) + j * (r // bt) + carries
    return int(peaks.max())


class PastFutureAdmission:
    monotone = False

    def __init__(
        self,
        quantile: float = 0.9,
        prior_output_tokens: int = 1024,
        window: int = 2000,
    ) -> None:
        self.q = check_quantile(quantile, "quantile")
        if prior_output_tokens < 1:
            raise InputError(f"prior_output_tokens must be >= 1, got {prior_output_tokens}")
        self.prior = int(prior_output_tokens)
        self.past = LengthHistory(window)
        self.last_peak = 0  # peak (blocks) of the last admission check, for inspection
        self._past_arr = np.empty(0, dtype=np.int64)  # numpy copy of the past, by version
        self._past_version = 0

    def on_finish(self, seq: Seq, now: float) -> None:
        if not math.isnan(now):  # rejected requests produced nothing
            self.past.add(seq.generated)

    def predict_total(self, generated: int) -> int:
        """Predicted total output of a request that has produced ``generated`` tokens."""
        v = self.past.quantile(self.q, above=generated)
        return max(self.prior, generated + 1) if v is None else v

    def predict_totals(self, generated: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`predict_total`."""
        if self._past_version != self.past.version:
            self._past_arr = np.asarray(self.past.values, dtype=np.int64)
            self._past_version = self.past.version
        past = self._past_arr
        m = len(past)
        fallback = np.maximum(self.prior, generated + 1)
        if m == 0:
            return fallback
        lo = np.searchsorted(past, generated, side="right")
        cnt = m - lo
        # nearest rank as in LengthHistory.quantile, per request
        idx = lo + np.minimum(np.maximum(np.ceil(self.q * cnt - 1e-9), 1), np.maximum(cnt, 1)) - 1
        est = past[np.minimum(idx.astype(np.int64), m - 1)]
        return np.where(cnt > 0, est, fallback)

    def batch_peak(self, seqs: list[Seq], engine: Instance) -> int:
        """Predicted peak KV blocks of ``seqs`` (running requests and/or candidates)."""
        generated = engine.generated_tokens
        pg = np.array([(s.req.prompt_tokens, generated(s)) for s in seqs], dtype=np.int64)
        gen = pg[:, 1]
        total = self.predict_totals(gen)
        return peak_blocks(pg[:, 0] + gen, total - gen, engine.bt)

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool:
        if need_blocks > engine.kv.free:
            return False
        if not engine.running:
            self.last_peak = 0
            return True
        self.last_peak = self.batch_peak([*engine.running.values(), seq], engine)
        return self.last_peak <= engine.kv.num_blocks
