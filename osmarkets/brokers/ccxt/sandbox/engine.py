"""The account and matching engine of the exchange sandbox: Binance spot's order rules.

Not thread-safe by itself: :class:`~osmarkets.brokers.ccxt.sandbox.server.ExchangeSandbox`
calls it under one lock. Parameters arrive as Binance receives them (strings), are checked in
Binance's order with Binance's error codes and messages, and the answers are Binance's JSON.
Money is :class:`~decimal.Decimal` throughout, so balances stay exact to the step size.

Matching: an order takes liquidity from the book of the last tick, level by level (each level
holds the market's ``book_qty``, fresh for each order: the simulated crowd refills the book);
what a limit order cannot take rests, and at each later tick where the price has crossed it a
resting order fills up to ``book_qty`` more at its own price, as maker. Fees are charged in the
asset received (Binance without BNB fee payment).
"""

from __future__ import annotations

import re
import secrets
import string
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .market import INTERVALS_MS, Market, fmt

_NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_INTEGER = re.compile(r"^-?[0-9]{1,20}$")
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")
_ORDER_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_ALL_TYPES = (*_ORDER_TYPES, "STOP_LOSS", "TAKE_PROFIT")
_LIMIT_TYPES = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_STOP_TYPES = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_OPEN = ("NEW", "PARTIALLY_FILLED")
_EIGHT = Decimal("1e-8")
_ZERO = Decimal(0)
MSG_BALANCE = "Account has insufficient balance for requested action."
MSG_MAKER = "Order would immediately match and take."
MSG_DUPLICATE = "Duplicate order sent."


class BinanceError(Exception):
    """An answer in Binance's error shape: HTTP ``status`` and ``{"code": .., "msg": ..}``."""

    def __init__(
        self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def param_decimal(params: dict[str, str], name: str, required: bool = False) -> Decimal | None:
    """A decimal parameter as Binance checks it: -1102 if required and missing, -1100 if not
    a plain non-negative decimal (no exponent, sign, nan or inf)."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    if not _NUMBER.match(raw):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return Decimal(raw)


def param_int(
    params: dict[str, str], name: str, required: bool = False, default: int | None = None
) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return default
    if not _INTEGER.match(raw):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def param_limit(params: dict[str, str], default: int, maximum: int) -> int:
    limit = param_int(params, "limit", default=default)
    assert limit is not None
    if limit <= 0:
        raise BinanceError(-1100, "Illegal characters found in parameter 'limit'.")
    return min(limit, maximum)


@dataclass
class Order:
    """A spot order as the engine keeps it; :meth:`json` is Binance's query shape."""

    symbol: str  # exchange id, "BTCUSDT"
    order_id: int
    client_id: str
    side: str
    type: str
    tif: str
    price: Decimal
    stop: Decimal
    qty: Decimal
    quote_qty: Decimal  # origQuoteOrderQty (market orders by quote amount), else 0
    time: int
    executed: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    status: str = "NEW"
    update: int = 0
    working: bool = True
    working_time: int = -1
    lock_asset: str = ""
    locked: Decimal = _ZERO  # still reserved for this order
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in _OPEN

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    def json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.qty),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop),
            "icebergQty": fmt(_ZERO),
            "time": self.time,
            "updateTime": self.update,
            "isWorking": self.working,
            "workingTime": self.working_time,
            "origQuoteOrderQty": fmt(self.quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def result(self, resp_type: str, now: int) -> dict[str, Any]:
        """The answer to the order request: ``ACK``, ``RESULT`` or ``FULL`` (with fills)."""
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "transactTime": now,
        }
        if resp_type == "ACK":
            return out
        out.update(
            price=fmt(self.price),
            origQty=fmt(self.qty),
            executedQty=fmt(self.executed),
            origQuoteOrderQty=fmt(self.quote_qty),
            cummulativeQuoteQty=fmt(self.cum_quote),
            status=self.status,
            timeInForce=self.tif,
            type=self.type,
            side=self.side,
        )
        if self.type in _STOP_TYPES:
            out["stopPrice"] = fmt(self.stop)
        out["workingTime"] = self.working_time
        out["selfTradePreventionMode"] = "EXPIRE_MAKER"
        if resp_type == "FULL":
            out["fills"] = list(self.fills)
        return out


class Engine:
    """Balances, orders and trades of one spot account on the simulated markets."""

    def __init__(
        self,
        markets: dict[str, Market],
        balances: dict[str, Decimal],
        maker_fee: Decimal,
        taker_fee: Decimal,
    ) -> None:
        self.markets = markets  # by exchange id
        self.free: dict[str, Decimal] = dict(balances)
        self.locked: dict[str, Decimal] = {asset: _ZERO for asset in balances}
        for m in markets.values():
            for asset in (m.base, m.quote):
                self.free.setdefault(asset, _ZERO)
                self.locked.setdefault(asset, _ZERO)
        self.maker_fee, self.taker_fee = maker_fee, taker_fee
        self.orders: dict[int, Order] = {}
        self.my_trades: list[dict[str, Any]] = []
        self.public: dict[str, deque[dict[str, Any]]] = {
            mid: deque(maxlen=1000) for mid in markets
        }
        self._trade_ids = {mid: 1 + i * 10_000_000 for i, mid in enumerate(markets)}
        self._order_ids = 1
        self.events: list[tuple[str, dict[str, Any]]] = []  # (stream, payload) to publish
        self.update_time = 0

    # -- lookups ---------------------------------------------------------------------------
    def market(self, params: dict[str, str], required: bool = True) -> Market | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise mandatory("symbol")
            return None
        market = self.markets.get(symbol)
        if market is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return market

    def _find(self, params: dict[str, str], market: Market, code: int, msg: str) -> Order:
        order_id = param_int(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                "empty/null!"
            )  # fmt: skip
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.symbol != market.id:
                raise BinanceError(code, msg)
            if client_id is not None and order.client_id != client_id:
                raise BinanceError(code, msg)
            return order
        matches = [
            o for o in self.orders.values() if o.symbol == market.id and o.client_id == client_id
        ]
        if not matches:
            raise BinanceError(code, msg)
        open_ = [o for o in matches if o.open]
        return (open_ or matches)[-1]

    # -- the tick --------------------------------------------------------------------------
    def tick(self, now: int, wanted: set[str]) -> None:
        """Advance every market to ``now``, publish what subscribers want (stream names in
        ``wanted``), fill resting orders the prices crossed and trigger stop orders."""
        for market in self.markets.values():
            lower = market.id.lower()
            diff = market.advance(now)
            if diff is not None and (
                f"{lower}@depth" in wanted or f"{lower}@depth@100ms" in wanted
            ):
                self.events.append((f"{lower}@depth", diff))
            if f"{lower}@bookTicker" in wanted:
                t = market.book_ticker()
                self.events.append(
                    (
                        f"{lower}@bookTicker",
                        {"u": market.update_id, "s": market.id, "b": t["bidPrice"],
                         "B": t["bidQty"], "a": t["askPrice"], "A": t["askQty"]},
                    )
                )  # fmt: skip
            for levels in (5, 10, 20):
                if f"{lower}@depth{levels}" in wanted or f"{lower}@depth{levels}@100ms" in wanted:
                    self.events.append((f"{lower}@depth{levels}", market.depth(levels)))
            self._tape(market, now)
            if f"{lower}@ticker" in wanted or f"{lower}@miniTicker" in wanted:
                ticker = self.ws_ticker(market, now)
                self.events.append((f"{lower}@ticker", ticker))
                mini = {k: ticker[k] for k in ("E", "s", "c", "o", "h", "l", "v", "q")}
                self.events.append((f"{lower}@miniTicker", {"e": "24hrMiniTicker", **mini}))
            for name in wanted:
                if name.startswith(f"{lower}@kline_"):
                    interval = name.split("_", 1)[1]
                    if interval in INTERVALS_MS:
                        self.events.append((name, self.ws_kline(market, interval, now)))
        self.match_resting(now)

    def match_resting(self, now: int) -> None:
        """Trigger stop orders whose stop price the last price reached, and fill resting
        limit orders the book crossed (up to ``book_qty`` each, at their price, as maker)."""
        for order in list(self.orders.values()):
            if not order.open:
                continue
            market = self.markets[order.symbol]
            if not order.working:
                if self._stop_reached(order, market.last):
                    order.working, order.working_time, order.update = True, now, now
                    self._take(order, market, now)
                    self._settle_after_taking(order, now)
                continue
            if order.type == "MARKET":
                continue
            crossed = (order.side == "BUY" and market.ask <= order.price) or (
                order.side == "SELL" and market.bid >= order.price
            )
            if crossed:
                assert market.book_qty is not None
                self._fill(order, market, order.price, min(order.remaining, market.book_qty),
                           maker=True, now=now)  # fmt: skip
                self._finish_if_done(order, now)

    def _tape(self, market: Market, now: int) -> None:
        """One simulated public trade per tick at the last price, for the trade stream."""
        noise = (now // 100 * 2_654_435_761 + market.update_id) % 1000
        qty = max(market.floor_qty(market.book_qty * Decimal(noise + 1) / 4000), market.step)  # type: ignore[operator]
        self._public_trade(market, market.last, qty, buyer_maker=noise % 2 == 0, now=now)

    def _public_trade(
        self, market: Market, price: Decimal, qty: Decimal, buyer_maker: bool, now: int
    ) -> int:
        trade_id = self._trade_ids[market.id]
        self._trade_ids[market.id] += 1
        trade = {
            "id": trade_id,
            "price": fmt(price),
            "qty": fmt(qty),
            "quoteQty": fmt(price * qty),
            "time": now,
            "isBuyerMaker": buyer_maker,
            "isBestMatch": True,
        }
        self.public[market.id].append(trade)
        self.events.append(
            (
                f"{market.id.lower()}@trade",
                {
                    "e": "trade",
                    "E": now,
                    "s": market.id,
                    "t": trade_id,
                    "p": fmt(price),
                    "q": fmt(qty),
                    "T": now,
                    "m": buyer_maker,
                    "M": True,
                },
            )
        )
        self.events.append(
            (
                f"{market.id.lower()}@aggTrade",
                {"e": "aggTrade", "E": now, "s": market.id, "a": trade_id, "p": fmt(price),
                 "q": fmt(qty), "f": trade_id, "l": trade_id, "T": now, "m": buyer_maker,
                 "M": True},
            )
        )  # fmt: skip
        return trade_id

    # -- orders ----------------------------------------------------------------------------
    def place(self, params: dict[str, str], now: int, test: bool = False) -> dict[str, Any]:
        """``POST /api/v3/order``: validate as Binance does, then match."""
        market = self.market(params)
        assert market is not None
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        kind = params.get("type")
        if not kind:
            raise mandatory("type")
        if kind not in _ALL_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        if kind not in _ORDER_TYPES:
            raise BinanceError(-2010, "Order type not supported for this symbol.")
        tif = params.get("timeInForce") or None
        if tif is not None and tif not in ("GTC", "IOC", "FOK"):
            raise BinanceError(-1115, "Invalid timeInForce.")
        qty = param_decimal(params, "quantity")
        quote_qty = param_decimal(params, "quoteOrderQty")
        price = param_decimal(params, "price")
        stop = param_decimal(params, "stopPrice")
        resp_type = params.get("newOrderRespType") or (
            "FULL" if kind in ("MARKET", "LIMIT") else "ACK"
        )
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        client_id = params.get("newClientOrderId") or None
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[a-zA-Z0-9-_]{1,36}$'.",
            )
        # what each type needs, and refuses
        if kind == "MARKET":
            if qty is None and quote_qty is None:
                raise BinanceError(
                    -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                    "empty/null!"
                )  # fmt: skip
            if qty is not None and quote_qty is not None:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            for name, value in (("price", price), ("timeInForce", tif), ("stopPrice", stop)):
                if value is not None:
                    raise BinanceError(-1106, f"Parameter '{name}' sent when not required.")
        else:
            if kind != "LIMIT_MAKER" and tif is None:
                raise mandatory("timeInForce")
            if kind == "LIMIT_MAKER" and tif is not None:
                raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
            if qty is None:
                raise mandatory("quantity")
            if price is None:
                raise mandatory("price")
            if kind in _STOP_TYPES and stop is None:
                raise mandatory("stopPrice")
            if kind not in _STOP_TYPES and stop is not None:
                raise BinanceError(-1106, "Parameter 'stopPrice' sent when not required.")
            if quote_qty is not None:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if client_id is not None and any(
            o.open and o.symbol == market.id and o.client_id == client_id
            for o in self.orders.values()
        ):
            raise BinanceError(-2010, MSG_DUPLICATE)
        # filters
        for value in (price, stop):
            if value is not None and (
                value < market.tick or value > 1_000_000 or value % market.tick != 0
            ):
                raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
        if qty is not None and (qty < market.min_qty or qty > 9_000 or qty % market.step != 0):
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        if kind == "MARKET":
            notional = quote_qty if quote_qty is not None else qty * market.last  # type: ignore[operator]
        else:
            notional = qty * price  # type: ignore[operator]
        if notional < market.min_notional:
            raise BinanceError(-1013, "Filter failure: NOTIONAL")
        if kind == "LIMIT_MAKER" and (
            (side == "BUY" and price >= market.ask) or (side == "SELL" and price <= market.bid)  # type: ignore[operator]
        ):
            raise BinanceError(-2010, MSG_MAKER)
        order = Order(
            symbol=market.id,
            order_id=self._order_ids,
            client_id=client_id or _random_client_id(),
            side=side,
            type=kind,
            tif=tif or "GTC",
            price=price or _ZERO,
            stop=stop or _ZERO,
            qty=qty if qty is not None else _ZERO,
            quote_qty=quote_qty or _ZERO,
            time=now,
            update=now,
            working=kind not in _STOP_TYPES,
            working_time=now if kind not in _STOP_TYPES else -1,
        )
        if kind in _STOP_TYPES and self._stop_reached(order, market.last):
            raise BinanceError(-2010, "Stop price would trigger immediately.")
        # funds: reserve what the order may spend
        if side == "BUY":
            asset = market.quote
            if kind == "MARKET":
                need = quote_qty if quote_qty is not None else self._cost(market, order.qty)
            else:
                need = order.qty * order.price
        else:
            asset = market.base
            need = order.qty if qty is not None else self._qty_for_quote(market, order.quote_qty)
        if need is None or need > self.free[asset]:
            raise BinanceError(-2010, MSG_BALANCE)
        if test:
            return {}
        self._order_ids += 1
        self.orders[order.order_id] = order
        order.lock_asset, order.locked = asset, need
        self.free[asset] -= need
        self.locked[asset] += need
        if order.working:
            self._take(order, market, now)
            self._settle_after_taking(order, now)
        self.update_time = now
        return order.result(resp_type, now)

    def _settle_after_taking(self, order: Order, now: int) -> None:
        """After the taking pass: market, IOC and FOK orders end (EXPIRED if not filled),
        GTC limit orders rest."""
        if order.status in _OPEN and (order.type == "MARKET" or order.tif in ("IOC", "FOK")):
            self._end(order, "EXPIRED", now)
        else:
            self._finish_if_done(order, now)

    def _take(self, order: Order, market: Market, now: int) -> None:
        """Take liquidity level by level, up to the limit price if any (FOK: all or none)."""
        limit = order.price if order.type != "MARKET" else None
        plan: list[tuple[Decimal, Decimal]] = []
        left = order.remaining
        quote_left = order.quote_qty - order.cum_quote
        by_quote = order.type == "MARKET" and order.quote_qty > 0
        for price, available in market.levels(order.side):
            if limit is not None and (
                (order.side == "BUY" and price > limit) or (order.side == "SELL" and price < limit)
            ):
                break
            if by_quote:
                qty = market.floor_qty(min(available, quote_left / price))
                quote_left -= qty * price
            else:
                qty = min(available, left)
                left -= qty
            if qty <= 0:
                break
            plan.append((price, qty))
        if order.tif == "FOK" and sum((q for _, q in plan), _ZERO) < order.qty:
            return
        for price, qty in plan:
            self._fill(order, market, price, qty, maker=False, now=now)

    def _fill(
        self, order: Order, market: Market, price: Decimal, qty: Decimal, maker: bool, now: int
    ) -> None:
        rate = self.maker_fee if maker else self.taker_fee
        gross = price * qty
        if order.side == "BUY":
            release = qty * order.price if order.type != "MARKET" else gross
            release = min(release, order.locked)
            order.locked -= release
            self.locked[market.quote] -= release
            self.free[market.quote] += release - gross
            commission = (qty * rate).quantize(_EIGHT, ROUND_HALF_UP)
            self.free[market.base] += qty - commission
            fee_asset = market.base
        else:
            order.locked -= qty
            self.locked[market.base] -= qty
            commission = (gross * rate).quantize(_EIGHT, ROUND_HALF_UP)
            self.free[market.quote] += gross - commission
            fee_asset = market.quote
        if order.type == "MARKET" and order.quote_qty > 0:
            order.qty += qty  # a quote-amount market order's origQty is what it bought
        order.executed += qty
        order.cum_quote += gross
        order.update = now
        order.status = "FILLED" if order.executed >= order.qty else "PARTIALLY_FILLED"
        trade_id = self._public_trade(
            market, price, qty, buyer_maker=(order.side == "BUY") == maker, now=now
        )
        order.fills.append(
            {
                "price": fmt(price),
                "qty": fmt(qty),
                "commission": fmt(commission),
                "commissionAsset": fee_asset,
                "tradeId": trade_id,
            }
        )
        self.my_trades.append(
            {
                "symbol": market.id,
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "price": fmt(price),
                "qty": fmt(qty),
                "quoteQty": fmt(gross),
                "commission": fmt(commission),
                "commissionAsset": fee_asset,
                "time": now,
                "isBuyer": order.side == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )
        self.update_time = now

    def _finish_if_done(self, order: Order, now: int) -> None:
        if order.status == "FILLED":
            self._end(order, "FILLED", now)

    def _end(self, order: Order, status: str, now: int) -> None:
        """A terminal state: whatever the order still reserves goes back to free."""
        order.status, order.update = status, now
        if order.locked:
            self.locked[order.lock_asset] -= order.locked
            self.free[order.lock_asset] += order.locked
            order.locked = _ZERO
        if order.type == "MARKET" and order.quote_qty > 0 and order.executed == 0:
            order.qty = _ZERO

    @staticmethod
    def _stop_reached(order: Order, last: Decimal) -> bool:
        if order.type == "STOP_LOSS_LIMIT":
            return last <= order.stop if order.side == "SELL" else last >= order.stop
        if order.type == "TAKE_PROFIT_LIMIT":
            return last >= order.stop if order.side == "SELL" else last <= order.stop
        return True

    @staticmethod
    def _cost(market: Market, qty: Decimal) -> Decimal:
        """What buying ``qty`` at market costs now (the part the book can fill)."""
        cost, left = _ZERO, qty
        for price, available in market.levels("BUY"):
            take = min(available, left)
            cost += take * price
            left -= take
            if left <= 0:
                break
        return cost

    @staticmethod
    def _qty_for_quote(market: Market, quote: Decimal) -> Decimal:
        """How much base selling at market for ``quote`` takes now."""
        qty, left = _ZERO, quote
        for price, available in market.levels("SELL"):
            take = market.floor_qty(min(available, left / price))
            qty += take
            left -= take * price
            if take < available:
                break
        return qty

    def cancel(self, params: dict[str, str], now: int) -> dict[str, Any]:
        market = self.market(params)
        assert market is not None
        order = self._find(params, market, -2011, "Unknown order sent.")
        if not order.open:
            raise BinanceError(-2011, "Unknown order sent.")
        self._end(order, "CANCELED", now)
        self.update_time = now
        return self._cancel_json(order, params, now)

    def cancel_all(self, params: dict[str, str], now: int) -> list[dict[str, Any]]:
        market = self.market(params)
        assert market is not None
        orders = [o for o in self.orders.values() if o.symbol == market.id and o.open]
        if not orders:
            raise BinanceError(-2011, "Unknown order sent.")
        for order in orders:
            self._end(order, "CANCELED", now)
        return [self._cancel_json(o, params, now) for o in orders]

    @staticmethod
    def _cancel_json(order: Order, params: dict[str, str], now: int) -> dict[str, Any]:
        out = order.result("RESULT", now)
        out.pop("workingTime", None)
        out["origClientOrderId"] = out.pop("clientOrderId")
        out["clientOrderId"] = params.get("newClientOrderId") or _random_client_id()
        return out

    def query(self, params: dict[str, str]) -> dict[str, Any]:
        market = self.market(params)
        assert market is not None
        return self._find(params, market, -2013, "Order does not exist.").json()

    def open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        market = self.market(params, required=False)
        return [
            o.json()
            for o in self.orders.values()
            if o.open and (market is None or o.symbol == market.id)
        ]

    def all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        market = self.market(params)
        assert market is not None
        from_id = param_int(params, "orderId")
        start, end = param_int(params, "startTime"), param_int(params, "endTime")
        limit = param_limit(params, 500, 1000)
        orders = [
            o
            for o in self.orders.values()
            if o.symbol == market.id
            and (from_id is None or o.order_id >= from_id)
            and (start is None or o.time >= start)
            and (end is None or o.time <= end)
        ]
        if from_id is None and start is None:
            orders = orders[-limit:]
        return [o.json() for o in orders[:limit]]

    def trades_of(self, params: dict[str, str]) -> list[dict[str, Any]]:
        market = self.market(params)
        assert market is not None
        order_id = param_int(params, "orderId")
        from_id = param_int(params, "fromId")
        start, end = param_int(params, "startTime"), param_int(params, "endTime")
        limit = param_limit(params, 500, 1000)
        trades = [
            t
            for t in self.my_trades
            if t["symbol"] == market.id
            and (order_id is None or t["orderId"] == order_id)
            and (from_id is None or t["id"] >= from_id)
            and (start is None or t["time"] >= start)
            and (end is None or t["time"] <= end)
        ]
        if from_id is None and start is None:
            trades = trades[-limit:]
        return trades[:limit]

    def account(self, params: dict[str, str]) -> dict[str, Any]:
        omit = params.get("omitZeroBalances", "false") == "true"
        maker, taker = fmt(self.maker_fee), fmt(self.taker_fee)
        balances = [
            {"asset": a, "free": fmt(self.free[a]), "locked": fmt(self.locked[a])}
            for a in sorted(self.free)
            if not omit or self.free[a] or self.locked[a]
        ]
        return {
            "makerCommission": int(self.maker_fee * 10_000),
            "takerCommission": int(self.taker_fee * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": maker,
                "taker": taker,
                "buyer": fmt(_ZERO),
                "seller": fmt(_ZERO),
            },  # fmt: skip
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.update_time,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    # -- market data -----------------------------------------------------------------------
    def ticker_24hr(self, market: Market, now: int) -> dict[str, Any]:
        open_, high, low, volume, quote_volume = market.day_stats(now)
        change = market.last - open_
        first = self._trade_ids[market.id] - len(self.public[market.id])
        return {
            "symbol": market.id,
            "priceChange": fmt(change),
            "priceChangePercent": f"{change / open_ * 100:.3f}",
            "weightedAvgPrice": fmt((high + low) / 2),
            "prevClosePrice": fmt(open_),
            "lastPrice": fmt(market.last),
            "lastQty": fmt(market.step),
            "bidPrice": fmt(market.bid),
            "bidQty": fmt(market.bids.get(market.bid, _ZERO)),
            "askPrice": fmt(market.ask),
            "askQty": fmt(market.asks.get(market.ask, _ZERO)),
            "openPrice": fmt(open_),
            "highPrice": fmt(high),
            "lowPrice": fmt(low),
            "volume": fmt(volume),
            "quoteVolume": fmt(quote_volume),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": first,
            "lastId": self._trade_ids[market.id] - 1,
            "count": len(self.public[market.id]),
        }

    def ws_ticker(self, market: Market, now: int) -> dict[str, Any]:
        t = self.ticker_24hr(market, now)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": market.id,
            "p": t["priceChange"],
            "P": t["priceChangePercent"],
            "w": t["weightedAvgPrice"],
            "x": t["prevClosePrice"],
            "c": t["lastPrice"],
            "Q": t["lastQty"],
            "b": t["bidPrice"],
            "B": t["bidQty"],
            "a": t["askPrice"],
            "A": t["askQty"],
            "o": t["openPrice"],
            "h": t["highPrice"],
            "l": t["lowPrice"],
            "v": t["volume"],
            "q": t["quoteVolume"],
            "O": t["openTime"],
            "C": t["closeTime"],
            "F": t["firstId"],
            "L": t["lastId"],
            "n": t["count"],
        }

    def ws_kline(self, market: Market, interval: str, now: int) -> dict[str, Any]:
        opens = market.kline_starts(interval, None, None, 1, now)
        row = market.klines(interval, opens, now)[0]
        return {
            "e": "kline",
            "E": now,
            "s": market.id,
            "k": {
                "t": row[0],
                "T": row[6],
                "s": market.id,
                "i": interval,
                "f": -1,
                "L": -1,
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": row[8],
                "x": False,
                "q": row[7],
                "V": row[9],
                "Q": row[10],
                "B": "0",
            },
        }


def _random_client_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


def to_decimal(value: Any, name: str) -> Decimal:
    """A user-supplied amount (constructor, knobs): finite and non-negative, or ValueError."""
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not out.is_finite() or out < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return out
