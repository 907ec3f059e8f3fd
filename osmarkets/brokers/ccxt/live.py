"""The ccxt adapter's side of a live deployment: :class:`CcxtLive`, a
:class:`~osmarkets.brokers.live.LiveBroker` (what
:class:`~osmarkets.architecture.CcxtArchitecture` deploys on)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...data.timeframes import Timeframe
from ..live import LiveBroker, feeder_options
from .client import (
    CREDENTIAL_FIELDS,
    KEY_ENV,
    SECRET_ENV,
    describe,
    exchange_from_settings,
    write_secret_files,
)

__all__ = ["CcxtLive"]


class CcxtLive(LiveBroker):
    """A crypto exchange's spot account through ccxt as a live deployment's broker.

    ``exchange``: ccxt's id (``'binance'``); ``api_key`` / ``secret`` (None: the
    ``CCXT_API_KEY`` / ``CCXT_SECRET`` environment variables); ``sandbox``: the exchange's own
    testnet (ccxt's ``set_sandbox_mode``); ``options``: ccxt constructor arguments (``urls``,
    ``options``, ``timeout``: e.g. :meth:`~osmarkets.brokers.ccxt.ExchangeSandbox.ccxt_options`
    without its credentials); ``currency``: the account currency, the quote of the symbols
    traded (``'USDT'``); ``stream_options``: :class:`~osmarkets.brokers.ccxt.prices.
    CcxtPriceStream` keyword arguments; ``backfill``: the candles a Feeder fetches after a gap;
    ``order_deadline``: seconds an order whose answer was lost is looked up.

    :meth:`open` loads the markets and, with credentials, reads the balance (a wrong key raises
    ccxt's ``AuthenticationError`` at once), then writes the key and secret to files of the
    private directory; the agents get :attr:`settings` (credential-free: the files' paths).
    """

    kind: ClassVar[str] = "ccxt"
    secret_env: ClassVar[tuple[str, ...]] = (KEY_ENV, SECRET_ENV)
    # the exchange keeps the orders and balances across a Trader's death (it reconciles on
    # start); a new Feeder backfills the candles it missed; a new Router takes up its journal
    restartable: ClassVar[tuple[str, ...]] = ("brain", "trader", "feeder", "router")

    def __init__(
        self,
        exchange: str = "binance",
        api_key: str | None = None,
        secret: str | None = None,
        sandbox: bool = False,
        options: Mapping[str, Any] | None = None,
        *,
        currency: str = "USDT",
        stream_options: Mapping[str, Any] | None = None,
        backfill: str = "M1",
        order_deadline: float = 10.0,
    ) -> None:
        import ccxt

        if not isinstance(exchange, str) or exchange not in ccxt.exchanges:
            raise ValueError(f"exchange: expected a ccxt exchange id, got {exchange!r}")
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"options: expected a mapping of ccxt options, got {options!r}")
        credentials = sorted(set(CREDENTIAL_FIELDS) & set(options or {}))
        if credentials:
            raise ValueError(
                f"options: {', '.join(credentials)} are credentials: pass api_key= and "
                "secret= (exchanges that need more credentials are not supported yet)"
            )
        if not isinstance(currency, str) or not currency:
            raise ValueError(f"currency: expected an asset code, got {currency!r}")
        if not Timeframe.parse(backfill).is_intraday:
            raise ValueError(f"backfill: expected an intraday granularity, got {backfill!r}")
        if not order_deadline > 0:
            raise ValueError(f"order_deadline: expected seconds > 0, got {order_deadline!r}")
        self.exchange = exchange
        self.sandbox = bool(sandbox)
        self.options = dict(options or {})
        self.currency = currency
        self.stream_options = dict(stream_options or {})
        self.backfill = backfill
        self.order_deadline = float(order_deadline)
        self._credentials = (api_key, secret)  # until open(): then only the files have them
        self._account = "public"
        self._client: Any = None
        #: credential-free settings every agent makes its own exchange object from
        self.settings: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"CcxtLive(exchange={self.exchange!r}, sandbox={self.sandbox})"

    @property
    def state_file(self) -> str:
        return f"trader-{self.exchange}-{self._account}.json"

    def open(self, private_dir: Path, environ: Mapping[str, str | None]) -> None:
        import ccxt

        key, secret = self._credentials
        self._credentials = (None, None)
        key = key if key is not None else environ.get(KEY_ENV)
        secret = secret if secret is not None else environ.get(SECRET_ENV)
        if bool(key) != bool(secret):
            raise ValueError("api_key, secret: give both (or neither, for prices only)")
        base = {"exchange": self.exchange, "sandbox": self.sandbox, "options": self.options}
        files = write_secret_files(private_dir, key, secret) if key and secret else {}
        self.settings = dict(base, **files, currency=self.currency)
        client = exchange_from_settings(self.settings)
        self._client = client
        try:
            client.load_markets()
            if key:
                client.fetch_balance()  # fail fast: a wrong key or secret
        except ccxt.BaseError as exc:
            text = str(exc)
            for value in (key, secret):  # an HTTP error may echo the request
                if value:
                    text = text.replace(value, "***")
            raise type(exc)(f"{describe(client)}: {text[:300]}") from None
        if key:  # one state file per account; the key itself never reaches a file name
            self._account = hashlib.sha256(key.encode()).hexdigest()[:12]

    def close(self) -> None:
        self._client = None

    def symbols(self, symbols: Sequence[str]) -> list[str]:
        if self._client is None:
            raise RuntimeError("CcxtLive: open() first")
        names = [str(symbol) for symbol in symbols]
        for name in names:
            market = self._client.markets.get(name)
            if market is None:
                raise ValueError(f"stream symbols: {name!r} is not a market of {self.exchange}")
            if market.get("quote") != self.currency:
                raise ValueError(
                    f"stream symbols: {name!r} is not quoted in the account currency "
                    f"{self.currency}"
                )
        return names

    def step(self, symbol: str) -> float:
        """The amount step of ``symbol`` (its sizes are multiples of it), from the markets read
        in :meth:`open`."""
        if self._client is None:
            raise RuntimeError("CcxtLive: open() first")
        market = self._client.markets.get(symbol)
        if market is None:
            raise ValueError(f"symbol: {symbol!r} is not a market of {self.exchange}")
        precision = (market.get("precision") or {}).get("amount")
        return float(precision) if precision else 0.0

    def trader_factory(self, state_path: str, poll_interval: float) -> Callable[[], Any]:
        from . import broker

        settings = dict(self.settings, state_path=str(state_path),
                        poll_interval=float(poll_interval),
                        order_deadline=self.order_deadline)  # fmt: skip
        return functools.partial(broker.make_ccxt_broker, settings)

    def feeder(
        self, symbols: Sequence[str], options: Mapping[str, Any]
    ) -> tuple[type | str, dict[str, Any]]:
        backfill, stream = feeder_options(options, self.backfill, self.stream_options)
        cfg = {"instruments": list(symbols), "ccxt": self._public(), "backfill": backfill,
               "stream": stream}  # fmt: skip
        return "osmarkets.agents.ccxt:CcxtFeederAgent", cfg

    def history_source(self) -> dict[str, Any] | None:
        return {"kind": "ccxt", "settings": self._public()}

    def _public(self) -> dict[str, Any]:
        """The settings of the agents that read public data only (Feeders, the Router's
        history): without the credentials' files, which their processes then never read."""
        return {k: v for k, v in self.settings.items() if k not in ("key_file", "secret_file")}
