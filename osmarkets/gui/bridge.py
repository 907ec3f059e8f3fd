"""The GUI's link to a running architecture: a bridge process, and the state it feeds.

The window must never slow the trading path, and a slow window must never build a backlog.
So all osBrain work runs in a separate *bridge* process (:func:`run_bridge`):

* it subscribes to the Router's PUB socket (bars on topic ``BarSeriesID.key`` with their
  sequence number, ticks on ``'<symbol> tick|'``), exactly as a Brain does; PUB never waits for
  a subscriber, and a lost bar shows as a gap in the sequence and is re-fetched from the
  Router's history;
* it asks the Router for history (REQ/REP) when the window opens a chart;
* it polls the Trader for new fills and the account, and every agent for its status (the same
  probes as the Overmind), over the name server;
* it forwards everything, batched, to the window over one ZeroMQ PAIR socket.

The window side (:class:`Connection`) drains that socket without blocking, from a Qt timer,
and :class:`GuiState` applies the messages to the pure models. Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..brokers.base import OrderEvent
from ..data.timeframes import BarSeriesID
from .model import Blotter, CandleModel

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def _dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=_PROTOCOL)


# -- in the Trader's process (called through the osBrain proxy) ------------------------------
def _trader_since(agent: Any, seen: int) -> tuple[list[OrderEvent], dict[str, Any], int]:
    """Fills after the first ``seen``, the broker's account state, and the fill count: an
    O(new fills) read, so polling it does not grow with the length of the session."""
    fills = agent.fills
    return list(fills[seen:]), dict(agent.broker_state), len(fills)


# -- the bridge process ------------------------------------------------------------------------
def _url(address: Any) -> str:
    return f"{address.transport}://{address.address}"


class _Bridge:
    """Runs in the bridge process; see the module docstring."""

    def __init__(self, nsaddr: str, endpoint: str, parent: int, options: dict[str, Any]):
        import osbrain

        self.osbrain = osbrain
        self.nsaddr = nsaddr
        self.parent = parent
        self.name = f"gui-{os.getpid()}"
        self.status_every = float(options.get("status_every", 2.0))
        self.account_every = float(options.get("account_every", 0.5))
        self.ctx = zmq.Context()
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.setsockopt(zmq.SNDTIMEO, 2_000)
        self.pair.connect(endpoint)
        self.outbox: list[tuple] = []
        self.router = osbrain.Proxy("router", nsaddr, timeout=10.0)
        self.lockstep = bool(self.router.get_attr("lockstep"))
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(_url(self.router.addr("pub")))
        self.req_url = _url(self.router.addr("history"))
        self.req = self._new_req()
        self.push = self.ctx.socket(zmq.PUSH)  # acknowledgements, in lock-step only
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(_url(self.router.addr("in")))
        self.watched: dict[BarSeriesID, int] = {}
        self.bar_seq: dict[BarSeriesID, int] = {}
        self.tick_symbols: set[str] = set()
        self.fills_seen = 0
        self.proxies: dict[str, Any] = {}
        self.trader: Any = None
        self.running = True

    def _new_req(self) -> zmq.Socket:
        req = self.ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 10_000)
        req.connect(self.req_url)
        return req

    def _request(self, message: tuple) -> tuple:
        self.req.send(_dumps(message))
        try:
            reply = pickle.loads(self.req.recv())
        except zmq.Again:
            self.req.close()
            self.req = self._new_req()
            raise TimeoutError(f"the Router did not answer {message[0]!r}") from None
        if not isinstance(reply, tuple) or reply[0] != "ok":
            raise RuntimeError(f"the Router refused {message!r:.100}: {reply!r:.200}")
        return reply

    # -- commands from the window -----------------------------------------------------------
    def watch(self, bsid: Any, count: int) -> None:
        bsid = BarSeriesID.parse(bsid)
        self.watched[bsid] = int(count)
        self.sub.setsockopt_string(zmq.SUBSCRIBE, bsid.key)
        if bsid.symbol not in self.tick_symbols and not self.lockstep:
            self._request(("ticks", self.name, bsid.symbol))
            self.sub.setsockopt_string(zmq.SUBSCRIBE, f"{bsid.symbol} tick|")
            self.tick_symbols.add(bsid.symbol)
        self._history(bsid)

    def _history(self, bsid: BarSeriesID) -> None:
        _, records, seq = self._request(("history", self.name, bsid, self.watched[bsid]))
        self.bar_seq[bsid] = int(seq)
        self.outbox.append(("history", bsid, records, int(seq)))

    def command(self, message: tuple) -> None:
        kind = message[0]
        if kind == "watch":
            self.watch(message[1], message[2])
        elif kind == "stop":
            self.running = False
        else:
            self.outbox.append(("error", f"unknown command {kind!r}"))

    # -- market data ---------------------------------------------------------------------------
    def on_pub(self, data: bytes) -> None:
        cut = data.find(b"|") + 1
        message = pickle.loads(memoryview(data)[cut:])
        kind = message[0]
        if kind == "probe":  # lock-step: the Router waits until our SUB socket is live
            self.push.send(_dumps(("probe_ack", self.name, BarSeriesID.parse(message[1]).key)))
        elif kind in ("tick", "ticks"):
            _, symbol, _seq, payload = message
            rows = payload if kind == "ticks" else [payload]
            self.outbox.append(("ticks", symbol, [tuple(row) for row in rows]))
        elif kind == "bar":
            _, bsid, seq, bar, events = message
            bsid = BarSeriesID.parse(bsid)
            if bsid not in self.watched:
                return
            if events is not None:  # lock-step: acknowledge, or the replay would wait for us
                self.push.send(_dumps(("ack", self.name, bsid.key, int(seq), 0)))
            last = self.bar_seq.get(bsid, 0)
            if seq <= last:
                return
            if seq > last + 1:  # bars were lost (high-water mark): reload from the Router
                self._history(bsid)
                if self.bar_seq[bsid] >= seq:
                    return
            self.bar_seq[bsid] = int(seq)
            self.outbox.append(("bar", bsid, int(seq), tuple(bar)))

    # -- polling -------------------------------------------------------------------------------
    def poll_account(self) -> None:
        if self.trader is None:
            self.trader = self.osbrain.Proxy("trader", self.nsaddr, timeout=5.0)
            self.trader._pyroTimeout = 3.0
        fills, state, total = self.trader.execute_as_method(_trader_since, self.fills_seen)
        self.fills_seen = total
        self.outbox.append(("account", fills, state))
        subscriptions = self.router.subscriptions()
        keys = {str(b) for rows in subscriptions.values() for b, _ in rows}
        symbols = list(self.router.get_attr("base_timeframes"))
        self.outbox.append(("series", sorted(keys), sorted(symbols)))

    def poll_status(self) -> None:
        ns = self.osbrain.NSProxy(self.nsaddr)
        try:
            names = [n for n in ns.agents() if n != self.name]
        finally:
            ns.release()
        rows = []
        for name in sorted(names):
            row: dict[str, Any] = {"name": name, "answers": False, "running": False}
            try:
                proxy = self.proxies.get(name)
                if proxy is None:
                    proxy = self.osbrain.Proxy(name, self.nsaddr, timeout=2.0)
                    proxy._pyroTimeout = 2.0
                    self.proxies[name] = proxy
                row["answers"] = proxy.unsafe.ping() == "pong"
                row["running"] = bool(proxy.unsafe.is_running())
                if row["running"] and name != "logger":
                    with contextlib.suppress(AttributeError, Exception):
                        row.update(proxy.unsafe.osm_stats())
            except Exception as exc:
                self.proxies.pop(name, None)
                row["problem"] = f"{type(exc).__name__}: {exc}"[:200]
            rows.append(row)
        self.outbox.append(("status", rows))

    # -- loop ------------------------------------------------------------------------------------
    def flush(self) -> None:
        if self.outbox:
            batch, self.outbox = self.outbox, []
            self.pair.send(_dumps(("batch", batch)))

    def guarded(self, what: str, function: Any, *args: Any) -> None:
        try:
            function(*args)
        except Exception as exc:
            self.outbox.append(("error", f"{what}: {type(exc).__name__}: {exc}"))

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.pair, zmq.POLLIN)
        self.outbox.append(("hello", self.name, self.lockstep))
        next_account = next_status = 0.0
        while self.running:
            events = dict(poller.poll(50))
            if self.pair in events:
                while True:
                    try:
                        data = self.pair.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.guarded("command", self.command, pickle.loads(data))
            if self.sub in events:
                for _ in range(10_000):  # drain, but keep commands and polls responsive
                    try:
                        data = self.sub.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.guarded("data", self.on_pub, data)
            now = time.monotonic()
            if now >= next_account:
                next_account = now + self.account_every
                self.guarded("trader", self.poll_account)
            if now >= next_status:
                next_status = now + self.status_every
                self.guarded("status", self.poll_status)
            self.flush()
            if os.getppid() != self.parent:
                break  # the window's process is gone: do not outlive it

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.router.unsubscribe_brain(self.name)  # the Router stops waiting for us
        for proxy in [self.router, self.trader, *self.proxies.values()]:
            with contextlib.suppress(Exception):
                proxy._pyroRelease()
        self.ctx.destroy(linger=0)


def run_bridge(nsaddr: str, endpoint: str, parent: int, options: dict[str, Any]) -> None:
    """Entry point of the bridge process."""
    bridge = None
    try:
        bridge = _Bridge(nsaddr, endpoint, parent, options)
        bridge.run()
    except Exception:
        with contextlib.suppress(Exception):
            ctx: zmq.Context = zmq.Context.instance()
            pair = ctx.socket(zmq.PAIR)
            pair.setsockopt(zmq.LINGER, 1_000)
            pair.connect(endpoint)
            pair.send(_dumps(("batch", [("error", traceback.format_exc())])))
            pair.close()
    finally:
        if bridge is not None:
            bridge.close()


# -- the window's side ----------------------------------------------------------------------------
class Connection:
    """Starts the bridge process for the architecture whose name server is at ``nsaddr``
    (``'host:port'`` or an osBrain SocketAddress) and exchanges messages with it.

    :meth:`drain` never blocks: it returns whatever arrived since the last call.
    """

    def __init__(self, nsaddr: Any, **options: Any) -> None:
        self.nsaddr = str(nsaddr)
        self.dir = tempfile.mkdtemp(prefix="osm-gui-")
        self.endpoint = f"ipc://{self.dir}/bridge" if os.name == "posix" else ""
        self.ctx = zmq.Context()
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.setsockopt(zmq.RCVHWM, 0)
        if self.endpoint:
            self.pair.bind(self.endpoint)
        else:
            port = self.pair.bind_to_random_port("tcp://127.0.0.1")
            self.endpoint = f"tcp://127.0.0.1:{port}"
        # spawn, not fork: the window's process may already run Qt threads
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=run_bridge,
            args=(self.nsaddr, self.endpoint, os.getpid(), options),
            name="osmarkets-gui-bridge",
            daemon=True,
        )
        self.process.start()
        self.closed = False
        self.pending: list[tuple] = []

    def send(self, message: tuple) -> None:
        """Queue a command; it leaves as soon as the bridge is connected (never blocks)."""
        self.pending.append(message)
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                self.pair.send(_dumps(self.pending[0]), zmq.NOBLOCK)
            except zmq.Again:
                return
            self.pending.pop(0)

    def watch(self, bsid: Any, count: int = 500) -> None:
        """Ask for a series: its last ``count`` bars first, then every new bar and tick."""
        self.send(("watch", BarSeriesID.parse(bsid), int(count)))

    def drain(self, limit: int = 100_000) -> list[tuple]:
        self._flush()
        out: list[tuple] = []
        for _ in range(limit):
            try:
                data = self.pair.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            kind, batch = pickle.loads(data)
            out.extend(batch)
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Stop the bridge process (the architecture is left alone)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(zmq.ZMQError):
            self.send(("stop",))
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class GuiState:
    """Everything the window shows, updated from the bridge's messages (no Qt here)."""

    history: int = 500
    models: dict[BarSeriesID, CandleModel] = field(default_factory=dict)
    blotter: Blotter = field(default_factory=Blotter)
    series: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_price: dict[str, float] = field(default_factory=dict)
    messages: int = 0
    connected: bool = False
    lockstep: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)

    def model(self, bsid: Any) -> CandleModel:
        bsid = BarSeriesID.parse(bsid)
        if bsid not in self.models:
            self.models[bsid] = CandleModel(bsid, **self.model_options)
        return self.models[bsid]

    def apply(self, messages: list[tuple]) -> None:
        for message in messages:
            self.messages += 1
            kind = message[0]
            if kind == "bar":
                _, bsid, seq, bar = message
                model = self.models.get(bsid)
                if model is not None:
                    model.add_bar(bar, seq)
                    self.last_price[bsid.symbol] = float(bar[4])
            elif kind == "ticks":
                _, symbol, rows = message
                for model in self.models.values():
                    if model.bsid.symbol == symbol:
                        for row in rows:
                            model.add_tick(row)
                if rows:
                    self.last_price[symbol] = (rows[-1][1] + rows[-1][2]) / 2
            elif kind == "history":
                _, bsid, records, seq = message
                self.model(bsid).load(records, seq)
            elif kind == "account":
                _, fills, state = message
                for event in fills:
                    self.blotter.add_event(event)
                    for model in self.models.values():
                        model.add_fill(event)
                if state:
                    self.blotter.account = state
                    self.blotter.dirty = True
            elif kind == "series":
                self.series, self.symbols = list(message[1]), list(message[2])
            elif kind == "status":
                self.status = list(message[1])
            elif kind == "hello":
                self.connected, self.lockstep = True, bool(message[2])
            elif kind == "error":
                self.errors.append(str(message[1]))
                del self.errors[:-50]
