"""The OANDA adapter's side of a live deployment: :class:`OandaLive`, a
:class:`~osmarkets.brokers.live.LiveBroker` (what
:class:`~osmarkets.architecture.OandaArchitecture` deploys on)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...data.timeframes import Timeframe
from ..live import LiveBroker, feeder_options
from .client import OandaClient
from .trading import TOKEN_ENV, write_token_file

__all__ = ["OandaLive"]


class OandaLive(LiveBroker):
    """An OANDA v20 account (or the bundled sandbox) as a live deployment's broker.

    ``account_id``, ``access_token`` (None: the ``OANDA_ACCESS_TOKEN`` environment variable),
    ``environment`` (``'practice'`` or ``'live'``), ``rest_url`` / ``stream_url``,
    ``confirm_live``, ``client_options`` (:class:`~osmarkets.brokers.oanda.OandaClient`
    keyword arguments), ``stream_options`` (:class:`~osmarkets.brokers.oanda.PriceStream`
    keyword arguments) and ``backfill`` (the candles a Feeder fetches after a stream gap): see
    :class:`~osmarkets.architecture.OandaArchitecture`.

    :meth:`open` checks the token and account (``account_summary``: a wrong token raises
    :class:`~osmarkets.brokers.oanda.OandaAuthError` at once) and writes the token to
    ``oanda-token`` in the private directory; the agents get :attr:`settings` (token-free:
    the file's path) and make their own clients
    (:func:`~osmarkets.brokers.oanda.trading.client_from_settings`). The Trader's broker is
    :class:`~osmarkets.brokers.oanda.trading.OandaTradingBroker`, the Feeder
    :class:`~osmarkets.agents.oanda.OandaFeederAgent` (named by its import path: this module
    imports no osBrain), the history source
    :class:`~osmarkets.agents.history.OandaHistorySource`.
    """

    kind: ClassVar[str] = "oanda"
    secret_env: ClassVar[tuple[str, ...]] = (TOKEN_ENV,)
    # the account keeps the broker's state across a Trader's death (it reconciles on start);
    # a new Feeder backfills the candles it missed; a new Router takes up its journal
    restartable: ClassVar[tuple[str, ...]] = ("brain", "trader", "feeder", "router")

    def __init__(
        self,
        account_id: str | None = None,
        access_token: str | None = None,
        environment: str = "practice",
        rest_url: str | None = None,
        stream_url: str | None = None,
        *,
        confirm_live: bool = False,
        client_options: Mapping[str, Any] | None = None,
        stream_options: Mapping[str, Any] | None = None,
        backfill: str = "M1",
    ) -> None:
        if not account_id or not isinstance(account_id, str):
            raise ValueError(f"account_id: expected an OANDA account id, got {account_id!r}")
        if environment not in ("practice", "live"):
            raise ValueError(f"environment: expected 'practice' or 'live', got {environment!r}")
        if not Timeframe.parse(backfill).is_intraday:
            raise ValueError(f"backfill: expected an intraday granularity, got {backfill!r}")
        self.account_id = account_id
        self.environment = environment
        self.rest_url = rest_url
        self.stream_url = stream_url
        self.confirm_live = bool(confirm_live)
        self.client_options = dict(client_options or {})
        self.stream_options = dict(stream_options or {})
        self.backfill = backfill
        self._token = access_token  # until open(): then only the client and the file have it
        #: the owner's client (checked in :meth:`open`); None before
        self.client: OandaClient | None = None
        #: token-free client settings every agent makes its own client from (after open())
        self.settings: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"OandaLive(account_id={self.account_id!r}, environment={self.environment!r})"

    @property
    def state_file(self) -> str:
        return f"trader-{self.account_id}.json"

    def open(self, private_dir: Path, environ: Mapping[str, str | None]) -> None:
        token = self._token if self._token is not None else environ.get(TOKEN_ENV)
        self._token = None
        if not token or not isinstance(token, str):
            raise ValueError(f"access_token: missing (pass it or set {TOKEN_ENV})")
        # Fail fast, before any process exists: a wrong token, account or host.
        client = OandaClient(
            token, self.account_id, self.environment, rest_url=self.rest_url,
            stream_url=self.stream_url, confirm_live=self.confirm_live, **self.client_options,
        )  # fmt: skip
        self.client = client
        client.account_summary()
        token_file = write_token_file(private_dir, token)
        self.settings = {
            "account_id": self.account_id, "environment": self.environment,
            "rest_url": self.rest_url, "stream_url": self.stream_url,
            "confirm_live": self.confirm_live, "token_file": token_file,
            "options": dict(self.client_options),
        }  # fmt: skip

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()

    def symbols(self, symbols: Sequence[str]) -> list[str]:
        names = [str(symbol) for symbol in symbols]
        for name in names:
            self._client().instrument(name)  # ValueError naming an untradeable instrument
        return names

    def trader_factory(self, state_path: str, poll_interval: float) -> Callable[[], Any]:
        from . import trading  # looked up now: tests replace trading.make_trading_broker

        settings = dict(self.settings, state_path=str(state_path),
                        poll_interval=float(poll_interval))  # fmt: skip
        return functools.partial(trading.make_trading_broker, settings)

    def feeder(
        self, symbols: Sequence[str], options: Mapping[str, Any]
    ) -> tuple[type | str, dict[str, Any]]:
        backfill, stream = feeder_options(options, self.backfill, self.stream_options)
        cfg = {"instruments": list(symbols), "oanda": dict(self.settings),
               "backfill": backfill, "stream": stream}  # fmt: skip
        return "osmarkets.agents.oanda:OandaFeederAgent", cfg

    def history_source(self) -> dict[str, Any] | None:
        return {"kind": "oanda", "settings": dict(self.settings)}

    def _client(self) -> OandaClient:
        if self.client is None:
            raise RuntimeError("OandaLive: open() first")
        return self.client
