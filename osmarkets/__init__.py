"""osMarkets: real-time automated trading on osBrain.

One :class:`Brain` subclass trades live, in simulation, in a fast in-process backtest and inside
the portfolio optimiser.
"""

from .brain import Brain
from .brokers.base import Order, OrderEvent
from .data import (
    Bar,
    BarResampler,
    BarSeries,
    BarSeriesID,
    DataError,
    Tick,
    TickAggregator,
    Timeframe,
    read_bars,
    read_csv,
    resample,
    ticks_to_bars,
)

__version__ = "0.1.0"

__all__ = [
    "Bar",
    "BarResampler",
    "BarSeries",
    "BarSeriesID",
    "Brain",
    "DataError",
    "Order",
    "OrderEvent",
    "Tick",
    "TickAggregator",
    "Timeframe",
    "__version__",
    "read_bars",
    "read_csv",
    "resample",
    "ticks_to_bars",
]
