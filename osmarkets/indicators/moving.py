"""Moving averages: SMA, EMA, WMA (incremental classes and vectorised functions)."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from ._common import (
    NAN,
    ArrayLike,
    Inputs,
    bad_value,
    check_period,
    rolling_mean,
    seeded_recursion,
)

_isfinite = math.isfinite
_fsum = math.fsum


class SMA:
    """Simple moving average of the last ``period`` values, O(1) per update.

    A running sum drifts: every add/subtract rounds, and over millions of updates the error
    grows without bound. Every ``period`` updates the sum is therefore recomputed exactly with
    :func:`math.fsum` over the window, which costs O(period) once per ``period`` updates, so O(1)
    amortised, and keeps the error at the level of a single window's rounding.
    """

    __slots__ = ("period", "value", "ready", "_window", "_sum", "_since_exact")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._window: deque[float] = deque(maxlen=self.period)
        self._sum = 0.0
        self._since_exact = 0

    def update(self, value: float) -> float:
        """Add the next value; return the average (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and not self._window:
                return NAN  # leading NaN: the warm-up of an upstream indicator
            raise bad_value("value", x)
        window = self._window
        if self.ready:
            self._sum += x - window[0]
            window.append(x)  # maxlen drops the oldest
            self._since_exact += 1
            if self._since_exact >= self.period:
                self._sum = _fsum(window)
                self._since_exact = 0
            self.value = self._sum / self.period
        else:
            window.append(x)
            self._sum += x
            if len(window) == self.period:
                self._sum = _fsum(window)
                self.ready = True
                self.value = self._sum / self.period
        return self.value

    def __repr__(self) -> str:
        return f"SMA(period={self.period}, value={self.value})"


class EMA:
    """Exponential moving average, ``alpha = 2 / (period + 1)``, seeded with an SMA.

    The first value (after ``period`` inputs) is the simple mean of those inputs; from then on
    ``ema += alpha * (x - ema)``. Seeding with the SMA (as TA-Lib and most charting packages do)
    instead of with the first input makes the early values independent of one arbitrary price.
    """

    __slots__ = ("period", "alpha", "value", "ready", "_count", "_sum")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.alpha: float = 2.0 / (self.period + 1)
        self.value: float = NAN
        self.ready: bool = False
        self._count = 0
        self._sum = 0.0

    def update(self, value: float) -> float:
        """Add the next value; return the EMA (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and self._count == 0:
                return NAN
            raise bad_value("value", x)
        if self.ready:
            self.value += self.alpha * (x - self.value)
        else:
            self._count += 1
            self._sum += x
            if self._count == self.period:
                self.value = self._sum / self.period
                self.ready = True
        return self.value

    def __repr__(self) -> str:
        return f"EMA(period={self.period}, value={self.value})"


class WMA:
    """Linearly weighted moving average: weights 1 (oldest) to ``period`` (newest).

    Kept in O(1) with the window sum ``S`` and weighted sum ``W``: a new value ``x`` shifts every
    weight down by one, so ``W += period * x - S`` and ``S += x - oldest``. Both are recomputed
    exactly every ``period`` updates, as in :class:`SMA`, so they do not drift.
    """

    __slots__ = ("period", "value", "ready", "_window", "_sum", "_wsum", "_denom", "_since_exact")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._window: deque[float] = deque(maxlen=self.period)
        self._sum = 0.0
        self._wsum = 0.0
        self._denom = self.period * (self.period + 1) / 2.0
        self._since_exact = 0

    def _exact(self) -> None:
        self._sum = _fsum(self._window)
        self._wsum = _fsum((i + 1) * v for i, v in enumerate(self._window))
        self._since_exact = 0

    def update(self, value: float) -> float:
        """Add the next value; return the WMA (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and not self._window:
                return NAN
            raise bad_value("value", x)
        window = self._window
        if self.ready:
            self._wsum += self.period * x - self._sum
            self._sum += x - window[0]
            window.append(x)
            self._since_exact += 1
            if self._since_exact >= self.period:
                self._exact()
            self.value = self._wsum / self._denom
        else:
            window.append(x)
            if len(window) == self.period:
                self._exact()
                self.ready = True
                self.value = self._wsum / self._denom
        return self.value

    def __repr__(self) -> str:
        return f"WMA(period={self.period}, value={self.value})"


def sma(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`SMA`: a numpy array in, an array out; a Series in, a Series out.

    O(N) block sums that do not drift (see the indicators documentation). Leading NaNs are
    skipped.
    """
    period = check_period("period", period)
    inp = Inputs(values=values)
    return inp.wrap(rolling_mean(inp.arrays["values"], period))


def ema(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`EMA` (same SMA seed, same alpha)."""
    period = check_period("period", period)
    inp = Inputs(values=values)
    return inp.wrap(seeded_recursion(inp.arrays["values"], period, 2.0 / (period + 1)))


def wma(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`WMA`.

    A direct weighted sum per row (``numpy.convolve``, compiled): O(N * period) but exact. The
    O(N) formula from cumulative sums of ``i * x[i]`` loses digits to cancellation on long series.
    """
    period = check_period("period", period)
    inp = Inputs(values=values)
    x = inp.arrays["values"]
    out = np.full(len(x), np.nan)
    if len(x) >= period:
        weights = np.arange(period, 0, -1, dtype=np.float64)  # convolve flips: newest gets n
        out[period - 1 :] = np.convolve(x, weights, mode="valid") / (period * (period + 1) / 2.0)
    return inp.wrap(out)
