"""A local Binance-spot look-alike exchange for tests and development without an account.

:class:`ExchangeSandbox` serves the part of Binance's spot REST API and market streams that the
unmodified ``ccxt.binance`` and ``ccxt.pro.binance`` use; :meth:`ExchangeSandbox.ccxt_options`
gives their constructor arguments. See ``docs/oanda.rst`` ("The exchange sandbox").
"""

from .engine import BinanceError
from .market import SYMBOLS
from .server import ExchangeSandbox

__all__ = ["BinanceError", "ExchangeSandbox", "SYMBOLS"]
