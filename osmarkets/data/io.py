"""Read and write bars and ticks: CSV in its common layouts, and Parquet (with pyarrow).

Every reader returns the DataFrame convention of DESIGN.md section 3: a UTC ``DatetimeIndex``
named ``time`` and lower-case columns (``open``, ``high``, ``low``, ``close``, ``volume``, or
``bid``, ``ask``, ... for ticks), checked by :mod:`osmarkets.data.validate`. Errors name the
file and the line, because that is where the user has to look.

CSV layouts understood by :func:`read_csv`:

* one datetime column (``2015-09-23T20:57:42.146``, ``02/03/2010 16:53:50``) or separate date
  and time columns (``2006-01-02,09:01:00``), also when the header names only the date column
  (a header one name short of the rows);
* with or without a header; without one, the number of value columns decides: 1 = ``price``,
  2 = ``bid, ask``, 4 = OHLC, 5 = OHLCV, 6 = OHLCV + open interest (``kind='ticks'``: 4 =
  ``bid, ask, bid_volume, ask_volume``);
* header names are matched case-insensitively with common aliases (``Adj Close``,
  ``OpenInterest``, ``offer``, ``vol bid``...); unknown columns are dropped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .types import ASK_OHLC, BID_OHLC
from .validate import DataError, validate_bars, validate_ticks

_ALIASES = {
    "open": "open", "o": "open",
    "high": "high", "h": "high",
    "low": "low", "l": "low",
    "close": "close", "c": "close", "last": "close",
    "adj_close": "adj_close", "adjclose": "adj_close", "adjusted_close": "adj_close",
    "volume": "volume", "vol": "volume", "v": "volume", "tickvol": "volume",
    "openinterest": "open_interest", "open_interest": "open_interest", "oi": "open_interest",
    **{name: name for name in (*BID_OHLC, *ASK_OHLC)},
    "price": "price",
    "bid": "bid", "ask": "ask", "offer": "ask",
    "bid_volume": "bid_volume", "bidvolume": "bid_volume", "vol_bid": "bid_volume",
    "bid_size": "bid_volume",
    "ask_volume": "ask_volume", "askvolume": "ask_volume", "vol_ask": "ask_volume",
    "vol_offer": "ask_volume", "ask_size": "ask_volume", "offer_volume": "ask_volume",
}  # fmt: skip
_TIME_NAMES = {"date", "time", "datetime", "timestamp", "date_time", "dt", "gmt_time", "utc"}
_CLOCK_RE = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")
_HEADERLESS = {
    ("bars", 4): ("open", "high", "low", "close"),
    ("bars", 5): ("open", "high", "low", "close", "volume"),
    ("bars", 6): ("open", "high", "low", "close", "volume", "open_interest"),
    ("ticks", 1): ("price",),
    ("ticks", 2): ("bid", "ask"),
    ("ticks", 3): ("bid", "ask", "volume"),
    ("ticks", 4): ("bid", "ask", "bid_volume", "ask_volume"),
}
_KINDS = ("auto", "bars", "ticks")
_TICK_COLUMNS = frozenset({"bid", "ask", "price"})


def _normal(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip("\"'").lower())


def _first_line(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        row = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty", "") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})", "") from None
    return [str(field) for field in row.iloc[0].tolist()]


def _looks_like_header(row: list[str]) -> bool:
    return not any(field.strip()[:1].isdigit() for field in row)


def read_csv(
    path: str | Path,
    *,
    kind: str = "auto",
    header: bool | None = None,
    tz: str = "UTC",
    dayfirst: bool = False,
    keep_open_interest: bool = False,
    rename: Mapping[str, str | None] | None = None,
    validate: bool = True,
) -> pd.DataFrame:
    """Read bars or ticks from a CSV file into the DataFrame convention.

    ``kind``: ``'bars'``, ``'ticks'`` or ``'auto'`` (ticks when the file has bid/ask or price
    columns). With ``kind='ticks'`` an OHLC file of trades (O = H = L = C) becomes ``price``
    ticks, so several rows may share a timestamp. ``header``: None detects it (a first line
    with no field starting with a digit). ``tz``: the zone of naive times (default UTC; times
    with an offset are converted). ``dayfirst``: read ``01/03/16`` as 1 March.
    ``keep_open_interest``: keep an open interest column as ``open_interest`` (dropped by
    default). ``rename``: extra ``{column: new name}`` after alias matching, ``None`` drops the
    column (``{'offer': 'price', 'bid': None}``). ``validate``: check prices and time order.

    Raises ``FileNotFoundError`` or :class:`~osmarkets.data.validate.DataError` (a
    ``ValueError``) naming the file and line.
    """
    path = Path(path)
    if kind not in _KINDS:
        raise ValueError(f"read_csv kind: expected one of {', '.join(_KINDS)}, got {kind!r}")
    first = _first_line(path)
    has_header = _looks_like_header(first) if header is None else header
    try:
        raw = pd.read_csv(
            path,
            header=None,
            skiprows=1 if has_header else 0,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: {exc}", "") from exc
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=range(len(first)))
    offset = 2 if has_header else 1  # file line of positional row 0
    ncols = raw.shape[1]
    sample = raw.iloc[0].tolist() if len(raw) else []
    split_time = ncols >= 2 and bool(sample) and bool(_CLOCK_RE.match(str(sample[1])))
    if has_header:
        names = [_normal(name) for name in first]
        if len(names) == ncols - 1 and split_time:
            names.insert(1, "time")  # header names the date only, rows carry date and time
        if len(names) != ncols:
            raise DataError(
                f"{path}: the header has {len(names)} names but line {offset} has {ncols} fields",
                "",
            )
        if names[0] not in _TIME_NAMES and not _looks_like_time(sample[:1]):
            raise DataError(f"{path}: the first column {first[0]!r} is not a date or time", "")
        value_names = names[2:] if split_time else names[1:]
        mapped: list[str | None] = [_ALIASES.get(name, name) for name in value_names]
    else:
        values = ncols - (2 if split_time else 1)
        guess = "ticks" if kind == "ticks" or (kind == "auto" and values in (1, 2)) else "bars"
        if (guess, values) not in _HEADERLESS:
            raise DataError(
                f"{path}: no header and {values} value columns: cannot tell the layout "
                "(add a header line or use 4-6 columns for bars, 1-4 for ticks)",
                "",
            )
        mapped = list(_HEADERLESS[(guess, values)])
    if rename:
        mapped = [None if name is None else rename.get(name, name) for name in mapped]

    text_time = raw[0].astype(str)
    if split_time:
        text_time = text_time + " " + raw[1].astype(str)
    times = _parse_times(path, text_time, tz, dayfirst, offset)

    start = 2 if split_time else 1
    known = set(_ALIASES.values())
    columns: dict[str, np.ndarray] = {}
    for position, name in enumerate(mapped, start=start):
        if name is None or name not in known or name in columns:
            continue
        if name == "open_interest" and not keep_open_interest:
            continue
        columns[name] = _parse_numbers(path, raw[position], name, offset)
    frame = pd.DataFrame(columns, index=times)

    is_ticks = _is_ticks(kind, frame)
    if kind == "ticks" and not _TICK_COLUMNS & set(frame.columns):
        if "close" not in frame.columns:
            raise DataError(f"{path}: kind='ticks' needs bid/ask, price or close columns", "")
        frame = frame.rename(columns={"close": "price"}).drop(
            columns=[c for c in ("open", "high", "low", "adj_close") if c in frame.columns]
        )
    if validate:
        _validated(path, frame, "ticks" if is_ticks else "bars", offset)
    return frame


def _is_ticks(kind: str, frame: pd.DataFrame) -> bool:
    """Ticks when asked for, or (``kind='auto'``) when the frame has bid/ask or price columns."""
    return kind == "ticks" or (kind == "auto" and bool(_TICK_COLUMNS & set(frame.columns)))


def _looks_like_time(values: list[Any]) -> bool:
    if not values:
        return True
    try:
        pd.Timestamp(str(values[0]))
    except (ValueError, TypeError):
        return False
    return True


def _parse_times(
    path: Path, text: pd.Series, tz: str, dayfirst: bool, offset: int
) -> pd.DatetimeIndex:
    try:
        with warnings.catch_warnings():
            # pandas warns when it cannot infer one format for the column: parse each value.
            warnings.simplefilter("error", UserWarning)
            parsed = pd.to_datetime(text, dayfirst=dayfirst, errors="coerce")
    except (ValueError, TypeError, UserWarning):
        parsed = pd.to_datetime(text, dayfirst=dayfirst, errors="coerce", format="mixed")
    if not isinstance(parsed.dtype, pd.DatetimeTZDtype) and parsed.dtype == object:
        # Mixed offsets: pandas leaves objects; make everything UTC.
        parsed = pd.to_datetime(text, dayfirst=dayfirst, errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{path}, line {row + offset}: time: cannot read {text.iloc[row]!r} as a date/time",
            "time",
            row,
        )
    index = pd.DatetimeIndex(parsed, name="time")
    if index.tz is None:
        try:
            index = index.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        except Exception as exc:  # unknown zone name
            raise ValueError(f"read_csv tz: unknown time zone {tz!r}") from exc
        bad = np.flatnonzero(index.isna())
        if len(bad):
            row = int(bad[0])
            raise DataError(
                f"{path}, line {row + offset}: time: {text.iloc[row]!r} is ambiguous or does "
                f"not exist in {tz} (daylight saving change)",
                "time",
                row,
            )
    return index.tz_convert("UTC").as_unit("ns")


def _parse_numbers(path: Path, text: pd.Series, name: str, offset: int) -> np.ndarray:
    missing = np.flatnonzero(text.isna().to_numpy())
    if len(missing):
        row = int(missing[0])
        raise DataError(f"{path}, line {row + offset}: {name}: missing field", name, row)
    stripped = text.astype(str).str.strip()
    values = pd.to_numeric(stripped.where(stripped != "", None), errors="coerce")
    missing_words = stripped.str.lower().isin(("", "nan", "na", "n/a", "null", "none"))
    bad = np.flatnonzero(values.isna().to_numpy() & ~missing_words.to_numpy())
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{path}, line {row + offset}: {name}: cannot read {text.iloc[row]!r} as a number",
            name,
            row,
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _validated(path: Path, frame: pd.DataFrame, kind: str, offset: int | None) -> None:
    """Validate; ``offset`` is the file line of row 0 (None: no lines, as in Parquet)."""
    try:
        if kind == "ticks":
            validate_ticks(frame)
        else:
            validate_bars(frame)
    except DataError as exc:
        line = f", line {exc.row + offset}" if exc.row is not None and offset else ""
        raise DataError(f"{path}{line}: {exc}", exc.field, exc.row, exc.time) from None


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write bars or ticks with a ``time`` column in UTC (ISO, nanoseconds kept) that
    :func:`read_csv` reads back exactly (pandas writes floats with full precision)."""
    out = frame.copy()
    index = out.index
    if isinstance(index, pd.DatetimeIndex):
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        out.index = index.as_unit("ns")
    out.to_csv(path, index=True, index_label="time")


def _need_pyarrow(what: str) -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError(
            f"{what} needs pyarrow, which is not installed: pip install 'osmarkets[parquet]' "
            "(or pip install pyarrow)"
        )


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write bars or ticks to Parquet (needs pyarrow); the UTC index is kept as ``time``."""
    _need_pyarrow("write_parquet")
    frame.to_parquet(path, engine="pyarrow", index=True)


def read_parquet(path: str | Path, *, kind: str = "auto", validate: bool = True) -> pd.DataFrame:
    """Read bars or ticks from Parquet (needs pyarrow) into the DataFrame convention."""
    _need_pyarrow("read_parquet")
    if kind not in _KINDS:
        raise ValueError(f"read_parquet kind: expected one of {', '.join(_KINDS)}, got {kind!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    frame = pd.read_parquet(path, engine="pyarrow")
    if not isinstance(frame.index, pd.DatetimeIndex):
        if "time" not in frame.columns:
            raise DataError(f"{path}: no 'time' column or DatetimeIndex", "time")
        frame = frame.set_index(pd.DatetimeIndex(frame.pop("time")))
    frame.columns = [_normal(str(name)) for name in frame.columns]
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    frame.index = index.as_unit("ns").rename("time")
    if validate:
        _validated(path, frame, "ticks" if _is_ticks(kind, frame) else "bars", None)
    return frame


_READERS = {".csv": read_csv, ".txt": read_csv, ".parquet": read_parquet, ".pq": read_parquet}


def read_bars(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """Read a bars (or ticks) file, choosing the reader by extension (``.csv``, ``.txt``,
    ``.parquet``, ``.pq``; a trailing ``.gz``/``.bz2``/``.zip``/``.xz`` is allowed for CSV)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz") and len(suffixes) > 1:
        suffixes.pop()
        if suffixes[-1] not in (".csv", ".txt"):
            raise ValueError(f"{path}: compressed files are read for .csv and .txt only")
    suffix = suffixes[-1] if suffixes else ""
    reader = _READERS.get(suffix)
    if reader is None:
        raise ValueError(
            f"{path}: unknown file type {suffix or '(none)'!r}; expected one of "
            f"{', '.join(sorted(_READERS))}"
        )
    return reader(path, **kwargs)
