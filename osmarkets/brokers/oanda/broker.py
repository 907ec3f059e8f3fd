"""OandaBroker: the osMarkets :class:`~osmarkets.brokers.base.Broker` interface on OANDA v20.

It turns an :class:`~osmarkets.brokers.base.Order` into an OANDA order request (prices and
units formatted for the instrument, the client id in ``clientExtensions``) and every answer into
:class:`~osmarkets.brokers.base.OrderEvent` objects. :meth:`OandaBroker.reconcile` reads the
account so that a (re)starting Trader knows its positions, pending orders and the fills it
missed before it accepts new orders.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from ..base import Order, OrderEvent
from .client import DUPLICATE_CLIENT_ID, OandaClient, Response
from .parsers import (
    AccountSummary,
    PendingOrder,
    PositionInfo,
    TradeInfo,
    format_time,
    order_response_events,
    parse_account_summary,
    parse_order,
    parse_position,
    parse_trade,
    transaction_events,
)

log = logging.getLogger(__name__)

_TYPES = {
    "market": "MARKET",
    "limit": "LIMIT",
    "stop": "STOP",
    "market_if_touched": "MARKET_IF_TOUCHED",
}
CLIENT_TAG = "osmarkets"


class Reconciliation(NamedTuple):
    """The account state a Trader adopts on (re)start."""

    positions: dict[str, float]  # symbol -> net signed units
    pending_orders: list[PendingOrder]
    open_trades: list[TradeInfo]
    missed_events: list[OrderEvent]  # order events after ``since_transaction_id``
    last_transaction_id: str


class Placement(NamedTuple):
    """What :meth:`OandaBroker.place` learnt about an order.

    ``events``: its events, as :meth:`OandaBroker.submit` returns them. ``duplicate``: OANDA
    already had an order with this client id before this call (a re-send): ``events`` are that
    order's *current* state (its fill is the very same fill, same price, size and time; the
    'accepted' event says ``reason='duplicate'``), not the outcome of a new order. ``recovered``:
    the answer was lost and rebuilt from the order found by its client id.
    ``fill_transaction_id``: the id of the ORDER_FILL transaction ('' if none).
    """

    events: list[OrderEvent]
    duplicate: bool = False
    recovered: bool = False
    fill_transaction_id: str = ""


def drop_duplicate_rejects(transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``transactions`` without the rejects of ``CLIENT_ORDER_ID_ALREADY_EXISTS``: such a
    reject refuses a *copy* of an order (a re-send, or a slow first request answered after its
    copy), and says nothing of the order that holds the id; reported as an order event it would
    give that order a false 'rejected' after its fill. Each one dropped is logged."""
    kept = []
    for tx in transactions:
        if (
            str(tx.get("type", "")).endswith("_ORDER_REJECT")
            and tx.get("rejectReason") == DUPLICATE_CLIENT_ID
        ):
            cid = (tx.get("clientExtensions") or {}).get("id")
            log.warning(
                "transaction %s: OANDA refused a copy of order %s (%s); not an outcome of the "
                "order holding the id",
                tx.get("id"), cid, DUPLICATE_CLIENT_ID,
            )  # fmt: skip
            continue
        kept.append(tx)
    return kept


class OandaBroker:
    """Send osMarkets orders to one OANDA account and report what happened to them."""

    def __init__(
        self, client: OandaClient, *, position_fill: str = "DEFAULT", time_in_force: str = "GTC"
    ) -> None:
        if not client.account_id:
            raise ValueError("account_id: OandaBroker needs the client's account id")
        self.client = client
        self.position_fill = position_fill
        self.time_in_force = time_in_force
        # osMarkets client id -> (symbol, side, size), to describe cancels that carry none
        self._known: dict[str, tuple[str, str, float]] = {}
        self._oanda_ids: dict[str, str] = {}  # OANDA order id -> client id
        self._trade_clients: dict[str, str] = {}  # OANDA trade id -> client id that opened it
        self._dependents: dict[str, list[str]] = {}  # trade id -> its SL/TP order ids

    def __repr__(self) -> str:
        return f"OandaBroker({self.client!r})"

    # -- orders ----------------------------------------------------------------------------
    def order_request(self, order: Order) -> dict[str, Any]:
        """The v20 ``OrderRequest`` for ``order`` (raises ``ValueError`` naming a bad field)."""
        instrument = self.client.instrument(order.symbol)
        if order.post_only:
            raise ValueError("post_only: OANDA has no post-only orders")
        body: dict[str, Any] = {
            "type": _TYPES[order.type],
            "instrument": order.symbol,
            "units": instrument.format_units(order.signed_size),
            "positionFill": "REDUCE_ONLY" if order.reduce_only else self.position_fill,
            "clientExtensions": {"id": order.client_id, "tag": CLIENT_TAG},
        }
        if order.brain:
            body["clientExtensions"]["comment"] = order.brain
        if order.type == "market":
            # a market order fills now: OANDA's FOK unless IOC is asked (GTC means "now")
            body["timeInForce"] = "IOC" if order.time_in_force == "IOC" else "FOK"
        else:
            assert order.price is not None  # make_order guarantees it
            body["price"] = instrument.format_price(order.price)
            tif = order.time_in_force
            body["timeInForce"] = self.time_in_force if tif == "GTC" else tif
            if tif == "GTD":
                body["gtdTime"] = format_time(order.expire_time)
        if order.stop_loss is not None:
            body["stopLossOnFill"] = {
                "price": instrument.format_price(order.stop_loss),
                "timeInForce": "GTC",
            }
        if order.take_profit is not None:
            body["takeProfitOnFill"] = {
                "price": instrument.format_price(order.take_profit),
                "timeInForce": "GTC",
            }
        if order.trailing_stop is not None:
            body["trailingStopLossOnFill"] = {
                "distance": instrument.format_distance(order.trailing_stop),
                "timeInForce": "GTC",
            }
        return body

    def submit(self, order: Order) -> list[OrderEvent]:
        """Send ``order``; returns accepted/filled/rejected/cancelled events, in order.

        Bad input the adapter can see (unknown instrument, units rounding to zero) becomes a
        'rejected' event without a request. A re-sent order (OANDA answers
        ``CLIENT_ORDER_ID_ALREADY_EXISTS``) gives the current state of the order placed
        before, never a 'rejected' (:meth:`place` says it is a duplicate). Failures that leave
        the order certainly unplaced (refused unprocessed, unreachable, wrong token) raise
        :class:`~osmarkets.brokers.oanda.errors.OandaError`; an answer lost for longer than the
        client's ``order_deadline`` raises
        :class:`~osmarkets.brokers.oanda.client.OrderStateUnknown`: the order may exist (see
        :meth:`lookup`).
        """
        return self.place(order).events

    def place(self, order: Order) -> Placement:
        """:meth:`submit`, telling also whether the order is a duplicate (see
        :class:`Placement`)."""
        self._known[order.client_id] = (order.symbol, order.side, order.size)
        try:
            request = self.order_request(order)
        except ValueError as exc:
            return Placement([self._local_reject(order, str(exc))])
        if order.reduce_only:
            # OANDA's REDUCE_ONLY is not documented for an account with nothing to reduce:
            # refused here, from the account's position, as every other broker does
            held = self.position(order.symbol)
            if not held or (held > 0) == (order.side == "buy"):
                kind = "short" if order.side == "buy" else "long"
                reason = f"reduce_only: no {kind} position in {order.symbol} to reduce"
                return Placement([self._local_reject(order, reason)])
        return self._placement(order, self.client.create_order(request))

    def lookup(self, order: Order) -> Placement | None:
        """The current state of ``order`` as OANDA knows it by its client id (one request
        or three), or None while OANDA does not know it: for an order whose answer was lost."""
        self._known[order.client_id] = (order.symbol, order.side, order.size)
        try:
            request = self.order_request(order)
        except ValueError:
            request = None
        found = self.client.find_order(order.client_id, request)
        if found is None:
            return None
        return self._placement(order, found._replace(recovered="lookup"))

    def _placement(self, order: Order, response: Response) -> Placement:
        create = response.body.get("orderCreateTransaction") or {}
        if "id" in create:
            self._oanda_ids[str(create["id"])] = order.client_id
        fill = response.body.get("orderFillTransaction") or {}
        self._learn([fill])
        # the batch's other transactions are this order's own (its SL/TP/trailing orders)
        for tid in response.body.get("relatedTransactionIDs") or []:
            self._oanda_ids.setdefault(str(tid), order.client_id)
        events = order_response_events(
            response.status,
            response.body,
            order.client_id,
            order.symbol,
            order.side,
            order.size,
            order.brain,
        )
        duplicate = response.recovered == "duplicate"
        if duplicate:
            events = [e._replace(reason="duplicate") if e.kind == "accepted" else e
                      for e in events]  # fmt: skip
        recovered = response.recovered == "lookup"
        return Placement(events, duplicate, recovered, str(fill.get("id", "")))

    def _local_reject(self, order: Order, reason: str) -> OrderEvent:
        return OrderEvent(
            "rejected",
            order.client_id,
            order.symbol,
            order.side,
            order.size,
            reason=reason,
            brain=order.brain,
        )

    def cancel(self, client_id: str) -> list[OrderEvent]:
        """Cancel a pending order by client id: ``['cancelled']``, or ``['rejected']`` naming
        OANDA's reason if it has no such pending order (already filled, cancelled, or never
        created), as the simulated broker does: a cancel is never answered with silence."""
        response = self.client.cancel_order(f"@{client_id}")
        if response.status == 404:
            reason = response.body.get("errorMessage") or "no such pending order"
            log.info("cancel %s: %s", client_id, reason)
            return [OrderEvent("rejected", client_id, "", "", 0.0, reason=str(reason))]
        tx = response.body.get("orderCancelTransaction") or {}
        tx = {**tx, "clientOrderID": tx.get("clientOrderID") or client_id}
        return transaction_events([tx], known=self._known)

    def position(self, symbol: str) -> float:
        """Net signed units held in ``symbol`` (0.0 if never traded)."""
        body = self.client.position(symbol)
        return parse_position(body["position"]).units if body else 0.0

    # -- account ---------------------------------------------------------------------------
    def account_summary(self) -> AccountSummary:
        return parse_account_summary(self.client.account_summary())

    def open_positions(self) -> list[PositionInfo]:
        return [parse_position(p) for p in self.client.open_positions().get("positions", [])]

    def open_trades(self) -> list[TradeInfo]:
        return [parse_trade(t) for t in self.client.open_trades().get("trades", [])]

    def pending_orders(self) -> list[PendingOrder]:
        return [parse_order(o) for o in self.client.pending_orders().get("orders", [])]

    def events_since(self, transaction_id: str) -> tuple[list[OrderEvent], str]:
        """Order events in the transactions after ``transaction_id``, and the newest id."""
        body = self.client.transactions_since(transaction_id)
        transactions = drop_duplicate_rejects(body.get("transactions", []))
        self._learn(transactions)
        events = transaction_events(transactions, self._oanda_ids, self._known)
        return events, str(body.get("lastTransactionID", transaction_id))

    def _learn(self, transactions: list[dict[str, Any]]) -> None:
        """Remember which osMarkets client id each OANDA order and trade belongs to, so that a
        stop-loss / take-profit fill is reported under the order that opened the trade."""
        for tx in transactions:
            kind = str(tx.get("type", ""))
            ext = tx.get("clientExtensions") or {}
            if kind.endswith("_ORDER") and ext.get("id"):
                self._oanda_ids[str(tx["id"])] = ext["id"]
            elif kind == "ORDER_FILL":
                cid = tx.get("clientOrderID") or self._oanda_ids.get(str(tx.get("orderID")))
                opened = tx.get("tradeOpened") or {}
                if cid and opened.get("tradeID"):
                    self._trade_clients[str(opened["tradeID"])] = cid
            if kind.endswith("_ORDER") and tx.get("tradeID"):
                cid = self._trade_clients.get(str(tx["tradeID"]))
                if cid:
                    self._oanda_ids[str(tx["id"])] = cid
        for trade_id, cid in self._trade_clients.items():
            for oid in self._dependents.pop(trade_id, []):
                self._oanda_ids[oid] = cid

    def reconcile(self, since_transaction_id: str | None = None) -> Reconciliation:
        """Read the account: open positions, pending orders, open trades, and (when the id of
        the last transaction already handled is given) the order events missed since."""
        summary = self.client.account_summary()
        last = str(summary.get("lastTransactionID", ""))
        positions = {p.symbol: p.units for p in self.open_positions() if p.units}
        pending = self.pending_orders()
        for order in pending:
            if order.client_id:
                self._oanda_ids[order.id] = order.client_id
                self._known.setdefault(
                    order.client_id,
                    (order.symbol, "buy" if order.units > 0 else "sell", abs(order.units)),
                )
        trades = self.open_trades()
        for trade in trades:
            for oid in (
                trade.stop_loss_order_id,
                trade.take_profit_order_id,
                trade.trailing_stop_order_id,
            ):
                if oid:
                    self._dependents.setdefault(trade.id, []).append(oid)
            if trade.client_id:
                self._trade_clients.setdefault(trade.id, trade.client_id)
        missed: list[OrderEvent] = []
        if since_transaction_id is not None:
            missed, last = self.events_since(since_transaction_id)
        return Reconciliation(positions, pending, trades, missed, last)
