"""Per-instance time-series files: exact round trips and errors that name file:line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fleetsched.errors import InputError
from fleetsched.metrics.timeseries import SERIES_COLUMNS, InstanceSeries, read_series, write_series

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def series() -> InstanceSeries:
    return InstanceSeries(
        t_s=np.array([0.0, 0.5, 1.0]),
        names=["a-0", "a-1"],
        queue_len=np.array([[0, 1], [2, 0], [0, 0]]),
        running=np.array([[1, 3], [4, 4], [0, 1]]),
        kv_utilization=np.array([[0.1, 1 / 3], [0.5, 0.25], [0.0, 0.125]]),
    )


def test_csv_layout_and_exact_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "ts.csv"
    assert write_series(series(), p) == 6
    lines = p.read_text().splitlines()
    assert lines[0] == ",".join(SERIES_COLUMNS)
    assert lines[1] == "0.0,0,a-0,0,1,0.1"
    assert lines[4] == "0.5,1,a-1,0,4,0.25"
    back = read_series(p)
    s = series()
    assert back.names == s.names
    for f in ("t_s", "queue_len", "running", "kv_utilization"):
        assert np.array_equal(getattr(back, f), getattr(s, f)), f
    assert back.kv_utilization[0, 1] == 1 / 3  # repr round-trips floats exactly
    write_series(back, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == p.read_bytes()
    assert np.array_equal(back.load, s.queue_len + s.running)


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed")
def test_parquet_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "ts.parquet"
    write_series(series(), p)
    back = read_series(p)
    assert np.array_equal(back.kv_utilization, series().kv_utilization)
    assert back.names == ["a-0", "a-1"]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="running has shape"):
        InstanceSeries(np.zeros(2), ["a"], np.zeros((2, 1)), np.zeros((3, 1)), np.zeros((2, 1)))


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("0.0,0,a,0,1,x\n", "must be numbers", 2),
        ("0.0,0,a,0,1,0.1\n0.0,2,c,0,1,0.1\n0.5,0,a,0,1,0.1\n", "expected instance 1", 3),
        ("0.0,0,a,0,1,0.1\n0.0,1,b,0,1,0.1\n0.0,1,b,0,1,0.1\n", "whole number", 4),
        ("1.0,0,a,0,1,0.1\n0.5,0,a,0,1,0.1\n", "must increase", 3),
        ("0.5,0,a,0,1,0.1\n0.5,0,a,0,1,0.1\n", "must increase", 3),
        ("0.0,0,a,0,1\n", "expected 6 values", 2),
        ("", "at least one row", 1),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, body: str, message: str, line: int) -> None:
    p = tmp_path / "ts.csv"
    p.write_text(",".join(SERIES_COLUMNS) + "\n" + body)
    with pytest.raises(InputError, match=message) as e:
        read_series(p)
    assert e.value.where == f"{p}:{line}"


def test_a_file_that_is_not_a_series(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("id,tenant\n1,a\n")
    with pytest.raises(InputError, match="not a time-series file"):
        read_series(p)
