"""Streaming aggregation: ticks to bars and bars to longer bars, one record at a time.

These are the live counterparts of :func:`osmarkets.data.resample.ticks_to_bars` and
:func:`osmarkets.data.resample.resample` and give exactly the same bars on the same input.

A bar is emitted once, when the first record of a *later* period arrives (or on
:meth:`TickAggregator.flush` / :meth:`TickAggregator.close_until`). A record that jumps several
periods emits only the one non-empty bar: empty periods produce no bar. The period bounds are
computed once per period with :func:`~osmarkets.data.timeframes.period_bounds`; every other
record costs a few float and integer comparisons on local variables, which keeps the tick path
well above 500k ticks/s in pure Python.

Bad records (NaN or non-positive prices, bid above ask, time going backwards) raise a
:class:`~osmarkets.data.validate.DataError` naming the field, or, with ``lenient=True`` for live
feeds, are dropped and counted in :attr:`dropped` (the reason of the last one in
:attr:`last_error`, for the caller to log).
"""

from __future__ import annotations

from typing import Any

from .timeframes import Alignment, Timeframe, period_bounds
from .types import Bar, to_timestamp
from .validate import DataError

_INF = float("inf")
_NAN = float("nan")
_BEFORE_ALL = -(2**63)
_DEFAULT_ALIGNMENT = Alignment()


class _Streaming:
    """What both aggregators share: time frame, lenient mode and the drop counter."""

    __slots__ = (
        "timeframe", "alignment", "lenient", "dropped", "last_error", "_last", "_start", "_end",
    )  # fmt: skip

    def __init__(self, timeframe: Any, alignment: Alignment, lenient: bool) -> None:
        self.timeframe = Timeframe.parse(timeframe)
        self.alignment = alignment.checked()
        self.lenient = bool(lenient)
        self.dropped = 0
        self.last_error: str | None = None
        self._last = _BEFORE_ALL  # time of the last accepted record (or of a closed period end)
        self._start = _BEFORE_ALL  # current period; _end == _BEFORE_ALL: no bar forming
        self._end = _BEFORE_ALL

    def _reject(self, field: str, message: str) -> list[Bar]:
        if not self.lenient:
            raise DataError(message, field)
        self.dropped += 1
        self.last_error = message
        return []

    def _time_error(self, kind: str, time: Any) -> list[Bar]:
        return self._reject(
            "time",
            f"{kind}: time {_show(time)} goes backwards (last accepted or closed: "
            f"{_show(self._last)})",
        )

    def _bounds(self, time: int) -> tuple[int, int]:
        return period_bounds(time, self.timeframe, self.alignment)

    def _bar(self) -> Bar:
        raise NotImplementedError

    @property
    def forming(self) -> Bar | None:
        """The bar of the current period so far (not yet complete), or None."""
        return self._bar() if self._end != _BEFORE_ALL else None

    def flush(self) -> Bar | None:
        """Close the forming bar now (end of data) and return it.

        Later records of the flushed period are refused as going backwards, so no bar is ever
        emitted twice.
        """
        bar = self.forming
        if bar is not None:
            self._last = max(self._last, self._end)
            self._end = _BEFORE_ALL
        return bar

    def close_until(self, time_ns: int) -> list[Bar]:
        """Emit the forming bar if its period has ended by ``time_ns`` (a clock, for live
        feeds where the next record may come late)."""
        if self._end != _BEFORE_ALL and time_ns >= self._end:
            bar = self.flush()
            return [bar] if bar is not None else []
        return []


def _show(time: Any) -> str:
    try:
        return to_timestamp(int(time)).isoformat()
    except (TypeError, ValueError, OverflowError):
        return repr(time)


class TickAggregator(_Streaming):
    """Build bars of ``timeframe`` from a stream of ticks.

    ``update(tick)`` takes a :class:`~osmarkets.data.types.Tick` (or any ``(time, bid, ask,
    ...)`` sequence with ``time`` in int ns UTC) and returns the bars it completed: an empty
    list, or one bar. Bars hold mid OHLC (``(bid + ask) / 2``), bid and ask OHLC, and the tick
    count as ``volume``. For trade ticks pass bid = ask = price.
    """

    __slots__ = (
        "_o", "_h", "_l", "_c", "_bo", "_bh", "_bl", "_bc", "_ao", "_ah", "_al", "_ac", "_n",
    )  # fmt: skip

    def __init__(
        self, timeframe: Any, alignment: Alignment = _DEFAULT_ALIGNMENT, lenient: bool = False
    ) -> None:
        super().__init__(timeframe, alignment, lenient)
        self._o = self._h = self._l = self._c = 0.0
        self._bo = self._bh = self._bl = self._bc = 0.0
        self._ao = self._ah = self._al = self._ac = 0.0
        self._n = 0

    def update(self, tick: Any) -> list[Bar]:
        """Add one tick; return the bars it completed (each bar is returned exactly once)."""
        time = tick[0]
        bid = tick[1]
        ask = tick[2]
        # "not (0 < bid <= ask < inf)" also catches NaN, which fails every comparison.
        if time >= self._last and 0.0 < bid <= ask < _INF:
            self._last = time
            if time < self._end:
                mid = (bid + ask) * 0.5
                if mid > self._h:
                    self._h = mid
                elif mid < self._l:
                    self._l = mid
                if bid > self._bh:
                    self._bh = bid
                elif bid < self._bl:
                    self._bl = bid
                if ask > self._ah:
                    self._ah = ask
                elif ask < self._al:
                    self._al = ask
                self._c = mid
                self._bc = bid
                self._ac = ask
                self._n += 1
                return []
            return self._new_period(time, bid, ask)
        return self._bad(tick)

    def _new_period(self, time: int, bid: float, ask: float) -> list[Bar]:
        done = [self._bar()] if self._end != _BEFORE_ALL else []
        self._start, self._end = self._bounds(time)
        mid = (bid + ask) * 0.5
        self._o = self._h = self._l = self._c = mid
        self._bo = self._bh = self._bl = self._bc = bid
        self._ao = self._ah = self._al = self._ac = ask
        self._n = 1
        return done

    def _bad(self, tick: Any) -> list[Bar]:
        time, bid, ask = tick[0], tick[1], tick[2]
        for name, value in (("bid", bid), ("ask", ask)):
            if not 0.0 < value < _INF:
                what = (
                    "is NaN" if value != value else f"is not a positive finite price ({value!r})"
                )
                return self._reject(name, f"tick at {_show(time)}: {name} {what}")
        if bid > ask:
            return self._reject("bid", f"tick at {_show(time)}: bid {bid!r} is above ask {ask!r}")
        return self._time_error("tick", time)

    def _bar(self) -> Bar:
        return Bar(
            self._start, self._o, self._h, self._l, self._c, float(self._n),
            self._bo, self._bh, self._bl, self._bc, self._ao, self._ah, self._al, self._ac,
        )  # fmt: skip


class BarResampler(_Streaming):
    """Resample a stream of bars to a longer ``timeframe`` (M1 -> M5, H1 -> D, ...).

    ``update(bar)`` takes a :class:`~osmarkets.data.types.Bar` (or a tuple in ``BAR_FIELDS``
    order; plain OHLCV tuples get NaN sides) stamped with its open time, and returns the bars it
    completed. Output: open of the first bar, max of highs, min of lows, close of the last,
    volume summed; bid and ask OHLC the same way when the input has quotes. Whether the stream
    has quotes is fixed by its first bar.
    """

    __slots__ = ("_acc", "_quoted", "_prev")

    def __init__(
        self, timeframe: Any, alignment: Alignment = _DEFAULT_ALIGNMENT, lenient: bool = False
    ) -> None:
        super().__init__(timeframe, alignment, lenient)
        self._acc: list[float] = []
        self._quoted: bool | None = None
        self._prev = _BEFORE_ALL  # time of the last accepted bar

    def update(self, bar: Any) -> list[Bar]:
        """Add one bar; return the longer bars it completed (each exactly once)."""
        if len(bar) != 14:
            bar = Bar(*bar)
        error = self._check(bar)
        if error is not None:
            return self._reject(*error)
        time = bar[0]
        self._prev = time
        self._last = time + 1  # bars are strictly increasing: the next one must be later
        acc = self._acc
        if time < self._end:
            o, h, lo, c, v, bo, bh, bl, bc, ao, ah, al, ac = bar[1:]
            if h > acc[1]:
                acc[1] = h
            if lo < acc[2]:
                acc[2] = lo
            acc[3] = c
            acc[4] += v
            if self._quoted:
                if bh > acc[6]:
                    acc[6] = bh
                if bl < acc[7]:
                    acc[7] = bl
                acc[8] = bc
                if ah > acc[10]:
                    acc[10] = ah
                if al < acc[11]:
                    acc[11] = al
                acc[12] = ac
            return []
        done = [self._bar()] if self._end != _BEFORE_ALL else []
        self._start, self._end = self._bounds(time)
        self._acc = [float(x) for x in bar[1:]]
        return done

    def _check(self, bar: tuple) -> tuple[str, str] | None:
        time, o, h, lo, c, v = bar[:6]
        where = f"bar at {_show(time)}"
        if not time >= self._last:
            if time == self._prev:
                return "time", f"{where}: time repeats the previous bar's time"
            return (
                "time",
                f"{where}: time goes backwards (last accepted or closed: {_show(self._last)})",
            )
        quoted = bar[9] == bar[9]  # bid_close is not NaN
        if self._quoted is None:
            self._quoted = quoted
        groups = [("", bar[1:5])]
        if quoted != self._quoted:
            name = "bid_close"
            want = "missing" if self._quoted else "present in a stream without quotes"
            return name, f"{where}: {name} {want}"
        if quoted:
            groups += [("bid_", bar[6:10]), ("ask_", bar[10:14])]
        for prefix, (o, h, lo, c) in groups:
            for name, value in zip(("open", "high", "low", "close"), (o, h, lo, c), strict=True):
                if not 0.0 < value < _INF:
                    what = "is NaN" if value != value else "is not a positive finite price"
                    return prefix + name, f"{where}: {prefix}{name} {what} ({value!r})"
            if h < lo:
                return prefix + "high", f"{where}: {prefix}high {h!r} is below low {lo!r}"
            if h < o or h < c:
                return prefix + "high", f"{where}: {prefix}high {h!r} is below open or close"
            if lo > o or lo > c:
                return prefix + "low", f"{where}: {prefix}low {lo!r} is above open or close"
        if not v >= 0.0:
            return "volume", f"{where}: volume is negative or NaN ({v!r})"
        if quoted and bar[6] > bar[10]:
            return "bid_open", f"{where}: bid_open {bar[6]!r} is above ask_open {bar[10]!r}"
        if quoted and bar[9] > bar[13]:
            return "bid_close", f"{where}: bid_close {bar[9]!r} is above ask_close {bar[13]!r}"
        return None

    def _bar(self) -> Bar:
        return Bar(self._start, *self._acc)
