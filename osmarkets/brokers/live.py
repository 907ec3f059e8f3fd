"""The seam between a live deployment and a broker adapter: :class:`LiveBroker`.

:class:`~osmarkets.architecture.LiveArchitecture` deploys the agents (Router, Trader, Feeders,
Brains, Logger, Overmind) on any broker through a :class:`LiveBroker`: an object that lives in
the owner's process only (the launcher's, never an agent's) and tells the architecture

- which secrets it holds (:attr:`~LiveBroker.secret_env`: the architecture takes them out of
  the environment, and out of the memory ``/proc/<pid>/environ`` shows, before any process is
  forked; see :func:`osmarkets.secrecy.scrub_environ`);
- how to check the credentials and hand them to the agents (:meth:`~LiveBroker.open`: through
  files readable only by the user in a private directory the architecture creates and removes,
  never through agent attributes: an osBrain proxy can read those);
- what the Trader's broker object is (:meth:`~LiveBroker.trader_factory`), what the Feeder is
  (:meth:`~LiveBroker.feeder`) and where the Router downloads history on subscribe from
  (:meth:`~LiveBroker.history_source`);
- which agents may be restarted when their process dies (:attr:`~LiveBroker.restartable`).

Pure Python, no osBrain: an adapter (``osmarkets.brokers.<name>``) implements it next to its
client, and its agents (the Feeder) stay in ``osmarkets.agents``. The OANDA adapter's is
:class:`osmarkets.brokers.oanda.live.OandaLive`.

Writing an adapter
------------------

Subclass :class:`LiveBroker`; its constructor takes the user's options and validates them
without any network call (a bad option raises :class:`ValueError` naming it); every method
below is called by the architecture, in this order:

1. :meth:`~LiveBroker.open` once, before any agent process exists (raise to refuse: wrong
   credentials, unknown account, unreachable host). It writes the secrets the agents need
   into files of the private directory (:func:`write_secret_file`) and keeps only token-free
   settings (with those files' paths) for the agents' configurations.
2. :meth:`~LiveBroker.trader_factory` once: its result is kept in the Trader's configuration
   and called in the Trader's process at every (re)start. The broker object it returns is
   the Trader's (see :class:`osmarkets.brokers.base.Broker`; a live one also has ``reconcile``
   and ``poll``, as :class:`~osmarkets.brokers.oanda.trading.OandaTradingBroker`): it reads
   its secrets from the files, reconciles with the account before it accepts orders, and keeps
   what it must remember across restarts in the state file the architecture names.
3. :meth:`~LiveBroker.history_source` once (None: a subscription gets only the bars the Router
   builds from the live feed).
4. :meth:`~LiveBroker.symbols` and :meth:`~LiveBroker.feeder` at each ``system.stream(...)``.
5. :meth:`~LiveBroker.close` at shutdown (and when the architecture fails to start).

The agents' configurations travel to their processes (and are readable by anyone holding the
deployment's key): they hold data only (strings, numbers, lists and dicts of them) and never a
secret, nor, apart from the Trader's factory (which the owner builds, and which never comes
from a message), a callable.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["LiveBroker", "feeder_options", "load_object", "write_secret_file"]


class LiveBroker(abc.ABC):
    """What a live deployment needs from a broker adapter, in the owner's process.

    See the module docstring for the order the architecture calls these in. Subclasses set
    :attr:`kind` and may override :attr:`secret_env`, :attr:`restartable` and
    :attr:`state_file`.
    """

    #: The adapter's short name (``'oanda'``, ``'ccxt'``): the prefix of the private
    #: directory (``osm-<kind>-*`` in the temporary directory) and, by convention, the kind of
    #: its history source (see :func:`osmarkets.agents.history.register_history_source`).
    kind: ClassVar[str] = ""

    #: Environment variables holding this broker's secrets (``('OANDA_ACCESS_TOKEN',)``;
    #: an exchange: its API key and secret). The architecture takes each out of the
    #: environment, its value erased from the memory ``/proc/<pid>/environ`` shows, before any
    #: process is forked, and hands the values to :meth:`open` (a later architecture of the
    #: same process gets them too: :func:`osmarkets.secrecy.environ_secret`).
    secret_env: ClassVar[tuple[str, ...]] = ()

    #: Agent kinds the Overmind restarts when their process dies (see
    #: :attr:`osmarkets.architecture.Architecture.restartable`): the Trader only if the
    #: account keeps the broker's state and the Trader reconciles with it on start; the
    #: Feeder only if a new one can resume where the dead one stopped (it gets
    #: ``resume_after``, see :meth:`feeder`).
    restartable: ClassVar[tuple[str, ...]] = ("brain", "trader", "feeder", "router")

    @property
    def state_file(self) -> str:
        """The name of the Trader's state file (what it must remember across restarts: the
        last transaction it handled, orders whose answer was lost), kept in the deployment's
        ``state_dir`` across runs (in the private directory without one). One per account,
        so that deployments on different accounts can share a ``state_dir``:
        ``'trader-<account>.json'``."""
        return f"trader-{self.kind or 'live'}.json"

    @abc.abstractmethod
    def open(self, private_dir: Path, environ: Mapping[str, str | None]) -> None:
        """Check the credentials against the broker and get ready, before any agent process
        exists; raise to refuse (an authentication error naming the problem, never the
        secret; ``ValueError`` for a missing secret).

        ``private_dir``: a new directory readable only by the user (mode 0700), removed at
        shutdown (or, if the owner is SIGKILLed, by the name server's orphan guard, else by
        the next architecture started): write the secrets the agents need there
        (:func:`write_secret_file`). ``environ``: the values of :attr:`secret_env` taken out
        of the environment (None where unset); an explicit argument of the adapter's
        constructor wins over them."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release what :meth:`open` acquired (sessions, connections). Idempotent; called at
        shutdown and when the architecture fails to start."""

    @abc.abstractmethod
    def symbols(self, symbols: Sequence[str]) -> list[str]:
        """The broker's names of ``symbols`` (``'EUR_USD'``, ``'BTC/USDT'``), in order;
        :class:`ValueError` naming one the account cannot trade."""

    @abc.abstractmethod
    def trader_factory(self, state_path: str, poll_interval: float) -> Callable[[], Any]:
        """The Trader's broker factory: a picklable callable (a module-level function, or a
        :func:`functools.partial` of one over token-free settings) that returns the broker
        object in the Trader's process, at every (re)start. ``state_path``: its state file;
        ``poll_interval``: seconds between its reads of the account's new transactions."""

    @abc.abstractmethod
    def feeder(
        self, symbols: Sequence[str], options: Mapping[str, Any]
    ) -> tuple[type | str, dict[str, Any]]:
        """The Feeder of ``symbols`` (names :meth:`symbols` returned): its agent class (or
        the class's import path, ``'package.module:Class'``, so that the adapter need not
        import osBrain) and its configuration. ``options``: ``system.stream``'s keyword
        arguments other than ``name``; raise :class:`ValueError` naming any you do not know.

        The agent (an :class:`osmarkets.agents.base.OsmAgent`) has ``start_feed()``,
        ``stop_feed()`` and a ``feed_error`` attribute, and pushes quotes to the Router. The
        architecture adds to its configuration (``osm_cfg``): ``router_in`` (the Router's
        PULL address) and, on a start after a downtime or a restart, ``resume_after``
        (symbol -> the time, ns since the epoch, after which the Router has no data: the
        Feeder backfills from there before it streams)."""

    def history_source(self) -> dict[str, Any] | None:
        """Where the Router downloads the completed bars a subscription asks for and it does
        not have: ``{'kind': ..., 'settings': {...}}`` (token-free data), built in the
        Router's process by the factory registered for ``kind``
        (:func:`osmarkets.agents.history.register_history_source`); None: no history on
        subscribe."""
        return None


def feeder_options(
    options: Mapping[str, Any], backfill: str, stream: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """``system.stream``'s Feeder options (``backfill``, ``stream``; a :class:`ValueError`
    names any other) over the adapter's defaults: the backfill's granularity (intraday) and
    the stream's keyword arguments."""
    from ..data.timeframes import Timeframe

    unknown = set(options) - {"backfill", "stream"}
    if unknown:
        raise ValueError(f"stream: unknown option(s) {', '.join(sorted(unknown))}")
    chosen = options.get("backfill") or backfill
    if not Timeframe.parse(chosen).is_intraday:
        raise ValueError(f"backfill: expected an intraday granularity, got {chosen!r}")
    return chosen, dict(stream, **dict(options.get("stream") or {}))


def write_secret_file(directory: str | os.PathLike[str], name: str, secret: str) -> str:
    """Write ``secret`` to a new file ``name`` in ``directory`` (an adapter's private
    directory), readable only by the user (mode 0600); its path. Refuses to overwrite."""
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"secret file name: expected a plain file name, got {name!r}")
    path = os.path.join(os.fspath(directory), name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    return path


def load_object(path: str) -> Any:
    """The object an import path ``'package.module:name'`` names (how a Feeder class or a
    history source factory is given as data)."""
    import importlib

    module, sep, name = str(path).partition(":")
    if not (module and sep and name):
        raise ValueError(f"import path: expected 'package.module:name', got {path!r}")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target
