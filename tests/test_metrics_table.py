"""Tests of fleetsched.metrics.table: the rich tables render the right numbers."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from fleetsched.core.config import SLOClass
from fleetsched.metrics import RequestRecord, compare_table, summarize, summary_table
from fleetsched.metrics.table import COMPARE_COLUMNS


def render(table: Table) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def records() -> list[RequestRecord]:
    return [
        RequestRecord(
            id=i, tenant="t", slo_class="default", priority=0, prompt_tokens=100,
            output_tokens=5, arrival_s=float(i), instance=i % 2,
            first_scheduled_s=i + 0.125, first_token_s=i + 0.5, finish_s=i + 1.5,
            cached_prompt_tokens=25, preemptions=1,
        )
        for i in range(4)
    ]  # fmt: skip


def test_summary_table_shows_ms_and_scalars():
    s = summarize(records(), {"default": SLOClass(ttft_s=1.0, tpot_s=0.5)}, num_instances=2)
    t = summary_table(s, title="run 1")
    assert isinstance(t, Table) and str(t.title) == "run 1"
    text = render(t)
    assert "500.0" in text  # TTFT 0.5 s
    assert "250.0" in text  # TPOT (1.5 - 0.5) / 4 s
    assert "1500.0" in text  # E2E
    assert "125.0" in text  # queue
    assert "100.0%" in text  # attainment
    assert "25.0%" in text  # prefix hit rate
    assert "4/4" in text
    for label in ("TTFT", "TPOT", "E2E", "queue", "goodput", "SLO attainment", "load CoV"):
        assert label in text


def test_summary_table_nan_shows_dash():
    text = render(summary_table(summarize([])))
    assert "nan" not in text.lower()
    assert " - " in text


def test_compare_table_one_row_per_policy():
    s = summarize(records(), num_instances=2)
    empty = summarize([])
    t = compare_table({"round_robin": s, "least_load": empty}, columns=list(COMPARE_COLUMNS))
    assert t.row_count == 2
    headers = [" ".join(str(c.header).split()) for c in t.columns]
    assert headers[0] == "policy"
    for h in ("TTFT p50", "TTFT p99", "TPOT p50", "E2E p99", "good- put", "SLO", "prefix",
              "load CoV", "pre- empt", "mig- rate", "re- ject"):  # fmt: skip
        assert any(h in x for x in headers), h
    text = render(t)
    lines = [ln for ln in text.splitlines() if "round_robin" in ln or "least_load" in ln]
    assert lines[0].index("round_robin") < lines[0].index(" 500 ")  # TTFT 0.5 s, in ms
    assert "nan" not in text.lower()
    assert math.isnan(empty["ttft_s"]["p50"])
