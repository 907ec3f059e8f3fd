"""The simulated broker: one fill model for the in-process backtest and the simulated
architecture (no osBrain here).

Account model
    One account in a single currency. Prices are quoted in that currency, so profit and loss of
    an instrument (in its quote currency) is account currency: no conversion is modelled.
    Positions are *netted* per instrument, as on OANDA: an opposite order reduces, closes or
    reverses the position. ``balance`` is the cash of a margin account: the initial cash plus
    realised profit and loss minus commissions. ``equity`` adds the unrealised profit and loss
    of the open positions, marked at the last known mid price (the bar's close).

Fills
    * Market orders wait for the next price: the next bar's open (``on_bar``) or the next tick
      (``on_tick``), or the current bar's close when the runner calls :meth:`fill_at_close`.
      Buys fill at the ask and sells at the bid where bars carry quotes; on plain OHLC bars at
      the mid price plus or minus half the ``spread``.
    * Limit, stop and market-if-touched orders, and the stop-loss, take-profit and trailing-stop
      attached to a position, trigger *intrabar* along an assumed price path: the open, then the
      nearer extreme, then the other, then the close. For a bar that closes at or above its open
      that is open -> low -> high -> close, otherwise open -> high -> low -> close (the shortest
      path through the four prices, as MetaTrader's tester assumes). Buy-side levels are compared
      with the ask path and sell-side levels with the bid path.
    * A level already passed at the open (a gap) fills at the open, not at the level: a stop
      below a gap-down open fills at that open, a limit at the better open price.
    * ``slippage`` is an adverse price amount added to buys and subtracted from sells of every
      fill that executes as a market order (market, stop, market-if-touched, stop-loss and
      trailing-stop fills); limit and take-profit fills get their price or better.
    * ``commission`` (a :class:`Commission`) is charged on every fill and reported in its event.
    * ``max_fill`` (units, per symbol or for all) is the liquidity one order finds at one price
      (a bar, or a tick): a larger order fills in parts, one 'filled' event per price with the
      ``remaining`` units, until it is done (None, the default: every order fills at once).

Time in force and order flags
    * ``'IOC'`` / ``'FOK'`` orders are judged at the first price after they are sent: what can
      fill there fills (IOC) or all of it does (FOK), and the rest is cancelled with the reason.
      A limit is marketable when the ask (buys) or bid (sells) is at or better than its price,
      a stop or market-if-touched when that price is already through its level.
    * ``'GTD'`` orders are cancelled with the reason ``'expired (GTD)'`` at the first price at
      or after their ``expire_time``.
    * ``reduce_only`` orders are refused when there is no position they reduce; each fill is cut
      to the position left, and the rest is cancelled once it is closed.
    * ``post_only`` limit orders are refused when the last known quote would fill them at once.

Margin
    ``margin_rate`` is the fraction of the notional held as margin (1.0 = no leverage,
    0.02 = 50:1). An order that would increase exposure is rejected with the reason
    ``'insufficient margin'`` when the margin of the resulting positions would exceed the
    equity, checked on submit against the last price and again at the fill. Margin calls and
    forced close-outs are not modelled.

Instruments
    ``instruments`` (:class:`~osmarkets.instruments.Instrument` objects, see
    :func:`~osmarkets.instruments.load_instruments`) give a symbol its contract rules; a symbol
    without one keeps the defaults (multiplier 1, any price, any size), which is exactly the
    model above.

    * ``multiplier``: the account value of a price move of 1.0 per unit. Realised and unrealised
      P&L are ``units * price move * multiplier``; the notional used for margin is
      ``|units| * price * multiplier``; the commission is called with ``price * multiplier``
      (the value of one unit), so a :class:`Commission`'s ``fraction`` applies to that notional
      while ``per_unit`` stays per unit (per contract). Prices and fills stay in price units.
    * ``tick_size``: on submit the order's price and its stop-loss and take-profit levels are
      rounded to the tick in the direction that never trades worse than asked (a buy limit
      down, a sell limit up, a buy stop up, a sell stop down, a long's stop-loss down and
      take-profit up; market-if-touched to the nearest tick); the accepted order carries the
      rounded prices. Every fill price (after spread and slippage)
      is rounded to the tick in the adverse direction, buys up and sells down, so the simulation
      never fills at a price better than the market could quote; a limit or take-profit level
      already on the tick is kept. The trailing-stop distance is not rounded.
    * ``lot_size`` / ``min_size``: an order whose size is below the minimum or not a whole
      number of lots is rejected with a reason naming the size, the rule and the symbol, e.g.
      ``'size 150 is not a multiple of the lot size 100 for XYZ'``.
    * ``margin_rate``: replaces the broker's ``margin_rate`` for that symbol.
    * ``quote_currency`` is not converted: the account has one currency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..data.types import Bar, Tick
from ..instruments import Instrument, load_instruments
from .base import ORDER_TYPES, SIDES, TIME_IN_FORCE, Order, OrderEvent
from .money import CLOSEOUT_LEVEL, AccountCurrency, NoConversion, next_rollover, parse_financing

_NAN = float("nan")
_new_tuple = tuple.__new__  # OrderEvent(*values) without its Python frame (the hot path)
_PROTECTIVE = ("stop_loss", "take_profit", "trailing_stop")


@dataclass(frozen=True)
class Commission:
    """Commission per fill: ``per_unit * size + fraction * size * price``, at least ``minimum``.

    ``Commission(fraction=0.0002)`` is 2 basis points of the notional; ``Commission(per_unit=
    0.005, minimum=1.0)`` is a typical per-share stock schedule.
    """

    per_unit: float = 0.0
    fraction: float = 0.0
    minimum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("per_unit", "fraction", "minimum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"commission {name}: expected a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"commission {name}: expected a number >= 0, got {value!r}")

    def __call__(self, size: float, price: float) -> float:
        return max(self.minimum, self.per_unit * size + self.fraction * size * price)


class _Position:
    """Netted position of one instrument with the protective orders attached to it."""

    __slots__ = (
        "units", "avg", "stop_loss", "take_profit", "trail", "extreme", "origin", "brain", "lots",
    )  # fmt: skip

    def __init__(self) -> None:
        self.units = 0.0
        self.avg = 0.0
        self.lots: list[list[float]] = []  # [signed units, price], oldest first (account mode)
        self.stop_loss: float | None = None
        self.take_profit: float | None = None
        self.trail: float | None = None  # trailing distance
        self.extreme = _NAN  # best price seen since the trailing stop was attached
        self.origin = ""  # client id of the order that attached the protective orders
        self.brain = ""

    @property
    def protected(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None or self.trail is not None

    def clear_protection(self) -> None:
        self.stop_loss = self.take_profit = self.trail = None
        self.extreme = _NAN


class _Trigger:
    """A price level that executes something when the bid (sells) or ask (buys) reaches it."""

    __slots__ = ("kind", "side", "level", "up", "market_like", "order")

    def __init__(
        self, kind: str, side: str, level: float, up: bool, market_like: bool, order: Order | None
    ) -> None:
        self.kind = kind  # 'order', 'stop_loss', 'take_profit' or 'trailing_stop'
        self.side = side
        self.level = level
        self.up = up  # True: triggers when the price is >= level; False: <= level
        self.market_like = market_like
        self.order = order


def _on_ticks(order: Order, spec: Instrument) -> Order:
    """``order`` with its price, stop-loss and take-profit on ``spec``'s tick, each rounded the
    way that never trades worse than the trader asked: a buy limit and a take-profit that buys
    round down, a sell limit and a take-profit that sells round up; a buy stop and a stop-loss
    that buys round up, a sell stop and a stop-loss that sells round down (so a stop never
    triggers before its level); a market-if-touched price to the nearest tick."""
    if spec.tick_size is None:
        return order
    up, down = "buy", "sell"  # round_price's directions: ceil, floor
    buy = order.side == "buy"

    def rounded(value: float | None, direction: str | None) -> float | None:
        return None if value is None else spec.round_price(value, direction)

    price_way = {"limit": down if buy else up, "stop": up if buy else down}.get(order.type)
    return order._replace(
        price=rounded(order.price, price_way),
        stop_loss=rounded(order.stop_loss, down if buy else up),  # sells below / buys above
        take_profit=rounded(order.take_profit, up if buy else down),
    )


def _fifo(pos: _Position, signed: float, price: float) -> float:
    """Net a fill into ``pos``'s lots, oldest first; returns the price P&L of the units it
    closed (in quote currency, before the multiplier)."""
    remaining = signed
    pnl = 0.0
    lots = pos.lots
    while lots and remaining and (lots[0][0] > 0) != (remaining > 0):
        lot = lots[0]
        take = min(abs(lot[0]), abs(remaining))
        direction = 1.0 if lot[0] > 0 else -1.0
        pnl += take * (price - lot[1]) * direction
        lot[0] -= take * direction
        remaining += take * direction
        if abs(lot[0]) <= 1e-12 * max(1.0, take):
            lots.pop(0)
    if abs(remaining) > 1e-12 * max(1.0, abs(signed)):
        lots.append([remaining, price])
    return pnl


def _average(lots: list[list[float]]) -> float:
    units = sum(lot[0] for lot in lots)
    return sum(lot[0] * lot[1] for lot in lots) / units if units else 0.0


def _per_symbol(name: str, value: float | Mapping[str, float] | None, default: float) -> dict:
    if isinstance(value, Mapping):
        table = {}
        for symbol, item in value.items():
            table[symbol] = _non_negative(f"{name}[{symbol!r}]", item)
        return table
    return {None: _non_negative(name, value if value is not None else default)}


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    return float(value)


class SimulatedBroker:
    """A netting broker simulated on bars or ticks; see the module docstring for the model.

    Every method returns the :class:`~osmarkets.brokers.base.OrderEvent` objects it caused, in
    order, so the caller (the backtest engine, the Trader agent) decides how to deliver them.
    """

    def __init__(
        self,
        cash: float = 100_000.0,
        *,
        spread: float | dict[str, float] = 0.0,
        slippage: float = 0.0,
        commission: Commission | None = None,
        margin_rate: float | dict[str, float] = 1.0,
        path: str = "ohlc",
        instruments: Mapping[str, Instrument] | Iterable[Instrument] | None = None,
        currency: str | None = None,
        rates: Mapping[str, float] | None = None,
        closeout: float | None = CLOSEOUT_LEVEL,
        financing: Mapping[str, Any] | None = None,
        max_fill: float | Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(cash, bool) or not isinstance(cash, int | float) or not math.isfinite(cash):
            raise ValueError(f"cash: expected a finite number, got {cash!r}")
        if cash <= 0:
            raise ValueError(f"cash: expected a positive amount, got {cash!r}")
        if commission is not None and not callable(commission):
            raise ValueError(f"commission: expected a Commission, got {commission!r}")
        if path != "ohlc":
            raise ValueError(f"path: only 'ohlc' is supported, got {path!r}")
        self.initial_cash = float(cash)
        self.balance = float(cash)
        self.realized_pnl = 0.0
        self.commission_paid = 0.0
        self.slippage = _non_negative("slippage", slippage)
        self.commission = commission
        self.path = path
        self._spread = _per_symbol("spread", spread, 0.0)
        self._max_fill = _per_symbol("max_fill", max_fill, 1e300)  # None: no limit
        for key, units in self._max_fill.items():
            if units <= 0:
                name = "max_fill" if key is None else f"max_fill[{key!r}]"
                raise ValueError(f"{name}: expected units > 0, got {units!r}")
        self._margin = _per_symbol("margin_rate", margin_rate, 1.0)
        for key, rate in self._margin.items():
            if rate <= 0 or rate > 1:
                name = "margin_rate" if key is None else f"margin_rate[{key!r}]"
                raise ValueError(f"{name}: expected a fraction in (0, 1], got {rate!r}")
        #: symbol -> Instrument; symbols not in it trade with multiplier 1 and no rules.
        self.instruments: dict[str, Instrument] = load_instruments(instruments)
        self._multiplier: dict[str, float] = {}
        for symbol, spec in self.instruments.items():
            if spec.multiplier != 1.0:
                self._multiplier[symbol] = spec.multiplier
            if spec.margin_rate is not None:
                self._margin[symbol] = spec.margin_rate
        # The account currency switches on OANDA's money rules (brokers/money.py).
        self.account: AccountCurrency | None = None
        if currency is not None:
            quotes = {s: spec.quote_currency for s, spec in self.instruments.items()
                      if spec.quote_currency}  # fmt: skip
            self.account = AccountCurrency(currency, rates, quotes)
        elif rates or financing:
            raise ValueError("rates, financing: need an account currency (currency='USD')")
        if closeout is not None and (not isinstance(closeout, int | float) or
                                     not 0 < closeout <= 1):  # fmt: skip
            raise ValueError(f"closeout: expected a fraction in (0, 1] or None, got {closeout!r}")
        self.closeout = closeout if self.account is not None else None
        self._fee_currency = self.account.currency if self.account is not None else ""
        self.financing = parse_financing(financing)
        self.financing_total = 0.0  # account currency, + received / - paid
        #: account-currency value of one unit of quote currency at each fill, in fill order
        self.fill_conversions: list[float] = []
        self.closeouts = 0
        self._bid: dict[str, float] = {}  # closing prices (account mode): longs close at bids
        self._ask: dict[str, float] = {}
        self._next_roll: tuple[int, int] | None = None
        self._units: dict[str, float] = {}  # symbol -> signed units (read on the hot path)
        self._positions: dict[str, _Position] = {}
        self._mark: dict[str, float] = {}  # symbol -> last mid price
        self._pending: dict[str, list[Order]] = {}
        self._mit_up: dict[str, bool] = {}  # client id -> direction of a market-if-touched
        self._filled: set[str] = set()
        self._ended: set[str] = set()  # client ids of orders accepted and since ended
        self._left: dict[str, float] = {}  # client id -> units still to fill, once partly filled
        self._touched: set[str] = set()  # orders partly filled at the current price
        self._now = 0
        # Symbols with pending orders or a protected position: the only ones whose bars the
        # broker must see. The backtest engine reads this to skip every other bar.
        self.active: set[str] = set()

    # -- configuration lookups --------------------------------------------------------------
    def half_spread(self, symbol: str) -> float:
        table = self._spread
        return table.get(symbol, table.get(None, 0.0)) / 2.0

    def margin_rate(self, symbol: str) -> float:
        table = self._margin
        return table.get(symbol, table.get(None, 1.0))

    def multiplier(self, symbol: str) -> float:
        """Account value of a price move of 1.0 per unit of ``symbol`` (1.0 without an
        instrument)."""
        return self._multiplier.get(symbol, 1.0)

    def _margin_per_value(self, symbol: str) -> float:
        """Margin per unit of price per unit held: the margin rate times the multiplier."""
        return self.margin_rate(symbol) * self._multiplier.get(symbol, 1.0)

    # -- account ----------------------------------------------------------------------------
    def position(self, symbol: str) -> float:
        """Signed units held in ``symbol``."""
        return self._units.get(symbol, 0.0)

    @property
    def positions(self) -> dict[str, float]:
        """Open positions: symbol -> signed units (a copy)."""
        return {symbol: units for symbol, units in self._units.items() if units}

    def average_price(self, symbol: str) -> float:
        pos = self._positions.get(symbol)
        return pos.avg if pos is not None and pos.units else _NAN

    @property
    def unrealized_pnl(self) -> float:
        total = 0.0
        account = self.account is not None
        for symbol, pos in self._positions.items():
            if pos.units:
                if account:
                    price = self._closing_price(symbol, pos.units, pos.avg)
                    move = (price - pos.avg) * self._rate(symbol, price)
                else:
                    move = self._mark.get(symbol, pos.avg) - pos.avg
                total += pos.units * move * self._multiplier.get(symbol, 1.0)
        return total

    @property
    def equity(self) -> float:
        return self.balance + self.unrealized_pnl

    @property
    def margin_used(self) -> float:
        if self.account is not None:
            total = 0.0
            for symbol, pos in self._positions.items():
                if pos.units:
                    price = self._closing_price(symbol, pos.units, pos.avg)
                    value = abs(pos.units) * price * self._rate(symbol, price)
                    total += value * self._margin_per_value(symbol)
            return total
        return sum(
            abs(pos.units) * self._mark.get(symbol, pos.avg) * self._margin_per_value(symbol)
            for symbol, pos in self._positions.items()
            if pos.units
        )

    # -- account currency (brokers/money.py) ------------------------------------------------
    def _rate(self, symbol: str, price: float) -> float:
        """Account-currency value of one unit of ``symbol``'s quote currency (1 without an
        account currency); raises NoConversion."""
        if self.account is None:
            return 1.0
        return self.account.rate(symbol, price, self._mark)

    def _closing_price(self, symbol: str, units: float, default: float) -> float:
        """The price a position of ``units`` would close at: the bid for a long, the ask for
        a short (the mark when no quote was seen)."""
        book = self._bid if units > 0 else self._ask
        price = book.get(symbol)
        return price if price is not None else self._mark.get(symbol, default)

    def _quote(self, symbol: str, bid: float, ask: float) -> None:
        self._bid[symbol], self._ask[symbol] = bid, ask

    def _roll(self, time: int) -> None:
        """Financing for every 17:00 New York passed by ``time`` (brokers/money.py)."""
        if not self.financing and self._next_roll is None:
            return
        if self._next_roll is None:
            self._next_roll = next_rollover(time)
            return
        while time >= self._next_roll[0]:
            stamp, days = self._next_roll
            for symbol, pos in self._positions.items():
                rates = self.financing.get(symbol)
                if not pos.units or rates is None:
                    continue
                annual = rates[0] if pos.units > 0 else rates[1]
                price = self._closing_price(symbol, pos.units, pos.avg)
                value = abs(pos.units) * price * self._multiplier.get(symbol, 1.0)
                amount = value * annual / 365.0 * days * self._rate(symbol, price)
                self.balance += amount
                self.financing_total += amount
            self._next_roll = next_rollover(stamp)

    def _check_closeout(self, time: int, events: list[OrderEvent]) -> None:
        """Close every position at its closing price when the NAV has fallen to ``closeout``
        times the margin used (OANDA: margin used / (2 x NAV) reaching 1.0)."""
        if self.closeout is None or not self._units:
            return
        margin = self.margin_used
        if margin <= 0 or self.equity > self.closeout * margin:
            return
        self.closeouts += 1
        for symbol, pos in list(self._positions.items()):
            if pos.units:
                side = "sell" if pos.units > 0 else "buy"
                price = self._closing_price(symbol, pos.units, pos.avg)
                fill = self._apply_fill(symbol, side, abs(pos.units), price, time, pos.origin,
                                        pos.brain, "margin closeout", None)  # fmt: skip
                events.append(fill)

    @property
    def pending_orders(self) -> list[Order]:
        return [order for orders in self._pending.values() for order in orders]

    def set_time(self, time: int) -> None:
        """Move the broker's clock to ``time`` (ns, UTC) without a price: the engine calls this
        before submitting or cancelling, so the events answering carry the time they were
        asked at, not that of the last bar the broker ran."""
        self._now = time

    def mark(self, symbol: str, price: float, time: int | None = None) -> None:
        """Set the mark (mid) price of ``symbol`` without running any order: the engine calls
        this on bars it does not pass to :meth:`on_bar`, before submitting orders."""
        self._mark[symbol] = price
        half = self.half_spread(symbol)
        self._quote(symbol, price - half, price + half)
        if time is not None:
            self._now = time

    # -- orders -----------------------------------------------------------------------------
    def submit(self, order: Order) -> list[OrderEvent]:
        """Accept or reject ``order``; an accepted order waits for the next price."""
        reason = self._invalid(order)
        spec = self.instruments.get(order.symbol) if reason is None else None
        if spec is not None:
            order = _on_ticks(order, spec)
            reason = self._invalid(order) or spec.size_problem(order.size)
        if not isinstance(order, Order):
            client_id = str(getattr(order, "client_id", ""))
            return [OrderEvent("rejected", client_id, "", "", 0.0, time=self._now, reason=reason)]
        if reason is None and order.client_id in self._ended:
            return []  # a copy of an order that has ended: its events were reported
        if reason is None and self._is_pending(order.client_id):
            # a refused request (size 0), not the end of the order that holds the id
            event = self._event(
                "rejected", order, reason=f"duplicate client id {order.client_id!r}"
            )
            return [event._replace(size=0.0)]
        if reason is None:
            reason = self._flag_problem(order)
        if reason is None:
            price = order.price if order.type != "market" else self._mark.get(order.symbol)
            try:
                if price is not None and not self._margin_ok(order.symbol, order.signed_size,
                                                             price):  # fmt: skip
                    reason = "insufficient margin"
            except NoConversion as exc:
                reason = str(exc)
        if reason is not None:
            return [self._event("rejected", order, reason=reason)]
        if order.type == "market_if_touched":
            mark = self._mark.get(order.symbol)
            if mark is not None:
                self._mit_up[order.client_id] = order.price > mark  # type: ignore[operator]
        self._pending.setdefault(order.symbol, []).append(order)
        self.active.add(order.symbol)
        return [self._event("accepted", order, price=order.price or _NAN)]

    def _flag_problem(self, order: Order) -> str | None:
        """Why ``order``'s reduce-only or post-only flag refuses it now, or None."""
        if order.reduce_only:
            units = self._units.get(order.symbol, 0.0)
            if not units or (units > 0) == (order.side == "buy"):
                return (
                    f"reduce_only: no {'short' if order.side == 'buy' else 'long'} "
                    f"position in {order.symbol} to reduce"
                )
        if order.post_only:
            quote = self._last_quote(order.symbol)
            limit: float = order.price  # type: ignore[assignment]  # make_order: a limit's
            if quote is not None and (
                limit >= quote[1] if order.side == "buy" else limit <= quote[0]
            ):
                return "post_only: the limit would trade at once against the current quote"
        return None

    def _last_quote(self, symbol: str) -> tuple[float, float] | None:
        if symbol in self._bid:
            return self._bid[symbol], self._ask[symbol]
        mark = self._mark.get(symbol)
        if mark is None:
            return None
        half = self.half_spread(symbol)
        return mark - half, mark + half

    def cancel(self, client_id: str) -> list[OrderEvent]:
        """Cancel a pending order: a ``cancelled`` event, or ``rejected`` if there is none."""
        for symbol, orders in self._pending.items():
            for index, order in enumerate(orders):
                if order.client_id == client_id:
                    del orders[index]
                    self._mit_up.pop(client_id, None)
                    self._refresh_active(symbol)
                    return [self._end(order, "cancelled by request")]
        reason = (
            "already filled" if client_id in self._filled
            else "already ended" if client_id in self._ended else "unknown order"
        )  # fmt: skip
        return [OrderEvent("rejected", client_id, "", "", 0.0, time=self._now, reason=reason)]

    @staticmethod
    def _invalid(order: Order) -> str | None:
        if not isinstance(order, Order):
            return f"invalid order: expected an Order, got {type(order).__name__}"
        if order.side not in SIDES:
            return f"invalid order side {order.side!r}"
        size = order.size
        if isinstance(size, bool) or not isinstance(size, int | float):
            return f"invalid order size {size!r}"
        if not math.isfinite(size) or size <= 0:
            return f"invalid order size {size!r}"
        if not isinstance(order.symbol, str) or not order.symbol:
            return f"invalid order symbol {order.symbol!r}"
        if order.type not in ORDER_TYPES:
            return f"invalid order type {order.type!r}"
        if order.time_in_force not in TIME_IN_FORCE:
            return f"invalid order time_in_force {order.time_in_force!r}"
        if order.post_only and order.type != "limit":
            return "invalid order: post_only needs a limit order"
        if order.type != "market" and order.price is None:
            return f"invalid order: a {order.type} order needs a price"
        for name in ("price", *_PROTECTIVE):
            value = getattr(order, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                return f"invalid order {name} {value!r}"
        sl, tp = order.stop_loss, order.take_profit
        if sl is not None and tp is not None:
            if order.side == "buy" and sl >= tp:
                return "invalid order: a buy's stop_loss must be below its take_profit"
            if order.side == "sell" and sl <= tp:
                return "invalid order: a sell's stop_loss must be above its take_profit"
        return None

    def _is_pending(self, client_id: str) -> bool:
        for orders in self._pending.values():  # loops, not any(genexpr): on every submit
            for order in orders:
                if order.client_id == client_id:
                    return True
        return False

    def _margin_ok(self, symbol: str, signed: float, price: float) -> bool:
        units = self._units.get(symbol, 0.0)
        new = units + signed
        if abs(new) <= abs(units):
            return True  # reducing or closing never needs margin
        rate = self._margin_per_value(symbol)
        if self.account is not None:
            mark = self._closing_price(symbol, units, price) if units else price
            current = abs(units) * mark * rate * self._rate(symbol, mark)
            required = (
                self.margin_used - current + abs(new) * price * rate * self._rate(symbol, price)
            )
            return required <= self.equity * (1 + 1e-12)
        current = abs(units) * self._mark.get(symbol, price) * rate
        required = self.margin_used - current + abs(new) * price * rate
        return required <= self.equity * (1 + 1e-12)

    # -- prices -----------------------------------------------------------------------------
    def on_bar(self, symbol: str, bar: Bar) -> list[OrderEvent]:
        """Run ``symbol``'s orders through one bar: pending market orders at the open, then the
        intrabar path; mark the position at the close."""
        if self.account is not None:
            return self._on_bar_accounted(symbol, bar)
        self._now = bar.time
        events: list[OrderEvent] = []
        if symbol in self.active:
            self._new_price(symbol, bar.time, events)
            bids, asks = self._path(symbol, bar)
            self._fill_market(symbol, bids[0], asks[0], bar.time, events)
            if symbol in self.active:  # after the market orders, something is left to run
                self._run_segment(symbol, bids[0], asks[0], bids[0], asks[0], bar.time, events)
                for k in range(1, 4):
                    self._run_segment(
                        symbol, bids[k - 1], asks[k - 1], bids[k], asks[k], bar.time, events
                    )
        self._mark[symbol] = bar.close
        return events

    def _path(self, symbol: str, bar: Bar) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The bid and ask at the four points of the assumed intrabar path."""
        if bar.has_quotes:
            bids = (bar.bid_open, bar.bid_low, bar.bid_high, bar.bid_close)
            asks = (bar.ask_open, bar.ask_low, bar.ask_high, bar.ask_close)
        else:
            half = self.half_spread(symbol)
            mids = (bar.open, bar.low, bar.high, bar.close)
            bids = (mids[0] - half, mids[1] - half, mids[2] - half, mids[3] - half)
            asks = (mids[0] + half, mids[1] + half, mids[2] + half, mids[3] + half)
        if bar.close < bar.open:  # bearish: the high comes first
            bids = (bids[0], bids[2], bids[1], bids[3])
            asks = (asks[0], asks[2], asks[1], asks[3])
        return bids, asks

    def _on_bar_accounted(self, symbol: str, bar: Bar) -> list[OrderEvent]:
        """:meth:`on_bar` under the account currency's rules: financing at each 17:00 New York
        passed, and the closeout checked at each point of the path (the worst one included)."""
        self._roll(bar.time)
        self._now = bar.time
        events: list[OrderEvent] = []
        bids, asks = self._path(symbol, bar)
        for k in range(4):
            if symbol in self.active:
                if k == 0:
                    self._new_price(symbol, bar.time, events)
                    self._fill_market(symbol, bids[0], asks[0], bar.time, events)
                start = max(k - 1, 0)
                self._run_segment(
                    symbol, bids[start], asks[start], bids[k], asks[k], bar.time, events
                )
            self._quote(symbol, bids[k], asks[k])
            self._mark[symbol] = (bids[k] + asks[k]) / 2.0
            self._check_closeout(bar.time, events)
        self._mark[symbol] = bar.close
        return events

    def on_tick(self, symbol: str, tick: Tick) -> list[OrderEvent]:
        """The same as :meth:`on_bar` for one quote: everything that is due fills at it."""
        self._roll(tick.time)
        self._now = tick.time
        events: list[OrderEvent] = []
        if symbol in self.active:
            self._new_price(symbol, tick.time, events)
            self._fill_market(symbol, tick.bid, tick.ask, tick.time, events)
            self._run_segment(symbol, tick.bid, tick.ask, tick.bid, tick.ask, tick.time, events)
        self._mark[symbol] = (tick.bid + tick.ask) / 2.0
        self._quote(symbol, tick.bid, tick.ask)
        self._check_closeout(tick.time, events)
        return events

    def fill_at_close(self, symbol: str, bar: Bar) -> list[OrderEvent]:
        """Fill ``symbol``'s pending market orders at this bar's close (the "fill at the signal
        bar's close" option); other orders wait for the next bar."""
        events: list[OrderEvent] = []
        if symbol in self.active:
            self._new_price(symbol, bar.time, events)
            if bar.has_quotes:
                bid, ask = bar.bid_close, bar.ask_close
            else:
                half = self.half_spread(symbol)
                bid, ask = bar.close - half, bar.close + half
            self._fill_market(symbol, bid, ask, bar.time, events)
        self._mark[symbol] = bar.close
        return events

    # -- execution --------------------------------------------------------------------------
    def _fill_market(
        self, symbol: str, bid: float, ask: float, time: int, events: list[OrderEvent]
    ) -> None:
        orders = self._pending.get(symbol)
        if not orders:
            return
        remaining = []
        for order in orders:
            now = order.type == "market" or order.time_in_force in ("IOC", "FOK") or (
                self._triggered(order)
            )  # fmt: skip
            if not now or order.client_id in self._touched:
                remaining.append(order)
                continue
            price = self._marketable_at(order, bid, ask)
            if price is None:  # an IOC or FOK order that cannot fill at its first price
                events.append(self._end(order, f"{order.time_in_force}: not marketable"))
                continue
            if self._execute(order, price, time, events):
                if order.time_in_force == "IOC":
                    events.append(self._end(order, "IOC: the rest could not fill at once"))
                else:
                    remaining.append(order)
        self._pending[symbol] = remaining
        self._refresh_active(symbol)

    def _triggered(self, order: Order) -> bool:
        """A stop or market-if-touched order that has triggered and filled in part: the rest
        is a market order (it fills at the next prices, wherever they are)."""
        return order.type in ("stop", "market_if_touched") and order.client_id in self._left

    def _marketable_at(self, order: Order, bid: float, ask: float) -> float | None:
        """The price ``order`` fills at now, at (``bid``, ``ask``), or None if it cannot."""
        buy = order.side == "buy"
        market = ask + self.slippage if buy else bid - self.slippage
        if order.type == "market" or self._triggered(order):
            return market
        level: float = order.price  # type: ignore[assignment]
        touch = ask if buy else bid
        if order.type == "limit":
            through = touch <= level if buy else touch >= level
            return touch if through else None
        if order.type == "stop":
            return market if (touch >= level if buy else touch <= level) else None
        up = self._mit_up.get(order.client_id, level > (bid + ask) / 2.0)
        return market if (touch >= level if up else touch <= level) else None

    def _new_price(self, symbol: str, time: int, events: list[OrderEvent]) -> None:
        """Before a new price: GTD orders due expire, and partly filled orders find new
        liquidity."""
        self._touched.clear()
        orders = self._pending.get(symbol)
        if not orders:
            return
        if any(o.expire_time and o.expire_time <= time for o in orders):
            kept = []
            for order in orders:
                if order.expire_time and order.expire_time <= time:
                    events.append(self._end(order, "expired (GTD)", time))
                else:
                    kept.append(order)
            self._pending[symbol] = kept
            self._refresh_active(symbol)

    def _triggers(self, symbol: str, bid: float, ask: float) -> list[_Trigger]:
        found = []
        for order in self._pending.get(symbol, ()):
            if order.client_id in self._touched or self._triggered(order):
                continue  # partly filled at this price, or a triggered stop's market rest
            buy = order.side == "buy"
            level: float = order.price  # type: ignore[assignment]
            if order.type == "limit":
                found.append(_Trigger("order", order.side, level, not buy, False, order))
            elif order.type == "stop":
                found.append(_Trigger("order", order.side, level, buy, True, order))
            elif order.type == "market_if_touched":
                up = self._mit_up.get(order.client_id)
                if up is None:  # no price known at submit: the first one decides
                    up = self._mit_up[order.client_id] = level > (bid + ask) / 2.0
                found.append(_Trigger("order", order.side, level, up, True, order))
        pos = self._positions.get(symbol)
        if pos is not None and pos.units:
            long = pos.units > 0
            side = "sell" if long else "buy"
            if pos.stop_loss is not None:
                found.append(_Trigger("stop_loss", side, pos.stop_loss, not long, True, None))
            if pos.take_profit is not None:
                found.append(_Trigger("take_profit", side, pos.take_profit, long, False, None))
            if pos.trail is not None:
                level = pos.extreme - pos.trail if long else pos.extreme + pos.trail
                found.append(_Trigger("trailing_stop", side, level, not long, True, None))
        return found

    def _run_segment(
        self,
        symbol: str,
        bid0: float,
        ask0: float,
        bid1: float,
        ask1: float,
        time: int,
        events: list[OrderEvent],
    ) -> None:
        """Execute, in the order the price reaches them, every level touched while the price
        moves straight from (bid0, ask0) to (bid1, ask1)."""
        done = 0.0  # fraction of the segment already travelled
        while symbol in self.active:
            best: tuple[float, float, _Trigger] | None = None
            bid_now, ask_now = bid0 + done * (bid1 - bid0), ask0 + done * (ask1 - ask0)
            for trig in self._triggers(symbol, bid_now, ask_now):
                s0, s1 = (ask0, ask1) if trig.side == "buy" else (bid0, bid1)
                now = s0 + done * (s1 - s0)
                level = trig.level
                if (now >= level) if trig.up else (now <= level):
                    at, price = done, now  # already through: fills where the price is
                elif (s1 >= level) if trig.up else (s1 <= level):
                    at, price = (level - s0) / (s1 - s0), level
                else:
                    continue
                if best is None or at < best[0]:
                    best = (at, price, trig)
            if best is None:
                break
            done, price, trig = best
            if trig.market_like:
                price = price + self.slippage if trig.side == "buy" else price - self.slippage
            if trig.order is not None:
                if not self._execute(trig.order, price, time, events):
                    self._pending[symbol].remove(trig.order)
                    self._mit_up.pop(trig.order.client_id, None)
            else:
                self._execute_protective(symbol, trig, price, time, events)
            self._refresh_active(symbol)
        pos = self._positions.get(symbol)
        if pos is not None and pos.trail is not None and pos.units:
            if pos.units > 0:
                pos.extreme = max(pos.extreme, bid1)
            else:
                pos.extreme = min(pos.extreme, ask1)

    def _execute_protective(
        self, symbol: str, trig: _Trigger, price: float, time: int, events: list[OrderEvent]
    ) -> None:
        pos = self._positions[symbol]
        size = abs(pos.units)
        spec = self.instruments.get(symbol)
        if spec is not None:
            price = spec.round_price(price, trig.side)
        event = self._apply_fill(
            symbol, trig.side, size, price, time, pos.origin, pos.brain, trig.kind, None
        )
        events.append(event)

    def _execute(self, order: Order, price: float, time: int, events: list[OrderEvent]) -> bool:
        """Fill what ``order`` can fill at ``price``; True if some of it is still open (the
        caller keeps it pending), False if it is done (filled, rejected or cancelled)."""
        spec = self.instruments.get(order.symbol)
        if spec is not None:
            price = spec.round_price(price, order.side)
        cid = order.client_id
        left = self._left.get(cid, order.size)
        size = min(left, self._max_fill.get(order.symbol, self._max_fill.get(None, 1e300)))
        if order.reduce_only:
            held = self._units.get(order.symbol, 0.0)
            size = min(size, abs(held)) if held and (held > 0) != (order.side == "buy") else 0.0
            if size <= 1e-12 * max(1.0, left):
                events.append(self._end(order, "reduce_only: the position is closed", time))
                return False
        if order.time_in_force == "FOK" and size < left * (1 - 1e-12):
            events.append(self._end(order, "FOK: not all of it could fill at once", time))
            return False
        signed = size if order.side == "buy" else -size
        try:
            problem = (
                None if self._margin_ok(order.symbol, signed, price) else "insufficient margin"
            )
        except NoConversion as exc:
            problem = str(exc)
        if problem is not None:  # 'rejected' only if nothing of it executed
            partly = cid in self._left
            events.append(self._end(order, f"{problem}: the rest cancelled" if partly else problem,
                                    time, kind="cancelled" if partly else "rejected"))  # fmt: skip
            return False
        event = self._apply_fill(
            order.symbol, order.side, size, price, time, cid, order.brain, "", order,
        )  # fmt: skip
        left -= size
        if left > 1e-12 * order.size:
            self._left[cid] = left
            self._touched.add(cid)
            events.append(event._replace(remaining=left))
            if order.reduce_only and not self._units.get(order.symbol, 0.0):
                events.append(self._end(order, "reduce_only: the position is closed", time))
                return False
            return True
        self._left.pop(cid, None)
        self._filled.add(cid)
        self._ended.add(cid)
        events.append(event)
        return False

    def _end(self, order: Order, reason: str, time: int | None = None,
             kind: str = "cancelled") -> OrderEvent:  # fmt: skip
        """The event that ends ``order`` unfilled (what is left of it, if partly filled)."""
        left = self._left.pop(order.client_id, None)
        self._ended.add(order.client_id)
        event = self._event(kind, order, reason=reason, time=time)
        return event if left is None else event._replace(size=left)

    def _apply_fill(
        self,
        symbol: str,
        side: str,
        size: float,
        price: float,
        time: int,
        client_id: str,
        brain: str,
        reason: str,
        order: Order | None,
    ) -> OrderEvent:
        """Net a fill into the position: realise P/L on the part that reduces it, average the
        entry price on the part that adds to it, attach the order's protective levels."""
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = _Position()
        signed = size if side == "buy" else -size
        units = pos.units
        multiplier = self._multiplier.get(symbol, 1.0)
        rate = self._rate(symbol, price) if self.account is not None else 1.0
        unit_value = price * multiplier * rate  # account value of one unit: the commission's
        commission = self.commission(size, unit_value) if self.commission is not None else 0.0
        realised = 0.0
        new = units + signed
        if self.account is not None:  # FIFO lots, P&L in the account currency (OANDA's way)
            self.fill_conversions.append(rate)
            realised = _fifo(pos, signed, price) * multiplier * rate
            if abs(new) <= 1e-12 * max(1.0, abs(units)):
                new = 0.0
                pos.lots.clear()
            flipped = units != 0 and new != 0.0 and (new > 0) != (units > 0)
            opened = new != 0.0 and (units == 0 or flipped or abs(new) > abs(units))
            if new == 0.0 or flipped:
                pos.clear_protection()
            pos.avg = _average(pos.lots)
        elif units == 0 or (units > 0) == (signed > 0):
            pos.avg = (abs(units) * pos.avg + size * price) / abs(new)
            opened = True
        else:
            closed = min(abs(signed), abs(units))
            realised = closed * (price - pos.avg) * (1.0 if units > 0 else -1.0) * multiplier
            opened = (new > 0) != (units > 0) and abs(new) > 1e-12
            if opened:  # reversal: the rest opens a new position at this price
                pos.avg = price
            if abs(new) <= 1e-12 * max(1.0, abs(units)):
                new = 0.0
            if new == 0.0 or opened:
                pos.clear_protection()
            if new == 0.0:
                pos.avg = 0.0
        pos.units = new
        self._units[symbol] = new
        self.balance += realised - commission
        self.realized_pnl += realised
        self.commission_paid += commission
        if opened and order is not None and new != 0.0:
            if order.stop_loss is not None or order.take_profit is not None:
                pos.stop_loss, pos.take_profit = order.stop_loss, order.take_profit
            if order.trailing_stop is not None:
                pos.trail, pos.extreme = order.trailing_stop, price
            pos.origin, pos.brain = order.client_id, order.brain
        self._refresh_active(symbol)
        return _new_tuple(OrderEvent, (
            "filled", client_id, symbol, side, size, price, time, reason, commission, brain,
            0.0, commission, self._fee_currency,
        ))  # fmt: skip

    def _refresh_active(self, symbol: str) -> None:
        pos = self._positions.get(symbol)
        if self._pending.get(symbol) or (pos is not None and pos.units and pos.protected):
            self.active.add(symbol)
        else:
            self.active.discard(symbol)

    def _event(
        self,
        kind: str,
        order: Order,
        *,
        price: float = _NAN,
        reason: str = "",
        time: int | None = None,
    ) -> OrderEvent:
        return _new_tuple(OrderEvent, (
            kind, order.client_id, order.symbol, order.side, order.size, price,
            self._now if time is None else time, reason, 0.0, order.brain, 0.0, 0.0, "",
        ))  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"<SimulatedBroker balance={self.balance:.2f} equity={self.equity:.2f} "
            f"positions={self.positions} pending={len(self.pending_orders)}>"
        )
