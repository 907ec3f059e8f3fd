"""Volatility indicators: ATR (Wilder) and Bollinger bands."""

from __future__ import annotations

import math
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from ._common import (
    NAN,
    ArrayLike,
    Inputs,
    bad_bar,
    bad_value,
    check_period,
    check_positive_float,
    rolling_mean,
    rolling_pstd,
    seeded_recursion,
)
from .exact import WindowSum

_isfinite = math.isfinite
_fsum = math.fsum
_sqrt = math.sqrt

T = TypeVar("T")


class Bands(NamedTuple, Generic[T]):
    """Bollinger bands: floats from :class:`BollingerBands`, arrays or Series from
    :func:`bollinger`."""

    mid: T
    upper: T
    lower: T


_NAN_BANDS: Bands[float] = Bands(NAN, NAN, NAN)


class ATR:
    """Average true range with Wilder's smoothing (``alpha = 1 / period``).

    True range is ``max(high - low, |high - previous close|, |low - previous close|)``; the first
    bar has no previous close, so its true range is ``high - low``. The first ATR, after
    ``period`` bars, is the mean of those ``period`` true ranges (``math.fsum(trs) / period``);
    then
    ``atr += (tr - atr) / period``.
    """

    __slots__ = ("period", "value", "ready", "_alpha", "_count", "_seed", "_prev_close")

    def __init__(self, period: int = 14) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._alpha = 1.0 / self.period
        self._count = 0
        self._seed: list[float] = []
        self._prev_close = NAN

    def update(self, high: float, low: float, close: float) -> float:
        """Add the next bar; return the ATR (NaN until ``period`` bars were seen)."""
        h = float(high)
        lo = float(low)
        c = float(close)
        if not (_isfinite(h) and _isfinite(lo) and _isfinite(c)):
            if self._count == 0 and (h != h or lo != lo or c != c):
                return NAN
            raise bad_bar(h, lo, c)
        if h < lo:
            raise ValueError(f"high ({h}) is below low ({lo})")
        pc = self._prev_close
        tr = h - lo if pc != pc else max(h - lo, abs(h - pc), abs(lo - pc))
        self._prev_close = c
        if self.ready:
            self.value += self._alpha * (tr - self.value)
        else:
            self._count += 1
            self._seed.append(tr)
            if self._count == self.period:
                self.value = math.fsum(self._seed) / self.period
                self._seed = []
                self.ready = True
        return self.value

    def __repr__(self) -> str:
        return f"ATR(period={self.period}, value={self.value})"


class BollingerBands:
    """Bollinger bands: the ``period`` SMA plus and minus ``k`` population standard deviations.

    Exact to the definition: the middle band is ``math.fsum(window) / period`` and the
    deviation ``sqrt(variance)``, the window's population variance computed exactly
    (``(n * sum(x**2) - sum(x)**2) / n**2`` on the scaled integers of
    :class:`~osmarkets.indicators.exact.WindowSum`) and rounded once. No cancellation, no drift:
    a flat window has a deviation of exactly 0 whatever came before it.
    """

    __slots__ = ("period", "k", "value", "ready", "_window", "_count")

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self.period: int = check_period("period", period)
        self.k: float = check_positive_float("k", k)
        self.value: Bands[float] = _NAN_BANDS
        self.ready: bool = False
        self._window = WindowSum(self.period, squares=True)
        self._count = 0

    def update(self, value: float) -> Bands[float]:
        """Add the next value; return ``Bands(mid, upper, lower)`` (NaNs until ready)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and not self._count:
                return self.value
            raise bad_value("value", x)
        total = self._window.push(x)
        if not self.ready:
            self._count += 1
            if self._count < self.period:
                return self.value
            self.ready = True
        mid = total / self.period
        std = _sqrt(self._window.variance())
        self.value = Bands(mid, mid + self.k * std, mid - self.k * std)
        return self.value

    def __repr__(self) -> str:
        return f"BollingerBands(period={self.period}, k={self.k}, value={tuple(self.value)})"


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per-bar true range; the first bar's is ``high - low`` (no previous close)."""
    tr = high - low
    if len(tr) > 1:
        prev = close[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    return tr


def check_high_low(inp: Inputs) -> None:
    high, low = inp.arrays["high"], inp.arrays["low"]
    bad = high < low
    if bad.any():
        row = inp.start + int(np.argmax(bad))
        label = inp.index[row] if inp.index is not None else row
        i = row - inp.start
        raise ValueError(f"high ({high[i]}) is below low ({low[i]}) at row {label}")


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Any:
    """Vectorised :class:`ATR` (same first true range, same seed, same smoothing)."""
    period = check_period("period", period)
    inp = Inputs(high=high, low=low, close=close)
    check_high_low(inp)
    tr = true_range(inp.arrays["high"], inp.arrays["low"], inp.arrays["close"])
    return inp.wrap(seeded_recursion(tr, period, 1.0 / period))


def bollinger(values: ArrayLike, period: int = 20, k: float = 2.0) -> Bands[Any]:
    """Vectorised :class:`BollingerBands`: ``Bands(mid, upper, lower)`` of arrays or Series.

    The mean is O(N); the population (``ddof=0``) standard deviation is a two-pass
    O(N * period) computation, for exactness (see the indicators documentation).
    """
    period = check_period("period", period)
    k = check_positive_float("k", k)
    inp = Inputs(values=values)
    x = inp.arrays["values"]
    mid = rolling_mean(x, period)
    std = rolling_pstd(x, period, mid)
    return Bands(inp.wrap(mid), inp.wrap(mid + k * std), inp.wrap(mid - k * std))
