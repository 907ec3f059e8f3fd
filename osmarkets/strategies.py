"""Example strategies shipped with the package (so ``osmarkets demo`` works on any install).

:class:`SmaCross` is the moving-average crossover used across the docs; ``examples/sma_cross.py``
re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .brain import Brain
from .data.series import BarSeries

if TYPE_CHECKING:
    import pandas as pd


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
    def signals(
        cls, data: pd.DataFrame, fast: int = fast, slow: int = slow, size: float = size, **_: Any
    ) -> np.ndarray:
        """Target position after every bar, vectorised: the same rule as ``on_new_bar`` (used by
        ``osmarkets.backtest.vectorized`` to explore many parameter sets at once)."""
        from osmarkets.backtest.vectorized import target_from_events

        close = data["close"].to_numpy(dtype=float)
        f, s = _sma_table(close, [fast, slow])
        valid = np.arange(len(close)) >= slow  # on_new_bar waits for len(series) > slow
        f_before, s_before = np.roll(f, 1), np.roll(s, 1)
        up = valid & (f_before <= s_before) & (f > s)
        down = valid & (f_before >= s_before) & (f < s)
        return target_from_events(up, down, size)

    @classmethod
    def signals_batch(
        cls, data: pd.DataFrame, param_sets: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        """The targets of many parameter sets at once (one row each): every distinct period's
        average is computed once, and the state only changes where the averages cross."""
        from osmarkets.backtest.vectorized import steps

        close = data["close"].to_numpy(dtype=float)
        n = len(close)
        fast = np.array([p["fast"] for p in param_sets])
        slow = np.array([p["slow"] for p in param_sets])
        size = np.array([p["size"] for p in param_sets], dtype=float)
        periods = np.unique(np.concatenate([fast, slow]))
        table = _sma_table(close, periods)
        f = table[np.searchsorted(periods, fast)]
        s = table[np.searchsorted(periods, slow)]
        # side: 1 where fast > slow, -1 where fast < slow, 0 where equal
        side = np.greater(f, s).view(np.int8) - np.less(f, s).view(np.int8)
        rows, cols = np.divmod(np.flatnonzero(side[:, 1:] != side[:, :-1]), max(n - 1, 1))
        cols += 1
        kind = side[rows, cols]
        keep = (cols >= slow[rows]) & (kind != 0)  # a cross up (1) or down (-1) that is acted on
        rows, cols, kind = rows[keep], cols[keep], kind[keep]
        # Long-only: a cross up buys only when flat, a cross down sells only when long, so the
        # position changes at a cross of the other kind than the row's previous one (or, for
        # the row's first cross, at a cross up).
        previous = np.r_[-1, kind[:-1]]
        previous[np.r_[True, rows[1:] != rows[:-1]]] = -1
        acts = kind != previous
        rows, cols, kind = rows[acts], cols[acts], kind[acts]
        return steps((len(param_sets), n), rows, cols, np.where(kind > 0, size[rows], 0.0))


def _sma_table(close: np.ndarray, periods: Any) -> np.ndarray:
    """One row per period: ``row[t]`` is the mean of the last ``period`` closes up to bar ``t``
    (of all of them before bar ``period - 1``, as ``series.close[:period].mean()`` gives while
    the series is shorter), computed from one cumulative sum, exact for prices on a tick grid.
    (The event-driven series keeps ``history`` bars, 1000 by default: longer periods differ.)"""
    periods = np.asarray(periods)
    if periods.size and (periods.dtype.kind not in "iu" or periods.min() < 1):
        raise ValueError(f"SmaCross fast/slow: expected positive integers, got {periods.tolist()}")
    n = len(close)
    sums = np.concatenate([[0.0], np.cumsum(close)])
    count = np.arange(1, n + 1)
    table = np.empty((len(periods), n))
    for row, period in enumerate(periods.tolist()):
        head = min(period - 1, n)
        table[row, :head] = sums[1 : head + 1] / count[:head]
        if period <= n:
            table[row, head:] = (sums[period:] - sums[: n + 1 - period]) / period
    return table
