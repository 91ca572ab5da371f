"""Tests of fleetsched.metrics.summary against hand-computed numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import SLOClass
from fleetsched.metrics import RequestRecord, summarize, summary_to_json

NAN = math.nan
SLOS = {"default": SLOClass(ttft_s=2.0, tpot_s=0.1), "gold": SLOClass(ttft_s=0.5, tpot_s=0.05)}


def rec(i, tenant, cls, prompt, out, arrival, inst, sched, first, finish, **kw):
    return RequestRecord(
        id=i,
        tenant=tenant,
        slo_class=cls,
        priority=0,
        prompt_tokens=prompt,
        output_tokens=out,
        arrival_s=arrival,
        instance=inst,
        dispatch_s=arrival,
        first_scheduled_s=sched,
        first_token_s=first,
        finish_s=finish,
        **kw,
    )


def hand_records() -> list[RequestRecord]:
    """Six requests; see the comments for what each one should score."""
    return [
        # ttft 1.0, tpot (3-1)/4 = 0.5 > 0.1 -> misses "default"; e2e 3.0, queue 0.25
        rec(0, "A", "default", 100, 5, 0.0, 0, 0.25, 1.0, 3.0, preemptions=2),
        # ttft 1.0, tpot 0.5/10 = 0.05 -> meets "default"; e2e 1.5, queue 0.5
        rec(1, "A", "default", 200, 11, 1.0, 1, 1.5, 2.0, 2.5, cached_prompt_tokens=100),
        # one output token: ttft 0.25 <= 0.5, tpot trivially met -> meets "gold"
        rec(2, "B", "gold", 100, 1, 2.0, 0, 2.0, 2.25, 2.25),
        # ttft 1.0 > 0.5 -> misses "gold"; tpot 1.0/2 = 0.5; e2e 2.0; queue 0.5
        rec(3, "B", "gold", 300, 3, 2.0, 1, 2.5, 3.0, 4.0, cached_prompt_tokens=150, migrations=1),
        # class "bronze" is not defined -> "default": ttft 0.5, tpot 0.0625 -> meets
        rec(4, "C", "bronze", 50, 2, 3.0, 2, 3.0, 3.5, 3.5625),
        # dispatched and started but never finished -> misses, excluded from latencies
        rec(5, "C", "default", 100, 10, 4.0, 2, 4.5, NAN, NAN,
            cached_prompt_tokens=50, preemptions=1),
    ]  # fmt: skip


@pytest.fixture
def summary():
    return summarize(hand_records(), SLOS, wall_s=0.125, num_instances=4)


def test_counts_and_duration(summary):
    assert summary["requests"] == 6
    assert summary["completed"] == 5
    assert summary["duration_s"] == 4.0  # last finish 4.0 - first arrival 0.0
    assert summary["wall_s"] == 0.125


def test_latency_distributions(summary):
    ttft = summary["ttft_s"]  # [1.0, 1.0, 0.25, 1.0, 0.5]
    assert ttft["mean"] == pytest.approx(0.75)
    assert ttft["p50"] == 1.0
    assert ttft["max"] == 1.0
    tpot = summary["tpot_s"]  # [0.5, 0.05, 0.5, 0.0625]; the 1-token request is excluded
    assert tpot["mean"] == pytest.approx((0.5 + 0.05 + 0.5 + 0.0625) / 4)
    assert tpot["p50"] == pytest.approx((0.0625 + 0.5) / 2)
    assert tpot["max"] == 0.5
    e2e = summary["e2e_s"]  # [3.0, 1.5, 0.25, 2.0, 0.5625]
    assert e2e["mean"] == pytest.approx(7.3125 / 5)
    assert e2e["p50"] == 1.5
    assert e2e["max"] == 3.0
    queue = summary["queue_s"]  # [0.25, 0.5, 0.0, 0.5, 0.0]
    assert queue["mean"] == pytest.approx(0.25)
    assert queue["max"] == 0.5
    norm = summary["norm_latency_s"]  # e2e / output tokens
    norms = [3.0 / 5, 1.5 / 11, 0.25 / 1, 2.0 / 3, 0.5625 / 2]
    assert norm["mean"] == pytest.approx(sum(norms) / 5)
    assert norm["max"] == pytest.approx(2.0 / 3)
    for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s", "norm_latency_s"):
        assert list(summary[key]) == ["mean", "p50", "p90", "p95", "p99", "max"]


def test_tpot_example_from_the_brief():
    r = rec(0, "t", "default", 10, 5, 0.0, 0, 0.0, 1.0, 3.0)
    assert summarize([r])["tpot_s"]["mean"] == 0.5


def test_throughput_goodput_attainment(summary):
    assert summary["throughput_req_s"] == pytest.approx(5 / 4)
    out_tokens = 5 + 11 + 1 + 3 + 2
    assert summary["throughput_tok_s"] == pytest.approx(out_tokens / 4)
    assert summary["output_tok_s"] == pytest.approx(out_tokens / 4)
    assert summary["input_tok_s"] == pytest.approx((100 + 200 + 100 + 300 + 50) / 4)
    # requests 1, 2 and 4 meet their SLO
    assert summary["goodput_req_s"] == pytest.approx(3 / 4)
    assert summary["slo_attainment"] == pytest.approx(3 / 6)


def test_per_class(summary):
    pc = summary["per_class"]
    assert set(pc) == {"default", "gold", "bronze"}
    assert pc["default"]["requests"] == 3
    assert pc["default"]["attainment"] == pytest.approx(1 / 3)
    assert pc["default"]["goodput_req_s"] == pytest.approx(1 / 4)
    assert pc["default"]["ttft_p99"] == 1.0
    assert pc["default"]["tpot_p99"] == pytest.approx(0.05 + 0.99 * (0.5 - 0.05))
    assert pc["gold"]["requests"] == 2
    assert pc["gold"]["attainment"] == pytest.approx(0.5)
    assert pc["gold"]["ttft_p99"] == pytest.approx(0.25 + 0.99 * 0.75)
    assert pc["gold"]["tpot_p99"] == 0.5
    assert pc["bronze"] == {
        "requests": 1,
        "attainment": 1.0,
        "goodput_req_s": 0.25,
        "ttft_p99": 0.5,
        "tpot_p99": 0.0625,
    }


def test_per_tenant_and_fairness(summary):
    pt = summary["per_tenant"]
    means = {"A": (0.6 + 1.5 / 11) / 2, "B": (0.25 + 2.0 / 3) / 2, "C": 0.28125}
    assert pt["A"]["requests"] == 2 and pt["A"]["output_tokens"] == 16
    assert pt["B"]["requests"] == 2 and pt["B"]["output_tokens"] == 4
    assert pt["C"]["requests"] == 2 and pt["C"]["output_tokens"] == 2  # unfinished excluded
    for t, m in means.items():
        assert pt[t]["mean_norm_latency_s"] == pytest.approx(m)
    xs = list(means.values())
    jain = sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))
    assert summary["fairness_jain"] == pytest.approx(jain)


def test_fairness_one_tenant_is_one():
    recs = [r for r in hand_records() if r.tenant == "A"]
    assert summarize(recs, SLOS)["fairness_jain"] == 1.0


def test_prefix_hits_preemptions_migrations(summary):
    # finished: cached 100 + 150 over prompts 750; the unfinished request's 50 do not count
    assert summary["prefix_hit_rate"] == pytest.approx(250 / 750)
    assert summary["preemptions"] == 3
    assert summary["migrations"] == 1


def test_load_balance_with_idle_instance(summary):
    # tokens (prompt + output) of finished requests per instance 0..3
    tokens = [105 + 101, 211 + 303, 52, 0]
    assert summary["per_instance_tokens"] == tokens
    assert summary["per_instance_requests"] == [2, 2, 2, 0]
    mean = sum(tokens) / 4  # 193
    std = math.sqrt(sum((t - mean) ** 2 for t in tokens) / 4)
    assert summary["load_cov"] == pytest.approx(std / mean)
    assert summary["load_cov"] == pytest.approx(math.sqrt(40085) / 193)


def test_load_without_num_instances_uses_seen_instances():
    s = summarize(hand_records(), SLOS)
    assert s["per_instance_requests"] == [2, 2, 2]
    tokens = [206, 514, 52]
    mean = sum(tokens) / 3
    std = math.sqrt(sum((t - mean) ** 2 for t in tokens) / 3)
    assert s["load_cov"] == pytest.approx(std / mean)


def test_num_instances_too_small_raises():
    with pytest.raises(ValueError, match="instance 2"):
        summarize(hand_records(), SLOS, num_instances=2)


def test_without_slo_classes_every_finished_request_meets():
    s = summarize(hand_records())
    assert s["goodput_req_s"] == pytest.approx(5 / 4)
    assert s["slo_attainment"] == pytest.approx(5 / 6)


def test_missing_class_without_default_counts_as_met():
    s = summarize(hand_records(), {"gold": SLOS["gold"]})
    # gold: request 2 meets, 3 misses; others have no target -> met if finished (0, 1, 4)
    assert s["slo_attainment"] == pytest.approx(4 / 6)
    # "default" is not in the mapping either: 0 and 1 finished (met), 5 did not
    assert s["per_class"]["default"]["attainment"] == pytest.approx(2 / 3)


def test_empty_input():
    s = summarize([], SLOS)
    assert s["requests"] == 0 and s["completed"] == 0
    assert math.isnan(s["duration_s"]) and math.isnan(s["ttft_s"]["p99"])
    assert math.isnan(s["goodput_req_s"]) and math.isnan(s["slo_attainment"])
    assert s["per_class"] == {} and s["per_tenant"] == {}
    assert s["per_instance_requests"] == []
    data = json.loads(summary_to_json(s))
    assert data["duration_s"] is None and data["wall_s"] is None


def test_nothing_finished():
    recs = [rec(i, "A", "default", 10, 4, float(i), 0, NAN, NAN, NAN) for i in range(3)]
    s = summarize(recs, SLOS, num_instances=2)
    assert s["completed"] == 0 and s["slo_attainment"] == 0.0
    assert math.isnan(s["throughput_req_s"]) and math.isnan(s["fairness_jain"])
    assert s["per_instance_requests"] == [3, 0] and s["load_cov"] == 0.0


def test_json_is_plain_sorted_and_nan_free(summary):
    text = summary_to_json(summary)
    data = json.loads(text)
    assert data["wall_s"] == 0.125 and data["per_class"]["gold"]["requests"] == 2
    assert list(data) == sorted(data)
    assert "NaN" not in text
    assert text.endswith("\n")
    # NaN in a nested value becomes null
    assert json.loads(summary_to_json({"x": {"y": math.nan}, "z": [np.float64("inf")]})) == {
        "x": {"y": None},
        "z": [None],
    }


def test_summary_is_plain_python_types(summary):
    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        else:
            assert type(x) in (int, float, str), type(x)

    walk(summary)


def test_accepts_a_generator():
    a = summarize((r for r in hand_records()), SLOS, num_instances=4)
    b = summarize(hand_records(), SLOS, num_instances=4)
    assert summary_to_json(a) == summary_to_json(b)


# ---- properties ---------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=1000, allow_nan=False)


@st.composite
def records(draw):
    i = draw(st.integers(0, 20))  # repeated ids are allowed
    arrival = draw(times)
    finished = draw(st.booleans())
    first = arrival + draw(times) if finished or draw(st.booleans()) else NAN
    finish = first + draw(times) if finished else NAN
    return RequestRecord(
        id=i,
        tenant=draw(st.sampled_from(["a", "b", "c"])),
        slo_class=draw(st.sampled_from(["default", "gold", "other"])),
        priority=draw(st.integers(0, 2)),
        prompt_tokens=draw(st.integers(1, 5000)),
        output_tokens=draw(st.integers(0, 500)),
        arrival_s=arrival,
        instance=draw(st.integers(-1, 5)),
        first_scheduled_s=arrival + draw(times) if not math.isnan(first) else NAN,
        first_token_s=first,
        finish_s=finish,
        cached_prompt_tokens=draw(st.integers(0, 100)),
        preemptions=draw(st.integers(0, 3)),
        migrations=draw(st.integers(0, 1)),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(records(), max_size=40).flatmap(lambda rs: st.tuples(st.just(rs), st.permutations(rs)))
)
def test_summary_is_invariant_to_record_order(pair):
    original, shuffled = pair
    a = summary_to_json(summarize(original, SLOS, num_instances=6))
    b = summary_to_json(summarize(shuffled, SLOS, num_instances=6))
    assert a == b


@settings(max_examples=40, deadline=None)
@given(st.lists(records(), max_size=40))
def test_json_is_byte_identical_for_the_same_input(recs):
    first = summary_to_json(summarize(recs, SLOS, wall_s=1.5))
    # fresh copies of the records, summarised again
    copies = [RequestRecord(**{f: getattr(r, f) for f in r.__slots__}) for r in recs]
    assert summary_to_json(summarize(copies, SLOS, wall_s=1.5)) == first
    assert summary_to_json(json.loads(first)) == first


@settings(max_examples=40, deadline=None)
@given(st.lists(records(), min_size=1, max_size=40))
def test_summary_bounds(recs):
    s = summarize(recs, SLOS)
    assert 0 <= s["slo_attainment"] <= 1
    assert s["completed"] <= s["requests"] == len(recs)
    assert sum(s["per_instance_requests"]) == sum(r.instance >= 0 for r in recs)
    if not math.isnan(s["goodput_req_s"]):
        assert s["goodput_req_s"] <= s["throughput_req_s"] + 1e-12
    n_tenants = sum(1 for t in s["per_tenant"].values() if not math.isnan(t["mean_norm_latency_s"]))
    if n_tenants:
        assert 1 / n_tenants - 1e-12 <= s["fairness_jain"] <= 1


def test_deadline_tardiness_hand_computed() -> None:
    from fleetsched.metrics.records import RequestRecord
    from fleetsched.metrics.summary import summarize

    def rec(i: int, finish: float, deadline: float) -> RequestRecord:
        return RequestRecord(
            id=i,
            tenant="t",
            slo_class="batch",
            priority=0,
            prompt_tokens=10,
            output_tokens=2,
            arrival_s=0.0,
            instance=0,
            first_scheduled_s=0.0,
            first_token_s=0.5,
            finish_s=finish,
            deadline_s=deadline,
        )

    s = summarize([rec(0, 3.0, 5.0), rec(1, 7.0, 5.0), rec(2, 9.5, 6.0), rec(3, 1.0, math.nan)])
    d = s["deadlines"]
    assert d["requests"] == 3 and d["met"] == 1
    assert d["total_tardiness_s"] == pytest.approx(2.0 + 3.5)
    assert d["max_tardiness_s"] == pytest.approx(3.5)
