"""Example strategies shipped with the package (so ``osmarkets demo`` works on any install).

:class:`SmaCross` is the moving-average crossover used across the docs; ``examples/sma_cross.py``
re-exports it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .brain import Brain
from .data.series import BarSeries
from .indicators import SMA, Crossover
from .indicators._common import rolling_mean

if TYPE_CHECKING:
    import pandas as pd

    from .backtest.kernels import CrossTargets


class SmaCross(Brain):
    """A long-only moving-average crossover.

    Buys ``size`` units when the fast simple moving average of the close crosses above the slow
    one, and goes flat when it crosses back below. The averages are the incremental, exact
    :class:`~osmarkets.indicators.SMA` (``math.fsum(window) / period`` bit for bit) and the
    cross is :class:`~osmarkets.indicators.Crossover` (backtrader's rule: a tie is not a
    cross), so it takes backtrader's trades. One set of indicators per bar series.

    ``lot``: the instrument's size step where the venue has one (a crypto exchange: 0.00001
    BTC). An exchange that takes its fee in the asset bought leaves a position a little off the
    step: the strategy sells the whole steps it holds, and counts what is below one step (the
    dust) as flat. 0 (the default): any size.
    """

    fast = 10
    slow = 30
    size = 1000
    lot = 0.0

    def on_new_bar(self, series: BarSeries) -> None:
        try:
            fast, slow, cross = self._lines[series.bsid]
        except (AttributeError, KeyError):
            fast, slow, cross = self._start_lines(series)
        close = float(series.close[0])
        fast_value, slow_value = fast.update(close), slow.update(close)
        self.plot("fast", fast_value)  # drawn by the GUI over the candles, as computed here
        self.plot("slow", slow_value)
        crossed = cross.update(fast_value, slow_value)
        if not crossed:
            return
        symbol = series.bsid.symbol
        held = self.position(symbol)
        if self.lot:  # whole steps only: the dust a fee leaves cannot be sold
            held = round(math.floor(held / self.lot + 1e-9) * self.lot, 12)
        if crossed > 0 and held == 0:
            self.send_order(side="buy", size=self.size, symbol=symbol)
        elif crossed < 0 and held > 0:
            self.send_order(side="sell", size=held, symbol=symbol)

    def _start_lines(self, series: BarSeries) -> tuple[SMA, SMA, Crossover]:
        """The indicators of a series seen for the first time, fed with the bars it already
        holds (a restarted Brain, a series subscribed with history) but the newest."""
        if not hasattr(self, "_lines"):
            self._lines: dict[Any, tuple[SMA, SMA, Crossover]] = {}
        lines = (SMA(int(self.fast)), SMA(int(self.slow)), Crossover())
        fast, slow, cross = lines
        for close in series.close[1:][::-1].tolist():
            cross.update(fast.update(close), slow.update(close))
        self._lines[series.bsid] = lines
        return lines

    @classmethod
    def signals(
        cls, data: pd.DataFrame, fast: int = fast, slow: int = slow, size: float = size, **_: Any
    ) -> np.ndarray:
        """Target position after every bar, vectorised: the same rule as ``on_new_bar`` (used by
        ``osmarkets.backtest.vectorized`` to explore many parameter sets at once)."""
        return np.asarray(cls.signals_batch(data, [{"fast": fast, "slow": slow, "size": size}]))[0]

    @classmethod
    def signals_batch(
        cls, data: pd.DataFrame, param_sets: Sequence[Mapping[str, Any]], engine: str = "numpy"
    ) -> np.ndarray | CrossTargets:
        """The targets of many parameter sets at once (one row each): every distinct period's
        exact average is computed once, and the state only changes where the averages cross
        (the :class:`~osmarkets.indicators.Crossover` rule, on the bars where both are ready).

        ``engine='numba'`` (what :func:`~osmarkets.backtest.vectorized` passes when it runs
        the compiled kernels) returns the same targets unevaluated, as
        :class:`~osmarkets.backtest.kernels.CrossTargets` of the exact averages: the kernel
        evaluates the rule bar by bar (``np.asarray`` gives the matrix)."""
        from osmarkets.backtest.vectorized import steps

        if engine not in ("numpy", "numba"):
            raise ValueError(f"engine: expected 'numpy' or 'numba', got {engine!r}")
        close = data["close"].to_numpy(dtype=float)
        n = len(close)
        fast = np.array([p["fast"] for p in param_sets])
        slow = np.array([p["slow"] for p in param_sets])
        size = np.array([p["size"] for p in param_sets], dtype=float)
        periods = np.unique(np.concatenate([fast, slow]))
        if engine == "numba":
            from osmarkets.backtest.kernels import CrossTargets

            lines, rows = _sma_lines(close, periods, compiled=True)
            return CrossTargets(
                lines, rows[np.searchsorted(periods, fast)], rows[np.searchsorted(periods, slow)],
                size,
            )  # fmt: skip
        table = _sma_table(close, periods)
        f = table[np.searchsorted(periods, fast)]
        s = table[np.searchsorted(periods, slow)]
        # side: 1 where fast > slow, -1 where fast < slow, 0 where equal or not ready
        side = np.greater(f, s).view(np.int8) - np.less(f, s).view(np.int8)
        # starts of runs of one non-zero side: a cross where the side differs from the previous
        # run's (zeros in between are ties: they neither cross nor reset the last sign)
        rows, cols = np.divmod(np.flatnonzero(side[:, 1:] != side[:, :-1]), max(n - 1, 1))
        cols += 1
        starts = np.flatnonzero(side[:, 0])  # a side already set on the first bar (period 1)
        if len(starts):
            order = np.argsort(np.r_[starts * n, rows * n + cols], kind="stable")
            rows = np.r_[starts, rows][order]
            cols = np.r_[np.zeros(len(starts), dtype=cols.dtype), cols][order]
        kind = side[rows, cols]
        rows, cols, kind = rows[kind != 0], cols[kind != 0], kind[kind != 0]
        first = np.r_[True, rows[1:] != rows[:-1]]
        previous = np.r_[0, kind[:-1]]
        previous[first] = 0
        # a run of the same side as the previous non-zero run (after a tie) is not a cross
        keep = ~first & (kind != previous)
        rows, cols, kind = rows[keep], cols[keep], kind[keep]
        # Long-only: crosses alternate; a row's first cross only acts if it is a cross up.
        lead = np.r_[True, rows[1:] != rows[:-1]]
        acts = ~(lead & (kind < 0))
        rows, cols, kind = rows[acts], cols[acts], kind[acts]
        return steps((len(param_sets), n), rows, cols, np.where(kind > 0, size[rows], 0.0))


def _sma_table(close: np.ndarray, periods: Any) -> np.ndarray:
    """One row per period: ``row[t]`` is the exact mean of the last ``period`` closes up to bar
    ``t`` (``math.fsum(window) / period``, as :class:`~osmarkets.indicators.SMA` gives), NaN
    before ``period`` bars."""
    lines, rows = _sma_lines(close, periods)
    return lines[rows]


class _Lines:
    """The exact averages computed so far for one series of closes: ``values[rows[period]]``
    (rows past the last one used are free)."""

    __slots__ = ("values", "rows")

    def __init__(self, values: np.ndarray, rows: dict[int, int]) -> None:
        self.values = values
        self.rows = rows


def _sma_lines(
    close: np.ndarray, periods: Any, compiled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(lines, rows)``: ``lines[rows[i]]`` is the exact average of ``periods[i]`` (as
    :func:`_sma_table`), from a cache kept per series of closes (keyed by their digest), so
    that the chunks of one grid and repeated grids compute each period once; no copy.
    ``compiled``: the missing averages come from numba
    (:func:`~osmarkets.backtest.kernels.exact_means`, the same floats)."""
    periods = np.asarray(periods)
    if periods.size and (periods.dtype.kind not in "iu" or periods.min() < 1):
        raise ValueError(f"SmaCross fast/slow: expected positive integers, got {periods.tolist()}")
    wanted = list(dict.fromkeys(periods.tolist()))
    n = len(close)
    key = hashlib.blake2b(np.ascontiguousarray(close).tobytes(), digest_size=16).digest()
    cache = _AVERAGES.pop(key, None)  # put back last: the dict keeps the most recent last
    room = max(len(wanted), _AVERAGES_VALUES // max(n, 1))  # rows: about 256 MB at most
    if cache is None:
        cache = _Lines(np.empty((len(wanted), n)), {})
    missing = [p for p in wanted if p not in cache.rows]
    if missing:
        need = len(cache.rows) + len(missing)
        if need > room:  # too many: keep only this call's periods
            kept = {p: cache.rows[p] for p in wanted if p in cache.rows}
            values = np.empty((len(wanted), n))
            values[: len(kept)] = cache.values[list(kept.values())]
            cache = _Lines(values, {p: i for i, p in enumerate(kept)})
        elif need > len(cache.values):  # grow, doubling: each average is copied O(1) times
            values = np.empty((min(max(need, 2 * len(cache.values)), room), n))
            values[: len(cache.rows)] = cache.values[: len(cache.rows)]
            cache.values = values
        if compiled:
            from osmarkets.backtest.kernels import exact_means

            start = len(cache.rows)
            cache.values[start : start + len(missing)] = exact_means(close, missing)
            cache.rows.update((period, start + i) for i, period in enumerate(missing))
        else:
            for period in missing:
                cache.rows[period] = row = len(cache.rows)
                cache.values[row] = rolling_mean(close, period)
    _AVERAGES[key] = cache
    total = 0
    for other in reversed(list(_AVERAGES)):  # drop the least recently used beyond the bound
        total += _AVERAGES[other].values.size
        if total > _AVERAGES_VALUES and other != key:
            del _AVERAGES[other]
    return cache.values, np.array([cache.rows[p] for p in periods.tolist()], dtype=np.int64)


# vectorized() calls signals_batch once per chunk of parameter sets: each period's exact
# average of the same closes is computed once and reused (keyed by the closes' digest)
_AVERAGES: dict[bytes, _Lines] = {}
_AVERAGES_VALUES = 1 << 25
