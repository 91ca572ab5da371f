"""RecordTable: packed per-request records read back equal to the records appended."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.metrics import RecordTable, RequestRecord, summarize
from fleetsched.metrics.records import RECORD_FIELDS

times = st.one_of(st.just(math.nan), st.floats(-1e9, 1e9, allow_nan=False))
ints = st.integers(-(2**62), 2**62)
counts = st.integers(-(2**31), 2**31 - 1)  # counts and the instance: 4-byte fields
records = st.builds(
    RequestRecord,
    id=ints,
    tenant=st.sampled_from(["a", "bb", "", "ünï"]),
    slo_class=st.sampled_from(["default", "x"]),
    priority=ints,
    prompt_tokens=counts,
    output_tokens=counts,
    arrival_s=times,
    instance=counts,
    dispatch_s=times,
    first_scheduled_s=times,
    first_token_s=times,
    finish_s=times,
    cached_prompt_tokens=counts,
    preemptions=counts,
    migrations=counts,
    generated_tokens=counts,
    deadline_s=times,
)


def _same(a: RequestRecord, b: RequestRecord) -> bool:
    """Field by field, NaN equal to NaN, -0.0 apart from 0.0."""
    for name in RECORD_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float):
            if not (math.isnan(x) and math.isnan(y)) and repr(x) != repr(y):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


@settings(max_examples=100, deadline=None)
@given(st.lists(records, max_size=30))
def test_round_trip_sort_and_columns(recs: list[RequestRecord]) -> None:
    table = RecordTable(recs)
    assert len(table) == len(recs)
    assert all(_same(a, b) for a, b in zip(table, recs, strict=True))
    assert all(_same(table[i], recs[i]) for i in range(-len(recs), len(recs)))
    assert [r.id for r in table[1:4]] == [r.id for r in recs[1:4]]
    for name in ("id", "tenant", "finish_s"):
        want = [getattr(r, name) for r in recs]
        got = table.column(name).tolist()
        assert [repr(x) for x in got] == [repr(x) for x in want]
    table.sort_by_id()
    by_id = sorted(recs, key=lambda r: r.id)  # stable, as the simulator sorted its list
    assert all(_same(a, b) for a, b in zip(table, by_id, strict=True))
    back = pickle.loads(pickle.dumps(table))
    assert all(_same(a, b) for a, b in zip(back, by_id, strict=True))
    # Sorted reads go through an order: indexing, columns, and appends after a sort.
    assert all(_same(table[i], by_id[i]) for i in range(-len(recs), len(recs)))
    for name in ("id", "tenant", "finish_s"):
        got = table.column(name).tolist()
        assert [repr(x) for x in got] == [repr(getattr(r, name)) for r in by_id]
    more = recs[::-1]
    for r in more:
        table.append(r)
    assert all(_same(a, b) for a, b in zip(table, by_id + more, strict=True))
    table.sort_by_id()
    both = sorted(by_id + more, key=lambda r: r.id)
    assert all(_same(a, b) for a, b in zip(table, both, strict=True))
    assert table.column("id").tolist() == [r.id for r in both]


def test_a_count_too_large_for_its_field_is_refused_by_name() -> None:
    table = RecordTable()
    with pytest.raises(ValueError, match="record 7: prompt_tokens = 2147483648 does not fit"):
        table.append(RequestRecord(7, "t", "default", 0, 2**31, 5, 0.0))
    assert len(table) == 0


def test_equality_with_lists_treats_unset_times_as_equal() -> None:
    # A record's unset times are the one NaN object, so equal records compare equal (as two
    # lists of dataclasses do); a table keeps that.
    recs = [RequestRecord(i, "t", "default", 0, 10, 5, float(i)) for i in range(3)]
    table = RecordTable(recs)
    assert table == recs and recs == list(table) and table == RecordTable(recs)
    recs[1].finish_s = 2.5
    assert table != recs


def test_summary_of_table_equals_summary_of_list() -> None:
    rng = np.random.default_rng(0)
    recs = []
    for i in rng.permutation(200).tolist():
        t = float(rng.uniform(0, 100))
        done = bool(rng.uniform() < 0.9)
        recs.append(
            RequestRecord(
                i,
                "ab"[i % 2],
                "default",
                0,
                int(rng.integers(1, 500)),
                int(rng.integers(1, 50)),
                t,
                instance=i % 3,
                first_scheduled_s=t + 0.1,
                first_token_s=t + 0.2,
                finish_s=t + 1.0 if done else math.nan,
            )
        )
    assert summarize(RecordTable(recs), num_instances=3) == summarize(recs, num_instances=3)
