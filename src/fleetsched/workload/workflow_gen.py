"""Generated agent workflows from a :class:`~fleetsched.core.config.WorkflowGenConfig`.

Shapes (every call draws its new prompt tokens from ``prompt`` and its output from
``output``; every gap is Exp(``gap_s``)):

* ``chain``: ``calls`` calls, each extending the previous one after a tool gap (a ReAct-style
  agent loop: think, act, observe, repeat; SAGA's SWE-bench and WebArena agents).
* ``fan_out``: a planning call, ``calls`` parallel branches that each extend the plan, and a
  join that extends the plan and reads every branch's output (its new prompt tokens include
  them): map-reduce and parallel tool use.
* ``text2sql``: HEXGEN-TEXT2SQL's pipeline after CHESS (Peng et al., arXiv 2505.05286, Sec.
  2): keyword extraction over the database schema (the shared prefix), then after a
  retrieval gap ``calls`` SQL candidates generated in parallel, each revised ``revisions``
  times with an SQL-execution gap between revisions (self-correction), unit-test generation
  in parallel with them, and an evaluation call that reads every final candidate. Candidates
  and unit tests extend the keyword call's context; a revision extends its predecessor.

Randomness: one ``numpy.random.Generator(PCG64(seed))`` with spawned child streams for
arrivals, prompt lengths, output lengths and gaps, so changing one distribution leaves the
other draws unchanged. Lazy: memory stays bounded for any ``num_workflows``.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetsched.core.config import WorkflowGenConfig
from fleetsched.workload.synthetic import _Draws, _rng, arrival_times, length_sampler
from fleetsched.workload.workflows import Call, Workflow


def generate_workflows(cfg: WorkflowGenConfig, seed: int = 0) -> Iterator[Workflow]:
    """Stream ``cfg.num_workflows`` workflows sorted by arrival time, ids 0..N-1."""
    streams = _rng(seed).spawn(4)
    arrivals = arrival_times(cfg.arrival, streams[0])
    prompt = _Draws(length_sampler(cfg.prompt, streams[1]))
    output = _Draws(length_sampler(cfg.output, streams[2]))
    mean_gap = cfg.gap_s
    gap = _Draws(lambda n: streams[3].exponential(mean_gap, n)) if mean_gap > 0 else None
    shape = _SHAPES[cfg.shape]
    return _stream(cfg, arrivals, shape, prompt, output, gap)


def _stream(cfg, arrivals, shape, prompt, output, gap) -> Iterator[Workflow]:
    def draw_gap() -> float:
        return gap() if gap is not None else 0.0

    for i in range(cfg.num_workflows):
        t = next(arrivals)
        yield Workflow(
            id=i,
            arrival_s=t,
            calls=tuple(shape(cfg, prompt, output, draw_gap)),
            deadline_s=cfg.deadline_s,
            system_tokens=cfg.system_prompt_tokens,
            kind=cfg.shape,
            slo_class=cfg.slo_class,
            tenant=cfg.tenant,
            model=cfg.model,
        )


def _chain(cfg, prompt, output, gap) -> list[Call]:
    calls = [Call("step0", prompt(), output(), model=cfg.model)]
    for k in range(1, cfg.calls):
        calls.append(Call(f"step{k}", prompt(), output(), (k - 1,), k - 1, gap(), cfg.model))
    return calls


def _fan_out(cfg, prompt, output, gap) -> list[Call]:
    m = cfg.model
    calls = [Call("plan", prompt(), output(), model=m)]
    for k in range(cfg.calls):
        calls.append(Call(f"branch{k}", prompt(), output(), (0,), 0, gap(), m))
    branches = tuple(range(1, cfg.calls + 1))
    read = sum(calls[b].output_tokens for b in branches)
    calls.append(Call("join", prompt() + read, output(), (0, *branches), 0, gap(), m))
    return calls


def _text2sql(cfg, prompt, output, gap) -> list[Call]:
    m = cfg.model
    calls = [Call("keywords", prompt(), output(), model=m)]
    finals: list[int] = []
    for k in range(cfg.calls):
        calls.append(Call(f"candidate{k}", prompt(), output(), (0,), 0, gap(), m))
        last = len(calls) - 1
        for r in range(cfg.revisions):
            calls.append(Call(f"revise{k}.{r}", prompt(), output(), (last,), last, gap(), m))
            last = len(calls) - 1
        finals.append(last)
    calls.append(Call("unit_tests", prompt(), output(), (0,), 0, gap(), m))
    tests = len(calls) - 1
    read = sum(calls[f].output_tokens for f in finals)
    calls.append(Call("evaluate", prompt() + read, output(), (tests, *finals), tests, gap(), m))
    return calls


_SHAPES = {"chain": _chain, "fan_out": _fan_out, "text2sql": _text2sql}
