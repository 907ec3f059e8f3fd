"""Incremental O(1)-per-bar indicators, and vectorised versions giving the same numbers.

Each indicator is a class whose ``update(...)`` takes the newest value (or high, low, close)
and returns the current value, NaN until the indicator is ``ready``; ``value``, ``ready`` and
``period`` are attributes. Keep one instance per series in a Brain and feed it in
``on_new_bar``::

    from osmarkets.indicators import EMA

    class Trend(Brain):
        def on_start(self):
            self.ema = EMA(50)

        def on_new_bar(self, series):
            ema = self.ema.update(series.close[0])
            if self.ema.ready and series.close[0] > ema:
                ...

The lower-case functions compute the whole history at once on numpy arrays or pandas Series
(Series in, Series out, same index), for research and for vectorised backtests. Both are pure
Python/numpy/pandas: this package imports no osBrain.
"""

from .extrema import RollingMax, RollingMin, rolling_max, rolling_min
from .moving import EMA, SMA, WMA, Crossover, ema, sma, wma
from .oscillators import MACD, RSI, MACDValue, Stochastic, StochasticValue, macd, rsi, stochastic
from .volatility import ATR, Bands, BollingerBands, atr, bollinger, true_range

__all__ = [
    "ATR",
    "Bands",
    "BollingerBands",
    "EMA",
    "MACD",
    "MACDValue",
    "RSI",
    "RollingMax",
    "RollingMin",
    "SMA",
    "Crossover",
    "Stochastic",
    "StochasticValue",
    "WMA",
    "atr",
    "bollinger",
    "ema",
    "macd",
    "rolling_max",
    "rolling_min",
    "rsi",
    "sma",
    "stochastic",
    "true_range",
    "wma",
]
