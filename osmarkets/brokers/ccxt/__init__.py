"""Crypto exchanges through ccxt. For now: the local Binance-spot sandbox that the ccxt
adapter is tested against."""

from .sandbox import ExchangeSandbox

__all__ = ["ExchangeSandbox"]
