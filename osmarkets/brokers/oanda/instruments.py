"""Instrument metadata: how to write prices and units for one OANDA instrument.

OANDA rejects a price with more decimals than ``displayPrecision`` (``PRICE_PRECISION_EXCEEDED``)
and units with more than ``tradeUnitsPrecision``, so every number the adapter sends goes through
:meth:`Instrument.format_price` / :meth:`Instrument.format_units`: ``Decimal`` arithmetic, no
float artefacts such as ``"110.79999999999999"``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, NamedTuple


class Instrument(NamedTuple):
    """The fields of OANDA's ``Instrument`` that trading needs, typed."""

    name: str
    type: str
    display_name: str
    pip_location: int
    display_precision: int
    trade_units_precision: int
    minimum_trade_size: float
    margin_rate: float
    maximum_order_units: float = math.inf
    minimum_trailing_stop_distance: float = 0.0
    maximum_trailing_stop_distance: float = math.inf

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instrument:
        """Parse one element of ``GET /v3/accounts/{A}/instruments``; names the bad field."""

        def field(key: str) -> Any:
            if key not in data:
                raise ValueError(f"instrument {data.get('name', '?')}: missing field {key!r}")
            return data[key]

        def integer(key: str) -> int:
            value = field(key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"instrument {data.get('name')}: {key} is not an integer")
            return value

        def number(key: str, default: float) -> float:
            value = data.get(key)
            if value is None:
                return default
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"instrument {data.get('name')}: {key} is not a number: {value!r}"
                ) from None

        return cls(
            name=str(field("name")),
            type=str(data.get("type", "CURRENCY")),
            display_name=str(data.get("displayName", data["name"])),
            pip_location=integer("pipLocation"),
            display_precision=integer("displayPrecision"),
            trade_units_precision=integer("tradeUnitsPrecision"),
            minimum_trade_size=number("minimumTradeSize", 1.0),
            margin_rate=number("marginRate", 0.05),
            maximum_order_units=number("maximumOrderUnits", math.inf) or math.inf,
            minimum_trailing_stop_distance=number("minimumTrailingStopDistance", 0.0),
            maximum_trailing_stop_distance=number("maximumTrailingStopDistance", math.inf),
        )

    @property
    def pip(self) -> float:
        """Pip size, ``10 ** pipLocation`` (0.0001 for EUR_USD)."""
        return 10.0**self.pip_location

    def format_price(self, value: float | str | Decimal) -> str:
        """A price as OANDA wants it: a decimal string with ``displayPrecision`` decimals."""
        return _quantize(value, self.display_precision, f"{self.name} price")

    def format_distance(self, value: float | str | Decimal) -> str:
        """A price distance (trailing stop): same precision as a price."""
        return _quantize(value, self.display_precision, f"{self.name} distance")

    def format_units(self, value: float | str | Decimal) -> str:
        """Signed units rounded to ``tradeUnitsPrecision`` decimals (``'-100'`` for FX)."""
        text = _quantize(value, self.trade_units_precision, f"{self.name} units", signed=True)
        if Decimal(text) == 0:
            raise ValueError(f"{self.name} units: {value!r} rounds to zero units")
        return text


def _quantize(value: Any, places: int, what: str, signed: bool = False) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not number.is_finite() or (not signed and number <= 0):
        raise ValueError(f"{what}: expected a positive finite number, got {value!r}")
    step = Decimal(1).scaleb(-places)
    return str(number.quantize(step, rounding=ROUND_HALF_EVEN))


def parse_instruments(body: dict[str, Any]) -> dict[str, Instrument]:
    """``{name: Instrument}`` from a ``GET /v3/accounts/{A}/instruments`` response body."""
    items = body.get("instruments")
    if not isinstance(items, list):
        raise ValueError("instruments response: missing list field 'instruments'")
    return {item["name"]: Instrument.from_json(item) for item in items}
