"""Bar-series identifiers, time frames and period alignment.

A bar's period is the half-open interval ``[start, end)``; a bar is stamped with ``start``
(its open time, UTC). Intraday periods (seconds, minutes, hours) are aligned to UTC multiples of
their length since the Unix epoch. Days, weeks and months follow OANDA's alignment rules: a day
starts at ``daily_alignment`` o'clock in ``alignment_timezone`` (17:00 New York by default,
daylight saving included), a week starts on ``weekly_alignment`` at that hour, a month on its
first day at that hour.

Everything here works on integer nanoseconds since the epoch, so the same arithmetic serves the
vectorised batch path and the per-tick streaming path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

UNITS = ("Seconds", "Minutes", "Hours", "Days", "Weeks", "Months")
INTRADAY_UNITS = ("Seconds", "Minutes", "Hours")
UNIT_NS = {"Seconds": 1_000_000_000, "Minutes": 60_000_000_000, "Hours": 3_600_000_000_000}
_UNIT_ALIASES = {
    "s": "Seconds", "sec": "Seconds", "second": "Seconds", "seconds": "Seconds",
    "m": "Minutes", "min": "Minutes", "minute": "Minutes", "minutes": "Minutes",
    "h": "Hours", "hour": "Hours", "hours": "Hours",
    "d": "Days", "day": "Days", "days": "Days",
    "w": "Weeks", "week": "Weeks", "weeks": "Weeks",
    "mo": "Months", "mn": "Months", "month": "Months", "months": "Months",
}  # fmt: skip
_CODE_PREFIX = {
    "Seconds": "S", "Minutes": "M", "Hours": "H", "Days": "D", "Weeks": "W", "Months": "MN",
}  # fmt: skip
_CODE_RE = re.compile(r"^(S|M|H|D|W|MN)(\d*)$")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_NS = 86_400_000_000_000
_HOUR_NS = 3_600_000_000_000
# Symbols become part of ZeroMQ topics and file names: keep them to a safe alphabet.
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


class Timeframe(NamedTuple):
    """A bar length: ``size`` units of ``unit`` (one of :data:`UNITS`)."""

    size: int
    unit: str

    @classmethod
    def parse(cls, value: Any) -> Timeframe:
        """Accept a Timeframe, a ``(size, unit)`` pair or a granularity code (``'M15'``, ``'D'``).

        OANDA's codes are understood as OANDA means them: ``M1`` is one minute and a bare ``M``
        is one month. Other sizes follow the same pattern (``M3``, ``H5``, ``D2``); several
        months are written ``MN3``.
        """
        if isinstance(value, Timeframe):
            return value
        if isinstance(value, str):
            return cls._from_code(value)
        if isinstance(value, tuple | list) and len(value) == 2:
            size, unit = value
            return cls._checked(size, unit)
        raise ValueError(f"timeframe: expected a code like 'M1' or (size, unit), got {value!r}")

    @classmethod
    def _checked(cls, size: Any, unit: Any) -> Timeframe:
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise ValueError(f"timeframe size: expected a positive integer, got {size!r}")
        if not isinstance(unit, str):
            raise ValueError(f"timeframe unit: expected one of {', '.join(UNITS)}, got {unit!r}")
        canonical = unit if unit in UNITS else _UNIT_ALIASES.get(unit.lower())
        if canonical is None:
            raise ValueError(f"timeframe unit: expected one of {', '.join(UNITS)}, got {unit!r}")
        return cls(int(size), canonical)

    @classmethod
    def _from_code(cls, code: str) -> Timeframe:
        match = _CODE_RE.match(code.strip())
        if match is None:
            raise ValueError(f"timeframe: unknown granularity code {code!r}")
        prefix, digits = match.groups()
        if prefix == "M" and not digits:
            return cls(1, "Months")
        if not digits and prefix in ("S", "H"):
            raise ValueError(f"timeframe: granularity code {code!r} needs a size, like {code}5")
        unit = {v: k for k, v in _CODE_PREFIX.items()}[prefix]
        return cls._checked(int(digits) if digits else 1, unit)

    @property
    def code(self) -> str:
        """The granularity code: OANDA's where one exists (``S5``, ``M1``, ``H4``, ``D``, ``W``,
        ``M``), the same pattern otherwise."""
        if self.unit == "Months":
            return "M" if self.size == 1 else f"MN{self.size}"
        if self.unit in ("Days", "Weeks") and self.size == 1:
            return _CODE_PREFIX[self.unit]
        return f"{_CODE_PREFIX[self.unit]}{self.size}"

    @property
    def is_intraday(self) -> bool:
        return self.unit in INTRADAY_UNITS

    @property
    def nanoseconds(self) -> int:
        """Fixed length of an intraday period (days and longer have no fixed length)."""
        if not self.is_intraday:
            raise ValueError(f"timeframe {self.code}: days, weeks and months have no fixed length")
        return self.size * UNIT_NS[self.unit]

    def __str__(self) -> str:
        return self.code


class _BarSeriesIDFields(NamedTuple):
    symbol: str
    size: int
    unit: str


class BarSeriesID(_BarSeriesIDFields):
    """Identifies a bar series: an instrument and a time frame.

    ``BarSeriesID('EUR_USD', 1, 'Minutes')`` equals the plain tuple ``('EUR_USD', 1, 'Minutes')``
    and hashes like it, so either form can key a dict. :attr:`key` is the ZeroMQ topic: it ends
    in a terminator so that no series' key is a prefix of another's (``EUR_USD M1`` vs
    ``EUR_USD M15``).
    """

    __slots__ = ()

    def __new__(cls, symbol: Any, size: Any = None, unit: Any = None) -> BarSeriesID:
        if size is None and unit is None:
            return cls.parse(symbol)
        if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
            raise ValueError(
                f"bar series symbol: expected letters, digits and _.-/ only, got {symbol!r}"
            )
        timeframe = Timeframe.parse((size, unit))
        return super().__new__(cls, symbol, timeframe.size, timeframe.unit)

    @classmethod
    def parse(cls, value: Any) -> BarSeriesID:
        """Accept a BarSeriesID, ``(symbol, size, unit)``, ``(symbol, code)``, ``'EUR_USD:M1'``,
        ``'EUR_USD M1'`` or a :attr:`key`."""
        if isinstance(value, BarSeriesID):
            return value
        if isinstance(value, tuple | list):
            if len(value) == 3:
                return cls(*value)
            if len(value) == 2:
                tf = Timeframe.parse(value[1])
                return cls(value[0], tf.size, tf.unit)
        if isinstance(value, str):
            parts = re.split(r"[:\s]+", value.strip().rstrip("|"))
            if len(parts) == 2:
                tf = Timeframe.parse(parts[1])
                return cls(parts[0], tf.size, tf.unit)
        raise ValueError(
            f"bar series id: expected ('EUR_USD', 1, 'Minutes') or 'EUR_USD:M1', got {value!r}"
        )

    @classmethod
    def from_key(cls, key: str | bytes) -> BarSeriesID:
        if isinstance(key, bytes):
            key = key.decode()
        if not key.endswith("|"):
            raise ValueError(f"bar series key: expected a key ending in '|', got {key!r}")
        return cls.parse(key)

    @property
    def timeframe(self) -> Timeframe:
        return Timeframe(self.size, self.unit)

    @property
    def code(self) -> str:
        return self.timeframe.code

    @property
    def key(self) -> str:
        return f"{self.symbol} {self.code}|"

    def __str__(self) -> str:
        return f"{self.symbol}:{self.code}"

    def __repr__(self) -> str:
        return f"BarSeriesID({self.symbol!r}, {self.size!r}, {self.unit!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BarSeriesID, (self.symbol, self.size, self.unit))


class Alignment(NamedTuple):
    """Where periods start: OANDA's candle alignment for days, weeks and months, or the
    sessions of an exchange ``calendar`` (a name exchange_calendars knows, such as ``'XNYS'``;
    :mod:`osmarkets.data.calendars`), with ``regular_hours`` keeping only bars inside them."""

    daily_alignment: int = 17
    alignment_timezone: str = "America/New_York"
    weekly_alignment: str = "Friday"
    calendar: str | None = None
    regular_hours: bool = False

    @classmethod
    def of(cls, options: Alignment | Mapping[str, Any] | None = None, **more: Any) -> Alignment:
        """An Alignment from another, a mapping of its field names, keywords, or defaults;
        unknown names raise ``ValueError`` listing the known ones."""
        fields = dict(options._asdict() if isinstance(options, Alignment) else options or {})
        fields.update({k: v for k, v in more.items() if v is not None})
        unknown = sorted(set(fields) - set(cls._fields))
        if unknown:
            raise ValueError(
                f"alignment: unknown option {unknown[0]!r} (known: {', '.join(cls._fields)})"
            )
        return cls(**fields).checked()

    def checked(self) -> Alignment:
        if not isinstance(self.daily_alignment, int) or not 0 <= self.daily_alignment <= 23:
            raise ValueError(
                f"daily_alignment: expected an hour 0..23, got {self.daily_alignment!r}"
            )
        if self.weekly_alignment not in WEEKDAYS:
            raise ValueError(
                f"weekly_alignment: expected one of {', '.join(WEEKDAYS)}, "
                f"got {self.weekly_alignment!r}"
            )
        try:
            pd.Timestamp(0, tz=self.alignment_timezone)
        except Exception as exc:
            raise ValueError(
                f"alignment_timezone: unknown time zone {self.alignment_timezone!r}"
            ) from exc
        if not isinstance(self.regular_hours, bool):
            raise ValueError(f"regular_hours: expected True or False, got {self.regular_hours!r}")
        if self.calendar is not None:
            from .calendars import check_calendar

            check_calendar(self.calendar)
        elif self.regular_hours:
            raise ValueError("regular_hours: needs an exchange calendar (calendar='XNYS'...)")
        return self


DEFAULT_ALIGNMENT = Alignment()


def period_starts(
    times_ns: np.ndarray, timeframe: Timeframe, alignment: Alignment = DEFAULT_ALIGNMENT
) -> np.ndarray:
    """Open time (int64 ns, UTC) of the period holding each time, vectorised."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    if alignment.calendar is not None and len(times_ns):
        from . import calendars

        cal = calendars.sessions(alignment.calendar, int(times_ns.min()), int(times_ns.max()))
        return calendars.period_starts(times_ns, timeframe, cal)
    if timeframe.is_intraday:
        length = timeframe.nanoseconds
        return times_ns - np.mod(times_ns, length)
    alignment = alignment.checked()
    shift = pd.Timedelta(hours=alignment.daily_alignment)
    # Wall-clock time in the alignment zone, moved back by the alignment hour: in that frame
    # every day, week and month starts at midnight, so calendar flooring does the work.
    utc = pd.DatetimeIndex(times_ns.view("M8[ns]"), tz="UTC")
    local = utc.tz_convert(alignment.alignment_timezone).tz_localize(None) - shift
    days = local.normalize()
    n = timeframe.size
    if timeframe.unit == "Days":
        floored = days
        if n > 1:
            index = days.asi8 // _DAY_NS
            floored = pd.DatetimeIndex((index - index % n) * _DAY_NS)
    elif timeframe.unit == "Weeks":
        first = WEEKDAYS.index(alignment.weekly_alignment)
        back = (np.asarray(days.day_of_week) - first) % 7
        floored = days - pd.to_timedelta(back, unit="D")
        if n > 1:
            weeks = (floored.asi8 - _epoch_week_start(first)) // (7 * _DAY_NS)
            floored = floored - pd.to_timedelta((weeks % n) * 7, unit="D")
    else:
        month_index = (np.asarray(days.year) - 1970) * 12 + np.asarray(days.month) - 1
        month_index = month_index - month_index % n
        floored = pd.DatetimeIndex(month_index.astype("M8[M]").astype("M8[ns]"))
    wall = floored + shift
    starts = wall.tz_localize(
        alignment.alignment_timezone, ambiguous=True, nonexistent="shift_forward"
    ).tz_convert("UTC")
    return np.asarray(starts.asi8, dtype=np.int64)


def _epoch_week_start(first_weekday: int) -> int:
    # 1970-01-01 was a Thursday (weekday 3); any day with the aligned weekday anchors the count.
    return ((first_weekday - 3) % 7) * _DAY_NS


def period_bounds(
    time_ns: int, timeframe: Timeframe, alignment: Alignment = DEFAULT_ALIGNMENT
) -> tuple[int, int]:
    """``(start, end)`` of the period holding ``time_ns``; used once per period when streaming."""
    if alignment.calendar is not None:
        from . import calendars

        cal = calendars.sessions(alignment.calendar, time_ns, time_ns)
        return calendars.period_bounds(time_ns, timeframe, cal)
    if timeframe.is_intraday:
        length = timeframe.nanoseconds
        start = time_ns - time_ns % length
        return start, start + length
    start = int(period_starts(np.array([time_ns]), timeframe, alignment)[0])
    # A probe safely inside the next period: past the longest possible length of this one
    # (daylight saving moves a day by an hour) and before the end of the next.
    longest = {"Days": 1, "Weeks": 7, "Months": 31}[timeframe.unit] * timeframe.size * _DAY_NS
    probe = start + longest + 12 * _HOUR_NS
    end = int(period_starts(np.array([probe]), timeframe, alignment)[0])
    return start, end


_HOUR = 3_600_000_000_000
_INFERRED_LONG = (  # smallest gap between bars (in days) -> time frame
    (20 / 24, 28 / 24, Timeframe(1, "Days")),
    (5, 8, Timeframe(1, "Weeks")),
    (27, 32, Timeframe(1, "Months")),
    (88, 93, Timeframe(3, "Months")),
)


def infer_timeframe(times_ns: np.ndarray) -> Timeframe:
    """The time frame of bars stamped ``times_ns`` (sorted), from the smallest gap between two
    consecutive bars (the one least affected by missing bars, weekends and holidays): 20 to 28
    hours is a day (a gap of 23 or 25 hours crosses a daylight-saving change), 5 to 8 days a
    week, 27 to 32 days a month, 88 to 93 days three months; any other gap is intraday, in the
    largest of hours, minutes or seconds that divides it. ``ValueError`` when there are fewer
    than two bars or the gap fits none of these (give the frame explicitly then)."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    if len(times_ns) < 2:
        raise ValueError("cannot infer the time frame of fewer than two bars; give it")
    gap = int(np.diff(times_ns).min())
    if gap <= 0:
        raise ValueError("cannot infer the time frame: two bars share a time")
    days = gap / _DAY_NS
    for low, high, timeframe in _INFERRED_LONG:
        if low <= days <= high:
            return timeframe
    if gap < 20 * _HOUR:
        for unit in ("Hours", "Minutes", "Seconds"):
            if gap % UNIT_NS[unit] == 0:
                return Timeframe(gap // UNIT_NS[unit], unit)
    raise ValueError(
        f"cannot infer a time frame from a gap of {pd.Timedelta(gap)} between bars; give it"
    )
