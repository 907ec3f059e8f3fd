"""Read and write bars and ticks: the text exports people have, MT4 history files and Parquet.

Every reader returns the DataFrame convention of DESIGN.md section 3: a UTC ``DatetimeIndex``
named ``time`` and lower-case columns (``open``, ``high``, ``low``, ``close``, ``volume``, or
``bid``, ``ask``, ... for ticks), checked by :mod:`osmarkets.data.validate`. A refusal is a
:class:`~osmarkets.data.validate.DataError` that names the file, the line (1-based, the header
counted; ``record N (byte X)`` in a binary file) and the field, because that is where the user
has to look: ``quotes.csv, line 7: high: cannot read 'abc' as a number``.

Layouts (``layout=`` of :func:`read_bars`; :func:`read_csv` takes the text ones):

============  ==============================================  ===================================
layout        what the file looks like                        ``'auto'`` picks it by
============  ==============================================  ===================================
mt4-hst       MT4 binary history, version 400 or 401          the extension ``.hst``
parquet       Parquet, a time index or a ``time`` column      the extension ``.parquet``/``.pq``
metatrader    MT4 export, no header:                          rows opening ``YYYY.MM.DD,HH:MM``;
              ``2020.01.02,00:00,o,h,l,c,v``; MT5 export,     a ``<DATE>`` header without
              tab separated: ``<DATE> <TIME> <OPEN> <HIGH>    ``<TICKER>``
              <LOW> <CLOSE> <TICKVOL> <VOL> <SPREAD>``
yahoo         ``Date,Open,High,Low,Close,Adj Close,Volume``,  that header (``Adj Close`` tells
              dates ``YYYY-MM-DD``; ``adj_close`` is kept     it from Stooq's)
stooq         ``Date,Open,High,Low,Close[,Volume]``           a ``<TICKER>`` header; the
              (``YYYY-MM-DD``), intraday with ``Time``        ``Date,...`` forms go to ``csv``,
              (``HH:MM:SS``); or ``<TICKER>,<PER>,<DATE>,     which reads them the same
              <TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,
              <OPENINT>`` (``YYYYMMDD``, ``HHMMSS``)
ninjatrader   ``;``-separated, no header: ``20200102          a ``;``-separated first line
              093000;o;h;l;c;v`` (minute bars) or             opening with such a time
              ``20200102;o;h;l;c;v`` (daily)
tradestation  ``"Date","Time","Open","High","Low","Close",    a header of those names and a
              "Vol","OI"`` or ``...,"Up","Down"`` (volume     first date ``MM/DD/YYYY``
              = Up + Down); ``MM/DD/YYYY``, ``HH:MM[:SS]``
              or ``HHMM``
csv           anything else :func:`read_csv` understands      nothing else fits
              (see below)
============  ==============================================  ===================================

``'auto'`` looks at the extension first (``.csv``, ``.txt`` and ``.tsv`` are text, perhaps
compressed), then tries the text layouts in the order of the table on the first two non-blank
lines (the header and the first row, or the first two rows): the first that fits reads the file,
``csv`` when none does. It never picks a named layout when ``header`` or ``dayfirst`` is given
(they belong to ``csv``); :func:`detect_layout` tells what it picks. A named layout reads its own
shape strictly (its date and time formats, its number of fields, no ``null`` or empty value:
``skip_missing_rows=True`` drops Yahoo's all-``null`` rows) and refuses a file that does not
match, naming the line and the field that differ.
Volume: MT5 exports and MT4 v401 records carry tick and real volume; real volume is used when any
of it is non-zero (exchange-traded symbols), tick volume otherwise (forex, CFDs). Open interest
is dropped unless ``keep_open_interest``. Times are read as written, in ``tz`` (UTC by default),
then converted to UTC; TradeStation and NinjaTrader exports usually stamp a bar with its *close*
time where osmarkets uses its open, so shift such frames by one bar if that matters.

CSV layouts understood by the generic ``csv`` reader:

* one datetime column (``2015-09-23T20:57:42.146``, ``02/03/2010 16:53:50``) or separate date
  and time columns (``2006-01-02,09:01:00``), also when the header names only the date column
  (a header one name short of the rows);
* with or without a header; without one, the number of value columns decides: 1 = ``price``,
  2 = ``bid, ask``, 4 = OHLC, 5 = OHLCV, 6 = OHLCV + open interest (``kind='ticks'``: 4 =
  ``bid, ask, bid_volume, ask_volume``);
* header names are matched case-insensitively with common aliases (``Adj Close``,
  ``OpenInterest``, ``offer``, ``vol bid``...); unknown columns are dropped.

Text files may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``) and UTF-8 or UTF-16 with a
byte order mark (MT5 writes UTF-16). Blank lines are skipped.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import importlib.util
import io
import lzma
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from .types import ASK_OHLC, BID_OHLC
from .validate import DataError, validate_bars, validate_ticks

LAYOUTS = (
    "auto", "csv", "yahoo", "stooq", "metatrader", "mt4-hst", "ninjatrader", "tradestation",
    "parquet",
)  # fmt: skip
_BINARY_LAYOUTS = ("mt4-hst", "parquet")

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
_MISSING = ("", "nan", "na", "n/a", "null", "none")
_ORDER = ("open", "high", "low", "close", "adj_close", "volume", "open_interest")

Where = Callable[[int], str]  # positional row -> "line 12" (or "record 3 (byte 268)")


def _choice(who: str, what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{who} {what}: expected one of {', '.join(allowed)}, got {value!r}")


def _check_tz(who: str, tz: str) -> None:
    """Refuse an unknown zone before reading, not half-way through a file."""
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:
        raise ValueError(f"{who} tz: unknown time zone {tz!r}") from exc


def _normal(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip("\"'").lower())


def _key(name: str) -> str:
    """A header name as a lookup key: ``'<TICKVOL>'`` -> ``'tickvol'``, ``'Adj Close'`` ->
    ``'adj_close'``."""
    return _normal(name).strip("<>")


def _fields(text: str, sep: str) -> list[str]:
    """Split one line as the CSV parser does (quotes honoured), fields stripped."""
    return [field.strip() for field in next(csv.reader([text], delimiter=sep), [])]


def _human(fmt: str) -> str:
    """``'%Y.%m.%d %H:%M'`` -> ``'YYYY.MM.DD HH:MM'`` for messages."""
    for code, text in (("%Y", "YYYY"), ("%m", "MM"), ("%d", "DD"), ("%H", "HH"), ("%M", "MM")):
        fmt = fmt.replace(code, text)
    return fmt.replace("%S", "SS")


# --- text access: compression, encoding, the first lines -------------------------------------

_COMPRESSED: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_HEAD_BYTES = 1 << 16


@contextmanager
def _binary(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed as pandas would (by extension)."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as stream:
            yield stream
    elif suffix in _COMPRESSED:
        with _COMPRESSED[suffix](path, "rb") as stream:
            yield stream
    else:
        with open(path, "rb") as stream:
            yield stream


@dataclass(frozen=True)
class _Head:
    """The encoding and the first two non-blank lines of a text file, as (line number, text)."""

    encoding: str
    lines: list[tuple[int, str]]


def _sniff(path: Path) -> _Head:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with _binary(path) as stream:
            chunk = stream.read(_HEAD_BYTES)
    except (OSError, EOFError, IndexError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})", "") from None
    if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif chunk.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif b"\x00" in chunk:
        raise DataError(
            f"{path}: not a text file (it holds NUL bytes; an MT4 history file is read with "
            "layout='mt4-hst')",
            "",
        )
    else:
        encoding = "utf-8"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(chunk, final=False)
    except UnicodeDecodeError as exc:
        line = chunk[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start})",
            "",
        ) from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: the file is empty", "")
    return _Head(encoding, numbered[:2])


def _line_text(path: Path, encoding: str, number: int) -> str:
    """Line ``number`` (1-based) of the file; read only to explain a refusal."""
    with _binary(path) as stream:
        text = io.TextIOWrapper(stream, encoding=encoding, newline=None)
        for n, line in enumerate(text, start=1):
            if n == number:
                return line.rstrip("\r\n")
    return ""


_FIELD_COUNT_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_table(
    path: Path, encoding: str, sep: str, skip: int, width: int | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every field as text, and the file line of each row (blank lines are dropped).

    ``width``: the number of fields each line must have (None: as many as the first line).
    """
    try:
        raw = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=None if width is None else list(range(width)),
            skiprows=skip,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
            encoding=encoding,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=range(width or 0), dtype=str), np.zeros(0, dtype=np.int64)
    except pd.errors.ParserError as exc:
        found = _FIELD_COUNT_RE.search(str(exc))
        if found is None:
            raise DataError(f"{path}: {exc}", "") from None
        expected, line, saw = (int(group) for group in found.groups())
        raise DataError(
            f"{path}, line {line}: field {expected + 1}: one field too many (the line has {saw} "
            f"fields, {expected} expected)",
            f"field {expected + 1}",
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a readable text file ({exc})", "") from None
    lines = np.arange(skip + 1, skip + 1 + len(raw), dtype=np.int64)
    blank = (raw == "").all(axis=1).to_numpy(dtype=bool)
    if blank.any():
        raw = raw.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return raw, lines


def _line_of(lines: np.ndarray) -> Where:
    return lambda row: f"line {int(lines[row])}"


# --- named text layouts ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to read one file of a named layout, decided from its first lines."""

    layout: str
    sep: str
    skip: int  # file lines before the first row of data (the header included)
    columns: tuple[str, ...]  # per field: "date", "time", a value name, or "" (ignored)
    formats: dict[str, str]  # strptime format of the "date" and "time" fields


class _NoMatch(Exception):
    """The file is not of the layout tried: where and why."""

    def __init__(self, line: int, field: str, why: str) -> None:
        super().__init__(why)
        self.line, self.field, self.why = line, field, why


_TITLES = {
    "yahoo": "Yahoo",
    "stooq": "Stooq",
    "metatrader": "MetaTrader",
    "ninjatrader": "NinjaTrader",
    "tradestation": "TradeStation",
}
_SHAPES = {
    "yahoo": "'Date,Open,High,Low,Close,Adj Close,Volume' then rows like '2014-01-02,...'",
    "stooq": "'Date,Open,High,Low,Close,Volume' (and Time HH:MM:SS) or "
    "'<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>'",
    "metatrader": "rows like '2020.01.02,00:00,open,high,low,close,volume' (MT4) or the header "
    "'<DATE>\\t<TIME>\\t<OPEN>\\t<HIGH>\\t<LOW>\\t<CLOSE>\\t<TICKVOL>\\t<VOL>\\t<SPREAD>' (MT5)",
    "ninjatrader": "rows like '20200102 093000;open;high;low;close;volume' or "
    "'20200102;open;high;low;close;volume'",
    "tradestation": '\'"Date","Time","Open","High","Low","Close","Vol","OI"\' '
    "(or Up,Down) then rows like '01/02/2020,09:30,...'",
}
_PRICES = ("open", "high", "low", "close")
_WIDTHS = {"%Y%m%d": 8, "%H%M%S": 6, "%Y%m%d %H%M%S": 15}  # digits-only formats: fixed width


def _by_header(
    head: _Head, sep: str, known: Mapping[str, str], required: tuple[str, ...]
) -> tuple[int, tuple[str, ...]]:
    """The header line and the column of each field, from header names this layout knows."""
    line, text = head.lines[0]
    names = _fields(text, sep)
    if not _looks_like_header(names):
        raise _NoMatch(line, "header", f"no header line: the file opens with {text!r}")
    if len(names) == 1:
        raise _NoMatch(line, "header", f"the header {text!r} is not separated by {sep!r}")
    columns: list[str] = []
    for name in names:
        if _key(name) not in known:
            raise _NoMatch(line, _key(name) or "header", f"unexpected column {name!r}")
        columns.append(known[_key(name)])
    for name in required:
        if name not in columns:
            raise _NoMatch(line, name, f"the header {text!r} has no {name} column")
    return line, tuple(columns)


def _formats(
    sample: tuple[int, str] | None,
    sep: str,
    columns: tuple[str, ...],
    dates: tuple[str, ...],
    times: tuple[str, ...],
) -> dict[str, str]:
    """The date and time formats that read the first row of data (the first candidates when
    the file has no row)."""
    if sample is None:
        return {"date": dates[0] if dates else "", "time": times[0] if times else ""}
    line, text = sample
    fields = _fields(text, sep)
    if len(fields) != len(columns):
        raise _NoMatch(
            line,
            _count_field(columns, len(fields)),
            f"the line has {_plural(len(fields), 'field')} separated by {sep!r}, "
            f"{len(columns)} expected",
        )
    formats: dict[str, str] = {}
    for name, candidates in (("date", dates), ("time", times)):
        if name not in columns:
            continue
        value = fields[columns.index(name)]
        for fmt in candidates:
            if _parses(value, fmt):
                formats[name] = fmt
                break
        else:
            shapes = " or ".join(_human(fmt) for fmt in candidates)
            raise _NoMatch(line, name, f"{value!r} is not {shapes}")
    return formats


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _count_field(columns: tuple[str, ...], found: int) -> str:
    """The field a line of ``found`` fields lacks (or has too many)."""
    if found < len(columns) and columns[found]:
        return columns[found]
    return f"field {min(found, len(columns)) + 1}"


def _yahoo(head: _Head) -> _Plan:
    names = ("date", "open", "high", "low", "close", "adj_close", "volume")
    line, columns = _by_header(head, ",", {name: name for name in names}, names)
    sample = head.lines[1] if len(head.lines) > 1 else None
    return _Plan("yahoo", ",", line, columns, _formats(sample, ",", columns, ("%Y-%m-%d",), ()))


_STOOQ = {name: name for name in ("date", "time", *_PRICES, "volume")} | {
    "openint": "open_interest"
}
_STOOQ_TICKER = {
    "ticker": "", "per": "", "date": "date", "time": "time", **{p: p for p in _PRICES},
    "vol": "volume", "openint": "open_interest",
}  # fmt: skip


def _stooq(head: _Head) -> _Plan:
    ticker = "<" in head.lines[0][1]
    known = _STOOQ_TICKER if ticker else _STOOQ
    line, columns = _by_header(head, ",", known, ("date", *_PRICES))
    sample = head.lines[1] if len(head.lines) > 1 else None
    if ticker:
        formats = _formats(sample, ",", columns, ("%Y%m%d",), ("%H%M%S",))
    else:
        formats = _formats(sample, ",", columns, ("%Y-%m-%d",), ("%H:%M:%S",))
    return _Plan("stooq", ",", line, columns, formats)


_MT5 = {name: name for name in ("date", "time", *_PRICES)} | {
    "tickvol": "tickvol", "vol": "vol", "spread": "",
}  # fmt: skip
_MT4_COLUMNS = ("date", "time", *_PRICES, "volume")


def _metatrader(head: _Head) -> _Plan:
    line, text = head.lines[0]
    times = ("%H:%M:%S", "%H:%M")
    if "<" in text:  # MT5: a header of <NAMES>, tab separated
        sep = "\t" if "\t" in text else ","
        line, columns = _by_header(head, sep, _MT5, ("date", *_PRICES))
        sample = head.lines[1] if len(head.lines) > 1 else None
        return _Plan(
            "metatrader", sep, line, columns, _formats(sample, sep, columns, ("%Y.%m.%d",), times)
        )
    formats = _formats((line, text), ",", _MT4_COLUMNS, ("%Y.%m.%d",), times)
    return _Plan("metatrader", ",", line - 1, _MT4_COLUMNS, formats)


def _ninjatrader(head: _Head) -> _Plan:
    line, text = head.lines[0]
    columns = ("time", *_PRICES, "volume")
    formats = _formats((line, text), ";", columns, (), ("%Y%m%d %H%M%S", "%Y%m%d"))
    return _Plan("ninjatrader", ";", line - 1, columns, formats)


_TRADESTATION = {
    **{name: name for name in ("date", "time", *_PRICES, "volume", "up", "down")},
    "o": "open", "h": "high", "l": "low", "c": "close", "vol": "volume", "v": "volume",
    "oi": "open_interest", "openint": "open_interest",
}  # fmt: skip


def _tradestation(head: _Head) -> _Plan:
    line, columns = _by_header(head, ",", _TRADESTATION, ("date", "time", *_PRICES))
    sample = head.lines[1] if len(head.lines) > 1 else None
    formats = _formats(sample, ",", columns, ("%m/%d/%Y",), ("%H:%M", "%H:%M:%S", "%H%M"))
    return _Plan("tradestation", ",", line, columns, formats)


_PLANNERS: dict[str, Callable[[_Head], _Plan]] = {
    "metatrader": _metatrader,
    "yahoo": _yahoo,
    "ninjatrader": _ninjatrader,
    "tradestation": _tradestation,
    "stooq": _stooq,
}


def _detect(path: Path, head: _Head) -> _Plan | None:
    """The first named layout the file's first lines fit, or None (the generic reader).

    Stooq's ``Date,Open,...`` files are left to the generic reader, which reads them the same:
    only its ``<TICKER>`` header tells it apart. A ``<NAME>`` header (MT5, Stooq) is its
    layout's alone: a first row that does not fit it is refused, not read as another layout."""
    for layout, planner in _PLANNERS.items():
        if layout == "stooq" and "<ticker>" not in head.lines[0][1].lower():
            continue
        try:
            return planner(head)
        except _NoMatch as no:
            if layout in ("metatrader", "stooq") and no.line != head.lines[0][0]:
                raise _mismatch(path, layout, no) from None
    return None


def _plan(path: Path, head: _Head, layout: str) -> _Plan:
    try:
        return _PLANNERS[layout](head)
    except _NoMatch as no:
        raise _mismatch(path, layout, no) from None


def _mismatch(path: Path, layout: str, no: _NoMatch) -> DataError:
    return DataError(
        f"{path}, line {no.line}: {no.field}: not a {_TITLES[layout]} file: {no.why} "
        f"(expected {_SHAPES[layout]})",
        no.field,
    )


def _read_planned(
    path: Path,
    head: _Head,
    plan: _Plan,
    *,
    tz: str,
    keep_open_interest: bool,
    skip_missing_rows: bool,
) -> tuple[pd.DataFrame, np.ndarray]:
    raw, lines = _read_table(path, head.encoding, plan.sep, plan.skip, len(plan.columns))

    values: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    not_numbers: dict[str, np.ndarray] = {}
    for position, name in enumerate(plan.columns):
        if name in ("", "date", "time") or name in values:
            continue
        text = raw[position].str.strip()
        number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(number)
        missing[name] = np.zeros(len(number), dtype=bool)
        if nan.any():  # 'null', '' or 'nan' are missing values, anything else is not a number
            missing[name][nan] = text[nan].str.lower().isin(_MISSING).to_numpy()
        not_numbers[name] = nan & ~missing[name]
        values[name] = number

    if skip_missing_rows and len(raw):
        # Yahoo's 'null' rows: no price at all that day. A row missing only some is refused.
        empty = np.logical_and.reduce([missing[name] for name in _PRICES if name in missing])
        if empty.any():
            keep = ~empty
            raw, lines = raw.loc[keep].reset_index(drop=True), lines[keep]
            values = {name: column[keep] for name, column in values.items()}
            missing = {name: column[keep] for name, column in missing.items()}
            not_numbers = {name: column[keep] for name, column in not_numbers.items()}

    parsed, text, problem = _planned_times(plan, raw)

    # Refuse at the first bad line of the file, whichever field it is in.
    problems = [problem] if problem else []  # (row, field position, field, what)
    for name in values:
        position = plan.columns.index(name)
        for mask, what in ((not_numbers[name], "cannot read {!r} as a number"),
                           (missing[name], "missing value ({!r})")):  # fmt: skip
            bad = np.flatnonzero(mask)
            if len(bad):
                row = int(bad[0])
                problems.append((row, position, name, what.format(raw[position].iloc[row])))
    if problems:
        row, _, field, what = min(problems)
        line = int(lines[row])
        found = len(_fields(_line_text(path, head.encoding, line), plan.sep))
        if found < len(plan.columns):
            field = _count_field(plan.columns, found)
            what = (
                f"missing (the line has {_plural(found, 'field')}, {len(plan.columns)} expected)"
            )
        elif what.startswith("missing value"):
            what += (
                "; skip_missing_rows=True drops rows with no price at all (Yahoo writes 'null' "
                "on days without data)"
            )
        raise DataError(f"{path}, line {line}: {field}: {what}", field, row)

    index = pd.DatetimeIndex(parsed, name="time")
    index = _to_utc(path, index, tz, text, _line_of(lines))
    return pd.DataFrame(_bar_columns(values, keep_open_interest), index=index), lines


def _planned_times(
    plan: _Plan, raw: pd.DataFrame
) -> tuple[pd.Series, pd.Series, tuple[int, int, str, str] | None]:
    """The naive times of the date and time fields, their text, and the first one that is not
    of the layout's format (row, field position, field, what), if any."""
    time_fields = [name for name in ("date", "time") if name in plan.columns]
    parts = [raw[plan.columns.index(name)].str.strip() for name in time_fields]
    text = parts[0] if len(parts) == 1 else parts[0] + " " + parts[1]
    fmt = " ".join(plan.formats[name] for name in time_fields)
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    for name, part in zip(time_fields, parts, strict=True):
        width = _WIDTHS.get(plan.formats[name])
        if width:  # strptime would read '0001' as HHMMSS (00:00:01)
            parsed = parsed.where(part.str.len() == width)
    bad = np.flatnonzero(pd.isna(parsed))
    if not len(bad):
        return parsed, text, None
    row = int(bad[0])
    field, value = time_fields[-1], parts[-1].iloc[row]
    if len(parts) == 1 or not _parses(parts[0].iloc[row], plan.formats["date"]):
        field, value = time_fields[0], parts[0].iloc[row]
    what = f"cannot read {value!r} as {_human(plan.formats[field])}"
    return parsed, text, (row, plan.columns.index(field), field, what)


def _parses(value: str, fmt: str) -> bool:
    """Whether ``value`` is a date/time of format ``fmt`` (digits-only formats: of its width)."""
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return len(value) == _WIDTHS.get(fmt, len(value))


def _bar_columns(values: dict[str, np.ndarray], keep_open_interest: bool) -> dict[str, Any]:
    """Volume from the layout's volume fields, the columns in the usual order."""
    values = dict(values)
    # MetaTrader: real volume when there is any (exchange symbols), else tick volume.
    tick, real = values.pop("tickvol", None), values.pop("vol", None)
    if real is not None and (tick is None or real.any()):
        values["volume"] = real
    elif tick is not None:
        values["volume"] = tick
    if "up" in values and "down" in values:  # TradeStation: up volume + down volume
        values["volume"] = values.pop("up") + values.pop("down")
    if not keep_open_interest:
        values.pop("open_interest", None)
    ordered = [name for name in _ORDER if name in values]
    return {name: values[name] for name in ordered + sorted(set(values) - set(ordered))}


# --- read_csv --------------------------------------------------------------------------------


def _looks_like_header(row: list[str]) -> bool:
    return not any(field.strip()[:1].isdigit() for field in row)


def read_csv(
    path: str | Path,
    *,
    layout: str = "auto",
    kind: str = "auto",
    header: bool | None = None,
    tz: str = "UTC",
    dayfirst: bool = False,
    keep_open_interest: bool = False,
    rename: Mapping[str, str | None] | None = None,
    validate: bool = True,
    skip_missing_rows: bool = False,
) -> pd.DataFrame:
    """Read bars or ticks from a text file into the DataFrame convention.

    ``layout``: ``'auto'`` (detected, see the module docstring), ``'csv'`` (the generic reader)
    or a named export: ``'yahoo'``, ``'stooq'``, ``'metatrader'``, ``'ninjatrader'``,
    ``'tradestation'``; a named layout that does not fit the file is refused, not guessed
    around. ``kind``: ``'bars'``, ``'ticks'`` or ``'auto'`` (ticks when the file has bid/ask or
    price columns). With ``kind='ticks'`` an OHLC file of trades (O = H = L = C) becomes
    ``price`` ticks, so several rows may share a timestamp. ``header``: None detects it (a first
    line with no field starting with a digit). ``tz``: the IANA zone the file's naive times are
    in (default UTC; times with an offset are converted). ``dayfirst``: read ``01/03/16`` as 1
    March. ``keep_open_interest``: keep an open interest column as ``open_interest`` (dropped by
    default). ``rename``: extra ``{column: new name}`` after alias matching, ``None`` drops the
    column (``{'offer': 'price', 'bid': None}``). ``validate``: check prices and time order.
    ``skip_missing_rows``: drop rows whose prices are all missing (Yahoo's ``null`` rows)
    instead of refusing them. ``header`` and ``dayfirst`` apply to the generic reader.

    Raises ``FileNotFoundError``, ``ValueError`` for a bad argument, or
    :class:`~osmarkets.data.validate.DataError` (a ``ValueError``) naming the file, the line
    and the field.
    """
    path = Path(path)
    _choice("read_csv", "kind", kind, _KINDS)
    _choice("read_csv", "layout", layout, LAYOUTS)
    if layout in _BINARY_LAYOUTS:
        raise ValueError(
            f"read_csv layout: {layout!r} is not a text layout; use read_bars(path, "
            f"layout={layout!r})"
        )
    if layout in _PLANNERS and (header is not None or dayfirst):
        raise ValueError(
            f"read_csv: header and dayfirst are for layout 'csv'; the {layout!r} layout fixes them"
        )
    _check_tz("read_csv", tz)
    head = _sniff(path)
    plan: _Plan | None = None
    if layout == "auto" and header is None and not dayfirst:
        plan = _detect(path, head)
    elif layout in _PLANNERS:
        plan = _plan(path, head, layout)
    if plan is None:
        frame, lines = _read_generic(
            path, head, kind=kind, header=header, tz=tz, dayfirst=dayfirst,
            keep_open_interest=keep_open_interest, rename=rename,
            skip_missing_rows=skip_missing_rows,
        )  # fmt: skip
    else:
        frame, lines = _read_planned(
            path, head, plan, tz=tz, keep_open_interest=keep_open_interest,
            skip_missing_rows=skip_missing_rows,
        )  # fmt: skip
        if rename:
            frame = _renamed(frame, rename)
    return _finish(path, frame, kind, validate, _line_of(lines))


def _renamed(frame: pd.DataFrame, rename: Mapping[str, str | None]) -> pd.DataFrame:
    dropped = [name for name in frame.columns if name in rename and rename[name] is None]
    return frame.drop(columns=dropped).rename(
        columns={old: new for old, new in rename.items() if new is not None}
    )


def _read_generic(
    path: Path,
    head: _Head,
    *,
    kind: str,
    header: bool | None,
    tz: str,
    dayfirst: bool,
    keep_open_interest: bool,
    rename: Mapping[str, str | None] | None,
    skip_missing_rows: bool,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The header-alias / column-count reader for CSV files of no named layout."""
    first_line, first_text = head.lines[0]
    first = _fields(first_text, ",")
    has_header = _looks_like_header(first) if header is None else header
    skip = first_line if has_header else first_line - 1
    raw, lines = _read_table(path, head.encoding, ",", skip, None)
    if raw.shape[1] == 0:
        raw = pd.DataFrame(columns=range(len(first)), dtype=str)
    ncols = raw.shape[1]
    sample = raw.iloc[0].tolist() if len(raw) else []
    split_time = ncols >= 2 and bool(sample) and bool(_CLOCK_RE.match(str(sample[1])))
    if has_header:
        names = [_normal(name) for name in first]
        if len(names) == ncols - 1 and split_time:
            names.insert(1, "time")  # header names the date only, rows carry date and time
        if len(names) != ncols:
            line = int(lines[0]) if len(lines) else first_line + 1
            raise DataError(
                f"{path}: the header has {len(names)} names but line {line} has {ncols} fields",
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
    where = _line_of(lines)
    times = _parse_times(path, text_time, tz, dayfirst, where)

    start = 2 if split_time else 1
    known = set(_ALIASES.values())
    columns: dict[str, np.ndarray] = {}
    for position, name in enumerate(mapped, start=start):
        if name is None or name not in known or name in columns:
            continue
        if name == "open_interest" and not keep_open_interest:
            continue
        columns[name] = _parse_numbers(path, raw[position], name, where)
    frame = pd.DataFrame(columns, index=times)
    if skip_missing_rows and len(frame):
        prices = [name for name in (*_PRICES, "bid", "ask", "price") if name in frame.columns]
        if prices:
            keep = ~frame[prices].isna().all(axis=1).to_numpy()
            frame, lines = frame[keep], lines[keep]
    return frame, lines


def _finish(
    path: Path, frame: pd.DataFrame, kind: str, validate: bool, where: Where | None
) -> pd.DataFrame:
    """Ticks from an OHLC file when asked for, then the checks of :mod:`.validate`."""
    is_ticks = _is_ticks(kind, frame)
    if kind == "ticks" and not _TICK_COLUMNS & set(frame.columns):
        if "close" not in frame.columns:
            raise DataError(f"{path}: kind='ticks' needs bid/ask, price or close columns", "")
        frame = frame.rename(columns={"close": "price"}).drop(
            columns=[c for c in ("open", "high", "low", "adj_close") if c in frame.columns]
        )
    if validate:
        _validated(path, frame, "ticks" if is_ticks else "bars", where)
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
    path: Path, text: pd.Series, tz: str, dayfirst: bool, where: Where
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
            f"{path}, {where(row)}: time: cannot read {text.iloc[row]!r} as a date/time",
            "time",
            row,
        )
    return _to_utc(path, pd.DatetimeIndex(parsed, name="time"), tz, text, where)


def _to_utc(
    path: Path, index: pd.DatetimeIndex, tz: str, text: pd.Series, where: Where
) -> pd.DatetimeIndex:
    """Naive times are in ``tz``: localize them (refusing a time the zone skips or repeats),
    then convert to UTC nanoseconds."""
    if index.tz is None:
        index = index.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        bad = np.flatnonzero(index.isna())
        if len(bad):
            row = int(bad[0])
            raise DataError(
                f"{path}, {where(row)}: time: {text.iloc[row]!r} is ambiguous or does "
                f"not exist in {tz} (daylight saving change)",
                "time",
                row,
            )
    return index.tz_convert("UTC").as_unit("ns").rename("time")


def _parse_numbers(path: Path, text: pd.Series, name: str, where: Where) -> np.ndarray:
    missing = np.flatnonzero(text.isna().to_numpy())
    if len(missing):
        row = int(missing[0])
        raise DataError(f"{path}, {where(row)}: {name}: missing field", name, row)
    stripped = text.astype(str).str.strip()
    values = pd.to_numeric(stripped.where(stripped != "", None), errors="coerce")
    missing_words = stripped.str.lower().isin(_MISSING)
    bad = np.flatnonzero(values.isna().to_numpy() & ~missing_words.to_numpy())
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{path}, {where(row)}: {name}: cannot read {text.iloc[row]!r} as a number",
            name,
            row,
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _validated(path: Path, frame: pd.DataFrame, kind: str, where: Where | None) -> None:
    """Validate; ``where`` names the place of a row in the file (None: no lines, as in
    Parquet)."""
    try:
        if kind == "ticks":
            validate_ticks(frame)
        else:
            validate_bars(frame)
    except DataError as exc:
        at = f", {where(exc.row)}" if exc.row is not None and where is not None else ""
        raise DataError(f"{path}{at}: {exc}", exc.field, exc.row, exc.time) from None


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write bars or ticks with a ``time`` column in UTC (ISO, nanoseconds kept) that
    :func:`read_csv` reads back exactly (pandas writes floats with full precision)."""
    out = frame.copy()
    index = out.index
    if isinstance(index, pd.DatetimeIndex):
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        out.index = index.as_unit("ns")
    out.to_csv(path, index=True, index_label="time")


# --- MT4 history files -----------------------------------------------------------------------

_HST_HEADER = 148  # int32 version, 64-byte copyright, 12-byte symbol, 4 int32s, 13 unused int32s
_HST_RECORDS = {
    # Up to build 509: time_t ctm, then open, LOW, HIGH, close, volume as doubles (44 bytes).
    400: np.dtype(
        [("time", "<i4"), ("open", "<f8"), ("low", "<f8"), ("high", "<f8"), ("close", "<f8"),
         ("volume", "<f8")]
    ),
    # Later builds: 64-bit time, OHLC, tick volume, spread, real volume (60 bytes).
    401: np.dtype(
        [("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
         ("tickvol", "<i8"), ("spread", "<i4"), ("vol", "<i8")]
    ),
}  # fmt: skip


def read_mt4_hst(
    path: str | Path, *, kind: str = "auto", tz: str = "UTC", validate: bool = True
) -> pd.DataFrame:
    """Read bars from a MetaTrader 4 history file (``EURUSD60.hst``, version 400 or 401).

    The bar times are in the broker's server time: ``tz`` says which zone that is (default
    UTC). The frame's ``attrs`` carry the file's ``symbol``, ``period`` (minutes) and
    ``digits``. A truncated file or an unknown version is refused with the byte offset.
    """
    _choice("read_mt4_hst", "kind", kind, ("auto", "bars"))
    _check_tz("read_mt4_hst", tz)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as stream:
        header = stream.read(_HST_HEADER)
    if len(header) < _HST_HEADER:
        raise DataError(
            f"{path}, byte {len(header)}: header: truncated: the file has {len(header)} bytes, "
            f"an MT4 history header has {_HST_HEADER}",
            "header",
        )
    version = int.from_bytes(header[:4], "little", signed=True)
    if version not in _HST_RECORDS:
        raise DataError(
            f"{path}, byte 0: version: {version} is not an MT4 history file version "
            f"({' or '.join(map(str, _HST_RECORDS))})",
            "version",
        )
    dtype = _HST_RECORDS[version]
    count, rest = divmod(path.stat().st_size - _HST_HEADER, dtype.itemsize)
    if rest:
        raise DataError(
            f"{path}, record {count + 1} (byte {_HST_HEADER + count * dtype.itemsize}): "
            f"truncated: {rest} of {dtype.itemsize} bytes (version {version})",
            "record",
            count,
        )
    records = np.fromfile(path, dtype=dtype, count=count, offset=_HST_HEADER)

    def where(row: int) -> str:
        return f"record {row + 1} (byte {_HST_HEADER + row * dtype.itemsize})"

    seconds = records["time"].astype(np.int64)
    index = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s"), name="time")
    index = _to_utc(path, index, tz, pd.Series(index.astype(str)), where)
    values = {name: records[name].astype(np.float64) for name in _PRICES}
    if version == 400:
        values["volume"] = records["volume"].astype(np.float64)
    else:
        values["tickvol"] = records["tickvol"].astype(np.float64)
        values["vol"] = records["vol"].astype(np.float64)
    frame = pd.DataFrame(_bar_columns(values, False), index=index)
    frame.attrs.update(
        symbol=header[68:80].split(b"\x00")[0].decode("ascii", "replace"),
        period=int.from_bytes(header[80:84], "little", signed=True),
        digits=int.from_bytes(header[84:88], "little", signed=True),
    )
    return _finish(path, frame, "bars", validate, where)


# --- Parquet ---------------------------------------------------------------------------------


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


def read_parquet(
    path: str | Path, *, kind: str = "auto", tz: str = "UTC", validate: bool = True
) -> pd.DataFrame:
    """Read bars or ticks from Parquet (needs pyarrow) into the DataFrame convention; naive
    times are taken in ``tz``."""
    _need_pyarrow("read_parquet")
    _choice("read_parquet", "kind", kind, _KINDS)
    _check_tz("read_parquet", tz)
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
    index = index.tz_localize(tz) if index.tz is None else index
    frame.index = index.tz_convert("UTC").as_unit("ns").rename("time")
    if validate:
        _validated(path, frame, "ticks" if _is_ticks(kind, frame) else "bars", None)
    return frame


# --- read_bars -------------------------------------------------------------------------------

_EXTENSIONS = {
    ".csv": "auto", ".txt": "auto", ".tsv": "auto", ".parquet": "parquet", ".pq": "parquet",
    ".hst": "mt4-hst",
}  # fmt: skip


def _layout_by_extension(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz") and len(suffixes) > 1:
        suffixes.pop()
        if _EXTENSIONS.get(suffixes[-1]) != "auto":
            raise ValueError(f"{path}: compressed files are read for .csv, .txt and .tsv only")
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in _EXTENSIONS:
        raise ValueError(
            f"{path}: unknown file type {suffix or '(none)'!r}; expected one of "
            f"{', '.join(sorted(_EXTENSIONS))} (or name the layout)"
        )
    return _EXTENSIONS[suffix]


def detect_layout(path: str | os.PathLike[str]) -> str:
    """The layout ``read_bars(path)`` reads the file as: one of :data:`LAYOUTS` but ``'auto'``.

    Says what 'auto' made of a file before a long read, or when a read is refused."""
    path = Path(path)
    layout = _layout_by_extension(path)
    if layout != "auto":
        return layout
    plan = _detect(path, _sniff(path))
    return "csv" if plan is None else plan.layout


def read_bars(
    path: str | os.PathLike[str], *, layout: str = "auto", **kwargs: Any
) -> pd.DataFrame:
    """Read a bars (or ticks) file of any layout in :data:`LAYOUTS` (see the module docstring).

    ``layout='auto'`` chooses by extension (``.hst``: MT4 history, ``.parquet``/``.pq``:
    Parquet, ``.csv``/``.txt``/``.tsv``, optionally compressed: text, whose layout is detected
    from its first lines); a named layout reads any file name. ``kwargs`` go to
    :func:`read_csv`, :func:`read_parquet` or :func:`read_mt4_hst` (``tz``, ``validate``,
    ``kind``...)."""
    _choice("read_bars", "layout", layout, LAYOUTS)
    path = Path(path)
    if layout == "auto":
        layout = _layout_by_extension(path)
    if layout == "parquet":
        return read_parquet(path, **kwargs)
    if layout == "mt4-hst":
        return read_mt4_hst(path, **kwargs)
    return read_csv(path, layout=layout, **kwargs)
