"""Bars of the time frame a strategy asks for, from data of whatever frame and stamping it has.

Users bring the data there is: Yahoo's daily bars stamped at 00:00 UTC, an exchange's minute
bars, OANDA's candles aligned to 17:00 New York. :func:`conform` infers the data's own time
frame (:func:`~osmarkets.data.timeframes.infer_timeframe`, or ``data_timeframe`` when given),
then:

* bars at the asked frame are used as they are. Daily, weekly and monthly bars that do not sit
  on the alignment's boundaries (OANDA's 17:00 New York by default) are stamped with their date
  at 00:00 UTC (:func:`~osmarkets.data.calendars.bar_dates`: a close stamped in UTC, a local
  time or a midnight all give the same date; a week its Monday, a month its first day), and
  longer frames are made from them by date: Monday-to-Sunday weeks, calendar months. With an
  exchange calendar they are stamped with the open of their (first) session instead, and
  longer frames follow its sessions;
* a longer frame is resampled from them (with the alignment or the calendar);
* a shorter frame, or one the data's bars do not fit in (``H4`` bars for 17:00 New York days),
  is refused with one line naming the data's own frame.

It returns the alignment that longer frames of the result must use, so that the backtest, the
simulated architecture and the optimiser all derive them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .calendars import bar_dates, daily_sessions, sessions
from .resample import regular_hours_mask, resample
from .timeframes import DEFAULT_ALIGNMENT, Alignment, Timeframe, infer_timeframe, period_starts
from .types import to_timestamp
from .validate import validate_bars

DATE_ALIGNMENT = Alignment(0, "UTC", "Monday")
_UNIT_SECONDS = {
    "Seconds": 1, "Minutes": 60, "Hours": 3600, "Days": 86_400, "Weeks": 604_800,
    "Months": 2_629_746,
}  # fmt: skip


def rank(timeframe: Timeframe) -> float:
    """A time frame's typical length in seconds, to order frames (a month counts 30.44 days)."""
    return timeframe.size * _UNIT_SECONDS[timeframe.unit]


def own_timeframe(frame: pd.DataFrame, given: Any = None, default: Any = None) -> Timeframe:
    """The data's own frame: ``given`` if not None, else inferred from its times (``default``
    for fewer than two bars, when given)."""
    if given is not None:
        return Timeframe.parse(given)
    return _inferred(validate_bars(frame).time, default)


def _inferred(times: Any, default: Any = None) -> Timeframe:
    if len(times) < 2 and default is not None:
        return Timeframe.parse(default)
    return infer_timeframe(times)


def given_for(data_timeframe: Any, symbol: str) -> Any:
    """A ``data_timeframe`` option for one symbol: the mapping's entry, or the one value."""
    return data_timeframe.get(symbol) if isinstance(data_timeframe, Mapping) else data_timeframe


def conform(
    frame: pd.DataFrame,
    timeframe: Any,
    alignment: Alignment = DEFAULT_ALIGNMENT,
    *,
    data_timeframe: Any = None,
    label: str = "data",
) -> tuple[pd.DataFrame, Alignment]:
    """``(bars, alignment)``: ``frame``'s bars at ``timeframe`` (module rules) and the alignment
    for longer frames made from them. Raises ``ValueError`` starting with ``label`` when the
    frame cannot be made from the data."""
    want = Timeframe.parse(timeframe)
    alignment = alignment.checked()
    times = validate_bars(frame).time
    try:  # one bar: as asked
        own = Timeframe.parse(data_timeframe) if data_timeframe is not None else (
            _inferred(times, default=want)
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"{label}: {exc} (data_timeframe=)") from None
    source = "as given" if data_timeframe is not None else "inferred from their times"
    if rank(want) < rank(own):
        raise ValueError(
            f"{label} has {own.code} bars ({source}): {want.code} is shorter; ask for "
            f"{own.code} or a longer frame"
        )
    if own.unit == "Weeks" and want.unit == "Months":
        raise ValueError(
            f"{label}: its W bars do not fit in {want.code} periods (a week can span two "
            f"months); ask for W or give daily bars"
        )
    zone = _zone(frame)
    frame = _utc(frame)
    if own.is_intraday:
        if alignment.regular_hours and len(times):
            frame = frame[regular_hours_mask(times, str(alignment.calendar))]
    else:
        frame, alignment = _stamp_days(frame, times, own, alignment, label, zone)
    if want == own:
        return frame, alignment
    if own.is_intraday:
        _check_fit(validate_bars(frame).time, own, want, alignment, label)
    return resample(frame, want, **alignment._asdict()), alignment


def _zone(frame: pd.DataFrame) -> str | None:
    """The time zone the data's index carries, when it is not UTC (local-time stamps)."""
    tz = getattr(frame.index, "tz", None)
    name = str(tz) if tz is not None else None
    return None if name in (None, "UTC", "utc") else name


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    index = pd.DatetimeIndex(frame.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if index.equals(frame.index) and frame.index.name == "time":
        return frame
    out = frame.copy()
    out.index = index.rename("time")
    return out


def _restamped(frame: pd.DataFrame, times: np.ndarray, label: str, what: str) -> pd.DataFrame:
    same = np.flatnonzero(times[1:] <= times[:-1])
    if len(same):
        row = int(same[0]) + 1
        raise ValueError(f"{label}: bars {row - 1} and {row} fall on the same {what}")
    out = frame.copy()
    out.index = pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC")
    return out


def _stamp_days(
    frame: pd.DataFrame,
    times: np.ndarray,
    own: Timeframe,
    alignment: Alignment,
    label: str,
    zone: str | None,
) -> tuple[pd.DataFrame, Alignment]:
    """Daily or longer bars: stamped at their session's open (with a calendar), kept when they
    sit on the alignment's boundaries, else stamped with their date (module rules): the date in
    the zone the data's index carries, if any, else in ``alignment_timezone``."""
    if not len(times):
        return frame, alignment
    if alignment.calendar is not None:
        cal = sessions(alignment.calendar, int(times[0]), int(times[-1]))
        try:
            index = daily_sessions(times, cal, own, zone)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        return _restamped(frame, cal.opens[index], label, f"{cal.name} session"), alignment
    if np.array_equal(period_starts(times, own, alignment), times):
        return frame, alignment
    dates = bar_dates(times, zone or alignment.alignment_timezone)
    dated = date_alignment(alignment)
    if own.unit != "Days":  # a week stamped on its Friday or its Monday: the week's start
        dates = period_starts(dates, own, dated)
    return _restamped(frame, dates, label, "date"), dated


def date_alignment(alignment: Alignment) -> Alignment:
    """How dated bars are grouped: days at 00:00 UTC, weeks from Monday (or from the
    ``weekly_alignment`` given, when it is not OANDA's Friday default), calendar months."""
    weekday = alignment.weekly_alignment
    return DATE_ALIGNMENT._replace(weekly_alignment="Monday" if weekday == "Friday" else weekday)


def _check_fit(
    times: np.ndarray, own: Timeframe, want: Timeframe, alignment: Alignment, label: str
) -> None:
    """Each bar of the data must lie in one period of ``want``: its first and last instant
    fall in the same period (no ``M7`` from ``M5`` bars, no 17:00 days from ``H4`` bars)."""
    if not len(times) or 60_000_000_000 % own.nanoseconds == 0:
        return  # every period boundary (time zones, sessions) lies on a whole minute
    first = period_starts(times, want, alignment)
    last = period_starts(times + own.nanoseconds - 1, want, alignment)
    split = np.flatnonzero(first != last)
    if alignment.calendar is not None:  # a bar cut by the close is fine: the session ends there
        split = split[~_cut_by_close(times[split], own, alignment)]
    if len(split):
        row = int(split[0])
        raise ValueError(
            f"{label}: its {own.code} bars do not fit in {want.code} periods (bar {row} at "
            f"{to_timestamp(int(times[row]))} straddles two); ask for {own.code} or a frame "
            f"its bars fit in"
        )


def _cut_by_close(times: np.ndarray, own: Timeframe, alignment: Alignment) -> np.ndarray:
    from .calendars import intraday_sessions

    if not len(times):
        return np.zeros(0, dtype=bool)
    cal = sessions(str(alignment.calendar), int(times[0]), int(times[-1]))
    session, regular = intraday_sessions(times, cal)
    return regular & (times + own.nanoseconds > cal.closes[session])
