"""What a chart shows, without Qt or osBrain: candles, the forming bar, indicators, fills.

:class:`CandleModel` keeps one bar series in chronological numpy storage (x = bar index, so
weekends and quiet hours leave no holes), folds ticks into the still-forming bar, keeps
indicator lines current in O(1) per completed bar, and remembers trade markers. Every change
sets :attr:`CandleModel.dirty`; the chart redraws at a fixed rate only when it is set, so the
message path (which calls ``add_*`` for every message) never waits for drawing.

:class:`Blotter` turns order events into the orders, positions and P&L panel.

Both are plain Python and numpy, testable in microseconds and usable without a display.
"""

from __future__ import annotations

import copy
import math
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
_OHLC = ("open", "high", "low", "close")
_NAN = math.nan
# Incremental indicators fed this many newest bars after a bulk (vectorised) load: exact for
# windowed ones (SMA, Bollinger), and for the exponential ones (EMA, RSI, MACD) the influence
# of the older bars has decayed far below float precision.
_WARM_TAIL = 3_000


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


class Markers(NamedTuple):
    x: np.ndarray  # display index of the bar holding the fill
    price: np.ndarray
    side: np.ndarray  # +1 buy, -1 sell
    size: np.ndarray


class CandleModel:
    """One bar series for display: completed bars, the forming bar, indicators, fills.

    ``price`` is ``'mid'``, ``'bid'`` or ``'ask'`` (the side the candles and indicators use;
    bars without quotes always show their plain OHLC). ``max_bars`` bounds memory: the oldest
    bars are dropped beyond it. Display index ``i`` is the ``i``-th bar, oldest first; the
    forming bar, when there is one, has index :attr:`completed`.
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
        self._touch()

    def add_fill(self, event: OrderEvent) -> None:
        """Remember a fill of this series' symbol as a trade marker (other events ignored)."""
        if event.kind != "filled" or event.symbol != self.bsid.symbol:
            return
        side = 1 if event.side == "buy" else -1
        self._fills.append((int(event.time), float(event.price), side, float(event.size)))
        self._touch()

    def set_price(self, price: str) -> None:
        if price not in PRICES:
            raise ValueError(f"price: expected one of {', '.join(PRICES)}, got {price!r}")
        self.price = price
        self._rebuild_indicators()
        self._touch()

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
        total = len(self)
        start = max(0, min(int(start), total))
        stop = max(start, min(int(stop), total))
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
            start, times, cols["open"], cols["high"], cols["low"], cols["close"], volume, lines
        )

    def markers(self, start: int = 0, stop: int | None = None) -> Markers:
        """Fills as (display index, price, side, size), for bars in ``[start, stop)``."""
        if not self._fills:
            empty = np.array([], dtype=float)
            return Markers(np.array([], dtype=int), empty, empty, empty)
        t, price, side, size = (np.array(col) for col in zip(*self._fills, strict=True))
        times = self._bars["time"][: self._n]
        bar = self.forming
        if bar is not None:
            times = np.append(times, bar.time)
        x = np.searchsorted(times, t, side="right") - 1
        stop = len(self) if stop is None else stop
        keep = (x >= max(start, 0)) & (x < stop)
        return Markers(x[keep], price[keep], side[keep], size[keep])

    def readout(self, index: int) -> dict[str, Any] | None:
        """Time, OHLC, volume and every indicator value of bar ``index`` (crosshair label)."""
        if not 0 <= index < len(self):
            return None
        w = self.window(index, index + 1)
        out: dict[str, Any] = {
            "index": index,
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
