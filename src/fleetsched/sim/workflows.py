"""Runs agent workflows in the simulator: releases each call when its parents are done.

:class:`WorkflowDriver` turns a stream of :class:`~fleetsched.workload.workflows.Workflow`
into requests. Root calls form the kernel's (sorted) arrival stream; every other call is
released by :meth:`WorkflowDriver.on_finish` when the last of its parents finishes, ``gap_s``
later (the tool call), and the kernel routes it then. A call's prompt continues the context of
the parent it ``extends``: its prefix hashes repeat the parent's prompt and output blocks, so
an engine that kept them serves the call from cache. A call whose parent could not run
(rejected: it never fits in KV memory) is never released; its workflow is counted failed.

Each call carries a :class:`~fleetsched.core.request.CallInfo`: the workflow's absolute
deadline, the estimated time of the longest path of calls and gaps still to run after it (for
urgency policies), and the gap before the next call that extends its context (for KV
retention). Estimates use ``prefill_s_per_token`` and ``decode_s_per_token`` (defaults: an
8B model on one H100 at moderate load), as a workflow framework would from profiles.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fleetsched.core.request import BLOCK_TOKENS, CallInfo, Request, chain_hashes
from fleetsched.metrics.records import RequestRecord
from fleetsched.metrics.workflows import WorkflowRecord
from fleetsched.workload.workflows import Workflow

_SYS_SALT = 0x5EED_5151
_CALL_SALT = 0x5EED_CA11


@dataclass(slots=True)
class _Active:
    wf: Workflow
    first_id: int
    prompt: list[int]  # prompt tokens of each call
    children: list[list[int]]
    waiting: list[int]  # parents not finished yet, per call
    rest_s: list[float]
    chains: list[tuple[int, ...] | None]  # full-block hashes of prompt + output, per call
    finish_s: float = -math.inf
    done: int = 0
    inflight: int = 0
    failed: bool = False
    deadline_s: float | None = None


class WorkflowDriver:
    """Releases workflow calls for the kernel and keeps one record per workflow."""

    def __init__(
        self,
        workflows: Iterable[Workflow],
        *,
        prefill_s_per_token: float = 2e-5,
        decode_s_per_token: float = 0.015,
    ) -> None:
        self._workflows = iter(workflows)
        self.prefill_s_per_token = prefill_s_per_token
        self.decode_s_per_token = decode_s_per_token
        self._active: dict[int, _Active] = {}
        self._next_id = 0
        #: One record per workflow that ended (finished or failed), in the order they ended.
        self.records: list[WorkflowRecord] = []
        self._sys_chains: dict[int, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ estimates
    def estimate_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """Estimated service time of one call (no queueing)."""
        return prompt_tokens * self.prefill_s_per_token + output_tokens * self.decode_s_per_token

    # ------------------------------------------------------------------ the kernel's side
    def requests(self) -> Iterator[Request]:
        """The root calls of every workflow, sorted by release time (lazily)."""
        pending: list[tuple[float, int, Request]] = []
        nxt = next(self._workflows, None)
        ctr = 0
        while pending or nxt is not None:
            if nxt is not None and (not pending or nxt.arrival_s <= pending[0][0]):
                for req in self._start(nxt):
                    ctr += 1
                    heapq.heappush(pending, (req.arrival_s, ctr, req))
                nxt = next(self._workflows, None)
            else:
                yield heapq.heappop(pending)[2]

    def on_finish(self, req: Request, rec: RequestRecord, now: float) -> list[Request]:
        """A call ended at ``now`` (``rec.finish_s`` NaN: rejected); return the calls it
        releases, each with ``arrival_s >= now``."""
        info = req.call
        if info is None:
            return []
        a = self._active.get(info.workflow)
        if a is None:  # pragma: no cover - a call of an unknown workflow
            return []
        a.inflight -= 1
        out: list[Request] = []
        if math.isnan(rec.finish_s):
            a.failed = True
        else:
            a.done += 1
            a.finish_s = max(a.finish_s, rec.finish_s)
            if not a.failed:
                for ch in a.children[info.index]:
                    a.waiting[ch] -= 1
                    if a.waiting[ch] == 0:
                        out.append(self._release(a, ch, now + a.wf.calls[ch].gap_s))
        if a.inflight == 0 and (a.failed or a.done == len(a.wf.calls)):
            self._end(a)
        return out

    def finish(self) -> list[WorkflowRecord]:
        """Close the workflows still open (the run stopped early) and return every record,
        by workflow id."""
        for a in list(self._active.values()):
            a.failed = a.failed or a.done < len(a.wf.calls)
            self._end(a)
        self.records.sort(key=lambda r: r.id)
        return self.records

    # ------------------------------------------------------------------ internals
    def _start(self, wf: Workflow) -> list[Request]:
        calls = wf.calls
        n = len(calls)
        children: list[list[int]] = [[] for _ in range(n)]
        for i, c in enumerate(calls):
            for p in c.parents:
                children[p].append(i)
        rest = [0.0] * n
        prompt = wf.context_tokens()
        for i in range(n - 1, -1, -1):
            best = 0.0
            for ch in children[i]:
                c = calls[ch]
                best = max(best, c.gap_s + self.estimate_s(prompt[ch], c.output_tokens) + rest[ch])
            rest[i] = best
        a = _Active(
            wf=wf,
            first_id=self._next_id,
            prompt=prompt,
            children=children,
            waiting=[len(c.parents) for c in calls],
            rest_s=rest,
            chains=[None] * n,
            deadline_s=None if wf.deadline_s is None else wf.arrival_s + wf.deadline_s,
        )
        self._next_id += n
        self._active[wf.id] = a
        return [
            self._release(a, i, wf.arrival_s + c.gap_s)
            for i, c in enumerate(calls)
            if not c.parents
        ]

    def _release(self, a: _Active, i: int, t: float) -> Request:
        wf = a.wf
        c = wf.calls[i]
        bt = BLOCK_TOKENS
        prompt = a.prompt[i]
        total_blocks = (prompt + c.output_tokens) // bt
        if c.extends is None:
            base = self._system_chain(wf.system_id, wf.system_tokens // bt)
        else:
            parent = a.chains[c.extends]
            assert parent is not None  # a parent's chain is made when it is released
            base = parent
        base = base[:total_blocks]
        own = [hash((_CALL_SALT, wf.id, i, j)) for j in range(len(base), total_blocks)]
        chain = base + chain_hashes(own, base[-1] if base else 0)
        a.chains[i] = chain
        extending = [ch for ch in a.children[i] if wf.calls[ch].extends == i]
        a.inflight += 1
        return Request(
            id=a.first_id + i,
            arrival_s=t,
            prompt_tokens=prompt,
            output_tokens=c.output_tokens,
            block_hashes=chain[: prompt // bt],
            output_block_hashes=chain[prompt // bt :],  # a child's prompt repeats its output
            hash_block_tokens=bt,
            tenant=wf.tenant,
            priority=wf.priority,
            session_id=f"wf{wf.id}",
            slo_class=wf.slo_class,
            model=c.model,
            call=CallInfo(
                workflow=wf.id,
                index=i,
                deadline_s=a.deadline_s,
                rest_s=a.rest_s[i],
                next_gap_s=min(wf.calls[ch].gap_s for ch in extending) if extending else None,
            ),
        )

    def _system_chain(self, system_id: int, blocks: int) -> tuple[int, ...]:
        chain = self._sys_chains.get(system_id, ())
        if len(chain) < blocks:
            new = [hash((_SYS_SALT, system_id, j)) for j in range(len(chain), blocks)]
            chain = chain + chain_hashes(new, chain[-1] if chain else 0)
            self._sys_chains[system_id] = chain
        return chain

    def _end(self, a: _Active) -> None:
        del self._active[a.wf.id]
        wf = a.wf
        self.records.append(
            WorkflowRecord(
                id=wf.id,
                kind=wf.kind,
                slo_class=wf.slo_class,
                tenant=wf.tenant,
                arrival_s=wf.arrival_s,
                deadline_s=math.nan if a.deadline_s is None else a.deadline_s,
                finish_s=math.nan if a.failed else a.finish_s,
                calls=len(wf.calls),
                calls_done=a.done,
            )
        )
