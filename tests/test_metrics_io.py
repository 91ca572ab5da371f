"""Tests of fleetsched.metrics.io: CSV round trip, determinism, errors, optional Parquet."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys

import pytest

from fleetsched.errors import InputError
from fleetsched.metrics import RECORD_FIELDS, RequestRecord, read_records_csv, write_records
from fleetsched.metrics.io import COLUMNS, read_records

NAN = math.nan
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def sample() -> list[RequestRecord]:
    return [
        RequestRecord(
            id=0,
            tenant="acme, inc.",
            slo_class='gold "fast"',
            priority=2,
            prompt_tokens=1234,
            output_tokens=56,
            arrival_s=0.1 + 0.2,  # 0.30000000000000004 must survive the trip
            instance=3,
            dispatch_s=0.31,
            first_scheduled_s=0.5,
            first_token_s=1.0,
            finish_s=3.0,
            cached_prompt_tokens=512,
            preemptions=1,
            migrations=2,
            generated_tokens=56,
            deadline_s=10.0,
        ),
        RequestRecord(
            id=1, tenant="b", slo_class="default", priority=0, prompt_tokens=7,
            output_tokens=1, arrival_s=1e-9,
        ),
    ]  # fmt: skip


def same(a: RequestRecord, b: RequestRecord) -> bool:
    for f in RECORD_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def test_csv_round_trip(tmp_path):
    path = tmp_path / "records.csv"
    assert write_records(sample(), path) == 2
    back = read_records_csv(path)
    assert len(back) == 2
    assert all(same(a, b) for a, b in zip(sample(), back, strict=True))
    assert back[0].arrival_s == 0.1 + 0.2


def test_csv_header_and_derived_columns(tmp_path):
    path = tmp_path / "records.csv"
    write_records(sample(), path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == (*RECORD_FIELDS, "ttft_s", "tpot_s", "e2e_s", "queue_s") == COLUMNS
    first = rows[0]
    assert float(first["ttft_s"]) == 1.0 - (0.1 + 0.2)
    assert float(first["tpot_s"]) == pytest.approx(2.0 / 55)
    assert float(first["e2e_s"]) == 3.0 - (0.1 + 0.2)
    assert float(first["queue_s"]) == 0.5 - (0.1 + 0.2)
    assert rows[1]["finish_s"] == "nan" and rows[1]["tpot_s"] == "nan"


def test_csv_is_byte_identical_and_uses_repr(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_records(sample(), a)
    write_records(iter(sample()), b)
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "0.30000000000000004" in text and "1e-09" in text
    assert "\r" not in text


def test_read_records_dispatches_on_suffix(tmp_path):
    path = tmp_path / "r.csv"
    write_records(sample(), path)
    assert all(same(x, y) for x, y in zip(read_records(path), sample(), strict=True))


def test_read_missing_optional_columns_use_defaults(tmp_path):
    path = tmp_path / "min.csv"
    path.write_text(
        "id,tenant,slo_class,priority,prompt_tokens,output_tokens,arrival_s\n1,t,default,0,5,6,0.5\n"
    )
    (r,) = read_records_csv(path)
    assert r.id == 1 and r.arrival_s == 0.5 and r.instance == -1 and math.isnan(r.finish_s)


def test_read_bad_value_names_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    write_records(sample(), path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",7,", ",seven,", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: prompt_tokens: not a valid int"):
        read_records_csv(path)


def test_read_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "nocol.csv"
    path.write_text("id,tenant\n1,a\n")
    with pytest.raises(InputError, match="missing column"):
        read_records_csv(path)
    with pytest.raises(InputError, match="cannot read records"):
        read_records_csv(tmp_path / "absent.csv")


def test_read_wrong_number_of_values(tmp_path):
    path = tmp_path / "short.csv"
    write_records(sample(), path)
    with path.open("a") as f:
        f.write("1,2,3\n")
    with pytest.raises(InputError, match=r"short\.csv:4: expected"):
        read_records_csv(path)


def test_parquet_without_pyarrow_raises_input_error(tmp_path, monkeypatch):
    # Simulate a missing pyarrow even where it is installed: None in sys.modules blocks import.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"pip install 'fleetsched\[parquet\]'"):
        write_records(sample(), tmp_path / "r.parquet")
    with pytest.raises(InputError, match="pyarrow"):
        read_records(tmp_path / "r.parquet")


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed")
def test_parquet_raises_when_pyarrow_is_really_missing(tmp_path):
    with pytest.raises(InputError, match=r"fleetsched\[parquet\]"):
        write_records(sample(), tmp_path / "r.PARQUET")
    assert not (tmp_path / "r.PARQUET").exists()


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed")
def test_parquet_round_trip(tmp_path):
    path = tmp_path / "r.parquet"
    assert write_records(sample(), path) == 2
    back = read_records(path)
    assert all(same(a, b) for a, b in zip(sample(), back, strict=True))
