"""Agent workflows: DAGs of LLM calls with tool gaps, and their JSON Lines format.

A :class:`Workflow` starts at ``arrival_s`` and holds calls in an order where every parent
comes before its children. A call is *released* (it arrives at the serving fleet) ``gap_s``
seconds after the last of its parents finishes (a root call: after the workflow starts): the
gap is the tool call, retrieval or think time between LLM calls. A call whose ``extends`` names
a parent continues that parent's context: its prompt is the parent's prompt, the parent's
output, then ``prompt_tokens`` new tokens, so it shares the parent's KV cache prefix. A call
that extends nothing starts from the workflow's shared prefix (``system_tokens``: a system
prompt or database schema, identical across the workflows with the same ``system_id``).

After SAGA (Guo, Wu and Yiu, "SAGA: Workflow-Atomic Scheduling for AI Agent Inference on GPU
Clusters", arXiv 2605.00528: agents run tens to hundreds of chained calls whose context grows
across tool-call boundaries) and HEXGEN-TEXT2SQL (Peng et al., arXiv 2505.05286: multi-stage
text-to-SQL with parallel candidates, self-correction loops and an end-to-end deadline).

File format (one workflow per line; blank lines ignored; non-decreasing ``arrival_s``)::

    {"id": 0, "arrival_s": 0.0, "deadline_s": 30.0, "system_tokens": 1000,
     "calls": [
       {"name": "plan", "prompt_tokens": 400, "output_tokens": 120},
       {"name": "act", "parents": ["plan"], "extends": "plan", "gap_s": 1.5,
        "prompt_tokens": 300, "output_tokens": 80}]}

Workflow keys: ``id`` (int >= 0), ``arrival_s`` (s >= 0), ``calls`` (non-empty list) are
required; ``deadline_s`` (seconds after ``arrival_s``, > 0, or null), ``system_tokens`` (0),
``system_id`` (0), ``kind`` (""), ``slo_class`` ("default"), ``tenant`` ("default"),
``priority`` (0) and ``model`` (null) are optional. Call keys: ``name`` (unique in the
workflow), ``prompt_tokens`` and ``output_tokens`` (ints >= 1) are required; ``parents``
(names of earlier calls, []), ``extends`` (one of ``parents``, null), ``gap_s`` (>= 0, 0) and
``model`` (the workflow's) are optional. Unknown keys are errors, reported as
``file:line: calls[1].parents: ...``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetsched.errors import InputError, at_line
from fleetsched.workload._common import PathLike, check_not_empty
from fleetsched.workload.native import json_rows, write_json_rows

#: Keys of a workflow line and of a call.
WORKFLOW_KEYS = (
    "id",
    "arrival_s",
    "calls",
    "deadline_s",
    "system_tokens",
    "system_id",
    "kind",
    "slo_class",
    "tenant",
    "priority",
    "model",
)
CALL_KEYS = ("name", "prompt_tokens", "output_tokens", "parents", "extends", "gap_s", "model")


@dataclass(slots=True, frozen=True)
class Call:
    """One LLM call of a workflow (see the module docstring)."""

    name: str
    prompt_tokens: int  # new tokens, after the context it extends (or the shared prefix)
    output_tokens: int
    parents: tuple[int, ...] = ()  # indices of earlier calls that must finish first
    extends: int | None = None  # index of the parent whose context this prompt continues
    gap_s: float = 0.0
    model: str | None = None


@dataclass(slots=True, frozen=True)
class Workflow:
    """A DAG of calls that starts at ``arrival_s``; ``deadline_s`` is relative to it."""

    id: int
    arrival_s: float
    calls: tuple[Call, ...]
    deadline_s: float | None = None
    system_tokens: int = 0
    system_id: int = 0
    kind: str = ""
    slo_class: str = "default"
    tenant: str = "default"
    priority: int = 0
    model: str | None = None

    def context_tokens(self) -> list[int]:
        """Prompt length of each call: the context it extends (or the shared prefix) plus
        its new tokens."""
        out: list[int] = []
        for c in self.calls:
            if c.extends is None:
                base = self.system_tokens
            else:
                base = out[c.extends] + self.calls[c.extends].output_tokens
            out.append(base + c.prompt_tokens)
        return out


def workflow_is_line(obj: dict[str, Any]) -> bool:
    """Whether a parsed JSON line is a workflow (it has ``calls``)."""
    return "calls" in obj


# ------------------------------------------------------------------------------ reading


def read_workflows(path: PathLike) -> Iterator[Workflow]:
    """Stream the workflows of a JSONL file. Checks the file now; lines are read lazily."""
    p = Path(path)
    check_not_empty(p)
    return json_rows(p, workflow_from_dict, _no_workflows)


def _no_workflows(path: Path, line: int) -> InputError:
    return InputError("no workflows: the file has no data lines", at_line(path, line))


class _Line:
    """Field checks of one line, each error naming ``path:line`` and the field path."""

    __slots__ = ("line", "path")

    def __init__(self, path: Path, line: int) -> None:
        self.path, self.line = path, line

    def err(self, where: str, msg: str) -> InputError:
        return InputError(f"{where}: {msg}", at_line(self.path, self.line))

    def keys(self, d: object, where: str, allowed: tuple[str, ...], required: int) -> dict:
        if not isinstance(d, dict):
            raise self.err(where or "(line)", f"expected a JSON object, got {d!r}")
        missing = [k for k in allowed[:required] if k not in d]
        if missing:
            what = "a workflow" if not where else "a call"
            raise self.err(
                where or "(line)",
                f"missing key(s) {', '.join(missing)}: {what} needs "
                f"{', '.join(allowed[:required])}",
            )
        unknown = [k for k in d if k not in allowed]
        if unknown:
            raise self.err(
                where or "(line)",
                f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}",
            )
        return d

    def integer(self, v: object, where: str, lo: int | None) -> int:
        if type(v) is not int:
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise self.err(where, f"expected an integer, got {v!r}")
        if lo is not None and v < lo:
            raise self.err(where, f"must be at least {lo}, got {v}")
        return v

    def seconds(self, v: object, where: str, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.err(where, f"expected a finite number of seconds, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise self.err(where, f"must be {'> 0' if positive else '>= 0'}, got {v}")
        return float(v)

    def text(self, v: object, where: str, nullable: bool = False) -> str | None:
        if isinstance(v, str) or (nullable and v is None):
            return v
        raise self.err(where, f"expected a string{' or null' if nullable else ''}, got {v!r}")


def workflow_from_dict(d: dict[str, Any], path: Path, line: int) -> Workflow:
    """Validate one workflow object; errors name ``path:line`` and the field."""
    c = _Line(path, line)
    c.keys(d, "", WORKFLOW_KEYS, 3)
    raw_calls = d["calls"]
    if not isinstance(raw_calls, list) or not raw_calls:
        raise c.err("calls", f"expected a non-empty list of calls, got {raw_calls!r}")
    model = c.text(d.get("model"), "model", nullable=True)
    names: dict[str, int] = {}
    calls: list[Call] = []
    for i, rc in enumerate(raw_calls):
        where = f"calls[{i}]"
        c.keys(rc, where, CALL_KEYS, 3)
        name = c.text(rc["name"], f"{where}.name")
        assert name is not None
        if name in names:
            raise c.err(f"{where}.name", f"duplicate call name {name!r} (call {names[name]})")
        parents_raw = rc.get("parents", [])
        if not isinstance(parents_raw, list):
            raise c.err(f"{where}.parents", f"expected a list of call names, got {parents_raw!r}")
        parents: list[int] = []
        for p in parents_raw:
            if p not in names:
                before = ", ".join(names) or "none"
                raise c.err(
                    f"{where}.parents",
                    f"unknown call {p!r}: parents must be earlier calls (before it: {before})",
                )
            if names[p] in parents:
                raise c.err(f"{where}.parents", f"parent {p!r} listed twice")
            parents.append(names[p])
        ext = rc.get("extends")
        extends = None
        if ext is not None:
            if ext not in parents_raw:
                raise c.err(
                    f"{where}.extends",
                    f"{ext!r} is not one of this call's parents "
                    f"({', '.join(map(str, parents_raw)) or 'none'})",
                )
            extends = names[ext]
        calls.append(
            Call(
                name=name,
                prompt_tokens=c.integer(rc["prompt_tokens"], f"{where}.prompt_tokens", 1),
                output_tokens=c.integer(rc["output_tokens"], f"{where}.output_tokens", 1),
                parents=tuple(parents),
                extends=extends,
                gap_s=c.seconds(rc.get("gap_s", 0.0), f"{where}.gap_s"),
                model=c.text(rc.get("model", model), f"{where}.model", nullable=True),
            )
        )
        names[name] = i
    deadline = d.get("deadline_s")
    return Workflow(
        id=c.integer(d["id"], "id", 0),
        arrival_s=c.seconds(d["arrival_s"], "arrival_s"),
        calls=tuple(calls),
        deadline_s=None if deadline is None else c.seconds(deadline, "deadline_s", True),
        system_tokens=c.integer(d.get("system_tokens", 0), "system_tokens", 0),
        system_id=c.integer(d.get("system_id", 0), "system_id", 0),
        kind=c.text(d.get("kind", ""), "kind") or "",
        slo_class=c.text(d.get("slo_class", "default"), "slo_class") or "default",
        tenant=c.text(d.get("tenant", "default"), "tenant") or "default",
        priority=c.integer(d.get("priority", 0), "priority", None),
        model=model,
    )


# ------------------------------------------------------------------------------ writing


def workflow_to_dict(wf: Workflow) -> dict[str, Any]:
    """The JSON object of a workflow (optional keys only when not at their default)."""
    d: dict[str, Any] = {"id": wf.id, "arrival_s": wf.arrival_s}
    for key, default in (
        ("deadline_s", None),
        ("system_tokens", 0),
        ("system_id", 0),
        ("kind", ""),
        ("slo_class", "default"),
        ("tenant", "default"),
        ("priority", 0),
        ("model", None),
    ):
        v = getattr(wf, key)
        if v != default:
            d[key] = v
    calls = []
    for c in wf.calls:
        cd: dict[str, Any] = {
            "name": c.name,
            "prompt_tokens": c.prompt_tokens,
            "output_tokens": c.output_tokens,
        }
        if c.parents:
            cd["parents"] = [wf.calls[p].name for p in c.parents]
        if c.extends is not None:
            cd["extends"] = wf.calls[c.extends].name
        if c.gap_s:
            cd["gap_s"] = c.gap_s
        if c.model != wf.model:
            cd["model"] = c.model
        calls.append(cd)
    d["calls"] = calls
    return d


def write_workflows(workflows: Iterable[Workflow], path: PathLike) -> int:
    """Write workflows as JSONL (``.gz`` compresses) under a temporary name renamed at the
    end; return how many were written."""
    return write_json_rows(map(workflow_to_dict, workflows), path, "workflows")
