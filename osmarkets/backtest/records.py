"""RecordLog: a list of NamedTuples (orders, order events) stored column by column.

A long backtest sends hundreds of thousands of orders; kept as Python tuples, each order and
each of its events costs about 350 bytes (the tuple plus a float object per number), more than
the bars it traded on. A RecordLog keeps each field in one typed ``array`` (8 bytes per value)
while every value of that field has the same exact type (``float`` or ``int``), and in a list
otherwise (strings are shared objects: 8 bytes per reference). Reading a record back gives an
equal tuple: a column falls back to a list rather than convert an ``int`` to a ``float``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from operator import itemgetter
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

_TYPECODES = {float: "d", int: "q"}


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
            get = itemgetter(number)
            if type(column) is list:  # already mixed or text: nothing to check
                column.extend(map(get, rows))
                continue
            values = tuple(map(get, rows))
            kinds = set(map(type, values))
            code = _TYPECODES.get(kinds.pop()) if len(kinds) == 1 else None
            if column is None:
                column = self._columns[number] = array(code) if code else []
            elif code != column.typecode:
                column = self._columns[number] = column.tolist()  # mixed: keep them exact
            before = len(column)
            try:
                column.extend(values)
            except (OverflowError, TypeError):  # an int beyond 64 bits: a list holds it
                del column[before:]
                column = self._columns[number] = column.tolist()
                column.extend(values)
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
        """One field's values: a numpy array for a typed column, else the list."""
        fields: tuple[str, ...] = self.record_type._fields  # type: ignore[attr-defined]
        if name not in fields:
            raise KeyError(f"{self.record_type.__name__} has no field {name!r}")
        self._store()
        if not self._columns:
            return []
        column = self._columns[fields.index(name)]
        if type(column) is array:  # a copy: a view would stop the array from growing
            return np.frombuffer(column, np.float64 if column.typecode == "d" else np.int64).copy()
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
        return np.array([column[i] for i in indices.tolist()], dtype=object)

    def __repr__(self) -> str:
        return f"<RecordLog of {len(self)} {self.record_type.__name__}>"


__all__ = ["RecordLog"]
