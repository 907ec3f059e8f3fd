"""The Brain agent: runs a user's :class:`~osmarkets.brain.Brain` subclass in its own process.

The agent class is built by combining the user's class with :class:`BrainAgent`
(``type(name, (UserBrain, BrainAgent), {...})``), so the user's attributes *are* the agent's:
``system['x'].set_attr(DEBUG=True)`` sets what the user's code reads, and
``system['x'].subscribe(('EUR_USD', 1, 'Minutes'), 100)`` runs :meth:`BrainAgent.subscribe`
through the osBrain proxy.

Every call into user code is guarded: an exception is logged with its traceback and counted,
and the agent keeps running.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from typing import Any

import osbrain
import zmq

from .. import wire
from ..brain import Brain
from ..brokers.base import Order, OrderEvent, event_key, position_change
from ..data.series import BarSeries
from ..data.timeframes import BarSeriesID
from ..data.types import Bar
from ..journal import Journal
from .base import OsmAgent, dumps

HISTORY_TIMEOUT_MS = 5_000
HISTORY_ATTEMPTS = 3
HISTORY_WAIT = 180.0  # seconds at most for the Router to download missing history
RESEND_AFTER = 5.0  # seconds without an event before an order is sent again

_PUB = wire.Decoder(wire.BRAIN_PUB)
_EVENTS = wire.Decoder(wire.BRAIN_EVENTS)
_REPLY = wire.Decoder(wire.HISTORY_REPLY)


class _AgentContext:
    """The :class:`~osmarkets.brain.BrainContext` a Brain agent binds to its user code."""

    def __init__(self, agent: BrainAgent) -> None:
        self.agent = agent

    def submit_order(self, brain: Brain, order: Order) -> str:
        order = self.agent.osm_order_identity(order)
        self.agent.osm_submit(("order", order, self.agent.osm_auth))
        return order.client_id

    def cancel_order(self, brain: Brain, client_id: str) -> None:
        self.agent.osm_submit(("cancel", self.agent.name, client_id, self.agent.osm_auth))

    def log_debug(self, brain: Brain, message: str) -> None:
        self.agent.log_info(f"debug: {message:.2000}")

    def position(self, brain: Brain, symbol: str) -> float:
        return self.agent.osm_positions.get(symbol, 0.0)

    def series(self, brain: Brain, bsid: Any) -> BarSeries:
        key = BarSeriesID.parse(bsid)
        try:
            return self.agent.osm_series[key]
        except KeyError:
            raise KeyError(f"{self.agent.name}: not subscribed to {key}") from None

    def now(self, brain: Brain) -> int:
        return self.agent.osm_now or time.time_ns()

    def plot(self, brain: Brain, name: str, value: float, panel: str) -> None:
        self.agent.osm_plots.add(name, panel, value)


class BrainAgent(OsmAgent):
    """Agent side of a Brain: sockets, subscriptions, gap recovery, positions from fills."""

    def osm_setup(self) -> None:
        cfg = self.osm_cfg
        for key, value in (cfg.get("params") or {}).items():
            setattr(self, key, value)
        Brain.bind(self, _AgentContext(self), self.name)
        # This Brain's credential: the Trader accepts orders in its name only with it, and
        # this Brain accepts order events only when they carry it.
        self.osm_auth = str(self.osm_secrets.get("auth", ""))
        self.osm_forged = 0
        # client ids '<brain>-<deployment>-<n>': the deployment id from the journal, n going on
        # from the last number the journal holds, so no run and no restart reuses an id
        self._osm_run_id = str(cfg.get("run_id") or "")
        journal_path = cfg.get("journal_path")
        self.osm_journal = (
            Journal(journal_path, durability=cfg.get("durability", "process"))
            if journal_path else None
        )  # fmt: skip
        point = self.osm_journal.recovery_point(self.name) if self.osm_journal else None
        first = 1
        if self.osm_journal is not None:
            prefix = f"{self.name}-{self._osm_run_id}-"
            first += self.osm_journal.last_order_number(self.name, prefix)
        else:
            first += int(cfg.get("incarnation", 0)) * 1_000_000
        self._osm_order_counter = itertools.count(first)
        # What the Brain is handling ('bar|<series>|<seq>', 'event|<key>'): each order is
        # journaled with it and its rank, so handling the same input again after a crash
        # re-issues the same client ids (the Trader never sends an order twice).
        self.osm_cause: str | None = None
        self.osm_cause_rank = 0
        self.osm_recorded: list[Order] | None = None  # orders journaled for the cause at hand
        self.osm_reissued = 0
        # stopped by the operator's kill switch (osmarkets/operator.py): no user code runs
        # any more, in this process or a restarted one (the journal says so)
        self.osm_halted = False
        if self.osm_journal is not None:
            stopped = self.osm_journal.get("operator.stopped") or "[]"
            self.osm_halted = f'"{self.name}"' in stopped
        self.osm_plots = PlotLog()  # what on_new_bar charts with self.plot, for GUIs
        self.osm_series: dict[BarSeriesID, BarSeries] = {}
        self.osm_seq: dict[BarSeriesID, int] = {}
        self.osm_tick_seq: dict[str, int] = {}
        # A restarted Brain starts from what the Trader reported to its predecessor (positions,
        # watermarks, the events already seen) and from the last bar it handled per series
        # (the Router's acknowledgements): the bars after it are replayed, marked.
        # The journal, when there is one, is the authority: the recovery point this Brain
        # stored (last bar of each series, on_save's state) and the fills reported to it.
        restore = dict(cfg.get("restore") or {})
        positions = restore.get("positions") or {}
        seen = list(restore.get("seen") or ())
        acked = dict(restore.get("acked") or {})
        if self.osm_journal is not None:
            positions = self.osm_journal.positions(self.name)
            seen += self.osm_journal.acked_keys(self.name)
            if point is not None:
                acked = dict(point.get("acked") or {})
        self.osm_positions: dict[str, float] = dict(positions)
        self.osm_now = 0
        self.osm_orders_sent = int(restore.get("orders", 0))
        # the lock-step's runs (agents/router.py): orders counted in the last acknowledgement,
        # and the (run, step) this Brain stopped at (the run's later bars come again)
        self.osm_orders_acked = self.osm_orders_sent
        self.osm_run_stop = (0, 0)
        self.osm_run_dropped = 0
        # orders (and cancels) decided during a run's step: journaled and sent at its end,
        # after the run's acknowledgement (see _osm_run_bar); None outside a run's bar
        self._osm_outbox: list[tuple[tuple, tuple[str, int] | None]] | None = None
        self._osm_run_outbox: list[tuple[tuple, tuple[str, int] | None]] = []
        self._osm_pending_cause: tuple[str, int] | None = None
        self._osm_counted: set[str] = set()  # re-issued orders the Trader counted already
        self.osm_events_received = int(restore.get("events", 0))
        self.osm_seen = _SeenEvents(seen)
        self.osm_duplicate_events = 0
        self._osm_resume: dict[str, int] = acked
        self.osm_save_errors = 0
        self.osm_restored = point is not None and point.get("user") is not None
        if self.osm_restored:
            assert point is not None
            self.osm_guard("on_restore", self.on_restore, point["user"])
        self.osm_replayed = 0
        self.osm_missed = 0
        self.osm_held: deque[tuple] = deque()
        self.osm_bars = 0
        self.osm_ticks = 0
        self.osm_gaps = 0
        self.osm_tick_gaps = 0
        self.osm_started_user = False
        self.osm_events: deque[OrderEvent] = deque(maxlen=10_000)
        # Orders sent and not yet acknowledged (no event for their client id yet), with the
        # time they were last sent: re-sent after ``resend_after`` seconds and whenever a
        # restarted Trader says hello. The Trader ignores copies of an order it handled.
        self.osm_unacked: dict[str, tuple[float, tuple]] = {}
        self.osm_resend_after = float(cfg.get("resend_after", RESEND_AFTER))
        self.osm_resent = 0
        # orders of a previous life the Trader never took: resent (and counted there then)
        self._osm_inherited: set[str] = set()
        if self.osm_journal is not None:
            for order in self.osm_journal.unsent_orders(self.name):
                self.osm_unacked[order.client_id] = (0.0, ("order", order, self.osm_auth))
                self._osm_inherited.add(order.client_id)
        events = self.osm_bind("PULL", "events", handler=self.osm_on_event)
        self.connect(cfg["trader_orders"], alias="orders")
        self.connect(cfg["router_in"], alias="router")
        self.connect(cfg["router_pub"], alias="pub", handler={})
        self._osm_router_history = cfg["router_history"]
        self._osm_connect_history()
        url = f"{events.transport}://{events.address}"
        self.osm_send("orders", ("hello", self.name, url, self.osm_auth))

    def _osm_connect_history(self) -> None:
        if self.has_socket("history"):
            self.close("history", linger=0)
        self.connect(self._osm_router_history, alias="history")
        socket = self._socket["history"]
        socket.setsockopt(zmq.RCVTIMEO, HISTORY_TIMEOUT_MS)

    # -- osBrain name clashes -------------------------------------------------------------------
    def _osm_bind_dispatch(self, *args: Any, **kwargs: Any) -> Any:
        """``bind`` is both Brain.bind(context, name) and osBrain's bind(kind, ...)."""
        first = args[0] if args else kwargs.get("context", kwargs.get("kind"))
        if isinstance(first, str) or "alias" in kwargs or "transport" in kwargs:
            return osbrain.Agent.bind(self, *args, **kwargs)
        return Brain.bind(self, *args, **kwargs)

    def subscribe(self, bsid: Any, history: Any = 100) -> Any:
        """Subscribe to a bar series, first loading its last ``history`` bars from the Router.

        (osBrain itself calls ``subscribe(alias, handlers)`` for SUB sockets: that form is
        passed through.)
        """
        if callable(history) or isinstance(history, dict):
            return osbrain.Agent.subscribe(self, bsid, history)
        bsid = BarSeriesID.parse(bsid)
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"subscribe history: expected a number of bars >= 0, got {history!r}")
        series = BarSeries(bsid, capacity=max(history, 1))
        self.osm_series[bsid] = series
        self._osm_load_history(bsid, history)
        osbrain.Agent.subscribe(self, "pub", {bsid.key: self.osm_on_pub})
        if type(self).on_tick is not Brain.on_tick and bsid.symbol not in self.osm_tick_seq:
            reply = self._osm_request(("ticks", self.name, bsid.symbol))
            self.osm_tick_seq[bsid.symbol] = int(reply[2])
            osbrain.Agent.subscribe(self, "pub", {f"{bsid.symbol} tick|": self.osm_on_pub})
        return True

    def _osm_request(self, message: tuple) -> tuple:
        # A request lost with a dying Router: the REQ socket is made again and the request
        # sent again (a restarted Router is back within seconds), a few times at most.
        for _ in range(HISTORY_ATTEMPTS):
            socket = self._socket["history"]
            socket.send(dumps(message))
            try:
                data = socket.recv()
                break
            except zmq.Again:
                self._osm_connect_history()
        else:
            raise TimeoutError(
                f"{self.name}: the Router did not answer {message[0]!r} "
                f"({HISTORY_ATTEMPTS} attempts of {HISTORY_TIMEOUT_MS / 1000:g} s)"
            ) from None
        try:
            return _REPLY(data)
        except wire.WireError as exc:
            raise RuntimeError(
                f"{self.name}: the Router refused {message!r:.100}: {exc}"
            ) from None

    def _osm_load_history(self, bsid: BarSeriesID, count: int) -> None:
        request = ("history", self.name, bsid, count)
        reply = self._osm_request(request)
        # 'wait': the Router is downloading the bars it lacks (agents/history.py); it answers
        # 'ok' once they are in, or when the download failed or is late (never forever)
        deadline = time.monotonic() + HISTORY_WAIT
        while reply[0] == "wait":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no history for {bsid} in {HISTORY_WAIT:g} s")
            time.sleep(0.05)
            reply = self._osm_request(request)
        if reply[0] == "refused":
            raise ValueError(f"{self.name}: cannot subscribe to {bsid}: {reply[1]}")
        _, packed, seq = reply
        records = wire.unpack_bars(packed)
        old = self.osm_series[bsid]
        series = BarSeries(bsid, capacity=old.capacity)
        resume = self._osm_resume.pop(bsid.key, None)
        if resume is not None and resume > seq:
            # The Router's history stops before bars this Brain handled (a lock-step run it
            # took back, see agents/router.py): it publishes them again, and this Brain
            # ignores those it has. Kept as it is when it has them; else (a restart) from
            # what the Router has, the rest to come again.
            self.log_warning(f"{bsid}: the Router's history ends at {seq}, this Brain at {resume}")
            if self.osm_seq.get(bsid, 0) >= resume:
                return
        missed = seq - resume if resume is not None and seq > resume else 0
        replay = records[len(records) - min(missed, len(records)) :] if missed else records[:0]
        keep = records[: len(records) - len(replay)]
        if len(keep):
            series.extend(keep[-series.capacity :])
        self.osm_series[bsid] = series
        self.osm_seq[bsid] = int(seq) - len(replay)
        if missed:
            self._osm_replay(bsid, replay, missed)

    # -- market data -----------------------------------------------------------------------------
    def osm_on_pub(self, data: bytes) -> None:
        self.osm_received += 1
        cut = data.find(b"|") + 1
        message = self.osm_decode(memoryview(data)[cut:], _PUB)
        if message is not None:
            self.osm_guard("brain data", self._osm_on_pub, message)

    def _osm_on_pub(self, message: tuple) -> None:
        kind = message[0]
        if kind == "probe":
            bsid = BarSeriesID.parse(message[1])
            self.osm_send("router", ("probe_ack", self.name, bsid.key))
        elif kind in ("tick", "ticks"):
            _, symbol, seq, payload = message
            last = self.osm_tick_seq.get(symbol, 0)
            if seq != last + 1 and last:
                self.osm_tick_gaps += 1  # ticks are not replayed: counted, and logged
                self.log_warning(f"{symbol}: ticks lost ({last} -> {seq})")
            self.osm_tick_seq[symbol] = seq
            self._osm_start()
            on_tick = self.on_tick
            for tick in payload if kind == "ticks" else (payload,):
                self.osm_ticks += 1
                self.osm_now = int(tick.time)
                if not self.osm_halted:
                    self.osm_guard("on_tick", on_tick, tick)
        else:
            _, bsid, seq, bar, events, backfilled = message
            bsid = BarSeriesID.parse(bsid)
            if bsid not in self.osm_series:
                return
            if events is not None or self.osm_held:
                self.osm_held.append((bsid, seq, bar, events, backfilled))
                self._osm_release()
            else:
                self._osm_bar(bsid, seq, bar, None, backfilled)

    def _osm_release(self) -> None:
        """Handle held bars whose order events have all arrived (lock-step)."""
        while self.osm_held:
            bsid, seq, bar, events, backfilled = self.osm_held[0]
            if events and self.osm_events_received < events.get(self.name, 0):
                return
            self.osm_held.popleft()
            self._osm_bar(bsid, seq, bar, events, backfilled)

    def _osm_bar(
        self, bsid: BarSeriesID, seq: int, bar: Bar, events: dict | None, backfilled: bool = False
    ) -> None:
        run = events.get("@run") if events else None
        if run is not None:
            self._osm_run_bar(bsid, seq, bar, events, backfilled)  # type: ignore[arg-type]
            return
        if self._osm_take_bar(bsid, seq, bar, backfilled):
            # every bar is acknowledged: the lock-step waits for it, and a restarted Brain
            # resumes after the last one acknowledged
            self.osm_orders_acked = self.osm_orders_sent
            self.osm_send("router", ("ack", self.name, bsid.key, seq, self.osm_orders_sent))

    def _osm_run_bar(
        self, bsid: BarSeriesID, seq: int, bar: Bar, events: dict, backfilled: bool
    ) -> None:
        """A bar of a lock-step run: handled unless this Brain stopped before its step; at the
        end of a step in which it sent an order (or at the end of the run) it acknowledges the
        run and stops there."""
        run, step, end = (
            int(events["@run"]),
            int(events.get("@step", 0)),
            int(events.get("@end", 0)),
        )
        if run == self.osm_run_stop[0] and step > self.osm_run_stop[1]:
            self.osm_run_dropped += 1  # the Router publishes it again after the Trader's step
            return
        if seq > self.osm_seq.get(bsid, 0) + 1:
            # Bars of the run were lost: the history request makes the Router take the run
            # back (it publishes its steps again); this Brain catches up to where the Trader
            # is and drops the rest of the run, unacknowledged.
            self.osm_gaps += 1
            self.log_warning(f"{bsid}: gap in a run ({self.osm_seq.get(bsid, 0)} -> {seq})")
            self.osm_run_stop = (run, -1)
            self._osm_resume[bsid.key] = self.osm_seq.get(bsid, 0)
            self._osm_load_history(bsid, self.osm_series[bsid].capacity)
            return
        self._osm_outbox = []
        try:
            self._osm_take_bar(bsid, seq, bar, backfilled, checkpoint=False)
        finally:
            outbox, self._osm_outbox = self._osm_outbox, None
            self._osm_run_outbox.extend(outbox)
        ordered = self.osm_orders_sent != self.osm_orders_acked
        if (end & 1 and ordered) or end & 2:
            # In this order, so that whatever a crash interrupts, a restarted Brain replays
            # (the Router's history reaches its acknowledgement) or the Router takes the run
            # back (its orders never left):
            # 1. the acknowledgement: the Router runs the steps handled, then waits for the
            #    orders counted in it;
            self.osm_run_stop = (run, step)
            self.osm_orders_acked = self.osm_orders_sent
            self.osm_send("router", ("step_ack", self.name, run, step, self.osm_orders_sent))
            # 2. the step's orders, journaled then sent (after a crash, the bars replayed
            #    re-issue the same client ids);
            outbox, self._osm_run_outbox = self._osm_run_outbox, []
            for message, cause in outbox:
                self._osm_release_order(message, cause)
            # 3. the recovery point, once per run: never past what the Router knows handled
            self._osm_checkpoint()

    def _osm_take_bar(
        self, bsid: BarSeriesID, seq: int, bar: Bar, backfilled: bool, checkpoint: bool = True
    ) -> bool:
        """Append ``bar`` to its series and run ``on_new_bar``; False when it was not handled
        here (already in the series, or replayed with the history after a gap)."""
        last = self.osm_seq.get(bsid, 0)
        if seq <= last:
            return False  # already in the series (it came with the history)
        series = self.osm_series[bsid]
        if seq > last + 1:
            # Bars were lost (PUB/SUB high-water mark, slow joiner, a Router restarting): the
            # series is reloaded from the Router and the lost bars replayed to on_new_bar
            # (series.replayed), this one with them; those beyond the history go to on_gap.
            self.osm_gaps += 1
            self.log_warning(f"{bsid}: gap in sequence ({last} -> {seq}), replaying the bars")
            self._osm_resume[bsid.key] = last
            self._osm_load_history(bsid, series.capacity)
            if self.osm_seq[bsid] >= seq:
                return False  # this bar came with the history: replayed with the lost ones
            series = self.osm_series[bsid]  # the Router's history is behind: keep this bar
            series.append(bar)
            self.osm_seq[bsid] = seq
        else:
            series.append(bar)
            self.osm_seq[bsid] = seq
        self.osm_bars += 1
        timeframe = bsid.timeframe
        self.osm_now = bar.time + (timeframe.nanoseconds if timeframe.is_intraday else 0)
        self._osm_start()
        series.backfilled = backfilled  # rebuilt after a gap of the feed (see wire.BarOut)
        self.osm_plots.at(bsid.key, int(bar.time))  # what self.plot charts from now on
        try:
            self._osm_handle(f"bar|{bsid.key}|{seq}", series.replayed, self.on_new_bar, series,
                             checkpoint=checkpoint)  # fmt: skip
        finally:
            series.backfilled = False
        return True

    def _osm_replay(self, bsid: BarSeriesID, records: Any, missed: int) -> None:
        """The bars that completed while this Brain was down, to ``on_new_bar`` in order with
        ``series.replayed`` set; those older than the history kept go to ``on_gap``."""
        lost = missed - len(records)
        self.log_info(f"{bsid}: replaying {len(records)} bars missed while down"
                      + (f", {lost} more lost" if lost else ""))  # fmt: skip
        if lost:
            self.osm_missed += lost
            self._osm_start()
            self.osm_guard("on_gap", self.on_gap, bsid, lost)
        series = self.osm_series[bsid]
        series.replayed = True
        try:
            for record in records:
                self.osm_replayed += 1
                self._osm_bar(bsid, self.osm_seq[bsid] + 1, Bar(*record.tolist()), None)
        finally:
            series.replayed = False

    def _osm_start(self) -> None:
        if not self.osm_started_user:
            self.osm_started_user = True
            self.osm_guard("on_start", self.on_start)

    # -- orders ----------------------------------------------------------------------------------
    def before_loop(self) -> None:
        # Timers must start here, not in osm_setup: they talk to the running main loop.
        self.each(min(1.0, self.osm_resend_after / 2), "osm_resend_due")

    # -- the journal ------------------------------------------------------------------------------
    def _osm_handle(
        self, cause: str, again: bool, hook: Any, *args: Any, checkpoint: bool = True
    ) -> None:
        """Run a user hook for input ``cause`` (``again``: it may have been handled before a
        crash), then store the recovery point (unless ``checkpoint`` is False: the caller
        stores it later)."""
        self.osm_cause, self.osm_cause_rank = cause, 0
        journal = self.osm_journal
        self.osm_recorded = journal.orders_for(self.name, cause) if journal and again else None
        try:
            if not self.osm_halted:  # a stopped Brain's bars and events still count
                self.osm_guard(hook.__name__, hook, *args)
        finally:
            self.osm_cause = self.osm_recorded = None
        if checkpoint:
            self._osm_checkpoint(args[0] if isinstance(args[0], OrderEvent) else None)

    def osm_order_identity(self, order: Order) -> Order:
        """The order as it goes out: while an input is handled again after a crash, the
        ``k``-th order sent for it takes the client id of the ``k``-th order journaled for it
        (the same order, not a second one); every order is journaled before it leaves."""
        cause, rank = self.osm_cause, self.osm_cause_rank
        self.osm_cause_rank += 1
        recorded = self.osm_recorded
        if recorded is not None and rank < len(recorded):
            first = recorded[rank]
            if _same_order(first, order):
                self.osm_reissued += 1
                if first.client_id not in self._osm_inherited:
                    # the Trader had taken it before this process started, and counted it in
                    # the orders this Brain restarted with (restore['orders']): the copy is
                    # dropped there, so it is not counted again here (the lock-step's
                    # watermark would wait for an order that never comes)
                    self._osm_counted.add(first.client_id)
                return order._replace(client_id=first.client_id, time=first.time)
            self.log_warning(
                f"after a restart, {cause} gave a different order than before the crash "
                f"({first.client_id} was {first.side} {first.size:g} {first.symbol}): "
                f"sending {order.client_id} as a new order"
            )
        cause = cause or f"free|{order.client_id}"
        if self._osm_outbox is not None:
            self._osm_pending_cause = (cause, rank)  # journaled when it leaves (run's step end)
        elif self.osm_journal is not None:
            self.osm_journal.record_order(order, cause, rank)
        return order

    def _osm_checkpoint(self, event: OrderEvent | None = None) -> None:
        """Store this Brain's recovery point: the last bar of each series, on_save's state,
        and (in the same transaction) the acknowledgement of ``event``."""
        journal = self.osm_journal
        if journal is None:
            return
        point: dict[str, Any] = {"acked": {b.key: s for b, s in self.osm_seq.items()}}
        if type(self).on_save is not Brain.on_save:
            errors = self.osm_errors
            user = self.osm_guard("on_save", self.on_save)
            if self.osm_errors != errors:  # it raised: keep the last state that was saved
                previous = journal.recovery_point(self.name) or {}
                user = previous.get("user")
            point["user"] = user
        try:
            journal.checkpoint(self.name, point, event_key(event) if event else None)
        except (TypeError, ValueError, OverflowError) as exc:  # on_save gave no plain data
            self.osm_save_errors += 1
            self.osm_bad(f"on_save returned what cannot be stored: {exc}", "on_save")
            point.pop("user", None)
            journal.checkpoint(self.name, point, event_key(event) if event else None)

    def osm_submit(self, message: tuple) -> None:
        if message[0] != "order" or message[1].client_id not in self._osm_counted:
            self.osm_orders_sent += 1
        if self._osm_outbox is not None:  # a run's bar: at the step's end (_osm_run_bar)
            cause, self._osm_pending_cause = self._osm_pending_cause, None
            self._osm_outbox.append((message, cause if message[0] == "order" else None))
            return
        self._osm_release_order(message, None)

    def _osm_release_order(self, message: tuple, cause: tuple[str, int] | None) -> None:
        """Send an order or a cancel; ``cause``: journal the order first (it was held back
        during a run's step)."""
        if message[0] != "order":
            self.osm_send("orders", message)
            return
        order = message[1]
        if cause is not None and self.osm_journal is not None:
            try:
                self.osm_journal.record_order(order, *cause)
            except Exception as exc:  # never sent unjournaled (as when submit_order raises)
                self.osm_bad(f"order {order.client_id} not journaled, not sent: {exc!r}", "order")
                # The step's acknowledgement counted it, and the Trader runs the next step
                # only once it has every order counted: a cancel of its id takes its place
                # there (the broker answers 'rejected: unknown order', which is true: it never
                # had it), so the lock-step goes on instead of waiting for it for ever.
                self.osm_send("orders", ("cancel", self.name, order.client_id, self.osm_auth))
                return
        self.osm_unacked[order.client_id] = (time.monotonic(), message)
        self._osm_send_order(message)

    def _osm_send_order(self, message: tuple) -> None:
        try:
            # never blocks the loop: with the Trader down and the queue full, the order stays
            # in osm_unacked and goes out again later
            self._socket["orders"].send(dumps(message), zmq.NOBLOCK)
            self.osm_sent += 1
        except zmq.Again:
            pass

    def osm_resend_due(self) -> None:
        """Timer: send again the orders still without an event after ``resend_after``."""
        if self.osm_unacked:
            self._osm_resend(time.monotonic() - self.osm_resend_after)

    def _osm_resend(self, older_than: float) -> None:
        now = time.monotonic()
        for client_id, (sent, message) in list(self.osm_unacked.items()):
            if sent <= older_than:
                self.osm_unacked[client_id] = (now, message)
                self.osm_resent += 1
                self._osm_send_order(message)

    def osm_on_event(self, data: bytes) -> None:
        self.osm_received += 1
        message = self.osm_decode(data, _EVENTS)
        if message is None:
            return
        if not secrets.compare_digest(message[-1].encode(), self.osm_auth.encode()):
            self.osm_forged += 1
            self.osm_bad(f"{message[0]} without this Brain's credential", "forged")
            return
        if message[0] == "trader_up":  # a restarted Trader: whatever was in flight is lost
            if self.osm_unacked:
                self.log_info(f"the Trader restarted: re-sending {len(self.osm_unacked)} orders")
                self._osm_resend(float("inf"))
            return
        event = message[1]
        if event.brain != self.name:
            self.osm_forged += 1
            self.osm_bad(f"event for Brain {event.brain!r} delivered to {self.name!r}", "forged")
            return
        self.osm_events_received += 1  # copies included: the lock-step counts what was sent
        self.osm_unacked.pop(event.client_id, None)
        key = event_key(event)
        if not self.osm_seen.add(key):
            self.osm_duplicate_events += 1  # a restarted Trader reported it again
            if self.osm_journal is not None:
                self._osm_checkpoint(event)  # acknowledged: not delivered a third time
            self._osm_release()
            return
        self.osm_events.append(event)
        if event.kind == "filled":
            held = self.osm_positions.get(event.symbol, 0.0) + position_change(event)
            self.osm_positions[event.symbol] = 0.0 if abs(held) < 1e-9 else held
        # an event is handled again only when it was delivered, not acknowledged, and the
        # Brain died: its orders are looked up in the journal (cheap, events are few)
        self._osm_handle(f"event|{key}", True, self.on_order_event, event)
        self._osm_release()

    def osm_halt(self) -> bool:
        """Stop this Brain for good (the operator's kill switch): its code is no longer
        called; the process stays, so nothing restarts it."""
        if not self.osm_halted:
            # its orders in flight stay: re-sent, the Trader refuses them as stopped, and the
            # lock-step, which counted them, gets their events
            self.osm_halted = True
            self.log_warning("operator: stopped by the kill switch")
        return True

    # -- inspection ----------------------------------------------------------------------------
    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stats.update(
            state="stopped" if self.osm_halted else "running",
            bars=self.osm_bars, ticks=self.osm_ticks, orders=self.osm_orders_sent,
            events=self.osm_events_received, gaps=self.osm_gaps, tick_gaps=self.osm_tick_gaps,
            unacked=len(self.osm_unacked), resent=self.osm_resent, forged=self.osm_forged,
            duplicate_events=self.osm_duplicate_events, replayed=self.osm_replayed,
            missed=self.osm_missed, run_dropped=self.osm_run_dropped,
        )  # fmt: skip
        return stats

    def osm_series_frame(self, bsid: Any) -> Any:
        """A chronological DataFrame copy of a subscribed series (for tests and GUIs)."""
        return self.osm_series[BarSeriesID.parse(bsid)].to_pandas()

    def osm_event_list(self) -> list[OrderEvent]:
        return list(self.osm_events)

    def osm_plots_since(self, seq: int = 0) -> dict[str, Any]:
        """The values plotted after number ``seq`` (all those kept when ``seq`` is 0 or too
        old), for a GUI that polls: see :meth:`PlotLog.since`."""
        return {"pid": self.osm_pid, **self.osm_plots.since(int(seq))}


def _same_order(first: Order, again: Order) -> bool:
    """Whether ``again`` repeats ``first`` (all but the client id and the time)."""
    return first._replace(client_id="", time=0) == again._replace(client_id="", time=0)


class PlotLog:
    """The values a Brain plotted (:meth:`~osmarkets.brain.Brain.plot`), each at the bar it
    was handling: ``(series key, name) -> {bar time: value}`` for the last ``keep`` bars, and
    the last ``recent`` additions numbered, so a GUI polling with the last number it saw gets
    only what is new."""

    def __init__(self, keep: int = 10_000, recent: int = 50_000) -> None:
        self.keep = keep
        self.values: dict[tuple[str, str], dict[int, float]] = {}
        self.panels: dict[tuple[str, str], str] = {}
        self.recent: deque[tuple[int, str, str, str, int, float]] = deque(maxlen=recent)
        self.seq = 0
        self._at: tuple[str, int] | None = None

    def at(self, series: str, time: int) -> None:
        """The bar being handled: what :meth:`add` attaches values to."""
        self._at = (series, time)

    def add(self, name: str, panel: str, value: float) -> None:
        if self._at is None:
            return  # before the first bar: nothing to attach it to
        series, time = self._at
        key = (series, name)
        values = self.values.setdefault(key, {})
        values[time] = value
        if len(values) > self.keep:
            del values[next(iter(values))]
        self.panels[key] = panel
        self.seq += 1
        self.recent.append((self.seq, series, name, panel, time, value))

    def since(self, seq: int) -> dict[str, Any]:
        """``{'seq': last number, 'full': bool, 'points': [(series, name, panel, time, value),
        ...]}``: the points numbered after ``seq``, or every point kept (``full``) when
        ``seq`` is 0, ahead of this log (another process's) or older than what it keeps."""
        oldest = self.recent[0][0] if self.recent else self.seq + 1
        if 0 < seq <= self.seq and seq >= oldest - 1:
            points = [p[1:] for p in self.recent if p[0] > seq]
            return {"seq": self.seq, "full": False, "points": points}
        points = [(series, name, self.panels[(series, name)], time, value)
                  for (series, name), values in self.values.items()
                  for time, value in values.items()]  # fmt: skip
        return {"seq": self.seq, "full": True, "points": points}


class _SeenEvents:
    """The keys of the last ``limit`` order events handled (:func:`event_key`)."""

    def __init__(self, keys: Any = (), limit: int = 200_000) -> None:
        self._order: deque[str] = deque()
        self._keys: set[str] = set()
        self._limit = limit
        for key in keys:
            self.add(str(key))

    def add(self, key: str) -> bool:
        """True if ``key`` is new (and remember it)."""
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._limit:
            self._keys.discard(self._order.popleft())
        return True


def make_brain_class(user_class: type) -> type:
    """The agent class for ``user_class``: the user's Brain first, so its hooks and
    parameters win, then :class:`BrainAgent`."""
    if not (isinstance(user_class, type) and issubclass(user_class, Brain)):
        raise TypeError(f"base: expected a Brain subclass, got {user_class!r}")
    namespace = {
        "bind": BrainAgent._osm_bind_dispatch,
        "subscribe": BrainAgent.subscribe,
        "__module__": BrainAgent.__module__,
    }
    return type(f"{user_class.__name__}Agent", (user_class, BrainAgent), namespace)
