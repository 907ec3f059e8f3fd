"""Read a bar file in chunks, for backtests larger than memory.

Parquet files are read one record batch at a time with pyarrow (``ParquetFile.iter_batches``,
buffered: pyarrow then holds one decoded row group of each open file, so files written with
row groups of a few ten thousand bars, ``row_group_size=`` of ``pyarrow.parquet.write_table``
or ``DataFrame.to_parquet``, stream in the least memory),
CSV files with pyarrow's streaming CSV reader (``pyarrow.csv.open_csv``): both only hold one
chunk of the file at a time, and both are what a Parquet or Arrow user expects to be used.
Each chunk comes out in the DataFrame convention of DESIGN.md (UTC ``DatetimeIndex`` named
``time``, lower-case columns), checked by :func:`~osmarkets.data.validate.validate_bars`, and
the chunks of one file must follow each other in time: a refusal names the file and the bar's
row in the whole file.

A streamed CSV file is the layout :func:`~osmarkets.data.io.write_csv` writes: a header with a
``time`` column (ISO times; naive ones are taken in ``tz``) and ``open``, ``high``, ``low``,
``close``, optionally ``volume`` and the bid/ask columns. The other text layouts
:func:`~osmarkets.data.io.read_bars` knows (MetaTrader, Yahoo...) are read whole: convert such a
file once (``read_bars(path).to_parquet(...)``) to stream it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import _normal
from .types import BAR_PRICE_FIELDS
from .validate import DataError, validate_bars

#: Bars per chunk by default: about 3.5 MB of OHLCV, big enough for numpy to pay off.
CHUNK_BARS = 65_536
#: File name endings streamed, and how.
STREAMED = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}


def stream_kind(path: str | Path) -> str | None:
    """``'parquet'`` or ``'csv'`` for a file name :func:`bar_chunks` reads, else None."""
    name = Path(path).name.lower()
    for ending, kind in STREAMED.items():
        if name.endswith(ending):
            return kind
    return None


def bar_chunks(
    path: str | Path, *, chunk_bars: int = CHUNK_BARS, tz: str = "UTC"
) -> Iterator[pd.DataFrame]:
    """The bars of a Parquet or CSV file, ``chunk_bars`` at a time (at most), in time order.

    Raises ``FileNotFoundError``, ``ValueError`` for a file that is not Parquet or CSV, and
    :class:`~osmarkets.data.validate.DataError` (a ``ValueError``) naming the file, the row and
    the field for bad bars or times that do not increase from one chunk to the next."""
    if isinstance(chunk_bars, bool) or not isinstance(chunk_bars, int) or chunk_bars < 1:
        raise ValueError(f"chunk_bars: expected a positive integer, got {chunk_bars!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kind = stream_kind(path)
    if kind is None:
        raise ValueError(
            f"{path}: cannot stream this file: expected .parquet, .pq, .csv or .csv.gz"
        )
    if kind == "parquet":
        tables = _parquet_batches(path, chunk_bars)
    else:
        tables = _csv_batches(path, chunk_bars)
    row = 0
    last = None
    for table in tables:
        for frame in _split(_frame(path, table, tz), chunk_bars):
            try:
                validate_bars(frame)
            except DataError as exc:
                raise _in_file(path, exc, row) from None
            if not len(frame):
                continue
            stamps = pd.DatetimeIndex(frame.index).asi8
            first = int(stamps[0])
            if last is not None and first <= last:
                raise DataError(
                    f"{path}, row {row}: time: {frame.index[0]} is not after the previous "
                    f"bar's {pd.Timestamp(last, tz='UTC')}: bars must be in time order",
                    "time",
                    row,
                )
            last = int(stamps[-1])
            row += len(frame)
            yield frame


def _in_file(path: Path, exc: DataError, first: int) -> DataError:
    """``exc`` about a chunk, told about the whole file: its rows counted from the file's
    first bar (``first`` is the chunk's)."""
    if exc.row is None:
        return DataError(f"{path}: {exc}", exc.field, None, exc.time)
    row = first + exc.row
    message = str(exc).replace(f"row {exc.row}", f"row {row}")
    return DataError(f"{path}, row {row}: {message}", exc.field, row, exc.time)


def _parquet_batches(path: Path, chunk_bars: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        # a buffered read: without it pyarrow holds each column chunk whole, for every file open
        source = pq.ParquetFile(path, buffer_size=1 << 18, pre_buffer=False)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a file not Parquet
        raise ValueError(f"{path}: not a Parquet file ({exc})") from None
    with source:
        for batch in source.iter_batches(batch_size=chunk_bars):
            yield batch.to_pandas()


def _csv_batches(path: Path, chunk_bars: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # Every price and volume column is read as float64: pyarrow would otherwise fix a column's
    # type from its first block (an integer column that later holds 2.5 would fail midway).
    types = {
        name: pa.string() if _normal(name) == "time" else pa.float64()
        for name in _csv_header(path)
        if _normal(name) in ("time", *BAR_PRICE_FIELDS)
    }
    # About 128 bytes a row: the decoded block, which every chunk cut from it keeps alive,
    # stays near the size of a chunk.
    block = min(1 << 22, max(1 << 16, chunk_bars * 128))
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=block),
            convert_options=pcsv.ConvertOptions(column_types=types),
        )
        for batch in reader:
            yield batch.to_pandas()
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot read it as CSV: {exc}", "") from None


def _csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (gzip or not), from its first line."""
    import csv
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as text:
            return next(csv.reader(text), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read its header: {exc}", "") from None


def _frame(path: Path, table: pd.DataFrame, tz: str) -> pd.DataFrame:
    """One batch in the bars convention."""
    table.columns = [_normal(str(name)) for name in table.columns]
    if isinstance(table.index, pd.DatetimeIndex):
        times = table.index
    elif "time" in table.columns:
        stamps = table.pop("time")
        try:
            times = pd.DatetimeIndex(pd.to_datetime(stamps, format="ISO8601"))
        except (ValueError, TypeError):
            try:  # several UTC offsets (local times over a daylight-saving change)
                times = pd.DatetimeIndex(pd.to_datetime(stamps, format="ISO8601", utc=True))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}: time: cannot read the times ({exc})", "time") from None
    else:
        raise DataError(f"{path}: no 'time' column or time index", "time")
    times = times.tz_localize(tz) if times.tz is None else times
    missing = [name for name in ("open", "high", "low", "close") if name not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r}", missing[0])
    columns = {}
    for name in BAR_PRICE_FIELDS:
        if name in table.columns:
            try:
                columns[name] = table[name].to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                raise DataError(f"{path}: {name}: not a number in every row", name) from None
    index = pd.DatetimeIndex(times.tz_convert("UTC").as_unit("ns"), name="time")
    return pd.DataFrame(columns, index=index, copy=False)


def _split(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


__all__ = ["CHUNK_BARS", "STREAMED", "bar_chunks", "stream_kind"]
