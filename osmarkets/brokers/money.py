"""OANDA's money rules for the simulated broker: an account currency, home conversion, margin
closeout and daily financing (pure logic, no osBrain).

Why these rules: a Brain must show the same P&L on the simulated broker, on the bundled OANDA
sandbox and on OANDA itself, and OANDA converts every amount of an instrument's quote currency
into the account ("home") currency at the current rate of a conversion pair
(``gainQuoteHomeConversionFactor``), closes every position when the account's NAV falls to half
of the margin it uses (``marginCloseoutPercent`` = margin used / (2 x NAV) reaching 1.0), and
charges or pays financing on the positions held at 17:00 New York.

Rules (docs/backtesting.rst, "Account currency"):

* **Quote currency** of a symbol: its :class:`~osmarkets.instruments.Instrument`'s
  ``quote_currency`` if given, else the part after the last ``_`` of an OANDA name when it is
  three letters (``EUR_USD`` -> USD, ``USD_JPY`` -> JPY, ``DE30_EUR`` -> EUR), else the account
  currency (a stock ``ORCL`` in a USD account).
* **Conversion** of an amount in quote currency ``Q`` to the account currency ``H``: 1 when
  ``Q == H``; ``1 / price`` for a pair ``H_Q`` itself (USD_JPY in a USD account: at the price
  of the fill, or of the mark); otherwise the mid price of ``Q_H`` or ``1 / mid`` of ``H_Q``
  when the data has that pair; otherwise the ``rates`` table (``{'GBP': 1.27}``: one GBP is
  1.27 USD); otherwise the symbol cannot be traded: :meth:`AccountCurrency.check` names the
  pair or rate that is missing, before anything runs.
* **Marks**: a position is valued at the price it would close at (the bid for a long, the ask
  for a short), as OANDA values unrealised P&L and margin.
* **Closeout**: when the margin used exceeds zero and the NAV falls to ``closeout`` times the
  margin used (0.5, OANDA's level), every position is closed at its closing price; the fills
  carry the reason ``'margin closeout'``.
* **Financing**: at each 17:00 New York, every position held pays or earns
  ``|units| x closing price x multiplier x annual rate / 365 x days``, converted to the account
  currency, with ``financing={'EUR_USD': (long_rate, short_rate)}`` (annual, negative = paid);
  Wednesday's rollover counts three days (spot FX settles two business days later, so it
  carries the weekend), other days one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
ROLLOVER_ZONE = "America/New_York"
ROLLOVER_HOUR = 17
CLOSEOUT_LEVEL = 0.5
_DAY_NS = 86_400_000_000_000


class NoConversion(ValueError):
    """A symbol's quote currency has no conversion to the account currency."""


def _currency(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY_RE.match(value.upper()):
        raise ValueError(f"{name}: expected a three-letter currency code, got {value!r}")
    return value.upper()


class AccountCurrency:
    """Converts amounts of each symbol's quote currency into the account currency (module
    rules). ``quotes``: symbol -> quote currency given by instrument specifications."""

    def __init__(
        self,
        currency: str,
        rates: Mapping[str, float] | None = None,
        quotes: Mapping[str, str] | None = None,
    ) -> None:
        self.currency = _currency("currency", currency)
        self.rates: dict[str, float] = {}
        for code, rate in (rates or {}).items():
            key = _currency(f"rates key {code!r}", code)
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise ValueError(f"rates[{code!r}]: expected a positive number, got {rate!r}")
            if not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"rates[{code!r}]: expected a positive number, got {rate!r}")
            self.rates[key] = float(rate)
        self.quotes = {
            s: _currency(f"quote currency of {s}", q) for s, q in (quotes or {}).items()
        }

    def quote_currency(self, symbol: str) -> str:
        known = self.quotes.get(symbol)
        if known is not None:
            return known
        tail = symbol.rpartition("_")[2].upper()
        return tail if "_" in symbol and _CURRENCY_RE.match(tail) else self.currency

    def rate(self, symbol: str, price: float, mids: Mapping[str, float]) -> float:
        """Account-currency value of one unit of ``symbol``'s quote currency, ``price`` being
        the price the amount comes from (a fill or a mark) and ``mids`` the symbols' mid
        prices now. Raises :class:`NoConversion`."""
        quote = self.quote_currency(symbol)
        home = self.currency
        if quote == home:
            return 1.0
        if symbol.upper() == f"{home}_{quote}":
            return 1.0 / price
        direct = mids.get(f"{quote}_{home}")
        if direct:
            return direct
        inverse = mids.get(f"{home}_{quote}")
        if inverse:
            return 1.0 / inverse
        rate = self.rates.get(quote)
        if rate is not None:
            return rate
        raise NoConversion(
            f"{symbol}: no conversion from {quote} to {home}: add {quote}_{home} or "
            f"{home}_{quote} to the data, or rates={{{quote!r}: ...}}"
        )

    def check(self, symbols: list[str]) -> None:
        """Raise :class:`NoConversion` naming the first of ``symbols`` (the data's) whose
        quote currency cannot be converted with the others or the rates."""
        present = {s.upper(): 1.0 for s in symbols}
        for symbol in symbols:
            self.rate(symbol, 1.0, present)


def parse_financing(
    financing: Mapping[str, Any] | None,
) -> dict[str, tuple[float, float]]:
    """``{'EUR_USD': (long, short)}`` annual rates, checked: one line naming a bad entry."""
    out: dict[str, tuple[float, float]] = {}
    for symbol, rates in (financing or {}).items():
        try:
            long_rate, short_rate = (float(r) for r in rates)
        except (TypeError, ValueError):
            raise ValueError(
                f"financing[{symbol!r}]: expected (long rate, short rate), got {rates!r}"
            ) from None
        if not (math.isfinite(long_rate) and math.isfinite(short_rate)):
            raise ValueError(f"financing[{symbol!r}]: rates must be finite, got {rates!r}")
        out[str(symbol)] = (long_rate, short_rate)
    return out


def next_rollover(time_ns: int) -> tuple[int, int]:
    """``(time, days)`` of the first 17:00 New York rollover strictly after ``time_ns`` (ns,
    UTC): Monday to Friday, ``days`` 3 on Wednesdays (spot FX settles two business days on,
    so Wednesday's position carries the weekend), 1 otherwise."""
    local = pd.Timestamp(time_ns, tz="UTC").tz_convert(ROLLOVER_ZONE)
    day = local.normalize().tz_localize(None)
    while True:
        if day.day_of_week < 5:
            moment = (day + pd.Timedelta(hours=ROLLOVER_HOUR)).tz_localize(ROLLOVER_ZONE)
            stamp = int(moment.tz_convert("UTC").value)
            if stamp > time_ns:
                return stamp, 3 if day.day_of_week == 2 else 1
        day += pd.Timedelta(days=1)
