"""A local OANDA v20 look-alike server for tests, demos and development without an account.

:class:`OandaSandbox` (:mod:`~osmarkets.brokers.oanda.sandbox.server`: the REST and stream
hosts, the account, order matching and fault knobs) serves a market of seeded price paths
(:mod:`~osmarkets.brokers.oanda.sandbox.prices`: the instrument catalogue, :class:`PricePath`,
candle times). Every name is importable from here
(``from osmarkets.brokers.oanda.sandbox import OandaSandbox``).
"""

from __future__ import annotations

from .prices import INSTRUMENT_NAMES, MAX_COUNT, PricePath
from .prices import _hash_uniform as _hash_uniform  # (the ccxt sandbox's market reuses it)
from .server import (
    DEFAULT_ACCOUNT_ID,
    ERR_AUTH,
    ERR_FORBIDDEN,
    ERR_RATE,
    ERR_SERVER,
    HOME_CURRENCY,
    USER_ID,
    OandaSandbox,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "ERR_AUTH",
    "ERR_FORBIDDEN",
    "ERR_RATE",
    "ERR_SERVER",
    "HOME_CURRENCY",
    "INSTRUMENT_NAMES",
    "MAX_COUNT",
    "USER_ID",
    "OandaSandbox",
    "PricePath",
]
