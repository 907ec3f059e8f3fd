"""Deployments: an :class:`Architecture` owns the name server and every agent process.

``Architecture`` starts osBrain's name server, a Router and a Trader (and a Logger when asked),
adds Brains and Feeders on request, supervises them all with an
:class:`~osmarkets.agents.Overmind`, and shuts every process down on normal exit, on an
exception, on SIGINT/SIGTERM and at interpreter exit: no orphan process, no stale ipc file
(every ipc socket lives in one directory per architecture, removed at shutdown even when an
agent was killed and could not clean up after itself).

:class:`SimulatedArchitecture` is the same deployment on the embedded simulated broker,
replaying historical data (or seeded synthetic quotes) in lock-step, so that its fills match the
in-process backtest's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import random
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import osbrain
import pandas as pd
from osbrain.address import SocketAddress
from osbrain.nameserver import NameServerProcess

from . import feeds
from .agents import (
    FeederAgent,
    LoggerAgent,
    Overmind,
    RiskLimits,
    RouterAgent,
    TraderAgent,
    make_brain_class,
)
from .brain import Brain
from .data.timeframes import BarSeriesID

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,40}$")
_RESERVED = {"router", "trader", "logger", "feeder", "overmind"}


class _QuietNameServer(NameServerProcess):
    """osBrain's name server without its start-up banner on stdout, which does not outlive
    the process that owns the architecture."""

    ipc_dir: str | None = None

    def run(self) -> None:
        parent = os.getppid()

        def orphan_guard() -> None:
            while True:
                time.sleep(1.0)
                if os.getppid() != parent:
                    # The owner was SIGKILLed and could not shut down. The agents notice too
                    # and close their sockets (removing their ipc files) within about a second;
                    # give them time, then remove the architecture's ipc directory.
                    time.sleep(3.0)
                    if self.ipc_dir:
                        shutil.rmtree(self.ipc_dir, ignore_errors=True)
                    os._exit(0)

        threading.Thread(target=orphan_guard, daemon=True).start()
        with open(os.devnull, "w") as devnull:
            sys.stdout = devnull
            super().run()


class _Handle:
    __slots__ = ("name", "kind", "cls", "cfg", "process", "proxy")

    def __init__(self, name: str, kind: str, cls: type, cfg: dict[str, Any]) -> None:
        self.name = name
        self.kind = kind
        self.cls = cls
        self.cfg = cfg
        self.process: Any = None
        self.proxy: Any = None


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
    socket and the name server bind to (127.0.0.1 unless you name another). ``logging``: start a
    Logger agent every agent reports to. ``broker_factory``: a callable returning the broker
    object the Trader uses (``submit``, ``cancel``, ``on_bar``, ``on_tick``, ``positions``,
    ``equity``); without one the Trader rejects orders. ``risk``: the Trader's
    :class:`~osmarkets.agents.RiskLimits` as a mapping. ``supervise``: run the Overmind (and
    restart Brains that die). Use it as a context manager, or call :meth:`shutdown`.
    """

    lockstep = False

    def __init__(
        self,
        *,
        transport: str | None = None,
        host: str = "127.0.0.1",
        logging: bool = False,
        log_path: str | None = None,
        broker_factory: Callable[[], Any] | None = None,
        risk: Mapping[str, Any] | None = None,
        supervise: bool = True,
        heartbeat: float = 0.5,
        history_capacity: int = 10_000,
        base_timeframes: Mapping[str, str | None] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if transport is None:
            transport = "ipc" if os.name == "posix" else "tcp"
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport: expected 'ipc' or 'tcp', got {transport!r}")
        RiskLimits.from_mapping(dict(risk or {}))  # fail here, not in the Trader's process
        self.transport = transport
        self.host = host
        self._agents: dict[str, _Handle] = {}
        self._lock = threading.RLock()
        self._closing = False
        self._closed = False
        self._owner = os.getpid()
        self._old_signals: dict[int, Any] = {}
        self._feeders: list[str] = []
        self.overmind: Overmind | None = None
        self.nameserver: Any = None
        self.ipc_dir = Path(osbrain.config["IPC_DIR"]) / f"osm-{secrets.token_hex(4)}"
        self._common: dict[str, Any] = {
            "transport": transport,
            "host": host,
            "ipc_dir": str(self.ipc_dir) if transport == "ipc" else None,
            "parent_pid": self._owner,
        }
        atexit.register(self.shutdown)
        if handle_signals and threading.current_thread() is threading.main_thread():
            self._install_signals()
        try:
            if transport == "ipc":
                self.ipc_dir.mkdir(parents=True, exist_ok=False)
            self.nameserver = self._start_nameserver()
            if logging:
                self._spawn("logger", "logger", LoggerAgent, {"osm_log_path": log_path})
                self._common["logger"] = self._agents["logger"].proxy.addr("sub")
            self._spawn(
                "router", "router", RouterAgent,
                {"lockstep": self.lockstep, "history_capacity": history_capacity,
                 "base_timeframes": dict(base_timeframes or {})},
            )  # fmt: skip
            router = self._agents["router"].proxy
            self._spawn(
                "trader", "trader", TraderAgent,
                {"lockstep": self.lockstep, "risk": dict(risk or {}),
                 "broker_factory": broker_factory,
                 "router_market": router.addr("market"), "router_in": router.addr("in")},
            )  # fmt: skip
            if supervise:
                self.overmind = Overmind(self, interval=heartbeat)
                self.overmind.start()
        except BaseException:
            self.shutdown()
            raise

    # -- processes ---------------------------------------------------------------------------
    @property
    def nsaddr(self) -> SocketAddress:
        return self.nameserver.addr

    def _start_nameserver(self) -> NameServerProcess:
        last: Exception | None = None
        for _ in range(20):
            port = random.randrange(20_000, 40_000)
            server = _QuietNameServer(SocketAddress(self.host, port))
            server.ipc_dir = str(self.ipc_dir) if self.transport == "ipc" else None
            try:
                server.start()
                return server
            except RuntimeError as exc:  # port taken: try another
                last = exc
        raise RuntimeError(f"could not start the name server: {last}")

    def _spawn(self, name: str, kind: str, cls: type, cfg: dict[str, Any]) -> Any:
        config = dict(self._common)
        config.update(cfg)
        handle = self._agents.get(name) or _Handle(name, kind, cls, config)
        handle.cfg = config
        attributes: dict[str, Any] = {"osm_cfg": config}
        process = osbrain.AgentProcess(
            name=name, nsaddr=self.nsaddr, addr=self.host, base=cls,
            transport=self.transport, attributes=attributes,
        )  # fmt: skip
        handle.process = process
        with self._lock:
            self._agents[name] = handle
        process.start()
        proxy = osbrain.Proxy(name, self.nsaddr, timeout=10.0)
        proxy.run()
        proxy.wait_for_running(timeout=10.0)
        handle.proxy = proxy
        return proxy

    def _agent_cfg(self) -> dict[str, Any]:
        router = self._agents["router"].proxy
        trader = self._agents["trader"].proxy
        return {
            "router_in": router.addr("in"),
            "router_pub": router.addr("pub"),
            "router_history": router.addr("history"),
            "trader_orders": trader.addr("orders"),
        }

    # -- public API --------------------------------------------------------------------------
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
        cfg.update(params=dict(attrs), incarnation=0)
        return self._spawn(name, "brain", cls, cfg)

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
    ) -> Any:
        """Start a Feeder: a replay of ``data`` (symbol -> DataFrame or path), or synthetic
        quotes for ``symbols`` (``bars`` minutes' worth, endless if None) at ``speed`` times
        real time (0 = as fast as possible)."""
        if data is not None:
            for symbol, frame in data.items():
                feeds.load_frame(frame, symbol)  # bad input fails here, in the caller
            source: dict[str, Any] = {"kind": "replay", "data": dict(data)}
            self["router"].set_base_timeframes(feeds.base_timeframes(data))
        else:
            if symbols is None or isinstance(symbols, str):
                raise ValueError("stream symbols: expected a list of instruments")
            symbols = [BarSeriesID(s, 1, "Minutes").symbol for s in symbols]
            self["router"].set_base_timeframes(dict.fromkeys(symbols))
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

    def status(self) -> pd.DataFrame:
        """A table of every agent: process, heartbeat, message and error counters."""
        overmind = self.overmind or Overmind(self, restart=False)
        rows = overmind.check(restart=False)
        frame = pd.DataFrame(rows)
        if len(frame):
            frame = frame.set_index("name")
        return frame

    def pids(self) -> list[int]:
        """Process ids of the name server and every agent (for supervision and tests)."""
        out = [h.process.pid for h in self._agents.values() if h.process is not None]
        if self.nameserver is not None and self.nameserver.pid:
            out.append(self.nameserver.pid)
        return [pid for pid in out if pid]

    # -- supervision -------------------------------------------------------------------------
    def _restart_brain(self, name: str) -> None:
        """Replace a dead or stalled Brain by a fresh process and re-apply its subscriptions
        (it reloads its series from the Router's history)."""
        with self._lock:
            if self._closing:
                return
            handle = self._agents[name]
            _kill(handle.process)
            ns = osbrain.NSProxy(self.nsaddr)
            try:
                with contextlib.suppress(Exception):
                    ns.remove(name)
            finally:
                ns.release()
            self._remove_ipc(name)
            router = osbrain.Proxy("router", self.nsaddr)
            try:
                subscriptions = router.subscriptions().get(name, [])
            finally:
                router._pyroRelease()
            cfg = dict(handle.cfg)
            cfg["incarnation"] = int(cfg.get("incarnation", 0)) + 1
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

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._owner:
            # A forked agent inherited this handler: behave as the default would.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

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
                if self.overmind is not threading.current_thread():
                    self.overmind.join(timeout=5)
            order = sorted(
                self._agents.values(),
                key=lambda h: ["feeder", "brain", "trader", "router", "logger"].index(h.kind),
            )
            for handle in order:
                if handle.kind == "feeder" and handle.proxy is not None:
                    with contextlib.suppress(Exception):
                        handle.proxy.unsafe.stop_feed()
                _ask_shutdown(handle)
            deadline = time.monotonic() + timeout
            for handle in order:
                process = handle.process
                if process is None:
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
            for signum, handler in self._old_signals.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(signum, handler)
            self._old_signals.clear()
            with contextlib.suppress(Exception):
                atexit.unregister(self.shutdown)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._agents)} agents"
        return f"<{type(self).__name__} {state}>"


def _ask_shutdown(handle: _Handle) -> None:
    process = handle.process
    if process is None or not process.is_alive() or handle.proxy is None:
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


class SimulatedArchitecture(Architecture):
    """The architecture on the embedded simulated broker, replaying data in lock-step.

    ``data``: a mapping of symbol to a bars or ticks DataFrame or a CSV/Parquet path; with
    ``None``, seeded synthetic quotes for ``symbols`` (``bars`` one-minute bars' worth).
    ``cash``, ``spread``, ``slippage``, ``commission``, ``margin_rate``: the
    :class:`~osmarkets.brokers.simulated.SimulatedBroker`'s options. ``speed``: 0 replays as
    fast as the lock-step allows, else a factor of real time.

    :meth:`run` replays to the end and returns the :class:`~osmarkets.backtest.Result`
    (:meth:`result` gives it again).
    """

    lockstep = True

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        cash: float = 100_000.0,
        *,
        seed: int = 0,
        symbols: Iterable[str] = ("EUR_USD",),
        bars: int = 500,
        speed: float = 0.0,
        spread: float | dict[str, float] = 0.0,
        slippage: float = 0.0,
        commission: Any = None,
        margin_rate: float | dict[str, float] = 1.0,
        ticks_per_minute: float = 60.0,
        **kwargs: Any,
    ) -> None:
        from .brokers.simulated import SimulatedBroker

        if data is not None:
            if not isinstance(data, Mapping):
                raise ValueError(
                    "data: expected a mapping of symbol -> DataFrame or file path, "
                    f"got {type(data).__name__}"
                )
            if not data:
                raise ValueError("data: expected at least one symbol")
            frames = {sym: feeds.load_frame(src, sym) for sym, src in data.items()}
            base = feeds.base_timeframes(frames)
            self._source: dict[str, Any] = {"data": frames}
        else:
            symbols = list(symbols)
            if not symbols:
                raise ValueError("symbols: expected at least one instrument")
            frames = {}
            base = {sym: None for sym in symbols}
            self._source = {"symbols": symbols, "seed": seed, "bars": bars,
                            "options": {"ticks_per_minute": ticks_per_minute}}  # fmt: skip
        SimulatedBroker(cash, spread=spread, slippage=slippage, commission=commission,
                        margin_rate=margin_rate)  # validate options here  # fmt: skip
        factory = functools.partial(
            SimulatedBroker, cash, spread=spread, slippage=slippage, commission=commission,
            margin_rate=margin_rate,
        )  # fmt: skip
        self.cash = float(cash)
        self.speed = speed
        self.frames = frames
        self._result: Any = None
        self._started = False
        super().__init__(broker_factory=factory, base_timeframes=base, **kwargs)

    def _start_feed(self) -> None:
        if self._started:
            return
        self._started = True
        if "data" in self._source:
            self.stream(data=self._source["data"], speed=self.speed)
        else:
            src = self._source
            self.stream(src["symbols"], seed=src["seed"], bars=src["bars"], speed=self.speed,
                        options=src["options"])  # fmt: skip

    def progress(self) -> dict[str, Any]:
        """Router and Trader counters: steps, bars, orders, fills, equity."""
        info = dict(self["router"].progress())
        stats = self["trader"].osm_stats()
        info.update(orders=stats.get("orders", 0), fills=stats.get("fills", 0),
                    equity=stats.get("equity"))  # fmt: skip
        return info

    def run(
        self,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        every: float = 0.5,
    ) -> Any:
        """Replay everything, wait until every order is settled, return the Result.

        ``progress(info)`` is called about every ``every`` seconds with :meth:`progress`.
        """
        router = self["router"]
        _wait(router.sync, 15.0, "the Brains' subscriptions to reach the Router")
        self._start_feed()
        feeder = self[self._feeders[0]]
        deadline = None if timeout is None else time.monotonic() + timeout
        last_report = 0.0
        while True:
            info = router.progress()
            if info["finished"] and self["trader"].idle_now():
                break
            error = feeder.get_attr("feed_error")
            if error:
                raise RuntimeError(f"the Feeder failed: {error}")
            if progress is not None and time.monotonic() - last_report >= every:
                last_report = time.monotonic()
                progress(self.progress())
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"simulation not finished after {timeout} s: {info}")
            time.sleep(0.01)
        if progress is not None:
            progress(self.progress())
        self._result = None
        return self.result()

    def result(self) -> Any:
        """The backtest :class:`~osmarkets.backtest.Result` of the replay so far."""
        from .backtest.result import Result

        if self._result is not None:
            return self._result
        record = self["trader"].record()
        points = record["equity"]
        index = pd.DatetimeIndex(
            pd.to_datetime([t for t, _ in points], unit="ns", utc=True), name="time"
        )
        equity = pd.Series([v for _, v in points], index=index, name="equity", dtype=float)
        brains = [h.name for h in self._agents.values() if h.kind == "brain"]
        result = Result.from_run(
            record["fills"], equity, initial_cash=self.cash, prices=self.frames,
            open_positions=record["state"].get("positions", {}), name=",".join(brains),
        )  # fmt: skip
        self._result = result
        return result
