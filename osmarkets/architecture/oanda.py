"""The deployment on an OANDA v20 account (or the bundled sandbox): :class:`OandaArchitecture`,
a :class:`~osmarkets.architecture.LiveArchitecture` on the OANDA adapter
(:class:`~osmarkets.brokers.oanda.live.OandaLive`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .live import LiveArchitecture

if TYPE_CHECKING:
    from ..brokers.oanda.client import OandaClient
    from ..brokers.oanda.live import OandaLive

__all__ = ["OandaArchitecture"]


class OandaArchitecture(LiveArchitecture):
    """The architecture on an OANDA v20 account (or the bundled sandbox).

    ``account_id``, ``access_token`` (else the ``OANDA_ACCESS_TOKEN`` environment variable),
    ``environment`` (``'practice'`` or ``'live'``), ``rest_url`` / ``stream_url`` (redirect to
    the sandbox). The token and account are checked once here, before any process starts: a
    wrong token raises :class:`~osmarkets.brokers.oanda.OandaAuthError` at once.

    The token never becomes an agent attribute (a proxy can read those): it reaches the
    Feeder and Trader processes through a file readable only by the user, in a private
    directory removed at shutdown (or, if this process is SIGKILLed, by the name server's orphan
    guard, else by the next OandaArchitecture started: the directory records its owner's pid).
    ``OANDA_ACCESS_TOKEN`` is taken out of the environment, its value erased from the memory
    ``/proc/<pid>/environ`` shows, before any agent is forked, even when ``access_token`` is
    given (a later OandaArchitecture of this process still gets it; see
    :func:`osmarkets.secrecy.scrub_environ`); this process and the agents that read the token
    do not dump core (:func:`osmarkets.secrecy.disable_core_dumps`). With
    ``environment='live'`` every order is refused (a 'rejected' event naming the reason) unless
    ``confirm_live=True`` or ``OSMARKETS_CONFIRM_LIVE=1``.

    The Trader reconciles with the account when it starts or restarts (positions, pending
    orders, open trades, the fills it missed, recorded in a state file kept in ``state_dir``
    across runs if you give one) before it accepts orders. ``client_options``: keyword
    arguments of the :class:`~osmarkets.brokers.oanda.OandaClient` (timeouts, retries);
    ``stream_options``: of the :class:`~osmarkets.brokers.oanda.PriceStream` (``backoff``,
    ``silence_timeout``); ``backfill``: the candles fetched after a stream gap (``'M1'``;
    ``'S5'`` if you subscribe to seconds bars); ``poll_interval``: how often the Trader reads
    new account transactions (fills of pending, stop-loss and take-profit orders).

    History on subscribe: the Router downloads, in a worker thread, the completed candles a
    new subscription asks for and it does not have (``history_timeout``: seconds a
    subscription waits for them before it goes on with what exists; see
    :mod:`osmarkets.agents.history`).

    A :class:`~osmarkets.architecture.LiveArchitecture` on an
    :class:`~osmarkets.brokers.oanda.live.OandaLive` adapter (:attr:`broker`).
    """

    # the account keeps the broker's state across a Trader's death (it reconciles on start);
    # a new Feeder backfills the candles it missed; a new Router takes up its journal
    restartable = ("brain", "trader", "feeder", "router")
    broker: OandaLive

    def __init__(
        self,
        logging: bool = True,
        account_id: str | None = None,
        access_token: str | None = None,
        environment: str = "practice",
        rest_url: str | None = None,
        stream_url: str | None = None,
        *,
        confirm_live: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
        client_options: Mapping[str, Any] | None = None,
        stream_options: Mapping[str, Any] | None = None,
        backfill: str = "M1",
        poll_interval: float = 1.0,
        history_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        from ..brokers.oanda.live import OandaLive

        broker = OandaLive(
            account_id, access_token, environment, rest_url, stream_url,
            confirm_live=confirm_live, client_options=client_options,
            stream_options=stream_options, backfill=backfill,
        )  # fmt: skip
        self.account_id: str = broker.account_id
        self.environment = broker.environment
        self.backfill = broker.backfill
        self.stream_options = broker.stream_options
        super().__init__(
            broker, logging=logging, state_dir=state_dir, poll_interval=poll_interval,
            history_timeout=history_timeout, **kwargs,
        )  # fmt: skip

    @property
    def client(self) -> OandaClient:
        """The owner's :class:`~osmarkets.brokers.oanda.OandaClient` (checked at start)."""
        client = self.broker.client
        assert client is not None
        return client

    @property
    def _settings(self) -> dict[str, Any]:
        """The agents' token-free client settings (``token_file``: the token's file)."""
        return self.broker.settings

    def stream(self, symbols: Iterable[str] | None = None, **options: Any) -> Any:
        """Start a Feeder on OANDA's pricing stream of ``symbols``. ``options``: ``name``,
        ``backfill`` and ``stream`` (PriceStream keyword arguments), overriding the
        architecture's."""
        return super().stream(symbols, **options)
