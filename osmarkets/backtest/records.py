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
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

_TYPECODES = {float: "d", int: "q"}


class RecordLog(Generic[T]):
    """Append-only log of ``record_type`` NamedTuples, columnar in memory."""

    __slots__ = ("record_type", "_columns", "_length")

    def __init__(self, record_type: type[T]) -> None:
        self.record_type = record_type
        self._columns: list[Any] | None = None
        self._length = 0

    def append(self, record: T) -> None:
        values: tuple = record  # type: ignore[assignment]
        columns = self._columns
        if columns is None:
            columns = self._columns = [
                array(_TYPECODES[type(value)]) if type(value) in _TYPECODES else []
                for value in values
            ]
        for number, value in enumerate(values):
            column = columns[number]
            if type(column) is array and _TYPECODES.get(type(value)) != column.typecode:
                column = columns[number] = column.tolist()  # mixed types: keep them exact
            column.append(value)
        self._length += 1

    def extend(self, records: Any) -> None:
        for record in records:
            self.append(record)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> T:
        if index < 0:
            index += self._length
        if not 0 <= index < self._length or self._columns is None:
            raise IndexError(f"record {index} out of range ({self._length} records)")
        return self.record_type(*(column[index] for column in self._columns))

    def __iter__(self) -> Iterator[T]:
        if self._columns is None:
            return
        make = self.record_type
        for values in zip(*self._columns, strict=True):
            yield make(*values)

    def column(self, name: str) -> Any:
        """One field's values: a numpy array for a typed column, else the list."""
        fields: tuple[str, ...] = self.record_type._fields  # type: ignore[attr-defined]
        if name not in fields:
            raise KeyError(f"{self.record_type.__name__} has no field {name!r}")
        if self._columns is None:
            return []
        column = self._columns[fields.index(name)]
        if type(column) is array:  # a copy: a view would stop the array from growing
            return np.frombuffer(column, np.float64 if column.typecode == "d" else np.int64).copy()
        return column

    def __repr__(self) -> str:
        return f"<RecordLog of {self._length} {self.record_type.__name__}>"


__all__ = ["RecordLog"]
