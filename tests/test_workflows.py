"""Agent workflows: the JSONL format and its errors, the generators, the release rule in the
simulator (property test) and the per-workflow metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetsched.core.config import (
    EngineConfig,
    InstanceGroup,
    Scenario,
    WorkflowGenConfig,
    WorkloadConfig,
)
from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.errors import InputError
from fleetsched.metrics.workflows import WorkflowRecord, summarize_workflows
from fleetsched.sim.run import simulate
from fleetsched.sim.workflows import WorkflowDriver
from fleetsched.workload import (
    Call,
    Workflow,
    detect_format,
    generate_workflows,
    load_trace,
    read_workflows,
    write_workflows,
)

WF = {
    "id": 0,
    "arrival_s": 0.0,
    "deadline_s": 30.0,
    "system_tokens": 64,
    "calls": [
        {"name": "plan", "prompt_tokens": 40, "output_tokens": 24},
        {"name": "act", "parents": ["plan"], "extends": "plan", "gap_s": 1.5,
         "prompt_tokens": 30, "output_tokens": 8},
    ],
}  # fmt: skip


def _write(tmp_path: Path, *lines: object) -> Path:
    p = tmp_path / "wf.jsonl"
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return p


# ---------------------------------------------------------------------------------- format


def test_round_trip_and_detection(tmp_path: Path) -> None:
    wfs = list(generate_workflows(WorkflowGenConfig(num_workflows=5, shape="text2sql"), 3))
    p = tmp_path / "w.jsonl"
    assert write_workflows(wfs, p) == 5
    assert detect_format(p) == "workflow"
    assert list(read_workflows(p)) == wfs
    with pytest.raises(InputError, match="workflow trace"):
        load_trace(p)


def test_context_tokens_extend_the_parent() -> None:
    # plan: 64 shared + 40 new = 104 prompt; act: 104 + 24 output + 30 new = 158.
    wf = Workflow(
        0,
        0.0,
        (Call("plan", 40, 24), Call("act", 30, 8, (0,), 0, 1.5), Call("fresh", 5, 1, (0,))),
        system_tokens=64,
    )
    assert wf.context_tokens() == [104, 158, 69]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"calls": []}, ":1: calls: expected a non-empty list"),
        ({"nope": 1}, ":1: (line): unknown key(s) 'nope'"),
        ({"calls": [{"name": "a", "prompt_tokens": 1}]}, "calls[0]: missing key(s) output_tokens"),
        (
            {"calls": [WF["calls"][0], {**WF["calls"][1], "parents": ["plna"]}]},
            "calls[1].parents: unknown call 'plna': parents must be earlier calls",
        ),
        (
            {"calls": [WF["calls"][0], {**WF["calls"][1], "parents": []}]},
            "calls[1].extends: 'plan' is not one of this call's parents",
        ),
        ({"calls": [WF["calls"][0], WF["calls"][0]]}, "calls[1].name: duplicate call name"),
        (
            {"calls": [WF["calls"][0], {**WF["calls"][1], "gap_s": -1}]},
            "calls[1].gap_s: must be >= 0",
        ),
        ({"deadline_s": 0}, "deadline_s: must be > 0"),
        (
            {"calls": [{**WF["calls"][0], "output_tokens": 0}]},
            "calls[0].output_tokens: must be at least 1",
        ),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, edit: dict, message: str) -> None:
    p = _write(tmp_path, {**WF, **edit})
    with pytest.raises(InputError, match=__import__("re").escape(message)):
        list(read_workflows(p))


def test_bad_line_reports_its_line_number(tmp_path: Path) -> None:
    p = _write(tmp_path, WF, "", {**WF, "id": 1, "arrival_s": -2})
    with pytest.raises(InputError) as e:
        list(read_workflows(p))
    assert e.value.where == f"{p}:3" and "arrival_s" in e.value.message
    p = _write(tmp_path, {**WF, "arrival_s": 5.0}, {**WF, "arrival_s": 1.0})
    with pytest.raises(InputError, match=r":2: timestamp goes backwards"):
        list(read_workflows(p))


def test_cli_exits_2_with_one_line(tmp_path: Path, cli) -> None:
    p = _write(tmp_path, WF, {**WF, "calls": [{**WF["calls"][0], "parents": ["x"]}]})
    code, _out, err = cli("simulate", "--trace", str(p), "--instances", "1")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert f"{p}:2: calls[0].parents: unknown call 'x'" in err


def test_cli_simulates_a_workflow_trace(tmp_path: Path, cli) -> None:
    wfs = generate_workflows(WorkflowGenConfig(num_workflows=4, deadline_s=60), 0)
    p = tmp_path / "w.jsonl"
    write_workflows(wfs, p)
    code, out, err = cli("simulate", "--trace", str(p), "--instances", "1")
    assert code == 0, err
    assert "workflow deadline attainment" in out and "4/4" in out


# ------------------------------------------------------------------------------ generators


def test_generator_shapes() -> None:
    def one(**kw: object) -> Workflow:
        return next(iter(generate_workflows(WorkflowGenConfig(num_workflows=1, **kw), 0)))

    chain = one(shape="chain", calls=5)
    assert [c.parents for c in chain.calls] == [(), (0,), (1,), (2,), (3,)]
    assert [c.extends for c in chain.calls] == [None, 0, 1, 2, 3]
    fan = one(shape="fan_out", calls=3)
    assert [c.name for c in fan.calls] == ["plan", "branch0", "branch1", "branch2", "join"]
    join = fan.calls[-1]
    assert join.parents == (0, 1, 2, 3) and join.extends == 0
    # The join reads every branch's output: its new tokens include them.
    assert join.prompt_tokens > sum(fan.calls[b].output_tokens for b in (1, 2, 3))
    sql = one(shape="text2sql", calls=2, revisions=2)
    names = [c.name for c in sql.calls]
    assert names == [
        "keywords", "candidate0", "revise0.0", "revise0.1", "candidate1", "revise1.0",
        "revise1.1", "unit_tests", "evaluate",
    ]  # fmt: skip
    ev = sql.calls[-1]
    assert set(ev.parents) == {names.index(n) for n in ("unit_tests", "revise0.1", "revise1.1")}
    assert sql.calls[names.index("revise1.0")].extends == names.index("candidate1")


def test_generator_is_seeded_and_lazy() -> None:
    cfg = WorkflowGenConfig(num_workflows=10**9, shape="fan_out")
    a = generate_workflows(cfg, 5)
    b = generate_workflows(cfg, 5)
    assert [next(a) for _ in range(20)] == [next(b) for _ in range(20)]
    c = [w.arrival_s for _, w in zip(range(20), generate_workflows(cfg, 6), strict=False)]
    assert c != [w.arrival_s for _, w in zip(range(20), generate_workflows(cfg, 5), strict=False)]


# -------------------------------------------------------------------------- the release rule


def test_children_share_the_parent_context_hashes() -> None:
    wf = Workflow(
        0,
        0.0,
        (Call("plan", 40, 24), Call("a", 30, 8, (0,), 0, 1.0), Call("b", 30, 8, (0,), 0, 1.0)),
        system_tokens=64,
    )
    d = WorkflowDriver([wf, Workflow(1, 0.5, wf.calls, system_tokens=64)])
    roots = list(d.requests())
    plan0, plan1 = roots
    assert [r.id for r in roots] == [0, 3] and plan0.session_id == "wf0"
    # Only the shared system prompt's 4 blocks are common to the two workflows.
    assert plan0.block_hashes[:4] == plan1.block_hashes[:4]
    assert plan0.block_hashes[4:6] != plan1.block_hashes[4:6]
    rec = type("R", (), {"finish_s": 2.0})()
    a, b = d.on_finish(plan0, rec, 2.0)
    assert (a.arrival_s, b.arrival_s) == (3.0, 3.0)
    # a's prompt = plan's 104 + 24 output + 30 = 158 tokens; plan's prompt + output fill
    # (104 + 24) // 16 = 8 full blocks, which a and b repeat; then they differ.
    assert a.prompt_tokens == 158 and len(a.block_hashes) == 158 // BLOCK_TOKENS
    assert a.block_hashes[:6] == plan0.block_hashes
    assert a.block_hashes[:8] == b.block_hashes[:8] and a.block_hashes[8] != b.block_hashes[8]
    assert a.call is not None and a.call.next_gap_s is None
    assert plan0.call is not None and plan0.call.next_gap_s == 1.0


_CALL = st.tuples(
    st.integers(1, 300), st.integers(1, 40), st.floats(0, 3), st.integers(0, 2**16)
)  # prompt, output, gap, parent-pick bits


@st.composite
def workflows(draw: st.DrawFn) -> list[Workflow]:
    out = []
    t = 0.0
    for w in range(draw(st.integers(1, 4))):
        t += draw(st.floats(0, 2))
        calls: list[Call] = []
        for i, (p, o, g, bits) in enumerate(draw(st.lists(_CALL, min_size=1, max_size=6))):
            parents = tuple(j for j in range(i) if bits >> j & 1)
            ext = parents[bits % len(parents)] if parents and bits & 64 else None
            calls.append(Call(f"c{i}", p, o, parents, ext, g))
        out.append(Workflow(w, t, tuple(calls), system_tokens=draw(st.sampled_from([0, 48]))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wfs=workflows(),
    instances=st.integers(1, 2),
    retain=st.sampled_from(["none", "ttl", "workflow"]),
)
def test_calls_never_start_before_parents_finish_plus_gap(
    wfs: list[Workflow], instances: int, retain: str
) -> None:
    sc = Scenario(
        workload=WorkloadConfig(workflows=WorkflowGenConfig()),
        cluster=[
            InstanceGroup(
                count=instances, engine=EngineConfig(num_gpu_blocks=160, max_num_batched_tokens=256)
            )
        ],
        policies={"router": {"name": "least_requests"}, "retention": {"name": retain}},
    )
    res = simulate(sc, workflows=wfs)
    recs = {r.id: r for r in res.records}
    first = 0
    for wf, wrec in zip(wfs, res.workflows, strict=True):
        finish = {}
        for i, c in enumerate(wf.calls):
            r = recs[first + i]
            ready = max((finish[p] for p in c.parents), default=wf.arrival_s)
            assert r.arrival_s == pytest.approx(ready + c.gap_s, abs=1e-9)
            assert r.arrival_s >= ready + c.gap_s - 1e-12
            if not math.isnan(r.first_scheduled_s):
                assert r.first_scheduled_s >= r.arrival_s
            finish[i] = r.finish_s
        assert wrec.calls_done == len(wf.calls) and wrec.finished
        assert wrec.finish_s == max(finish.values())
        first += len(wf.calls)
    assert len(res.records) == first


def test_a_call_that_can_never_run_fails_its_workflow() -> None:
    wf = Workflow(0, 0.0, (Call("big", 5000, 4), Call("next", 10, 4, (0,), 0, 1.0)))
    ok = Workflow(1, 0.1, (Call("small", 10, 4),))
    sc = Scenario(
        workload=WorkloadConfig(workflows=WorkflowGenConfig()),
        cluster=[InstanceGroup(engine=EngineConfig(num_gpu_blocks=32))],
    )
    res = simulate(sc, workflows=[wf, ok])
    assert [r.id for r in res.records] == [0, 2]  # "next" was never released
    assert [w.finished for w in res.workflows] == [False, True]
    assert res.summary["workflows"]["failed"] == 1


# --------------------------------------------------------------------------------- metrics


def test_workflow_summary_by_hand() -> None:
    nan = math.nan
    recs = [
        WorkflowRecord(0, "chain", "d", "t", 0.0, 10.0, 8.0, 3, 3),  # e2e 8, met
        WorkflowRecord(1, "chain", "d", "t", 2.0, 12.0, 14.0, 3, 3),  # e2e 12, late
        WorkflowRecord(2, "fan", "d", "t", 4.0, nan, 6.0, 2, 2),  # e2e 2, no deadline
        WorkflowRecord(3, "fan", "d", "t", 5.0, 20.0, nan, 2, 1),  # failed: missed
    ]
    s = summarize_workflows(recs)
    assert (s["workflows"], s["completed"], s["failed"], s["calls"]) == (4, 3, 1, 10)
    assert s["e2e_s"]["mean"] == pytest.approx((8 + 12 + 2) / 3)
    assert s["e2e_s"]["p50"] == 8.0
    assert s["deadline_attainment"] == pytest.approx(1 / 3)
    assert s["goodput_wf_s"] == pytest.approx(1 / 14)  # 1 met over 0 .. 14 s
    assert s["per_kind"]["fan"]["completed"] == 1
