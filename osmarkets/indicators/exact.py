"""Exact window sums: what every average, weighted average and variance here is built on.

Why: a running float sum (``sum += new - oldest``) rounds at every step, so a moving average
kept that way differs from its definition in the last bits, and two averages that are exactly
equal on a price grid (a tie) come out a few ulps apart: a crossover seen one bar early, a trade
no reference takes. A float is an integer times a power of two, so a window's floats are kept
as integers scaled by one common power of two (Python integers: any size, exact), the window's
sum is updated by adding the new integer and subtracting the oldest, and rounded to a float
once, when it is read. The result is ``math.fsum(window)`` bit for bit (both are the correctly
rounded exact sum), in O(1) per update; the scale only grows when a value with more binary
fraction digits arrives (then the stored integers are shifted once).

:func:`window_sums` is the vectorised counterpart: the same exact sums for every trailing
window of an array, with numpy int64 when the scaled values are small enough to sum without
overflow (integer prices, tick grids) and Python integers otherwise.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_TINY = 2.2250738585072014e-308  # smallest normal float: below it, scaling by 2**-k rounds
_INF = math.inf


def _rounded(total: int, shift: int, scale: float) -> float:
    """``total / 2**shift`` rounded once to the nearest float (an infinity beyond the float
    range, where ``math.fsum`` raises)."""
    try:
        if scale != _INF:
            try:
                value = float(total) / scale  # float(int) rounds once; a power of 2 is exact
            except OverflowError:
                return total / (1 << shift)
            if value == 0.0 or abs(value) >= _TINY:
                return value
        return total / (1 << shift) if shift else float(total)
    except OverflowError:
        return _INF if total > 0 else -_INF


class WindowSum:
    """The exact sum of the last ``period`` values pushed (:meth:`push` returns it rounded
    once: ``math.fsum`` of the window, bit for bit). ``squares=True`` also keeps the exact sum
    of their squares, for :meth:`variance`."""

    __slots__ = ("period", "_ints", "_total", "_total2", "_squares", "_shift", "_scale")

    def __init__(self, period: int, squares: bool = False) -> None:
        self.period = period
        self._ints: deque[int] = deque()
        self._total = 0
        self._total2 = 0
        self._squares = squares
        self._shift = 0
        self._scale = 1.0

    def __len__(self) -> int:
        return len(self._ints)

    def _scaled(self, x: float) -> int:
        """``x * 2**shift`` as an integer, growing the shift (and every stored integer) when
        ``x`` has more binary fraction digits than the window so far."""
        numerator, denominator = x.as_integer_ratio()
        bits = denominator.bit_length() - 1
        if bits > self._shift:
            grow = bits - self._shift
            self._ints = deque(i << grow for i in self._ints)
            self._total <<= grow
            self._total2 <<= 2 * grow
            self._shift = bits
            self._scale = 2.0**bits if bits <= 1000 else _INF
        return numerator << (self._shift - bits)

    def push(self, x: float) -> float:
        """Add ``x`` (dropping the oldest value once the window is full); return the sum."""
        v = x * self._scale
        n = int(v) if v.is_integer() else self._scaled(x)
        ints = self._ints
        ints.append(n)
        total = self._total + n
        if self._squares:
            self._total2 += n * n
        if len(ints) > self.period:
            old = ints.popleft()
            total -= old
            if self._squares:
                self._total2 -= old * old
        self._total = total
        return _rounded(total, self._shift, self._scale)

    def variance(self) -> float:
        """The window's population variance, exact and rounded once:
        ``(n * sum(x**2) - sum(x)**2) / n**2`` (needs ``squares=True``)."""
        n = len(self._ints)
        numerator = n * self._total2 - self._total * self._total
        try:
            return numerator / (n * n << (2 * self._shift)) if n else math.nan
        except OverflowError:  # beyond the float range, as the definition's value is
            return _INF

    @property
    def shift(self) -> int:
        return self._shift

    @property
    def total(self) -> int:
        """The exact sum, as an integer times ``2**-shift``."""
        return self._total


def fraction_bits(x: np.ndarray) -> int:
    """The number of binary fraction digits needed to write every value of ``x`` as an
    integer (the largest exponent of 2 in their denominators)."""
    finite = x[np.isfinite(x) & (x != 0)]
    if not len(finite):
        return 0
    mantissa, exponent = np.frexp(finite)
    integer = np.abs(mantissa * 2.0**53).astype(np.int64)  # exact: 53 bits
    lowest = integer & -integer
    trailing = np.log2(lowest.astype(np.float64)).astype(np.int64)
    return int(max(0, int(np.max(53 - exponent.astype(np.int64) - trailing))))


def window_sums(x: np.ndarray, period: int) -> np.ndarray:
    """The exact sum of every trailing ``period``-row window of ``x`` (finite values), rounded
    once: ``math.fsum(x[t - period + 1 : t + 1])`` for each ``t``; NaN for the first
    ``period - 1`` rows.

    The values are scaled to integers by one power of two; a window is the suffix sum of one
    block of ``period`` rows plus the prefix sum of the next, so no integer ever holds more
    than ``period`` values (int64 when that cannot overflow, Python integers otherwise).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    out = np.full(n, np.nan)
    if n < period:
        return out
    shift = fraction_bits(x)
    biggest = float(np.max(np.abs(x))) if n else 0.0
    fits = shift <= 1000 and biggest * 2.0**shift * period < 2.0**62
    if fits:
        ints = (x * 2.0**shift).astype(np.int64)
    else:
        ints = np.array([v.as_integer_ratio() for v in x.tolist()], dtype=object)
        ints = np.array([num << (shift - (den.bit_length() - 1)) for num, den in ints],
                        dtype=object)  # fmt: skip
    blocks = -(-n // period)
    padded = np.zeros(blocks * period, dtype=ints.dtype)
    padded[:n] = ints
    if not fits:
        padded[n:] = 0
    grid = padded.reshape(blocks, period)
    prefix = np.cumsum(grid, axis=1).ravel()
    suffix = np.cumsum(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    end = np.arange(period - 1, n)
    start = end - period + 1
    whole_block = end % period == period - 1
    sums = np.where(whole_block, prefix[end], suffix[start] + prefix[end])
    if fits:
        values = sums.astype(np.float64) / 2.0**shift
        small = (values != 0) & (np.abs(values) < _TINY)
        if small.any():
            values[small] = [int(s) / (1 << shift) for s in sums[small]]
    else:
        values = np.array([_rounded(int(s), shift, 2.0**shift if shift <= 1000 else _INF)
                           for s in sums], dtype=np.float64)  # fmt: skip
    out[period - 1 :] = values
    return out
