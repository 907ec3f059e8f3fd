"""BarSeries: a fixed-capacity, newest-first series of bars backed by one numpy array.

Indexing follows MetaTrader: ``series[0]`` is the latest completed bar. Columns
(``series.close``…) are newest-first numpy views, so ``series.close[:30].mean()`` is a 30-bar
SMA with no copy.

Storage: a structured array with room for ``capacity + slack`` bars. New bars are written at a
head index that moves *down*, so the newest ``len(series)`` bars always sit contiguously from the
head, newest first. When the head reaches 0 the live window (at most ``capacity`` bars) is moved
back to the top once: with ``slack == capacity`` that is one copy of ``capacity`` bars every
``capacity`` appends, O(1) amortised, and never a copy of the whole buffer per bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .timeframes import BarSeriesID
from .types import ASK_OHLC, BAR_DTYPE, BAR_FIELDS, BAR_PRICE_FIELDS, BID_OHLC, Bar


def _column(name: str) -> property:
    def getter(self: BarSeries) -> np.ndarray:
        return self._columns[name][self._head : self._head + self._len]

    getter.__doc__ = f"Newest-first view of the ``{name}`` column (no copy; do not write)."
    return property(getter)


class BarSeries:
    """Fixed-capacity newest-first series of bars for one bar-series id."""

    __slots__ = ("bsid", "capacity", "replayed", "backfilled",
                 "_data", "_columns", "_head", "_len")  # fmt: skip

    time = _column("time")
    open = _column("open")
    high = _column("high")
    low = _column("low")
    close = _column("close")
    volume = _column("volume")
    bid_open = _column("bid_open")
    bid_high = _column("bid_high")
    bid_low = _column("bid_low")
    bid_close = _column("bid_close")
    ask_open = _column("ask_open")
    ask_high = _column("ask_high")
    ask_low = _column("ask_low")
    ask_close = _column("ask_close")

    def __init__(self, bsid: Any, capacity: int = 1000) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"BarSeries capacity: expected a positive integer, got {capacity!r}")
        self.bsid = BarSeriesID.parse(bsid)
        self.capacity = capacity
        #: True while ``on_new_bar`` runs for a bar replayed after a restart (it completed
        #: while the Brain was down), False for a bar as it completes.
        self.replayed = False
        #: True while ``on_new_bar`` runs for a bar rebuilt after a gap of the live feed (the
        #: OANDA Feeder backfills it from candles when its stream comes back), False for a bar
        #: of live quotes.
        self.backfilled = False
        size = 2 * capacity
        self._data = np.zeros(size, dtype=BAR_DTYPE)
        self._columns = {name: self._data[name] for name in BAR_FIELDS}
        self._head = size
        self._len = 0

    # -- writing ---------------------------------------------------------------------------
    def append(self, bar: Bar | tuple) -> None:
        """Add a completed bar (a :class:`Bar` or a tuple in ``BAR_FIELDS`` order).

        Bars must arrive in time order; the oldest bar falls off once the series is full.
        """
        # The per-bar path of every live series and backtest: cached column view, no copies.
        if self._len and bar[0] <= self._columns["time"][self._head]:
            raise ValueError(
                f"{self.bsid}: bar time {bar[0]} is not after the last bar's "
                f"{int(self._columns['time'][self._head])}"
            )
        if self._head == 0:
            self._relocate()
        self._head -= 1
        self._data[self._head] = (
            bar if isinstance(bar, tuple) and len(bar) == _NFIELDS else _full(bar)
        )
        if self._len < self.capacity:
            self._len += 1

    def update_last(self, bar: Bar | tuple) -> None:
        """Replace the newest bar in place (a still-forming bar that changed)."""
        if not self._len:
            raise IndexError(f"{self.bsid}: update_last on an empty series")
        if bar[0] != self._data["time"][self._head]:
            raise ValueError(f"{self.bsid}: update_last with a different bar time {bar[0]}")
        self._data[self._head] = _full(bar)

    def extend(self, bars: Any) -> None:
        """Append many bars in time order: a DataFrame in the bars convention, a chronological
        structured array of ``BAR_DTYPE`` or an iterable of bars."""
        if isinstance(bars, pd.DataFrame):
            bars = frame_to_records(bars)
        if isinstance(bars, np.ndarray) and bars.dtype == BAR_DTYPE:
            backwards = np.flatnonzero(np.diff(bars["time"]) <= 0)
            if len(backwards):
                row = int(backwards[0]) + 1
                raise ValueError(
                    f"{self.bsid}: time: bar {row} ({int(bars['time'][row])}) is not after bar "
                    f"{row - 1}: bar times must be strictly increasing"
                )
            if self._len and len(bars) and bars["time"][0] <= self._data["time"][self._head]:
                raise ValueError(
                    f"{self.bsid}: time: the bars start at {int(bars['time'][0])}, at or before "
                    f"the last bar of the series ({int(self._data['time'][self._head])})"
                )
            bars = bars[-self.capacity :]
            count = len(bars)
            keep = min(self._len, self.capacity - count)
            window = self._data[self._head : self._head + keep].copy()
            top = len(self._data)
            self._data[top - keep : top] = window
            self._data[top - keep - count : top - keep] = bars[::-1]
            self._head = top - keep - count
            self._len = keep + count
            return
        for bar in bars:
            self.append(bar)

    def _relocate(self) -> None:
        top = len(self._data)
        keep = min(self._len, self.capacity - 1)
        self._data[top - keep : top] = self._data[0:keep]
        self._head = top - keep
        self._len = keep

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Bar:
        if not isinstance(index, int | np.integer):
            raise TypeError("BarSeries index must be an integer (0 = newest); use the columns")
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"{self.bsid}: bar index {index} out of range (len {self._len})")
        return self._bar_at(self._head + index)

    def _bar_at(self, position: int) -> Bar:
        """The bar stored at ``position`` of the buffer."""
        return Bar(*self._data[position].tolist())

    def __iter__(self) -> Iterator[Bar]:
        for index in range(self._len):
            yield self[index]

    @property
    def last(self) -> Bar | None:
        return self[0] if self._len else None

    @property
    def has_quotes(self) -> bool:
        return bool(self._len) and not np.isnan(self._data["bid_close"][self._head])

    def to_records(self) -> np.ndarray:
        """A chronological copy as a ``BAR_DTYPE`` structured array."""
        return self._data[self._head : self._head + self._len][::-1].copy()

    def to_pandas(self) -> pd.DataFrame:
        """A chronological DataFrame in the bars convention."""
        return records_to_frame(self.to_records())

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame, bsid: Any, capacity: int | None = None) -> BarSeries:
        series = cls(bsid, capacity or max(len(frame), 1))
        series.extend(frame)
        return series

    def __repr__(self) -> str:
        newest = self[0].timestamp.isoformat() if self._len else "empty"
        return f"<BarSeries {self.bsid} {self._len}/{self.capacity} bars, newest {newest}>"


_NFIELDS = len(BAR_FIELDS)


def _full(bar: Bar | tuple) -> tuple:
    """Pad a short tuple (plain OHLC, no quotes) with NaN sides."""
    if len(bar) == len(BAR_FIELDS):
        return tuple(bar)
    return tuple(Bar(*bar))


def records_to_frame(records: np.ndarray) -> pd.DataFrame:
    """Chronological ``BAR_DTYPE`` records to the bars DataFrame convention; the bid/ask columns
    are kept only when they hold quotes."""
    index = pd.DatetimeIndex(records["time"].view("M8[ns]"), name="time").tz_localize("UTC")
    columns = ["open", "high", "low", "close", "volume"]
    if len(records) and not np.all(np.isnan(records["bid_close"])):
        columns += [*BID_OHLC, *ASK_OHLC]
    return pd.DataFrame({name: records[name] for name in columns}, index=index)


def frame_to_records(frame: pd.DataFrame) -> np.ndarray:
    """A bars DataFrame (UTC DatetimeIndex, OHLC[V], optional bid/ask OHLC) to records."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError("bars DataFrame: expected a DatetimeIndex named 'time'")
    index = frame.index
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    records = np.empty(len(frame), dtype=BAR_DTYPE)
    records["time"] = index.as_unit("ns").asi8
    for name in BAR_PRICE_FIELDS:
        if name in frame.columns:
            records[name] = frame[name].to_numpy(dtype=float)
        elif name == "volume":
            records[name] = 0.0
        elif name in ("open", "high", "low", "close"):
            raise ValueError(f"bars DataFrame: missing column {name!r}")
        else:
            records[name] = np.nan
    return records
