"""OANDA v20 adapter (REST client, streams, parsers, broker) and a local sandbox server.

Pure Python on ``requests``; no osBrain here (the Feeder/Trader agents wrap these objects).
"""

from .broker import OandaBroker, Reconciliation
from .client import OandaClient, oanda_granularity
from .errors import (
    LiveTradingNotConfirmed,
    OandaAuthError,
    OandaConnectionError,
    OandaError,
    OandaNotFound,
    OandaRateLimited,
    OandaServerError,
)
from .instruments import Instrument
from .live import OandaLive
from .parsers import Heartbeat, Price, candles_to_frame, format_time, parse_price, parse_time
from .sandbox import OandaSandbox
from .stream import PriceStream, StreamReader, TransactionStream, iter_lines

__all__ = [
    "Heartbeat",
    "Instrument",
    "LiveTradingNotConfirmed",
    "OandaAuthError",
    "OandaBroker",
    "OandaClient",
    "OandaConnectionError",
    "OandaError",
    "OandaLive",
    "OandaNotFound",
    "OandaRateLimited",
    "OandaSandbox",
    "OandaServerError",
    "Price",
    "PriceStream",
    "Reconciliation",
    "StreamReader",
    "TransactionStream",
    "candles_to_frame",
    "format_time",
    "iter_lines",
    "oanda_granularity",
    "parse_price",
    "parse_time",
]
