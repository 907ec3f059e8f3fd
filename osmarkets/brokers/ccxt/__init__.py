"""Crypto exchanges through ccxt: the adapter (:mod:`~osmarkets.brokers.ccxt.broker`, the
Trader's broker; :mod:`~osmarkets.brokers.ccxt.prices`, quotes, candles and history;
:mod:`~osmarkets.brokers.ccxt.live`, the live deployment's side) and the local Binance-spot
sandbox it is tested against (:class:`ExchangeSandbox`). ccxt is imported only when an
exchange object is made (the ``crypto`` extra)."""

from .sandbox import SYMBOLS, ExchangeSandbox

__all__ = ["ExchangeSandbox", "SYMBOLS"]
