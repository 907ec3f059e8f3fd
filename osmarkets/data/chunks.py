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
    tables = _parquet_batches(path, chunk_bars) if kind == "parquet" else _csv_batches(path)
    row = 0
    last = None
    for table in tables:
        for frame in _split(_frame(path, table, tz), chunk_bars):
            try:
                validate_bars(frame)
            except DataError as exc:
                at = f", row {row + exc.row}" if exc.row is not None else ""
                raise DataError(f"{path}{at}: {exc}", exc.field, exc.row, exc.time) from None
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


def _csv_batches(path: Path) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 22),
            convert_options=pcsv.ConvertOptions(column_types={"time": pa.string()}),
        )
        for batch in reader:
            yield batch.to_pandas()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: cannot read it as CSV: {exc}") from None


def _frame(path: Path, table: pd.DataFrame, tz: str) -> pd.DataFrame:
    """One batch in the bars convention."""
    table.columns = [_normal(str(name)) for name in table.columns]
    if isinstance(table.index, pd.DatetimeIndex):
        times = table.index
    elif "time" in table.columns:
        try:
            times = pd.DatetimeIndex(pd.to_datetime(table.pop("time"), format="ISO8601"))
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
