"""Validation of live quotes: accept or reject each incoming tick or bar of a symbol.

A :class:`QuoteGuard` sits in front of the streaming aggregators
(:mod:`osmarkets.data.aggregate`), which refuse any record older than the newest one they took:
a single tick stamped ten years ahead would make them drop every later tick of its symbol. The
guard rejects such a record *before* it reaches them, and a rejected record never changes the
guard's state, so one bad tick can never stall the good ones that follow.

Every decision is a short, stable reason code (``None`` when accepted), counted per reason:

===================  =================================================================
``kind``             ``kind`` is neither ``'tick'`` nor ``'bar'``
``symbol``           the symbol is not a non-empty ``str``
``unknown_symbol``   the symbol is not in ``known_symbols``
``shape``            the payload is not a sequence of 3 to 5 (tick) or 5 to 14 (bar) fields
``time_type``        the time is not an integer (a ``bool`` is not one here)
``time_range``       the time is before 1970 or after 2262-04-11 (beyond int64 ns)
``price``            a price is not a finite positive number (``bool`` is not a number);
                     a bar's bid/ask fields must be all NaN (no quotes) or all prices
``volume``           a volume is not a number, is negative, or infinite; NaN is allowed
                     for a tick (unknown) but not for a bar
``crossed``          a tick's bid is above its ask (equal is allowed), or a bar's
                     ``bid_open``/``bid_close`` above ``ask_open``/``ask_close``
``ohlc``             a bar's high is below its low, or open or close is outside [low, high]
                     (for the mid prices and for each quoted side)
``future``           the time is more than ``max_future_ns`` ahead of ``clock()``
``back``             the time is older than the newest accepted time of the same symbol and
                     kind minus ``max_back_ns``
``repeat``           a bar with the same time as the newest accepted bar of its symbol
===================  =================================================================

The guard is pure (numpy and the standard library only) and cheap: a handful of type checks
and comparisons per record, so it keeps up with the tick path of the aggregators.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Container, Mapping, Set
from typing import Any

import numpy as np

KIND = "kind"
SYMBOL = "symbol"
UNKNOWN_SYMBOL = "unknown_symbol"
SHAPE = "shape"
TIME_TYPE = "time_type"
TIME_RANGE = "time_range"
PRICE = "price"
VOLUME = "volume"
CROSSED = "crossed"
OHLC = "ohlc"
FUTURE = "future"
BACK = "back"
REPEAT = "repeat"

#: Every reason code :meth:`QuoteGuard.check` can return, in the order the checks run.
REASONS = (
    KIND, SYMBOL, UNKNOWN_SYMBOL, SHAPE, TIME_TYPE, TIME_RANGE, PRICE, VOLUME, CROSSED, OHLC,
    FUTURE, BACK, REPEAT,
)  # fmt: skip

#: Default clock-skew bound: 60 s. It catches every gross time error (seconds or ms taken for
#: ns, a wrong year or day), tolerates a host clock that is not tightly synchronised with the
#: data source, and bounds what an accepted bad time can cost: a tick up to 60 s ahead makes the
#: ticks of the next <= 60 s look old, never more (about one M1 bar).
DEFAULT_MAX_FUTURE_NS = 60 * 10**9
#: Default backwards tolerance: 0 for ticks and bars. The aggregators drop any record older than
#: the newest one they took, so a tolerance would only let through records that bar building
#: then discards silently (and the Trader would fill orders on out-of-order quotes); with 0 they
#: are refused here, counted and logged under ``back``. Equal tick times are accepted (several
#: quotes in one nanosecond stamp); an equal bar time is a ``repeat`` (bars are strictly
#: increasing, see :func:`~osmarkets.data.validate.validate_bars`).
DEFAULT_MAX_BACK_NS = 0

TIME_MIN_NS = 0  # 1970-01-01T00:00:00Z
TIME_MAX_NS = 2**63 - 1  # 2262-04-11T23:47:16.854775807Z, the largest int64 ns time

_INF = math.inf
_KINDS = ("tick", "bar")


def _int_time(value: Any) -> int | None:
    """``value`` as an int when it is an integer (a bool is not), else None."""
    if type(value) is int:
        return value
    if isinstance(value, np.integer):  # np.bool_ is not an np.integer
        return int(value)
    return None


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (a bool is not), else None; NaN and
    infinities are returned as such, integers too large for a float give None."""
    if type(value) is float:
        return value
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _show_time(value: int) -> str:
    try:
        return np.datetime64(value, "ns").astype(str) + "Z"
    except (OverflowError, ValueError):
        return repr(value)


class QuoteGuard:
    """Decide, for each tick or bar of a symbol, whether to accept it; count the rejections.

    Parameters (keyword only)
        ``known_symbols``
            A container of the accepted symbols (a set, or a dict: its keys), or None for any
            symbol. It is looked up at each check, not copied: a symbol added to it later is
            known from then on; the attribute of the same name may also be reassigned.
        ``max_back_ns``
            How far (ns) a time may go back from the newest time accepted for the same symbol
            and kind; default :data:`DEFAULT_MAX_BACK_NS` (0: never backwards).
        ``max_future_ns``
            How far (ns) a time may be ahead of ``clock()``; default
            :data:`DEFAULT_MAX_FUTURE_NS` (60 s). None: no bound (a simulation, whose data has
            its own clock).
        ``clock``
            A callable returning the current time in ns since the epoch; default
            :func:`time.time_ns`. Injectable for tests.

    :meth:`check` returns the reason of a rejection or None. Only an accepted record updates
    the newest time of its symbol: a rejected one leaves the guard exactly as it was.
    """

    __slots__ = (
        "known_symbols", "max_back_ns", "max_future_ns", "clock", "accepted", "last_detail",
        "_newest", "_counts", "_rejected",
    )  # fmt: skip

    def __init__(
        self,
        *,
        known_symbols: Container[str] | None = None,
        max_back_ns: int = DEFAULT_MAX_BACK_NS,
        max_future_ns: int | None = DEFAULT_MAX_FUTURE_NS,
        clock: Callable[[], int] = _time.time_ns,
    ) -> None:
        if isinstance(known_symbols, str | bytes) or not (
            known_symbols is None or isinstance(known_symbols, Container)
        ):
            raise TypeError(
                f"known_symbols: expected a set of symbols or None, got {known_symbols!r:.80}"
            )
        if _int_time(max_back_ns) is None or max_back_ns < 0:
            raise ValueError(f"max_back_ns: expected an int >= 0, got {max_back_ns!r}")
        if max_future_ns is not None and (_int_time(max_future_ns) is None or max_future_ns < 0):
            raise ValueError(f"max_future_ns: expected an int >= 0 or None, got {max_future_ns!r}")
        if not callable(clock):
            raise TypeError(f"clock: expected a callable returning ns, got {clock!r:.80}")
        self.known_symbols = known_symbols
        self.max_back_ns = int(max_back_ns)
        self.max_future_ns = None if max_future_ns is None else int(max_future_ns)
        self.clock = clock
        self.accepted = 0
        #: Why the last rejected record was rejected, in words (for a log line), or None.
        self.last_detail: str | None = None
        self._newest: dict[str, dict[str, int]] = {"tick": {}, "bar": {}}
        self._counts: dict[str, int] = {}
        self._rejected = 0

    # -- results -------------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        """reason -> number of records rejected for it (only reasons that occurred)."""
        return dict(self._counts)

    @property
    def rejected(self) -> int:
        """Total number of rejected records."""
        return self._rejected

    def newest(self, kind: str, symbol: str) -> int | None:
        """The newest accepted time (ns) of ``symbol``'s ``kind`` records, or None."""
        return self._newest.get(kind, {}).get(symbol)

    def record(self, reason: str, detail: str | None = None) -> str:
        """Count a rejection the caller decided itself (for instance a kind the symbol's feed
        does not carry). The state is unchanged. Returns ``reason``."""
        self._counts[reason] = self._counts.get(reason, 0) + 1
        self._rejected += 1
        self.last_detail = detail if detail is not None else reason
        return reason

    # -- the decision --------------------------------------------------------------------------
    def check(self, kind: str, symbol: Any, payload: Any) -> str | None:
        """Accept (None) or reject (a reason code, see :data:`REASONS`) one record.

        ``kind`` is ``'tick'`` (``payload`` = ``(time, bid, ask[, bid_volume, ask_volume])``,
        e.g. a :class:`~osmarkets.data.types.Tick`) or ``'bar'`` (``payload`` = ``(time, open,
        high, low, close[, volume, bid_open ... ask_close])``, e.g. a
        :class:`~osmarkets.data.types.Bar`). Times are int ns since the epoch, UTC.
        """
        problem = self._problem(kind, symbol, payload)
        if problem is not None:
            return self.record(*problem)
        self.accepted += 1
        return None

    def _problem(self, kind: str, symbol: Any, payload: Any) -> tuple[str, str] | None:
        if kind not in _KINDS:
            return KIND, f"kind {kind!r:.40} is neither 'tick' nor 'bar'"
        if not isinstance(symbol, str) or not symbol:
            return SYMBOL, f"symbol {symbol!r:.40} is not a non-empty str"
        known = self.known_symbols
        if known is not None and symbol not in known:
            return UNKNOWN_SYMBOL, f"symbol {symbol!r:.40} is not known"
        if not isinstance(payload, tuple):  # a Tick or a Bar is a tuple: the common path
            if isinstance(payload, str | bytes | Mapping | Set):
                return SHAPE, f"payload of type {type(payload).__name__} is not a sequence"
            try:
                payload = tuple(payload)  # a list, a numpy record or array
            except TypeError:
                return SHAPE, f"payload of type {type(payload).__name__} is not a sequence"
        n = len(payload)
        is_tick = kind == "tick"
        if not (3 <= n <= 5 if is_tick else 5 <= n <= 14):
            want = "3 to 5" if is_tick else "5 to 14"
            return SHAPE, f"{kind} with {n} fields (expected {want})"
        t = _int_time(payload[0])
        if t is None:
            return TIME_TYPE, f"time {payload[0]!r:.40} is not an int"
        if not TIME_MIN_NS <= t <= TIME_MAX_NS:
            return TIME_RANGE, f"time {t} is outside 1970 ... 2262 (int64 ns)"
        problem = self._tick_problem(payload) if is_tick else self._bar_problem(payload)
        if problem is not None:
            return problem
        if self.max_future_ns is not None:
            now = self.clock()
            if t > now + self.max_future_ns:
                return FUTURE, (
                    f"time {_show_time(t)} is {(t - now) / 1e9:.3g} s ahead of the clock "
                    f"({_show_time(now)}; at most {self.max_future_ns / 1e9:g} s allowed)"
                )
        newest_of = self._newest[kind]
        newest = newest_of.get(symbol)
        if newest is not None:
            floor = newest - self.max_back_ns
            if t < floor or (not is_tick and t == floor):
                reason = REPEAT if t == newest else BACK
                return reason, (
                    f"time {_show_time(t)} {'repeats' if reason == REPEAT else 'is older than'}"
                    f" the newest accepted {kind} time {_show_time(newest)}"
                )
            if t > newest:
                newest_of[symbol] = t
        else:
            newest_of[symbol] = t
        return None

    @staticmethod
    def _tick_problem(payload: tuple) -> tuple[str, str] | None:
        bid = _number(payload[1])
        ask = _number(payload[2])
        if bid is None or not 0.0 < bid < _INF:
            return PRICE, f"bid {payload[1]!r:.40} is not a finite positive number"
        if ask is None or not 0.0 < ask < _INF:
            return PRICE, f"ask {payload[2]!r:.40} is not a finite positive number"
        for name, value in zip(("bid_volume", "ask_volume"), payload[3:], strict=False):
            volume = _number(value)
            # NaN: unknown volume, allowed for ticks (as validate_ticks does)
            if volume is None or volume < 0.0 or volume == _INF:
                return VOLUME, f"{name} {value!r:.40} is not a number >= 0 (or NaN)"
        if bid > ask:
            return CROSSED, f"bid {bid!r} is above ask {ask!r}"
        return None

    @staticmethod
    def _bar_problem(payload: tuple) -> tuple[str, str] | None:
        fields = ("open", "high", "low", "close")
        values: list[float] = []
        for name, raw in zip(fields, payload[1:5], strict=True):
            value = _number(raw)
            if value is None or not 0.0 < value < _INF:
                return PRICE, f"{name} {raw!r:.40} is not a finite positive number"
            values.append(value)
        if len(payload) > 5:
            volume = _number(payload[5])
            if volume is None or not 0.0 <= volume < _INF:
                return VOLUME, f"volume {payload[5]!r:.40} is not a finite number >= 0"
        sides_raw = payload[6:14]
        sides: list[float] = []
        for raw in sides_raw:
            value = _number(raw)
            if value is None:
                return PRICE, f"bid/ask field {raw!r:.40} is not a number"
            sides.append(value)
        quoted = any(value == value for value in sides)  # any side field not NaN
        groups = [("", values)]
        if quoted:
            if len(sides) < 8 or not all(0.0 < value < _INF for value in sides):
                return PRICE, (
                    "bid/ask fields are neither all NaN (no quotes) nor all finite positive "
                    f"prices: {tuple(sides_raw)!r:.120}"
                )
            groups += [("bid_", sides[:4]), ("ask_", sides[4:])]
        for prefix, (o, h, lo, c) in groups:
            if h < lo or not lo <= o <= h or not lo <= c <= h:
                return OHLC, (
                    f"{prefix}open/high/low/close {o!r}/{h!r}/{lo!r}/{c!r}: high below low, or "
                    "open or close outside [low, high]"
                )
        if quoted:
            # open and close are one instant: bid <= ask (highs and lows may come from
            # different instants, so they are not compared, as in validate_bars)
            if sides[0] > sides[4]:
                return CROSSED, f"bid_open {sides[0]!r} is above ask_open {sides[4]!r}"
            if sides[3] > sides[7]:
                return CROSSED, f"bid_close {sides[3]!r} is above ask_close {sides[7]!r}"
        return None
