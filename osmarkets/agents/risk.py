"""Pre-trade risk checks of the Trader (pure logic, no osBrain)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..brokers.base import Order


@dataclass
class RiskLimits:
    """Limits every order must pass before it reaches the broker.

    ``allowed_symbols``: None allows any instrument. ``max_order_size``: units per order.
    ``max_position``: absolute units held per instrument after the order fills. ``kill_switch``:
    when on, every new order is rejected (cancels still pass).
    """

    allowed_symbols: frozenset[str] | None = None
    max_order_size: float = math.inf
    max_position: float = math.inf
    kill_switch: bool = False
    _checked: bool = field(default=False, repr=False)

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> RiskLimits:
        values = dict(values or {})
        unknown = set(values) - {
            "allowed_symbols",
            "max_order_size",
            "max_position",
            "kill_switch",
        }
        if unknown:
            raise ValueError(f"risk: unknown limit(s) {', '.join(sorted(unknown))}")
        symbols = values.get("allowed_symbols")
        if symbols is not None:
            if isinstance(symbols, str) or not isinstance(symbols, Iterable):
                raise ValueError(f"risk allowed_symbols: expected a list, got {symbols!r}")
            values["allowed_symbols"] = frozenset(symbols)
        for name in ("max_order_size", "max_position"):
            if name in values:
                value = values[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ValueError(f"risk {name}: expected a positive number, got {value!r}")
                values[name] = float(value)
        return cls(**values)

    def check(self, order: Order, position: float) -> str | None:
        """The reason to reject ``order`` given the current signed ``position``, or None."""
        if self.kill_switch:
            return "risk: kill switch is on"
        if self.allowed_symbols is not None and order.symbol not in self.allowed_symbols:
            return f"risk: symbol {order.symbol!r} is not allowed"
        if order.size > self.max_order_size:
            return (
                f"risk: order size {order.size:g} exceeds max_order_size {self.max_order_size:g}"
            )
        after = position + order.signed_size
        if abs(after) > self.max_position and abs(after) > abs(position):
            return (
                f"risk: position {after:g} in {order.symbol} would exceed max_position "
                f"{self.max_position:g}"
            )
        return None
