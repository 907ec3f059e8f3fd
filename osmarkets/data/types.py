"""Ticks and bars: small immutable records, and numpy structured dtypes for arrays of them.

Times are integer nanoseconds since the Unix epoch, UTC. Integers keep the per-tick path free of
datetime objects (the hot loop never allocates a Timestamp); :func:`to_timestamp` gives one when
a human needs to read it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

NAN = float("nan")

TICK_FIELDS = ("time", "bid", "ask", "bid_volume", "ask_volume")
TICK_DTYPE = np.dtype(
    [("time", "i8"), ("bid", "f8"), ("ask", "f8"), ("bid_volume", "f8"), ("ask_volume", "f8")]
)

OHLC = ("open", "high", "low", "close")
BID_OHLC = tuple(f"bid_{f}" for f in OHLC)
ASK_OHLC = tuple(f"ask_{f}" for f in OHLC)
# Float columns of a bar, in storage order; "time" is kept apart as int64.
BAR_PRICE_FIELDS = (*OHLC, "volume", *BID_OHLC, *ASK_OHLC)
BAR_FIELDS = ("time", *BAR_PRICE_FIELDS)
BAR_DTYPE = np.dtype([("time", "i8")] + [(name, "f8") for name in BAR_PRICE_FIELDS])


class Tick(NamedTuple):
    """A quote: best bid and ask at ``time`` (ns since epoch, UTC), with optional volumes."""

    time: int
    bid: float
    ask: float
    bid_volume: float = 0.0
    ask_volume: float = 0.0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float:
        return self.ask - self.bid

    @property
    def timestamp(self) -> pd.Timestamp:
        return to_timestamp(self.time)


class Bar(NamedTuple):
    """A completed (or forming) bar stamped with its open time (ns since epoch, UTC).

    For quoted instruments ``open`` … ``close`` are mid prices and the ``bid_*`` / ``ask_*``
    fields hold the sides; for plain OHLC data the sides are NaN. ``volume`` is the tick count
    when bars are built from quotes.
    """

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    bid_open: float = NAN
    bid_high: float = NAN
    bid_low: float = NAN
    bid_close: float = NAN
    ask_open: float = NAN
    ask_high: float = NAN
    ask_low: float = NAN
    ask_close: float = NAN

    @property
    def has_quotes(self) -> bool:
        return not math.isnan(self.bid_close)

    @property
    def timestamp(self) -> pd.Timestamp:
        return to_timestamp(self.time)


def to_timestamp(time_ns: int) -> pd.Timestamp:
    return pd.Timestamp(time_ns, unit="ns", tz="UTC")


def to_ns(value: object) -> int:
    """Nanoseconds since the epoch for an int, a datetime-like or an ISO string (naive = UTC)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)
