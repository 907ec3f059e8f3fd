"""Batch, vectorised resampling: ticks to bars and bars to longer bars.

Both functions validate their input (:mod:`osmarkets.data.validate`), map every record to the
open time of its period with :func:`~osmarkets.data.timeframes.period_starts`, and reduce each
run of equal period starts with numpy's ``reduceat``: one pass per output column, no Python
loop per row. As the input is in time order, the runs are found with one comparison of
neighbours (no sort). Empty periods produce no bar.

The results equal, bar for bar and bit for bit, those of the streaming
:class:`~osmarkets.data.aggregate.TickAggregator` and
:class:`~osmarkets.data.aggregate.BarResampler` on the same input (volume sums are exact for
integer volumes such as tick counts; other volumes may differ in the last bit because numpy
sums in pairs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .timeframes import Alignment, Timeframe, period_starts
from .types import ASK_OHLC, BID_OHLC, OHLC
from .validate import validate_bars, validate_ticks

_QUARTER_HOUR = 15 * 60 * 1_000_000_000


def _runs(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last position of each run of equal values in a sorted array."""
    n = len(starts)
    change = np.flatnonzero(starts[1:] != starts[:-1]) + 1
    first = np.empty(len(change) + 1, dtype=np.intp)
    first[0] = 0
    first[1:] = change
    last = np.empty_like(first)
    last[:-1] = change - 1
    last[-1] = n - 1
    return first, last


def _period_runs(
    times: np.ndarray, tf: Timeframe, alignment: Alignment
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, last, start)``: positions of the first and last record of each non-empty
    period, and the period's open time, for sorted ``times``.

    Every period boundary lies on a grid: multiples of the length for intraday periods, and
    quarter hours for days and longer (time-zone offsets and daylight saving shifts are
    multiples of 15 minutes). When the data is denser than that grid, the grid cells are
    located with one binary search each and only the non-empty cells are mapped to periods,
    which avoids an integer division or a time-zone conversion per record.
    """
    n = len(times)
    if alignment.calendar is not None:  # session-counted periods are off any fixed grid
        starts = period_starts(times, tf, alignment)
        first, last = _runs(starts)
        return first, last, starts[first]
    grid = tf.nanoseconds if tf.is_intraday else _QUARTER_HOUR
    low = int(times[0]) - int(times[0]) % grid
    cells = (int(times[-1]) - low) // grid + 1
    if cells > n:  # sparse data: map every record directly
        starts = period_starts(times, tf, alignment)
        first, last = _runs(starts)
        return first, last, starts[first]
    edges = low + np.arange(cells, dtype=np.int64) * grid
    bounds = np.empty(cells + 1, dtype=np.intp)
    bounds[:-1] = np.searchsorted(times, edges, side="left")
    bounds[-1] = n
    full = np.flatnonzero(bounds[1:] > bounds[:-1])
    cell_first = bounds[full]
    cell_starts = edges[full] if tf.is_intraday else period_starts(edges[full], tf, alignment)
    run_first, _ = _runs(cell_starts)
    first = cell_first[run_first]
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = n - 1
    return first, last, cell_starts[run_first]


def _ohlc(
    values: tuple[np.ndarray, ...] | np.ndarray, first: np.ndarray, last: np.ndarray
) -> list[np.ndarray]:
    """First/max/min/last per run; ``values`` is one array (ticks) or four (bars' OHLC)."""
    if isinstance(values, np.ndarray):
        o = h = lo = c = values
    else:
        o, h, lo, c = values
    return [
        o[first],
        np.maximum.reduceat(h, first),
        np.minimum.reduceat(lo, first),
        c[last],
    ]


def _frame(time: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    index = pd.DatetimeIndex(time.view("M8[ns]"), name="time").tz_localize("UTC")
    return pd.DataFrame(columns, index=index)


def _alignment(
    daily_alignment: int,
    alignment_timezone: str,
    weekly_alignment: str,
    calendar: str | None = None,
    regular_hours: bool = False,
) -> Alignment:
    return Alignment(
        daily_alignment, alignment_timezone, weekly_alignment, calendar, regular_hours
    ).checked()


def regular_hours_mask(times: np.ndarray, calendar: str) -> np.ndarray:
    """True for the times inside a session of ``calendar`` (lunch breaks excluded)."""
    from .calendars import intraday_sessions, sessions

    if not len(times):
        return np.zeros(0, dtype=bool)
    cal = sessions(calendar, int(times[0]), int(times[-1]))
    return intraday_sessions(times, cal)[1]


def ticks_to_bars(
    ticks: pd.DataFrame,
    timeframe: Any,
    *,
    daily_alignment: int = 17,
    alignment_timezone: str = "America/New_York",
    weekly_alignment: str = "Friday",
    calendar: str | None = None,
    regular_hours: bool = False,
) -> pd.DataFrame:
    """Bars of ``timeframe`` (a granularity code or ``(size, unit)``) from a ticks DataFrame;
    with an exchange ``calendar``, periods follow its sessions and ``regular_hours`` keeps only
    the ticks inside them (as for :func:`resample`).

    Output: UTC ``DatetimeIndex`` named ``time`` (bar open), mid ``open`` … ``close``, ``volume``
    (tick count) and ``bid_*`` / ``ask_*`` OHLC. Trade ticks (a ``price`` column) give plain
    OHLCV bars. Raises :class:`~osmarkets.data.validate.DataError` on bad ticks and
    ``ValueError`` on an unknown timeframe or alignment.
    """
    tf = Timeframe.parse(timeframe)
    alignment = _alignment(
        daily_alignment, alignment_timezone, weekly_alignment, calendar, regular_hours
    )
    data = validate_ticks(ticks)
    if regular_hours and calendar is not None and len(data.time):
        data = validate_ticks(ticks[regular_hours_mask(data.time, calendar)])
    names = (*OHLC, "volume", *BID_OHLC, *ASK_OHLC) if data.quoted else (*OHLC, "volume")
    if not len(data.time):
        return _frame(data.time, {name: np.empty(0) for name in names})
    first, last, time = _period_runs(data.time, tf, alignment)
    volume = np.diff(np.append(first, len(data.time))).astype(np.float64)
    if not data.quoted:
        return _frame(time, dict(zip(names, [*_ohlc(data.bid, first, last), volume], strict=True)))
    mid = np.add(data.bid, data.ask)
    mid *= 0.5  # the same float as (bid + ask) / 2, without a second temporary array
    columns = [
        *_ohlc(mid, first, last),
        volume,
        *_ohlc(data.bid, first, last),
        *_ohlc(data.ask, first, last),
    ]
    return _frame(time, dict(zip(names, columns, strict=True)))


def resample(
    bars: pd.DataFrame,
    timeframe: Any,
    *,
    daily_alignment: int = 17,
    alignment_timezone: str = "America/New_York",
    weekly_alignment: str = "Friday",
    calendar: str | None = None,
    regular_hours: bool = False,
) -> pd.DataFrame:
    """Resample a bars DataFrame to a longer ``timeframe`` (``'M5'``, ``'D'``, ``(4, 'Hours')``).

    Each input bar goes to the period holding its open time. Output: open of the first bar,
    max of highs, min of lows, close of the last bar, volume summed; ``bid_*`` / ``ask_*`` OHLC
    likewise when the input has them. With an exchange ``calendar`` (``'XNYS'``), periods are
    its sessions (:mod:`osmarkets.data.calendars`) and ``regular_hours`` first drops the bars
    outside them. Raises :class:`~osmarkets.data.validate.DataError` on bad bars and
    ``ValueError`` on an unknown timeframe, alignment or calendar.
    """
    tf = Timeframe.parse(timeframe)
    alignment = _alignment(
        daily_alignment, alignment_timezone, weekly_alignment, calendar, regular_hours
    )
    data = validate_bars(bars)
    if regular_hours and calendar is not None and len(data.time):
        data = validate_bars(bars[regular_hours_mask(data.time, calendar)])
    quoted = data.bid is not None and data.ask is not None
    names = (*OHLC, "volume", *BID_OHLC, *ASK_OHLC) if quoted else (*OHLC, "volume")
    if not len(data.time):
        return _frame(data.time, {name: np.empty(0) for name in names})
    first, last, time = _period_runs(data.time, tf, alignment)
    columns = [*_ohlc(data.ohlc, first, last), np.add.reduceat(data.volume, first)]
    if data.bid is not None and data.ask is not None:
        columns += [*_ohlc(data.bid, first, last), *_ohlc(data.ask, first, last)]
    return _frame(time, dict(zip(names, columns, strict=True)))
