"""Properties every registered router must have, prompt hashing, the registry, the
simulator contract and the routing benchmark."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fleetsched.core.config import EngineConfig
from fleetsched.core.hashing import block_hashes
from fleetsched.core.request import Request, chain_hashes
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError
from fleetsched.perf import FittedProfile
from fleetsched.policies.routing import ROUTERS, make_router
from fleetsched.sim.kernel import Simulator

REPO = Path(__file__).resolve().parents[1]
NAMES = sorted(ROUTERS)


def V(i: int, **kw: object) -> InstanceView:
    d: dict[str, object] = dict(
        index=i,
        name=f"inst-{i}",
        model="m",
        gpu="H100",
        role="mixed",
        healthy=True,
        queue_len=i % 3,
        running=(7 * i) % 5,
        kv_utilization=(i % 4) / 5,
        free_blocks=800,
        total_blocks=1000,
        inflight_tokens=100 * i,
        cached_prefix_tokens=16 * (i % 3),
    )
    d.update(kw)
    return InstanceView(**d)  # type: ignore[arg-type]


def requests(n: int) -> list[RequestView]:
    out = []
    for k in range(n):
        ids = (k % 5, k % 11, k)
        out.append(
            RequestView(
                id=k,
                prompt_tokens=16 * len(ids) + 5,
                block_hashes=chain_hashes(ids),
                hash_block_tokens=16,
                tenant="t",
                priority=k % 2,
                session_id=f"s{k % 7}",
                slo_class="default",
                model=None,
                deadline_s=None,
            )
        )
    return out


def drive(name: str, views: list[InstanceView], n: int = 60, seed: int = 0) -> list[int]:
    r = make_router(name, seed=seed)
    picks = []
    for k, q in enumerate(requests(n)):
        i = r.route(q, views)
        picks.append(i)
        if k % 3 == 0:
            r.on_finish(q, i)
    return picks


# --------------------------------------------------------------------- every router
@pytest.mark.parametrize("name", NAMES)
def test_router_contract(name):
    r = make_router(name)
    assert isinstance(r.needs_views, bool) and isinstance(r.needs_prefix, bool)
    assert callable(r.route) and callable(r.on_finish)
    doc = sys.modules[type(r).__module__].__doc__ or ""
    assert len(doc) > 150, f"{name}: module docstring must cite its source"


@pytest.mark.parametrize("name", NAMES)
def test_single_instance(name):
    assert set(drive(name, [V(0)], n=20)) == {0}
    assert set(drive(name, [V(0, healthy=False)], n=5)) == {0}  # nothing healthy: answer


@pytest.mark.parametrize("name", NAMES)
def test_never_picks_unhealthy_when_a_healthy_one_exists(name):
    for down in ([2], [0, 1, 3], [0, 1, 2, 3, 4, 5, 6]):
        views = [V(i, healthy=i not in down) for i in range(8)]
        picks = drive(name, views)
        assert not set(picks) & set(down), (name, down)
        assert all(0 <= p < 8 for p in picks)
    views = [V(i, healthy=False) for i in range(4)]
    assert all(0 <= p < 4 for p in drive(name, views, n=10))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_picks(name):
    views = [V(i) for i in range(8)]
    assert drive(name, views, seed=7) == drive(name, views, seed=7)


@pytest.mark.parametrize("name", ["random", "power_of_two"])
def test_seed_changes_random_picks(name):
    views = [V(i, queue_len=0, running=0) for i in range(8)]
    assert drive(name, views, seed=1) != drive(name, views, seed=2)


def test_registry_errors():
    with pytest.raises(InputError, match="unknown router 'nope'"):
        make_router("nope")
    with pytest.raises(InputError, match="bad parameters for router 'least_kv'"):
        make_router("least_kv", {"bogus": 1})
    with pytest.raises(InputError, match="cache_aware"):
        make_router("cache_aware", {"load": "psychic"})
    assert make_router("dualmap", {"ttft_slo_s": 2.5}, seed=3).ttft_slo_s == 2.5


# ------------------------------------------------------------------ with the simulator
PROF = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.005,
    prefill_token_s=2e-5,
    prefill_pair_s=0.0,
    decode_token_s=1e-4,
    decode_ctx_token_s=3e-8,
)


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_the_simulator(name):
    roles = ["prefill", "prefill", "decode", "decode"] if name == "pd_disagg" else ["mixed"] * 4
    insts = [
        Instance(i, 2000, PROF, EngineConfig(), role=ro, kv_bytes_per_token=1000)
        for i, ro in enumerate(roles)
    ]
    rng = np.random.default_rng(0)
    reqs = []
    t = 0.0
    for k in range(150):
        t += float(rng.exponential(0.02))
        ids = (k % 4, k % 4 + 10, *range(1000 * k, 1000 * k + int(rng.integers(1, 20))))
        reqs.append(
            Request(
                k,
                t,
                16 * len(ids),
                int(rng.integers(1, 60)),
                block_hashes=chain_hashes(ids),
                session_id=f"s{k % 9}",
                priority=k % 3,
            )
        )
    sim = Simulator(insts, make_router(name), kv_link_bytes_s=1e9)
    recs = sim.run(reqs)
    assert len(recs) == 150 and all(r.finish_s >= r.arrival_s for r in recs)
    used = {r.instance for r in recs}
    assert used <= {0, 1, 2, 3}


# --------------------------------------------------------------------------- hashing
def test_block_hashes_chain_full_blocks_like_chain_hashes():
    toks = list(range(1000, 1000 + 70))
    hs = block_hashes(toks, 16)
    assert len(hs) == 4  # 70 tokens: 4 full blocks, the partial one is not hashed
    ids = [hash(tuple(toks[i : i + 16])) for i in range(0, 64, 16)]
    assert hs == chain_hashes(ids)
    assert block_hashes(np.asarray(toks, dtype=np.int64), 16) == hs
    assert block_hashes(tuple(toks), 16) == hs
    assert block_hashes(toks, 16, seed=5) == chain_hashes(ids, seed=5) != hs
    assert block_hashes(toks[:15], 16) == ()
    assert block_hashes(toks, 8) == chain_hashes(
        [hash(tuple(toks[i : i + 8])) for i in range(0, 64, 8)]
    )
    with pytest.raises(ValueError):
        block_hashes(toks, 0)


def test_block_hashes_prefix_property():
    a = list(range(200))
    b = a[:100] + [7] * 100
    ha, hb = block_hashes(a), block_hashes(b)
    assert ha[:6] == hb[:6]  # 96 shared tokens = 6 full blocks
    assert all(x != y for x, y in zip(ha[6:], hb[6:], strict=True))  # chained: differ after


def test_block_hashes_same_in_every_process():
    code = (
        "from fleetsched.core.hashing import block_hashes;"
        "print(block_hashes(list(range(300)), 16, 3))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    assert outs.pop().strip() == str(block_hashes(list(range(300)), 16, 3))


# ------------------------------------------------------------------------- benchmark
def test_bench_route_runs():
    spec = importlib.util.spec_from_file_location(
        "bench_route", REPO / "benchmarks" / "bench_route.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--instances", "8", "--decisions", "30", "--warmup", "5", "--json"])
    assert set(res["routers"]) == set(ROUTERS)
    assert res["routers"]["round_robin"]["vs_round_robin"] == 1.0
    assert all(r["median_us"] > 0 for r in res["routers"].values())
    assert res["hash_tokens_per_s"]["numpy"] > 0
