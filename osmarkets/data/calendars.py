"""Trading sessions of exchange calendars, and the periods they give to bars.

Why exchange_calendars: it is the calendar library zipline-reloaded and pandas_market_calendars
build on, kept up to date with every exchange's holidays, early closes and lunch breaks (50+
exchanges: ``XNYS``, ``XLON``, ``XTKS``, ``CMES``...), and it answers with plain arrays of
session opens and closes, which is all the vectorised code below needs. Hand-written holiday
tables go stale within a year.

Rules (the data docs page states them with examples):

* An intraday record belongs to the session open at its time (a futures session that opens the
  evening before, as ``CMES``'s, includes that evening). Outside every session (pre-market,
  after-hours, a lunch break), it belongs to the session of its local date in the exchange's
  time zone, or to the next session when that date has none. ``regular_hours`` drops such
  records instead.
* A daily bar's session is its date: the UTC date of a bar stamped at 00:00 UTC (the common
  "date only" convention), otherwise its date in the exchange's time zone (a close stamped in
  UTC, a local time). A daily bar on a date that is not a session is refused.
* With a calendar, a day is one session, a week the sessions of one Monday-to-Sunday week, a
  month those of one calendar month. A period opens at the open of its first session (the
  bar's stamp) and ends at the close of its last. Intraday periods are counted from the
  session's open (``H1`` bars of ``XNYS`` open at 9:30, 10:30...; the last one is cut at the
  close); outside sessions they follow the UTC grid.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from .timeframes import Timeframe

_DAY_NS = 86_400_000_000_000
_NS = "M8[ns]"


class Sessions:
    """The sessions of one calendar over a range of dates, as int64 ns arrays (UTC):
    ``labels`` (the session's date at 00:00), ``opens``, ``closes``, and the lunch break
    (``break_starts`` / ``break_ends``, equal to the close where there is none)."""

    def __init__(self, name: str, schedule: pd.DataFrame, tz: str) -> None:
        self.name = name
        self.tz = tz
        self.labels = _ns(pd.DatetimeIndex(schedule.index))
        self.opens = _ns(schedule["open"])
        self.closes = _ns(schedule["close"])
        breaks = schedule.get("break_start")
        if breaks is None or breaks.isna().all():
            self.break_starts = self.closes.copy()
            self.break_ends = self.closes.copy()
        else:
            self.break_starts = np.where(breaks.isna(), self.closes, _ns(breaks.fillna(0)))
            ends = schedule["break_end"]
            self.break_ends = np.where(ends.isna(), self.closes, _ns(ends.fillna(0)))

    def __len__(self) -> int:
        return len(self.labels)


def _ns(values: Any) -> np.ndarray:
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)


def check_calendar(name: str) -> str:
    """The calendar's name if exchange_calendars knows it, else ``ValueError`` listing a few."""
    import exchange_calendars as xcals

    if not isinstance(name, str) or name not in xcals.get_calendar_names(include_aliases=True):
        some = ", ".join(sorted(xcals.get_calendar_names(include_aliases=False))[:12])
        raise ValueError(f"calendar: unknown exchange calendar {name!r} (for example {some}...)")
    return name


@functools.lru_cache(maxsize=32)
def _load(name: str, first: str, last: str) -> Sessions:
    import exchange_calendars as xcals

    calendar = xcals.get_calendar(name, start=first, end=last)
    return Sessions(name, calendar.schedule, str(calendar.tz))


def _bounds(name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last dates exchange_calendars models for ``name`` (some calendars cover
    a few years only)."""
    import exchange_calendars as xcals

    cls = type(xcals.get_calendar(name))
    low, high = cls.bound_min(), cls.bound_max()
    return (
        pd.Timestamp("1900-01-01") if low is None else pd.Timestamp(low).tz_localize(None),
        pd.Timestamp("2099-12-31") if high is None else pd.Timestamp(high).tz_localize(None),
    )


def sessions(name: str, low: int, high: int) -> Sessions:
    """The sessions of calendar ``name`` around the times ``low`` .. ``high`` (ns, UTC): whole
    decades (within what the library models) are loaded and cached, so streaming one bar at a
    time costs a lookup. ``ValueError`` when the times lie outside the calendar's range."""
    check_calendar(name)
    first = pd.Timestamp(int(low), tz="UTC").year - 1
    last = pd.Timestamp(int(high), tz="UTC").year + 1
    bound_low, bound_high = _bounds(name)
    start = max(pd.Timestamp(f"{first - first % 10}-01-01"), bound_low)
    end = min(pd.Timestamp(f"{last + 9 - last % 10}-12-31"), bound_high)
    wanted_low = pd.Timestamp(int(low)).normalize()
    wanted_high = pd.Timestamp(int(high)).normalize()
    if wanted_low < bound_low or wanted_high > bound_high:
        raise ValueError(
            f"calendar {name}: sessions are known from {bound_low.date()} to "
            f"{bound_high.date()}, the data runs from {wanted_low.date()} to {wanted_high.date()}"
        )
    try:
        return _load(name, str(start.date()), str(end.date()))
    except Exception as exc:  # the library refuses dates outside what it models
        raise ValueError(
            f"calendar {name}: no sessions for {start.date()}..{end.date()}: {exc}"
        ) from None


def _local_dates(times: np.ndarray, tz: str) -> np.ndarray:
    """00:00 UTC of each time's date in ``tz``."""
    local = pd.DatetimeIndex(times.view(_NS), tz="UTC").tz_convert(tz).tz_localize(None)
    return np.asarray(local.normalize().asi8, dtype=np.int64)


def bar_dates(times: np.ndarray, tz: str) -> np.ndarray:
    """The date (00:00 UTC) of each daily bar: its UTC date when it is stamped at 00:00 UTC,
    otherwise its date in ``tz``."""
    times = np.asarray(times, dtype=np.int64)
    midnight = times % _DAY_NS == 0
    if midnight.all():
        return times
    return np.where(midnight, times, _local_dates(times, tz))


def intraday_sessions(times: np.ndarray, cal: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """``(session, regular)``: the session index of each intraday time (module rules) and
    whether the time is within the session's regular hours."""
    times = np.asarray(times, dtype=np.int64)
    open_before = np.searchsorted(cal.opens, times, side="right") - 1
    safe = np.maximum(open_before, 0)
    in_session = (open_before >= 0) & (times < cal.closes[safe])
    regular = in_session & ((times < cal.break_starts[safe]) | (times >= cal.break_ends[safe]))
    if in_session.all():
        return open_before, regular
    by_date = np.searchsorted(cal.labels, _local_dates(times, cal.tz), side="left")
    index = np.where(in_session, open_before, by_date)
    if (index >= len(cal)).any():
        raise ValueError(f"calendar {cal.name}: a time lies after its last known session")
    return index, regular


def daily_sessions(
    times: np.ndarray, cal: Sessions, timeframe: Timeframe, zone: str | None = None
) -> np.ndarray:
    """The session index of each bar of daily (or longer) data: its date's session for days;
    for weeks and months, the first session of the period holding its date (a week stamped
    on its Monday holiday or on its Friday, a month on its first or last day, all open at the
    period's first session). Raises ``ValueError`` naming the first bar whose date is not a
    session, or whose week or month has none. ``zone``: the zone the data was stamped in, if
    it said so (else the exchange's)."""
    dates = bar_dates(times, zone or cal.tz)
    if timeframe.unit == "Days":
        index = np.searchsorted(cal.labels, dates, side="left")
        found = index < len(cal)
        found[found] = cal.labels[index[found]] == dates[found]
        what = "session"
    else:
        periods = _periods(cal.labels, timeframe)
        wanted = _periods(dates, timeframe)
        index = np.searchsorted(periods, wanted, side="left")
        found = index < len(cal)
        found[found] = periods[index[found]] == wanted[found]
        what = "week with a session" if timeframe.unit == "Weeks" else "month with a session"
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        day = pd.Timestamp(int(dates[row])).strftime("%Y-%m-%d (%A)")
        raise ValueError(f"bar {row}: {day} is not in a {cal.name} {what}")
    return index


def _groups(session: np.ndarray, timeframe: Timeframe, cal: Sessions) -> np.ndarray:
    """The index of the first session of the period holding each session."""
    if timeframe.unit == "Days":
        return session - session % timeframe.size
    period = _periods(cal.labels, timeframe)
    first = np.searchsorted(period, period, side="left")  # labels are sorted, so periods too
    return first[session]


def _periods(dates: np.ndarray, timeframe: Timeframe) -> np.ndarray:
    """A number per week (Monday to Sunday) or month of each date, ``size`` of them together."""
    index = pd.DatetimeIndex(np.asarray(dates, dtype=np.int64).view(_NS))
    if timeframe.unit == "Weeks":
        monday = index.asi8 - np.asarray(index.day_of_week, dtype=np.int64) * _DAY_NS
        period = (monday + 3 * _DAY_NS) // (7 * _DAY_NS)  # epoch Monday-weeks
    else:
        period = (np.asarray(index.year, dtype=np.int64) - 1970) * 12 + index.month - 1
    period = np.asarray(period, dtype=np.int64)
    return period - period % timeframe.size


def _intraday(
    times: np.ndarray, timeframe: Timeframe, cal: Sessions
) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of the intraday period of each time: inside a session counted from its
    open and cut at its close; outside, the UTC grid cut by the last close before and the
    next open after (so pre-market, session and after-hours bars never share a period)."""
    length = timeframe.nanoseconds
    before = np.searchsorted(cal.opens, times, side="right") - 1
    safe = np.maximum(before, 0)
    opened = before >= 0
    inside = opened & (times < cal.closes[safe])
    counted = cal.opens[safe] + (times - cal.opens[safe]) // length * length
    grid = times - np.mod(times, length)
    last_close = np.where(opened, cal.closes[safe], np.iinfo(np.int64).min)
    start = np.where(inside, counted, np.maximum(grid, last_close))
    following = np.minimum(before + 1, len(cal) - 1)
    next_open = np.where(before + 1 < len(cal), cal.opens[following], np.iinfo(np.int64).max)
    end = np.where(
        inside,
        np.minimum(counted + length, cal.closes[safe]),
        np.minimum(grid + length, next_open),
    )
    return start, end


def period_starts(
    times: np.ndarray, timeframe: Timeframe, cal: Sessions, session: np.ndarray | None = None
) -> np.ndarray:
    """Open time of the period holding each (intraday) time under the calendar's rules."""
    times = np.asarray(times, dtype=np.int64)
    if timeframe.is_intraday:
        return _intraday(times, timeframe, cal)[0]
    if session is None:
        session = intraday_sessions(times, cal)[0]
    return cal.opens[_groups(session, timeframe, cal)]


def period_ends(times: np.ndarray, timeframe: Timeframe, cal: Sessions) -> np.ndarray:
    """End of the period holding each time: for days and longer, the close of its last
    session; intraday, as :func:`_intraday` cuts it."""
    times = np.asarray(times, dtype=np.int64)
    if timeframe.is_intraday:
        return _intraday(times, timeframe, cal)[1]
    session = intraday_sessions(times, cal)[0]
    groups = _groups(np.arange(len(cal)), timeframe, cal)
    last = np.searchsorted(groups, groups[session], side="right") - 1
    return cal.closes[last]


def period_bounds(time_ns: int, timeframe: Timeframe, cal: Sessions) -> tuple[int, int]:
    """``(start, end)`` of the period holding ``time_ns`` (one record at a time, streaming)."""
    times = np.array([time_ns], dtype=np.int64)
    return int(period_starts(times, timeframe, cal)[0]), int(period_ends(times, timeframe, cal)[0])
