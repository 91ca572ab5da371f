"""APEX dispatch: admit a request into host (CPU-attended) KV only while the CPU attention it
adds stays hidden under the GPU step (Fan et al., "APEX: Asynchronous Parallel CPU-GPU
Execution for Online LLM Inference on Constrained GPUs", arXiv:2506.03296 v4).

APEX "predicts the execution times of CPU and GPU subtasks and dynamically dispatches them to
maximize overlap". With CPU offload (``offload:`` in the scenario, :mod:`fleetsched.perf.offload`)
the engine's step-time model splits a step into its GPU and CPU parts. This admission policy
admits the head of the waiting queue as vLLM does (its first chunk's blocks are free) when the
request's KV fits on the GPU; when it would spill into host memory, it predicts the decode step
once the request and the running prefills decode (``n + 1`` tokens over the running context
plus the new prompt) and admits only if the CPU part is at most ``(1 + slack)`` times the GPU
part: beyond that the CPU, not the GPU, would set the pace. Without offload it is ``aggressive``.

Differences from APEX: APEX profiles the hardware and fits its predictor; here the predictor
is the step-time model itself (exact by construction). APEX also chooses between Asynchronous
Overlap and Asymmetric Pipelining per iteration; only the overlap is modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class APEXAdmission:
    #: A refusal stays a refusal until a request finishes (which ends a fast-forward run): while
    #: decodes only add context, the GPU part stops growing once its KV is full and the CPU
    #: part keeps growing.
    monotone = True

    def __init__(self, slack: float = 0.0) -> None:
        if not slack >= 0:
            raise InputError(f"slack must be >= 0, got {slack!r}")
        self.slack = float(slack)

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool:
        if need_blocks > engine.kv.free:
            return False
        parts = getattr(engine.step_model, "parts", None)
        if parts is None:  # no CPU offload
            return True
        n = engine.ndec + len(engine.prefilling) + 1
        ctx = engine.base_sum + engine.ndec * (engine.dstep + 1)
        ctx += sum(s.target for s in engine.prefilling.values()) + seq.target
        gpu, cpu = parts(0, 0.0, n, ctx)
        return cpu <= gpu * (1 + self.slack)
