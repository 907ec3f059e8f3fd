"""Orders, order events and the interface every broker implements (no osBrain here).

An :class:`Order` is what a Brain asks for; an :class:`OrderEvent` is everything that happens to
it afterwards (accepted, filled, rejected with a reason, cancelled). Both are plain immutable
records so they pickle cheaply between agents and compare equal in tests.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple, Protocol

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop", "market_if_touched")
EVENT_KINDS = ("accepted", "filled", "rejected", "cancelled")


class Order(NamedTuple):
    """A request to trade ``size`` (> 0) units of ``symbol``.

    ``price`` is the limit or stop trigger price (required for every type but market).
    ``stop_loss`` / ``take_profit`` are prices; ``trailing_stop`` is a price distance. They are
    attached to the position opened by the fill, as OANDA's ``*OnFill`` orders are.
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

    @property
    def signed_size(self) -> float:
        return self.size if self.side == "buy" else -self.size


class OrderEvent(NamedTuple):
    """Something that happened to an order.

    ``kind`` is one of :data:`EVENT_KINDS`. For fills, ``size`` and ``price`` are the executed
    units and price, ``commission`` its cost, and ``reason`` says what triggered it when it was
    not the order itself (``'stop_loss'``, ``'take_profit'``, ``'trailing_stop'``). For rejects
    and cancels, ``reason`` says why.
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

    @property
    def signed_size(self) -> float:
        return self.size if self.side == "buy" else -self.size


def _optional_price(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"order {name}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"order {name}: expected a positive finite number, got {value!r}")
    return value


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
) -> Order:
    """Build an :class:`Order`, raising ``ValueError`` naming the first bad field."""
    if side not in SIDES:
        raise ValueError(f"order side: expected 'buy' or 'sell', got {side!r}")
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise ValueError(f"order size: expected a positive number of units, got {size!r}")
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"order size: expected a positive number of units, got {size!r}")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"order symbol: expected an instrument name, got {symbol!r}")
    if type not in ORDER_TYPES:
        raise ValueError(f"order type: expected one of {', '.join(ORDER_TYPES)}, got {type!r}")
    checked_price = _optional_price("price", price)
    if type != "market" and checked_price is None:
        raise ValueError(f"order price: a {type} order needs a price")
    return Order(
        client_id=client_id,
        symbol=symbol,
        side=side,
        size=float(size),
        type=type,
        price=checked_price,
        stop_loss=_optional_price("stop_loss", stop_loss),
        take_profit=_optional_price("take_profit", take_profit),
        trailing_stop=_optional_price("trailing_stop", trailing_stop),
        brain=brain,
        time=time,
    )


def event_key(event: OrderEvent) -> str:
    """What identifies an order event wherever it comes from: a Trader that restarted and
    reports again what its predecessor had reported gives the same key, so a Brain can drop the
    copy (the price is left out: NaN for most kinds, and a copy has the same fill anyway)."""
    return f"{event.client_id}|{event.kind}|{event.reason}|{event.time}|{event.size!r}"


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
