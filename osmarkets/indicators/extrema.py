"""Rolling maximum and minimum, O(1) amortised per update with a monotonic deque."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import pandas as pd

from ._common import NAN, ArrayLike, Inputs, bad_value, check_period

_isfinite = math.isfinite


class _RollingExtreme:
    """What :class:`RollingMax` and :class:`RollingMin` share: the window, the deque, the state.

    The deque holds ``(position, value)`` pairs, monotonic in value: a new value evicts from the
    back every value it beats (they can never be the extreme again), and the front leaves when
    it falls out of the window. Each value is pushed and popped at most once, so an update is
    O(1) amortised, whatever the period. Each subclass writes out its own ``update`` with the
    comparison inline: passing it in (``operator.le``, or a sign) costs about 12 % per update.
    """

    __slots__ = ("period", "value", "ready", "_deque", "_count")

    def __init__(self, period: int) -> None:
        self.period: int = check_period("period", period)
        self.value: float = NAN
        self.ready: bool = False
        self._deque: deque[tuple[int, float]] = deque()
        self._count = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(period={self.period}, value={self.value})"


class RollingMax(_RollingExtreme):
    """Maximum of the last ``period`` values (the deque's values strictly decrease)."""

    __slots__ = ()

    def update(self, value: float) -> float:
        """Add the next value; return the maximum (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and self._count == 0:
                return NAN
            raise bad_value("value", x)
        i = self._count
        self._count = i + 1
        d = self._deque
        while d and d[-1][1] <= x:
            d.pop()
        d.append((i, x))
        if d[0][0] <= i - self.period:
            d.popleft()
        if self._count >= self.period:
            self.ready = True
            self.value = d[0][1]
        return self.value


class RollingMin(_RollingExtreme):
    """Minimum of the last ``period`` values (the mirror image of :class:`RollingMax`)."""

    __slots__ = ()

    def update(self, value: float) -> float:
        """Add the next value; return the minimum (NaN until ``period`` values were seen)."""
        x = float(value)
        if not _isfinite(x):
            if x != x and self._count == 0:
                return NAN
            raise bad_value("value", x)
        i = self._count
        self._count = i + 1
        d = self._deque
        while d and d[-1][1] >= x:
            d.pop()
        d.append((i, x))
        if d[0][0] <= i - self.period:
            d.popleft()
        if self._count >= self.period:
            self.ready = True
            self.value = d[0][1]
        return self.value


def rolling_max(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`RollingMax` (pandas' compiled O(N) deque algorithm)."""
    period = check_period("period", period)
    inp = Inputs(values=values)
    return inp.wrap(pd.Series(inp.arrays["values"]).rolling(period).max().to_numpy())


def rolling_min(values: ArrayLike, period: int) -> Any:
    """Vectorised :class:`RollingMin`."""
    period = check_period("period", period)
    inp = Inputs(values=values)
    return inp.wrap(pd.Series(inp.arrays["values"]).rolling(period).min().to_numpy())
