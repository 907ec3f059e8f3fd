"""Operator controls: pause and resume a Brain, flatten positions, cancel pending orders, and the
kill switch that does all of it and stops every Brain.

The Trader enforces them (a paused Brain's orders are refused with reason ``'paused'``; the
flatten and cancel orders are its own), so they hold whoever asks: the owner's Python calls
(``system.pause('x')``), ``osmarkets ctl`` in another terminal, the GUI's buttons. Each
control is logged by the Trader as ``operator: ...`` (a warning, so it reaches the terminal, the
log file and the Informer, which notifies it) and kept in the journal, so a restarted Trader
still refuses a paused Brain's orders and keeps the kill switch on.

:class:`Controls` is the one implementation every front end calls; it only needs a way to
reach the agents (``proxy(name)``). :func:`flatten_orders` is the pure arithmetic of a flatten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .brokers.base import Order, OrderEvent, position_change

#: the ``brain`` of orders a flatten of the whole account places for positions no Brain holds
OPERATOR = "operator"
#: what the Trader logs before every control, which the Informer recognises and notifies
LOG_PREFIX = "operator: "
#: why the Trader refuses the orders of a paused or stopped Brain (not news: the control was)
PAUSED = "paused"
STOPPED = "stopped by the operator"
#: a position smaller than this is flat
EPSILON = 1e-9

__all__ = [
    "Books", "Controls", "EPSILON", "LOG_PREFIX", "OPERATOR", "PAUSED", "STOPPED", "brain_books",
    "flatten_orders", "order_ended",
]  # fmt: skip


def flatten_orders(
    brain_positions: Mapping[str, Mapping[str, float]],
    account: Mapping[str, float] | None,
    client_ids: Callable[[str], str],
    time: int = 0,
) -> list[Order]:
    """Market orders that bring each Brain's positions (``brain -> symbol -> units``) to
    zero; with ``account`` (the broker's positions), also what is left of the account once the
    Brains are flat (a trade made outside the deployment), under :data:`OPERATOR`.
    ``client_ids(brain)`` names each order."""
    name = client_ids
    orders: list[Order] = []
    held: dict[str, float] = {}
    for brain in sorted(brain_positions):
        for symbol, units in sorted(brain_positions[brain].items()):
            units = float(units)
            held[symbol] = held.get(symbol, 0.0) + units
            if abs(units) > EPSILON:
                orders.append(_closing(name(brain), brain, symbol, units, time))
    for symbol, units in sorted((account or {}).items()):
        rest = float(units) - held.get(symbol, 0.0)
        if abs(rest) > EPSILON:
            orders.append(_closing(name(OPERATOR), OPERATOR, symbol, rest, time))
    return orders


def order_ended(event: OrderEvent) -> bool:
    """Whether ``event`` ends its order: rejected (a refused *cancel request*, size 0, does
    not), cancelled or expired, or the order's own last fill. A fill with a ``reason`` is a
    protective order's (stop loss, take profit) or a closeout's, on the position the order
    opened: what is left of the order itself goes on."""
    if event.kind == "filled":
        return not event.reason and event.remaining <= 0
    if event.kind == "rejected":
        return event.size > 0
    return event.kind == "cancelled"


class Books:
    """Per Brain, kept as fills arrive (:meth:`add`): positions, fills and the cash they
    paid and received less their commissions; :meth:`snapshot` values the positions at
    ``marks`` (the last price seen of each symbol; a position without one, at its last fill).
    In each instrument's quote currency, summed as is: exact for one quote currency, a rough
    figure across several (the account's equity is the exact total)."""

    def __init__(self, fills: Iterable[OrderEvent] = ()) -> None:
        self._books: dict[str, dict[str, Any]] = {}
        self._last_fill: dict[str, float] = {}
        for fill in fills:
            self.add(fill)

    def add(self, fill: OrderEvent) -> None:
        if fill.kind != "filled":
            return
        book = self._books.setdefault(fill.brain, {"positions": {}, "fills": 0, "cash": 0.0})
        book["fills"] += 1
        book["cash"] -= fill.signed_size * fill.price + float(fill.commission or 0.0)
        held = book["positions"].get(fill.symbol, 0.0) + position_change(fill)
        book["positions"][fill.symbol] = 0.0 if abs(held) < EPSILON else held
        self._last_fill[fill.symbol] = fill.price

    def positions(self, brain: str) -> dict[str, float]:
        """``brain``'s positions (symbol -> units), flat ones left out."""
        book = self._books.get(brain)
        return {s: u for s, u in book["positions"].items() if u} if book else {}

    def snapshot(self, marks: Mapping[str, float]) -> dict[str, dict[str, Any]]:
        """Brain -> ``{'positions', 'fills', 'pnl'}``."""
        out = {}
        for brain, book in self._books.items():
            value = sum(units * marks.get(symbol, self._last_fill.get(symbol, 0.0))
                        for symbol, units in book["positions"].items())  # fmt: skip
            out[brain] = {"positions": self.positions(brain), "fills": book["fills"],
                          "pnl": book["cash"] + value}  # fmt: skip
        return out


def brain_books(
    fills: Iterable[OrderEvent], marks: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """:class:`Books` of ``fills`` at once: per Brain ``positions``, ``fills`` and ``pnl``."""
    return Books(fills).snapshot(marks)


def _closing(client_id: str, brain: str, symbol: str, units: float, time: int) -> Order:
    side = "sell" if units > 0 else "buy"
    return Order(client_id, symbol, side, abs(units), brain=brain, time=time)


class Controls:
    """Pause, resume, flatten, cancel and kill on a deployment reached through ``proxy(name)``
    (an authenticated osBrain proxy to the agent ``name``)."""

    def __init__(self, proxy: Callable[[str], Any]) -> None:
        self._proxy = proxy

    @property
    def trader(self) -> Any:
        return self._proxy("trader")

    def pause(self, brain: str) -> dict[str, Any]:
        """Refuse ``brain``'s new orders (reason ``'paused'``); it keeps receiving bars."""
        return self.trader.operator_pause(brain)

    def resume(self, brain: str) -> dict[str, Any]:
        """Accept ``brain``'s orders again."""
        return self.trader.operator_resume(brain)

    def flatten(self, brain: str | None = None, account: bool = False) -> dict[str, Any]:
        """Close ``brain``'s positions (None: every Brain's) with market orders; with
        ``account``, also what the account holds that no Brain does (a trade made by hand, a
        wallet's coins: never touched otherwise)."""
        return self.trader.operator_flatten(brain, bool(account))

    def cancel_all(self, brain: str | None = None) -> dict[str, Any]:
        """Cancel ``brain``'s pending orders (None: every pending order)."""
        return self.trader.operator_cancel_all(brain)

    def kill(self) -> dict[str, Any]:
        """The kill switch: every new order refused, every pending order cancelled, every
        Brain's position closed, every Brain stopped (its code no longer runs; its process
        stays, so nothing restarts it). What the account holds outside the Brains is left
        alone (``flatten(account=True)`` closes it)."""
        report = self.trader.operator_kill()
        stopped = []
        for brain in report.get("brains", []):
            try:
                self._proxy(brain).osm_halt()
                stopped.append(brain)
            except Exception as exc:  # a dead Brain stays stopped: the journal says so
                report.setdefault("problems", []).append(f"{brain}: {type(exc).__name__}")
        report["stopped"] = stopped
        return report

    def status(self) -> dict[str, Any]:
        """Every Brain's state (``running``, ``paused``, ``stopped``), positions, pending
        orders and the kill switch, as the Trader knows them."""
        return self.trader.operator_status()
