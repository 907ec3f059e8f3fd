"""The SMA as it was before issue 19 (a running float sum, recomputed with math.fsum every
``period`` updates), kept only so the benchmarks can measure the exact SMA against it in the
same run. Not exact: do not use it."""

from __future__ import annotations

import math
from collections import deque

NAN = math.nan


class RunningSMA:
    __slots__ = ("period", "value", "ready", "_window", "_sum", "_since_exact")

    def __init__(self, period: int) -> None:
        self.period = period
        self.value = NAN
        self.ready = False
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_exact = 0

    def update(self, value: float) -> float:
        x = float(value)
        if not math.isfinite(x):
            if x != x and not self._window:
                return NAN
            raise ValueError(f"value must be finite, got {x}")
        window = self._window
        if self.ready:
            self._sum += x - window[0]
            window.append(x)
            self._since_exact += 1
            if self._since_exact >= self.period:
                self._sum = math.fsum(window)
                self._since_exact = 0
            self.value = self._sum / self.period
        else:
            window.append(x)
            self._sum += x
            if len(window) == self.period:
                self._sum = math.fsum(window)
                self.ready = True
                self.value = self._sum / self.period
        return self.value
