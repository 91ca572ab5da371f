"""Fit a :class:`LlamaCppProfile` to client-side measurements, knowing the engine steps.

A measured interval (a TTFT, an inter-token gap, a stream's first-to-last token span) spans
some engine steps, each of some ubatches, checkpoints and cache copies. Which ones is not
guessed: the measured requests (same prompts, same slots, same send times) are replayed
through the llama.cpp engine model (:class:`~fleetsched.engine.llamacpp.LlamaCppInstance`),
which records every step's plan. The measured value is then linear in the profile's
coefficients — ``request_s`` once for a TTFT, plus the features of every step inside the
interval (a step in flight when the request arrives counts for the part of it left) — and
non-negative least squares on the relative errors gives the coefficients. The replay's
timing depends on the coefficients only through such partial steps and interleavings, so the
fit iterates: replay with the current profile, fit, repeat until the coefficients settle.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from fleetsched.calibrate.plan import BLOCK, Measured
from fleetsched.core.config import LlamaCppConfig
from fleetsched.core.request import Request, chain_hashes
from fleetsched.engine.llamacpp import LlamaCppInstance
from fleetsched.errors import FleetschedError
from fleetsched.perf.models import ModelSpec
from fleetsched.perf.nnls import nnls
from fleetsched.perf.ubatch import LINEAR_COEFFICIENTS, LlamaCppProfile, StepPlan, plan_features
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator


@dataclass(slots=True)
class Row:
    """One fitted measurement: the mean of its samples, measured and predicted."""

    name: str
    samples: int
    measured_s: float
    predicted_s: float
    noise_cv: float  # std / mean of the samples (run-to-run and within-run spread)
    features: np.ndarray = field(repr=False)
    offset_s: float = 0.0  # fixed costs (cache copies) the fit does not price
    fitted: bool = True  # False: reported as a check, not used by the fit

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


@dataclass(slots=True)
class FitResult:
    profile: LlamaCppProfile
    rows: list[Row]
    #: Requests whose reused prompt tokens the engine model got wrong: (row, model, server).
    cache_mismatches: list[tuple[str, int, int]]
    cache_checked: int
    iterations: int


def requests_of(runs: list[Measured], indices: list[int], start: float) -> list[Request]:
    """Requests ``indices`` of ``runs`` (one experiment) as the simulator's workload: ids are
    run indices, arrivals keep their offsets from the experiment's first send, from ``start``."""
    t0 = min(runs[i].send_s for i in indices)
    reqs = []
    for i in sorted(indices, key=lambda i: (runs[i].send_s, i)):
        p = runs[i].probe
        reqs.append(
            Request(
                id=i,
                arrival_s=start + runs[i].send_s - t0,
                prompt_tokens=p.prompt_tokens,
                output_tokens=p.n_predict,
                block_hashes=chain_hashes(p.blocks),
                hash_block_tokens=BLOCK,
                extra={"id_slot": p.id_slot},
            )
        )
    return reqs


@dataclass(slots=True)
class Replay:
    """The engine model's timeline of the measured requests."""

    steps: list[tuple[float, float, StepPlan]]
    tokens: dict[int, list[float]]  # run index -> token times
    arrival: dict[int, float]
    cached: dict[int, int]  # run index -> prompt tokens reused
    slot: dict[int, int]  # run index -> the slot that served it


def replay(
    runs: list[Measured], profile: LlamaCppProfile, engine: LlamaCppConfig, model: ModelSpec
) -> Replay:
    """Run the measured experiments through one engine model, each after the previous one
    ended (as the runner sent them), its requests at their offsets within the experiment."""
    inst = LlamaCppInstance(0, profile, engine, model)
    steps: list[tuple[float, float, StepPlan]] = []
    inst.step_observer = lambda a, b, p: steps.append((a, b, p))
    experiments: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(runs):
        experiments[m.instance].append(i)
    arrival: dict[int, float] = {}
    cached: dict[int, int] = {}
    t = 0.0
    for k in sorted(experiments):
        reqs = requests_of(runs, experiments[k], t)
        recs = Simulator([inst], make_router("round_robin")).run(reqs)
        for r in recs:
            arrival[r.id] = r.arrival_s
            cached[r.id] = r.cached_prompt_tokens
            t = max(t, r.finish_s if r.finished else r.arrival_s)
        t += 1.0  # the server idles between experiments
    tokens: dict[int, list[float]] = defaultdict(list)
    slot: dict[int, int] = {}
    for _, end, plan in steps:
        for rid, sid, _, out in plan.members:
            slot[rid] = sid
            if out:
                tokens[rid].append(end)
    return Replay(steps, dict(tokens), arrival, cached, slot)


def _interval_features(
    rp: Replay, a: float, b: float, table: int, copy_byte_s: float
) -> tuple[np.ndarray, float]:
    """Features and fixed seconds of the steps inside ``(a, b]``; a step that straddles
    ``a`` counts for its part after ``a``."""
    f = np.zeros(len(LINEAR_COEFFICIENTS) + table + 1)
    off = 0.0
    for start, end, plan in rp.steps:
        if end <= a or start >= b:
            continue
        dur = end - start
        frac = 1.0 if start >= a or dur <= 0 else (end - a) / dur
        f += frac * plan_features(plan, table)
        off += frac * plan.copy_bytes * copy_byte_s
    return f, off


def _samples(
    runs: list[Measured], rp: Replay, table: int, request_s: float, copy_byte_s: float
) -> dict[str, list[tuple[float, np.ndarray, float]]]:
    """(measured seconds, features, fixed seconds) of every measured interval, by row."""
    out: dict[str, list[tuple[float, np.ndarray, float]]] = defaultdict(list)
    groups: dict[int, list[int]] = defaultdict(list)  # streams of one experiment run
    for i, m in enumerate(runs):
        if m.probe.measure == "gaps" and m.status == 200 and len(m.token_s) >= 2:
            groups[m.instance].append(i)
    for i, m in enumerate(runs):
        p = m.probe
        if m.status != 200 or not m.token_s or not p.measure:
            continue
        sim = rp.tokens.get(i, [])
        if len(sim) != len(m.token_s):
            continue  # the model produced a different number of tokens (a rejection)
        if p.measure in ("ttft", "ttft_check"):
            f, off = _interval_features(rp, rp.arrival[i] + request_s, sim[0], table, copy_byte_s)
            f[-1] += 1.0
            out[p.row].append((m.token_s[0] - m.send_s, f, off))
        elif p.measure == "span" and len(sim) >= 2:
            f, off = _interval_features(rp, sim[0], sim[-1], table, copy_byte_s)
            out[p.row].append((m.token_s[-1] - m.token_s[0], f, off))
    for members in groups.values():
        lo = max(runs[i].token_s[0] for i in members)
        hi = min(runs[i].token_s[-1] for i in members)
        for i in members:
            ts, sim = runs[i].token_s, rp.tokens.get(i, [])
            if len(sim) != len(ts):
                continue
            for j in range(len(ts) - 1):
                if ts[j] >= lo and ts[j + 1] <= hi:
                    f, off = _interval_features(rp, sim[j], sim[j + 1], table, copy_byte_s)
                    out[runs[i].probe.row].append((ts[j + 1] - ts[j], f, off))
    return out


def trimmed(values: np.ndarray, frac: float = 0.1) -> np.ndarray:
    """Indices of ``values`` without the ``frac`` lowest and highest (for many samples)."""
    n = len(values)
    k = int(n * frac) if n >= 10 else 0
    order = np.argsort(values, kind="stable")
    return order[k : n - k]


def fit_llamacpp(
    runs: list[Measured],
    engine: LlamaCppConfig,
    model: ModelSpec,
    *,
    device: str,
    copy_byte_s: float,
    iterations: int = 8,
    notes: str = "",
    held_at_zero: tuple[str, ...] = (),
) -> FitResult:
    """Fit a profile to ``runs`` (see the module docstring). ``held_at_zero``: linear
    coefficients left out of the fit (0 in the profile), to compare a model without them."""
    table = engine.parallel
    unknown = set(held_at_zero) - set(LINEAR_COEFFICIENTS)
    if unknown:
        raise FleetschedError(f"held_at_zero: not a linear coefficient: {sorted(unknown)}")
    free = np.array([n not in held_at_zero for n in LINEAR_COEFFICIENTS] + [True] * (table + 1))
    prof = LlamaCppProfile(
        model=model.name,
        device=device,
        threads=engine.threads,
        ubatch_s=0.005,
        token_s=0.003,
        output_s=0.01,
        pair_s=1e-7,
        kv_read_s=1e-6,
        checkpoint_s=0.01,
        request_s=0.01,
        small_ubatch_s=[0.015 * (k + 1) for k in range(table)],
        copy_byte_s=copy_byte_s,
    ).model_copy(update=dict.fromkeys(held_at_zero, 0.0))
    rows: list[Row] = []
    checks = {m.probe.row for m in runs if m.probe.measure == "ttft_check"}
    done = 0
    while done < iterations:
        done += 1
        rp = replay(runs, prof, engine, model)
        samples = _samples(runs, rp, table, prof.request_s, copy_byte_s)
        if not samples:
            raise FleetschedError("no usable measurement (every request failed?)")
        rows = []
        for name, ss in samples.items():
            m = np.array([s[0] for s in ss])
            keep = trimmed(m)
            feats = np.mean([ss[k][1] for k in keep], axis=0)
            off = float(np.mean([ss[k][2] for k in keep]))
            mean = float(np.mean(m[keep]))
            cv = float(np.std(m) / np.mean(m)) if len(m) > 1 else float("nan")
            rows.append(Row(name, len(ss), mean, float("nan"), cv, feats, off, name not in checks))
        fitted = [r for r in rows if r.fitted]
        a = np.array([r.features for r in fitted])
        y = np.array([r.measured_s - r.offset_s for r in fitted])
        w = 1.0 / np.array([r.measured_s for r in fitted])
        coef = np.zeros(len(free))
        coef[free] = nnls(a[:, free] * w[:, None], y * w)
        new = _profile_from(prof, coef, table)
        change = np.max(
            np.abs(new.coefficients() - prof.coefficients())
            / np.maximum(np.abs(prof.coefficients()), 1e-12)
        )
        prof = new
        for r in rows:
            r.predicted_s = float(r.features @ coef + r.offset_s)
        if change < 1e-4:
            break
    rp = replay(runs, prof, engine, model)
    mismatches = []
    checked = 0
    for i, m in enumerate(runs):
        if m.status == 200 and m.cache_n >= 0:
            checked += 1
            if rp.cached[i] != m.cache_n:
                mismatches.append((m.probe.row or m.experiment, rp.cached[i], m.cache_n))
    cvs = [r.noise_cv for r in rows if np.isfinite(r.noise_cv)]
    prof = prof.model_copy(
        update={"noise_cv": float(np.median(cvs)) if cvs else None, "notes": notes}
    )
    return FitResult(prof, rows, mismatches, checked, done)


def _profile_from(base: LlamaCppProfile, coef: np.ndarray, table: int) -> LlamaCppProfile:
    n = len(LINEAR_COEFFICIENTS)
    update: dict[str, object] = {name: float(coef[k]) for k, name in enumerate(LINEAR_COEFFICIENTS)}
    update["small_ubatch_s"] = [float(v) for v in coef[n : n + table]]
    update["request_s"] = float(coef[-1])
    return base.model_copy(update=update)
