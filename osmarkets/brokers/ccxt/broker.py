"""The Trader's broker on a crypto exchange through ccxt (no osBrain here).

:class:`CcxtTradingBroker` is what the Trader's worker thread runs: it places osMarkets orders
with ccxt's unified ``create_order``, follows them (``fetch_order``) until they end, and turns
what it sees into order events, partial fills included (each 'filled' event is the units filled
since the last one, at their average price, with ``remaining``). It is a *spot cash* account:
the position of ``'BTC/USDT'`` is the BTC the account holds; a fee taken in the asset received
(Binance without BNB) reduces it, and is converted to the account currency for the statistics.

Never a false 'rejected', never a double order:

- every order is recorded (in the state file, with its exchange client id) *before* its request
  leaves; a copy of a recorded order (a Brain re-sending after a Trader's restart) is looked up,
  never placed again: exchanges such as Binance refuse a duplicate client id only while the
  first order is open, so a re-send of a filled order would trade twice;
- with a journal (``defer_state``, set by the Trader) the state file is written by the Trader
  after the events it covers are journaled (:meth:`CcxtTradingBroker.take_state`): a Trader
  dying between the two has its fills reported again, never lost. The order's record before
  its request leaves is then the journal's (the Trader journals every order before handing it
  over), and an order the dead Trader had handed over comes back through :meth:`recover`:
  looked up by its client id, never placed again;
- an order is 'rejected' only when the exchange answered that it did not execute it (ccxt's
  ``InvalidOrder``, ``InsufficientFunds``, ``BadSymbol``, ``BadRequest``, authentication
  errors), or when it is certainly not there: not found by its client id once the exchange's
  ``recvWindow`` has passed since it was sent (Binance drops a request that arrives later);
- a lost answer (a timeout, a dropped connection, any other error: a 5xx, which Binance says
  may have executed and ccxt raises as ``OperationFailed`` or a bare ``ExchangeError``) is
  looked up by the client id until ``order_deadline``; still unknown, the order is kept
  *unresolved* (no event, logged) and looked up again at every poll until it is found or
  certainly absent;
- a restarted broker (``reconcile``) adopts the balances and reports what happened, since the
  last state it saved, to every order it was following.

Where the exchange cannot do what an order asks (spot has no reduce-only, no attached stop-loss
or take-profit; Binance spot has no good-till-date, and its market orders are IOC and cannot be
FOK), the order is refused with the reason before any request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..base import Order, OrderEvent
from ..statefile import write_state_file
from .client import describe, exchange_from_settings

log = logging.getLogger(__name__)

_EPS = 1e-12
# Binance spot's newClientOrderId (its futures also take ``.:/``, its spot answers -1100)
_CID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
#: an osMarkets client id: '<brain>-<deployment: 8 hex digits>-<n>'
_OSM_CID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}-[0-9a-f]{8}-[0-9]+$")
_ENDED = ("closed", "canceled", "cancelled", "expired", "rejected")
#: ended orders the state file remembers (the newest), so that a re-send after a restart is
#: looked up rather than placed again
KEEP_ENDED = 2000


class Reconciliation(NamedTuple):
    """What a (re)started broker found: positions (symbol -> base units), the balances, the
    client ids of the open orders it follows, the events it had missed, and the open orders
    with an osMarkets client id it does not follow (left alone)."""

    positions: dict[str, float]
    balances: dict[str, float]
    open_orders: list[str]
    missed_events: list[OrderEvent]
    foreign_orders: list[str] = []


def _record(order: Order, amount: float, sent: float) -> dict[str, Any]:
    """What the broker keeps of an order it follows (the state file's entry)."""
    return {
        "symbol": order.symbol, "side": order.side, "amount": amount, "brain": order.brain,
        "xid": exchange_client_id(order.client_id), "id": None, "filled": 0.0, "cost": 0.0,
        "fees": {}, "ended": False, "sent": sent, "tif": order.time_in_force, "accepted": False,
    }  # fmt: skip


def make_ccxt_broker(settings: Mapping[str, Any]) -> CcxtTradingBroker:
    """The Trader's broker factory (``functools.partial(make_ccxt_broker, settings)``)."""
    return CcxtTradingBroker(
        exchange_from_settings(settings),
        currency=str(settings.get("currency") or "USDT"),
        state_path=settings.get("state_path"),
        poll_interval=float(settings.get("poll_interval", 1.0)),
        order_deadline=float(settings.get("order_deadline", 10.0)),
    )


def exchange_client_id(client_id: str) -> str:
    """The id the exchange gets: the client id itself when it fits Binance spot's rule (36
    characters of ``[a-zA-Z0-9_-]``), else a stable digest of it (a re-send gets the same)."""
    if _CID_RE.match(client_id):
        return client_id
    return "osm" + hashlib.sha256(client_id.encode()).hexdigest()[:32]


class CcxtTradingBroker:
    """See the module docstring. ``exchange``: a ccxt exchange (synchronous API);
    ``currency``: the account currency (the quote of the traded symbols); ``state_path``: the
    JSON file of the orders followed (kept across restarts); ``order_deadline``: seconds an order
    whose answer was lost is looked up before it is left unresolved."""

    def __init__(
        self,
        exchange: Any,
        *,
        currency: str = "USDT",
        state_path: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        account_interval: float = 5.0,
        order_deadline: float = 10.0,
    ) -> None:
        self.exchange = exchange
        self.currency = currency
        self.state_path = Path(state_path) if state_path else None
        self.poll_interval = poll_interval
        self.account_interval = account_interval
        self.order_deadline = order_deadline
        recv = exchange.options.get("recvWindow", 10_000) if hasattr(exchange, "options") else 0
        #: after this many seconds a request the exchange has not seen never will be
        self.absent_after = float(recv) / 1000.0 + 5.0
        self.positions: dict[str, float] = {}
        self.balances: dict[str, float] = {}
        self.equity = math.nan
        self.balance = math.nan
        self.fill_conversions: list[float] = []
        self.orders: dict[str, dict[str, Any]] = {}  # client id -> what we know of it
        self.unresolved: dict[str, Order] = {}
        self.unknown_orders = 0
        self.duplicates = 0
        self.poll_errors = 0
        self._session: set[str] = set()  # client ids with an event reported by this object
        self._marks: dict[str, float] = {}
        self._last_poll = 0.0
        self._last_account = 0.0
        self._markets_loaded = False
        self._applying = True  # fills move the positions and balances (not in a replay)
        self._saved = ""  # the state file's text as last written (or handed over)
        #: set by a Trader that journals this broker's events: the state file is then written
        #: by the Trader after them (:meth:`take_state`, :mod:`osmarkets.brokers.statefile`)
        self.defer_state = False
        self._unsaved: str | None = None
        #: a request a Trader before this broker sent had left by now (see :meth:`recover`)
        self._started = time.time()

    def __repr__(self) -> str:
        return f"CcxtTradingBroker({describe(self.exchange)}, currency={self.currency!r})"

    # -- state file ------------------------------------------------------------------------------
    def _save(self) -> None:
        """Write the orders followed, and the newest :data:`KEEP_ENDED` ended ones: a copy of
        an ended order (its Brain never heard how it ended: the Trader died first) must be
        looked up after a restart, not placed again. Written only when it changed."""
        ended = [cid for cid, info in self.orders.items() if info.get("ended")]
        for cid in ended[: max(0, len(ended) - KEEP_ENDED)]:  # oldest first (insertion order)
            del self.orders[cid]
        if self.state_path is None:
            return
        text = json.dumps({"orders": self.orders})
        if text == self._saved:
            return
        if self.defer_state:
            self._unsaved = text
        else:
            write_state_file(self.state_path, text)
        self._saved = text

    def take_state(self) -> tuple[str, str] | None:
        """With ``defer_state``: the state file's path and its new text, to write once the
        events reported so far are journaled (then cleared), or None if it did not change."""
        text, self._unsaved = self._unsaved, None
        return (str(self.state_path), text) if text is not None else None

    def _load(self) -> None:
        """The orders of the state file; an unreadable file, or an entry without what following
        it needs, is a warning and a fresh start (it is not trusted to place or report)."""
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            state = json.loads(self.state_path.read_text())
            orders = state.get("orders") or {}
            if not isinstance(orders, dict):
                raise ValueError(f"'orders' is a {type(orders).__name__}")
            bad = [cid for cid, info in orders.items() if not _valid_record(info)]
            if bad:
                raise ValueError(f"order {str(bad[0])[:40]!r} is incomplete")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("broker state %s unreadable (%s): starting afresh", self.state_path, exc)
            return
        for cid, info in orders.items():
            self.orders.setdefault(cid, info)

    # -- markets, balances -------------------------------------------------------------------
    def _markets(self) -> dict[str, Any]:
        if not self._markets_loaded:
            self.exchange.load_markets()
            self._markets_loaded = True
        return self.exchange.markets

    def _refresh_account(self) -> None:
        balance = self.exchange.fetch_balance()
        totals = {k: float(v) for k, v in (balance.get("total") or {}).items() if v is not None}
        self.balances = totals
        positions = {}
        for symbol, market in self._markets().items():
            if market.get("quote") == self.currency and market.get("spot", True):
                held = totals.get(market.get("base"), 0.0)
                if held > _EPS or symbol in self.positions:
                    positions[symbol] = held
        self.positions = {s: u for s, u in positions.items() if abs(u) > _EPS}
        self._revalue()
        self._last_account = time.monotonic()

    def _revalue(self) -> None:
        self.balance = self.balances.get(self.currency, math.nan)
        equity = self.balance
        for symbol, units in self.positions.items():
            mark = self._marks.get(symbol)
            if mark is not None:
                equity += units * mark
        self.equity = equity

    # -- the Broker interface ------------------------------------------------------------------
    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def reconcile(self) -> Reconciliation:
        """Adopt the account; the events of the orders followed before (state file) that this
        broker had not reported."""
        self._load()
        self._markets()
        self._refresh_account()
        foreign = self._foreign_open_orders()
        missed: list[OrderEvent] = []
        self._applying = False  # the balances just read hold the missed fills already
        try:
            for cid, info in list(self.orders.items()):
                if not info.get("ended"):
                    missed += self._follow(cid, info)
        finally:
            self._applying = True
        self._save()
        self._last_poll = time.monotonic()
        opened = [cid for cid, info in self.orders.items() if not info.get("ended")]
        return Reconciliation(dict(self.positions), dict(self.balances), opened, missed, foreign)

    def _foreign_open_orders(self) -> list[str]:
        """Open orders at the exchange that carry an osMarkets client id this broker does not
        follow (its state file was lost, another deployment shares the account, or a previous
        run left them): logged and listed, never adopted. Whose they are is a guess, and a
        guess would report their fills to a Brain that never sent them."""
        import ccxt

        self.exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False  # all symbols
        try:
            opened = self.exchange.fetch_open_orders()
        except ccxt.BaseError as exc:
            log.warning("open orders unreadable (%s)", _reason(exc))
            return []
        known = {info.get("xid") for info in self.orders.values()}
        foreign = [str(o.get("clientOrderId") or "") for o in opened]
        foreign = [xid for xid in foreign if _OSM_CID.match(xid) and xid not in known]
        for xid in foreign:
            log.warning("open order %s is not this deployment's state: left as it is (cancel "
                        "it at the exchange if it is stale)", xid)  # fmt: skip
        return foreign

    def poll(self, force: bool = False) -> list[OrderEvent]:
        """Events of the orders followed, at most every ``poll_interval`` unless ``force``;
        failures are logged and counted, never raised."""
        import ccxt

        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_interval:
            return []
        self._last_poll = now
        events: list[OrderEvent] = []
        try:
            for cid, info in list(self.orders.items()):
                if not info.get("ended"):
                    events += self._follow(cid, info)
            if now - self._last_account >= self.account_interval:
                self._refresh_account()
        except ccxt.BaseError as exc:
            self.poll_errors += 1
            log.warning("polling %s failed: %s", describe(self.exchange), _reason(exc))
        self._save()
        return events

    def on_tick(self, symbol: str, tick: Any) -> list[OrderEvent]:
        self._marks[symbol] = (tick.bid + tick.ask) / 2.0
        self._revalue()
        return self.poll()

    def on_bar(self, symbol: str, bar: Any) -> list[OrderEvent]:
        self._marks[symbol] = bar.close
        self._revalue()
        return self.poll()

    def submit(self, order: Order) -> list[OrderEvent]:
        import ccxt

        cid = order.client_id
        if cid in self.orders:  # a copy: look it up, never place it again
            self.duplicates += 1
            return self._resend(cid)
        try:
            amount, price = self._checked(order)
        except _Refused as exc:
            return [self._reject(order, str(exc))]
        info = self.orders[cid] = _record(order, amount, time.time())
        self._save()  # recorded before the request leaves (with a journal: the journal's)
        params: dict[str, Any] = {"clientOrderId": info["xid"]}
        if order.type == "limit":
            params["timeInForce"] = order.time_in_force
            if order.post_only:
                params = {"clientOrderId": info["xid"], "postOnly": True}
        # a market order fills what the book has and expires the rest: IOC already (Binance
        # refuses a market order's timeInForce: -1106)
        try:
            snapshot = self.exchange.create_order(
                order.symbol, order.type, order.side, amount, price, params
            )
        except _refusals() as exc:  # the exchange said it did not execute it
            text = _reason(exc)
            if "duplicate" in text.lower():  # the exchange holds an open order with this id
                return self._resend(cid)
            info["ended"] = True
            self._save()
            return [self._reject(order, text)]
        except ccxt.BaseError as exc:  # anything else (a 5xx, a timeout...): status unknown
            info["error"] = _reason(exc)
            return self._lost(order, info, exc)
        events = self._absorb(cid, info, snapshot)
        self._save()
        return events

    def recover(self, order: Order) -> list[OrderEvent]:
        """An order a Trader before this one journaled as handed to its broker, with no answer
        journaled: its request may have left, and a state file written after the journal does
        not know it. It is followed by its client id, never placed again: its events if the
        exchange has it; if it never shows up once a request sent before this broker started
        would have arrived (the ``recvWindow``), 'rejected' as never placed.

        Its fills are reported, not added to the positions: the balances, read again first,
        hold them (if they cannot be read, nothing of the order is added until they are)."""
        import ccxt

        cid = order.client_id
        known = cid in self.orders
        if not known:
            unsupported = self._unsupported(order) or self._unknown_symbol(order)
            if unsupported:  # refused before any request: by the dead Trader's broker too
                return [self._reject(order, unsupported)]
            # the amount the request carried (its size passed the step then: the market's
            # data may have changed since, which must not lose the order)
            self.orders[cid] = _record(order, float(order.size), self._started)
        looked_up = False
        try:
            self._refresh_account()
        except ccxt.BaseError as exc:  # followed by the polls; positions at the next read
            log.warning("order %s: balances unreadable (%s)", cid, _reason(exc))
            events = []
        else:
            looked_up = True
            self._applying = False  # as in reconcile: the balances just read hold its fills
            try:
                events = self._resend(cid) if known else self._follow(cid, self.orders[cid])
            finally:
                self._applying = True
        info = self.orders[cid]
        if not info.get("ended"):
            # found after the balances were read: its later fills are new. Not looked up, or
            # not found yet: a fill the polls see later may be in the balances read before;
            # the next read of the balances moves the positions, never twice
            found = looked_up and (info.get("accepted") or info.get("id"))
            info["counted"] = info["filled"] if found else info["amount"]
        self._save()
        return events

    def _unknown_symbol(self, order: Order) -> str:
        """Why ``order``'s symbol cannot be followed ('' if it can, or if the markets cannot
        be read now)."""
        import ccxt

        try:
            markets = self._markets()
        except ccxt.BaseError:
            return ""
        if order.symbol in markets:
            return ""
        return f"unknown symbol {order.symbol!r} on {describe(self.exchange)}"

    def cancel(self, client_id: str) -> list[OrderEvent]:
        import ccxt

        info = self.orders.get(client_id)
        if info is None:
            return [OrderEvent("rejected", client_id, "", "", 0.0, reason="unknown order")]
        if info.get("ended"):
            return [self._event("rejected", client_id, info, 0.0, reason=_ended(info))]
        try:
            snapshot = self.exchange.cancel_order(
                info["id"], info["symbol"], {} if info["id"] else {"clientOrderId": info["xid"]}
            )
        except ccxt.OrderNotFound:
            events = self._follow(client_id, info)  # it ended meanwhile: say how
            if info.get("ended"):
                events.append(self._event("rejected", client_id, info, 0.0, reason=_ended(info)))
            self._save()
            return events
        except ccxt.BaseError as exc:
            return [self._event("rejected", client_id, info, 0.0, reason=_reason(exc))]
        events = self._absorb(client_id, info, snapshot, cancelled="cancelled by request")
        self._save()
        return events

    # -- placing and following -------------------------------------------------------------------
    def _unsupported(self, order: Order) -> str:
        """Why spot cannot take ``order`` whatever its market ('' if it can)."""
        name = describe(self.exchange)
        if order.reduce_only:
            return f"reduce_only: {name} spot has no reduce-only orders"
        if order.stop_loss is not None or order.take_profit is not None or order.trailing_stop:
            return f"stop_loss/take_profit: {name} spot cannot attach them to an order"
        if order.type not in ("market", "limit"):
            return f"{order.type}: {name} spot takes market and limit orders only"
        if order.time_in_force == "GTD":
            return f"GTD: {name} spot has no good-till-date orders"
        if order.type == "market" and order.time_in_force == "FOK":
            return f"FOK: {name} spot market orders cannot be fill-or-kill"
        return ""

    def _checked(self, order: Order) -> tuple[float, float | None]:
        """``order``'s amount and price as the exchange takes them; :class:`_Refused` naming
        why the exchange cannot take it as asked."""
        import ccxt

        name = describe(self.exchange)
        unsupported = self._unsupported(order)
        if unsupported:
            raise _Refused(unsupported)
        try:
            market = self._markets().get(order.symbol)
        except ccxt.BaseError as exc:
            raise _Refused(f"cannot read {name}'s markets: {_reason(exc)}") from None
        if market is None:
            raise _Refused(f"unknown symbol {order.symbol!r} on {name}")
        try:
            amount = float(self.exchange.amount_to_precision(order.symbol, order.size))
        except ccxt.BaseError as exc:
            raise _Refused(f"size {order.size:g}: {_reason(exc)}") from None
        if not math.isclose(amount, order.size, rel_tol=1e-9):
            step = (market.get("precision") or {}).get("amount")
            raise _Refused(
                f"size {order.size!r} is not a multiple of the step {step} for {order.symbol}"
            )
        if order.type != "limit":
            return amount, None
        assert order.price is not None
        try:
            return amount, float(self.exchange.price_to_precision(order.symbol, order.price))
        except ccxt.BaseError as exc:  # below the tick
            raise _Refused(f"price {order.price:g}: {_reason(exc)}") from None

    def _lost(self, order: Order, info: dict[str, Any], exc: Exception) -> list[OrderEvent]:
        """The answer to ``order`` was lost: look it up by its client id until the deadline."""
        import ccxt

        log.warning("order %s: no answer (%s); looking it up", order.client_id, _reason(exc))
        deadline = time.monotonic() + self.order_deadline
        while True:
            try:
                snapshot = self._lookup(info)
            except ccxt.BaseError:
                snapshot = None
            if snapshot is not None:
                events = self._absorb(order.client_id, info, snapshot)
                self._save()
                return events
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(0.05, self.order_deadline / 20)))
        self.unknown_orders += 1
        self.unresolved[order.client_id] = order
        self._save()
        log.error(
            "order %s of %s: state unknown after %g s. Not reported as rejected: looked up "
            "again at every poll", order.client_id, order.brain or "?", self.order_deadline,
        )  # fmt: skip
        return []

    def _lookup(self, info: dict[str, Any]) -> dict[str, Any] | None:
        """The exchange's order for ``info`` (by its client id), or None if it has none."""
        import ccxt

        try:
            if info.get("id"):
                return self.exchange.fetch_order(info["id"], info["symbol"])
            return self.exchange.fetch_order(
                None, info["symbol"], {"origClientOrderId": info["xid"]}
            )
        except ccxt.OrderNotFound:
            return None

    def _follow(self, cid: str, info: dict[str, Any]) -> list[OrderEvent]:
        """What happened to a followed order since we last looked."""
        import ccxt

        try:
            snapshot = self._lookup(info)
        except ccxt.BaseError as exc:
            self.poll_errors += 1
            log.warning("order %s: lookup failed (%s)", cid, _reason(exc))
            return []
        if snapshot is None:
            if info.get("accepted") or info.get("id") or info["filled"] > 0:
                # the exchange had it: no longer found (an exchange that forgets old orders)
                # is not a reject; its outcome stays unknown, said once
                if not info.get("lost"):
                    info["lost"] = True
                    log.error("order %s: the exchange no longer finds it; its last known "
                              "state stands (%g of %g filled)", cid, info["filled"],
                              info["amount"])  # fmt: skip
                return []
            if time.time() - float(info.get("sent") or 0) < self.absent_after:
                return []  # maybe still on its way
            info["ended"] = True
            self.unresolved.pop(cid, None)
            reason = f"never reached {describe(self.exchange)} (not found after its recvWindow)"
            if info.get("error"):
                reason = f"{reason}; it had answered {info['error']}"[:300]
            self._session.add(cid)  # reported: a re-send to this broker gets nothing more
            return [self._event("rejected", cid, info, info["amount"], reason=reason)]
        return self._absorb(cid, info, snapshot)

    def _resend(self, cid: str) -> list[OrderEvent]:
        """A copy of an order we know: its events again, if this broker has not reported them
        (a previous incarnation may have died before delivering them)."""
        import ccxt

        info = self.orders[cid]
        if cid in self._session:
            return []
        # the fills counted so far are in the positions and balances: reported, not applied
        report = {**info, "filled": 0.0, "cost": 0.0, "fees": {}, "ended": False,
                  "accepted": False, "trades": [], "counted": info["filled"]}  # fmt: skip
        try:
            snapshot = self._lookup(report)
        except ccxt.BaseError as exc:  # the order's record stays as it was
            log.warning("order %s: lookup failed (%s)", cid, _reason(exc))
            return []
        if snapshot is None:
            return self._follow(cid, info)  # not found: as any followed order
        events = self._absorb(cid, report, snapshot)
        report.pop("counted", None)
        self.orders[cid] = report
        self._save()
        return events

    def _absorb(self, cid: str, info: dict[str, Any], snapshot: Mapping[str, Any],
                cancelled: str = "") -> list[OrderEvent]:  # fmt: skip
        """Events for what ``snapshot`` (a ccxt order) shows beyond what ``info`` had.

        One source of fills per order, so that none is counted twice: its trades (one event
        each, with its fee) where the exchange lists them, else its totals (the units filled
        since we last looked, at their average price). An exchange's trade list may lag the
        order's total: while the order is open the fills wait for their trades; once it has
        ended, what the trades still lack is reported from the totals, and a trade that comes
        later is never counted beyond the order's total."""
        self.unresolved.pop(cid, None)
        info["id"] = snapshot.get("id") or info.get("id")
        events: list[OrderEvent] = []
        created = int(snapshot.get("timestamp") or 0)
        if not info.get("accepted"):
            info["accepted"] = True
            when = created * 1_000_000 if created else time.time_ns()
            events.append(self._event("accepted", cid, info, info["amount"], time=when))
        stamp = int(snapshot.get("lastTradeTimestamp") or created or 0)
        when = stamp * 1_000_000 if stamp else time.time_ns()
        filled = float(snapshot.get("filled") or 0.0)
        status = str(snapshot.get("status") or "open")
        ended = status in _ENDED
        tolerance = _EPS * max(1.0, info["amount"])
        trades = list(snapshot.get("trades") or [])
        by_trades = bool(trades) or bool(self.exchange.has.get("fetchOrderTrades"))
        if not trades and by_trades and filled > info["filled"] + tolerance and info.get("id"):
            trades = self._order_trades(info)
        if by_trades:
            for trade in trades:
                size = float(trade.get("amount") or 0.0)
                key = str(trade.get("id") or "")
                seen = info.setdefault("trades", [])
                if not key or key in seen or size <= 0:
                    continue
                if info["filled"] + size > filled + tolerance:
                    # beyond the order's total: counted from the totals already (a trade list
                    # that lagged), or ahead of an order status that lags (counted next time)
                    continue
                seen.append(key)
                fee = trade.get("fee") or {}
                stamped = int(trade.get("timestamp") or 0) * 1_000_000 or when
                events.append(self._fill(
                    cid, info, size, float(trade.get("price") or math.nan), stamped,
                    float(fee.get("cost") or 0.0), str(fee.get("currency") or ""),
                ))  # fmt: skip
        if filled > info["filled"] + tolerance and (ended or not by_trades):
            delta = filled - info["filled"]
            cost = float(snapshot.get("cost") or 0.0)
            price = (cost - info["cost"]) / delta if cost > info["cost"] else float(
                snapshot.get("average") or snapshot.get("price") or math.nan
            )  # fmt: skip
            fee, currency = self._fee_delta(info, snapshot)
            events.append(self._fill(cid, info, delta, price, when, fee, currency))
        if ended and not info["ended"]:
            info["ended"] = True
            rest = max(0.0, info["amount"] - info["filled"])
            if status == "rejected" and info["filled"] <= 0:
                reason = f"rejected by {describe(self.exchange)}"
                events.append(self._event("rejected", cid, info, rest, time=when, reason=reason))
            elif rest > tolerance:
                # (Binance ends an IOC / FOK order that could not fill 'EXPIRED')
                why = cancelled or (
                    f"{info.get('tif')}: the rest could not fill at once"
                    if info.get("tif") in ("IOC", "FOK") else
                    {"expired": "expired"}.get(status) or "cancelled by the exchange"
                )  # fmt: skip
                events.append(self._event("cancelled", cid, info, rest, time=when, reason=why))
        for event in events:
            self._session.add(event.client_id)
        return events

    def _order_trades(self, info: Mapping[str, Any]) -> list[Any]:
        """The order's trades (with their fees); [] if they cannot be read now (the fills
        then wait for the next look)."""
        import ccxt

        try:
            return list(self.exchange.fetch_order_trades(info["id"], info["symbol"]))
        except ccxt.BaseError as exc:
            log.warning("order %s: trades unreadable (%s)", info["id"], _reason(exc))
            return []

    def _fill(self, cid: str, info: dict[str, Any], size: float, price: float, when: int,
              fee: float, currency: str) -> OrderEvent:  # fmt: skip
        """A fill of ``size`` at ``price``: the order's record, the position and balances, and
        its event (``remaining`` 0 ends the order)."""
        if currency:
            fees = info.setdefault("fees", {})
            fees[currency] = float(fees.get(currency, 0.0)) + fee
        info["filled"] += size
        info["cost"] += size * price
        remaining = max(0.0, info["amount"] - info["filled"])
        if remaining <= _EPS * max(1.0, info["amount"]):
            remaining, info["ended"] = 0.0, True
        commission = self._in_account_currency(info["symbol"], fee, currency, price)
        self.fill_conversions.append(1.0)
        counted = info.get("counted", 0.0)  # a replay: units already in the positions
        if self._applying and info["filled"] > counted + _EPS * max(1.0, info["amount"]):
            self._hold(info["symbol"], info["side"], size, price, fee, currency)
        return OrderEvent("filled", cid, info["symbol"], info["side"], size, price, when, "",
                          commission, info["brain"], remaining, fee, currency)  # fmt: skip

    def _fee_delta(self, info: dict[str, Any], snapshot: Mapping[str, Any]) -> tuple[float, str]:
        """The fee charged since we last looked, in its currency (one currency per order)."""
        totals: dict[str, float] = {}
        fees = snapshot.get("fees") or ([snapshot["fee"]] if snapshot.get("fee") else [])
        for fee in fees:
            if fee and fee.get("cost") is not None and fee.get("currency"):
                totals[fee["currency"]] = totals.get(fee["currency"], 0.0) + float(fee["cost"])
        seen = info.get("fees") or {}
        for currency, total in totals.items():
            delta = total - float(seen.get(currency, 0.0))
            if delta > 0:
                return delta, currency  # recorded by _fill
        return 0.0, ""

    def _in_account_currency(self, symbol: str, fee: float, currency: str, price: float) -> float:
        if not fee or not currency or currency == self.currency:
            return fee
        market = self._markets().get(symbol) or {}
        if currency == market.get("base"):
            return fee * price
        mark = self._marks.get(f"{currency}/{self.currency}")
        if mark is None:
            log.warning("fee of %g %s: no %s/%s price to convert it", fee, currency, currency,
                        self.currency)  # fmt: skip
            return 0.0
        return fee * mark

    def _hold(self, symbol: str, side: str, size: float, price: float, fee: float,
              currency: str) -> None:  # fmt: skip
        """A fill moves the position and the balances at once (so the equity never counts a
        bought asset without its cost); the balances are read again at the next poll."""
        market = self._markets().get(symbol) or {}
        base, quote = market.get("base"), market.get("quote")
        change = size if side == "buy" else -size
        if currency and currency == base:
            change -= fee  # the fee was taken from the asset received (position_change)
        held = self.positions.get(symbol, 0.0) + change
        if abs(held) <= _EPS * max(1.0, size):
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = held
        balances = self.balances
        if base:
            balances[base] = balances.get(base, 0.0) + change
        if quote and math.isfinite(price):
            cash = -size * price if side == "buy" else size * price
            balances[quote] = balances.get(quote, 0.0) + cash - (fee if currency == quote else 0)
        if currency and currency not in (base, quote):
            balances[currency] = balances.get(currency, 0.0) - fee
        self._revalue()
        self._last_account = 0.0

    def _reject(self, order: Order, reason: str) -> OrderEvent:
        self._session.add(order.client_id)
        return OrderEvent("rejected", order.client_id, order.symbol, order.side, order.size,
                          time=order.time, reason=reason, brain=order.brain)  # fmt: skip

    @staticmethod
    def _event(kind: str, cid: str, info: Mapping[str, Any], size: float, *, time: int = 0,
               reason: str = "") -> OrderEvent:  # fmt: skip
        return OrderEvent(kind, cid, info["symbol"], info["side"], size, time=time,
                          reason=reason, brain=info.get("brain", ""))  # fmt: skip


def _refusals() -> tuple[type[BaseException], ...]:
    """The ccxt errors that say an order was not executed (ccxt is imported late)."""
    import ccxt

    return (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest, ccxt.AuthenticationError,
            ccxt.OperationRejected, ccxt.NotSupported, ccxt.ArgumentsRequired)  # fmt: skip


def _valid_record(info: Any) -> bool:
    """Whether a state file entry holds what following the order needs."""
    return (
        isinstance(info, dict)
        and all(isinstance(info.get(k), str) for k in ("symbol", "side", "xid"))
        and all(isinstance(info.get(k), int | float) for k in ("amount", "filled", "cost"))
        and isinstance(info.get("fees", {}), dict)
        and isinstance(info.get("trades", []), list)
    )


class _Refused(ValueError):
    """An order the exchange cannot take as asked: the reason, before any request."""


def _ended(info: Mapping[str, Any]) -> str:
    """Why a cancel of an ended order is refused."""
    return "already filled" if info["filled"] >= info["amount"] - _EPS else "already ended"


def _reason(exc: BaseException) -> str:
    """A ccxt error as one line: the exchange's own message, without the exchange's JSON."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = re.search(r'"msg"\s*:\s*"([^"]+)"', text)
    detail = match.group(1) if match else text
    return f"{type(exc).__name__}: {detail}"[:300]
