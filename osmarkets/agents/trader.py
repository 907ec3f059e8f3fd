"""The Trader: pre-trade risk checks, broker calls in a worker thread, every order event back
to the Brain that sent the order.

Sockets
    ``orders`` (PULL): ``('hello', brain, events_url, auth)``, ``('order', Order, auth)``,
    ``('cancel', brain, client_id, auth)`` from Brains; ``auth`` is the named Brain's
    credential (a message without it is refused and counted as ``forged``), and every order is
    checked again field by field (:func:`~osmarkets.brokers.base.check_order`) before the risk
    limits: an invalid one is rejected with the reason. PUSH/PULL never drops: a full queue blocks
    the sender instead.
    ``market`` (PULL, connected to the Router): ticks and bars the broker fills orders on; in
    lock-step, ``('step', id, message, orders_watermark)``; with runs (see
    :mod:`osmarkets.agents.router`), ``('steps', id, ahead, message, orders_watermark)``: the
    ``ahead`` steps first, then the Brains' orders held since the last acknowledgement, then
    the step on ``message`` (None: none) once the watermark is reached.
    one PUSH per Brain to its ``events`` PULL: the order events (a channel that cannot drop).
    ``observers`` (PUB): for GUIs and monitors, ``('update', seq, events, account)`` after
    every broker job that produced order events (accepted, filled, rejected, cancelled) or
    changed the account (balance, equity, positions). PUB never blocks the Trader: past the
    high-water mark a slow observer's messages are dropped, it sees the gap in ``seq`` and
    re-reads :meth:`TraderAgent.observer_snapshot` through the proxy.

The broker is only touched by one worker thread, which talks to the agent's loop over inproc
sockets: a slow broker (REST calls to OANDA) never blocks the loop, and the seam is the same for
the simulated broker, which is just fast.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import secrets
import threading
import time
from collections import deque
from math import nan
from pathlib import Path
from typing import Any

import zmq
from osbrain.address import AgentAddress

from .. import wire
from ..brokers.base import OrderEvent, check_order, event_key, position_change
from ..brokers.simulated import SimulatedBroker
from ..brokers.statefile import write_state_file
from ..journal import Journal
from ..operator import LOG_PREFIX, OPERATOR, PAUSED, STOPPED, Books, flatten_orders, order_ended
from .base import OsmAgent, dumps
from .risk import RiskLimits

_ORDERS = wire.Decoder(wire.TRADER_ORDERS)
#: the journal's keys of the operator's requests not carried out yet: flattens (a JSON list
#: of [brain, account]) and cancels of every pending order (a JSON list of brains; null: all)
FLATTENS = "operator.flattens"
CANCELS = "operator.cancels"
#: the journal's copy of the broker's state file, [path, text], committed with the events
BROKER_STATE = "trader.broker_state"
#: seconds between two attempts at a reconciliation that failed, while requests wait for it
RECONCILE_RETRY = 5.0
#: the broker jobs that poll the broker (after none for a poll interval, the Trader polls)
_POLLING_JOBS = frozenset(("market", "step", "run", "poll", "reconcile"))
#: a cancel of the pending orders that left some pending (the broker could not be asked) is
#: tried again this many seconds later, up to CANCEL_ATTEMPTS times in all
CANCEL_RETRY = 5.0
CANCEL_ATTEMPTS = 5
_MARKET = wire.Decoder(wire.TRADER_MARKET)


#: What observers see of the account (the reconciliation report stays in the Trader).
_ACCOUNT_KEYS = ("positions", "equity", "balance")


class TraderAgent(OsmAgent):
    """See the module docstring."""

    def osm_setup(self) -> None:
        cfg = self.osm_cfg
        self.risk = RiskLimits.from_mapping(cfg.get("risk"))
        self.lockstep = bool(cfg.get("lockstep", False))
        self.orders_received: dict[str, int] = {}
        self.events_sent: dict[str, int] = {}
        self.undeliverable = 0
        self.fills: list[OrderEvent] = []
        self.conversions: list[float] = []  # account currency: one per fill (brokers/money.py)
        self.events: list[OrderEvent] = []  # every order event delivered (results' orders)
        self._conversion_of: dict[tuple, float] = {}
        self.equity_points: list[tuple[int, float]] = []
        self.receipts: deque[tuple[str, int]] = deque(maxlen=200_000)
        self.brains: dict[str, str] = {}  # brain -> alias of its events socket
        # brain -> its credential (given by the owner over the authenticated control plane):
        # an order, cancel or hello in a Brain's name is accepted only with it
        self.brain_auth: dict[str, str] = dict(self.osm_secrets.get("brain_auth") or {})
        self.forged = 0  # messages refused for a missing or wrong credential
        self.invalid_orders = 0  # orders rejected by check_order
        # Client ids already handled: a Brain re-sends an order until its first event arrives
        # (after a timeout, or when this Trader restarted); a copy is never submitted twice.
        self.handled: dict[str, None] = {}
        self.handled_cap = int(cfg.get("handled_cap", 1_000_000))
        self.duplicates = 0
        # The journal (osmarkets/journal.py): an order is recorded as going to the broker
        # before the call, the broker's answer before it is delivered; a Brain's events stay
        # there until it acknowledges them (delivered again after any restart).
        journal_path = cfg.get("journal_path")
        self.journal = (
            Journal(journal_path, durability=cfg.get("durability", "process"))
            if journal_path else None
        )  # fmt: skip
        self.redelivered = 0  # events delivered again (unacknowledged, or asked again)
        self.recovered_orders = 0  # orders a dead Trader left with the broker, resolved
        self.incident_count = 0
        self.incidents: deque[dict[str, Any]] = deque(maxlen=100)
        self.waiting_step: tuple | None = None
        self.in_flight = 0
        # lock-step in runs: the Brains' orders wait from each acknowledgement of a step to
        # the next 'steps' message, which first runs the steps they handled without ordering
        self.lockstep_runs = self.lockstep and int(cfg.get("lockstep_run", 1)) > 1
        self.holding = False
        self.held_step_orders: list[tuple[tuple, int]] = []
        # operator controls (osmarkets/operator.py), kept in the journal: a restarted Trader
        # still refuses a paused Brain's orders and keeps the kill switch on
        self.paused: set[str] = set(self._remembered("operator.paused"))
        self.stopped: set[str] = set(self._remembered("operator.stopped"))
        if self.journal is not None and self.journal.get("operator.kill") == "1":
            self.risk.kill_switch = True
        # the orders handed to the broker (from the moment the submit is queued: a cancel
        # queued after it reaches the broker after it) and not ended: client id -> what a
        # flatten and a cancel need (a previous run's, from the journal, with their Brain only)
        self.open_orders: dict[str, dict[str, Any]] = {
            client_id: {"brain": brain, "symbol": "", "sign": 0.0, "remaining": 0.0,
                        "market": False}
            for client_id, brain in (self.journal.open_orders() if self.journal else {}).items()
        }  # fmt: skip
        self.books = Books(self.journal.fills() if self.journal is not None else ())
        self.marks: dict[str, float] = {}  # symbol -> last price seen (the Brains' P&L)
        self._operator_ids = itertools.count(1)
        # flatten and cancel requests not carried out yet, in the journal until they are: a
        # Trader that dies with one queued carries it out when it is back (once reconciled)
        self._flatten_requests: list[tuple[str | None, bool]] = [
            (entry[0], entry[1]) for entry in self._journaled(FLATTENS, _is_flatten_request)
        ]
        self._cancel_requests: list[str | None] = self._journaled(CANCELS, _is_brain_or_none)
        self._held_cancels = list(self._cancel_requests)  # until reconciled
        self._held_flattens = list(self._flatten_requests)
        # operator ids '<brain>-<8 hex>-<n>', the form of every client id (OANDA's fallback
        # reads the Brain from it)
        self._operator_run = secrets.token_hex(4)
        self.positions: dict[str, float] = {}
        self.broker_state: dict[str, Any] = {}
        # observers (GUIs): every order event and the account, on a PUB that never blocks
        self.observer_seq = 0
        self.observed: deque[tuple[int, OrderEvent]] = deque(
            maxlen=int(cfg.get("observer_events", 10_000))
        )  # (seq of the update that carried it, event), for observer_snapshot
        self._observed_account: dict[str, Any] | None = None
        self._observed_evicted = 0  # update number of the newest event pushed out of observed
        self._observed_packed = b""
        self.osm_bind("PUB", "observers")
        # zmq's PUB drops (never blocks) past this many messages queued for one observer
        self._socket["observers"].setsockopt(zmq.SNDHWM, int(cfg.get("observers_hwm", 10_000)))
        self.osm_bind("PULL", "orders", handler=self.on_orders)
        market = cfg.get("router_market")
        if market is not None:
            self.connect(market, alias="market", handler=self.on_market)
        router_in = cfg.get("router_in")
        if router_in is not None:
            self.connect(router_in, alias="router")
        # the worker thread and its inproc sockets
        results = self.bind("PULL", alias="results", handler=self.on_result,
                            transport="inproc", serializer="raw")  # fmt: skip
        # No high-water mark on the loop <-> broker-thread pipes (inproc: unlimited when one
        # side has none): with both bounded, a burst filled them both ways and each thread
        # blocked on its send forever (the loop on a job, the broker thread on a result).
        # The backlog is bounded by the feed, which the Router buffers anyway.
        self._socket["results"].setsockopt(zmq.RCVHWM, 0)
        self._work = self._context.socket(zmq.PUSH)
        self._work.setsockopt(zmq.SNDHWM, 0)
        work_addr = f"inproc://{self.name}-work"
        self._work.bind(work_addr)
        factory = cfg.get("broker_factory")
        broker = factory() if factory is not None else None
        self._state_frozen = False  # after a journal failure (see _on_result)
        self.state_file_errors = 0
        if broker is not None and self.journal is not None and hasattr(broker, "take_state"):
            # the broker's state file is written here, journaled with the events it covers:
            # a crash in between reports them again instead of losing them
            broker.defer_state = True
            self._restore_state_file(str(getattr(broker, "state_path", "")))
        self._worker = threading.Thread(
            target=_worker, args=(self._context, work_addr, f"inproc://{results.address}", broker),
            name=f"{self.name}-broker", daemon=True,
        )  # fmt: skip
        self._worker.start()
        # A broker that can reconcile (OANDA) first adopts the account's state (positions,
        # pending orders, missed fills); orders arriving meanwhile are held, not dropped.
        self.reconciliation: dict[str, Any] = {}
        self.held_orders: list[tuple[tuple, int]] = []
        self.reconciled = not hasattr(broker, "reconcile")
        self.reconciling = False
        # A broker that polls (OANDA, ccxt) polls on market data; when none came for a
        # ``poll_interval`` the Trader asks it to (a quiet market's fills). A failed
        # reconciliation and cancels the broker could not be asked about are tried again.
        self._has_broker = broker is not None
        self._idle_after = float(getattr(broker, "poll_interval", 0.0) or 0.0)
        if not callable(getattr(broker, "poll", None)):
            self._idle_after = 0.0
        self._last_poll = self._last_reconcile = time.monotonic()
        #: cancels to send again: (when, the request's brain, its orders, attempts so far)
        self._cancel_retries: list[tuple[float, str | None, tuple[str, ...], int]] = []
        for brain, address in (cfg.get("brains") or {}).items():  # a restarted Trader
            self._on_order_message(("hello", brain, address, self.brain_auth.get(brain, "")), 0)
            # tell the Brain: it re-sends the orders it has no event for yet
            if brain in self.brains:
                self.osm_send(
                    self.brains[brain], ("trader_up", self.osm_pid, self.brain_auth[brain])
                )
        if not self.reconciled:
            self._reconcile_again()
        else:
            self._release_held_requests()

    def before_loop(self) -> None:
        # Timers must start here, not in osm_setup: they talk to the running main loop.
        if self._has_broker:
            self.each(min(1.0, max(0.05, self._idle_after or 1.0)), "osm_idle")

    def osm_idle(self) -> None:
        """Try a failed reconciliation again (throttled) while orders or operator requests
        wait for it; send again the cancels due; poll the broker if no market data made it
        poll for a poll interval."""
        now = time.monotonic()
        if not self.reconciled:
            waiting = self.held_orders or self._held_flattens or self._held_cancels
            if waiting and not self.reconciling and now - self._last_reconcile >= RECONCILE_RETRY:
                self._reconcile_again()
            return
        due = [r for r in self._cancel_retries if now >= r[0]]
        if due:
            self._cancel_retries = [r for r in self._cancel_retries if now < r[0]]
            for _, brain, client_ids, attempts in due:
                self._queue_cancels(brain, client_ids, attempts)
        if self._idle_after and not self.in_flight and now - self._last_poll >= self._idle_after:
            self._to_worker(("poll",))

    # -- inputs ----------------------------------------------------------------------------
    def on_orders(self, data: bytes) -> None:
        self.osm_received += 1
        now = time.time_ns()
        message = self.osm_decode(data, _ORDERS)
        if message is None or not self._authentic(message):
            return
        if not self._duplicate(message):
            if self.holding and message[0] != "hello":
                self.held_step_orders.append((message, now))
                return
            self.osm_guard(f"trader {message[0]}", self._on_order_message, message, now)

    def register_brain(self, brain: str, auth: str) -> None:
        """The owner tells the Trader a Brain's credential before the Brain starts."""
        self.brain_auth[str(brain)] = str(auth)

    def _authentic(self, message: tuple) -> bool:
        """True when the message carries the credential of the Brain it names: no Brain (or
        stranger) can send, cancel or say hello as another. Refusals are counted and logged."""
        brain = message[1].brain if message[0] == "order" else message[1]
        expected = self.brain_auth.get(brain)
        if expected and secrets.compare_digest(message[-1].encode(), expected.encode()):
            return True
        self.forged += 1
        self.osm_bad(
            f"{message[0]} in the name of Brain {brain!r:.60} without its credential", "forged"
        )
        return False

    def _duplicate(self, message: tuple) -> bool:
        """True for an order whose client id this Trader already handled (a Brain's re-send):
        it is counted and dropped; its events were or will be sent once."""
        if message[0] != "order":
            return False
        order = message[1]
        client_id = order.client_id
        known = client_id in self.handled
        if not known and self.journal is not None:
            found = self.journal.order(client_id)
            known = found is not None and found[1] != "sent"  # a Trader before this one had it
        if known:
            self.duplicates += 1
            if self.journal is not None and order.brain in self.brains:
                # what the broker answered goes again to the Brain (it drops copies): a
                # re-send means it has no event for this order
                for event in self.journal.events_of(client_id):
                    self.redelivered += 1
                    self._send_event(event)
            return True
        self._mark_handled(client_id)
        return False

    def _reconcile_again(self) -> None:
        """Ask the broker to reconcile, unless it is at it: the last attempt failed."""
        if not self.reconciling:
            self.reconciling = True
            self._last_reconcile = time.monotonic()
            self._to_worker(("reconcile",))

    def _mark_handled(self, client_id: str) -> None:
        self.handled[client_id] = None
        if len(self.handled) > self.handled_cap:
            del self.handled[next(iter(self.handled))]

    def _on_order_message(self, message: tuple, now: int) -> None:
        kind = message[0]
        if kind != "hello" and not self.reconciled:
            self.held_orders.append((message, now))
            self._reconcile_again()
            return
        if kind == "hello":
            _, brain, address, _auth = message
            server = self._events_address(str(address))
            if server is None:
                self.osm_bad(
                    f"hello of {brain!r} with a foreign address {address!r:.200}", "forged"
                )
                return
            alias = f"events:{brain}"
            if alias in self._socket:
                self.close(alias, linger=0)
            self.connect(server, alias=alias)
            self.brains[str(brain)] = alias
            if self.journal is not None:  # what it has not acknowledged, again, in order
                for event in self.journal.unacked_events(str(brain)):
                    self.redelivered += 1
                    self._send_event(event)
            return
        if kind == "order":
            order = message[1]
            self.orders_received[order.brain] = self.orders_received.get(order.brain, 0) + 1
            self.receipts.append((order.client_id, now))
            held = self.positions.get(order.symbol, 0.0)
            reason = check_order(order)
            if reason is not None:
                self.invalid_orders += 1
                self.osm_bad(
                    f"order {order.client_id!r:.80} of {order.brain!r}: {reason}", "order"
                )
                reason = f"invalid order: {reason}"
            elif order.brain in self.paused or order.brain in self.stopped:
                reason = PAUSED if order.brain in self.paused else STOPPED
            else:
                reason = self.risk.check(order, held)
            if reason is not None:
                event = OrderEvent(
                    "rejected", order.client_id, order.symbol, order.side, order.size,
                    time=order.time, reason=reason, brain=order.brain,
                )  # fmt: skip
                self._to_worker(("echo", [event]))
            else:
                if self.journal is not None:  # write-ahead: after a crash, looked up
                    self.journal.mark_submitting(order.client_id, order)
                self._submit(order)
        else:
            _, brain, client_id, _auth = message
            self.orders_received[brain] = self.orders_received.get(brain, 0) + 1
            self._to_worker(("cancel", str(brain), str(client_id)))
        self._maybe_step()

    def on_market(self, data: bytes) -> None:
        self.osm_received += 1
        message = self.osm_decode(data, _MARKET)
        if message is None:
            return
        if message[0] == "steps":
            self.osm_guard("trader steps", self._on_steps, message)
            return
        self._mark(message[2] if message[0] == "step" else message)
        if message[0] == "step":
            self.waiting_step = message
            self._maybe_step()
        else:
            self._to_worker(("market", message))

    def _on_steps(self, message: tuple) -> None:
        """The lock-step with runs: the steps the Brains handled without ordering, then their
        orders (held until now), then the next step once every order it waits for is in."""
        _, step_id, ahead, market, orders_wm = message
        ahead = [wire.as_tuple(item) for item in ahead]
        for item in ahead:
            self._mark(item)
        if market is not None:
            self._mark(market)
        if ahead:
            self._to_worker(("run", ahead))
        held, self.held_step_orders = self.held_step_orders, []
        self.holding = False
        for order_message, now in held:
            self.osm_guard(
                f"trader {order_message[0]}", self._on_order_message, order_message, now
            )
        self.waiting_step = ("step", step_id, market, orders_wm)
        self._maybe_step()

    def _mark(self, market: tuple) -> None:
        """The last price of the symbol (a bar's close, a quote's mid), for the P&L."""
        what, symbol, payload = market
        last = payload[-1] if what == "ticks" and payload else payload
        if what == "bar":
            self.marks[symbol] = float(last.close)
        elif last:
            self.marks[symbol] = (float(last.bid) + float(last.ask)) / 2.0

    def _maybe_step(self) -> None:
        """Run the waiting step once every order the Brains sent before it has arrived."""
        step = self.waiting_step
        if step is None:
            return
        _, step_id, market, orders_wm = step
        for brain, count in orders_wm.items():
            if self.orders_received.get(brain, 0) < count:
                return
        self.waiting_step = None
        self._to_worker(("step", step_id, market))

    def _submit(self, order: Any, job: str = "submit") -> None:
        """Hand ``order`` to the broker thread, and count it open from now on."""
        self.open_orders[order.client_id] = {
            "brain": order.brain, "symbol": order.symbol,
            "sign": 1.0 if order.side == "buy" else -1.0, "remaining": float(order.size),
            "market": order.type == "market",
        }  # fmt: skip
        self._to_worker((job, order))

    def _to_worker(self, job: tuple) -> None:
        self.in_flight += 1
        if job[0] in _POLLING_JOBS:
            self._last_poll = time.monotonic()
        self._work.send_pyobj(job)

    # -- results from the worker ---------------------------------------------------------------
    def on_result(self, data: bytes) -> None:
        self.osm_guard("trader result", self._on_result, data)

    def _on_result(self, data: bytes) -> None:
        self.in_flight -= 1
        job, events, state = pickle.loads(data)  # inproc, from this process's own thread
        rates = state.pop("conversions", None)
        if rates:  # account currency: the conversion of each fill, kept with the fill
            fills = [e for e in events if e.kind == "filled"]
            self._conversion_of.update(zip(map(_fill_key, fills), rates, strict=False))
        state_file = state.pop("state_file", None)
        if self._state_frozen:
            state_file = None
        if self.journal is not None and (events or state_file is not None):
            # recorded before delivered (not a copy), with the broker's state that covers
            # them in the same commit: the state never moves past an event not journaled
            meta = {}
            if events and state["positions"] != self.positions:  # the account's, last read
                meta["trader.positions"] = json.dumps(state["positions"])
            if state_file is not None:
                meta[BROKER_STATE] = json.dumps(list(state_file))
            try:
                events = self.journal.record_events(events, meta)
            except Exception:
                # events not journaled: the broker's state stays where it is until a restart,
                # which reports them again
                self._state_frozen = True
                raise
        if state_file is not None:  # a copy of the journal's, which the broker reads
            self._write_state_file(*state_file)
        self.positions = state["positions"]
        self.broker_state = state
        for event in events:
            self._deliver(event)
        if job[0] == "run":
            for market, equity in zip(job[1], state.pop("equities", ()), strict=False):
                self.equity_points.append((int(market[2].time), equity))
        elif job[0] == "step" and job[2] is None:
            pass  # a 'steps' message without a step: nothing to mark
        elif job[0] == "step" or (job[0] == "market" and job[1][0] == "bar"):
            market = job[2] if job[0] == "step" else job[1]
            self.equity_points.append((int(market[2].time), float(state["equity"])))
        if job[0] == "step":
            quiet = bool(state.pop("quiet", False))
            self.osm_send("router", ("trader_ack", job[1], dict(self.events_sent), quiet))
            self.holding = self.lockstep_runs
        if state.get("error"):
            self.osm_errors += 1
            self.osm_last_errors.append(state["error"])
            self.log_error(state["error"])
        if job[0] == "reconcile":
            self._on_reconciled(state)
        self._observe(events, state)  # last: the Brains and the lock-step come first
        if job[0] == "flatten":  # every job queued before it is done: its fills are known
            self._flatten(job[1], job[2])
        elif job[0] == "cancelled":  # the cancels of a request have reached the broker
            self._cancels_answered(job[1], job[2], job[3])

    def _cancels_answered(self, brain: str | None, asked: tuple[str, ...], attempts: int) -> None:
        """A cancel request is carried out when none of the orders it cancelled is pending
        any more. Those the broker could not be asked about (a timeout, a 5xx: a 'rejected' of
        size 0, the order going on) are cancelled again later, those only (not orders sent
        since); after CANCEL_ATTEMPTS the orders still pending are an incident."""
        pending = tuple(c for c in asked if c in self.open_orders)
        if pending:
            if attempts < CANCEL_ATTEMPTS:  # (no broker: no order is ever pending)
                due = time.monotonic() + CANCEL_RETRY
                self._cancel_retries.append((due, brain, pending, attempts))
                self.log_warning(f"{LOG_PREFIX}{len(pending)} orders still pending after a "
                                 f"cancel (attempt {attempts}): cancelled again in "
                                 f"{CANCEL_RETRY:g} s")  # fmt: skip
                return
            self._incident("cancel", f"{len(pending)} orders still pending after {attempts} "
                           f"cancels: {', '.join(pending[:5])}")  # fmt: skip
        with contextlib.suppress(ValueError):
            self._cancel_requests.remove(brain)
        self._remember(CANCELS, json.dumps(self._cancel_requests))

    def _restore_state_file(self, path: str) -> None:
        """Write the broker's state as last journaled, if this Trader's predecessor died before
        it wrote the file (the file is a copy of the journal's)."""
        try:
            saved = json.loads(self.journal.get(BROKER_STATE) or "null")  # type: ignore[union-attr]
        except (ValueError, RecursionError):
            saved = None
        if not (isinstance(saved, list) and len(saved) == 2 and saved[0] == path and path
                and isinstance(saved[1], str)):  # fmt: skip
            return
        with contextlib.suppress(OSError):
            if Path(path).read_text() == saved[1]:
                return
        self._write_state_file(path, saved[1])

    def _write_state_file(self, path: str, text: str) -> None:
        try:
            write_state_file(path, text)
        except OSError as exc:  # the file stays behind the journal: events reported again
            self.state_file_errors += 1
            if self.state_file_errors == 1 or self.state_file_errors % 1000 == 0:
                self._incident("state_file", f"{self.state_file_errors} writes of the broker's "
                               f"state file failed: {exc}")  # fmt: skip

    def _on_reconciled(self, state: dict[str, Any]) -> None:
        """Accept orders once reconciled (replaying those held); if reconciliation failed,
        reject the held orders with the reason (the next order triggers another attempt)."""
        self.reconciling = False
        held, self.held_orders = self.held_orders, []
        if state.get("error"):
            reason = "trader not reconciled with the account: " + state["error"].split("\n")[0]
            self.reconciliation = {"error": reason}
            for message, _ in held:
                if message[0] == "order":
                    order = message[1]
                    event = OrderEvent("rejected", order.client_id, order.symbol, order.side,
                                       order.size, reason=reason, brain=order.brain)  # fmt: skip
                else:
                    event = OrderEvent("rejected", str(message[2]), "", "", 0.0,
                                       reason=reason, brain=str(message[1]))  # fmt: skip
                self._to_worker(("echo", [event]))
            return
        self.reconciliation = dict(state.get("reconciliation") or {})
        self.reconciled = True
        # Orders whose outcome the account already holds (fills this Trader missed while it
        # was down) are handled: a Brain's re-send of one is not submitted again.
        settled = {
            event.client_id for event in self.reconciliation.get("missed_events") or []
            if getattr(event, "client_id", "")
        }  # fmt: skip
        for client_id in settled - self.handled.keys():
            self._mark_handled(client_id)
        info = self.reconciliation
        self.log_info(
            f"reconciled with the account: positions {info.get('positions')}, "
            f"{len(info.get('pending_orders') or [])} pending orders, "
            f"{len(info.get('missed_events') or [])} missed events"
        )
        if info.get("missed_events"):
            self._incident("reconciliation", f"{len(info['missed_events'])} events the "
                           "Trader had missed recovered from the account")  # fmt: skip
        self._recover_orders(settled)
        self._release_held_requests()  # after the recovered orders: their fills count
        self._compare_positions(dict(state.get("positions") or {}))
        for message, when in held:
            if message[0] == "order" and getattr(message[1], "client_id", None) in settled:
                self.duplicates += 1  # a re-send of an order the account already filled
                continue
            self.osm_guard("trader held order", self._on_order_message, message, when)

    def _recover_orders(self, settled: set[str]) -> None:
        """Orders a dead Trader handed to the broker without recording the answer: those the
        reconciliation did not settle go to the broker's ``recover`` (ccxt: looked up by client
        id, never placed again), or are submitted again where it has none, which the broker
        resolves by client id (OANDA: an existing id is looked up, never executed twice)."""
        if self.journal is None:
            return
        for order in self.journal.submitting():
            if order.client_id in settled or self.journal.events_of(order.client_id):
                continue
            self.recovered_orders += 1
            self._mark_handled(order.client_id)
            self._incident("recovered_order", f"order {order.client_id} of {order.brain} was "
                           "with the broker when the Trader died: looked up again")  # fmt: skip
            self._submit(order, "recover")

    def _compare_positions(self, account: dict[str, float]) -> None:
        """Log, as an incident, where the account's positions differ from the fills the
        journal reported to the Brains (a trade made outside this deployment, say)."""
        if self.journal is None:
            return
        reported: dict[str, float] = {}
        for fill in self.journal.fills():
            reported[fill.symbol] = reported.get(fill.symbol, 0.0) + position_change(fill)
        for symbol in sorted(set(account) | set(reported)):
            held, known = float(account.get(symbol, 0.0)), reported.get(symbol, 0.0)
            if abs(held - known) > 1e-6:
                self._incident("reconciliation", f"{symbol}: the account holds {held:g}, the "
                               f"Brains' fills add up to {known:g}")  # fmt: skip

    def _incident(self, kind: str, detail: str) -> None:
        """Something an operator must know (the owner's Overmind collects these)."""
        self.incident_count += 1
        self.incidents.append({"n": self.incident_count, "kind": kind, "detail": detail})
        self.log_warning(f"{kind}: {detail}")

    def _observe(self, events: list[OrderEvent], state: dict[str, Any]) -> None:
        """Publish ``('update', seq, events, account)`` to the observers when a broker job
        produced events or changed the account. PUB never waits for a subscriber; an observer
        that sees a gap in ``seq`` re-reads :meth:`observer_snapshot`."""
        account = {key: state[key] for key in _ACCOUNT_KEYS if key in state}
        packed = dumps(account)  # compared as bytes: a NaN equity equals itself here
        if not events and packed == self._observed_packed:
            return
        self._observed_account, self._observed_packed = account, packed
        self.observer_seq += 1
        overflow = len(self.observed) + len(events) - (self.observed.maxlen or 0)
        if overflow > len(self.observed):  # some of this update's own events do not fit
            self._observed_evicted = self.observer_seq
        elif overflow > 0:  # the oldest make room: who has not read them missed them
            self._observed_evicted = self.observed[overflow - 1][0]
        self.observed.extend((self.observer_seq, event) for event in events)
        self._socket["observers"].send(dumps(("update", self.observer_seq, events, account)))

    def observed_since(self, seq: int) -> dict[str, Any]:
        """The order events of the updates after ``seq`` (oldest first) and the account: what
        a monitor that polls reads (the Informer, twice a second: a few calls instead of one
        message per tick). ``gap``: events it missed (older than the ``observer_events`` kept,
        or a restarted Trader's numbering)."""
        seq = int(seq)
        newer: list[OrderEvent] = []
        for number, event in reversed(self.observed):
            if number <= seq:
                break
            newer.append(event)
        newer.reverse()
        gap = seq > self.observer_seq or seq < self._observed_evicted
        return {"seq": self.observer_seq, "events": newer, "gap": gap, "pid": self.osm_pid,
                "account": dict(self._observed_account or {})}  # fmt: skip

    def observer_snapshot(self, events: int = 500) -> dict[str, Any]:
        """What an observer reads first, and again after a gap in the sequence: ``seq`` (of the
        last update published), the newest ``events`` order events as ``(seq, event)`` pairs
        (an observer keeps those after the last update it saw) and the account."""
        count = max(0, int(events))
        return {
            "seq": self.observer_seq,
            "events": list(self.observed)[-count:] if count else [],
            "account": dict(self._observed_account or {}),
        }

    def _deliver(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._follow(event)
        if event.kind == "rejected":  # a Brain's order that did not execute: always said
            self.log_warning(
                f"order {event.client_id!r:.80} of {event.brain!r:.40} rejected: "
                f"{event.reason:.300}"
            )
        if event.kind == "filled":
            self.fills.append(event)
            self.books.add(event)
            rate = self._conversion_of.pop(_fill_key(event), None)
            if rate is not None:
                self.conversions.append(rate)
        alias = self.brains.get(event.brain)
        if alias is None and event.brain == OPERATOR:  # a flatten of what no Brain held
            self.log_info(f"{LOG_PREFIX}{event.kind} {event.side} {event.size:g} "
                          f"{event.symbol} {event.reason}".rstrip())  # fmt: skip
            return
        if alias is None:
            self.undeliverable += 1
            self.log_warning(f"no Brain {event.brain!r} for event {event}")
            return
        self._send_event(event)

    def _follow(self, event: OrderEvent) -> None:
        """Keep :attr:`open_orders` up to date with an order event."""
        tracked = self.open_orders.get(event.client_id)
        if tracked is None:
            if event.kind == "accepted":  # an order this Trader did not queue (recovered)
                self.open_orders[event.client_id] = {
                    "brain": event.brain, "symbol": event.symbol, "remaining": event.size,
                    "sign": 1.0 if event.side == "buy" else -1.0, "market": False,
                }  # fmt: skip
            return
        if order_ended(event):
            del self.open_orders[event.client_id]
        elif event.kind == "filled" and not event.reason:  # a part of it
            tracked["remaining"] = max(0.0, tracked["remaining"] - event.size)

    def _send_event(self, event: OrderEvent) -> None:
        alias = self.brains[event.brain]
        self.events_sent[event.brain] = self.events_sent.get(event.brain, 0) + 1
        self.osm_send(alias, ("event", event, self.brain_auth.get(event.brain, "")))

    def _events_address(self, url: str) -> AgentAddress | None:
        """The events socket named in a hello, if it is one of this deployment's: same
        transport, and for ipc a file in the deployment's own directory."""
        transport, _, address = url.partition("://")
        if transport != self.osm_cfg.get("transport", "ipc") or not address:
            return None
        ipc_dir = self.osm_cfg.get("ipc_dir")
        if transport == "ipc" and (not ipc_dir or os.path.dirname(address) != ipc_dir):
            return None
        return AgentAddress(transport, address, "PULL", "server", "raw")

    # -- control and inspection ----------------------------------------------------------------
    def kill_switch(self, on: bool = True) -> None:
        """Reject every new order from now on (or accept them again with ``False``)."""
        self.risk.kill_switch = bool(on)
        self._remember("operator.kill", "1" if on else "0")

    # -- operator controls (osmarkets/operator.py: Controls calls these through the proxy) -----
    def _remembered(self, key: str) -> list[str]:
        if self.journal is None:
            return []
        try:
            values = json.loads(self.journal.get(key) or "[]")
        except (ValueError, RecursionError):
            return []
        return [str(v) for v in values] if isinstance(values, list) else []

    def _remember(self, key: str, value: Any) -> None:
        self._remember_all({key: value})

    def _remember_all(self, items: dict[str, Any], orders: list[Any] | tuple = ()) -> None:
        """Journal ``items`` (a set as its sorted list) and ``orders`` as submitting, in one
        commit."""
        if self.journal is not None:
            meta = {
                k: v if isinstance(v, str) else json.dumps(sorted(v)) for k, v in items.items()
            }
            self.journal.set_with_orders(meta, orders)

    def _known_brain(self, brain: Any) -> str:
        if not isinstance(brain, str) or brain not in self.brain_auth:
            known = ", ".join(sorted(self.brain_auth)) or "none"
            raise ValueError(f"no Brain {brain!r:.60} (Brains: {known})")
        return brain

    def _operator_log(self, text: str) -> None:
        self.log_warning(LOG_PREFIX + text)

    def operator_pause(self, brain: str) -> dict[str, Any]:
        """Refuse ``brain``'s new orders with reason ``'paused'`` (it keeps its bars)."""
        self.paused.add(self._known_brain(brain))
        self._remember("operator.paused", self.paused)
        self._operator_log(f"paused Brain {brain}: its new orders are refused")
        return self.operator_status()

    def operator_resume(self, brain: str) -> dict[str, Any]:
        """Accept ``brain``'s orders again (a Brain stopped by the kill switch stays so)."""
        self.paused.discard(self._known_brain(brain))
        self._remember("operator.paused", self.paused)
        self._operator_log(f"resumed Brain {brain}")
        return self.operator_status()

    def operator_cancel_all(self, brain: str | None = None) -> dict[str, Any]:
        """Cancel the pending orders of ``brain`` (None: all of them)."""
        if brain is not None:
            self._known_brain(brain)
        self._request(cancels=(brain,))
        pending = self._cancel_or_hold(brain)
        who = f"Brain {brain}" if brain is not None else "every Brain"
        self._operator_log(f"cancelling {len(pending)} pending orders of {who}")
        return {"cancelling": pending}

    def _cancel_or_hold(self, brain: str | None) -> list[str]:
        """Cancel now, or once reconciled: the orders pending are known only then (those a
        previous Trader left are looked up first)."""
        if self.reconciled:
            return self._queue_cancels(brain)
        self._held_cancels.append(brain)
        self._reconcile_again()
        return []

    def _queue_cancels(
        self, brain: str | None, again: tuple[str, ...] = (), attempts: int = 0
    ) -> list[str]:
        """Queue a cancel of each of ``brain``'s pending orders (None: every Brain's), or of
        those of ``again`` still pending (a request's next attempt), then a marker that
        answers the request when it comes back (every cancel has reached the broker)."""
        pending = [
            (c, o["brain"]) for c, o in self.open_orders.items()
            if (c in again if attempts else brain in (None, o["brain"]))
        ]  # fmt: skip
        for client_id, owner in pending:
            self._to_worker(("cancel", owner, client_id))
        asked = tuple(c for c, _ in pending)
        self._to_worker(("cancelled", brain, asked, attempts + 1))
        return list(asked)

    def operator_flatten(self, brain: str | None = None, account: bool = False) -> dict[str, Any]:
        """Close ``brain``'s positions with market orders (None: every Brain's; ``account``:
        also what the account holds that no Brain does). The orders are the operator's:
        neither a pause nor the kill switch refuses them. They are computed when every broker
        job queued before this call is done (a fill on its way is counted), from the Brains'
        fills and their market orders still open (a second flatten does not double the
        first), and only on an account this Trader reconciled with."""
        if brain is not None:
            self._known_brain(brain)
        if not isinstance(account, bool):
            raise ValueError(f"account: expected True or False, got {type(account).__name__}")
        who = f"Brain {brain}" if brain is not None else "every Brain"
        self._operator_log(f"flattening {who}" + (" and the account" if account else ""))
        self._request(flattens=((brain, account),))
        self._to_worker(("flatten", brain, account))
        return {"flattening": brain if brain is not None else "all", "account": bool(account)}

    def _request(
        self,
        flattens: tuple[tuple[str | None, bool], ...] = (),
        cancels: tuple[str | None, ...] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Journal flatten and cancel requests (with ``meta``, in the same commit) before
        they are queued."""
        self._flatten_requests.extend(flattens)
        self._cancel_requests.extend(cancels)
        self._remember_all({**(meta or {}), FLATTENS: json.dumps(self._flatten_requests),
                            CANCELS: json.dumps(self._cancel_requests)})  # fmt: skip

    def _release_held_requests(self) -> None:
        """Queue the requests a previous Trader left: the cancels first, as the kill switch
        does."""
        cancels, self._held_cancels = self._held_cancels, []
        for brain in cancels:
            self._queue_cancels(brain)
        flattens, self._held_flattens = self._held_flattens, []
        for brain, account in flattens:
            self._to_worker(("flatten", brain, account))

    def _journaled(self, key: str, valid: Any) -> list[Any]:
        """The requests a previous Trader journaled under ``key`` and did not carry out; the
        malformed ones are an incident, and dropped."""
        text = self.journal.get(key) if self.journal is not None else None
        try:
            entries = json.loads(text or "[]")
        except (ValueError, RecursionError):
            entries = None
        requests = [entry for entry in entries if valid(entry)] if type(entries) is list else []
        dropped = len(entries) - len(requests) if type(entries) is list else 1
        if dropped:
            self._incident("journal", f"{dropped} malformed requests under {key} ignored: "
                           f"{text!r:.100}")  # fmt: skip
            self._remember(key, json.dumps(requests))  # once: not at every start
        return requests

    def _flatten(self, brain: str | None, account: bool) -> None:
        if not self.reconciled:  # the fills it would count may be missing: after
            self._held_flattens.append((brain, account))
            self.log_warning(f"{LOG_PREFIX}flatten waits for the reconciliation")
            self._reconcile_again()
            return
        # every Brain: those of this run and those the journal has orders of (a launcher run
        # again flattens what its earlier run's Brains hold before they are added again);
        # never what others did on the account (a trade by hand, another deployment)
        journaled = self.journal.order_brains() if self.journal is not None else []
        every = sorted((set(self.brain_auth) | set(journaled)) - {OPERATOR, ""})
        brains = [brain] if brain is not None else every
        positions = {b: self._brain_positions(b) for b in brains}
        if account:  # what the account holds that no Brain does (a trade by hand, a wallet)
            rest = dict(self.positions)
            for other in every:
                for symbol, units in self.books.positions(other).items():
                    rest[symbol] = rest.get(symbol, 0.0) - units
            positions[OPERATOR] = self._pending_market(OPERATOR, rest)
        orders = flatten_orders(positions, None, self._operator_id, time.time_ns())
        with contextlib.suppress(ValueError):  # the first request of these: carried out now
            self._flatten_requests.remove((brain, account))
        self._remember_all({FLATTENS: json.dumps(self._flatten_requests)}, orders)
        for order in orders:
            self._mark_handled(order.client_id)
            self._submit(order)
        detail = ", ".join(f"{o.side} {o.size:g} {o.symbol} ({o.brain})" for o in orders)
        self.log_info(f"{LOG_PREFIX}flatten orders: {detail or 'nothing held'}")

    def operator_kill(self) -> dict[str, Any]:
        """The kill switch: every new order refused, every pending order cancelled, every
        position closed; the Brains are named stopped (the caller halts them)."""
        self.risk.kill_switch = True
        self.stopped.update(self.brain_auth)
        self._operator_log("kill switch: refusing every order, cancelling, flattening, "
                           "stopping every Brain")  # fmt: skip
        # the Brains' positions (the account's others are left alone), journaled with the
        # switch: a Trader dying now still flattens when it is back
        self._request(flattens=((None, False),), cancels=(None,),
                      meta={"operator.kill": "1", "operator.stopped": self.stopped})  # fmt: skip
        cancelled = self._cancel_or_hold(None)
        self._to_worker(("flatten", None, False))
        return {"cancelling": cancelled, "flattening": "all", "brains": sorted(self.brain_auth)}

    def operator_status(self) -> dict[str, Any]:
        """Every Brain's state (``running``, ``paused``, ``stopped``), positions, fills, P&L
        and pending orders; the kill switch."""
        books = self.books.snapshot(self.marks)
        brains = {}
        for brain in sorted(self.brain_auth):
            book = books.get(brain, {"positions": {}, "fills": 0, "pnl": 0.0})
            state = ("stopped" if brain in self.stopped
                     else "paused" if brain in self.paused else "running")  # fmt: skip
            pending = sum(1 for o in self.open_orders.values() if o["brain"] == brain)
            brains[brain] = {"state": state, "pending": pending, **book}
        return {"kill_switch": self.risk.kill_switch, "brains": brains,
                "account": dict(self.positions),
                "flattening": len(self._flatten_requests)}  # fmt: skip

    def _brain_positions(self, brain: str) -> dict[str, float]:
        """``brain``'s positions once its market orders still open have filled."""
        return self._pending_market(brain, self.books.positions(brain))

    def _pending_market(self, brain: str, positions: dict[str, float]) -> dict[str, float]:
        """``positions`` moved by ``brain``'s market orders still open (they will fill)."""
        held = dict(positions)
        for order in self.open_orders.values():
            if order["brain"] == brain and order["market"] and order["symbol"]:
                symbol = order["symbol"]
                held[symbol] = held.get(symbol, 0.0) + order["sign"] * order["remaining"]
        return held

    def _operator_id(self, brain: str) -> str:
        return f"{brain}-{self._operator_run}-{next(self._operator_ids)}"

    def idle_now(self) -> bool:
        """True when no broker call is in flight and no step waits for orders."""
        return self.in_flight == 0 and self.waiting_step is None and not self.held_step_orders

    def record(self) -> dict[str, Any]:
        """Fills, equity points and the broker's account state, for results and tests."""
        return {
            "fills": list(self.fills),
            "conversions": list(self.conversions),
            "events": list(self.events),
            "equity": list(self.equity_points),
            "state": dict(self.broker_state),
            "orders_received": dict(self.orders_received),
            "events_sent": dict(self.events_sent),
        }

    def brain_snapshot(self, brain: str) -> dict[str, Any]:
        """What a restarted Brain starts from: its positions from the fills reported to it,
        the number of events sent to it and of orders received from it (the lock-step's
        watermarks), and the keys of the events it was sent (it drops copies of those)."""
        brain = str(brain)
        positions: dict[str, float] = {}
        if self.journal is not None:
            return {
                "positions": self.journal.positions(brain),
                "events": self.events_sent.get(brain, 0),
                "orders": self.orders_received.get(brain, 0),
                "seen": self.journal.acked_keys(brain),
            }
        for fill in self.fills:
            if fill.brain == brain:
                held = positions.get(fill.symbol, 0.0) + position_change(fill)
                positions[fill.symbol] = 0.0 if abs(held) < 1e-9 else held
        seen = {event_key(e) for e in self.fills if e.brain == brain}
        seen.update(event_key(e) for _, e in self.observed if e.brain == brain)
        return {
            "positions": {k: v for k, v in positions.items() if v},
            "events": self.events_sent.get(brain, 0),
            "orders": self.orders_received.get(brain, 0),
            "seen": sorted(seen),
        }

    def latency_receipts(self) -> list[tuple[str, int]]:
        return list(self.receipts)

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stats.update(
            orders=sum(self.orders_received.values()),
            fills=len(self.fills),
            equity=self.broker_state.get("equity"),
            undeliverable=self.undeliverable,
            duplicates=self.duplicates,
            forged=self.forged,
            invalid_orders=self.invalid_orders,
            redelivered=self.redelivered,
            recovered_orders=self.recovered_orders,
            incidents=list(self.incidents),
        )
        return stats


def _fill_key(event: OrderEvent) -> tuple:
    return (event.client_id, event.reason, event.time, event.size, event.price)


def _worker(context: zmq.Context, work_addr: str, results_addr: str, broker: Any) -> None:
    """Run broker calls one at a time, in order, and send back their events."""
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)  # see osm_setup: neither pipe may block its sender
    pull.connect(work_addr)
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(results_addr)
    try:
        while True:
            try:
                job = pull.recv_pyobj()
            except zmq.ContextTerminated:
                return
            events: list[OrderEvent] = []
            error = ""
            reconciliation: dict[str, Any] = {}
            converted = getattr(broker, "fill_conversions", None)
            before = len(converted) if converted is not None else 0
            equities: list[float] = []
            try:
                if job[0] == "reconcile":
                    report = broker.reconcile()
                    events = list(getattr(report, "missed_events", None) or [])
                    reconciliation = report._asdict() if hasattr(report, "_asdict") else {}
                elif job[0] == "run":  # steps in a row (the lock-step's runs)
                    for market in job[1]:
                        events.extend(_run(broker, ("step", 0, market)))
                        equities.append(float(broker.equity) if broker is not None else nan)
                else:
                    events = _run(broker, job)
            except Exception as exc:  # a broker bug must not kill the Trader
                import traceback

                error = f"broker {job[0]} raised {exc!r}:\n{traceback.format_exc()}"
            state: dict[str, Any] = {"error": error, "positions": {}, "equity": float("nan")}
            if job[0] == "reconcile" and not error:
                state["reconciliation"] = reconciliation
            if broker is not None:
                state.update(
                    positions=dict(broker.positions),
                    equity=float(broker.equity),
                    balance=float(getattr(broker, "balance", float("nan"))),
                )
                if converted:
                    state["conversions"] = converted[before:]
            taken = getattr(broker, "take_state", None)
            if taken is not None:
                state["state_file"] = taken()
            if job[0] == "run":
                state["equities"] = equities
            elif job[0] == "step":
                state["quiet"] = _quiet(broker)
            try:
                push.send(pickle.dumps((job, events, state), protocol=pickle.HIGHEST_PROTOCOL))
            except zmq.ContextTerminated:
                return
    finally:
        pull.close(linger=0)
        push.close(linger=0)


def _is_flatten_request(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 2 and _is_brain_or_none(entry[0])
            and isinstance(entry[1], bool))  # fmt: skip


def _is_brain_or_none(entry: Any) -> bool:
    return entry is None or isinstance(entry, str)


def _quiet(broker: Any) -> bool:
    """True when no step can produce an order event until an order comes: the simulated
    broker holds no open order and cannot close positions out by itself."""
    if broker is None:
        return True
    if not isinstance(broker, SimulatedBroker) or broker.pending_orders:
        return False
    return broker.closeout is None or not any(broker.positions.values())


def _run(broker: Any, job: tuple) -> list[OrderEvent]:
    kind = job[0]
    if kind == "echo":
        return list(job[1])
    if kind in ("flatten", "cancelled"):  # markers: the loop acts when they come back
        return []
    if kind == "poll":  # nothing else asked the broker for a while
        return list(broker.poll()) if broker is not None else []
    if broker is None:
        if kind in ("submit", "recover"):
            order = job[1]
            return [OrderEvent("rejected", order.client_id, order.symbol, order.side,
                               order.size, reason="no broker", brain=order.brain)]  # fmt: skip
        return []
    if kind == "submit":
        return list(broker.submit(job[1]))
    if kind == "recover":
        return list(getattr(broker, "recover", broker.submit)(job[1]))
    if kind == "cancel":
        events = list(broker.cancel(job[2]))
        return [ev._replace(brain=ev.brain or job[1]) for ev in events]
    market = job[2] if kind == "step" else job[1]
    if market is None:  # a 'steps' message without a step
        return []
    what, symbol, payload = market
    if what == "ticks":
        events = []
        for row in payload:
            events.extend(broker.on_tick(symbol, row))
        return events
    if what == "tick":
        return list(broker.on_tick(symbol, payload))
    return list(broker.on_bar(symbol, payload))
