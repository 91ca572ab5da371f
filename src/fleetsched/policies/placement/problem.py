"""Placement problems: model replicas (GPUs, host memory, GPU kind and memory, priority,
anti-affinity, co-location) onto nodes, and how to score a placement.

Input is two YAML files, validated with errors naming ``file:line: field.path``::

    # nodes.yaml
    nodes:
      - {name: a, gpu: H100-SXM, gpus: 8, memory_gb: 2048, count: 4}   # a-0 .. a-3
      - {name: l, gpu: L40S, gpus: 4, memory_gb: 512}

    # deployments.yaml
    deployments:
      - {name: llama70b, replicas: 3, gpus_per_replica: 4, gpu_memory_gb: 80,
         memory_gb: 256, priority: 10, anti_affinity: true}
      - {name: embed, replicas: 4, gpus_per_replica: 1, gpu: [L40S, A100-80GB],
         colocate_with: llama70b}
    existing:              # already running, fixed: it only takes capacity
      - {name: llama70b, node: a-0, gpus: 4, memory_gb: 256}

A placement assigns each replica to a node or leaves it pending. Its *value* is
lexicographic in priority: one replica of a higher priority outweighs every replica of the
lower priorities together, as in Kubernetes, where a pending higher-priority pod preempts
lower ones. Between placements of equal value the one with fewer *fragmented* nodes is
better: a node is fragmented when it has free GPUs but fewer than any replica that may run
there needs, so those GPUs are stranded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetsched.core.config import parse_yaml_model, read_text
from fleetsched.errors import InputError
from fleetsched.perf.hardware import GiB, get_gpu


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Model):
    name: str
    gpu: str = "H100-SXM"
    gpus: int = Field(8, ge=0)
    #: Memory of each GPU; defaults to the GPU catalog's figure (any name is allowed when set).
    gpu_memory_gb: float | None = Field(None, gt=0)
    #: Host memory for replicas; 0 = not constrained.
    memory_gb: float = Field(0.0, ge=0)
    #: Identical nodes named ``name-0 .. name-(count-1)`` (just ``name`` when 1).
    count: int = Field(1, ge=1)


class NodesFile(_Model):
    nodes: list[NodeSpec] = Field(min_length=1)


class DeploymentSpec(_Model):
    name: str
    replicas: int = Field(1, ge=1)
    gpus_per_replica: int = Field(1, ge=0)
    #: Allowed GPU kinds (None = any).
    gpu: str | list[str] | None = None
    #: Minimum memory of each GPU.
    gpu_memory_gb: float = Field(0.0, ge=0)
    #: Host memory per replica.
    memory_gb: float = Field(0.0, ge=0)
    priority: int = 0
    #: At most one replica of this deployment per node (existing ones included).
    anti_affinity: bool = False
    #: Each replica goes on a node that holds a replica of this deployment (or existing).
    colocate_with: str | None = None


class ExistingSpec(_Model):
    name: str
    node: str
    gpus: int = Field(0, ge=0)
    memory_gb: float = Field(0.0, ge=0)


class DeploymentsFile(_Model):
    deployments: list[DeploymentSpec] = Field(min_length=1)
    existing: list[ExistingSpec] = []

    @model_validator(mode="after")
    def _unique(self) -> DeploymentsFile:
        seen: set[str] = set()
        for d in self.deployments:
            if d.name in seen:
                raise ValueError(f"deployment name {d.name!r} appears twice")
            seen.add(d.name)
        return self


@dataclass(slots=True)
class Node:
    name: str
    gpu: str
    gpus: int  # free GPUs after existing placements
    gpu_memory_gb: float
    memory_mib: int  # free host memory (UNLIMITED when not constrained)
    total_gpus: int = 0
    total_memory_mib: int = 0  # 0 = not constrained


@dataclass(slots=True)
class Deployment:
    name: str
    replicas: int
    gpus: int
    memory_mib: int
    priority: int
    anti_affinity: bool
    colocate_with: str | None
    #: Node indices whose kind and GPU memory allow this deployment.
    eligible: list[int]


@dataclass(slots=True)
class Problem:
    nodes: list[Node]
    deployments: list[Deployment]
    #: Existing replicas per (deployment name, node index).
    existing: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def replicas(self) -> list[tuple[int, int]]:
        """Every replica to place as (deployment index, replica number)."""
        return [(d, r) for d, dep in enumerate(self.deployments) for r in range(dep.replicas)]

    def weights(self) -> list[int]:
        """Integer weight of one replica of each deployment, lexicographic in priority."""
        levels = sorted({d.priority for d in self.deployments})
        weight: dict[int, int] = {}
        w = 1
        for p in levels:
            weight[p] = w
            w *= 1 + sum(d.replicas for d in self.deployments if d.priority == p)
        if w >= 2**62:
            raise InputError(
                f"{len(levels)} priority levels with these replica counts overflow the "
                "lexicographic objective; merge some priority levels"
            )
        return [weight[d.priority] for d in self.deployments]


#: A placement: per deployment, the node index of each replica (None = pending).
Assignment = list[list[int | None]]


@dataclass(slots=True)
class PlacementResult:
    assignment: Assignment
    method: str
    #: Whether the solver proved no placement has a higher value (greedy: never claimed).
    optimal: bool = False
    solve_s: float = 0.0
    #: Best upper bound on the value the solver proved (None when not known).
    bound: int | None = None
    #: Whether the fragmentation count is proved minimal for this value.
    fragmentation_optimal: bool = False


#: Free memory of a node whose host memory is not constrained (MiB).
UNLIMITED = 2**40


def _mib(gb: float, up: bool = True) -> int:
    """GB (GiB) as whole MiB: demands round up, capacities down, so integer checks are safe."""
    x = gb * 1024
    return math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)


def _canon_gpu(name: str) -> str:
    try:
        return get_gpu(name).name
    except InputError:
        return name.strip()


def build_problem(nodes: NodesFile, deps: DeploymentsFile, deps_source: str = "") -> Problem:
    """Expand node groups, subtract existing placements and check what can be checked."""
    where = deps_source or "deployments"
    out_nodes: list[Node] = []
    for i, spec in enumerate(nodes.nodes):
        mem = spec.gpu_memory_gb
        if mem is None:
            try:
                mem = get_gpu(spec.gpu).mem_bytes / GiB
            except InputError as e:
                raise InputError(f"nodes.{i}.gpu: {e}; or give gpu_memory_gb") from None
        for j in range(spec.count):
            out_nodes.append(
                Node(
                    name=spec.name if spec.count == 1 else f"{spec.name}-{j}",
                    gpu=_canon_gpu(spec.gpu),
                    gpus=spec.gpus,
                    gpu_memory_gb=float(mem),
                    memory_mib=_mib(spec.memory_gb, up=False) or UNLIMITED,
                    total_gpus=spec.gpus,
                    total_memory_mib=_mib(spec.memory_gb, up=False),
                )
            )
    index: dict[str, int] = {}
    for n in out_nodes:
        if n.name in index:
            raise InputError(f"node name {n.name!r} appears twice", "nodes")
        index[n.name] = len(index)
    existing: dict[tuple[str, int], int] = {}
    for k, e in enumerate(deps.existing):
        ni = index.get(e.node)
        if ni is None:
            raise InputError(f"existing.{k}.node: no node named {e.node!r}", where)
        n = out_nodes[ni]
        n.gpus -= e.gpus
        n.memory_mib -= _mib(e.memory_gb)
        if n.gpus < 0 or n.memory_mib < 0:
            raise InputError(
                f"existing.{k}: the existing replicas on node {e.node!r} exceed its capacity",
                where,
            )
        existing[(e.name, ni)] = existing.get((e.name, ni), 0) + 1
    names = {d.name for d in deps.deployments} | {e.name for e in deps.existing}
    out_deps: list[Deployment] = []
    for k, d in enumerate(deps.deployments):
        kinds = None
        if d.gpu is not None:
            kinds = {_canon_gpu(g) for g in ([d.gpu] if isinstance(d.gpu, str) else d.gpu)}
        if d.colocate_with is not None and d.colocate_with not in names:
            raise InputError(
                f"deployments.{k}.colocate_with: no deployment or existing replica named "
                f"{d.colocate_with!r}",
                where,
            )
        if d.colocate_with == d.name:
            raise InputError(f"deployments.{k}.colocate_with: a deployment cannot name itself")
        eligible = [
            i
            for i, n in enumerate(out_nodes)
            if (kinds is None or n.gpu in kinds) and n.gpu_memory_gb >= d.gpu_memory_gb
        ]
        full = [
            s
            for s in nodes.nodes
            if (kinds is None or _canon_gpu(s.gpu) in kinds)
            and d.gpus_per_replica <= s.gpus
            and (s.memory_gb == 0 or d.memory_gb <= s.memory_gb)
        ]
        if not eligible or not full:
            need = f"{d.gpus_per_replica} GPUs" + (f" of {sorted(kinds)}" if kinds else "")
            if d.gpu_memory_gb:
                need += f" with >= {d.gpu_memory_gb:g} GB each"
            if d.memory_gb:
                need += f" and {d.memory_gb:g} GB of host memory"
            raise InputError(
                f"deployments.{k} ({d.name}): no node can ever hold one replica (needs {need})",
                where,
            )
        out_deps.append(
            Deployment(
                name=d.name,
                replicas=d.replicas,
                gpus=d.gpus_per_replica,
                memory_mib=_mib(d.memory_gb),
                priority=d.priority,
                anti_affinity=d.anti_affinity,
                colocate_with=d.colocate_with,
                eligible=eligible,
            )
        )
    return Problem(out_nodes, out_deps, existing)


def load_problem(nodes_path: str | Path, deployments_path: str | Path) -> Problem:
    nodes = parse_yaml_model(
        read_text(nodes_path, "nodes file"), str(nodes_path), NodesFile, "a nodes file"
    )
    deps = parse_yaml_model(
        read_text(deployments_path, "deployments file"),
        str(deployments_path),
        DeploymentsFile,
        "a deployments file",
    )
    return build_problem(nodes, deps, str(deployments_path))


# ---------------------------------------------------------------------- scoring
def violations(problem: Problem, a: Assignment) -> list[str]:
    """Every constraint ``a`` breaks (empty when the placement is valid)."""
    bad: list[str] = []
    gpus = [0] * len(problem.nodes)
    mem = [0] * len(problem.nodes)
    per = [[0] * len(problem.nodes) for _ in problem.deployments]
    for d, dep in enumerate(problem.deployments):
        for n in a[d]:
            if n is None:
                continue
            if n not in dep.eligible:
                bad.append(f"{dep.name} on {problem.nodes[n].name}: wrong GPU kind or memory")
            gpus[n] += dep.gpus
            mem[n] += dep.memory_mib
            per[d][n] += 1
    for i, node in enumerate(problem.nodes):
        if gpus[i] > node.gpus:
            bad.append(f"{node.name}: {gpus[i]} GPUs used of {node.gpus}")
        if mem[i] > node.memory_mib:
            bad.append(f"{node.name}: {mem[i]} MiB of host memory used of {node.memory_mib}")
    names = {dep.name: d for d, dep in enumerate(problem.deployments)}
    for d, dep in enumerate(problem.deployments):
        for i, node in enumerate(problem.nodes):
            here = per[d][i] + problem.existing.get((dep.name, i), 0)
            if dep.anti_affinity and here > 1:
                bad.append(f"{dep.name}: {here} replicas on {node.name} (anti-affinity)")
            c = dep.colocate_with
            if c is not None and per[d][i]:
                other = problem.existing.get((c, i), 0)
                if c in names:
                    other += per[names[c]][i]
                if not other:
                    bad.append(f"{dep.name} on {node.name} without {c} (co-location)")
    return bad


def value(problem: Problem, a: Assignment) -> int:
    """Priority-lexicographic value: sum of the weights of the placed replicas."""
    w = problem.weights()
    return sum(w[d] * sum(n is not None for n in a[d]) for d in range(len(a)))


def min_replica_gpus(problem: Problem) -> list[int]:
    """Per node, the fewest GPUs any replica that may run there needs (0 if none may)."""
    out = []
    for i in range(len(problem.nodes)):
        needs = [d.gpus for d in problem.deployments if i in d.eligible and d.gpus > 0]
        out.append(min(needs) if needs else 0)
    return out


def fragmented_nodes(problem: Problem, a: Assignment) -> int:
    """Nodes left with free GPUs that no replica allowed there can use."""
    free = [n.gpus for n in problem.nodes]
    for d, dep in enumerate(problem.deployments):
        for n in a[d]:
            if n is not None:
                free[n] -= dep.gpus
    need = min_replica_gpus(problem)
    return sum(1 for f, m in zip(free, need, strict=True) if 0 < f < m or (f > 0 and m == 0))


def placed_by_priority(problem: Problem, a: Assignment) -> dict[int, tuple[int, int]]:
    """priority -> (placed, wanted), highest priority first."""
    out: dict[int, list[int]] = {}
    for d, dep in enumerate(problem.deployments):
        row = out.setdefault(dep.priority, [0, 0])
        row[0] += sum(n is not None for n in a[d])
        row[1] += dep.replicas
    return {p: (v[0], v[1]) for p, v in sorted(out.items(), reverse=True)}
