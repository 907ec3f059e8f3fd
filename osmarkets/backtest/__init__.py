"""Backtesting: the in-process event-driven engine, the vectorised path and their Result.

``backtest(BrainClass, data, bsid, ...)`` runs the same Brain class that is deployed live;
``vectorized(BrainClass, data, grid)`` runs a Brain's ``signals`` classmethod over many
parameter sets at once. No osBrain here.
"""

from .engine import BacktestError, backtest
from .result import Result

__all__ = ["BacktestError", "Result", "backtest"]
