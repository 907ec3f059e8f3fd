"""Moving averages: SMA, EMA, WMA (incremental classes and vectorised functions)."""

from __future__ import annotations

import math
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
from .exact import WindowSum, _rounded

_isfinite = math.isfinite
_fsum = math.fsum


class SMA(WindowSum):
    """Simple moving average: ``math.fsum(window) / period`` of the last ``period`` values,
    bit for bit, in O(1) per update.

    The window's sum is kept exactly (it is a :class:`~osmarkets.indicators.exact.WindowSum`:
    integers scaled by a power of two) and rounded once when read, so two averages that are
    exactly equal on a price grid compare equal: a tie is never mistaken for a cross.
    """

    __slots__ = ("value", "ready", "_count")

    def __init__(self, period: int) -> None:
        super().__init__(check_period("period", period))
        self.value: float = NAN
        self.ready: bool = False
        self._count = 0

    def update(self, value: float) -> float:
        """Add the next value; return the average (NaN until ``period`` values were seen)."""
        x = float(value)
        if self.ready:  # push() inlined: the hot path of every SMA Brain
            scale = self._scale
            v = x * scale
            if v.is_integer():  # False for NaN and infinities: they take the checked path
                ints = self._ints
                n = int(v)
                ints.append(n)
                exact = self._total + n - ints.popleft()
                self._total = exact
                try:  # a finite scale is at most 2**1000: a non-zero sum is a normal float
                    self.value = float(exact) / scale / self.period
                except OverflowError:
                    self.value = _rounded(exact, self._shift, scale) / self.period
                return self.value
        if not _isfinite(x):
            if x != x and not self._count:
                return NAN  # leading NaN: the warm-up of an upstream indicator
            raise bad_value("value", x)
        total = self.push(x)
        if self.ready:
            self.value = total / self.period
        else:
            self._count += 1
            if self._count == self.period:
                self.ready = True
                self.value = total / self.period
        return self.value

    def __repr__(self) -> str:
        return f"SMA(period={self.period}, value={self.value})"


class EMA:
    """Exponential moving average, ``alpha = 2 / (period + 1)``, seeded with an SMA.

    The first value (after ``period`` inputs) is their simple mean, ``math.fsum(first) /
    period``; from then on ``ema += alpha * (x - ema)``. Seeding with the SMA (as TA-Lib and
    most charting packages do) instead of with the first input makes the early values
    independent of one arbitrary price.
    """

    __slots__ = ("period", "alpha", "value", "ready", "_count", "_seed")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.alpha: float = 2.0 / (self.period + 1)
        self.value: float = NAN
        self.ready: bool = False
        self._count = 0
        self._seed: list[float] = []

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
            self._seed.append(x)
            if self._count == self.period:
                self.value = _fsum(self._seed) / self.period
                self._seed = []
                self.ready = True
        return self.value

    def __repr__(self) -> str:
        return f"EMA(period={self.period}, value={self.value})"


class WMA:
    """Linearly weighted moving average, weights 1 (oldest) to ``period`` (newest): the exact
    weighted sum ``sum(i * x_i)`` rounded once, divided by ``period * (period + 1) / 2``.

    Kept exactly in O(1): a new value shifts every weight down by one, so with the exact window
    sum ``S`` (before the oldest leaves), ``W += period * x - S``, on the same scaled integers
    as :class:`SMA`.
    """

    __slots__ = ("period", "value", "ready", "_sum", "_wsum", "_denom", "_count")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._sum = WindowSum(self.period)
        self._wsum = 0  # exact weighted sum, scaled as self._sum's integers
        self._denom = self.period * (self.period + 1) / 2.0
        self._count = 0

    def update(self, value: float) -> float:
        """Add the next value; return the WMA (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and not self._count:
                return NAN
            raise bad_value("value", x)
        window = self._sum
        shift, total = window.shift, window.total
        window.push(x)
        if window.shift != shift:  # the scale grew: rescale the weighted sum with it
            grown = window.shift - shift
            self._wsum <<= grown
            total <<= grown
        n = window._ints[-1]
        self._wsum += (self.period if self.ready else len(window)) * n - (
            total if self.ready else 0
        )
        self._count += 1
        if self._count >= self.period:
            self.ready = True
            scale = 1 << window.shift
            self.value = (self._wsum / scale if window.shift else float(self._wsum)) / self._denom
        return self.value

    def __repr__(self) -> str:
        return f"WMA(period={self.period}, value={self.value})"


def sma(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`SMA`: a numpy array in, an array out; a Series in, a Series out.

    Every value is ``math.fsum(window) / period`` bit for bit, as :class:`SMA` gives
    (:func:`~osmarkets.indicators.exact.window_sums`). Leading NaNs are skipped.
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
    """Vectorised :class:`WMA`: the incremental class run over the values, so both give the
    same exact weighted sums (O(N) exact integer updates)."""
    period = check_period("period", period)
    inp = Inputs(values=values)
    x = inp.arrays["values"]
    out = np.full(len(x), np.nan)
    indicator = WMA(period)
    for t, value in enumerate(x.tolist()):
        out[t] = indicator.update(value)
    return inp.wrap(out)


class Crossover:
    """Whether a line crossed another, with backtrader's rule: ``update(a, b)`` returns ``1``
    when ``a - b`` turned positive and the last non-zero difference before it was negative,
    ``-1`` for the opposite, ``0`` otherwise. An exact tie (a zero difference) is not a cross,
    and touching then moving back is not one either: only a change of the non-zero sign
    counts. NaN inputs (an indicator still warming up) are ignored.
    """

    __slots__ = ("value", "_last")

    def __init__(self) -> None:
        self.value: int = 0
        self._last = 0  # sign of the last non-zero difference, 0 before any

    def update(self, a: float, b: float) -> int:
        """Add the two lines' current values; return 1, -1 or 0 (see the class docstring)."""
        if a > b:
            sign = 1
        elif a < b:
            sign = -1
        else:  # a tie, or a NaN: no cross, the last non-zero sign is kept
            self.value = 0
            return 0
        self.value = sign if self._last == -sign else 0
        self._last = sign
        return self.value

    def __repr__(self) -> str:
        return f"Crossover(value={self.value})"
