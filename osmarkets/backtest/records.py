"""RecordLog: a list of NamedTuples (orders, order events) stored column by column.

A long backtest sends hundreds of thousands of orders; kept as Python tuples, each order and
each of its events costs about 350 bytes (the tuple plus a float object per number), more than
the bars it traded on. A RecordLog keeps a field of few distinct values (the side, the kind of
event, the symbol, a size of 1, a commission of 0) as one byte per value, a code into its
distinct values; a field of many numbers of one exact type (``float`` or ``int``) in one typed
``array`` (8 bytes per value); anything else in a list. So a fill with its order and its two
events costs about 250 bytes, its unique client id included.

Reading a record back gives an equal tuple of the same types, bit for bit: numbers are coded
by their exact type and bits (``-0.0`` is not ``0.0``), texts, booleans and None by value (no
``True == 1`` across them), and a column falls back to a list rather than convert an ``int``
to a ``float``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from operator import itemgetter
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

_TYPECODES = {float: "d", int: "q"}
_DTYPES = {float: np.float64, int: np.int64}
#: Types coded by value: equal values of these are interchangeable.
_TEXTS = frozenset({str, bool, type(None)})


class _Coded:
    """A column of at most :data:`LIMIT` distinct values, one byte each. ``number``: the exact
    type of a column of numbers (coded by their bits), None for texts, booleans and None."""

    __slots__ = ("codes", "values", "lookup", "number")

    LIMIT = 256

    def __init__(self, number: type | None) -> None:
        self.codes = array("B")
        self.values: list[Any] = []
        self.lookup: dict[Any, int] = {}
        self.number = number

    def extend(self, values: tuple[Any, ...], kinds: set[type]) -> bool:
        """Add ``values`` (of the exact types ``kinds``); False, adding nothing, when they are
        not of this column's kind or would pass :data:`LIMIT` distinct values."""
        if self.number is None:
            return kinds <= _TEXTS and self._extend_texts(values)
        if kinds != {self.number}:
            return False
        try:
            numbers = np.array(values, dtype=_DTYPES[self.number])
        except OverflowError:  # an int beyond 64 bits: not for a typed column either
            return False
        keys = numbers.view(np.int64)  # floats by bits: 0.0 == -0.0, and NaN != NaN
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        if len(distinct) > self.LIMIT:
            return False
        known = distinct.tolist()
        new = [(key, at) for key, at in zip(known, first.tolist(), strict=True)
               if key not in self.lookup]  # fmt: skip
        if len(self.values) + len(new) > self.LIMIT:
            return False
        for key, at in new:
            self.lookup[key] = len(self.values)
            self.values.append(values[at])
        codes = np.array([self.lookup[key] for key in known], dtype=np.uint8)
        self.codes.frombytes(codes[inverse].tobytes())
        return True

    def _extend_texts(self, values: tuple[Any, ...]) -> bool:
        distinct = set(values)
        new = distinct.difference(self.lookup)
        if len(self.values) + len(new) > self.LIMIT:
            return False
        for value in new:
            self.lookup[value] = len(self.values)
            self.values.append(value)
        if len(distinct) == 1:  # one value all along the batch: the usual case
            self.codes.frombytes(bytes((self.lookup[values[0]],)) * len(values))
        else:
            self.codes.extend(map(self.lookup.__getitem__, values))
        return True

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> Any:
        return self.values[self.codes[index]]

    def __iter__(self) -> Iterator[Any]:
        return map(self.values.__getitem__, self.codes)

    def tolist(self) -> list[Any]:
        return list(self)

    def take(self, indices: np.ndarray | None = None) -> np.ndarray:
        """The values at ``indices`` (all when None), as numbers or objects."""
        if self.number:
            table = np.array(self.values, dtype=_DTYPES[self.number])
        else:
            table = np.empty(len(self.values), dtype=object)
            table[:] = self.values
        codes = np.frombuffer(self.codes, np.uint8) if len(self.codes) else np.zeros(0, np.uint8)
        return table[codes if indices is None else codes[indices]]


class RecordLog(Generic[T]):
    """Append-only log of ``record_type`` NamedTuples, columnar in memory.

    Appends go to a short list first and move into the columns :data:`BATCH` at a time, with
    C-level passes per field (``map(itemgetter)``, ``set(map(type, ...))`` for the typed ones,
    ``extend``): a few hundred nanoseconds a record instead of a Python loop over its
    fields."""

    __slots__ = ("record_type", "_columns", "_stored", "_pending")

    #: Records kept as tuples before they move into the columns.
    BATCH = 4_096

    def __init__(self, record_type: type[T]) -> None:
        self.record_type = record_type
        self._columns: list[Any] = []
        self._stored = 0
        self._pending: list[T] = []

    def append(self, record: T) -> None:
        self._pending.append(record)
        if len(self._pending) >= self.BATCH:
            self._store()

    def extend(self, records: Any) -> None:
        self._pending.extend(records)
        if len(self._pending) >= self.BATCH:
            self._store()

    def _store(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if not self._columns:
            self._columns = [None] * len(batch[0])  # type: ignore[arg-type]
        rows: list[Any] = batch
        for number, column in enumerate(self._columns):
            self._columns[number] = _typed(column, tuple(map(itemgetter(number), rows)))
        self._stored += len(batch)

    def __len__(self) -> int:
        return self._stored + len(self._pending)

    def __getitem__(self, index: int) -> T:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range ({len(self)} records)")
        if index >= self._stored:
            return self._pending[index - self._stored]
        return self.record_type(*(column[index] for column in self._columns))

    def __iter__(self) -> Iterator[T]:
        self._store()
        if not self._columns:
            return
        make = self.record_type
        for values in zip(*self._columns, strict=True):
            yield make(*values)

    def column(self, name: str) -> Any:
        """One field's values: a numpy array for numbers of one exact type, else a list."""
        fields: tuple[str, ...] = self.record_type._fields  # type: ignore[attr-defined]
        if name not in fields:
            raise KeyError(f"{self.record_type.__name__} has no field {name!r}")
        self._store()
        if not self._columns:
            return []
        column = self._columns[fields.index(name)]
        if type(column) is array:  # a copy: a view would stop the array from growing
            return np.frombuffer(column, np.float64 if column.typecode == "d" else np.int64).copy()
        if type(column) is _Coded:
            return column.take() if column.number else column.tolist()
        return column

    def take(self, name: str, indices: np.ndarray) -> np.ndarray:
        """One field's values at ``indices``, as a numpy array (objects for a list column)."""
        fields: tuple[str, ...] = self.record_type._fields  # type: ignore[attr-defined]
        if name not in fields:
            raise KeyError(f"{self.record_type.__name__} has no field {name!r}")
        self._store()
        if not self._columns:
            return np.zeros(0)
        column = self._columns[fields.index(name)]
        if type(column) is array:
            view = np.frombuffer(column, np.float64 if column.typecode == "d" else np.int64)
            values = view[indices]  # a copy: the view goes, and the array can grow again
            del view
            return values
        if type(column) is _Coded:
            return column.take(indices)
        return np.array([column[i] for i in indices.tolist()], dtype=object)

    def __repr__(self) -> str:
        return f"<RecordLog of {len(self)} {self.record_type.__name__}>"


def _typed(column: Any, values: tuple[Any, ...]) -> Any:
    """``column`` (None before the first batch) with ``values`` added: coded while the values
    are few distinct ones, a typed array while they are numbers of one exact type, else a
    list."""
    kinds = set(map(type, values))
    number = next(iter(kinds)) if len(kinds) == 1 and type(values[0]) in _TYPECODES else None
    if column is None:
        column = _Coded(number)
        if column.extend(values, kinds):
            return column
        return array(_TYPECODES[number], values) if number else list(values)
    if type(column) is list:
        column.extend(values)
        return column
    if type(column) is _Coded:
        if column.extend(values, kinds):
            return column
        if number is None or column.number is not number:
            return column.tolist() + list(values)  # mixed: keep them exact
        column = array(_TYPECODES[number], column.tolist())
    if number is None or column.typecode != _TYPECODES[number]:
        return column.tolist() + list(values)
    before = len(column)
    try:
        column.extend(values)
    except OverflowError:  # an int beyond 64 bits: a list holds it
        del column[before:]
        return column.tolist() + list(values)
    return column


__all__ = ["RecordLog"]
