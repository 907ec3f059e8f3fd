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

No pickle: the bridge decodes the architecture's feeds with their :mod:`osmarkets.wire`
schemas, and the PAIR link has its own (below): MessagePack decoded straight into the typed
records it declares, so a message can only ever build data. Anything that does not decode is
counted and shown as an error, never run. The bridge holds the deployment's keys
(:class:`~osmarkets.agents.auth.DeploymentKeys`, handed over as an argument of the 'spawn'
process, never through the environment or a command line): its Pyro proxies carry the HMAC key
and its tcp ZeroMQ sockets are CURVE clients.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import zmq

from .. import wire
from ..brokers.base import OrderEvent
from ..data.timeframes import BarSeriesID
from ..data.types import Bar, Tick
from .model import Blotter, CandleModel

if TYPE_CHECKING:
    from ..agents.auth import DeploymentKeys

SNAPSHOT_EVENTS = 10_000  # order events read when connecting (the Trader keeps this many)
PLOTS_KEPT = 100_000  # values of one plotted name the window keeps
REPORTED_REFUSALS = 20  # undecodable messages of a feed reported one by one (then every 1000th)


# -- the PAIR link's schema -----------------------------------------------------------------------
# Written as plain tuples (``wire.encode``), read back as these records: ``[kind, field, ...]``.
class PairMessage(wire.Message):
    """Base of every message between the window and its bridge."""


# bridge -> window: a batch of items
class BarItem(PairMessage, tag="bar"):
    """A completed bar of a watched series, with the Router's sequence number."""

    bsid: wire.BsidTuple
    seq: int
    bar: Bar


class TicksItem(PairMessage, tag="ticks"):
    symbol: str
    ticks: list[Tick]


class HistoryItem(PairMessage, tag="history"):
    """The Router's history of a series: ``records`` are BAR_DTYPE bytes (``wire.pack_bars``)."""

    bsid: wire.BsidTuple
    records: bytes
    seq: int


class AccountItem(PairMessage, tag="account"):
    """Order events (oldest first) and the broker's account (empty: unchanged)."""

    events: list[OrderEvent]
    account: dict[str, Any]


class SeriesItem(PairMessage, tag="series"):
    series: list[str]
    symbols: list[str]


class StatusItem(PairMessage, tag="status"):
    rows: list[dict[str, Any]]


class HelloItem(PairMessage, tag="hello"):
    name: str
    lockstep: bool


class ErrorItem(PairMessage, tag="error"):
    text: str


class BrainsItem(PairMessage, tag="brains"):
    """The Trader's :meth:`~osmarkets.agents.TraderAgent.operator_status`: each Brain's
    state, positions, P&L, pending orders; the kill switch."""

    status: dict[str, Any]


class PlotItem(PairMessage, tag="plot"):
    """Values a Brain plotted (``Brain.plot``) on the bars of ``bsid``: ``full`` replaces
    what the window holds of ``brain:name`` (history), else they are added (live)."""

    brain: str
    bsid: wire.BsidTuple
    name: str
    panel: str
    times: list[int]
    values: list[float]
    full: bool


PairItem = (
    BarItem | TicksItem | HistoryItem | AccountItem | SeriesItem | StatusItem | HelloItem
    | ErrorItem | BrainsItem | PlotItem
)  # fmt: skip


class Batch(PairMessage, tag="batch"):
    items: list[PairItem]


class _LooseBatch(PairMessage, tag="batch"):
    """A batch whose items are decoded one by one (to keep the good ones of a bad batch)."""

    items: list[msgspec.Raw]


# window -> bridge: commands
class Watch(PairMessage, tag="watch"):
    """Send the last ``count`` bars of ``bsid``, then its every new bar and tick."""

    bsid: wire.BsidTuple
    count: int


class Stop(PairMessage, tag="stop"):
    pass


class Control(PairMessage, tag="control"):
    """An operator's control from the window's Brains panel (:mod:`osmarkets.operator`):
    ``action`` one of :data:`CONTROLS`, ``brain`` the Brain it applies to (None: all)."""

    action: str
    brain: str | None


#: the controls the window may ask for, and the Controls method each calls
CONTROLS = {"pause": "pause", "resume": "resume", "flatten": "flatten",
            "cancel": "cancel_all", "kill": "kill"}  # fmt: skip

#: What each end of the PAIR socket accepts.
TO_WINDOW = Batch
TO_BRIDGE = Watch | Stop | Control


def _url(address: Any) -> str:
    return f"{address.transport}://{address.address}"


class WindowDecoder:
    """The window's side of the PAIR link: a batch's bytes to the tuples :meth:`GuiState.apply`
    takes, with :class:`~osmarkets.data.timeframes.BarSeriesID` objects, ``BAR_DTYPE`` arrays
    and :class:`~osmarkets.brokers.base.OrderEvent` records. Whatever does not decode becomes
    an ``('error', text)`` item and is counted in :attr:`undecodable`; it never raises."""

    def __init__(self) -> None:
        self._batch = msgspec.msgpack.Decoder(Batch)
        self._loose = msgspec.msgpack.Decoder(_LooseBatch)
        self._item = msgspec.msgpack.Decoder(PairItem)
        self._bsids: dict[tuple, BarSeriesID] = {}
        self.undecodable = 0

    def __call__(self, data: bytes | memoryview) -> list[tuple]:
        try:
            items: list[Any] = self._batch.decode(data).items
        except msgspec.MsgspecError:
            items = self._salvage(data)
        return [self._convert(item) for item in items]

    def _refused(self, what: str, exc: Exception) -> tuple:
        self.undecodable += 1
        return ("error", f"undecodable {what} from the bridge: {exc}")

    def _salvage(self, data: bytes | memoryview) -> list[Any]:
        """Each item of a batch that did not decode as a whole: the good ones, and errors."""
        try:
            raw = self._loose.decode(data).items
        except msgspec.MsgspecError as exc:
            return [self._refused("message", exc)]
        items: list[Any] = []
        for part in raw:
            try:
                items.append(self._item.decode(part))
            except msgspec.MsgspecError as exc:
                items.append(self._refused("item", exc))
        return items

    def _bsid(self, value: tuple) -> BarSeriesID:
        bsid = self._bsids.get(value)
        if bsid is None:
            bsid = BarSeriesID(*value)  # validated: a bad symbol or time frame raises
            if len(self._bsids) < 10_000:
                self._bsids[value] = bsid
        return bsid

    def _convert(self, item: Any) -> tuple:
        if type(item) is tuple:  # already an error
            return item
        kind, *fields = wire.as_tuple(item)
        try:
            if kind in ("bar", "history"):
                fields[0] = self._bsid(fields[0])
            if kind == "plot":
                fields[1] = self._bsid(fields[1])
            if kind == "history":
                fields[1] = wire.unpack_bars(fields[1])
        except Exception as exc:  # a bad bar series id, bar records of a wrong length
            return self._refused(f"{kind!r} item", exc)
        return (kind, *fields)


class _Bridge:
    """Runs in the bridge process; see the module docstring."""

    def __init__(
        self,
        nsaddr: str,
        ctx: zmq.Context,
        pair: zmq.Socket,
        parent: int,
        options: dict[str, Any],
        keys: DeploymentKeys | None,
    ) -> None:
        from ..agents.auth import install_pyro_key
        from ..agents.proxy import AgentProxy

        self.nsaddr = nsaddr
        self.parent = parent
        self.keys = keys
        self.name = f"gui-{os.getpid()}"
        self.series_every = float(options.get("series_every", 1.0))
        self.plots_every = float(options.get("plots_every", 0.5))
        self.brain_proxies: dict[str, Any] = {}
        self.plot_seq: dict[str, tuple[int, int]] = {}  # Brain -> (its pid, last plot number)
        self.ctx = ctx
        self.pair = pair  # connected to the window: the only peer its PAIR socket accepts
        self.router: Any = None
        self.trader: Any = None
        self.outbox: list[tuple] = []
        self.refused: dict[str, int] = {}  # undecodable messages, per feed
        self.commands = wire.Decoder(TO_BRIDGE)
        self.pub_decoder = wire.Decoder(wire.BRAIN_PUB)
        self.reply_decoder = wire.Decoder(wire.HISTORY_REPLY)
        self.trader_decoder = wire.Decoder(wire.OBSERVERS)
        self.status_decoder = wire.Decoder(wire.STATUS)
        if keys is not None:
            install_pyro_key(keys.pyro)  # before the first proxy: every proxy carries it
        self.router = AgentProxy("router", nsaddr, timeout=10.0)
        self.lockstep = bool(self.router.get_attr("lockstep"))
        self.sub = self._subscriber(_url(self.router.addr("pub")), None)
        self.req_url = _url(self.router.addr("history"))
        self.req = self._new_req()
        self.watched: dict[BarSeriesID, int] = {}
        self.bar_seq: dict[BarSeriesID, int] = {}
        self.tick_symbols: set[str] = set()
        # the Trader's observers feed, then a snapshot: an update newer than the snapshot that
        # was missed while the subscription reached the Trader shows as a gap
        self.trader = AgentProxy("trader", nsaddr, timeout=5.0, call_timeout=5.0)
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
        sub.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        _secure(sub, url, self.keys)
        sub.connect(url)
        if topic is not None:
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        return sub

    def _new_req(self) -> zmq.Socket:
        req = self.ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 10_000)
        req.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        _secure(req, self.req_url, self.keys)
        req.connect(self.req_url)
        return req

    def _request(self, message: tuple) -> tuple:
        self.req.send(wire.encode(message))
        try:
            data = self.req.recv()
        except zmq.Again:
            self.req.close()
            self.req = self._new_req()
            raise TimeoutError(f"the Router did not answer {message[0]!r}") from None
        try:
            reply = self.reply_decoder(data)
        except wire.WireError as exc:
            raise RuntimeError(f"the Router refused {message!r:.100} ({exc})") from None
        if reply[0] != "ok":
            raise RuntimeError(f"the Router refused {message!r:.100}: {reply!r:.200}")
        return reply

    def _refuse(self, feed: str, exc: Exception) -> None:
        """Count a message that did not decode; report the first ones, then every 1000th."""
        count = self.refused[feed] = self.refused.get(feed, 0) + 1
        if count <= REPORTED_REFUSALS or count % 1000 == 0:
            self.outbox.append(("error", f"{feed}: undecodable message #{count} dropped: {exc}"))

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
        # None: an observer's read, not a subscription (the Router never waits for a GUI)
        _, records, seq = self._request(("history", None, tuple(bsid), self.watched[bsid]))
        self.bar_seq[bsid] = int(seq)
        self.outbox.append(("history", tuple(bsid), records or b"", int(seq)))

    def command(self, data: bytes) -> None:
        try:
            message = self.commands(data)
        except wire.WireError as exc:
            self._refuse("command", exc)
            return
        if message[0] == "watch":
            self.watch(message[1], message[2])
        elif message[0] == "control":
            self.control(message[1], message[2])
        else:  # 'stop'
            self.running = False

    def control(self, action: str, brain: str | None) -> None:
        """Pause, resume, flatten, cancel or kill, as the window's buttons ask; the Brains
        panel is refreshed at once."""
        from ..operator import Controls

        method = CONTROLS.get(action)
        if method is None:
            raise ValueError(f"unknown control {action!r:.40}")
        controls = Controls(lambda name: self.trader if name == "trader" else self._brain(name))
        call = getattr(controls, method)
        call() if action == "kill" else call(brain)
        self.poll_brains()

    # -- Brains: their state, and what they plot ---------------------------------------------
    def _brain(self, name: str) -> Any:
        from ..agents.proxy import AgentProxy

        proxy = self.brain_proxies.get(name)
        if proxy is None:
            proxy = AgentProxy(name, self.nsaddr, timeout=5.0, call_timeout=5.0)
            self.brain_proxies[name] = proxy
        return proxy

    def poll_brains(self) -> None:
        """The Trader's view of every Brain (state, positions, P&L, pending orders)."""
        status = self.trader.operator_status()
        self.outbox.append(("brains", status))
        self.brain_names = sorted(status.get("brains") or {})

    brain_names: list[str] = []

    def poll_plots(self) -> None:
        """What each Brain plotted since the last look (everything it keeps, the first time
        and after it restarted), grouped per series and name for the window."""
        for brain in self.brain_names:
            try:
                proxy = self._brain(brain)
                pid, seq = self.plot_seq.get(brain, (0, 0))
                answer = proxy.osm_plots_since(seq)
            except Exception:  # a Brain restarting: a new proxy next time
                stale = self.brain_proxies.pop(brain, None)
                if stale is not None:
                    with contextlib.suppress(Exception):
                        stale._pyroRelease()
                continue
            if answer["pid"] != pid and not answer["full"]:  # a new process: everything
                self.plot_seq[brain] = (int(answer["pid"]), 0)
                continue
            self.plot_seq[brain] = (int(answer["pid"]), int(answer["seq"]))
            grouped: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
            for series, name, panel, when, value in answer["points"]:
                times, values = grouped.setdefault((series, name, panel), ([], []))
                times.append(int(when))
                values.append(float(value))
            for (series, name, panel), (times, values) in grouped.items():
                bsid = tuple(BarSeriesID.parse(series))
                self.outbox.append(("plot", brain, bsid, name, panel, times, values,
                                    bool(answer["full"])))  # fmt: skip

    # -- market data ---------------------------------------------------------------------------
    def on_pub(self, data: bytes) -> None:
        cut = data.find(b"|") + 1
        try:
            message = self.pub_decoder(memoryview(data)[cut:])
        except wire.WireError as exc:
            self._refuse("data", exc)
            return
        kind = message[0]
        if kind == "tick":
            self.outbox.append(("ticks", message[1], [message[3]]))
        elif kind == "ticks":
            self.outbox.append(("ticks", message[1], message[3]))
        elif kind == "bar":
            # a BarSeriesID equals (and hashes like) its plain tuple: no parsing per bar
            _, bsid, seq, bar, _events, _backfilled = message
            if bsid not in self.watched:
                return
            last = self.bar_seq.get(bsid, 0)
            if seq <= last:
                return
            if seq > last + 1:  # bars were lost (high-water mark): reload from the Router
                self._history(BarSeriesID.parse(bsid))
                if self.bar_seq[bsid] >= seq:
                    return
            self.bar_seq[bsid] = seq
            self.outbox.append(("bar", bsid, seq, bar))
        # 'probe' (lock-step): meant for the subscribed Brains; an observer ignores it

    # -- orders, account, status ---------------------------------------------------------------
    def _trader_snapshot(self, count: int) -> None:
        """Re-read the events after the last update seen, and the account."""
        snapshot = self.trader.observer_snapshot(count)
        missed = [event for seq, event in snapshot["events"] if seq > self.trader_seq]
        self.trader_seq = max(self.trader_seq, int(snapshot["seq"]))
        self.outbox.append(("account", missed, dict(snapshot["account"])))

    def on_trader(self, data: bytes) -> None:
        try:
            _, seq, events, account = self.trader_decoder(data)
        except wire.WireError as exc:
            self._refuse("trader", exc)
            return
        if seq <= self.trader_seq:
            return  # already in the snapshot
        if seq > self.trader_seq + 1:  # updates dropped on the way: re-read what was missed
            self.trader_gaps += 1
            self._trader_snapshot(SNAPSHOT_EVENTS)
            return
        self.trader_seq = seq
        last = self.outbox[-1] if self.outbox else None
        if last is not None and last[0] == "account":  # one message per batch: newest account
            self.outbox[-1] = ("account", last[1] + events, account)
        else:
            self.outbox.append(("account", events, account))

    def on_status(self, tables: list[bytes]) -> None:
        """Each table is the whole table: only the newest that decodes matters."""
        for data in reversed(tables):
            try:
                _, _seq, rows = self.status_decoder(data)
            except wire.WireError as exc:
                self._refuse("status", exc)
                continue
            self.outbox.append(("status", rows))
            return

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
        symbols = [str(symbol) for symbol in self.router.get_attr("base_timeframes")]
        self.outbox.append(("series", sorted(keys), sorted(symbols)))

    # -- loop ------------------------------------------------------------------------------------
    def flush(self) -> None:
        if self.outbox:
            batch, self.outbox = self.outbox, []
            self.pair.send(encode_batch(batch))

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
        next_series = next_plots = 0.0
        while self.running:
            events = dict(poller.poll(50))
            if self.pair in events:
                for data in self._drain(self.pair):
                    self.guarded("command", self.command, data)
            if self.sub in events:
                for data in self._drain(self.sub):
                    self.guarded("data", self.on_pub, data)
            if self.trader_sub in events:
                for data in self._drain(self.trader_sub):
                    self.guarded("trader", self.on_trader, data)
            if self.status_sub is not None and self.status_sub in events:
                tables = self._drain(self.status_sub)
                if tables:
                    self.guarded("status", self.on_status, tables)
            now = time.monotonic()
            if now >= next_series:
                next_series = now + self.series_every
                self.guarded("series", self.poll_series)
                self.guarded("trader", self.check_trader)
                self.guarded("brains", self.poll_brains)
            if now >= next_plots:
                next_plots = now + self.plots_every
                self.guarded("plots", self.poll_plots)
            self.flush()
            if os.getppid() != self.parent:
                break  # the window's process is gone: do not outlive it

    def close(self) -> None:
        for proxy in (self.router, self.trader, *self.brain_proxies.values()):
            if proxy is not None:
                with contextlib.suppress(Exception):
                    proxy._pyroRelease()


def encode_batch(items: list[tuple]) -> bytes:
    """``('batch', items)`` for the window; an item that cannot be encoded is replaced by an
    ``('error', ...)`` item naming it (the others still go)."""
    try:
        return wire.encode(("batch", items))
    except Exception:
        kept: list[tuple] = []
        for item in items:
            try:
                wire.encode(item)
                kept.append(item)
            except Exception as exc:
                kept.append(("error", f"cannot forward a {item[0]!r} message: {exc}"))
        return wire.encode(("batch", kept))


def _secure(
    socket: zmq.Socket, url: str, keys: DeploymentKeys | None, server: bool = False
) -> None:
    """CURVE for a tcp ``url`` (ipc needs none; importing the agents costs half a second)."""
    if keys is not None and url.startswith("tcp://"):
        from ..agents.auth import secure_socket

        secure_socket(socket, url, keys, server=server)


def start_ignoring_sigint(process: Any) -> None:
    """Start a spawned process that ignores Ctrl-C until it installs its own handler: a
    terminal's SIGINT reaches the whole process group, and a child still importing would die
    with a KeyboardInterrupt traceback. (An ignored signal stays ignored across exec.)"""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to do
        process.start()
        return
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def run_bridge(
    nsaddr: str,
    endpoint: str,
    parent: int,
    options: dict[str, Any],
    keys: DeploymentKeys | None = None,
) -> None:
    """Entry point of the bridge process. ``keys``: the deployment's (an argument of the spawned
    process: never in its environment or command line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the window's process stops it
    ctx = zmq.Context()
    pair = ctx.socket(zmq.PAIR)
    pair.setsockopt(zmq.LINGER, 0)
    pair.setsockopt(zmq.SNDTIMEO, 2_000)
    _secure(pair, endpoint, keys)
    pair.connect(endpoint)
    bridge = None
    try:
        bridge = _Bridge(nsaddr, ctx, pair, parent, options, keys)
        bridge.run()
    except Exception:
        text = traceback.format_exc()
        if keys is None:
            text += "(no deployment keys were given: Connection(nsaddr, keys=system.keys))\n"
        with contextlib.suppress(Exception):
            pair.setsockopt(zmq.LINGER, 2_000)  # the window must see why
            pair.send(encode_batch([("error", text)]))
    finally:
        if bridge is not None:
            bridge.close()
        ctx.destroy()  # each socket's own linger: none but the error's


# -- the window's side ----------------------------------------------------------------------------
class Connection:
    """Starts the bridge process for the architecture whose name server is at ``nsaddr``
    (``'host:port'`` or an osBrain SocketAddress) and exchanges messages with it. ``keys``: the
    deployment's :class:`~osmarkets.agents.auth.DeploymentKeys` (``system.keys``, or read from
    its key file with :func:`~osmarkets.agents.auth.read_key_file`).

    :meth:`drain` never blocks: it returns whatever arrived since the last call.
    """

    def __init__(self, nsaddr: Any, keys: DeploymentKeys | None = None, **options: Any) -> None:
        self.nsaddr = str(nsaddr)
        self.dir = tempfile.mkdtemp(prefix="osm-gui-")  # mode 0700: only this user reaches it
        self.endpoint = f"ipc://{self.dir}/bridge" if os.name == "posix" else ""
        self.ctx = zmq.Context()
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.setsockopt(zmq.RCVHWM, 0)
        if self.endpoint:
            self.pair.bind(self.endpoint)
        else:
            _secure(self.pair, "tcp://127.0.0.1", keys, server=True)
            port = self.pair.bind_to_random_port("tcp://127.0.0.1")
            self.endpoint = f"tcp://127.0.0.1:{port}"
        self.decoder = WindowDecoder()
        # spawn, not fork: the window's process may already run Qt threads; the keys travel
        # pickled through the pipe that starts the child
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=run_bridge,
            args=(self.nsaddr, self.endpoint, os.getpid(), options, keys),
            name="osmarkets-gui-bridge",
            daemon=True,
        )
        start_ignoring_sigint(self.process)
        self.closed = False
        self.pending: list[bytes] = []

    @property
    def undecodable(self) -> int:
        """Messages (or items) from the bridge that did not decode (each shown as an error)."""
        return self.decoder.undecodable

    def send(self, message: tuple) -> None:
        """Queue a command (``('watch', bsid, count)`` or ``('stop',)``); it leaves as soon as
        the bridge is connected (never blocks)."""
        self.pending.append(wire.encode(message))
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                self.pair.send(self.pending[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            self.pending.pop(0)

    def watch(self, bsid: Any, count: int = 500) -> None:
        """Ask for a series: its last ``count`` bars first, then every new bar and tick."""
        self.send(("watch", tuple(BarSeriesID.parse(bsid)), int(count)))

    def control(self, action: str, brain: str | None = None) -> None:
        """An operator's control (``'pause'``, ``'resume'``, ``'flatten'``, ``'cancel'``,
        ``'kill'``) for ``brain`` (None: every Brain); the bridge answers with the Brains'
        state, or an error."""
        if action not in CONTROLS:
            raise ValueError(f"control: expected one of {', '.join(CONTROLS)}, got {action!r}")
        self.send(("control", action, brain))

    def drain(self, limit: int = 100_000) -> list[tuple]:
        self._flush()
        out: list[tuple] = []
        for _ in range(limit):
            try:
                data = self.pair.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            out.extend(self.decoder(data))
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
    #: the Trader's operator status: ``{'kill_switch': bool, 'brains': {name: row}, ...}``
    brains: dict[str, Any] = field(default_factory=dict)
    #: what the Brains plotted: (series, 'brain:name') -> (panel, {bar time: value})
    plots: dict[tuple[BarSeriesID, str], tuple[str, dict[int, float]]] = field(
        default_factory=dict
    )

    def model(self, bsid: Any) -> CandleModel:
        bsid = BarSeriesID.parse(bsid)
        if bsid not in self.models:
            model = self.models[bsid] = CandleModel(bsid, **self.model_options)
            for event in self.fills:  # a chart opened late still shows the earlier trades
                model.add_fill(event)
            for (series, name), (panel, values) in self.plots.items():  # and the plots
                if series == bsid:
                    model.load_plots(name, panel, np.array(list(values), dtype=np.int64),
                                     np.array(list(values.values()), dtype=float))  # fmt: skip
        return self.models[bsid]

    def apply(self, messages: list[tuple]) -> None:
        """Apply the bridge's messages (from :meth:`Connection.drain`) to the models; a message
        that cannot be applied (a history whose times go backwards...) becomes an error."""
        for message in messages:
            self.messages += 1
            try:
                self._apply(message)
            except Exception as exc:
                kind = message[0] if message else "?"
                self._error(f"{kind}: {type(exc).__name__}: {exc}")

    def _plot(self, brain: str, bsid: BarSeriesID, name: str, panel: str, times: list[int],
              values: list[float], full: bool) -> None:  # fmt: skip
        key = f"{brain}:{name}"
        held = self.plots.get((bsid, key))
        kept = {} if full or held is None else held[1]
        kept.update(zip(times, values, strict=True))
        for old in list(kept)[: max(0, len(kept) - PLOTS_KEPT)]:
            del kept[old]
        self.plots[(bsid, key)] = (panel, kept)
        model = self.models.get(bsid)
        if model is None:
            return
        if full:
            model.load_plots(key, panel, np.array(list(kept), dtype=np.int64),
                             np.array(list(kept.values()), dtype=float))  # fmt: skip
        else:
            for when, value in zip(times, values, strict=True):
                model.add_plot(key, panel, when, value)

    def _error(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-50]

    def _apply(self, message: tuple) -> None:
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
        elif kind == "brains":
            self.brains = dict(message[1])
        elif kind == "plot":
            self._plot(*message[1:])
        elif kind == "error":
            self._error(str(message[1]))
