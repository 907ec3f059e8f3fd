"""Orders, order events and the interface every broker implements (no osBrain here).

An :class:`Order` is what a Brain asks for; an :class:`OrderEvent` is everything that happens to
it afterwards (accepted, filled, rejected with a reason, cancelled). Both are plain immutable
records so they pickle cheaply between agents and compare equal in tests.
"""

from __future__ import annotations

import builtins
import math
import re
from typing import Any, NamedTuple, Protocol

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop", "market_if_touched")
EVENT_KINDS = ("accepted", "filled", "rejected", "cancelled")
#: Good till cancelled, immediate or cancel (fill what can fill now, cancel the rest), fill or
#: kill (all of it now, or nothing), good till date (``expire_time``).
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTD")


class Order(NamedTuple):
    """A request to trade ``size`` (> 0) units of ``symbol``.

    ``price`` is the limit or stop trigger price (required for every type but market).
    ``stop_loss`` / ``take_profit`` are prices; ``trailing_stop`` is a price distance. They are
    attached to the position opened by the fill, as OANDA's ``*OnFill`` orders are.

    ``time_in_force`` is one of :data:`TIME_IN_FORCE` (``'GTD'`` with ``expire_time``, ns since
    the epoch). A market order's ``'GTC'`` means what every venue does with one: fill now, at
    the prices there are. ``reduce_only``: the order may only reduce the position (its size is
    cut to the position, and it is refused if there is none to reduce); ``post_only``: a limit
    order that must rest in the book (refused if it would trade at once). A broker refuses, with
    a reason, what its venue cannot do.
    """

    client_id: str
    symbol: str
    side: str
    size: float
    type: str = "market"
    price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    brain: str = ""
    time: int = 0  # ns since epoch when the Brain sent it (0 if unknown)
    time_in_force: str = "GTC"
    expire_time: int = 0  # ns since epoch, for 'GTD'
    reduce_only: bool = False
    post_only: bool = False

    @property
    def signed_size(self) -> float:
        return self.size if self.side == "buy" else -self.size


class OrderEvent(NamedTuple):
    """Something that happened to an order.

    ``kind`` is one of :data:`EVENT_KINDS`. For fills, ``size`` and ``price`` are the executed
    units and price, ``commission`` its cost in the account currency, and ``reason`` says what
    triggered it when it was not the order itself (``'stop_loss'``, ``'take_profit'``,
    ``'trailing_stop'``). ``remaining`` is what is left of the order after a fill: an order
    can fill in parts, each its own 'filled' event, the last one with ``remaining`` 0 (unless
    the rest is cancelled or expires: a 'cancelled' event whose ``size`` is the units that will
    never fill). ``fee`` / ``fee_currency`` are the fee as the venue charged it (a crypto
    exchange takes it in the asset received); ``commission`` is that fee converted. For
    rejects and cancels, ``reason`` says why.
    """

    kind: str
    client_id: str
    symbol: str
    side: str
    size: float
    price: float = math.nan
    time: int = 0
    reason: str = ""
    commission: float = 0.0
    brain: str = ""
    remaining: float = 0.0
    fee: float = 0.0
    fee_currency: str = ""

    @property
    def signed_size(self) -> float:
        return self.size if self.side == "buy" else -self.size

    @property
    def terminal(self) -> bool:
        """Whether the order has ended with this event: rejected, cancelled (or expired), or
        its last fill. A 'rejected' event of size 0 is a refused *cancel request* (the order
        is unknown, already ended, or the broker could not be asked): the order itself goes
        on. (A fill with a ``reason`` is a protective order's or a closeout's, on the position
        the order opened.)"""
        if self.kind == "filled":
            return self.remaining <= 0
        if self.kind == "rejected":
            return self.size > 0
        return self.kind == "cancelled"


def base_asset(symbol: str) -> str | None:
    """The asset a ``'BASE/QUOTE'`` symbol (ccxt's unified form) buys, else None."""
    base, sep, _ = symbol.partition("/")
    return base if sep and base else None


def position_change(event: OrderEvent) -> float:
    """How far a fill moves the position: its signed size, less a fee taken in the asset
    bought (a crypto exchange charging ``'BTC'`` on a ``'BTC/USDT'`` buy: the account holds
    that much less). 0 for events other than fills."""
    if event.kind != "filled":
        return 0.0
    change = event.signed_size
    if event.fee and event.fee_currency and event.fee_currency == base_asset(event.symbol):
        change -= event.fee
    return change


def _optional_price(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"order {name}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"order {name}: expected a positive finite number, got {value!r}")
    return value


_new_tuple = tuple.__new__


def make_order(
    client_id: str,
    side: str,
    size: float,
    symbol: str,
    type: str = "market",
    price: float | None = None,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    brain: str = "",
    time: int = 0,
    time_in_force: str = "GTC",
    expire_time: int = 0,
    reduce_only: bool = False,
    post_only: bool = False,
) -> Order:
    """Build an :class:`Order`, raising ``ValueError`` naming the first bad field."""
    if side not in SIDES:
        raise ValueError(f"order side: expected 'buy' or 'sell', got {side!r}")
    if builtins.type(size) is not float and (
        isinstance(size, bool) or not isinstance(size, int | float)
    ):
        raise ValueError(f"order size: expected a positive number of units, got {size!r}")
    if not 0 < size < math.inf:  # False for NaN too
        raise ValueError(f"order size: expected a positive number of units, got {size!r}")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"order symbol: expected an instrument name, got {symbol!r}")
    if type not in ORDER_TYPES:
        raise ValueError(f"order type: expected one of {', '.join(ORDER_TYPES)}, got {type!r}")
    plain = (
        price is None and stop_loss is None and take_profit is None and trailing_stop is None
        and time_in_force == "GTC" and expire_time == 0 and reduce_only is False
        and post_only is False and type == "market" and builtins.type(expire_time) is int
    )  # fmt: skip
    if plain:  # the common market order: nothing else to check
        values = (client_id, symbol, side, float(size), type, None, None, None, None, brain,
                  time, time_in_force, 0, False, False)  # fmt: skip
        return _new_tuple(Order, values)  # what Order(*values) does, without its Python frame
    checked_price = _optional_price("price", price)
    if type != "market" and checked_price is None:
        raise ValueError(f"order price: a {type} order needs a price")
    if time_in_force not in TIME_IN_FORCE:
        raise ValueError(
            f"order time_in_force: expected one of {', '.join(TIME_IN_FORCE)}, "
            f"got {time_in_force!r}"
        )
    if isinstance(expire_time, bool) or not isinstance(expire_time, int) or expire_time < 0:
        raise ValueError(f"order expire_time: expected ns since the epoch, got {expire_time!r}")
    if (time_in_force == "GTD") != (expire_time > 0):
        raise ValueError("order expire_time: needed with time_in_force 'GTD', and only then")
    if type == "market" and time_in_force == "GTD":
        raise ValueError("order time_in_force: a market order cannot wait until a date")
    for name, flag in (("reduce_only", reduce_only), ("post_only", post_only)):
        if not isinstance(flag, bool):
            raise ValueError(f"order {name}: expected True or False, got {flag!r}")
    if post_only and (type != "limit" or time_in_force in ("IOC", "FOK")):
        raise ValueError("order post_only: only a limit order that rests (GTC or GTD)")
    return Order(
        client_id, symbol, side, float(size), type, checked_price,
        _optional_price("stop_loss", stop_loss), _optional_price("take_profit", take_profit),
        _optional_price("trailing_stop", trailing_stop), brain, time, time_in_force,
        expire_time, reduce_only, post_only,
    )  # fmt: skip


def event_key(event: OrderEvent) -> str:
    """What identifies an order event wherever it comes from: a Trader that restarted and
    reports again what its predecessor had reported gives the same key, so a Brain can drop the
    copy (the price is left out: NaN for most kinds, and a copy has the same fill anyway)."""
    key = f"{event.client_id}|{event.kind}|{event.reason}|{event.time}|{event.size!r}"
    return f"{key}|{event.remaining!r}" if event.remaining else key


#: Largest order any Trader passes on, whatever the risk limits: a size above it is a bug or an
#: attack, never a trade (OANDA's own per-order maximum is 100,000,000 units).
MAX_ORDER_UNITS = 1e12
MAX_CLIENT_ID = 128
_SYMBOL_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.\-/]{0,39}$")


def check_order(order: Order) -> str | None:
    """Why ``order`` (as received from another process) must be refused, or None.

    Every field is checked again, as :func:`make_order` does for the Brain that built it, and
    nothing is guessed: a negative size is refused, not turned into the other side.
    """
    if not isinstance(order.client_id, str) or not 0 < len(order.client_id) <= MAX_CLIENT_ID:
        return f"order client_id: expected 1 to {MAX_CLIENT_ID} characters"
    if not isinstance(order.brain, str) or not order.client_id.startswith(f"{order.brain}-"):
        return f"order client_id: expected '{order.brain}-<n>', got {order.client_id!r:.80}"
    if isinstance(order.time, bool) or not isinstance(order.time, int) or order.time < 0:
        return f"order time: expected ns since the epoch, got {order.time!r:.40}"
    try:
        make_order(
            order.client_id, order.side, order.size, order.symbol, order.type, order.price,
            order.stop_loss, order.take_profit, order.trailing_stop, order.brain, order.time,
            order.time_in_force, order.expire_time, order.reduce_only, order.post_only,
        )  # fmt: skip
    except ValueError as exc:
        return str(exc)
    if order.size > MAX_ORDER_UNITS:
        return f"order size: {order.size:g} units is above the hard limit of {MAX_ORDER_UNITS:g}"
    if not _SYMBOL_RE.match(order.symbol):
        return f"order symbol: expected an instrument name, got {order.symbol!r:.40}"
    return None


class Broker(Protocol):
    """What the Trader agent and the backtest engine need from a broker.

    Every call returns the events it caused, in order, instead of calling back: the caller
    decides how to deliver them (a list in a backtest, a socket in the architecture).
    """

    def submit(self, order: Order) -> list[OrderEvent]: ...

    def cancel(self, client_id: str) -> list[OrderEvent]: ...

    def position(self, symbol: str) -> float: ...
