"""The deployment on a live broker: :class:`LiveArchitecture`.

Everything a live deployment does whatever the broker: the secrets out of the environment and
into a private directory, core dumps off, the Trader reconciling with the account at every
(re)start, Feeders on the broker's prices, history on subscribe, restarts and shutdown. What is
broker-specific comes from a :class:`~osmarkets.brokers.live.LiveBroker` adapter
(:class:`~osmarkets.brokers.oanda.live.OandaLive` for
:class:`~osmarkets.architecture.OandaArchitecture`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..brokers.live import LiveBroker, load_object
from ..data.timeframes import BarSeriesID
from .base import Architecture, _url, _visible

__all__ = ["LiveArchitecture"]


def _private_prefix(kind: str) -> str:
    """The prefix of a broker's private directories in the temporary directory."""
    return f"osm-{kind or 'live'}-"


class LiveArchitecture(Architecture):
    """The architecture on a live broker, through its adapter ``broker`` (a
    :class:`~osmarkets.brokers.live.LiveBroker`).

    Before any process starts, the environment variables of the broker's secrets
    (``broker.secret_env``) are taken out of the environment, their values erased from the
    memory ``/proc/<pid>/environ`` shows (see :func:`osmarkets.secrecy.scrub_environ`), this
    process stops dumping core (:func:`osmarkets.secrecy.disable_core_dumps`; the agents
    inherit it), and ``broker.open`` checks the credentials (a wrong one raises at once) and
    writes the secrets the agents need into files readable only by the user, in a private
    directory removed at shutdown (or, if this process is SIGKILLed, by the name server's
    orphan guard, else by the next architecture on the same kind of broker: the directory
    records its owner's pid). No secret ever becomes an agent attribute (a proxy can read
    those).

    The Trader's broker object comes from ``broker.trader_factory``: it reconciles with the
    account when the Trader starts or restarts (positions, pending orders, the fills it
    missed, recorded in a state file ``broker.state_file`` kept in ``state_dir`` across runs
    if you give one) before it accepts orders; ``poll_interval``: how often it reads the
    account's new transactions. :meth:`stream` starts a Feeder (``broker.feeder``) on the
    broker's prices. History on subscribe: the Router downloads, in a worker thread, the
    completed bars a new subscription asks for and it does not have, from
    ``broker.history_source()`` (``history_timeout``: seconds a subscription waits for them
    before it goes on with what exists; see :mod:`osmarkets.agents.history`). The agent
    kinds the Overmind restarts are ``broker.restartable``. ``kwargs``: the
    :class:`~osmarkets.architecture.Architecture`'s options.
    """

    def __init__(
        self,
        broker: LiveBroker,
        *,
        logging: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        history_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        from ..secrecy import disable_core_dumps, environ_secret, remove_stale_dirs, write_owner

        if not isinstance(broker, LiveBroker):
            raise TypeError(f"broker: expected a LiveBroker, got {type(broker).__name__}")
        # Out of the environment (and of the memory /proc/<pid>/environ shows) before any
        # process is forked, even when the adapter was given its secrets: see osmarkets.secrecy.
        environ = {name: environ_secret(name) for name in broker.secret_env}
        disable_core_dumps()  # this process holds the secrets; the forked agents inherit it
        if not poll_interval > 0:
            raise ValueError(f"poll_interval: expected seconds > 0, got {poll_interval!r}")
        if not history_timeout > 0:
            raise ValueError(f"history_timeout: expected seconds > 0, got {history_timeout!r}")
        self.broker = broker
        self.restartable = tuple(broker.restartable)
        prefix = _private_prefix(broker.kind)
        # the private directories of owners that died without shutting down (SIGKILL)
        remove_stale_dirs(tempfile.gettempdir(), prefix)
        self._private: Path | None = Path(tempfile.mkdtemp(prefix=prefix))  # mode 0700
        self._cleanup_dirs = (str(self._private),)  # the name server's orphan guard removes it
        try:
            write_owner(self._private)
            # Fail fast, before any process exists: a wrong secret, account or host.
            broker.open(self._private, environ)
            if state_dir is not None:
                Path(state_dir).mkdir(parents=True, exist_ok=True)
                state_path = Path(state_dir) / broker.state_file
            else:
                state_path = self._private / "trader-state.json"
            factory = broker.trader_factory(str(state_path), float(poll_interval))
            source = broker.history_source()
        except BaseException:
            self._remove_private()
            raise
        try:
            super().__init__(
                logging=logging, broker_factory=factory, state_dir=state_dir, **kwargs
            )
        except BaseException:
            self._remove_private()
            raise
        if source is None:
            return
        try:  # history on subscribe: the Router downloads the bars a subscription lacks
            # kept in the Router's configuration: a restarted Router sets it up again
            timeout = float(history_timeout)
            self._agents["router"].cfg["history_source"] = {"spec": source, "timeout": timeout}
            self["router"].set_history_source(source, timeout)
        except BaseException:
            self.shutdown()
            raise

    def _remove_private(self) -> None:
        private, self._private = getattr(self, "_private", None), None
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        broker = getattr(self, "broker", None)
        if broker is not None:
            broker.close()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every agent, remove the ipc files and the private directory of the broker's
        secrets."""
        super().shutdown(timeout)
        if os.getpid() == getattr(self, "_owner", os.getpid()):
            self._remove_private()

    @_visible
    def stream(self, symbols: Iterable[str] | None = None, **options: Any) -> Any:
        """Start a Feeder on the broker's prices of ``symbols``. ``options``: ``name`` (the
        agent's; ``'feeder'``, then ``'feeder1'``, ...) and the broker's Feeder options (see
        its adapter's ``feeder``), overriding the architecture's."""
        if symbols is None or isinstance(symbols, str):
            raise ValueError("stream symbols: expected a list of instruments")
        checked = [BarSeriesID(s, 1, "Minutes").symbol for s in symbols]
        if not checked:
            raise ValueError("stream symbols: expected at least one instrument")
        name = options.pop("name", None)
        # a ValueError naming an instrument the account cannot trade, or an unknown option
        names = self.broker.symbols(checked)
        cls, cfg = self.broker.feeder(names, options)
        if isinstance(cls, str):
            cls = load_object(cls)
        self._set_base_timeframes(dict.fromkeys(names))  # ticks
        name = name or (
            "feeder" if "feeder" not in self._agents else f"feeder{len(self._feeders)}"
        )
        cfg = dict(cfg, router_in=self["router"].addr("in"))
        # The Feeder starts after where the Router's series stop: a resumed deployment's
        # journaled series, or the history downloaded when Brains subscribed. The bars
        # completed in between (the deployment's downtime, or a slow start that let the
        # first live quote fall a minute after the history's end) are backfilled first.
        points = dict(self["router"].resume_points())
        resume = {s: points[s] for s in names if s in points}
        if resume:
            cfg["resume_after"] = resume
        proxy = self._spawn(name, "feeder", cls, cfg)
        self._feeders.append(name)
        proxy.start_feed()
        return proxy

    @_visible
    def restart_trader(self) -> Any:
        """Replace the Trader process (after a crash, or to test recovery): the new one
        reconnects to every Brain, reconciles with the account (reporting the fills it missed)
        and then accepts orders. Orders Brains send meanwhile wait in their queues (ipc)."""
        if self.transport != "ipc":
            raise RuntimeError("restart_trader: supported with the ipc transport only")
        with self._lock:
            if self._closing:
                raise RuntimeError("restart_trader: the architecture is shutting down")
            handle = self._bury("trader")
            cfg = dict(handle.cfg)
            cfg["brains"] = {
                h.name: _url(h.proxy.addr("events"))
                for h in self._agents.values() if h.kind == "brain"
            }  # fmt: skip
            cfg["brain_auth"] = dict(self._brain_auth)
            return self._spawn("trader", "trader", handle.cls, cfg)
