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
from .scripts import run_script

__version__ = "0.1.0"

# Names whose modules import osBrain (or the backtest engine) are loaded on first use, so that
# ``import osmarkets`` stays light for data work and the pure core never pulls in osBrain.
# (``osmarkets.backtest`` is the subpackage; its function is ``osmarkets.backtest.backtest``.)
_LAZY = {
    "AgentDiedError": "osmarkets.architecture",
    "AgentUnreachableError": "osmarkets.agents.proxy",
    "Architecture": "osmarkets.architecture",
    "SimulatedArchitecture": "osmarkets.architecture",
    "LiveArchitecture": "osmarkets.architecture",
    "CcxtArchitecture": "osmarkets.architecture",
    "LiveBroker": "osmarkets.brokers.live",
    "OandaArchitecture": "osmarkets.architecture",
    "Result": "osmarkets.backtest",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'osmarkets' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AgentDiedError",
    "AgentUnreachableError",
    "Architecture",
    "CcxtArchitecture",
    "Bar",
    "BarResampler",
    "BarSeries",
    "BarSeriesID",
    "Brain",
    "DataError",
    "LiveArchitecture",
    "LiveBroker",
    "OandaArchitecture",
    "Order",
    "OrderEvent",
    "Result",
    "SimulatedArchitecture",
    "Tick",
    "TickAggregator",
    "Timeframe",
    "__version__",
    "read_bars",
    "read_csv",
    "run_script",
    "resample",
    "ticks_to_bars",
]
