"""Instrument specifications: contract multiplier, price tick, lot and minimum size, margin.

A bar series only knows prices. What one unit of a symbol is worth, which prices the exchange
accepts and which sizes it trades are properties of the instrument, given once per symbol:

``multiplier``
    Account-currency value of a price move of 1.0 for one unit: 50 for an E-mini S&P 500
    future (a 1-point move of one contract is $50), 1 for shares and spot FX (the default).
    The simulated broker multiplies P&L, notional (margin) and the commission's fraction by it.
``tick_size``
    The price increment. Order prices are rounded to it and fills never land between ticks.
``lot_size``
    Sizes must be whole multiples of it (100 for a round-lot stock market).
``min_size``
    The smallest size accepted.
``quote_currency``
    Three letters (``'USD'``). Informational: the simulated account has one currency and does
    not convert (see :mod:`osmarkets.brokers.simulated`).
``margin_rate``
    Fraction of the notional held as margin; overrides the broker's rate for this symbol.

Every field but ``symbol`` is optional; ``None`` means "no rule". :func:`load_instruments` reads
them from a TOML or JSON file with one table per symbol::

    [ES]
    multiplier = 50
    tick_size = 0.25

    ["BRK.B"]        # symbols outside A-Z, 0-9, _ and - are quoted in TOML
    lot_size = 100
    min_size = 100
"""

from __future__ import annotations

import decimal
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

# The alphabet of bar-series symbols (osmarkets.data.timeframes): safe in topics and file names.
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_TOLERANCE = 1e-9  # relative: sizes and prices are floats, 0.1 * 3 must count as 0.3


@dataclass(frozen=True)
class Instrument:
    """The trading rules of one symbol (see the module docstring for each field).

    Raises ``ValueError`` naming the field and the symbol for a bad value. Numbers are stored as
    floats and the currency in upper case.
    """

    symbol: str
    multiplier: float = 1.0
    tick_size: float | None = None
    lot_size: float | None = None
    min_size: float | None = None
    quote_currency: str | None = None
    margin_rate: float | None = None

    def __post_init__(self) -> None:
        symbol = self.symbol
        if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
            raise ValueError(
                f"instrument symbol: expected a non-empty name of letters, digits and _.-/, "
                f"got {symbol!r:.60}"
            )
        for name in ("multiplier", "tick_size", "lot_size", "min_size", "margin_rate"):
            value = getattr(self, name)
            if value is None and name != "multiplier":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"instrument {symbol} {name}: expected a number, got {value!r:.60}"
                )
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"instrument {symbol} {name}: expected a positive finite number, got {value!r}"
                )
            object.__setattr__(self, name, float(value))
        if self.margin_rate is not None and self.margin_rate > 1:
            raise ValueError(
                f"instrument {symbol} margin_rate: expected a fraction in (0, 1], "
                f"got {self.margin_rate!r}"
            )
        currency = self.quote_currency
        if currency is not None:
            if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
                raise ValueError(
                    f"instrument {symbol} quote_currency: expected three letters such as 'USD', "
                    f"got {currency!r:.60}"
                )
            object.__setattr__(self, "quote_currency", currency.upper())

    def round_price(self, price: float, side: str | None = None) -> float:
        """``price`` on the tick grid (unchanged without a ``tick_size``).

        ``side=None`` rounds to the nearest tick, a half tick upwards (prices are positive, so
        this is "half away from zero"). ``side='buy'`` rounds up and ``side='sell'`` down: the
        adverse direction, so a simulated fill is never better than a price the market could
        quote. A price within a relative 1e-9 of a tick counts as on it (``0.1 * 3`` is 0.3, not
        a hair above). The result is rounded to the tick's decimals, so a tick of 0.1 gives 0.3,
        never 0.30000000000000004.
        """
        if side not in (None, "buy", "sell"):
            raise ValueError(f"side: expected None, 'buy' or 'sell', got {side!r}")
        tick = self.tick_size
        if tick is None:
            return price
        steps = price / tick
        nearest = round(steps)
        if abs(steps - nearest) <= _TOLERANCE * max(1.0, abs(steps)):
            count = nearest
        elif side == "buy":
            count = math.ceil(steps)
        elif side == "sell":
            count = math.floor(steps)
        else:
            count = math.floor(steps + 0.5)
        return round(count * tick, _decimals(tick))

    def size_problem(self, size: float) -> str | None:
        """Why ``size`` cannot be traded (below ``min_size``, or not a whole number of lots), or
        None. Sizes within a relative 1e-9 of a rule pass: floats such as ``0.1 * 3`` lots."""
        minimum = self.min_size
        if minimum is not None and size < minimum * (1 - _TOLERANCE):
            return (
                f"size {_number(size)} is below the minimum size {_number(minimum)} "
                f"for {self.symbol}"
            )
        lot = self.lot_size
        if lot is not None:
            lots = size / lot
            if abs(lots - round(lots)) > _TOLERANCE * max(1.0, abs(lots)) or round(lots) == 0:
                return (
                    f"size {_number(size)} is not a multiple of the lot size {_number(lot)} "
                    f"for {self.symbol}"
                )
        return None


FIELDS = tuple(f.name for f in fields(Instrument))


def load_instruments(source: Any) -> dict[str, Instrument]:
    """Instruments by symbol from any of the accepted forms.

    ``source``: a path (``str`` or ``os.PathLike``) to a ``.toml`` or ``.json`` file holding one
    table per symbol; a mapping symbol -> dict of fields or symbol -> :class:`Instrument`; or an
    iterable of :class:`Instrument`. ``None`` gives no instruments.

    Raises ``ValueError`` in one line naming the file (when there is one), the symbol and the
    field: an unknown field, a bad value, a symbol given twice or that disagrees with its key, a
    missing or unreadable file, text that is not TOML/JSON.
    """
    if source is None:
        return {}
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        return _from_mapping(_read(path), f"instruments file {path}: ")
    if isinstance(source, Mapping):
        return _from_mapping(source, "instruments: ")
    if isinstance(source, Iterable):
        found: dict[str, Instrument] = {}
        for item in source:
            if not isinstance(item, Instrument):
                raise ValueError(f"instruments: expected Instrument objects, got {item!r:.60}")
            if item.symbol in found:
                raise ValueError(f"instruments: symbol {item.symbol} is given twice")
            found[item.symbol] = item
        return found
    raise ValueError(
        f"instruments: expected a .toml/.json path, a mapping or a list of Instrument, "
        f"got {type(source).__name__}"
    )


def _read(path: str) -> Any:
    where = f"instruments file {path}"
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{where}: expected a .toml or .json file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ValueError(f"{where}: not found") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        if suffix == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        detail = " ".join(str(exc).split())
        raise ValueError(f"{where}: not valid {kind} ({detail})") from None


def _from_mapping(data: Any, where: str) -> dict[str, Instrument]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}expected a table per symbol, got {type(data).__name__}")
    found: dict[str, Instrument] = {}
    for symbol, spec in data.items():
        if isinstance(spec, Instrument):
            if spec.symbol != symbol:
                raise ValueError(
                    f"{where}symbol {symbol!r:.60} holds the instrument {spec.symbol}"
                )
            found[symbol] = spec
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"{where}symbol {symbol!r:.60}: expected a table of fields, "
                f"got {type(spec).__name__}"
            )
        values = dict(spec)
        for name in values:
            if name not in FIELDS:
                raise ValueError(
                    f"{where}symbol {symbol!r:.60} field {name!r:.60}: unknown "
                    f"(known: {', '.join(FIELDS[1:])})"
                )
        if values.setdefault("symbol", symbol) != symbol:
            raise ValueError(
                f"{where}symbol {symbol!r:.60} field 'symbol': differs ({values['symbol']!r:.60})"
            )
        try:
            found[symbol] = Instrument(**values)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
    return found


def _decimals(tick: float) -> int:
    """Decimal places of ``tick`` as written (0.25 -> 2, 1e-05 -> 5, 5.0 -> 0)."""
    exponent = decimal.Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _number(value: float) -> str:
    """A size for messages: 150 rather than 150.0, full precision otherwise."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
