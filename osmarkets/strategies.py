"""Example strategies shipped with the package (so ``osmarkets demo`` works on any install).

:class:`SmaCross` is the moving-average crossover used across the docs; ``examples/sma_cross.py``
re-exports it.
"""

from __future__ import annotations

from .brain import Brain
from .data.series import BarSeries


class SmaCross(Brain):
    """A long-only moving-average crossover.

    Buys ``size`` units when the fast simple moving average of the close crosses above the
    slow one, and goes flat when it crosses back below.
    """

    fast = 10
    slow = 30
    size = 1000

    def on_new_bar(self, series: BarSeries) -> None:
        if len(series) <= self.slow:
            return
        close = series.close  # newest first: close[0] is the bar that just completed
        fast_now, slow_now = close[: self.fast].mean(), close[: self.slow].mean()
        fast_before = close[1 : self.fast + 1].mean()
        slow_before = close[1 : self.slow + 1].mean()
        symbol = series.bsid.symbol
        held = self.position(symbol)
        if fast_before <= slow_before and fast_now > slow_now and held == 0:
            self.send_order(side="buy", size=self.size, symbol=symbol)
        elif fast_before >= slow_before and fast_now < slow_now and held > 0:
            self.send_order(side="sell", size=held, symbol=symbol)

    @classmethod
    def signals(cls, data, fast=fast, slow=slow, size=size, **_):
        """Target position after every bar, vectorised: the same rule as ``on_new_bar`` (used by
        ``osmarkets.backtest.vectorized`` to explore many parameter sets at once)."""
        import numpy as np

        from osmarkets.backtest.vectorized import target_from_events

        close = data["close"].to_numpy(dtype=float)
        sums = np.concatenate([[0.0], np.cumsum(close)])
        n = len(close)

        def sma(period):  # sma(p)[i] is the mean of close[i - p + 1 .. i]; NaN before
            out = np.full(n, np.nan)
            out[period - 1 :] = (sums[period:] - sums[:-period]) / period
            return out

        f, s = sma(fast), sma(slow)
        valid = np.arange(n) >= slow  # on_new_bar waits for len(series) > slow
        f_before, s_before = np.roll(f, 1), np.roll(s, 1)
        up = valid & (f_before <= s_before) & (f > s)
        down = valid & (f_before >= s_before) & (f < s)
        return target_from_events(up, down, size)
