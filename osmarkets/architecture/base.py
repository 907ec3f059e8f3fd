"""The deployment every architecture is: an :class:`Architecture` owns the name server and
every agent process.

``Architecture`` starts osBrain's name server, a Router and a Trader (and a Logger when asked),
adds Brains and Feeders on request, supervises them all with an
:class:`~osmarkets.agents.Overmind`, and shuts every process down on normal exit, on an
exception, on SIGINT/SIGTERM and at interpreter exit: no orphan process, no stale ipc file
(every ipc socket lives in one directory per architecture, removed at shutdown even when an
agent was killed and could not clean up after itself).

:class:`~osmarkets.architecture.SimulatedArchitecture` (:mod:`osmarkets.architecture.simulated`)
is the same deployment on the embedded simulated broker, replaying historical data (or seeded
synthetic quotes) in lock-step, so that its fills match the in-process backtest's;
:class:`~osmarkets.architecture.LiveArchitecture` (:mod:`osmarkets.architecture.live`) is the
deployment on a live broker adapter, specialised by
:class:`~osmarkets.architecture.OandaArchitecture` (:mod:`osmarkets.architecture.oanda`).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime
import functools
import multiprocessing.util  # noqa: F401 (see Architecture.__init__: atexit order)
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import osbrain
import pandas as pd
import Pyro4.errors
from osbrain.address import SocketAddress
from osbrain.nameserver import NameServerProcess

from .. import feeds, registry
from ..agents import (
    FeederAgent,
    LoggerAgent,
    Overmind,
    RiskLimits,
    RouterAgent,
    TraderAgent,
    make_brain_class,
)
from ..agents.auth import DeploymentKeys, install_pyro_key, pyro_key
from ..agents.base import OsmAgentProcess, start_nameserver
from ..agents.informer import InformerAgent
from ..agents.proxy import CALL_TIMEOUT, AgentProxy, AgentUnreachableError
from ..brain import Brain
from ..data.timeframes import BarSeriesID
from ..incidents import Incidents
from ..journal import Journal, JournalKeeper
from ..logfiles import LEVELS as LOG_LEVELS
from ..logfiles import new_log_path, remove_keeping_logs
from ..notify import Rules
from ..operator import OPERATOR, Controls

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,40}$")
_RESERVED = {"router", "trader", "logger", "feeder", "overmind", "informer", OPERATOR}
#: kinds the Overmind restarts in every architecture: they hold nothing a restart loses
_ALWAYS_RESTARTED = ("informer",)
#: the order agents are stopped in (the Informer after the Trader: it may tell its last fills)
_SHUTDOWN_ORDER = ("feeder", "brain", "trader", "informer", "router", "logger")
_INCIDENTS_LOCK = threading.Lock()  # creates each architecture's incident record once
# what a proxy call to an agent that died raises
_CONNECTION_ERRORS = (Pyro4.errors.CommunicationError, Pyro4.errors.NamingError, OSError)


class AgentDiedError(RuntimeError):
    """An agent of the architecture died and cannot be restarted (its kind is not restartable,
    or its restart failed): raised by the owner's next call of the architecture."""

    def __init__(self, message: str, agent: str = "", kind: str = "", pid: int | None = None,
                 exitcode: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.agent = agent
        self.kind = kind
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> Any:
        return type(self), (str(self), self.agent, self.kind, self.pid, self.exitcode)


_A = TypeVar("_A", bound="Architecture")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _visible(method: Callable[Concatenate[_A, _P], _R]) -> Callable[Concatenate[_A, _P], _R]:
    """A public call of the architecture: it raises :class:`AgentDiedError` if an agent died
    and cannot be restarted, before it starts and when a proxy call in it fails because an
    agent died (not a Pyro connection error that names nobody). The Overmind's thread (it
    restarts agents through these methods) is left alone."""

    @functools.wraps(method)
    def call(self: _A, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if threading.current_thread() is self.overmind:
            return method(self, *args, **kwargs)
        self._raise_if_dead()
        try:
            return method(self, *args, **kwargs)
        except KeyboardInterrupt:
            self._interrupt_delivered = True  # the launcher has it: no second delivery
            raise
        except _CONNECTION_ERRORS as exc:
            # the process may be reaped a moment after its sockets closed: wait a little
            self._raise_if_dead(grace=3.0, cause=exc)
            raise

    return call


class _Handle:
    __slots__ = ("name", "kind", "cls", "cfg", "process", "proxy")

    def __init__(self, name: str, kind: str, cls: type, cfg: dict[str, Any]) -> None:
        self.name = name
        self.kind = kind
        self.cls = cls
        self.cfg = cfg
        self.process: Any = None
        self.proxy: Any = None  # None while the process starts (see Overmind.probe)


def _wait(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


class Architecture:
    """The agents of one deployment, and their name server.

    ``transport``: ``'ipc'`` (default on POSIX) or ``'tcp'``; ``host``: the address every
    socket and the name server bind to (127.0.0.1 unless you name another). ``logging`` (default
    True; False: no Logger, agents print as osBrain does): start a Logger agent every agent
    reports to; it writes every line to ``log_path`` (by default a new
    file per run in ``<state_dir>/logs/``, kept when a temporary state directory is removed;
    :attr:`log_path`, printed at start) and echoes lines of ``log_console`` (``'WARNING'``:
    warnings and errors) or more serious to the launcher's terminal, one line each with the
    agent's name (None: nothing on the terminal). ``broker_factory``: a callable returning the
    broker object the Trader uses (``submit``, ``cancel``, ``on_bar``, ``on_tick``, ``positions``,
    ``equity``); without one the Trader rejects orders. ``risk``: the Trader's
    :class:`~osmarkets.agents.RiskLimits` as a mapping. ``supervise``: run the Overmind (and
    restart Brains that die). ``state_dir``: where the deployment's journal is kept
    (``journal.sqlite``; a private temporary directory if None, removed at shutdown but for its
    ``logs``): running a
    launcher again on the same ``state_dir`` resumes the deployment (see the docs page "What
    survives a crash"); ``durability``: ``'process'`` (survives any process's death),
    ``'power'`` (also a power cut: an fsync per commit) or ``'none'`` (no journal in the
    agents, to measure its cost). Use it as a context manager, or call :meth:`shutdown`.
    """

    lockstep = False
    #: longest run of lock-step steps one Brain acknowledgement may cover (see
    #: :mod:`osmarkets.agents.router`); 1: a round trip through the Trader and the Brains per
    #: step. Private: benchmarks set 1 to measure the step-at-a-time lock-step.
    _lockstep_run = 1
    #: Agent kinds the Overmind restarts when their process dies or their loop stops. A
    #: Trader is restarted only where the broker's state survives it (OANDA: the account),
    #: a Feeder only where a new one can resume where the dead one stopped (OANDA's stream
    #: backfill). The Router is restarted in live architectures: it journals every bar series
    #: (sequence numbers, subscribers, history) before it publishes, so its successor takes
    #: them up, on the same ipc files or tcp ports, and every agent's sockets reconnect to it
    #: by themselves (see :meth:`_restart_router`). A lock-step simulation is never resumed
    #: (its step lives in the Router): there a dead Router stops the run with an error.
    restartable: tuple[str, ...] = ("brain", "router")
    #: Directories (besides the ipc one) the name server removes if the owner is SIGKILLed.
    _cleanup_dirs: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        transport: str | None = None,
        host: str = "127.0.0.1",
        logging: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        log_console: str | None = "WARNING",
        broker_factory: Callable[[], Any] | None = None,
        risk: Mapping[str, Any] | None = None,
        supervise: bool = True,
        heartbeat: float = 0.5,
        history_capacity: int = 10_000,
        base_timeframes: Mapping[str, str | None] | None = None,
        alignments: Mapping[str, Mapping[str, Any]] | None = None,
        handle_signals: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        durability: str = "process",
        informer: Mapping[str, Any] | None = None,
    ) -> None:
        if informer is not None and not isinstance(informer, Mapping):
            raise ValueError(f"informer: expected a mapping of add_informer's options, got "
                             f"{type(informer).__name__}")  # fmt: skip
        if transport is None:
            transport = "ipc" if os.name == "posix" else "tcp"
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport: expected 'ipc' or 'tcp', got {transport!r}")
        RiskLimits.from_mapping(dict(risk or {}))  # fail here, not in the Trader's process
        if log_console is not None and log_console not in LOG_LEVELS:
            raise ValueError(
                f"log_console: expected one of {', '.join(LOG_LEVELS)} or None, "
                f"got {log_console!r}"
            )
        self.transport = transport
        self.host = host
        self._agents: dict[str, _Handle] = {}
        self._lock = threading.RLock()
        self._closing = False
        self._closed = False
        self._owner = os.getpid()
        self._old_signals: dict[int, Any] = {}
        self._interrupted = False  # Ctrl-C came through this architecture's handler
        self._interrupt_delivered = False  # ... and left through one of its public calls
        self._redeliveries = 0
        self._old_hooks: tuple[Any, Any] | None = None
        self._holding = False  # a process is being started: Ctrl-C waits (see below)
        self._held_interrupt = False
        self._feeders: list[str] = []
        self.overmind: Overmind | None = None
        self.nameserver: Any = None
        self._registry_entry: Path | None = None
        self.ipc_dir = Path(osbrain.config["IPC_DIR"]) / f"osm-{secrets.token_hex(4)}"
        # The durable journal (osmarkets/journal.py): in state_dir, kept across runs (running
        # the launcher again resumes), else in a private directory removed at shutdown.
        self._state_tmp: Path | None = None
        if state_dir is None:
            self._state_tmp = Path(tempfile.mkdtemp(prefix="osm-state-"))
        self.state_dir = Path(state_dir) if state_dir is not None else self._state_tmp
        assert self.state_dir is not None
        if durability not in ("process", "power", "none"):
            raise ValueError(
                f"durability: expected 'process', 'power' or 'none', got {durability!r}"
            )
        # 'none': the agents keep no journal (benchmarks of its cost, throwaway runs)
        journaled = durability != "none"
        self.journal = Journal.in_dir(
            self.state_dir, durability=durability if journaled else "process"
        )
        try:
            #: pid of the owner of a previous run on this state_dir that died without shutting
            #: down (None on a fresh start or after a clean shutdown)
            self.resumed_from = self.journal.claim(self._owner)
        except BaseException:
            self.journal.close()
            if self._state_tmp is not None:
                shutil.rmtree(self._state_tmp, ignore_errors=True)
            raise
        #: the file every agent's log lines go to (None without a Logger)
        self.log_path: Path | None = None
        if logging:
            self.log_path = Path(log_path) if log_path else new_log_path(self.state_dir)
            if log_console is not None:
                print(f"osmarkets: {type(self).__name__} logs to {self.log_path}",
                      file=sys.stderr, flush=True)  # fmt: skip
        self._keeper = JournalKeeper(self.journal)
        self._keeper.start()
        # in every client id ('<brain>-<deployment>-<n>'): unique across runs on one account,
        # and kept by a deployment that resumes (its journal knows the numbers used)
        self.run_id = self.journal.deployment_id()
        # This deployment's secrets (agents/auth.py): the Pyro HMAC key of every control call
        # and the CURVE keys of tcp links. Proxies this process makes get the key by default.
        self.keys = DeploymentKeys.generate()
        install_pyro_key(self.keys.pyro)
        self._brain_auth: dict[str, str] = {}  # brain -> its credential with the Trader
        self._common: dict[str, Any] = {
            "transport": transport,
            "host": host,
            "ipc_dir": str(self.ipc_dir) if transport == "ipc" else None,
            "parent_pid": self._owner,
            "keys": self.keys,
            "journal_path": str(self.journal.path) if journaled else None,
            "durability": durability,
        }
        # Interpreter exit runs atexit callbacks last registered first: multiprocessing's own
        # (imported above, so registered before this one) joins every child process and would
        # wait forever for agents this shutdown has not stopped yet.
        atexit.register(self.shutdown)
        if handle_signals and threading.current_thread() is threading.main_thread():
            self._install_signals()
        try:
            if transport == "ipc":
                # 0700: only this user reaches the ipc sockets
                self.ipc_dir.mkdir(mode=0o700, parents=True, exist_ok=False)
                os.chmod(self.ipc_dir, 0o700)
            with self._holding_interrupts():
                self.nameserver = self._start_nameserver()
            if supervise:
                # Built (and its status feed bound) before the agents, so every agent's config
                # carries the feed's address: a GUI reads it from the Router's ``osm_cfg``.
                self.overmind = Overmind(self, interval=heartbeat)
                where = self.ipc_dir / "overmind-status" if transport == "ipc" else None
                self._common["status_feed"] = self.overmind.bind_status(
                    f"ipc://{where}" if where else f"tcp://{host}"
                )
            if logging:
                self._spawn(
                    "logger",
                    "logger",
                    LoggerAgent,
                    {"osm_log_path": str(self.log_path), "osm_console": log_console},
                )
                self._common["logger"] = self._agents["logger"].proxy.addr("sub")
            self._spawn(
                "router", "router", RouterAgent,
                {"lockstep": self.lockstep, "lockstep_run": self._lockstep_run,
                 "history_capacity": history_capacity,
                 "base_timeframes": dict(base_timeframes or {}),
                 "alignments": {k: dict(v) for k, v in (alignments or {}).items()}},
            )  # fmt: skip
            router = self._agents["router"].proxy
            if transport == "tcp":  # a restarted Router binds the same ports (see osm_bind)
                self._agents["router"].cfg["ports"] = {
                    alias: int(router.addr(alias).address.port)
                    for alias in ("in", "pub", "history", "market")
                }
            self._spawn(
                "trader", "trader", TraderAgent,
                {"lockstep": self.lockstep, "lockstep_run": self._lockstep_run,
                 "risk": dict(risk or {}),
                 "broker_factory": broker_factory,
                 "router_market": router.addr("market"), "router_in": router.addr("in")},
            )  # fmt: skip
            if informer is not None:
                self.add_informer(**informer)
            if self.overmind is not None:
                self.overmind.start()
            self._register()
        except BaseException:
            self.shutdown()
            raise

    # -- processes ---------------------------------------------------------------------------
    @property
    def nsaddr(self) -> SocketAddress:
        return self.nameserver.addr

    def _start_nameserver(self) -> NameServerProcess:
        ipc_dir = str(self.ipc_dir) if self.transport == "ipc" else None
        cleanup = self._cleanup_dirs + ((str(self._state_tmp),) if self._state_tmp else ())
        return start_nameserver(
            self.host, ipc_dir=ipc_dir, hmac_key=self.keys.pyro, cleanup_dirs=cleanup
        )

    def _spawn(self, name: str, kind: str, cls: type, cfg: dict[str, Any]) -> Any:
        config = dict(self._common)
        config.update(cfg)
        handle = self._agents.get(name) or _Handle(name, kind, cls, config)
        handle.cfg = config
        attributes: dict[str, Any] = {"osm_cfg": config}
        process = OsmAgentProcess(
            name=name, nsaddr=self.nsaddr, addr=self.host, base=cls,
            transport=self.transport, attributes=attributes, pyro_key=self.keys.pyro,
        )  # fmt: skip
        handle.process = process
        with self._lock:
            self._agents[name] = handle
        with self._holding_interrupts():  # only the fork: waiting for it can be interrupted
            process.launch()
        process.wait_started()
        proxy = self.proxy(name, timeout=10.0)
        proxy.run()
        proxy.wait_for_running(timeout=10.0)
        handle.proxy = proxy
        return proxy

    def proxy(self, name: str, timeout: float = 3.0) -> Any:
        """A new osBrain proxy to agent ``name``, authenticated with this deployment's key."""
        with pyro_key(self.keys.pyro):
            return AgentProxy(name, self.nsaddr, timeout=timeout, call_timeout=CALL_TIMEOUT)

    def _nameserver_proxy(self) -> Any:
        with pyro_key(self.keys.pyro):
            return osbrain.NSProxy(self.nsaddr)

    def _agent_cfg(self) -> dict[str, Any]:
        router = self._agents["router"].proxy
        trader = self._agents["trader"].proxy
        return {
            "router_in": router.addr("in"),
            "router_pub": router.addr("pub"),
            "router_history": router.addr("history"),
            "trader_orders": trader.addr("orders"),
        }

    def _set_base_timeframes(self, mapping: Mapping[str, str | None]) -> None:
        """Tell the Router what each symbol's feed carries; kept in its configuration too,
        so a restarted Router starts with it."""
        handle = self._agents["router"]
        handle.cfg["base_timeframes"] = {**handle.cfg.get("base_timeframes", {}), **mapping}
        self["router"].set_base_timeframes(dict(mapping))

    # -- public API --------------------------------------------------------------------------
    @_visible
    def add_brain(self, name: str, base: type[Brain], **attrs: Any) -> Any:
        """Start ``base`` (a Brain subclass) as agent ``name``; ``attrs`` set attributes
        (parameters) before it starts. Returns the osBrain proxy (also ``system[name]``)."""
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in _RESERVED:
            raise ValueError(
                f"brain name: expected letters, digits, '_' or '-' (not a reserved agent name), "
                f"got {name!r}"
            )
        if name in self._agents:
            raise ValueError(f"brain name: {name!r} is already an agent of this architecture")
        cls = make_brain_class(base)
        cfg = self._agent_cfg()
        auth = secrets.token_hex(16)
        # the Trader learns the credential first, so the Brain's hello is accepted
        self["trader"].register_brain(name, auth)
        self._brain_auth[name] = auth
        cfg.update(params=dict(attrs), incarnation=0, auth=auth, run_id=self.run_id)
        return self._spawn(name, "brain", cls, cfg)

    @_visible
    def __getitem__(self, name: str) -> Any:
        try:
            return self._agents[name].proxy
        except KeyError:
            raise KeyError(f"no agent {name!r} (agents: {', '.join(self._agents)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._agents

    @property
    def agents(self) -> list[str]:
        return list(self._agents)

    @_visible
    def stream(
        self,
        symbols: Iterable[str] | None = None,
        *,
        data: Mapping[str, Any] | None = None,
        seed: int = 0,
        speed: float = 1.0,
        bars: int | None = None,
        batch: int = 1,
        stamp_now: bool = False,
        options: Mapping[str, Any] | None = None,
        name: str | None = None,
        base_timeframes: Mapping[str, str | None] | None = None,
    ) -> Any:
        """Start a Feeder: a replay of ``data`` (symbol -> DataFrame or path), or synthetic
        quotes for ``symbols`` (``bars`` minutes' worth, endless if None) at ``speed`` times
        real time (0 = as fast as possible). ``base_timeframes``: each replayed symbol's frame
        code (None for ticks), inferred from the data's times when not given."""
        if data is not None:
            for symbol, frame in data.items():
                feeds.load_frame(frame, symbol)  # bad input fails here, in the caller
            source: dict[str, Any] = {"kind": "replay", "data": dict(data)}
            self._set_base_timeframes(dict(base_timeframes or feeds.base_timeframes(data)))
        else:
            if symbols is None or isinstance(symbols, str):
                raise ValueError("stream symbols: expected a list of instruments")
            symbols = [BarSeriesID(s, 1, "Minutes").symbol for s in symbols]
            self._set_base_timeframes(dict.fromkeys(symbols))
            source = {"kind": "synthetic", "symbols": symbols, "seed": seed, "bars": bars,
                      "options": dict(options or {})}  # fmt: skip
        name = name or (
            "feeder" if "feeder" not in self._agents else f"feeder{len(self._feeders)}"
        )
        cfg = {"router_in": self["router"].addr("in"), "source": source, "speed": speed,
               "batch": batch, "stamp_now": stamp_now}  # fmt: skip
        proxy = self._spawn(name, "feeder", FeederAgent, cfg)
        self._feeders.append(name)
        proxy.start_feed()
        return proxy

    @_visible
    def add_informer(
        self,
        urls: Iterable[str],
        rules: Rules | Mapping[str, Any] | None = None,
        *,
        title: str = "osMarkets",
    ) -> Any:
        """Start the Informer agent: it notifies a person through Apprise ``urls``
        (``'mailto://...'``, ``'json://host/path'``, ``'tgram://...'``, ...) of what ``rules``
        (:class:`~osmarkets.notify.Rules` or a mapping of its fields) select: fills,
        rejections, errors, agent restarts and deaths, the operator's controls, drawdown and
        daily-loss thresholds, a daily summary. Returns its proxy (also
        ``system['informer']``; its ``status()`` has the notification counters)."""
        if "informer" in self._agents:
            raise ValueError("informer: this architecture already has one")
        urls = _informer_urls(urls)
        if isinstance(rules, Rules):
            rules = dataclasses.asdict(rules)
        rules = dataclasses.asdict(Rules.from_mapping(rules))  # a bad rule fails here
        if not isinstance(title, str) or not title:
            raise ValueError("informer title: expected a non-empty string")
        cfg: dict[str, Any] = {
            "rules": rules, "title": title, "informer_urls": urls, "nsaddr": str(self.nsaddr),
        }  # fmt: skip
        if "logger" in self._agents:
            cfg["logger_alerts"] = _url(self["logger"].addr("alerts"))
        return self._spawn("informer", "informer", InformerAgent, cfg)

    # -- operator controls (osmarkets/operator.py) --------------------------------------------
    @property
    def controls(self) -> Controls:
        """Pause, resume, flatten, cancel and the kill switch, as ``osmarkets ctl`` and the
        GUI call them (:class:`~osmarkets.operator.Controls`)."""
        return Controls(lambda name: self[name])

    @_visible
    def pause(self, brain: str) -> dict[str, Any]:
        """Refuse ``brain``'s new orders (reason ``'paused'``); it keeps receiving bars."""
        return self.controls.pause(brain)

    @_visible
    def resume(self, brain: str) -> dict[str, Any]:
        """Accept ``brain``'s orders again."""
        return self.controls.resume(brain)

    @_visible
    def flatten(self, brain: str | None = None, *, account: bool = False) -> dict[str, Any]:
        """Close ``brain``'s positions with market orders (None: every Brain's); with
        ``account``, also what the account holds that no Brain does."""
        return self.controls.flatten(brain, account)

    @_visible
    def cancel_all(self, brain: str | None = None) -> dict[str, Any]:
        """Cancel ``brain``'s pending orders (None: every pending order)."""
        return self.controls.cancel_all(brain)

    @_visible
    def kill(self) -> dict[str, Any]:
        """The kill switch: every new order refused, every pending order cancelled, every
        Brain's position closed, every Brain stopped."""
        return self.controls.kill()

    @_visible
    def operator_status(self) -> dict[str, Any]:
        """Every Brain's state (``running``, ``paused``, ``stopped``), positions, fills, P&L
        and pending orders, and the kill switch."""
        return self.controls.status()

    @property
    def status_feed(self) -> str | None:
        """Address of the Overmind's status PUB socket (``('status', seq, rows)`` after each
        check), or None without supervision."""
        return self.overmind.status_feed if self.overmind is not None else None

    def add_gui(self, **kwargs: Any) -> Any:
        """Open the real-time window on this architecture, in its own process (needs
        the ``gui`` extra); see :func:`osmarkets.gui.app.add_gui` for the options."""
        from ..gui import add_gui

        return add_gui(self, **kwargs)

    def _register(self) -> None:
        """Write the name server's address to this user's registry, so ``osmarkets gui``
        finds this architecture without ``--nameserver`` (removed on shutdown)."""
        try:
            self._registry_entry = registry.register(
                self.nsaddr, type(self).__name__, keys=self.keys.to_json()
            )
        except OSError as exc:  # a read-only home must not stop a deployment
            warnings.warn(f"could not register the name server: {exc}", RuntimeWarning, 2)

    def status(self) -> pd.DataFrame:
        """A table of every agent: process, heartbeat, message and error counters, its
        ``restarts`` and ``last_incident`` (every incident: :meth:`incidents`). It does not
        raise for a dead agent: that shows (``alive`` False, ``exitcode``, ``problem``)."""
        overmind = self.overmind or Overmind(self, restart=False)
        rows = overmind.check(restart=False)
        frame = pd.DataFrame(rows)
        if len(frame):
            frame = frame.set_index("name")
        return frame

    # -- incidents ---------------------------------------------------------------------------
    @property
    def _incident_log(self) -> Incidents:
        log = self.__dict__.get("_osm_incidents")
        if log is None:
            with _INCIDENTS_LOCK:
                log = self.__dict__.setdefault("_osm_incidents", Incidents(self))
        return log

    def incidents(self) -> list[dict[str, Any]]:
        """What went wrong and what was done about it, oldest first (the last 1000): dicts
        ``time`` (epoch seconds), ``agent``, ``kind`` (``'restart'``, ``'dead'``,
        ``'restart_failed'``, ``'reconciliation'``, ``'recovered_order'``) and ``detail``.
        Each is also logged (Python logger ``'osmarkets'``, and the Logger agent if any)."""
        return self._incident_log.items()

    def _incident(
        self, agent: str, kind: str, detail: str, origin: str = "owner"
    ) -> dict[str, Any]:
        """Record an incident of agent ``agent`` (see :meth:`incidents`) and log it."""
        return self._incident_log.record(agent, kind, detail, origin)

    def _restartable(self, kind: str) -> bool:
        """Whether a dead agent of ``kind`` is restarted (by the Overmind, or by the owner:
        ``restart_trader``) rather than dead for good. Without supervision only the owner
        restarts anything, and only the Trader (``restart_trader``)."""
        if kind in _ALWAYS_RESTARTED:
            return self.overmind is not None
        return kind in self.restartable and (self.overmind is not None or kind == "trader")

    #: what an :class:`AgentDiedError` advises
    _dead_advice = "start the architecture again"

    def _dead_agent(self) -> AgentDiedError | None:
        """The error naming an agent that died and cannot be restarted (its kind is not
        restartable, or its restart failed), else None. An agent being (re)started, whose
        handle has no proxy yet, is not dead."""
        if self._closing:
            return None
        log = self._incident_log
        for handle in list(self._agents.values()):
            process = handle.process
            if process is None or not process.pid:
                continue
            failed = log.failure(handle.name, process.pid)
            if failed is not None:
                pid, code = failed["dead_pid"], failed["exitcode"]
                why = f" (its restart raised {failed['error']})"
            elif (
                self._restartable(handle.kind)
                or handle.kind in _ALWAYS_RESTARTED
                or handle.proxy is None
                or process.is_alive()
            ):  # (a dead Informer never stops trading, nor the owner's controls)
                continue
            else:
                pid, code, why = process.pid, process.exitcode, ""
                log.dead(handle.name, handle.kind, pid, code, "not restartable")
            return AgentDiedError(
                f"the {handle.kind} agent {handle.name!r} died (pid {pid}, exit code {code}) "
                f"and cannot be restarted{why}: {self._dead_advice}",
                handle.name, handle.kind, pid, code,
            )  # fmt: skip
        return None

    def _raise_if_dead(self, grace: float = 0.0, cause: BaseException | None = None) -> None:
        """Raise :class:`AgentDiedError` if an agent died and cannot be restarted, waiting up
        to ``grace`` seconds for one (``cause``: the failed call that made us look)."""
        deadline = time.monotonic() + grace
        while True:
            error = self._dead_agent()
            if error is not None:
                raise error from cause
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def pids(self) -> list[int]:
        """Process ids of the name server and every agent (for supervision and tests)."""
        out = [h.process.pid for h in self._agents.values() if h.process is not None]
        if self.nameserver is not None and self.nameserver.pid:
            out.append(self.nameserver.pid)
        return [pid for pid in out if pid]

    # -- supervision -------------------------------------------------------------------------
    def _restart_agent(self, name: str, pid: int | None) -> bool:
        """Restart agent ``name`` if its process is still the one ``pid`` (the Overmind saw
        it dead or stalled: someone else may have replaced it meanwhile). True if done."""
        with self._lock:
            handle = self._agents.get(name)
            if self._closing or handle is None or not self._restartable(handle.kind):
                return False
            if handle.process is None or handle.process.pid != pid:
                return False
            if handle.kind == "brain":
                self._restart_brain(name)
            elif handle.kind == "trader":
                self.restart_trader()
            elif handle.kind == "feeder":
                self._restart_feeder(name)
            elif handle.kind == "router" and not self.lockstep:
                self._restart_router()
            elif handle.kind == "informer":
                handle = self._bury(name)
                self._spawn(name, handle.kind, handle.cls, handle.cfg)
            else:
                return False
            return True

    @_visible
    def restart_trader(self) -> Any:
        raise RuntimeError(f"{type(self).__name__} does not restart its Trader")

    def _bury(self, name: str) -> _Handle:
        """Kill agent ``name``'s process (if still alive), unregister it, remove its ipc
        files: the ground cleared for a new process of the same name."""
        handle = self._agents[name]
        _kill(handle.process)
        ns = self._nameserver_proxy()
        try:
            with contextlib.suppress(Exception):
                ns.remove(name)
        finally:
            ns.release()
        self._remove_ipc(name)
        with contextlib.suppress(Exception):
            handle.proxy._pyroRelease()
        handle.proxy = None  # until the new process runs: the Overmind leaves it alone
        return handle

    def _restart_router(self) -> Any:
        """Replace a dead or stalled Router by a new process with the same configuration
        (which holds what the owner set since: base time frames, the history source) on the
        same addresses (the same ipc files; over tcp the same ports, ``ports``). It takes up
        its series from the journal (sequence numbers, subscribers, history), and the sockets
        of the Brains, the Trader and the Feeders reconnect to it by themselves (ZeroMQ
        reconnects connected sockets). A Brain that lost bars meanwhile sees a gap in the
        sequence numbers and reloads them from the history."""
        if self.lockstep:
            raise RuntimeError("a lock-step simulation cannot resume without its Router")
        with self._lock:
            if self._closing:
                return None
            handle = self._bury("router")
            # The Feeders die before the new Router binds: a live one would reconnect to it
            # and push the quotes it queued while the Router was down (past the resume
            # points), and the Router would then refuse, as going back in time, the new
            # Feeders' backfill of the minutes the dead Router never completed.
            feeders = list(self._feeders) if "feeder" in self.restartable else []
            for name in feeders:
                self._bury(name)
            try:
                proxy = self._spawn("router", "router", handle.cls, dict(handle.cfg))
            except BaseException:
                for name in feeders:  # not left buried: they resume from the last ticks
                    with contextlib.suppress(Exception):
                        self._restart_feeder(name)
                raise
            if feeders:
                # the quotes of the bars that were forming died with the Router: the Feeders
                # start again from the start of those bars (OANDA's backfill gives them again)
                points: dict[str, int] | None = None
                with contextlib.suppress(Exception):
                    points = dict(proxy.resume_points())
                for name in feeders:  # each on its own: one failing leaves the others up
                    try:
                        self._restart_feeder(name, points)
                    except Exception as exc:
                        self._incident(name, "restart_failed", f"after the Router's: {exc!r}")
            return proxy

    def _restart_feeder(self, name: str, resume_after: dict[str, int] | None = None) -> Any:
        """Replace a dead Feeder; it resumes after ``resume_after`` (symbol -> time), by
        default after the last tick the Router received of each symbol (a live feed
        backfills the gap, see :class:`~osmarkets.agents.oanda.OandaFeederAgent`)."""
        with self._lock:
            if self._closing:
                return None
            handle = self._bury(name)
            cfg = dict(handle.cfg)
            if resume_after is not None:
                cfg["resume_after"] = dict(resume_after)
            else:
                router = self.proxy("router")
                try:
                    with contextlib.suppress(Exception):
                        cfg["resume_after"] = dict(router.last_times())
                finally:
                    router._pyroRelease()
            proxy = self._spawn(name, "feeder", handle.cls, cfg)
            proxy.start_feed()
            return proxy

    def _restart_brain(self, name: str) -> None:
        """Replace a dead or stalled Brain by a fresh process and re-apply its subscriptions
        (it reloads its series from the Router's history)."""
        with self._lock:
            if self._closing:
                return
            handle = self._bury(name)
            router = self.proxy("router")
            try:
                subscriptions = router.subscriptions().get(name, [])
                acked = router.acked_seqs(name)
            finally:
                router._pyroRelease()
            cfg = dict(handle.cfg)
            cfg["incarnation"] = int(cfg.get("incarnation", 0)) + 1
            # the account (through the Trader) is the authority on what the Brain holds
            restore: dict[str, Any] = {"acked": acked}
            with contextlib.suppress(Exception):
                restore.update(self["trader"].brain_snapshot(name))
            cfg["restore"] = restore
            proxy = self._spawn(name, "brain", handle.cls, cfg)
            for bsid, count in subscriptions:
                proxy.subscribe(bsid, count)

    def _remove_ipc(self, name: str) -> None:
        if self.transport != "ipc":
            return
        for path in self.ipc_dir.glob(f"{name}-*"):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- shutdown ----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, OSError):
                self._old_signals[signum] = signal.signal(signum, self._on_signal)
        previous = sys.excepthook

        def one_line(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            # Ctrl-C reached the launcher's top level after the architecture shut down: one
            # line, not a traceback through the user's script.
            if issubclass(kind, KeyboardInterrupt) and self._interrupted:
                state = "every agent was stopped" if self._closed else "stopping"
                print(f"osmarkets: interrupted (Ctrl-C); {state}", file=sys.stderr)
                return
            # An agent died or does not answer: one line naming it; the traceback goes to
            # the log file (or, without one, to the terminal as usual).
            if issubclass(kind, AgentDiedError | AgentUnreachableError) and self.log_path:
                text = "".join(traceback.format_exception(kind, value, tb))
                try:
                    with open(self.log_path, "a") as file:
                        file.write(f"ERROR [{datetime.datetime.utcnow()}] (owner): {text}\n")
                except OSError:  # no file to point to: the traceback, as Python shows it
                    previous(kind, value, tb)
                    return
                print(f"osmarkets: {value} (traceback in {self.log_path})", file=sys.stderr)
                return
            previous(kind, value, tb)

        sys.excepthook = one_line
        self._old_hooks = (previous, sys.unraisablehook)
        previous_unraisable = sys.unraisablehook

        def redeliver(unraisable: Any) -> None:
            # Python drops an exception raised in a __del__ or an at-fork hook: Ctrl-C that
            # landed there was lost and the launcher ran on. Say nothing, deliver it again.
            if issubclass(unraisable.exc_type, KeyboardInterrupt) and self._interrupted:
                self._redeliver(0.2)
                return
            # Ctrl-C that landed inside a Pyro4 proxy's __init__ leaves a half-built proxy
            # whose __del__ raises AttributeError when it is collected: noise, not news.
            if self._interrupted and _is_half_built_proxy(unraisable):
                return
            previous_unraisable(unraisable)

        sys.unraisablehook = redeliver

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._owner:
            # A forked child that has not set its own handler yet. Ctrl-C: ignore it, as every
            # agent does (the owner stops them; dying here would leave the owner waiting for
            # an agent that never starts). SIGTERM: die, as the default would.
            if signum == signal.SIGINT:
                signal.signal(signum, signal.SIG_IGN)
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if signum == signal.SIGINT:
            self._interrupted = True
            if self._holding:
                self._held_interrupt = True
                return
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @contextlib.contextmanager
    def _holding_interrupts(self) -> Iterator[None]:
        """Ctrl-C waits until the process being started is started: raised inside ``fork``
        it leaves a child this architecture cannot name (and so cannot stop), or it lands in
        an at-fork hook, where Python drops it. Raised at the end of the block instead."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers run in the main thread only: nothing to hold here
            return
        outer = self._holding
        self._holding = True
        try:
            yield
        finally:
            self._holding = outer
        if not outer and self._held_interrupt:
            self._held_interrupt = False
            raise KeyboardInterrupt

    def _redeliver(self, delay: float) -> None:
        """Send SIGINT to this process again after ``delay`` seconds (an interrupt Python
        dropped) unless the architecture is stopping by then or the interrupt went out through
        one of its calls; at most three times."""
        if self._redeliveries >= 3:
            return
        self._redeliveries += 1

        def again() -> None:
            if not self._closing and not self._interrupt_delivered:
                with contextlib.suppress(OSError):
                    os.kill(self._owner, signal.SIGINT)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        timer.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every agent and the name server, and remove the ipc files. Idempotent."""
        if self._closed or os.getpid() != self._owner:
            return
        self._closing = True
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.overmind is not None:
                self.overmind.stop()
                started = self.overmind.ident is not None
                if started and self.overmind is not threading.current_thread():
                    self.overmind.join(timeout=5)
            with contextlib.suppress(Exception):
                self._incident_log.close()  # no more lines for the Logger
            registry.unregister(self._registry_entry)
            self._registry_entry = None
            order = sorted(
                self._agents.values(),
                key=lambda h: _SHUTDOWN_ORDER.index(h.kind) if h.kind in _SHUTDOWN_ORDER else 0,
            )
            for handle in order:
                if handle.kind == "feeder" and handle.proxy is not None:
                    with contextlib.suppress(Exception):
                        handle.proxy.unsafe.stop_feed()
                _ask_shutdown(handle)
            deadline = time.monotonic() + timeout
            for handle in order:
                process = handle.process
                if process is None or process._popen is None:  # never started
                    continue
                process.join(max(0.0, deadline - time.monotonic()))
                _kill(process)
                if handle.proxy is not None:
                    with contextlib.suppress(Exception):
                        handle.proxy._pyroRelease()
            if self.nameserver is not None:
                server = self.nameserver
                with contextlib.suppress(Exception):
                    server._shutdown_event.set()
                with contextlib.suppress(Exception):
                    server.terminate()
                server.join(3)
                _kill(server)
            if self.transport == "ipc":
                shutil.rmtree(self.ipc_dir, ignore_errors=True)
            self._close_journal()
            for signum, handler in self._old_signals.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(signum, handler)
            self._old_signals.clear()
            if self._old_hooks is not None and not self._interrupted:
                # (after Ctrl-C the one-line hook is still wanted: the interrupt is on its way
                # to the top of the launcher)
                sys.excepthook, sys.unraisablehook = self._old_hooks
                self._old_hooks = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.shutdown)

    def _close_journal(self) -> None:
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:
            keeper.stop()
        journal = getattr(self, "journal", None)
        if journal is not None:
            with contextlib.suppress(Exception):
                journal.release(self._owner)
            journal.close()
        if self._state_tmp is not None:
            remove_keeping_logs(self._state_tmp)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._agents)} agents"
        return f"<{type(self).__name__} {state}>"


def _informer_urls(urls: Any) -> list[str]:
    """The Apprise URLs, checked here (a ValueError naming the bad one by its position and
    scheme only: the rest of a URL may be a token)."""
    import apprise

    if isinstance(urls, str) or not isinstance(urls, Iterable):
        raise ValueError("informer urls: expected a list of Apprise URLs")
    urls = list(urls)
    if not urls:
        raise ValueError("informer urls: expected at least one Apprise URL")
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not apprise.Apprise().add(url):
            scheme = (url.partition("://")[0][:20] if isinstance(url, str) and "://" in url
                      else "none")  # (the rest of a URL may be a token)  # fmt: skip
            raise ValueError(f"informer urls[{index}]: Apprise cannot use it (scheme {scheme!r})")
    return urls


def _url(address: Any) -> str:
    return f"{address.transport}://{address.address}"


def _ask_shutdown(handle: _Handle) -> None:
    process = handle.process
    if process is None or not process.is_alive():
        return
    if handle.proxy is None:  # still starting (Ctrl-C during start-up): nothing to save yet
        _kill(process)
        return
    proxy = handle.proxy
    try:
        proxy._pyroTimeout = 2.0
        proxy.oneway.shutdown()  # the loop ends within its poll timeout (1 s)
    except Exception:
        _kill(process)


def _kill(process: Any) -> None:
    """SIGKILL a process that is still alive, and reap it."""
    if process is None or not process.pid:
        return
    if process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.join(5)


def _is_half_built_proxy(unraisable: Any) -> bool:
    """True for the AttributeError a Pyro4 ``Proxy.__del__`` raises on a proxy whose
    ``__init__`` a Ctrl-C cut short."""
    where = unraisable.object
    return (
        issubclass(unraisable.exc_type, AttributeError)
        and getattr(where, "__qualname__", "") == "Proxy.__del__"
        and getattr(where, "__module__", "") == "Pyro4.core"
    )
