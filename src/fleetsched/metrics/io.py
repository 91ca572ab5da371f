"""Write per-request records to CSV or Parquet, and read them back.

CSV columns are :data:`~fleetsched.metrics.records.RECORD_FIELDS` followed by the derived
:data:`DERIVED_FIELDS` (``ttft_s, tpot_s, e2e_s, queue_s``). Floats are written with
``repr`` (shortest round-tripping form; unset times are ``nan``), so the same records always
give byte-identical files. Parquet needs the optional ``pyarrow`` dependency.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from fleetsched.errors import InputError, at_line
from fleetsched.metrics.records import RECORD_FIELDS, RequestRecord

#: Derived columns appended after the record fields (read back only for reference).
DERIVED_FIELDS: tuple[str, ...] = ("ttft_s", "tpot_s", "e2e_s", "queue_s")

#: Column header of a records file.
COLUMNS: tuple[str, ...] = (*RECORD_FIELDS, *DERIVED_FIELDS)

# Field name -> "int" | "float" | "str" (annotations are strings under postponed evaluation).
_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(RequestRecord)}
_REQUIRED: tuple[str, ...] = tuple(
    f.name for f in fields(RequestRecord) if f.default is MISSING and f.default_factory is MISSING
)

_PARQUET_HINT = "Parquet needs pyarrow: pip install 'fleetsched[parquet]'"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _row(r: RequestRecord) -> list[Any]:
    return [*(getattr(r, name) for name in RECORD_FIELDS), r.ttft_s, r.tpot_s, r.e2e_s, r.queue_s]


def import_pyarrow(p: Path) -> Any:
    """``(pyarrow, pyarrow.parquet)``, or :class:`InputError` naming ``p`` with the hint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(_PARQUET_HINT, str(p)) from None
    return pa, pq


def check_records_path(path: str | Path) -> None:
    """Raise :class:`~fleetsched.errors.InputError` now if :func:`write_records` could not
    write this format (Parquet without ``pyarrow``)."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import_pyarrow(p)


def write_records(
    records: Iterable[RequestRecord],
    path: str | Path,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> int:
    """Write records to ``path`` (Parquet if it ends in ``.parquet``, else CSV); return the count.

    ``extra`` adds columns after the standard ones (name -> one value per record, in order):
    fields only some producers have, e.g. a live run's HTTP status. Readers ignore them.
    Raises :class:`~fleetsched.errors.InputError` if Parquet is asked for and ``pyarrow``
    is not installed.
    """
    p = Path(path)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(COLUMNS))
    if clash:
        raise ValueError(f"extra columns {', '.join(clash)} would rename standard ones")
    if p.suffix.lower() == ".parquet":
        return _write_parquet(records, p, extra)
    n = 0
    cols = list(extra.values())
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*COLUMNS, *extra])
        for r in records:
            w.writerow([_fmt(v) for v in (*_row(r), *(c[n] for c in cols))])
            n += 1
    return n


def _write_parquet(
    records: Iterable[RequestRecord], p: Path, extra: dict[str, Sequence[Any]]
) -> int:
    pa, pq = import_pyarrow(p)
    rows = [_row(r) for r in records]
    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    col_types = [types[_FIELD_TYPES[n]] for n in RECORD_FIELDS] + [pa.float64()] * len(
        DERIVED_FIELDS
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    arrays = [pa.array(list(col), type=t) for col, t in zip(columns, col_types, strict=True)]
    arrays += [pa.array(list(v)) for v in extra.values()]
    table = pa.Table.from_arrays(arrays, names=[*COLUMNS, *extra])
    pq.write_table(table, p)
    return len(rows)


def _parse(name: str, text: str) -> Any:
    kind = _FIELD_TYPES[name]
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text) if text else math.nan
    return text


def read_records_csv(path: str | Path) -> list[RequestRecord]:
    """Read records written by :func:`write_records` (derived columns are ignored).

    Missing optional columns take their defaults. Raises
    :class:`~fleetsched.errors.InputError` naming ``file:line`` and the column on bad input.
    """
    p = Path(path)
    try:
        f = p.open(newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read records: {e.strerror}", str(p)) from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError("empty file, expected a header row", at_line(p, 1))
        missing = [n for n in _REQUIRED if n not in header]
        if missing:
            raise InputError(f"missing column(s): {', '.join(missing)}", at_line(p, 1))
        idx = [(name, i) for i, name in enumerate(header) if name in _FIELD_TYPES]
        out = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(
                    f"expected {len(header)} values, got {len(row)}", at_line(p, line_no)
                )
            kwargs = {}
            for name, i in idx:
                try:
                    kwargs[name] = _parse(name, row[i])
                except ValueError:
                    raise InputError(
                        f"{name}: not a valid {_FIELD_TYPES[name]}: {row[i]!r}",
                        at_line(p, line_no),
                    ) from None
            out.append(RequestRecord(**kwargs))
    return out


def read_records(path: str | Path) -> list[RequestRecord]:
    """Read a records file written by :func:`write_records`, CSV or Parquet by suffix."""
    p = Path(path)
    if p.suffix.lower() != ".parquet":
        return read_records_csv(p)
    _, pq = import_pyarrow(p)
    try:
        table = pq.read_table(p)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read Parquet records: {e}", str(p)) from None
    names = [n for n in table.column_names if n in _FIELD_TYPES]
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise InputError(f"missing column(s): {', '.join(missing)}", str(p))
    data = table.select(names).to_pydict()
    return [
        RequestRecord(**dict(zip(names, vals, strict=True)))
        for vals in zip(*(data[n] for n in names), strict=True)
    ]
