"""Oscillators: RSI (Wilder), MACD and the stochastic oscillator."""

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
    rolling_mean,
    seeded_recursion,
)
from .extrema import RollingMax, RollingMin, rolling_max, rolling_min
from .moving import EMA, SMA
from .volatility import check_high_low

_isfinite = math.isfinite

T = TypeVar("T")


class MACDValue(NamedTuple, Generic[T]):
    """MACD line (fast EMA minus slow EMA), its signal EMA, and their difference."""

    macd: T
    signal: T
    histogram: T


class StochasticValue(NamedTuple, Generic[T]):
    """Stochastic %K and %D (the SMA of %K)."""

    k: T
    d: T


class RSI:
    """Relative strength index with Wilder's smoothing (``alpha = 1 / period``).

    Needs ``period + 1`` values: the first average gain and loss are the plain means of the
    first ``period`` changes (``math.fsum(gains) / period``); then
    ``avg += (change - avg) / period``. The value is
    ``100 * avg_gain / (avg_gain + avg_loss)`` (the same number as ``100 - 100 / (1 + RS)``
    without dividing by a zero average loss): 100 when prices only rose, 0 when they only fell,
    and 50 when they did not move at all over the smoothing (no gain, no loss: neutral).
    """

    __slots__ = (
        "period", "value", "ready", "_alpha", "_prev", "_count", "_gain", "_loss", "_seed",
    )  # fmt: skip

    def __init__(self, period: int = 14) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._alpha = 1.0 / self.period
        self._prev = NAN
        self._count = 0
        self._gain = 0.0
        self._loss = 0.0
        self._seed: list[tuple[float, float]] = []

    def update(self, value: float) -> float:
        """Add the next value; return the RSI (NaN until ``period + 1`` values were seen)."""
        x = float(value)
        prev = self._prev
        if not _isfinite(x):
            if x != x and prev != prev:
                return NAN
            raise bad_value("value", x)
        self._prev = x
        if prev != prev:
            return NAN
        change = x - prev
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        if self.ready:
            self._gain += self._alpha * (gain - self._gain)
            self._loss += self._alpha * (loss - self._loss)
        else:
            self._count += 1
            self._seed.append((gain, loss))
            if self._count < self.period:
                return NAN
            self._gain = math.fsum(g for g, _ in self._seed) / self.period
            self._loss = math.fsum(lo for _, lo in self._seed) / self.period
            self._seed = []
            self.ready = True
        total = self._gain + self._loss
        self.value = 100.0 * self._gain / total if total > 0.0 else 50.0
        return self.value

    def __repr__(self) -> str:
        return f"RSI(period={self.period}, value={self.value})"


_NAN_MACD: MACDValue[float] = MACDValue(NAN, NAN, NAN)


class MACD:
    """Moving average convergence/divergence: ``EMA(fast) - EMA(slow)`` and its signal EMA.

    All three EMAs are :class:`EMA` (SMA-seeded). The MACD line exists after ``slow`` values,
    the signal and histogram after ``slow + signal - 1``; each component is NaN until it exists,
    and ``ready`` becomes true when all three do.
    """

    __slots__ = ("period", "fast", "slow", "signal", "value", "ready", "_f", "_s", "_sig")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast: int = check_period("fast", fast)
        self.slow: int = check_period("slow", slow)
        self.signal: int = check_period("signal", signal)
        if self.fast >= self.slow:
            raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
        self.period: int = self.slow + self.signal - 1
        """Values needed before :attr:`ready`."""
        self.value: MACDValue[float] = _NAN_MACD
        self.ready: bool = False
        self._f = EMA(self.fast)
        self._s = EMA(self.slow)
        self._sig = EMA(self.signal)

    def update(self, value: float) -> MACDValue[float]:
        """Add the next value; return ``MACDValue(macd, signal, histogram)``."""
        f = self._f.update(value)  # EMA.update validates the value
        s = self._s.update(value)
        if not self._s.ready:
            return self.value
        m = f - s
        sig = self._sig.update(m)
        if self._sig.ready:
            self.ready = True
            self.value = MACDValue(m, sig, m - sig)
        else:
            self.value = MACDValue(m, NAN, NAN)
        return self.value

    def __repr__(self) -> str:
        return (
            f"MACD(fast={self.fast}, slow={self.slow}, signal={self.signal}, "
            f"value={tuple(self.value)})"
        )


_NAN_STOCH: StochasticValue[float] = StochasticValue(NAN, NAN)


class Stochastic:
    """Stochastic oscillator: ``%K = 100 * (close - LL) / (HH - LL)``, ``%D = SMA(%K)``.

    ``HH`` and ``LL`` are the highest high and lowest low of the last ``k_period`` bars
    (:class:`RollingMax`, :class:`RollingMin`). When they are equal (a flat range) %K is 50. %K
    exists after ``k_period`` bars, %D after ``k_period + d_period - 1``; ``ready`` means both.
    """

    __slots__ = ("period", "k_period", "d_period", "value", "ready", "_hh", "_ll", "_d", "_n")

    def __init__(self, k_period: int = 14, d_period: int = 3) -> None:
        self.k_period: int = check_period("k_period", k_period)
        self.d_period: int = check_period("d_period", d_period)
        self.period: int = self.k_period + self.d_period - 1
        """Bars needed before :attr:`ready`."""
        self.value: StochasticValue[float] = _NAN_STOCH
        self.ready: bool = False
        self._hh = RollingMax(self.k_period)
        self._ll = RollingMin(self.k_period)
        self._d = SMA(self.d_period)
        self._n = 0

    def update(self, high: float, low: float, close: float) -> StochasticValue[float]:
        """Add the next bar; return ``StochasticValue(k, d)``."""
        h = float(high)
        lo = float(low)
        c = float(close)
        if not (_isfinite(h) and _isfinite(lo) and _isfinite(c)):
            if self._n == 0 and (h != h or lo != lo or c != c):
                return self.value
            raise bad_bar(h, lo, c)
        if h < lo:
            raise ValueError(f"high ({h}) is below low ({lo})")
        self._n += 1
        hh = self._hh.update(h)
        ll = self._ll.update(lo)
        if not self._hh.ready:
            return self.value
        rng = hh - ll
        k = 100.0 * (c - ll) / rng if rng > 0.0 else 50.0
        d = self._d.update(k)
        self.ready = self._d.ready
        self.value = StochasticValue(k, d)
        return self.value

    def __repr__(self) -> str:
        return (
            f"Stochastic(k_period={self.k_period}, d_period={self.d_period}, "
            f"value={tuple(self.value)})"
        )


def rsi(values: ArrayLike, period: int = 14) -> Any:
    """Vectorised :class:`RSI` (same seed and smoothing; the first row is always NaN)."""
    period = check_period("period", period)
    inp = Inputs(values=values)
    x = inp.arrays["values"]
    out = np.full(len(x), np.nan)
    if len(x) > 1:
        change = np.diff(x)
        gain = seeded_recursion(np.where(change > 0.0, change, 0.0), period, 1.0 / period)
        loss = seeded_recursion(np.where(change < 0.0, -change, 0.0), period, 1.0 / period)
        total = gain + loss
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = np.where(total > 0.0, 100.0 * gain / total, 50.0)
        out[1:][np.isnan(gain)] = np.nan
    return inp.wrap(out)


def macd(values: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDValue[Any]:
    """Vectorised :class:`MACD`: ``MACDValue(macd, signal, histogram)`` of arrays or Series."""
    fast = check_period("fast", fast)
    slow = check_period("slow", slow)
    signal = check_period("signal", signal)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
    inp = Inputs(values=values)
    x = inp.arrays["values"]
    fast_ema = seeded_recursion(x, fast, 2.0 / (fast + 1))
    line = fast_ema - seeded_recursion(x, slow, 2.0 / (slow + 1))
    sig = np.full(len(x), np.nan)
    if len(x) >= slow:
        sig[slow - 1 :] = seeded_recursion(line[slow - 1 :], signal, 2.0 / (signal + 1))
    return MACDValue(inp.wrap(line), inp.wrap(sig), inp.wrap(line - sig))


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, k_period: int = 14, d_period: int = 3
) -> StochasticValue[Any]:
    """Vectorised :class:`Stochastic`: ``StochasticValue(k, d)`` of arrays or Series."""
    k_period = check_period("k_period", k_period)
    d_period = check_period("d_period", d_period)
    inp = Inputs(high=high, low=low, close=close)
    check_high_low(inp)
    hh = rolling_max(inp.arrays["high"], k_period)
    ll = rolling_min(inp.arrays["low"], k_period)
    rng = hh - ll
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(rng > 0.0, 100.0 * (inp.arrays["close"] - ll) / rng, 50.0)
    k[np.isnan(hh)] = np.nan
    d = np.full(len(k), np.nan)
    if len(k) >= k_period:
        d[k_period - 1 :] = rolling_mean(k[k_period - 1 :], d_period)
    return StochasticValue(inp.wrap(k), inp.wrap(d))
