"""osMarkets: real-time automated trading on osBrain.

One :class:`Brain` subclass trades live, in simulation, in a fast in-process backtest and inside
the portfolio optimiser.
"""

from .brain import Brain
from .brokers.base import Order, OrderEvent
from .data import Bar, BarSeries, BarSeriesID, Tick, Timeframe

__version__ = "0.1.0"

__all__ = [
    "Bar",
    "BarSeries",
    "BarSeriesID",
    "Brain",
    "Order",
    "OrderEvent",
    "Tick",
    "Timeframe",
    "__version__",
]
