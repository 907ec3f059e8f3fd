"""The Router: stores market data, resamples it into every subscribed bar series, publishes
completed bars and answers history requests. Broker-independent.

Sockets
    ``in`` (PULL): ticks and bars from Feeders (``('bars', symbol, bars)``: a replay's batch,
    each bar handled as if it came alone), acknowledgements from Brains and the Trader.
    ``('backfill', symbol, ticks)``: quotes a Feeder rebuilt for a gap of its feed, handled as
    ticks; a bar they complete, or that holds one of them, is published with
    ``backfilled=True``.
    ``pub`` (PUB): completed bars, topic = ``BarSeriesID.key``, message
    ``('bar', bsid, seq, bar, events, backfilled)``; ticks on topic ``'<symbol> tick|'``.
    ``history`` (REP): ``('history', brain, bsid, count)`` -> ``('ok', records, seq)``;
    with ``brain=None`` the caller is an observer (a GUI): it gets the bars but is not
    registered as a subscriber, so the lock-step never waits for it.
    ``market`` (PUSH): every tick or bar to the Trader, which fills simulated orders on them.

Lock-step (simulation)
    With ``lockstep`` the Router runs one *step* (one tick or one base bar) at a time:

    1. it pushes the step to the Trader with the number of orders each Brain has sent so far
       (``orders`` watermark); the Trader waits until it has received them all, runs the
       broker on the step (fills at this bar's open), and answers ``trader_ack`` with the
       number of events it has sent to each Brain (``events`` watermark);
    2. it aggregates the step and publishes the completed bars carrying that ``events``
       watermark; a Brain holds a bar back until it has received that many order events, so
       its positions are current when ``on_new_bar`` runs;
    3. it waits for an ``ack`` from every Brain subscribed to a published series (each ack
       carries the Brain's order count) before the next step.

    So a Brain sees bar t+1 only after the fills its orders of bar t got at t+1's open, exactly
    as the in-process backtest runs.

Runs (``lockstep_run`` > 1, the default of a simulation)
    One step as above costs four message hops (Router -> Trader -> Router -> Brain -> Router).
    When the Trader's acknowledgement says the broker is *quiet* (no open order, no margin
    closeout possible: no step can produce an order event until a Brain orders again) and a
    single Brain is subscribed, the Router publishes the next steps' bars too, as far as its
    input goes (a *run*, up to ``lockstep_run`` steps, grown and shrunk with what the Brain
    does), marked in the watermark dict with ``@run``, ``@step`` and ``@end`` (names no Brain
    can have). The Brain handles them in order and stops at the end of the first step in which
    it sent an order or a cancel, or at the end of the run: one ``step_ack`` for the run. The
    Router then sends the Trader one ``steps`` message: the run's steps the Brain handled
    (``ahead``: they run before the Brain's orders, which the Trader holds from its last
    acknowledgement until this message), then the orders, then the next step; the bars the
    Brain did not handle are published again after it. Four hops per run instead of per bar,
    and the same fills: an order decided at bar t still fills at t+1's open.

    Crash recovery with runs: the orders a Brain decides in a run's step leave it only after
    its ``step_ack`` (then it stores its recovery point), so a Brain that dies before that
    acknowledgement has sent nothing for the run beyond the Trader's step. When a Brain asks
    for history during its run (restarted, or a gap), the run is taken back: its later steps
    are published again after the Trader's next step, and the history it gets stops at the
    last bar the Trader ran or it acknowledged (a restarted Brain replays no bar ahead of the
    Trader, whose orders would run at the wrong step).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

import zmq

from .. import wire
from ..data.aggregate import BarResampler, TickAggregator
from ..data.conform import rank
from ..data.timeframes import Alignment, BarSeriesID, Timeframe
from ..data.types import Bar, Tick
from ..journal import Journal
from .base import OsmAgent, dumps
from .history import RouterHistoryMixin

MAX_HISTORY_REQUEST = 1_000_000
_IN = wire.Decoder(wire.ROUTER_IN)
_HISTORY = wire.Decoder(wire.ROUTER_HISTORY)


class _Series:
    __slots__ = ("bsid", "key", "aggregator", "history", "seq", "subscribers", "backfilling")

    def __init__(self, bsid: BarSeriesID, aggregator: Any, capacity: int) -> None:
        self.bsid = bsid
        self.key = bsid.key
        self.aggregator = aggregator  # None: the base bars themselves
        self.history: deque[Bar] = deque(maxlen=capacity)
        self.seq = 0
        self.subscribers: dict[str, int] = {}  # brain -> bars of history it asked for
        self.backfilling = False  # the bar forming holds backfill quotes


class RouterAgent(RouterHistoryMixin, OsmAgent):
    """See the module docstring."""

    def osm_setup(self) -> None:
        cfg = self.osm_cfg
        self.lockstep = bool(cfg.get("lockstep", False))
        self.capacity = int(cfg.get("history_capacity", 10_000))
        self.base_timeframes: dict[str, str | None] = dict(cfg.get("base_timeframes", {}))
        # symbol -> Alignment fields for its longer frames (a simulation's calendar, a daily
        # file's date alignment); OANDA's default otherwise
        self.alignments: dict[str, dict[str, Any]] = dict(cfg.get("alignments", {}))
        self.series: dict[BarSeriesID, _Series] = {}
        self.by_symbol: dict[str, list[_Series]] = {}
        self.tick_seq: dict[str, int] = {}
        self.last_time: dict[str, int] = {}  # newest tick or bar time received per symbol
        self.ticks_in = 0
        self.bars_in = 0
        self.bars_out = 0
        self.finished = False  # the feed said 'end' and every step is done
        self.steps_done = 0
        # lock-step state
        self.pending: deque[tuple] = deque()
        self.state = "idle"  # idle | trader | brains
        self.step_id = 0
        self.current: Any = None  # the step the Trader runs (a tuple; a list with runs)
        self.orders_wm: dict[str, int] = {}
        self.events_wm: dict[str, int] = {}
        self.awaiting: set[tuple[str, str, int]] = set()
        self.unsynced: set[tuple[str, str]] = set()
        self.acked: dict[tuple[str, str], int] = {}  # (brain, series key) -> last bar handled
        # lock-step in runs (see the module docstring); 1: one step at a time, as before
        self.run_max = max(1, int(cfg.get("lockstep_run", 1))) if self.lockstep else 1
        self.runs = self.run_max > 1
        self.prepared: deque[list] = deque()  # [step id, input, publications] not run yet
        self.ahead: list[tuple] = []  # inputs of steps the Brains handled, not run yet
        self.flush_needed = False  # the Brains may have sent orders the Trader holds
        self.step_msg = 0  # number of the last 'steps' message sent to the Trader
        self.sent_ahead = 0
        self.run_id = 0
        self.run_len = 1  # steps after the first one in the next run (adaptive)
        self.run_gap = 0.0  # mean number of steps a Brain handles between its orders
        self.run_first: list | None = None
        self.run_steps: list[list] = []
        self.run_wait: dict[str, int] = {}  # brain -> its orders at the run's start
        self.runs_published = 0
        self.run_steps_published = 0
        self.republished = 0  # steps published again (the Brain stopped before them)
        self.rewound = 0  # runs taken back: their Brain restarted (or saw a gap) during them
        self._step_pubs: list[tuple[str, tuple]] = []  # the last single step's publications
        self._published_up_to = 0
        self._round_orders: dict[str, int] = {}
        self.osm_bind("PULL", "in", handler=self.on_in)
        self.osm_bind("PUB", "pub")
        # Deeper than ZeroMQ's default of 1,000 queued messages per subscriber: bursts are
        # absorbed instead of dropped (a loss that still happens is detected by sequence).
        self._socket["pub"].setsockopt(zmq.SNDHWM, 100_000)
        self.osm_bind("REP", "history", handler=self.on_history)
        self.osm_bind("PUSH", "market")
        # Sends to the Trader never block (a PUSH with no Trader connected would stall the
        # Router, and with it every Brain's bars): what cannot go now waits here, in order,
        # and is sent as soon as the Trader takes it again (on the next send and by a timer).
        # Past ``market_backlog`` messages the oldest are dropped, logged and counted.
        self.market_pending: deque[bytes] = deque()
        self.market_backlog = int(cfg.get("market_backlog", 100_000))
        self.market_dropped = 0
        # Quote validation (data/quotes.py): rejected ticks and bars are dropped, counted per
        # reason and logged (the first few of each reason, then every 1000th). Known symbols
        # are read from base_timeframes at each check. A simulation's times are the data's,
        # not the wall clock's: no future bound in lock-step unless configured.
        from ..data.quotes import DEFAULT_MAX_FUTURE_NS, QuoteGuard

        self.quote_guard = QuoteGuard(
            known_symbols=self.base_timeframes,
            max_back_ns=int(cfg.get("quote_max_back_ns", 0)),
            max_future_ns=cfg.get(
                "quote_max_future_ns", None if self.lockstep else DEFAULT_MAX_FUTURE_NS
            ),
        )
        # The journal (osmarkets/journal.py): every completed bar is recorded before it is
        # published, so a Router restarted after its death takes up each series (sequence
        # numbers, subscribers, history) where its predecessor stopped.
        self.journal: Journal | None = None
        self.journal_errors = 0
        self.restored_series = 0
        self._held: list[tuple[_Series, tuple]] | None = None  # bars waiting to be recorded
        self._floors: dict[str, int] = {}  # series key -> newest bar time before a restart
        self._described: dict[str, dict[str, int]] = {}  # series key -> subscribers journaled
        self._meta_saved: dict[str, str] = {}
        # A lock-step Router is not journaled: a simulation cannot resume without it (its
        # lock-step state dies with it) and starts from its data every run.
        if cfg.get("journal_path") and not self.lockstep:
            durability = cfg.get("durability", "process")
            self.journal = Journal(cfg["journal_path"], durability=durability)
            self._journal_restore(self.journal)

    def before_loop(self) -> None:
        # Timers must start here, not in on_init: they talk to the running main loop.
        if self.lockstep:
            self.each(0.05, "osm_probe")
        self.each(0.1, "osm_drain_market")
        if self.journal is not None:
            self.osm_journal_meta()
            self.each(0.5, "osm_journal_meta")
        source = self.osm_cfg.get("history_source")  # set by the owner, kept for a restart
        if source:
            self.set_history_source(source["spec"], source["timeout"])

    # -- the Trader's market channel -------------------------------------------------------
    def _to_market(self, message: tuple) -> None:
        data = dumps(message)
        pending = self.market_pending
        if not pending:  # the common path: one non-blocking send
            try:
                self._socket["market"].send(data, zmq.NOBLOCK)
                self.osm_sent += 1
                return
            except zmq.Again:
                pass
        if len(pending) >= self.market_backlog:
            pending.popleft()
            self.market_dropped += 1
            if self.market_dropped == 1 or self.market_dropped % 10_000 == 0:
                self.log_warning(
                    f"the Trader takes no market data: {self.market_dropped} messages dropped"
                )
        pending.append(data)
        self.osm_drain_market()

    def osm_drain_market(self) -> None:
        """Send the waiting market messages, in order, until the Trader's queue is full."""
        pending = self.market_pending
        if not pending:
            return
        socket = self._socket["market"]
        while pending:
            try:
                socket.send(pending[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            pending.popleft()
            self.osm_sent += 1

    def osm_probe(self) -> None:
        if self.unsynced:
            self.osm_guard("router probe", self.sync)

    # -- inputs --------------------------------------------------------------------------------
    def on_in(self, data: bytes) -> None:
        self.osm_received += 1
        message = self.osm_decode(data, _IN)
        if message is not None:
            self.osm_guard(f"router {message[0]}", self._dispatch, message)

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "ack":
            _, brain, key, seq, orders = message
            if seq > self.acked.get((brain, key), 0):
                self.acked[(brain, key)] = seq  # where a restarted Brain resumes
            self.orders_wm[brain] = max(self.orders_wm.get(brain, 0), int(orders))
            self.awaiting.discard((brain, key, seq))
            if self.state == "brains" and not self.awaiting and not self.run_wait:
                self._step_done()
        elif kind == "step_ack":
            _, brain, run, step, orders = message
            self._on_step_ack(str(brain), int(run), int(step), int(orders))
        elif kind == "probe_ack":
            _, brain, key = message
            self.unsynced.discard((brain, key))
            if not self.unsynced and self.state == "idle":
                self._advance()  # a restarted Brain is live again: the replay goes on
            elif self.runs and self.state == "brains" and self.awaiting:
                self._publish_again(str(brain))
        elif kind == "trader_ack":
            _, step_id, events, quiet = message
            if self.runs:
                if self.state == "trader" and step_id == self.step_msg:
                    self.events_wm.update(events)
                    self._after_trader(bool(quiet))
            elif self.state == "trader" and step_id == self.step_id:
                self.events_wm.update(events)
                done = False
                try:
                    self._distribute(self.current)
                    done = True
                finally:
                    if not done:  # _distribute failed: skip the step, never stall the replay
                        self.awaiting.clear()
                        self._step_done()
        elif kind == "bars":  # a replay's batch: each bar as if it came alone
            _, symbol, bars = message
            for bar in bars:
                self._input(("bar", symbol, bar))
        elif kind in ("ticks", "backfill"):
            _, symbol, rows = message
            backfill = kind == "backfill"
            if self.lockstep:  # a simulation has no gaps to backfill: plain ticks
                for row in rows:
                    self._input(("tick", symbol, row))
                return
            # Live: one message to the Trader and one publication per batch, not per tick.
            good = []
            for row in rows:
                checked = self._checked(("tick", symbol, row))
                if checked is not None:
                    good.append(checked[2])
                    self._distribute(checked, publish_tick=False, backfilled=backfill)
            if good:
                if backfill:  # the bar now forming holds backfill quotes: marked when it completes
                    for series in self.by_symbol.get(symbol, ()):
                        series.backfilling = True
                self._to_market(("ticks", symbol, good))
                if symbol in self.tick_seq:
                    self.tick_seq[symbol] += 1
                    topic = f"{symbol} tick|"
                    self.osm_send("pub", ("ticks", symbol, self.tick_seq[symbol], good), topic)
        else:
            self._input(message)

    def _input(self, message: tuple) -> None:
        kind = message[0]
        if kind in ("tick", "bar"):
            checked = self._checked(message)
            if checked is None:
                return
            message = checked
        if not self.lockstep:
            if kind == "end":
                self.finished = True
                return
            self._distribute(message)  # Brains first: they are the latency-critical path
            self._to_market(message)
            return
        self.pending.append(message)
        if self.state == "idle":
            self._advance()

    def _checked(self, message: tuple) -> tuple | None:
        """A valid tick or bar (see :class:`~osmarkets.data.quotes.QuoteGuard`) of a known
        symbol whose feed carries that kind, else None: dropped, counted per reason, logged."""
        kind, symbol, payload = message
        guard = self.quote_guard
        timeframes = self.base_timeframes
        guard.known_symbols = timeframes  # read at each check: set_base_timeframes adds some
        expected = None
        if isinstance(symbol, str) and symbol in timeframes:
            expected = "tick" if timeframes[symbol] is None else "bar"
        if expected is not None and kind != expected:
            # decided before the guard, which moves its clock when it accepts a record
            reason: str | None = guard.record(
                "feed_kind", f"the feed of {symbol!r} carries {expected}s"
            )
        else:
            reason = guard.check(kind, symbol, payload)
        if reason is not None:
            self.osm_bad(f"{kind} ({reason}): {guard.last_detail}: {message!r:.200}", reason)
            return None
        if kind == "tick":
            payload = payload if type(payload) is Tick else Tick(*payload)
        else:
            payload = payload if type(payload) is Bar else Bar(*payload)
        if type(payload.time) is not int:  # a numpy integer
            payload = payload._replace(time=int(payload.time))
        self.last_time[symbol] = payload.time
        return (kind, symbol, payload)

    def resume_points(self) -> dict[str, int]:
        """symbol -> time after which a Feeder sends its quotes again to a Router that was
        restarted (or a deployment that resumes): the start of the oldest bar forming in the
        symbol's series (the quotes of a forming bar died with the Router), else the newest
        quote received."""
        points = dict(self.last_time)
        for series in self.series.values():
            timeframe = series.bsid.timeframe
            if series.history and timeframe.is_intraday:
                start = series.history[-1].time + timeframe.nanoseconds - 1
                symbol = series.bsid.symbol
                points[symbol] = min(points.get(symbol, start), start)
        return points

    def last_times(self) -> dict[str, int]:
        """symbol -> time of the newest tick or bar received: where a restarted Feeder
        resumes."""
        return dict(self.last_time)

    # -- lock-step -----------------------------------------------------------------------------
    def _advance(self) -> None:
        if self.runs:
            self._advance_runs()
            return
        while self.state == "idle" and self.pending:
            if self.unsynced:
                return  # a subscriber's SUB socket is not live yet: wait for its probe ack
            message = self.pending.popleft()
            if message[0] == "end":
                self.finished = True
                continue
            self.step_id += 1
            self.current = message
            self.state = "trader"
            self._to_market(("step", self.step_id, message, dict(self.orders_wm)))

    def _step_done(self) -> None:
        if self.runs:
            self._brains_done()
            return
        self.state = "idle"
        self.current = None
        self.steps_done += 1
        self._advance()

    # -- lock-step in runs ---------------------------------------------------------------------
    def _next_step(self) -> list | None:
        """The next step the Trader has not run: one published before that the Brain stopped
        ahead of, else the next input, aggregated (its bars numbered, not yet published)."""
        if self.prepared:
            return self.prepared.popleft()
        while self.pending:
            message = self.pending.popleft()
            if message[0] == "end":
                self.finished = True
                continue
            self.step_id += 1
            return [self.step_id, message, self._aggregate(message)]
        return None

    def _aggregate(self, message: tuple) -> list[tuple[_Series, int, Bar, bool]]:
        pubs = []
        for series, bar in self._completed(message):
            numbered = self._numbered(series, bar)
            if numbered is not None:
                pubs.append((series, series.seq, bar, numbered))
        return pubs

    def _completed(self, message: tuple) -> list[tuple[_Series, Bar]]:
        """The bars one input (a tick or a bar of ``symbol``) completes in each of its series,
        the input counted."""
        kind, symbol, payload = message
        completed: list[tuple[_Series, Bar]] = []
        if kind == "tick":
            self.ticks_in += 1
        else:
            self.bars_in += 1
        for series in self.by_symbol.get(symbol, ()):
            if kind != "tick" and series.aggregator is None:
                completed.append((series, payload))
            else:
                completed.extend((series, bar) for bar in series.aggregator.update(payload))
        return completed

    def _numbered(self, series: _Series, bar: Bar, backfilled: bool = False) -> bool | None:
        """Give a completed bar its sequence number and keep it in the series' history;
        None for a bar whose period came with the downloaded history (agents/history.py),
        else whether it is marked backfilled (completed by a backfill message, or holding
        backfill quotes: the last bar of a backfill completes with the first live quote)."""
        backfilled = backfilled or series.backfilling
        series.backfilling = False
        if self.history_loader is not None and self.osm_history_duplicate(series, bar):
            return None
        series.seq += 1
        series.history.append(bar)
        self.bars_out += 1
        return backfilled

    def _advance_runs(self) -> None:
        """Send the Trader the steps the Brains handled, their orders and the next step."""
        if self.state != "idle" or self.unsynced:
            return
        step = self._next_step()
        if step is None and not self.ahead and not self.flush_needed:
            return
        self.flush_needed = False
        ahead, self.ahead = self.ahead, []
        self.sent_ahead = len(ahead)
        self.current = step
        self.step_msg += 1
        self.state = "trader"
        market = step[1] if step is not None else None
        self._to_market(("steps", self.step_msg, ahead, market, dict(self.orders_wm)))

    def _after_trader(self, quiet: bool) -> None:
        """The Trader ran the steps: publish the current one's bars, with the next steps' too
        (a run) when the broker is quiet and one Brain is subscribed."""
        step, self.current = self.current, None
        self.steps_done += self.sent_ahead + (step is not None)
        self.sent_ahead = 0
        if step is None:  # a flush of held orders: nothing to publish
            self.state = "idle"
            self._advance_runs()
            return
        done = False
        try:
            brains = {brain for series in self.series.values() for brain in series.subscribers}
            run = [step]
            if quiet and len(brains) == 1 and not self.unsynced:
                while len(run) <= self.run_len:
                    nxt = self._next_step()
                    if nxt is None:
                        break
                    run.append(nxt)
            if len(run) > 1:
                self._publish_run(run, next(iter(brains)))
            else:
                self._publish_step(step)
            done = True
        finally:
            if not done:  # never stall the replay: the step is skipped
                self.awaiting.clear()
                self.run_wait.clear()
                self.run_first, self.run_steps = None, []
                self._brains_done()

    def _publish_step(self, step: list) -> None:
        """One step's bars, each acknowledged by every subscriber (as without runs)."""
        events = dict(self.events_wm)
        self._round_orders = dict(self.orders_wm)
        self.republished += step[0] <= self._published_up_to
        self._published_up_to = max(self._published_up_to, step[0])
        self._step_pubs = []
        for series, seq, bar, backfilled in step[2]:
            message = ("bar", series.bsid, seq, bar, events, backfilled)
            self.osm_send("pub", message, topic=series.key)
            self._step_pubs.append((series.key, message))
            for brain in series.subscribers:
                if self.acked.get((brain, series.key), 0) < seq:
                    self.awaiting.add((brain, series.key, seq))
        if self.awaiting:
            self.state = "brains"
            self.flush_needed = True
        else:
            self._brains_done()

    def _publish_again(self, brain: str) -> None:
        """Publish again the bars of the step waiting for ``brain``, now synchronised: a
        restarted Brain subscribes after its history request, and a bar published in between
        never reached it (a Brain ignores a bar it already has)."""
        waited = {(key, seq) for who, key, seq in self.awaiting if who == brain}
        for key, message in self._step_pubs:
            if (key, message[2]) in waited:
                self.osm_send("pub", message, topic=key)

    def _publish_run(self, run: list[list], brain: str) -> None:
        """The bars of ``run``'s steps; the Brain's are marked (run, step, last of its step,
        last of the run) and it acknowledges the run once."""
        self.run_id += 1
        self._round_orders = dict(self.orders_wm)
        flat = [(pub, step[0]) for step in run for pub in step[2]]
        mine = [
            n for n, ((series, seq, _, _), _) in enumerate(flat)
            if brain in series.subscribers and self.acked.get((brain, series.key), 0) < seq
        ]  # fmt: skip
        marks: dict[int, dict[str, int]] = {}
        for k, n in enumerate(mine):
            step_id = flat[n][1]
            last = k + 1 == len(mine)
            end = 3 if last else int(flat[mine[k + 1]][1] != step_id)
            marks[n] = {"@run": self.run_id, "@step": step_id, "@end": end}
        events = dict(self.events_wm)
        for n, ((series, seq, bar, backfilled), _) in enumerate(flat):
            mark = marks.get(n)
            message = ("bar", series.bsid, seq, bar, {**events, **mark} if mark else events,
                       backfilled)  # fmt: skip
            self.osm_send("pub", message, topic=series.key)
        self.republished += sum(1 for step in run if step[0] <= self._published_up_to)
        self._published_up_to = max(self._published_up_to, run[-1][0])
        self.runs_published += 1
        self.run_steps_published += len(run)
        if not mine:  # no bar for the Brain: it cannot have ordered in these steps
            self.ahead.extend(step[1] for step in run[1:])
            self._brains_done()
            return
        self.run_first, self.run_steps = run[0], run[1:]
        self.run_wait = {brain: self.orders_wm.get(brain, 0)}
        self.state = "brains"
        self.flush_needed = True

    def _on_step_ack(self, brain: str, run: int, step: int, orders: int) -> None:
        if run != self.run_id or brain not in self.run_wait or self.state != "brains":
            return  # a late or stray acknowledgement
        before = self.run_wait.pop(brain)
        self.orders_wm[brain] = max(self.orders_wm.get(brain, 0), orders)
        steps = self.run_steps
        if orders > before:  # it stopped after ``step``: the later steps wait for its orders
            handled = sum(1 for s in steps if s[0] <= step)
            # the next run: about twice the usual number of steps between its orders (a bar
            # published in vain costs far less than a round trip)
            self.run_gap = 0.75 * self.run_gap + 0.25 * handled
            self.run_len = min(self.run_max - 1, round(2 * self.run_gap))
        else:
            handled = len(steps)
            self.run_len = min(self.run_max - 1, max(1, 2 * self.run_len))
        first = self.run_first
        for s in ([first] if first is not None else []) + steps[:handled]:
            for series, seq, _, _ in s[2]:
                if brain in series.subscribers and seq > self.acked.get((brain, series.key), 0):
                    self.acked[(brain, series.key)] = seq
        self._close_run(handled)
        if not self.run_wait and not self.awaiting:
            self._brains_done()

    def _close_run(self, handled: int) -> None:
        """The run's first ``handled`` steps after the first go to the Trader next; the others
        are published again after it."""
        steps = self.run_steps
        self.ahead.extend(s[1] for s in steps[:handled])
        self.prepared.extendleft(reversed(steps[handled:]))
        self.run_first, self.run_steps = None, []

    def _brains_done(self) -> None:
        """Every Brain handled what was published: on to the Trader."""
        if self.run_first is not None and not self.run_wait:
            self._close_run(len(self.run_steps))  # a Brain that left (restarted, removed)
        if self.run_len == 0 and self._round_orders == self.orders_wm:
            self.run_len = 1  # a step without orders: try runs again
        self.state = "idle"
        self._advance_runs()

    def sync(self) -> bool:
        """Publish a probe on every subscribed topic until each subscriber answered: a SUB
        socket only receives once its subscription reached the PUB (the slow-joiner)."""
        for series in self.series.values():
            for brain in series.subscribers:
                if (brain, series.key) in self.unsynced:
                    self.osm_send("pub", ("probe", series.bsid), topic=series.key)
        if not self.unsynced and self.state == "idle":
            self._advance()
        return not self.unsynced

    # -- distribution ---------------------------------------------------------------------------
    def _distribute(
        self, message: tuple | None, publish_tick: bool = True, backfilled: bool = False
    ) -> None:
        if message is None:
            return
        kind, symbol, payload = message
        completed = self._completed(message)
        if kind == "tick" and publish_tick and not self.lockstep and symbol in self.tick_seq:
            self.tick_seq[symbol] += 1
            topic = f"{symbol} tick|"
            self.osm_send("pub", ("tick", symbol, self.tick_seq[symbol], payload), topic)
        if completed:
            self._publish_all(completed, backfilled)
        if self.lockstep:
            if self.awaiting:
                self.state = "brains"
            else:
                self._step_done()

    def _publish(self, series: _Series, bar: Bar, backfilled: bool = False) -> None:
        marked = self._numbered(series, bar, backfilled)
        if marked is None:
            return
        events = dict(self.events_wm) if self.lockstep else None
        message = ("bar", series.bsid, series.seq, bar, events, marked)
        self._send_bar(series, message)
        if self.lockstep:
            for brain in series.subscribers:
                self.awaiting.add((brain, series.key, series.seq))

    def _send_bar(self, series: _Series, message: tuple) -> None:
        if self._held is not None:  # recorded in the journal first (see _publish_all)
            self._held.append((series, message))
        else:
            self.osm_send("pub", message, topic=series.key)

    def _publish_all(self, completed: list[tuple[_Series, Bar]], backfilled: bool) -> None:
        """Publish the bars one input completed. With a journal, write-ahead: they are all
        recorded first, in one transaction, and only what was recorded is published (a bar
        that could not be recorded is not published: the Brains see a gap and reload it from
        the history; a restarted Router never reuses a sequence number a Brain saw)."""
        if self._floors:
            completed = [(s, bar) for s, bar in completed if not self._published_before(s, bar)]
        if self.journal is None:
            for series, bar in completed:
                self._publish(series, bar, backfilled)
            return
        held: list[tuple[_Series, tuple]] = []
        self._held = held
        try:
            for series, bar in completed:
                self._publish(series, bar, backfilled)
        finally:
            self._held = None
        if not held:
            return
        rows = [(series.key, message[2], message[3]) for series, message in held]
        if self._journal_write(rows, [series for series, _ in held]):
            for series, message in held:
                self.osm_send("pub", message, topic=series.key)
        elif self.lockstep:  # never wait for acknowledgements of bars not published
            lost = {(brain, s.key, m[2]) for s, m in held for brain in s.subscribers}
            self.awaiting -= lost

    def _published_before(self, series: _Series, bar: Bar) -> bool:
        """A bar whose period the Router published before it was restarted (a late quote of
        it): dropped, so no period is published twice."""
        floor = self._floors.get(series.key)
        if floor is None:
            return False
        if bar.time > floor:
            del self._floors[series.key]  # the series moved on: no more checks
            return False
        return True

    # -- the journal ----------------------------------------------------------------------------
    def _journal_write(self, rows: list[tuple[str, int, Bar]], touched: list[_Series]) -> bool:
        """Record ``rows`` (series key, seq, bar) and the description of the ``touched``
        series in one transaction; False (logged, counted) if the journal refused.

        A description (bsid, seq, subscribers) is written only when the series is new to the
        journal or its subscribers changed: the bars carry their own sequence numbers, and a
        restored series takes the highest of both (half the cost of a step in lock-step)."""
        journal = self.journal
        if journal is None:
            return True
        described = self._described
        descriptions: dict[str, dict[str, Any]] = {
            series.key: {"bsid": str(series.bsid), "seq": series.seq,
                         "subscribers": dict(series.subscribers)}
            for series in touched if described.get(series.key) != series.subscribers
        }  # fmt: skip
        try:
            journal.record_bars(rows, descriptions, self.capacity)
            for key, description in descriptions.items():
                described[key] = description["subscribers"]
        except Exception as exc:
            self._journal_failed(f"{len(rows)} bars not recorded ({exc!r}), not published")
            return False
        return True

    def _journal_failed(self, what: str) -> None:
        """Count and log (the first five, then every 1000th) a write the journal refused."""
        self.journal_errors += 1
        self.osm_errors += 1
        text = f"journal: {what}"
        self.osm_last_errors.append(text)
        if self.journal_errors <= 5 or self.journal_errors % 1000 == 0:
            self.log_error(text)

    def _journal_restore(self, journal: Journal) -> None:
        """Take up what a previous Router of this deployment journaled: each series with its
        sequence number, subscribers and last ``capacity`` bars; the base time frames (the
        owner's configuration wins), the newest time per symbol (where a restarted Feeder
        resumes), the tick sequence numbers and the Brains' acknowledgements."""
        base = self._journal_meta_load(journal, "base_timeframes") or {}
        base.update(self.base_timeframes)
        self.base_timeframes.clear()  # in place: the quote guard holds this dict
        self.base_timeframes.update(base)
        self.last_time.update(self._journal_meta_load(journal, "last_time") or {})
        for symbol, seq in (self._journal_meta_load(journal, "tick_seq") or {}).items():
            self.tick_seq[str(symbol)] = int(seq)
        for brain, key, seq in self._journal_meta_load(journal, "acked") or ():
            self.acked[(str(brain), str(key))] = int(seq)
        for key, description in journal.series().items():
            series = self._series_for(BarSeriesID.parse(description["bsid"]))
            rows = journal.bars(key, self.capacity)
            series.history.extend(bar for _, bar in rows)
            series.seq = max(int(description.get("seq", 0)), rows[-1][0] if rows else 0)
            subscribers = description.get("subscribers") or {}
            series.subscribers.update({str(b): int(n) for b, n in subscribers.items()})
            self._described[series.key] = dict(series.subscribers)
            if series.history:
                self._floors[series.key] = int(series.history[-1].time)
            self.restored_series += 1

    def _journal_meta_load(self, journal: Journal, item: str) -> Any:
        text = journal.get(f"{self.name}.{item}")
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None

    def osm_journal_meta(self) -> None:
        """Timer (every 0.5 s) and on changes: store in the journal what changed among the
        resume points (base time frames, newest time per symbol, tick sequence numbers, the
        Brains' acknowledgements). Batched: they are only used after a restart."""
        journal = self.journal
        if journal is None:
            return
        values = {
            "base_timeframes": self.base_timeframes,
            "last_time": self.last_time,
            "tick_seq": self.tick_seq,
            "acked": sorted([brain, key, seq] for (brain, key), seq in self.acked.items()),
        }
        saved = self._meta_saved
        try:
            for item, value in values.items():
                text = json.dumps(value, sort_keys=True)
                if saved.get(item) != text:
                    journal.set(f"{self.name}.{item}", text)
                    saved[item] = text
        except Exception as exc:  # tried again at the next tick of the timer
            self._journal_failed(f"resume points not recorded ({exc!r})")

    def osm_history_seed(self, bsid: BarSeriesID, records: Any) -> int:
        """The downloaded bars go in front of the series and its sequence number moves on
        (agents/history.py): the journal gets the series renumbered the same way."""
        added = super().osm_history_seed(bsid, records)
        series = self.series.get(BarSeriesID.parse(bsid))
        if added and series is not None:
            first = series.seq - len(series.history) + 1
            rows = [(series.key, first + n, bar) for n, bar in enumerate(series.history)]
            self._journal_write(rows, [series])
        return added

    # -- subscriptions and history ------------------------------------------------------------
    def _series_for(self, bsid: BarSeriesID) -> _Series:
        series = self.series.get(bsid)
        if series is not None:
            return series
        series = _Series(bsid, self._aggregator(bsid), self.capacity)
        self.series[bsid] = series
        self.by_symbol.setdefault(bsid.symbol, []).append(series)
        return series

    def on_history(self, data: bytes) -> Any:
        self.osm_received += 1
        message = self.osm_decode(data, _HISTORY)
        if message is None:
            return b"\x00"  # a REP socket must answer; the requester sees an undecodable reply
        reply = self.osm_guard("router history", self._answer, message)
        return reply if reply is not None else b"\x00"

    def _answer(self, message: tuple) -> bytes:
        """A request the Router cannot serve is refused with its reason (the Brain raises it
        to whoever subscribed), not left to an undecodable reply."""
        try:
            return self._history(message)
        except ValueError as exc:
            self.osm_errors += 1
            self.osm_last_errors.append(f"history request refused: {exc}")
            self.log_warning(f"history request refused: {exc}")
            return dumps(("refused", str(exc)[:500], 0))

    def _history(self, message: tuple) -> bytes:
        if message[0] == "ticks":  # ('ticks', brain, symbol): stream this symbol's ticks
            self.tick_seq.setdefault(str(message[2]), 0)
            return dumps(("ok", None, self.tick_seq[str(message[2])]))
        _, brain, bsid, count = message
        bsid = BarSeriesID.parse(bsid)
        if not 0 <= count <= MAX_HISTORY_REQUEST:
            raise ValueError(f"history of {count} bars (0 to {MAX_HISTORY_REQUEST})")
        series = self._series_for(bsid)
        if self.history_loader is not None and self.osm_history_wait(series, brain, count):
            return dumps(("wait", None, series.seq))  # downloading: the Brain asks again
        if brain is None:
            # An observer (a GUI) reads the history without subscribing: the lock-step never
            # waits for it, and it does not appear in subscriptions().
            bars = list(series.history)[-count:] if count > 0 else []
            return dumps(("ok", wire.pack_bars(bars), series.seq))
        # A Brain asking again (it restarted, or saw a gap) replaces its earlier request:
        # forget the acknowledgements the Router was waiting for from its previous life.
        self.awaiting = {entry for entry in self.awaiting if entry[0] != brain}
        if self.run_wait.pop(str(brain), None) is not None and self.run_first is not None:
            # The run's Brain restarted (or saw a gap): what it handled of the run beyond the
            # first step died with it. Every later step is published again after the Trader's
            # next step, and the history it replays stops where the Trader is (below).
            self.rewound += 1
            self._close_run(0)
        if series.subscribers.get(str(brain)) != count:
            series.subscribers[str(brain)] = count
            self._journal_write([], [series])  # whom a restarted Router still serves
        if self.lockstep:
            self.unsynced.add((str(brain), series.key))
        history = list(series.history)
        seq = series.seq
        if self.runs:
            # Runs: the history holds bars of steps the Trader has not run (prepared, the one
            # it runs now). A Brain that replayed them would send orders for bars ahead of the
            # Trader, run at the wrong step: its history stops at the last bar run.
            ahead = self._uncommitted(series)
            if ahead:
                history = history[: max(0, len(history) - ahead)]
                seq -= ahead
        bars = history[-count:] if count > 0 else []
        if self.lockstep and self.state == "brains" and not self.awaiting and not self.run_wait:
            self._step_done()
        return dumps(("ok", wire.pack_bars(bars), seq))

    def _uncommitted(self, series: _Series) -> int:
        """How many of ``series``' newest bars belong to steps the Trader has not run and no
        Brain acknowledged (lock-step in runs): those prepared or in the run being handled,
        and the step the Trader runs now."""
        steps = list(self.prepared) + list(self.run_steps)
        if self.state == "trader" and self.current is not None:
            steps.append(self.current)
        return sum(1 for step in steps for pub in step[2] if pub[0] is series)

    def set_base_timeframes(self, mapping: dict[str, str | None]) -> None:
        """What each symbol's feed carries: a bar time frame code, or None for ticks. Series
        already subscribed get the matching aggregator."""
        self.base_timeframes.update(mapping)
        for symbol in mapping:
            for series in self.by_symbol.get(symbol, ()):
                series.aggregator = self._aggregator(series.bsid)
        self.osm_journal_meta()

    def _aggregator(self, bsid: BarSeriesID) -> Any:
        """What makes ``bsid``'s bars from its symbol's feed: ticks aggregated, longer bars
        resampled, or None for the feed's own bars. A frame shorter than the feed's bars, or
        one they do not fit in, raises ``ValueError`` (the subscriber is told why)."""
        base = self.base_timeframes.get(bsid.symbol)
        alignment = Alignment.of(self.alignments.get(bsid.symbol))
        if base is None:
            return TickAggregator(bsid.timeframe, alignment, lenient=True)
        own = Timeframe.parse(base)
        if own == bsid.timeframe:
            return None
        want = bsid.timeframe
        shorter = rank(want) < rank(own)
        if shorter or (want.is_intraday and want.nanoseconds % own.nanoseconds):
            raise ValueError(
                f"the feed of {bsid.symbol} carries {own.code} bars; ask for {own.code} "
                f"or a longer frame its bars fit in"
            )
        return BarResampler(bsid.timeframe, alignment, lenient=True)

    def unsubscribe_brain(self, brain: str) -> None:
        """Forget a Brain (it was removed): the lock-step stops waiting for it."""
        touched = [series for series in self.series.values() if brain in series.subscribers]
        for series in touched:
            del series.subscribers[brain]
        self._journal_write([], touched)
        self.awaiting = {entry for entry in self.awaiting if entry[0] != brain}
        self.run_wait.pop(brain, None)
        self.unsynced = {entry for entry in self.unsynced if entry[0] != brain}
        if self.state == "brains" and not self.awaiting and not self.run_wait:
            self._step_done()

    def acked_seqs(self, brain: str) -> dict[str, int]:
        """Series key -> sequence number of the last bar ``brain`` handled (it acknowledges
        every bar once ``on_new_bar`` returned): a restarted Brain replays the bars after it."""
        return {key: seq for (name, key), seq in self.acked.items() if name == brain}

    def subscriptions(self) -> dict[str, list[tuple[BarSeriesID, int]]]:
        """brain -> [(bsid, history)]: what the Overmind re-applies after a restart."""
        out: dict[str, list[tuple[BarSeriesID, int]]] = {}
        for series in self.series.values():
            for brain, count in series.subscribers.items():
                out.setdefault(brain, []).append((series.bsid, count))
        return out

    def progress(self) -> dict[str, Any]:
        settled = not (self.prepared or self.ahead or self.flush_needed or self.run_wait)
        return {
            "finished": self.finished and not self.pending and self.state == "idle" and settled,
            "steps": self.steps_done,
            "pending": len(self.pending),
            "state": self.state,
            "ticks_in": self.ticks_in,
            "bars_in": self.bars_in,
            "bars_out": self.bars_out,
            "unsynced": len(self.unsynced),
            # round trips Router -> Trader -> Router -> Brains -> Router (4 hops each)
            "rounds": self.step_msg if self.runs else self.step_id,
            "runs": self.runs_published,
            "run_steps": self.run_steps_published,
            "republished": self.republished,
            "rewound": self.rewound,
            "time": time.time(),
        }

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stats.update(ticks_in=self.ticks_in, bars_in=self.bars_in, bars_out=self.bars_out,
                     market_pending=len(self.market_pending),
                     market_dropped=self.market_dropped)  # fmt: skip
        stats.update(self.osm_history_stats())
        stats.update(quotes_rejected=self.quote_guard.rejected,
                     rejected_by_reason=self.quote_guard.counts)  # fmt: skip
        stats.update(journal_errors=self.journal_errors, restored_series=self.restored_series)
        return stats
