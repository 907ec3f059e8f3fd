"""The deployment on a crypto exchange through ccxt: :class:`CcxtArchitecture`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .live import LiveArchitecture

if TYPE_CHECKING:
    from ..brokers.ccxt.live import CcxtLive

__all__ = ["CcxtArchitecture"]


class CcxtArchitecture(LiveArchitecture):
    """The architecture on a crypto exchange's spot account through ccxt (or the bundled
    :class:`~osmarkets.brokers.ccxt.ExchangeSandbox`).

    ``exchange``: ccxt's id (``'binance'``); ``api_key`` / ``secret`` (None: the
    ``CCXT_API_KEY`` / ``CCXT_SECRET`` environment variables, taken out of the environment
    before any process starts); ``sandbox``: the exchange's own testnet; ``options``: ccxt
    constructor arguments (the local sandbox's
    :meth:`~osmarkets.brokers.ccxt.ExchangeSandbox.ccxt_options` without its credentials point
    ccxt at it); ``currency``: the account currency, the quote of every symbol traded;
    ``stream_options``: :class:`~osmarkets.brokers.ccxt.prices.CcxtPriceStream` keyword
    arguments (``method='poll'`` reads quotes over REST); ``backfill``: the candles a Feeder
    fetches after a gap; ``order_deadline``: seconds an order whose answer was lost is looked
    up before it is left unresolved.

    The adapter is :class:`~osmarkets.brokers.ccxt.live.CcxtLive` (:attr:`broker`): the
    Trader runs :class:`~osmarkets.brokers.ccxt.broker.CcxtTradingBroker`, the Feeders
    :class:`~osmarkets.agents.ccxt.CcxtFeederAgent`, and a subscription's history comes from
    ``fetch_ohlcv``. Everything else is :class:`LiveArchitecture`'s (``state_dir``,
    ``poll_interval``, ``history_timeout``, the :class:`~osmarkets.architecture.Architecture`
    options).
    """

    broker: CcxtLive

    def __init__(
        self,
        exchange: str = "binance",
        api_key: str | None = None,
        secret: str | None = None,
        sandbox: bool = False,
        options: Mapping[str, Any] | None = None,
        *,
        logging: bool = True,
        currency: str = "USDT",
        state_dir: str | os.PathLike[str] | None = None,
        stream_options: Mapping[str, Any] | None = None,
        backfill: str = "M1",
        order_deadline: float = 10.0,
        poll_interval: float = 1.0,
        history_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        from ..brokers.ccxt.live import CcxtLive

        broker = CcxtLive(
            exchange, api_key, secret, sandbox, options, currency=currency,
            stream_options=stream_options, backfill=backfill, order_deadline=order_deadline,
        )  # fmt: skip
        super().__init__(
            broker, logging=logging, state_dir=state_dir, poll_interval=poll_interval,
            history_timeout=history_timeout, **kwargs,
        )  # fmt: skip
