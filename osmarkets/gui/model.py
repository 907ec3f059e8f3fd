"""What a chart shows, without Qt or osBrain: candles, the forming bar, indicators, fills, and
the values Brains plot.

:class:`CandleModel` keeps one bar series in chronological numpy storage, folds ticks into the
still-forming bar, keeps indicator lines current in O(1) per completed bar, remembers trade
markers and the values Brains plotted (``Brain.plot``). A bar is drawn at x = its open time in
units of the series' time frame, counted from the first bar the model saw
(:meth:`CandleModel.x_of`): consecutive bars are one unit apart, and a weekend or a quiet hour
without bars leaves an empty stretch of x, a gap on the chart. Every change sets
:attr:`CandleModel.dirty`; the chart redraws at a fixed rate only when it is set, so the
message path (which calls ``add_*`` for every message) never waits for drawing.

:class:`Blotter` turns order events into the orders, positions and P&L panel.

Both are plain Python and numpy, testable in microseconds and usable without a display.
"""

from __future__ import annotations

import bisect
import copy
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..brokers.base import OrderEvent, position_change
from ..data.aggregate import TickAggregator
from ..data.series import frame_to_records
from ..data.timeframes import BarSeriesID
from ..data.types import BAR_DTYPE, Bar, Tick
from ..indicators import EMA, MACD, RSI, SMA, BollingerBands, bollinger, ema, macd, rsi, sma

PRICES = ("mid", "bid", "ask")
PANELS = ("price", "sub")  # where a Brain's plot goes: over the candles, or below them
_OHLC = ("open", "high", "low", "close")
_NAN = math.nan
# Incremental indicators fed this many newest bars after a bulk (vectorised) load: exact for
# windowed ones (SMA, Bollinger), and for the exponential ones (EMA, RSI, MACD) the influence
# of the older bars has decayed far below float precision.
_WARM_TAIL = 3_000
_DAY_NS = 86_400_000_000_000
# x units of the time frames without a fixed length: a day, a week, an average Gregorian month
_NOMINAL_NS = {"Days": _DAY_NS, "Weeks": 7 * _DAY_NS, "Months": 30.436875 * _DAY_NS}


@dataclass(frozen=True)
class IndicatorSpec:
    """An indicator the chart can show: ``kind`` is ``sma``, ``ema``, ``bollinger`` (overlays
    on the price plot), ``rsi`` or ``macd`` (sub-plots); ``params`` its arguments."""

    kind: str
    params: tuple[Any, ...] = ()

    _LINES = {
        "sma": ("value",),
        "ema": ("value",),
        "bollinger": ("mid", "upper", "lower"),
        "rsi": ("value",),
        "macd": ("macd", "signal", "histogram"),
    }

    def __post_init__(self) -> None:
        if self.kind not in self._LINES:
            raise ValueError(
                f"indicator kind: expected one of {', '.join(self._LINES)}, got {self.kind!r}"
            )
        self.make()  # bad parameters fail here, naming the field

    @property
    def name(self) -> str:
        label = {"sma": "SMA", "ema": "EMA", "bollinger": "BB", "rsi": "RSI", "macd": "MACD"}
        return f"{label[self.kind]} {','.join(str(p) for p in self.params)}".strip()

    @property
    def overlay(self) -> bool:
        return self.kind in ("sma", "ema", "bollinger")

    @property
    def lines(self) -> tuple[str, ...]:
        return self._LINES[self.kind]

    def make(self) -> Any:
        """A fresh incremental indicator."""
        cls = {"sma": SMA, "ema": EMA, "bollinger": BollingerBands, "rsi": RSI, "macd": MACD}
        return cls[self.kind](*self.params)

    def vectorised(self, close: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every line over the whole history at once."""
        fn: dict[str, Any] = {
            "sma": sma,
            "ema": ema,
            "bollinger": bollinger,
            "rsi": rsi,
            "macd": macd,
        }
        out = fn[self.kind](close, *self.params)
        if self.kind in ("bollinger", "macd"):
            return tuple(np.asarray(part, dtype=float) for part in out)
        return (np.asarray(out, dtype=float),)


DEFAULT_INDICATORS = (
    IndicatorSpec("sma", (20,)),
    IndicatorSpec("ema", (50,)),
    IndicatorSpec("bollinger", (20, 2.0)),
    IndicatorSpec("rsi", (14,)),
    IndicatorSpec("macd", (12, 26, 9)),
)


def _as_tuple(value: Any) -> tuple[float, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,)


class _Track:
    """One indicator's lines over the completed bars, plus its value on the forming bar."""

    def __init__(self, spec: IndicatorSpec, capacity: int) -> None:
        self.spec = spec
        self.obj = spec.make()
        self.lines = np.full((len(spec.lines), capacity), _NAN)

    def rebuild(self, close: np.ndarray, capacity: int) -> None:
        self.lines = np.full((len(self.spec.lines), capacity), _NAN)
        self.obj = self.spec.make()
        if len(close):
            for row, values in enumerate(self.spec.vectorised(close)):
                self.lines[row, : len(close)] = values
            for x in close[-_WARM_TAIL:]:
                self.obj.update(float(x))

    def append(self, index: int, close: float) -> None:
        self.lines[:, index] = _as_tuple(self.obj.update(close))

    def peek(self, close: float) -> tuple[float, ...]:
        """The value if ``close`` were the next completed bar, leaving the state untouched."""
        return _as_tuple(copy.deepcopy(self.obj).update(close))

    def resize(self, capacity: int, keep: int, drop: int = 0) -> None:
        lines = np.full((len(self.spec.lines), capacity), _NAN)
        lines[:, :keep] = self.lines[:, drop : drop + keep]
        self.lines = lines


class _PlotSeries:
    """One plotted name: its panel and its (time, value) points, oldest first, at most
    ``limit`` of them."""

    def __init__(
        self, panel: str, times: np.ndarray | None = None, values: Any = None, capacity: int = 64
    ) -> None:
        self.panel = panel
        self.times = np.zeros(capacity, dtype=np.int64) if times is None else times
        self.values = np.full(capacity, _NAN) if values is None else values
        self.n = 0 if times is None else len(times)

    def put(self, time: int, value: float, limit: int) -> None:
        n = self.n
        if n and time <= self.times[n - 1]:
            i = int(np.searchsorted(self.times[:n], time))
            if self.times[i] == time:  # plotted again for the same bar: the last one wins
                self.values[i] = value
                return
            self.times = np.insert(self.times[:n], i, time)  # an older bar: rare
            self.values = np.insert(self.values[:n], i, value)
            self.n = n + 1
            if self.n > limit:
                self.drop(self.n - limit)
            return
        if n >= limit:
            self.drop(n - limit + max(1, limit // 10))  # a chunk at a time: amortised O(1)
            n = self.n
        if n == len(self.times):
            capacity = min(max(2 * n, 64), limit)
            self.times = np.concatenate([self.times[:n], np.zeros(capacity - n, np.int64)])
            self.values = np.concatenate([self.values[:n], np.full(capacity - n, _NAN)])
        self.times[n] = time
        self.values[n] = value
        self.n = n + 1

    def drop(self, count: int) -> None:
        keep = self.n - count
        self.times[:keep] = self.times[count : self.n]
        self.values[:keep] = self.values[count : self.n]
        self.n = keep


def _plot_name_panel(name: Any, panel: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"plot name: expected a non-empty string, got {name!r}")
    if not isinstance(panel, str) or panel not in PANELS:
        raise ValueError(f"plot panel: expected 'price' or 'sub', got {panel!r}")


def _plot_time(time: Any) -> int:
    if (
        isinstance(time, bool)
        or not isinstance(time, numbers.Real)
        or not math.isfinite(float(time))
    ):
        raise ValueError(f"plot time: expected a finite time in ns since the epoch, got {time!r}")
    if isinstance(time, numbers.Integral):
        return int(time)  # exactly: a float would round ns times
    return int(float(time))


def _plot_value(value: Any) -> float:
    if value is None:
        return _NAN
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"plot value: expected a number (NaN for no value), got {value!r}")
    out = float(value)
    if math.isinf(out):
        raise ValueError(f"plot value: expected a finite number or NaN, got {value!r}")
    return out


class Window(NamedTuple):
    """What the chart draws for display indices ``[start, start + len(open))``."""

    start: int
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    lines: dict[str, np.ndarray]  # "<indicator name>:<line>" -> values
    x: np.ndarray  # where each bar is drawn (:meth:`CandleModel.x_of` its time)


class Markers(NamedTuple):
    x: np.ndarray  # x of the bar holding the fill (:meth:`CandleModel.x_of`)
    price: np.ndarray
    side: np.ndarray  # +1 buy, -1 sell
    size: np.ndarray


class CandleModel:
    """One bar series for display: completed bars, the forming bar, indicators, fills.

    ``price`` is ``'mid'``, ``'bid'`` or ``'ask'`` (the side the candles and indicators use;
    bars without quotes always show their plain OHLC). ``max_bars`` bounds memory: the oldest
    bars are dropped beyond it (and the oldest values of each plotted name). Display index
    ``i`` is the ``i``-th bar, oldest first; the forming bar, when there is one, has index
    :attr:`completed`. The bar of index ``i`` is drawn at x = :meth:`x_of` its time: the time
    since :attr:`origin` (the first bar seen) in units of :attr:`x_unit` (the time frame's
    length; a nominal day, week or average month for the longer ones), so missing bars leave
    gaps in x.
    """

    def __init__(
        self,
        bsid: Any,
        *,
        price: str = "mid",
        indicators: Sequence[IndicatorSpec] = DEFAULT_INDICATORS,
        max_bars: int = 500_000,
        capacity: int = 1_024,
    ) -> None:
        self.bsid = BarSeriesID.parse(bsid)
        if price not in PRICES:
            raise ValueError(f"price: expected one of {', '.join(PRICES)}, got {price!r}")
        if isinstance(max_bars, bool) or not isinstance(max_bars, int) or max_bars < 2:
            raise ValueError(f"max_bars: expected an integer >= 2, got {max_bars!r}")
        self.price = price
        self.max_bars = max_bars
        self._bars = np.zeros(max(2, min(capacity, max_bars)), dtype=BAR_DTYPE)
        self._n = 0
        self.seq = 0  # sequence number of the newest completed bar (the Router's)
        self.gaps = 0
        self.ticks = 0
        self.dropped_ticks = 0
        self._agg = TickAggregator(self.bsid.timeframe, lenient=True)
        self._forming: Bar | None = None
        self._peek: dict[str, tuple[float, ...]] | None = None
        self.specs = tuple(indicators)
        self._tracks = {spec.name: _Track(spec, len(self._bars)) for spec in self.specs}
        self._fills: list[tuple[int, float, int, float]] = []
        self._plots: dict[str, _PlotSeries] = {}
        tf = self.bsid.timeframe
        #: nanoseconds per unit of x
        self.x_unit = float(tf.nanoseconds if tf.is_intraday else tf.size * _NOMINAL_NS[tf.unit])
        #: the first bar's opening (ns since the epoch) is x = 0; set once (None before any bar)
        self.origin: int | None = None
        self.dirty = True
        self.version = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def completed(self) -> int:
        """Number of completed bars held."""
        return self._n

    @property
    def forming(self) -> Bar | None:
        """The bar of the current period built from ticks, if newer than the last completed."""
        bar = self._forming
        if bar is None or (self._n and bar.time <= self._bars["time"][self._n - 1]):
            return None
        return bar

    def __len__(self) -> int:
        """Candles on display: completed bars plus the forming one."""
        return self._n + (self.forming is not None)

    def bars(self) -> np.ndarray:
        """A copy of the completed bars (``BAR_DTYPE``, oldest first)."""
        return self._bars[: self._n].copy()

    def _touch(self) -> None:
        self.dirty = True
        self.version += 1
        self._peek = None

    # -- input -------------------------------------------------------------------------------
    def load(self, records: Any, seq: int = 0) -> None:
        """Replace everything older than the first of ``records`` (a ``BAR_DTYPE`` array or a
        bars DataFrame) and append them: the history a subscription starts with, or the
        Router's answer after a gap. ``seq`` is the sequence number of the newest one."""
        if isinstance(records, pd.DataFrame):
            records = frame_to_records(records)
        records = np.asarray(records)
        if records.dtype != BAR_DTYPE:
            raise ValueError(f"records: expected an array of BAR_DTYPE, got dtype {records.dtype}")
        if len(records) > 1 and np.any(np.diff(records["time"]) <= 0):
            row = int(np.argmax(np.diff(records["time"]) <= 0)) + 1
            raise ValueError(f"records: time goes backwards or repeats at row {row}")
        if len(records):
            self._set_origin(int(records["time"][0]))
            keep = int(np.searchsorted(self._bars["time"][: self._n], records["time"][0]))
            merged = np.concatenate([self._bars[:keep], records])[-self.max_bars :]
        else:
            merged = self._bars[: self._n].copy()
        capacity = max(len(self._bars), _grow(len(merged)))
        self._bars = np.zeros(min(capacity, max(self.max_bars, 2)), dtype=BAR_DTYPE)
        self._n = len(merged)
        self._bars[: self._n] = merged
        self.seq = max(int(seq), 0)
        self._rebuild_indicators()
        self._touch()

    def add_bar(self, bar: Any, seq: int | None = None) -> bool:
        """Append a completed bar (from the Router). Returns False when ``seq`` shows that bars
        were lost in between: the caller should ask the Router for history and :meth:`load`
        it. Bars already held (same time or older, or an old ``seq``) are ignored."""
        bar = Bar(*bar)
        if seq is not None:
            if self.seq and seq <= self.seq:
                return True
            if self.seq and seq > self.seq + 1:
                self.gaps += 1
                self.seq = int(seq)
                self._append(bar)
                return False
            self.seq = int(seq)
        self._append(bar)
        return True

    def _append(self, bar: Bar) -> None:
        n = self._n
        if n and bar.time <= self._bars["time"][n - 1]:
            return
        self._set_origin(int(bar.time))
        if n == len(self._bars):
            if n >= self.max_bars:
                self._shift(max(1, n // 10))
            else:
                self._resize(min(_grow(n + 1), self.max_bars))
            n = self._n
        self._bars[n] = tuple(bar)
        self._n = n + 1
        close = float(self._price_col("close")[n])
        for track in self._tracks.values():
            track.append(n, close)
        self._touch()

    def add_tick(self, tick: Any) -> None:
        """Fold a quote into the forming bar."""
        self.ticks += 1
        before = self._agg.dropped
        self._agg.update(Tick(*tick))
        if self._agg.dropped != before:
            self.dropped_ticks += 1
            return
        self._forming = self._agg.forming
        if self._forming is not None:
            self._set_origin(int(self._forming.time))
        self._touch()

    def add_fill(self, event: OrderEvent) -> None:
        """Remember a fill of this series' symbol as a trade marker (other events ignored)."""
        if event.kind != "filled" or event.symbol != self.bsid.symbol:
            return
        side = 1 if event.side == "buy" else -1
        self._fills.append((int(event.time), float(event.price), side, float(event.size)))
        self._touch()

    def add_plot(self, name: str, panel: str, time: int, value: float) -> None:
        """One value a Brain plotted (``Brain.plot``) for the bar opening at ``time`` (ns since
        the epoch). ``name`` identifies the line (``'<brain>:<name>'``), ``panel`` is
        ``'price'`` (over the candles, same scale) or ``'sub'`` (a panel below them). A later
        value for the same name and time replaces the earlier one; NaN (or None) is no value
        (a gap in the line). At most ``max_bars`` values are kept per name, the oldest dropped."""
        _plot_name_panel(name, panel)
        when = _plot_time(time)
        number = _plot_value(value)
        series = self._plots.get(name)
        if series is None:
            series = self._plots[name] = _PlotSeries(panel, capacity=min(64, self.max_bars))
        series.panel = panel
        series.put(when, number, self.max_bars)
        self._touch()

    def load_plots(self, name: str, panel: str, times: Any, values: Any) -> None:
        """The history of one plotted name (replaces what is held for it): ``values[i]`` was
        plotted for the bar opening at ``times[i]``. For a time given twice the last value
        wins; only the newest ``max_bars`` are kept."""
        _plot_name_panel(name, panel)
        try:
            t = np.asarray(times, dtype=float).ravel()
            v = np.asarray([_NAN if x is None else x for x in np.ravel(values)], dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"plot {name!r}: times and values must be numbers ({exc})") from None
        if len(t) != len(v):
            raise ValueError(
                f"plot {name!r}: {len(t)} times but {len(v)} values; expected one value a time"
            )
        if not np.all(np.isfinite(t)):
            row = int(np.argmin(np.isfinite(t)))
            raise ValueError(f"plot time: expected finite times, got {t[row]!r} at row {row}")
        if np.any(np.isinf(v)):
            row = int(np.argmax(np.isinf(v)))
            raise ValueError(
                f"plot value: expected finite numbers or NaN, got {v[row]} at row {row}"
            )
        exact = np.asarray(times).ravel()
        t_ns = exact.astype(np.int64) if exact.dtype.kind in "iu" else t.astype(np.int64)
        order = np.argsort(t_ns, kind="stable")
        t_ns, v = t_ns[order], v[order]
        if len(t_ns) > 1:  # a time given twice: keep its last value
            last = np.r_[t_ns[1:] != t_ns[:-1], True]
            t_ns, v = t_ns[last], v[last]
        t_ns, v = t_ns[-self.max_bars :], v[-self.max_bars :]
        self._plots[name] = _PlotSeries(panel, t_ns.copy(), v.copy())
        self._touch()

    def set_price(self, price: str) -> None:
        if price not in PRICES:
            raise ValueError(f"price: expected one of {', '.join(PRICES)}, got {price!r}")
        self.price = price
        self._rebuild_indicators()
        self._touch()

    # -- x: where bars are drawn ----------------------------------------------------------------
    def _set_origin(self, time: int) -> None:
        if self.origin is None:
            self.origin = int(time)

    def x_of(self, times: Any) -> np.ndarray:
        """Where bars opening at ``times`` (ns) are drawn: ``(time - origin) / x_unit``."""
        times = np.asarray(times, dtype=np.int64)
        if self.origin is None:
            return np.zeros(times.shape)
        return (times - np.int64(self.origin)).astype(float) / self.x_unit

    def time_at(self, x: float) -> float:
        """The time (ns since the epoch) at ``x``: the inverse of :meth:`x_of`."""
        return (self.origin or 0) + float(x) * self.x_unit

    @property
    def last_x(self) -> float | None:
        """x of the newest bar on display (the forming one, if any), or None when empty."""
        n = len(self)
        return None if n == 0 else float(self.x_of(self._display_times(n - 1, n))[0])

    @property
    def first_x(self) -> float | None:
        """x of the oldest bar on display, or None when empty."""
        return None if len(self) == 0 else float(self.x_of(self._display_times(0, 1))[0])

    def _count_before(self, time: float, right: bool = False) -> int:
        """How many display bars open before ``time`` (at or before, if ``right``)."""
        times = self._bars["time"][: self._n]  # a view: bisect reads O(log n) of it, no copy
        count = (bisect.bisect_right if right else bisect.bisect_left)(times, time)
        bar = self.forming
        if (
            bar is not None
            and count == self._n
            and (bar.time <= time if right else bar.time < time)
        ):
            count += 1
        return int(count)

    def index_range(self, x0: float, x1: float) -> tuple[int, int]:
        """Display indices ``[start, stop)`` of the bars whose x is in ``[x0, x1]``."""
        if self.origin is None or not x1 >= x0:
            return 0, 0
        return (
            self._count_before(self.time_at(x0)),
            self._count_before(self.time_at(x1), right=True),
        )

    def index_at(self, x: float) -> int | None:
        """Display index of the bar drawn at ``x`` (within half a unit), None over a gap."""
        n = len(self)
        if not n or self.origin is None or not math.isfinite(x):
            return None
        i = self._count_before(self.time_at(x))
        best = None
        for j in (i - 1, i):
            if 0 <= j < n:
                dx = abs(float(self.x_of(self._display_times(j, j + 1))[0]) - x)
                if dx <= 0.5 and (best is None or dx < best[0]):
                    best = (dx, j)
        return None if best is None else best[1]

    def _display_times(self, start: int, stop: int) -> np.ndarray:
        """Open times of display bars ``[start, stop)`` (already clipped), the forming one
        included."""
        times = self._bars["time"][start : min(stop, self._n)].copy()
        bar = self.forming
        if bar is not None and stop > self._n:
            times = np.append(times, np.int64(bar.time))
        return times

    def _clip(self, start: int, stop: int | None) -> tuple[int, int]:
        total = len(self)
        start = max(0, min(int(start), total))
        stop = total if stop is None else max(start, min(int(stop), total))
        return start, stop

    # -- storage helpers -----------------------------------------------------------------------
    def _resize(self, capacity: int) -> None:
        bars = np.zeros(capacity, dtype=BAR_DTYPE)
        bars[: self._n] = self._bars[: self._n]
        self._bars = bars
        for track in self._tracks.values():
            track.resize(capacity, self._n)

    def _shift(self, drop: int) -> None:
        keep = self._n - drop
        self._bars[:keep] = self._bars[drop : self._n]
        for track in self._tracks.values():
            track.resize(len(self._bars), keep, drop)
        self._n = keep

    def _price_col(self, name: str, bars: np.ndarray | None = None) -> np.ndarray:
        bars = self._bars if bars is None else bars
        if self.price == "mid":
            return bars[name]
        side = bars[f"{self.price}_{name}"]
        return np.where(np.isnan(side), bars[name], side)

    def _forming_price(self, bar: Bar, name: str) -> float:
        value = getattr(bar, name if self.price == "mid" else f"{self.price}_{name}")
        return getattr(bar, name) if math.isnan(value) else float(value)

    def _rebuild_indicators(self) -> None:
        close = np.ascontiguousarray(self._price_col("close")[: self._n], dtype=float)
        for track in self._tracks.values():
            track.rebuild(close, len(self._bars))

    def _forming_values(self) -> dict[str, tuple[float, ...]]:
        if self._peek is None:
            bar = self.forming
            close = self._forming_price(bar, "close") if bar is not None else _NAN
            self._peek = {
                name: track.peek(close) if bar is not None else (_NAN,) * len(track.spec.lines)
                for name, track in self._tracks.items()
            }
        return self._peek

    # -- output --------------------------------------------------------------------------------
    def window(self, start: int, stop: int) -> Window:
        """Candles, volume and indicator lines for display indices ``[start, stop)`` (clipped
        to what exists), the forming bar included."""
        start, stop = self._clip(start, stop)
        end = min(stop, self._n)
        bars = self._bars[start:end]
        cols = {name: self._price_col(name, bars).astype(float) for name in _OHLC}
        volume = bars["volume"].astype(float)
        times = bars["time"].copy()
        lines = {
            f"{name}:{line}": track.lines[row, start:end].copy()
            for name, track in self._tracks.items()
            for row, line in enumerate(track.spec.lines)
        }
        bar = self.forming
        if bar is not None and stop > self._n:
            for name in _OHLC:
                cols[name] = np.append(cols[name], self._forming_price(bar, name))
            volume = np.append(volume, bar.volume)
            times = np.append(times, bar.time)
            for name, values in self._forming_values().items():
                for line, value in zip(self._tracks[name].spec.lines, values, strict=True):
                    lines[f"{name}:{line}"] = np.append(lines[f"{name}:{line}"], value)
        return Window(
            start,
            times,
            cols["open"],
            cols["high"],
            cols["low"],
            cols["close"],
            volume,
            lines,
            self.x_of(times),
        )

    def markers(self, start: int = 0, stop: int | None = None) -> Markers:
        """Fills as (x of the bar holding it, price, side, size), for display bars
        ``[start, stop)``. A fill belongs to the newest bar opening at or before it."""
        start, stop = self._clip(start, stop)
        empty = np.array([], dtype=float)
        if not self._fills or start >= stop:
            return Markers(empty, empty, empty, empty)
        t, price, side, size = (np.array(col) for col in zip(*self._fills, strict=True))
        times = self._display_times(start, stop)
        rel = np.searchsorted(times, t, side="right") - 1
        keep = rel >= 0
        if stop < len(self):  # fills at or after the next bar's open belong to it
            keep &= t < self._display_times(stop, stop + 1)[0]
        x = self.x_of(times[rel[keep]])
        return Markers(x, price[keep], side[keep], size[keep])

    def plot_points(self, start: int, stop: int) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        """Like :meth:`plots`, with the display index of each value's bar instead of its x."""
        start, stop = self._clip(start, stop)
        times = self._display_times(start, stop) if self._plots else np.array([], np.int64)
        return self._plot_points(start, times)

    def _plot_points(
        self, start: int, times: np.ndarray
    ) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        out: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
        for name, series in self._plots.items():
            index = np.array([], dtype=np.int64)
            values = np.array([], dtype=float)
            if len(times):
                held = series.times[: series.n]
                lo = int(np.searchsorted(held, times[0], side="left"))
                hi = int(np.searchsorted(held, times[-1], side="right"))
                t = held[lo:hi]
                pos = np.minimum(np.searchsorted(times, t), len(times) - 1)
                match = times[pos] == t
                index = pos[match] + start
                values = series.values[lo:hi][match].copy()
            out[name] = (series.panel, index, values)
        return out

    def plots(self, start: int, stop: int) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        """What Brains plotted on display bars ``[start, stop)``: name -> (panel, x, values),
        each value at the x of the bar opening at its time (values for bars not held are left
        out). Every name held is present, with empty arrays when none of its values is here."""
        if not self._plots:
            return {}
        start, stop = self._clip(start, stop)
        times = self._display_times(start, stop)
        return {
            name: (panel, self.x_of(times[index - start]), values)
            for name, (panel, index, values) in self._plot_points(start, times).items()
        }

    def readout(self, index: int) -> dict[str, Any] | None:
        """Time, OHLC, volume and every indicator value of bar ``index`` (crosshair label)."""
        if not 0 <= index < len(self):
            return None
        w = self.window(index, index + 1)
        out: dict[str, Any] = {
            "index": index,
            "x": float(w.x[0]),
            "time": pd.Timestamp(int(w.time[0]), unit="ns", tz="UTC"),
            "forming": index >= self._n,
            "open": float(w.open[0]),
            "high": float(w.high[0]),
            "low": float(w.low[0]),
            "close": float(w.close[0]),
            "volume": float(w.volume[0]),
        }
        out.update({name: float(values[0]) for name, values in w.lines.items()})
        return out


def _grow(n: int) -> int:
    return max(1_024, 1 << math.ceil(math.log2(max(n, 1))))


# -- orders, positions, P&L -------------------------------------------------------------------
@dataclass
class Position:
    symbol: str
    units: float = 0.0
    average: float = _NAN  # average entry price of the open units
    realized: float = 0.0


@dataclass
class Blotter:
    """Order events folded into an orders table, netted positions and P&L.

    Positions net per symbol as OANDA's do: a fill against the position realises
    ``(price - average) * units`` on the closed part; the rest opens at the fill price.
    """

    max_orders: int = 1_000
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    fills: int = 0
    commission: float = 0.0
    account: dict[str, Any] = field(default_factory=dict)  # the broker's own view, if known
    dirty: bool = True

    def add_event(self, event: OrderEvent) -> None:
        row = self.orders.setdefault(event.client_id, {"id": event.client_id})
        row.update(
            kind=event.kind,
            symbol=event.symbol,
            side=event.side,
            size=event.size,
            brain=event.brain,
            reason=event.reason,
            time=event.time,
        )
        if event.kind == "filled":
            row["price"] = event.price
            self._fill(event)
        if len(self.orders) > self.max_orders:
            del self.orders[next(iter(self.orders))]
        self.dirty = True

    def _fill(self, event: OrderEvent) -> None:
        self.fills += 1
        self.commission += event.commission
        pos = self.positions.setdefault(event.symbol, Position(event.symbol))
        signed = position_change(event)  # a fee taken in the asset bought is not held
        price = float(event.price)
        if pos.units == 0 or (pos.units > 0) == (signed > 0):
            total = pos.units + signed
            prior = 0.0 if pos.units == 0 else pos.average * pos.units
            pos.average = (prior + price * signed) / total
            pos.units = total
            return
        closed = min(abs(signed), abs(pos.units))
        direction = 1.0 if pos.units > 0 else -1.0
        pos.realized += (price - pos.average) * closed * direction
        pos.units += signed
        if abs(pos.units) < 1e-9:
            pos.units, pos.average = 0.0, _NAN
        elif (pos.units > 0) != (direction > 0):  # reversed: the remainder opens at the fill
            pos.average = price

    def unrealized(self, symbol: str, price: float) -> float:
        pos = self.positions.get(symbol)
        if pos is None or pos.units == 0:
            return 0.0
        return (price - pos.average) * pos.units

    def rows(self, last_prices: dict[str, float] | None = None) -> list[dict[str, Any]]:
        """One row per symbol: units, average, realised, unrealised (at ``last_prices``)."""
        last_prices = last_prices or {}
        out = []
        for symbol, pos in sorted(self.positions.items()):
            price = last_prices.get(symbol, _NAN)
            out.append(
                {
                    "symbol": symbol,
                    "units": pos.units,
                    "average": pos.average,
                    "realized": pos.realized,
                    "unrealized": self.unrealized(symbol, price)
                    if not math.isnan(price)
                    else _NAN,
                }
            )
        return out


def events_from(items: Iterable[Any]) -> list[OrderEvent]:
    """OrderEvents from events or plain tuples (as they may arrive over a socket)."""
    return [item if isinstance(item, OrderEvent) else OrderEvent(*item) for item in items]
