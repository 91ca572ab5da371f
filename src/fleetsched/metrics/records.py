"""The per-request record the simulator and the gateway both produce."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter, itemgetter
from typing import overload

import numpy as np

NAN = math.nan


@dataclass(slots=True)
class RequestRecord:
    """Timestamps (seconds) and counters for one request. Unset times are NaN."""

    id: int
    tenant: str
    slo_class: str
    priority: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    instance: int = -1
    dispatch_s: float = NAN  # routed to an instance
    first_scheduled_s: float = NAN  # first engine step that included it
    first_token_s: float = NAN
    finish_s: float = NAN
    cached_prompt_tokens: int = 0
    preemptions: int = 0
    migrations: int = 0
    generated_tokens: int = 0
    deadline_s: float = NAN
    #: Multi-model workloads: the serving model's success probability for the request's task
    #: class (NaN: no task class) and the judge's draw (1.0 correct, 0.0 wrong, NaN: none).
    quality: float = NAN
    correct: float = NAN
    #: Joules of the engine steps this request took part in (its share of each step's energy).
    energy_j: float = 0.0

    @property
    def finished(self) -> bool:
        return not math.isnan(self.finish_s)

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def queue_s(self) -> float:
        return self.first_scheduled_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first; NaN for single-token outputs."""
        if self.output_tokens <= 1:
            return NAN
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))


def _kind(annotation: str) -> str:
    return annotation if annotation in ("int", "float", "str") else "object"


_KINDS: tuple[str, ...] = tuple(_kind(str(f.type)) for f in fields(RequestRecord))
_PACKED = [i for i, k in enumerate(_KINDS) if k != "object"]  # int, float, str (as a code)
_OBJECT = [i for i, k in enumerate(_KINDS) if k == "object"]
_STRS = [i for i, k in enumerate(_KINDS) if k == "str"]
_FLOATS = [i for i, k in enumerate(_KINDS) if k == "float"]
#: Packed widths: floats, the id and the priority in 8 bytes; counts (tokens, preemptions,
#: migrations), the instance and the string codes in 4 (``append`` refuses a value that does
#: not fit, naming the field).
_WIDE = {"id", "priority"}
_CODE = {
    i: "d" if _KINDS[i] == "float" else "q" if RECORD_FIELDS[i] in _WIDE else "i" for i in _PACKED
}
_ROW = struct.Struct("<" + "".join(_CODE[i] for i in _PACKED))
_DTYPE = np.dtype(
    [(RECORD_FIELDS[i], {"d": "<f8", "q": "<i8", "i": "<i4"}[_CODE[i]]) for i in _PACKED]
)
_get_all = attrgetter(*RECORD_FIELDS)
_get_packed = itemgetter(*_PACKED)


class RecordTable(Sequence[RequestRecord]):
    """Per-request records held as packed rows (8 bytes a float, the id and the priority, 4
    a count, the instance and a string's code into a table of the distinct values), not as
    objects: 124 bytes a record (20 fields) instead of ~420, so a million records take
    ~124 MB. Reads give :class:`RequestRecord` objects made on demand (equal to the ones
    appended: unset times are the shared NaN), so it is a drop-in ``Sequence``;
    :meth:`column` gives a numpy column without making records.
    """

    __slots__ = ("_buf", "_codes", "_n", "_objects", "_order", "_values")

    def __init__(self, records: Iterable[RequestRecord] = ()) -> None:
        self._buf = bytearray()
        self._n = 0
        #: Read order (row numbers in ``_buf``) after :meth:`sort_by_id`; None: as appended.
        self._order: np.ndarray | None = None
        self._values: list[str] = []  # code -> string
        self._codes: dict[str, int] = {}
        self._objects: list[list[object]] = [[] for _ in _OBJECT]
        for r in records:
            self.append(r)

    def append(self, rec: RequestRecord) -> None:
        if self._order is not None:
            self._apply_order()
        v = list(_get_all(rec))
        codes = self._codes
        for i in _STRS:
            s = v[i]
            c = codes.get(s)
            if c is None:
                c = codes[s] = len(self._values)
                self._values.append(s)
            v[i] = c
        if _OBJECT:
            for col, i in zip(self._objects, _OBJECT, strict=True):
                col.append(v[i])
        try:
            self._buf += _ROW.pack(*_get_packed(v))
        except struct.error:
            raise ValueError(f"record {rec.id}: {self._misfit(v)}") from None
        self._n += 1

    @staticmethod
    def _misfit(v: list[object]) -> str:
        for i in _PACKED:
            try:
                struct.pack("<" + _CODE[i], v[i])
            except struct.error:
                return f"{RECORD_FIELDS[i]} = {v[i]!r} does not fit a {_CODE[i]!r} field"
        return "a field does not pack"

    def _record(self, packed: tuple[object, ...], index: int) -> RequestRecord:
        v: list[object] = [None] * len(_KINDS)
        for i, x in zip(_PACKED, packed, strict=True):
            v[i] = x
        for i in _FLOATS:
            if v[i] != v[i]:
                v[i] = NAN  # the one NaN object, as unset fields hold
        values = self._values
        for i in _STRS:
            v[i] = values[v[i]]  # type: ignore[index]
        for col, i in zip(self._objects, _OBJECT, strict=True):
            v[i] = col[index]
        return RequestRecord(*v)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> RequestRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[RequestRecord]: ...
    def __getitem__(self, i: int | slice) -> RequestRecord | list[RequestRecord]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("record index out of range")
        if self._order is not None:
            i = int(self._order[i])
        return self._record(_ROW.unpack_from(self._buf, i * _ROW.size), i)

    def __iter__(self) -> Iterator[RequestRecord]:
        if self._order is None:
            for i, packed in enumerate(_ROW.iter_unpack(self._buf)):
                yield self._record(packed, i)
            return
        buf, unpack, size = self._buf, _ROW.unpack_from, _ROW.size
        for i in self._order.tolist():
            yield self._record(unpack(buf, i * size), i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordTable({self._n} records)"

    def column(self, name: str, codes: bool = False) -> np.ndarray:
        """Field ``name`` of every record as a numpy array (strings as a ``str`` array, or
        with ``codes`` their codes into the table of distinct values)."""
        i = RECORD_FIELDS.index(name)
        kind = _KINDS[i]
        if kind == "object":
            col = np.array(self._objects[_OBJECT.index(i)], dtype=object)
            return col if self._order is None else col[self._order]
        rows = np.frombuffer(self._buf, dtype=_DTYPE, count=self._n)
        field = rows[name]
        if kind != "float":
            field = field.astype(np.int64)  # a 4-byte field reads as int64, as it was appended
        col = np.ascontiguousarray(field) if self._order is None else field[self._order]
        if kind == "str" and not codes:
            return np.array(self._values, dtype=str)[col] if self._n else col.astype(str)
        return col

    def categories(self, name: str) -> tuple[list[str], np.ndarray]:
        """String field ``name``: its distinct values sorted, and each record's index into
        them (what ``np.unique(column, return_inverse=True)`` gives, from the codes)."""
        if _KINDS[RECORD_FIELDS.index(name)] != "str":
            raise ValueError(f"{name} is not a string field")
        codes = self.column(name, codes=True)
        used = np.unique(codes).tolist()  # a few distinct codes
        names = sorted(self._values[k] for k in used)
        remap = np.zeros(len(self._values), dtype=np.int64)
        for k in used:
            remap[k] = names.index(self._values[k])
        return names, remap[codes]

    def sort_by_id(self) -> None:
        """Reorder by id (stable: equal ids keep their order), as ``list.sort`` by id would.

        The rows stay where they are: reads go through the sorted order (8 bytes a record),
        so sorting a million records does not need a second copy of them."""
        if self._n < 2:
            return
        ids = self.column("id")
        order = np.argsort(ids, kind="stable")
        if self._order is not None:
            order = self._order[order]
        self._order = None if np.array_equal(order, np.arange(self._n)) else order

    def _apply_order(self) -> None:
        """Move the rows into the read order (before appending after a sort)."""
        assert self._order is not None
        order, self._order = self._order, None
        rows = np.frombuffer(self._buf, dtype=_DTYPE, count=self._n)
        self._buf = bytearray(rows[order].tobytes())
        self._objects = [[col[j] for j in order.tolist()] for col in self._objects]
