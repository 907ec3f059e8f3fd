"""A long-only moving-average crossover: the example Brain used across the docs.

Buys ``size`` units when the fast simple moving average of the close crosses above the slow
one, and goes flat when it crosses back below. The same class runs in a backtest, in the
simulated architecture and live.

The class lives in :mod:`osmarkets.strategies` (so that ``osmarkets demo`` can use it from an
installed package, which cannot import ``examples/``); read it there.
"""

from osmarkets.strategies import SmaCross

__all__ = ["SmaCross"]
