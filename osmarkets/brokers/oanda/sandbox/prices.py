"""The OANDA sandbox's market: the instrument catalogue, each instrument's seeded price path
(a pure function of time, so candles of any granularity and the live stream agree) and the
candle times a query selects (weekends skipped for intraday candles, as OANDA does).

No HTTP and no account here: :mod:`osmarkets.brokers.oanda.sandbox.server` serves these.
"""

from __future__ import annotations

import math
import zlib
from decimal import Decimal
from typing import Any

import numpy as np

from ....data.timeframes import Alignment, Timeframe, period_starts

_FX_MAX = "100000000"
# name: (type, displayName, pipLocation, displayPrecision, marginRate, start price, half spread
# in pips, maximumOrderUnits, min/max trailing stop distance)
_CATALOGUE: dict[str, tuple[str, str, int, int, str, float, float, str, str, str]] = {
    "EUR_USD": ("CURRENCY", "EUR/USD", -4, 5, "0.05", 1.10, 0.7, _FX_MAX, "0.00050", "1.00000"),
    "GBP_USD": ("CURRENCY", "GBP/USD", -4, 5, "0.05", 1.27, 0.9, _FX_MAX, "0.00050", "1.00000"),
    "AUD_USD": ("CURRENCY", "AUD/USD", -4, 5, "0.05", 0.66, 0.7, _FX_MAX, "0.00050", "1.00000"),
    "USD_CAD": ("CURRENCY", "USD/CAD", -4, 5, "0.05", 1.36, 1.0, _FX_MAX, "0.00050", "1.00000"),
    "USD_CHF": ("CURRENCY", "USD/CHF", -4, 5, "0.05", 0.89, 0.9, _FX_MAX, "0.00050", "1.00000"),
    "EUR_GBP": ("CURRENCY", "EUR/GBP", -4, 5, "0.05", 0.86, 0.8, _FX_MAX, "0.00050", "1.00000"),
    "USD_JPY": ("CURRENCY", "USD/JPY", -2, 3, "0.05", 148.0, 0.7, _FX_MAX, "0.050", "100.000"),
    "EUR_JPY": ("CURRENCY", "EUR/JPY", -2, 3, "0.05", 160.0, 1.0, _FX_MAX, "0.050", "100.000"),
    "DE30_EUR": ("CFD", "Germany 30", 0, 1, "0.05", 15800.0, 0.6, "2500", "5.0", "10000.0"),
    "SPX500_USD": ("CFD", "US SPX 500", 0, 1, "0.05", 4500.0, 0.25, "5000", "5.0", "10000.0"),
}  # fmt: skip
INSTRUMENT_NAMES = tuple(_CATALOGUE)
MAX_COUNT = 5000
_YEAR_S = 365.25 * 86400
_SCALES_S = [5.0 * 4**k for k in range(13)]
_ANNUAL_VOL = 0.08
_WEEKEND_START = (4, 21)  # Friday 21:00 UTC (weekday, hour): intraday candles pause
_WEEKEND_END = (6, 21)  # until Sunday 21:00 UTC


# -- the price path ------------------------------------------------------------------------
def _hash_uniform(key: int, index: np.ndarray) -> np.ndarray:
    """Deterministic uniform noise in [-1, 1) for integer grid points (splitmix64)."""
    x = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(key)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 52) - 1.0


class PricePath:
    """``mid(t)`` of one instrument: a seeded random walk evaluated at any time, vectorised."""

    def __init__(self, start: float, seed: int, name: str) -> None:
        self.start = start
        self.key = zlib.crc32(f"{seed}:{name}".encode()) * 0x1000193

    def mid(self, times_ns: np.ndarray) -> np.ndarray:
        seconds = np.asarray(times_ns, dtype=np.int64) / 1e9
        total = np.zeros(seconds.shape)
        for k, scale in enumerate(_SCALES_S):
            position = seconds / scale
            cell = np.floor(position)
            frac = position - cell
            index = cell.astype(np.int64)
            key = (self.key + k * 0x2545F491) & 0xFFFFFFFFFFFF
            left, right = _hash_uniform(key, index), _hash_uniform(key, index + 1)
            total += (left + (right - left) * frac) * math.sqrt(scale / _YEAR_S)
        return self.start * np.exp(_ANNUAL_VOL * 1.7 * total)


class _Instrument:
    def __init__(self, name: str, seed: int) -> None:
        kind, display, pip, digits, margin, start, half_pips, max_units, tmin, tmax = _CATALOGUE[
            name
        ]
        self.name, self.digits, self.pip_location = name, digits, pip
        self.margin_rate = Decimal(margin)
        self.half_spread = half_pips * 10.0**pip
        self.path = PricePath(start, seed, name)
        self.pinned: tuple[float, float] | None = None
        self.tradeable = True
        self.json: dict[str, Any] = {
            "name": name,
            "type": kind,
            "displayName": display,
            "pipLocation": pip,
            "displayPrecision": digits,
            "tradeUnitsPrecision": 0,
            "minimumTradeSize": "1",
            "maximumTrailingStopDistance": tmax,
            "minimumTrailingStopDistance": tmin,
            "maximumPositionSize": "0",
            "maximumOrderUnits": max_units,
            "marginRate": margin,
            "guaranteedStopLossOrderMode": "DISABLED",
            "tags": [{"type": "ASSET_CLASS", "name": kind}],
        }

    def fmt(self, value: float, extra: int = 0) -> str:
        return f"{value:.{self.digits + extra}f}"

    def quote(self, now_ns: int) -> tuple[float, float]:
        if self.pinned is not None:
            return self.pinned
        mid = float(self.path.mid(np.array([now_ns]))[0])
        step = 10.0**-self.digits
        bid = round((mid - self.half_spread) / step) * step
        ask = max(round((mid + self.half_spread) / step) * step, bid + step)
        return round(bid, self.digits), round(ask, self.digits)


# -- candle times ------------------------------------------------------------------------
def _is_weekend(starts: np.ndarray) -> np.ndarray:
    days = starts // 86_400_000_000_000
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    hour = (starts // 3_600_000_000_000) % 24
    fri, fri_h = _WEEKEND_START
    sun, sun_h = _WEEKEND_END
    return (
        ((weekday == fri) & (hour >= fri_h)) | (weekday == 5) | ((weekday == sun) & (hour < sun_h))
    )


def _candle_starts(
    tf: Timeframe,
    alignment: Alignment,
    start: int | None,
    end: int | None,
    count: int | None,
    include_first: bool,
    now: int,
) -> np.ndarray | None:
    """Open times of the candles a query selects; None when it would exceed 5000."""
    end = min(end, now) if end is not None else now
    if start is None and count is None:
        count = 500
    if start is not None:
        limit = count if count is not None else MAX_COUNT
        found = _starts_forward(tf, alignment, start, end, limit + 1, include_first)
        if count is None and len(found) > MAX_COUNT:
            return None
        return found[:limit]
    assert count is not None
    return _starts_backward(tf, alignment, end, count)


def _grid(tf: Timeframe, alignment: Alignment, lo: int, n: int) -> np.ndarray:
    """``n`` or more consecutive period starts from the period holding ``lo``."""
    if tf.is_intraday:
        length = tf.nanoseconds
        first = lo - lo % length
        starts = first + np.arange(n, dtype=np.int64) * length
        return starts[~_is_weekend(starts)]
    day = 86_400_000_000_000
    per = {"Days": 1, "Weeks": 7, "Months": 31}[tf.unit] * tf.size
    probes = lo + np.arange(0, (n + 1) * per * 2, dtype=np.int64) * (day // 2)
    return np.unique(period_starts(probes, tf, alignment))


def _starts_forward(
    tf: Timeframe, alignment: Alignment, start: int, end: int, limit: int, include_first: bool
) -> np.ndarray:
    out: list[np.ndarray] = []
    total, cursor = 0, start
    while total < limit and cursor <= end:
        length = (
            tf.nanoseconds
            if tf.is_intraday
            else 28
            * 86_400_000_000_000
            // ({"Days": 28, "Weeks": 4, "Months": 1}[tf.unit] * tf.size)
            * tf.size
        )
        periods = (end - cursor) // length + 2  # the range holds at most this many
        batch = _grid(tf, alignment, cursor, int(min(max(limit, 64) * 2, periods)))
        if not len(batch):
            break
        nxt = int(batch[-1]) + 1
        keep = batch[(batch >= start if include_first else batch > start) & (batch <= end)]
        keep = keep[keep >= cursor] if out else keep
        out.append(keep)
        total += len(keep)
        cursor = nxt
    found = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    return np.unique(found)[:limit]


def _starts_backward(tf: Timeframe, alignment: Alignment, end: int, count: int) -> np.ndarray:
    day = 86_400_000_000_000
    if tf.is_intraday:
        span = tf.nanoseconds * (count * 2 + 1000)
    else:
        span = {"Days": 1, "Weeks": 7, "Months": 31}[tf.unit] * tf.size * (count + 2) * day
    while True:
        n = span // tf.nanoseconds + 2 if tf.is_intraday else count + 2
        starts = _grid(tf, alignment, end - span, n)
        starts = starts[starts <= end]
        if len(starts) >= count or span > 50 * 365 * day:
            return starts[-count:]
        span *= 2


def _candle_ends(tf: Timeframe, alignment: Alignment, starts: np.ndarray) -> np.ndarray:
    if tf.is_intraday:
        return starts + tf.nanoseconds
    # a probe safely inside the next period, as in period_bounds, but vectorised
    longest = {"Days": 1, "Weeks": 7, "Months": 31}[tf.unit] * tf.size * 86_400_000_000_000
    return period_starts(starts + longest + 12 * 3_600_000_000_000, tf, alignment)
