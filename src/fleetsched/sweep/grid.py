"""Run many scenario variants in parallel (worker processes or Ray tasks), with a cache.

* :func:`parse_grid` / :func:`expand_grid`: ``'router=a,b;rate_scale=0.5,1'`` -> every
  combination, each a scenario built by :func:`fleetsched.core.config.apply_overrides`
  (validated before anything runs).
* :func:`run_points`: summaries of many scenarios, locally in processes or as Ray tasks;
  each point is cached under :func:`scenario_key`, the content hash of its fully resolved
  scenario (files it reads are hashed by content), so a re-run only simulates what is
  missing; a failing point reports its error and does not stop the others.
* :func:`run_many`: the simple form (summaries in order, the first error raised).
* :func:`capacity_search`: bisection on a monotone predicate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetsched.core.config import (
    PolicyRef,
    Scenario,
    apply_overrides,
    parse_override_value,
)
from fleetsched.core.config import _resolve_paths as resolve_paths
from fleetsched.errors import FleetschedError, InputError


def variant(
    scenario: Scenario,
    *,
    router: str | None = None,
    router_params: dict[str, Any] | None = None,
    rate_scale: float | None = None,
    admission: str | None = None,
    ordering: str | None = None,
    preemption: str | None = None,
    policy_params: dict[str, dict[str, Any]] | None = None,
    engine: dict[str, Any] | None = None,
    name: str | None = None,
) -> Scenario:
    """A copy of ``scenario`` with some policies, the rate scale or engine knobs changed."""
    pol = scenario.policies
    params = policy_params or {}
    for field, value in (
        ("router", router),
        ("admission", admission),
        ("ordering", ordering),
        ("preemption", preemption),
    ):
        if value is not None:
            extra = router_params if field == "router" else params.get(field)
            pol = pol.model_copy(update={field: PolicyRef(name=value, params=extra or {})})
    wl = scenario.workload
    if rate_scale is not None:
        wl = wl.model_copy(
            update={"transforms": wl.transforms.model_copy(update={"rate_scale": rate_scale})}
        )
    cluster = scenario.cluster
    if engine:
        cluster = [
            g.model_copy(update={"engine": g.engine.model_copy(update=engine)}) for g in cluster
        ]
    update: dict[str, Any] = {"policies": pol, "workload": wl, "cluster": cluster}
    if name:
        update["name"] = name
    return Scenario.model_validate(scenario.model_copy(update=update).model_dump())


# ---------------------------------------------------------------------- grids
def parse_grid(text: str) -> dict[str, list[Any]]:
    """``'router=a,b;rate_scale=0.5,1;cluster.0.count=4,8'`` -> {path: [values]}.

    Values are read as YAML scalars (``8`` -> 8, ``0.5`` -> 0.5, ``true``); the paths are any
    scenario field (see :func:`~fleetsched.core.config.apply_overrides`).
    """
    grid: dict[str, list[Any]] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        path, eq, values = part.partition("=")
        path = path.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not path or not vals:
            raise InputError(f"--grid: {part!r} is not PATH=VALUE[,VALUE...]")
        if path in grid:
            raise InputError(f"--grid: {path!r} appears twice")
        grid[path] = [parse_override_value(v) for v in vals]
    if not grid:
        raise InputError("--grid needs at least one PATH=VALUES")
    return grid


def expand_grid(
    scenario: Scenario, grid: dict[str, list[Any]]
) -> list[tuple[dict[str, Any], Scenario]]:
    """Every combination of ``grid`` (the last path varies fastest), each applied to
    ``scenario``; every point is validated here, before anything runs."""
    paths = list(grid)
    out = []
    for combo in itertools.product(*(grid[p] for p in paths)):
        ov = dict(zip(paths, combo, strict=True))
        try:
            out.append((ov, apply_overrides(scenario, ov)))
        except InputError as e:
            point = ", ".join(f"{k}={v}" for k, v in ov.items())
            raise InputError(f"--grid point {point}: {e}") from None
    return out


# ---------------------------------------------------------------------- cache keys
_FILE_DIGESTS: dict[tuple[str, float, int], str] = {}


def _file_digest(path: str) -> str:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return f"missing:{path}"
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _FILE_DIGESTS[key] = "sha256:" + h.hexdigest()
    return digest


def scenario_key(scenario: Scenario) -> str:
    """Content hash of the fully resolved scenario: every field, with each file it reads
    (trace, empirical length files, step-time profiles) replaced by the hash of its bytes,
    so moving a trace keeps the cache and editing it does not."""
    data = scenario.model_dump(mode="json")
    wl = data["workload"]
    if wl.get("trace"):
        wl["trace"] = _file_digest(wl["trace"])
    syn = wl.get("synthetic")
    if syn:
        for part in ("prompt", "output"):
            if syn[part].get("path"):
                syn[part]["path"] = _file_digest(syn[part]["path"])
    for g in data["cluster"]:
        if g.get("profile"):
            g["profile"] = _file_digest(g["profile"])
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------- running
@dataclass(slots=True)
class PointResult:
    """One scenario's outcome. ``summary`` has no ``wall_s`` (kept in ``wall_s`` here), so
    equal scenarios give byte-identical summaries whatever ran them."""

    summary: dict[str, Any] | None
    error: str | None = None
    cached: bool = False
    wall_s: float = 0.0
    key: str = ""
    #: The error was bad input (a FleetschedError), not a failure of the simulator.
    input_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


#: What a worker sends back: summary, error text, wall seconds, whether it was bad input.
_Outcome = tuple[dict[str, Any] | None, str | None, float, bool]


def _simulate_point(scenario: Scenario) -> _Outcome:
    """Run one point; errors come back as text so one bad point does not stop the rest."""
    t0 = time.perf_counter()
    try:
        from fleetsched.sim.run import simulate

        summary = simulate(scenario).summary
        summary.pop("wall_s", None)
        return summary, None, time.perf_counter() - t0, False
    except FleetschedError as e:
        return None, str(e), time.perf_counter() - t0, True
    except Exception as e:  # a bug or a resource error in one point: report it, go on
        return None, f"{type(e).__name__}: {e}", time.perf_counter() - t0, False


def _cache_read(cache_dir: Path | None, key: str) -> dict[str, Any] | None:
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("summary") if isinstance(data, dict) else None


def _cache_write(cache_dir: Path, key: str, summary: dict[str, Any], wall_s: float) -> None:
    from fleetsched.metrics.summary import _jsonable

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"key": key, "wall_s": wall_s, "summary": _jsonable(summary)}))
    tmp.replace(cache_dir / f"{key}.json")


def _run_local(
    todo: list[tuple[int, Scenario]], jobs: int, done: Callable[[int, _Outcome], None]
) -> None:
    if jobs <= 1:
        for i, sc in todo:
            done(i, _simulate_point(sc))
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(_simulate_point, sc): i for i, sc in todo}
        for f in as_completed(futs):
            try:
                out = f.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                out = (None, f"{type(e).__name__}: {e}", 0.0, False)
            done(futs[f], out)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("the Ray runner needs ray: pip install 'fleetsched[ray]'") from None
    return ray


def _absolute_paths(sc: Scenario) -> Scenario:
    """The scenario with the files it reads named by absolute path (Ray workers may run in
    another working directory)."""
    return resolve_paths(sc, Path.cwd())


def _run_ray(
    todo: list[tuple[int, Scenario]],
    jobs: int,
    address: str | None,
    done: Callable[[int, _Outcome], None],
) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None and jobs:
            kw["num_cpus"] = jobs
        ray.init(address=address, **kw)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_simulate_point)
        refs = {task.remote(_absolute_paths(sc)): i for i, sc in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    out = ray.get(ref)
                except Exception as e:  # the task's worker died
                    out = (None, f"{type(e).__name__}: {e}", 0.0, False)
                done(refs[ref], out)
    finally:
        if started:
            ray.shutdown()


def run_points(
    scenarios: Sequence[Scenario],
    *,
    jobs: int = 0,
    ray: bool = False,
    ray_address: str | None = None,
    cache_dir: str | Path | None = None,
    on_done: Callable[[int, PointResult], None] | None = None,
) -> list[PointResult]:
    """Results of ``scenarios`` in order: cached ones read back, the others simulated in
    ``jobs`` processes (0 = CPU count) or as Ray tasks (a local Ray when no address)."""
    cache = Path(cache_dir) if cache_dir is not None else None
    results: list[PointResult | None] = [None] * len(scenarios)
    keys = [scenario_key(sc) for sc in scenarios]
    todo: list[tuple[int, Scenario]] = []
    for i, sc in enumerate(scenarios):
        hit = _cache_read(cache, keys[i])
        if hit is not None:
            results[i] = PointResult(hit, cached=True, key=keys[i])
            if on_done:
                on_done(i, results[i])  # type: ignore[arg-type]
        else:
            todo.append((i, sc))

    def done(i: int, out: _Outcome) -> None:
        summary, error, wall, bad_input = out
        res = PointResult(summary, error, wall_s=wall, key=keys[i], input_error=bad_input)
        if summary is not None and cache is not None:
            _cache_write(cache, keys[i], summary, wall)
        results[i] = res
        if on_done:
            on_done(i, res)

    if todo:
        n = min(len(todo), jobs or os.cpu_count() or 1)
        if ray:
            _run_ray(todo, jobs, ray_address, done)
        else:
            _run_local(todo, n, done)
    return [r for r in results if r is not None]


def run_many(
    scenarios: Sequence[Scenario],
    jobs: int = 0,
    on_done: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Summaries of ``scenarios``, in order; ``jobs`` worker processes (0 = CPU count).
    The first failing scenario raises (``run_points`` reports failures instead)."""
    results = run_points(
        scenarios, jobs=jobs, on_done=(lambda i, r: on_done(i)) if on_done else None
    )
    out = []
    for r in results:
        if r.summary is None:
            raise (InputError if r.input_error else RuntimeError)(r.error)
        out.append({**r.summary, "wall_s": r.wall_s})
    return out


def capacity_search(
    meets: Callable[[float], bool],
    low: float,
    high: float,
    *,
    rel_tol: float = 0.05,
    max_iter: int = 12,
) -> float:
    """Largest rate scale in [low, high] for which ``meets(scale)`` holds (bisection, assuming
    it holds below some threshold and fails above). Returns ``low`` if it fails at ``low``."""
    if not meets(low):
        return low
    if meets(high):
        return high
    for _ in range(max_iter):
        if high / low - 1 <= rel_tol:
            break
        mid = (low * high) ** 0.5
        if meets(mid):
            low = mid
        else:
            high = mid
    return low


def map_processes(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    jobs: int = 0,
    on_done: Callable[[int], None] | None = None,
) -> list[Any]:
    """``fn(item)`` of each item, in order, in ``jobs`` worker processes (0 = CPU count):
    for runs that return more than a summary (``compare --report``). ``fn`` must be
    picklable (a module-level function or a ``functools.partial`` of one)."""
    jobs = min(len(items), jobs or os.cpu_count() or 1)
    results: list[Any] = [None] * len(items)
    if jobs <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if on_done:
                on_done(i)
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for f in as_completed(futs):
            results[futs[f]] = f.result()
            if on_done:
                on_done(futs[f])
    return results
