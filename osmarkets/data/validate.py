"""Vectorised checks of tick and bar DataFrames.

Bad market data rarely fails loudly: a NaN price, a crossed quote or a timestamp out of order
silently bends every bar and indicator built on it. These checks run once, vectorised, before
any batch computation and stop at the *first* bad row with a :class:`DataError` that names the
field, the positional row and its time, so the user can find it in the source file.

Conventions (DESIGN.md section 3):

* ticks: a ``DatetimeIndex`` named ``time`` (UTC; naive times are taken as UTC), columns
  ``bid`` and ``ask`` with optional ``bid_volume`` / ``ask_volume``, or a single ``price``
  column for trade ticks (then bid = ask = price). Several ticks may share a timestamp and are
  kept in file order; time must never go backwards.
* bars: a ``DatetimeIndex`` named ``time`` (bar open), columns ``open``, ``high``, ``low``,
  ``close``, optional ``volume`` and optional ``bid_*`` / ``ask_*`` OHLC. Bar times are strictly
  increasing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .types import ASK_OHLC, BID_OHLC, OHLC


class DataError(ValueError):
    """Bad market data: ``field`` and, when known, positional ``row`` and its ``time``."""

    def __init__(
        self, message: str, field: str, row: int | None = None, time: object = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.row = row
        self.time = time


class TickArrays(NamedTuple):
    """Validated tick columns as numpy arrays (``time`` in int64 ns, UTC)."""

    time: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    quoted: bool  # False for trade ticks (a single ``price`` column)


class BarArrays(NamedTuple):
    """Validated bar columns as numpy arrays; ``bid``/``ask`` are None without quotes."""

    time: np.ndarray
    ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    volume: np.ndarray
    bid: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
    ask: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None


def _fail(kind: str, field: str, row: int, times: np.ndarray | None, what: str) -> DataError:
    when = None
    if times is not None and 0 <= row < len(times):
        when = pd.Timestamp(int(times[row]), unit="ns", tz="UTC")
    at = f"row {row}" + (f" (time {when.isoformat()})" if when is not None else "")
    return DataError(f"{kind}: {field} {what} at {at}", field, row, when)


def index_ns(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """The frame's index as int64 ns UTC; naive times are taken as UTC."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{kind}: expected a pandas DataFrame, got {type(frame).__name__}", "")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{kind}: time: expected a DatetimeIndex named 'time', got {type(index).__name__}",
            "time",
        )
    if len(index) and index.hasnans:
        row = int(np.flatnonzero(index.isna())[0])
        raise DataError(f"{kind}: time is missing at row {row}", "time", row)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if index.unit != "ns":
        index = index.as_unit("ns")  # (as_unit copies even when the unit is already ns)
    return np.asarray(index.asi8, dtype=np.int64)


def _column(frame: pd.DataFrame, name: str, kind: str) -> np.ndarray:
    if name not in frame.columns:
        raise DataError(f"{kind}: missing column {name!r}", name)
    try:
        return np.asarray(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{kind}: {name}: expected numbers ({exc})", name) from exc


def _check_prices(kind: str, name: str, values: np.ndarray, times: np.ndarray) -> None:
    # One pass finds NaN, non-positive and infinite prices: "not (0 < x < inf)".
    bad = ~((values > 0.0) & (values < np.inf))
    if bad.any():
        row = int(np.argmax(bad))
        value = values[row]
        what = (
            "is NaN" if np.isnan(value) else f"is not a positive finite price ({float(value)!r})"
        )
        raise _fail(kind, name, row, times, what)


def _check_first(kind: str, field: str, bad: np.ndarray, times: np.ndarray, what: str) -> None:
    if bad.any():
        raise _fail(kind, field, int(np.argmax(bad)), times, what)


def _check_volume(kind: str, name: str, values: np.ndarray, times: np.ndarray) -> None:
    bad = ~(values >= 0.0) if kind == "bars" else values < 0.0  # NaN volume: unknown for ticks
    _check_first(kind, name, bad, times, "is negative or NaN" if kind == "bars" else "is negative")


def validate_ticks(ticks: pd.DataFrame) -> TickArrays:
    """Check a ticks DataFrame and return its columns as arrays.

    Raises :class:`DataError` (a ``ValueError``) naming the field and the first bad row for a
    missing column, a NaN, non-positive or infinite price, bid above ask, a negative volume or
    time going backwards. Equal timestamps are accepted.
    """
    kind = "ticks"
    times = index_ns(ticks, kind)
    if "bid" in ticks.columns or "ask" in ticks.columns:
        bid = _column(ticks, "bid", kind)
        ask = _column(ticks, "ask", kind)
        # One combined pass for the common case of good data; NaN fails every comparison.
        good = bid > 0.0
        good &= bid <= ask
        good &= ask < np.inf
        if not good.all():
            _check_prices(kind, "bid", bid, times)
            _check_prices(kind, "ask", ask, times)
            _check_first(kind, "bid", bid > ask, times, "is above ask")
        quoted = True
    elif "price" in ticks.columns:
        bid = ask = _column(ticks, "price", kind)
        _check_prices(kind, "price", bid, times)
        quoted = False
    else:
        raise DataError(f"{kind}: missing columns 'bid' and 'ask' (or 'price')", "bid")
    for name in ("bid_volume", "ask_volume", "volume"):
        if name in ticks.columns:
            _check_volume(kind, name, _column(ticks, name, kind), times)
    if len(times) > 1:
        back = np.flatnonzero(times[1:] < times[:-1])
        if len(back):
            row = int(back[0]) + 1
            raise _fail(kind, "time", row, times, "goes backwards")
    return TickArrays(times, bid, ask, quoted)


def _check_ohlc(
    kind: str, names: tuple[str, ...], cols: tuple[np.ndarray, ...], times: np.ndarray
) -> None:
    o_name, h_name, l_name, c_name = names
    o, h, lo, c = cols
    for name, values in zip(names, cols, strict=True):
        _check_prices(kind, name, values, times)
    _check_first(kind, h_name, h < lo, times, f"is below {l_name}")
    _check_first(kind, h_name, h < o, times, f"is below {o_name}")
    _check_first(kind, h_name, h < c, times, f"is below {c_name}")
    _check_first(kind, l_name, lo > o, times, f"is above {o_name}")
    _check_first(kind, l_name, lo > c, times, f"is above {c_name}")


def validate_bars(bars: pd.DataFrame) -> BarArrays:
    """Check a bars DataFrame and return its columns as arrays.

    Raises :class:`DataError` (a ``ValueError``) naming the field and the first bad row for a
    missing column, a NaN, non-positive or infinite price, high below low (or below open or
    close), low above open or close, a negative or NaN volume, bid above ask (open or close),
    time going backwards or two bars with the same time. ``bid_*``/``ask_*`` columns are checked
    when present (all eight or none).
    """
    kind = "bars"
    times = index_ns(bars, kind)
    ohlc = tuple(_column(bars, name, kind) for name in OHLC)
    _check_ohlc(kind, OHLC, ohlc, times)
    if "volume" in bars.columns:
        volume = _column(bars, "volume", kind)
        _check_volume(kind, "volume", volume, times)
    else:
        volume = np.zeros(len(times))
    bid = ask = None
    sides = [name for name in (*BID_OHLC, *ASK_OHLC) if name in bars.columns]
    if sides:
        missing = [name for name in (*BID_OHLC, *ASK_OHLC) if name not in bars.columns]
        if missing:
            raise DataError(f"{kind}: missing column {missing[0]!r} (bid/ask OHLC)", missing[0])
        bid = tuple(_column(bars, name, kind) for name in BID_OHLC)
        ask = tuple(_column(bars, name, kind) for name in ASK_OHLC)
        _check_ohlc(kind, BID_OHLC, bid, times)
        _check_ohlc(kind, ASK_OHLC, ask, times)
        _check_first(kind, "bid_open", bid[0] > ask[0], times, "is above ask_open")
        _check_first(kind, "bid_close", bid[3] > ask[3], times, "is above ask_close")
    if len(times) > 1:
        step = times[1:] - times[:-1]
        bad = np.flatnonzero(step <= 0)
        if len(bad):
            row = int(bad[0]) + 1
            what = "repeats the previous bar's time" if step[row - 1] == 0 else "goes backwards"
            raise _fail(kind, "time", row, times, what)
    return BarArrays(times, ohlc, volume, bid, ask)  # type: ignore[arg-type]
