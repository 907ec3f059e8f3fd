"""The GUI's link to a running architecture: a bridge process, and the state it feeds.

The window must never slow the trading path, and a slow window must never build a backlog.
So all osBrain work runs in a separate *bridge* process (:func:`run_bridge`), which only ever
*listens* to the architecture:

* market data: it subscribes to the Router's PUB socket (bars on topic ``BarSeriesID.key`` with
  their sequence number, ticks on ``'<symbol> tick|'``). It reads history as an *observer*
  (``('history', None, bsid, n)``): it is not a subscriber, so it never appears in the Router's
  subscriptions and the lock-step of a simulation never waits for it. A lost bar shows as a gap
  in the sequence and is re-read from the history;
* orders and account: it subscribes to the Trader's ``observers`` PUB socket, which carries
  every order event (accepted, filled, rejected, cancelled) and the account after each broker
  job, numbered; on a gap it re-reads :meth:`~osmarkets.agents.TraderAgent.observer_snapshot`;
* agents' status: it subscribes to the Overmind's status feed (the table it builds anyway);
* it forwards everything, batched, to the window over one ZeroMQ PAIR socket.

PUB sockets never wait for a subscriber, so neither a slow window nor a killed bridge can slow
or stall the architecture. The window side (:class:`Connection`) drains the PAIR socket without
blocking, from a Qt timer, and :class:`GuiState` applies the messages to the pure models.
Nothing here imports Qt.
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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..brokers.base import OrderEvent
from ..data.timeframes import BarSeriesID
from .model import Blotter, CandleModel

_PROTOCOL = pickle.HIGHEST_PROTOCOL
SNAPSHOT_EVENTS = 10_000  # order events read when connecting (the Trader keeps this many)


def _dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=_PROTOCOL)


def _url(address: Any) -> str:
    return f"{address.transport}://{address.address}"


class _Bridge:
    """Runs in the bridge process; see the module docstring."""

    def __init__(self, nsaddr: str, endpoint: str, parent: int, options: dict[str, Any]):
        import osbrain

        self.nsaddr = nsaddr
        self.parent = parent
        self.name = f"gui-{os.getpid()}"
        self.series_every = float(options.get("series_every", 1.0))
        self.ctx = zmq.Context()
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.setsockopt(zmq.SNDTIMEO, 2_000)
        self.pair.connect(endpoint)
        self.outbox: list[tuple] = []
        self.router = osbrain.Proxy("router", nsaddr, timeout=10.0)
        self.lockstep = bool(self.router.get_attr("lockstep"))
        self.sub = self._subscriber(_url(self.router.addr("pub")), None)
        self.req_url = _url(self.router.addr("history"))
        self.req = self._new_req()
        self.watched: dict[BarSeriesID, int] = {}
        self.bar_seq: dict[BarSeriesID, int] = {}
        self.tick_symbols: set[str] = set()
        # the Trader's observers feed, then a snapshot: an update newer than the snapshot that
        # was missed while the subscription reached the Trader shows as a gap
        self.trader = osbrain.Proxy("trader", nsaddr, timeout=5.0)
        self.trader._pyroTimeout = 5.0
        self.trader_sub = self._subscriber(_url(self.trader.addr("observers")), b"")
        self.trader_seq = 0
        self.trader_gaps = 0
        self._trader_snapshot(SNAPSHOT_EVENTS)
        feed = (self.router.get_attr("osm_cfg") or {}).get("status_feed")
        self.status_sub = self._subscriber(feed, b"") if feed else None
        if feed is None:
            self.outbox.append(("status", [{"name": "(no Overmind: no status feed)"}]))
        self.running = True

    def _subscriber(self, url: str, topic: bytes | None) -> zmq.Socket:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(url)
        if topic is not None:
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        return sub

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
            self._request(("ticks", None, bsid.symbol))
            self.sub.setsockopt_string(zmq.SUBSCRIBE, f"{bsid.symbol} tick|")
            self.tick_symbols.add(bsid.symbol)
        self._history(bsid)

    def _history(self, bsid: BarSeriesID) -> None:
        # None: an observer's read, not a subscription (the Router never waits for a GUI)
        _, records, seq = self._request(("history", None, bsid, self.watched[bsid]))
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
        if kind in ("tick", "ticks"):
            _, symbol, _seq, payload = message
            rows = payload if kind == "ticks" else [payload]
            self.outbox.append(("ticks", symbol, [tuple(row) for row in rows]))
        elif kind == "bar":
            _, bsid, seq, bar, _events = message
            bsid = BarSeriesID.parse(bsid)
            if bsid not in self.watched:
                return
            last = self.bar_seq.get(bsid, 0)
            if seq <= last:
                return
            if seq > last + 1:  # bars were lost (high-water mark): reload from the Router
                self._history(bsid)
                if self.bar_seq[bsid] >= seq:
                    return
            self.bar_seq[bsid] = int(seq)
            self.outbox.append(("bar", bsid, int(seq), tuple(bar)))
        # 'probe' (lock-step): meant for the subscribed Brains; an observer ignores it

    # -- orders, account, status ---------------------------------------------------------------
    def _trader_snapshot(self, count: int) -> None:
        """Re-read the events after the last update seen, and the account."""
        snapshot = self.trader.observer_snapshot(count)
        missed = [event for seq, event in snapshot["events"] if seq > self.trader_seq]
        self.trader_seq = max(self.trader_seq, int(snapshot["seq"]))
        self.outbox.append(("account", missed, snapshot["account"]))

    def on_trader(self, data: bytes) -> None:
        kind, seq, events, account = pickle.loads(data)
        if kind != "update" or seq <= self.trader_seq:
            return  # already in the snapshot
        if seq > self.trader_seq + 1:  # updates dropped on the way: re-read what was missed
            self.trader_gaps += 1
            self._trader_snapshot(SNAPSHOT_EVENTS)
            return
        self.trader_seq = seq
        last = self.outbox[-1] if self.outbox else None
        if last is not None and last[0] == "account":  # one message per batch: newest account
            self.outbox[-1] = ("account", last[1] + list(events), account)
        else:
            self.outbox.append(("account", list(events), account))

    def check_trader(self) -> None:
        """Catch updates lost where no later one reveals the gap (before our subscription
        reached the Trader, or at the end of a burst past the high-water mark)."""
        latest = int(self.trader.get_attr("observer_seq"))
        for data in self._drain(self.trader_sub):  # what is already here is no gap
            self.on_trader(data)
        if latest > self.trader_seq:
            self.trader_gaps += 1
            self._trader_snapshot(SNAPSHOT_EVENTS)

    def poll_series(self) -> None:
        subscriptions = self.router.subscriptions()
        keys = {str(b) for rows in subscriptions.values() for b, _ in rows}
        symbols = list(self.router.get_attr("base_timeframes"))
        self.outbox.append(("series", sorted(keys), sorted(symbols)))

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

    @staticmethod
    def _drain(socket: zmq.Socket, limit: int = 10_000) -> list[bytes]:
        out = []
        for _ in range(limit):  # bounded: keep commands and the other feeds responsive
            try:
                out.append(socket.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        return out

    def run(self) -> None:
        poller = zmq.Poller()
        for socket in (self.sub, self.pair, self.trader_sub, self.status_sub):
            if socket is not None:
                poller.register(socket, zmq.POLLIN)
        self.outbox.append(("hello", self.name, self.lockstep))
        next_series = 0.0
        while self.running:
            events = dict(poller.poll(50))
            if self.pair in events:
                for data in self._drain(self.pair):
                    self.guarded("command", self.command, pickle.loads(data))
            if self.sub in events:
                for data in self._drain(self.sub):
                    self.guarded("data", self.on_pub, data)
            if self.trader_sub in events:
                for data in self._drain(self.trader_sub):
                    self.guarded("trader", self.on_trader, data)
            if self.status_sub is not None and self.status_sub in events:
                tables = self._drain(self.status_sub)
                if tables:  # each is the whole table: only the newest matters
                    self.outbox.append(("status", pickle.loads(tables[-1])[2]))
            now = time.monotonic()
            if now >= next_series:
                next_series = now + self.series_every
                self.guarded("series", self.poll_series)
                self.guarded("trader", self.check_trader)
            self.flush()
            if os.getppid() != self.parent:
                break  # the window's process is gone: do not outlive it

    def close(self) -> None:
        for proxy in (self.router, self.trader):
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
    fills: deque[OrderEvent] = field(default_factory=lambda: deque(maxlen=10_000))

    def model(self, bsid: Any) -> CandleModel:
        bsid = BarSeriesID.parse(bsid)
        if bsid not in self.models:
            model = self.models[bsid] = CandleModel(bsid, **self.model_options)
            for event in self.fills:  # a chart opened late still shows the earlier trades
                model.add_fill(event)
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
                _, events, state = message  # every order event, and the broker's account
                for event in events:
                    self.blotter.add_event(event)
                    if event.kind == "filled":
                        self.fills.append(event)
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
