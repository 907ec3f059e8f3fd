"""The in-process event-driven backtest: the user's Brain class, the simulated broker, no agents.

Why it is fast: the bars are loaded once into chronological structured arrays and a reversed
copy; the :class:`~osmarkets.data.series.BarSeries` handed to ``on_new_bar`` is a sliding,
newest-first view over the reversed copy, so delivering a bar is two integer stores. The broker
only sees the bars of instruments with pending orders or a position with protective orders; the
mark-to-market and the equity curve are computed with numpy at the end from the fills.

Timing (DESIGN.md): a market order sent while handling bar *t* fills at bar *t+1*'s open
(``fill='next_open'``, the default) or at bar *t*'s close (``fill='close'``). Several
instruments are replayed in time order; at each time the broker first runs every instrument's
bar, then the Brain sees them in the order the symbols were given, so an order for one
instrument sent while handling another's bar never fills at a price from the past.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..brain import Brain
from ..brokers.base import Order, OrderEvent
from ..brokers.money import CLOSEOUT_LEVEL
from ..brokers.simulated import Commission, SimulatedBroker
from ..data.calendars import period_ends as calendar_period_ends
from ..data.calendars import sessions
from ..data.conform import conform, given_for, rank
from ..data.io import read_bars
from ..data.series import BarSeries
from ..data.timeframes import (
    DEFAULT_ALIGNMENT,
    Alignment,
    BarSeriesID,
    Timeframe,
    period_bounds,
    period_starts,
)
from ..data.types import BAR_DTYPE, BAR_FIELDS, BAR_PRICE_FIELDS, Bar, to_timestamp
from ..data.validate import index_ns
from ..instruments import load_instruments
from .equity import EquityKeep, Stretch, marked_equity
from .records import RecordLog
from .result import Result

FILL_MODES = ("next_open", "close")
DEFAULT_HISTORY = 1000


class BacktestError(RuntimeError):
    """A Brain handler raised during a backtest; ``time`` is the bar's time (ns, UTC)."""

    def __init__(self, message: str, time: int | None = None) -> None:
        super().__init__(message)
        self.time = time


class ReplaySeries(BarSeries):
    """A :class:`BarSeries` whose bars are all known in advance: a newest-first window over
    preloaded chronological columns that the engine slides by moving ``_head`` and ``_len``.

    Zero copy: each column is a reversed *view* of the data's own array (``array[::-1]``), so
    a backtest holds no second copy of the bars and delivering a bar is two integer stores."""

    __slots__ = ()

    def __init__(self, bsid: Any, capacity: int, columns: Mapping[str, np.ndarray]) -> None:
        self.bsid = BarSeriesID.parse(bsid)
        self.capacity = capacity
        self.replayed = False
        self.backfilled = False
        self._data = None  # type: ignore[assignment]  # no structured buffer: the columns are the storage
        self._columns = {name: _read_only(columns[name][::-1]) for name in BAR_FIELDS}
        self._head = len(columns["time"])
        self._len = 0

    def _bar_at(self, position: int) -> Bar:
        return _bar(list(self._columns.values()), position)

    @property
    def has_quotes(self) -> bool:
        return bool(self._len) and not np.isnan(self._columns["bid_close"][self._head])

    def to_records(self) -> np.ndarray:
        window = slice(self._head, self._head + self._len)
        records = np.empty(self._len, dtype=BAR_DTYPE)
        for name, column in self._columns.items():
            records[name] = column[window][::-1]
        return records

    def append(self, bar: Any) -> None:
        raise TypeError("a backtest's BarSeries is read-only")

    def update_last(self, bar: Any) -> None:
        raise TypeError("a backtest's BarSeries is read-only")

    def extend(self, bars: Any) -> None:
        raise TypeError("a backtest's BarSeries is read-only")


def _read_only(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False  # a Brain writing into its bars would change the user's data
    return view


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The chronological columns of a bars DataFrame in ``BAR_FIELDS`` order, without copying
    what is already int64 ns / float64: views of the frame's own arrays (read-only). A column
    the frame does not have is a zero-memory constant (volume 0, bid/ask NaN)."""
    n = len(frame)
    columns = {"time": index_ns(frame, "bars")}
    for name in BAR_PRICE_FIELDS:
        if name in frame.columns:
            columns[name] = frame[name].to_numpy(dtype=np.float64)
        else:
            columns[name] = np.broadcast_to(np.float64(0.0 if name == "volume" else np.nan), n)
    return columns


def load_bars(data: Any, label: str = "data") -> pd.DataFrame:
    """A bars DataFrame from a DataFrame, a :class:`BarSeries` or a file path (CSV or
    Parquet, read by :func:`osmarkets.data.io.read_bars`)."""
    if isinstance(data, BarSeries):
        return data.to_pandas()
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str | os.PathLike):
        return read_bars(data)
    raise TypeError(f"{label}: expected a DataFrame of bars, a BarSeries or a file path")


class _Feed:
    """One bar series of one instrument, preloaded."""

    __slots__ = ("bsid", "series", "columns", "times", "deliver_after", "row")

    def __init__(self, bsid: BarSeriesID, columns: dict[str, np.ndarray], history: int) -> None:
        self.bsid = bsid
        self.columns = columns  # chronological, BAR_FIELDS order
        self.times = columns["time"]
        #: the columns a bar handed to the broker is made of (the quotes' only if there are)
        self.row = _row_columns(columns)
        self.series = ReplaySeries(bsid, history, columns)
        self.deliver_after: np.ndarray | None = None  # base index after which each bar is due

    def __len__(self) -> int:
        return len(self.times)


class _Instrument:
    __slots__ = ("symbol", "base", "higher", "frame", "close")

    def __init__(self, symbol: str, base: _Feed, higher: list[_Feed], frame: pd.DataFrame):
        self.symbol = symbol
        self.base = base
        self.higher = higher
        self.frame = frame
        self.close = base.columns["close"]


def _bar_ends(times: np.ndarray, tf: Timeframe, alignment: Alignment) -> np.ndarray:
    if alignment.calendar is not None and len(times):  # cut at the session's close
        cal = sessions(alignment.calendar, int(times[0]), int(times[-1]))
        return calendar_period_ends(times, tf, cal)
    if tf.is_intraday:
        return times + tf.nanoseconds
    return np.array([period_bounds(int(t), tf, alignment)[1] for t in times], dtype=np.int64)


def _higher_feed(
    bsid: BarSeriesID, base: _Feed, frame: pd.DataFrame, alignment: Alignment, history: int
) -> _Feed:
    """Resample the base bars to ``bsid`` and work out when each longer bar is complete: right
    after the last base bar of its period when that bar reaches the period's end, otherwise
    right after the first base bar of a later period (what a streaming resampler sees)."""
    times = base.times
    base_tf = base.bsid.timeframe
    starts = period_starts(times, bsid.timeframe, alignment)
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    last = np.r_[first[1:] - 1, len(times) - 1]
    longer, _ = conform(frame, bsid.timeframe, alignment, data_timeframe=base_tf,
                        label=f"data for {bsid.symbol!r}")  # fmt: skip
    bars = frame_columns(longer)
    period_end = _bar_ends(bars["time"], bsid.timeframe, alignment)
    base_end = _bar_ends(times[last], base_tf, alignment)
    after = np.where(base_end >= period_end, last, last + 1)
    keep = after < len(times)  # the last period is still forming at the end of the data
    feed = _Feed(bsid, {name: column[keep] for name, column in bars.items()}, history)
    feed.deliver_after = after[keep]
    return feed


def _instruments(
    data: Any,
    bsids: list[BarSeriesID],
    history: int,
    alignment: Alignment = DEFAULT_ALIGNMENT,
    data_timeframe: Any = None,
) -> list[_Instrument]:
    symbols = list(dict.fromkeys(b.symbol for b in bsids))
    if isinstance(data, Mapping):
        frames = {}
        for symbol in symbols:
            if symbol not in data:
                raise ValueError(f"data: no bars for symbol {symbol!r} (have {list(data)})")
            frames[symbol] = load_bars(data[symbol], f"data[{symbol!r}]")
    else:
        if len(symbols) != 1:
            raise ValueError(
                f"data: one DataFrame given for several symbols {symbols}; pass a mapping "
                "symbol -> DataFrame"
            )
        frames = {symbols[0]: load_bars(data)}
    instruments = []
    for symbol in symbols:
        frame = frames[symbol]
        if not len(frame):
            raise ValueError(f"data for {symbol!r}: no bars")
        own = sorted((b for b in bsids if b.symbol == symbol), key=lambda b: rank(b.timeframe))
        given = given_for(data_timeframe, symbol)
        base_frame, aligned = conform(frame, own[0].timeframe, alignment, data_timeframe=given,
                                      label=f"data for {symbol!r}")  # fmt: skip
        if not len(base_frame):
            raise ValueError(f"data for {symbol!r}: no bars inside {alignment.calendar} "
                             "sessions (regular_hours=True)")  # fmt: skip
        base = _Feed(own[0], frame_columns(base_frame), history)
        higher = [_higher_feed(b, base, base_frame, aligned, history) for b in own[1:]]
        instruments.append(_Instrument(symbol, base, higher, base_frame))
    return instruments


class Fills:
    """The fills of a run, compactly: each one's instrument number, base bar index and place
    in the run's event log (a fill is one of its events)."""

    __slots__ = ("number", "bar", "index", "log")

    def __init__(self, log: RecordLog[OrderEvent]) -> None:
        self.number = array("q")
        self.bar = array("q")
        self.index = array("q")
        self.log = log

    def record(self, number: int, bar: int, events: list[OrderEvent]) -> None:
        """Log ``events`` (the broker's, on bar ``bar`` of instrument ``number``) and note the
        fills among them."""
        start = len(self.log)
        self.log.extend(events)
        for offset, event in enumerate(events):
            if event.kind == "filled":
                self.number.append(number)
                self.bar.append(bar)
                self.index.append(start + offset)

    def __len__(self) -> int:
        return len(self.bar)

    def arrays(
        self, stretches: list[Stretch], start: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """From fill ``start`` on: stretch numbers, bars, signed units and costs (units x
        price x the stretch's multiplier + commission), for :func:`marked_equity`."""
        number = np.array(self.number[start:], dtype=np.int64)
        local = np.array(self.bar[start:], dtype=np.int64)
        at = np.array(self.index[start:], dtype=np.int64)
        if not len(at):
            empty = np.zeros(0)
            return number, local, empty, empty
        size = self.log.take("size", at).astype(float)
        signed = np.where(self.log.take("side", at) == "buy", size, -size)
        multiplier = np.array([stretch.multiplier for stretch in stretches], dtype=float)
        cost = signed * self.log.take("price", at).astype(float) * multiplier[number]
        cost += self.log.take("commission", at).astype(float)
        return number, local, signed, cost


class _Context:
    """The :class:`~osmarkets.brain.BrainContext` the engine binds to the Brain."""

    def __init__(
        self, broker: SimulatedBroker, instruments: list[_Instrument], series: dict
    ) -> None:
        self.broker = broker
        self.instruments = instruments
        self._series = series
        self.queue: list[OrderEvent] = []
        self.orders: RecordLog[Order] = RecordLog(Order)  # every order sent, for Result.orders
        self.events: RecordLog[OrderEvent] = RecordLog(OrderEvent)  # every event, in order
        self.clock: ReplaySeries = instruments[0].base.series  # base series of the bar at hand
        self.tf_ns = {
            inst.symbol: (
                inst.base.bsid.timeframe.nanoseconds if inst.base.bsid.timeframe.is_intraday else 0
            )
            for inst in instruments
        }

    def submit_order(self, brain: Brain, order: Order) -> None:
        broker = self.broker
        for inst in self.instruments:  # margin is checked at the current prices
            length = inst.base.series._len
            if length and (inst.symbol == order.symbol or broker._units.get(inst.symbol)):
                series = inst.base.series
                broker.mark(inst.symbol, float(series._columns["close"][series._head]))
        broker.set_time(order.time)
        self.orders.append(order)
        events = broker.submit(order)
        self.events.extend(events)
        self.queue.extend(events)

    def cancel_order(self, brain: Brain, client_id: str) -> None:
        self.broker.set_time(self.now(brain))
        events = self.broker.cancel(client_id)
        self.events.extend(events)
        self.queue.extend(events)

    def position(self, brain: Brain, symbol: str) -> float:
        return self.broker._units.get(symbol, 0.0)

    def series(self, brain: Brain, bsid: Any) -> BarSeries:
        key = BarSeriesID.parse(bsid)
        try:
            return self._series[key]
        except KeyError:
            raise KeyError(f"{key} is not a series of this backtest") from None

    def now(self, brain: Brain) -> int:
        series = self.clock
        if not series._len:
            return 0
        time = int(series._columns["time"][series._head])
        return time + self.tf_ns[series.bsid.symbol]


def backtest(
    brain_class: type[Brain],
    data: Any,
    bsid: Any,
    *,
    params: Mapping[str, Any] | None = None,
    history: int | None = None,
    cash: float = 100_000.0,
    fill: str = "next_open",
    spread: float | dict[str, float] = 0.0,
    slippage: float = 0.0,
    commission: Commission | None = None,
    margin_rate: float | dict[str, float] = 1.0,
    name: str | None = None,
    data_timeframe: Any = None,
    daily_alignment: int = 17,
    alignment_timezone: str = "America/New_York",
    weekly_alignment: str = "Friday",
    calendar: str | None = None,
    regular_hours: bool = False,
    instruments: Any = None,
    currency: str | None = None,
    rates: Mapping[str, float] | None = None,
    financing: Mapping[str, Any] | None = None,
    closeout: float | None = CLOSEOUT_LEVEL,
    max_fill: float | dict[str, float] | None = None,
    equity_dtype: str = "float64",
    equity_every: Any = None,
    stream: bool | None = None,
    chunk_bars: int | None = None,
) -> Result:
    """Run ``brain_class`` on historical bars in this process and return a :class:`Result`.

    ``data``: a bars DataFrame (DESIGN.md conventions), a CSV path or a BarSeries for the one
    instrument of ``bsid``, or a mapping symbol -> any of those. ``bsid``: one bar-series id or
    a list. Each instrument's data may be of any time frame up to its shortest requested one
    (inferred from the times, or ``data_timeframe``: a code, or a mapping symbol -> code): bars
    at the requested frame are used as they are, longer frames are resampled from them with the
    alignment options or the exchange ``calendar`` (:mod:`osmarkets.data.conform`).
    ``history``: capacity of each series (default 1000). ``params`` override the Brain's class
    attributes. The broker options are those of
    :class:`~osmarkets.brokers.simulated.SimulatedBroker`; ``instruments`` (a TOML/JSON path,
    or :class:`~osmarkets.instruments.Instrument` objects) give multipliers, ticks and lots.
    ``currency`` (``'USD'``) switches on OANDA's money rules (:mod:`osmarkets.brokers.money`):
    P&L and margin converted from each quote currency at the data's conversion pairs or
    ``rates``, margin ``closeout``, daily ``financing``; a symbol that cannot be converted
    raises ``ValueError`` before the run.

    ``stream=True`` reads ``data`` (a file, a directory of ``<symbol>.parquet`` or ``.csv``
    files, or a mapping symbol -> file) chunk by chunk instead of loading it
    (:mod:`osmarkets.backtest.stream`; a directory is streamed by default), ``chunk_bars`` bars
    of each file at a time. ``equity_dtype='float32'`` keeps the per-bar equity in half the
    memory; ``equity_every`` (a time-frame code such as ``'H1'`` or ``'D'``) keeps only its
    last value in each period.

    Raises :class:`BacktestError` (with the bar's time in the message) when a Brain handler
    raises, and ``ValueError`` for bad arguments or data.
    """
    if not (isinstance(brain_class, type) and issubclass(brain_class, Brain)):
        raise TypeError(f"brain_class: expected a Brain subclass, got {brain_class!r}")
    if fill not in FILL_MODES:
        raise ValueError(f"fill: expected one of {', '.join(FILL_MODES)}, got {fill!r}")
    if history is None:
        history = DEFAULT_HISTORY
    if isinstance(history, bool) or not isinstance(history, int) or history <= 0:
        raise ValueError(f"history: expected a positive integer, got {history!r}")
    bsids = parse_bsids(bsid)
    keep = EquityKeep(equity_dtype, equity_every)
    if chunk_bars is not None and (
        isinstance(chunk_bars, bool) or not isinstance(chunk_bars, int) or chunk_bars < 1
    ):
        raise ValueError(f"chunk_bars: expected a positive integer, got {chunk_bars!r}")
    brain = make_brain(brain_class, params, name)
    alignment = Alignment.of(
        daily_alignment=daily_alignment, alignment_timezone=alignment_timezone,
        weekly_alignment=weekly_alignment, calendar=calendar, regular_hours=regular_hours,
    )  # fmt: skip
    from .stream import check_streamable, is_streamed, run_streamed, stream_paths

    if stream is None:
        stream = is_streamed(data)
    if not isinstance(stream, bool):
        raise ValueError(f"stream: expected True, False or None, got {stream!r}")
    if stream:
        check_streamable(bsids, alignment, data_timeframe)
        paths = stream_paths(data, [b.symbol for b in bsids])
    else:
        feeds = _instruments(data, bsids, history, alignment, data_timeframe)
    specs = load_instruments(instruments) if instruments is not None else {}
    broker = SimulatedBroker(
        cash, spread=spread, slippage=slippage, commission=commission, margin_rate=margin_rate,
        instruments=specs, currency=currency, rates=rates, financing=financing,
        closeout=closeout, max_fill=max_fill,
    )  # fmt: skip
    if broker.account is not None:
        broker.account.check(list(dict.fromkeys(b.symbol for b in bsids)))
    if stream:
        brain.name = name or brain.name
        return run_streamed(brain, broker, paths, bsids, history=history,
                            fill_close=fill == "close", cash=float(cash), params=params,
                            keep=keep, alignment=alignment, chunk_bars=chunk_bars)  # fmt: skip
    series = {inst.base.bsid: inst.base.series for inst in feeds}
    series.update({f.bsid: f.series for inst in feeds for f in inst.higher})
    context = _Context(broker, feeds, series)
    brain.bind(context, name)
    fills = Fills(context.events)
    curve: list[float] | None = [] if broker.account is not None else None
    if len(feeds) == 1 and curve is None:
        _run_single(brain, context, feeds[0], fill == "close", fills)
    else:
        _run_multi(brain, context, feeds, fill == "close", fills, curve)
    return _result(brain, broker, feeds, fills, float(cash), params,
                   events=context.events, orders=context.orders, curve=curve, keep=keep,
                   alignment=alignment)  # fmt: skip


def parse_bsids(bsid: Any) -> list[BarSeriesID]:
    """One bar-series id in any accepted form, or a list of them."""
    try:
        return [BarSeriesID.parse(bsid)]
    except (ValueError, TypeError):
        pass
    if isinstance(bsid, str) or not hasattr(bsid, "__iter__"):
        raise ValueError(f"bsid: expected a bar series id like 'EUR_USD:M1', got {bsid!r}")
    bsids = list(dict.fromkeys(BarSeriesID.parse(b) for b in bsid))
    if not bsids:
        raise ValueError("bsid: expected at least one bar series id")
    return bsids


def make_brain(
    brain_class: type[Brain], params: Mapping[str, Any] | None, name: str | None = None
) -> Brain:
    """Instantiate ``brain_class`` with ``params`` overriding its parameters (unknown names
    raise ``ValueError`` listing the known ones)."""
    known = brain_class.parameters()
    brain = brain_class()
    for key, value in (params or {}).items():
        if key not in known:
            raise ValueError(
                f"params: {brain_class.__name__} has no parameter {key!r} "
                f"(known: {', '.join(known) or 'none'})"
            )
        setattr(brain, key, value)
    brain.name = name or brain_class.__name__
    return brain


def _deliver(brain: Brain, events: list[OrderEvent], handler: Any) -> None:
    if handler is not None:
        for event in events:
            handler(event)


def _event_handler(brain: Brain) -> Any:
    if type(brain).on_order_event is Brain.on_order_event:
        return None  # not overridden: skip the calls
    return brain.on_order_event


def _row_columns(columns: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The columns a :class:`Bar` is built from: the bid/ask ones only when the data has quotes
    (a missing column is a zero-stride constant NaN, which Bar's defaults already are)."""
    every = list(columns.values())
    quotes = columns["bid_close"]
    return every if quotes.strides != (0,) or not np.isnan(quotes[:1]).all() else every[:6]


def _bar(columns: list[np.ndarray], index: int) -> Bar:
    """The bar at ``index`` of the chronological columns, as Python numbers."""
    return Bar(*[column.item(index) for column in columns])


def _start(brain: Brain) -> None:
    """``on_start``, whose error is the Brain's, before any bar (no bar time to name)."""
    try:
        brain.on_start()
    except Exception as exc:
        raise BacktestError(
            f"{type(brain).__name__} raised in on_start: {type(exc).__name__}: {exc}"
        ) from exc


def _fail(exc: Exception, brain: Brain, bsid: BarSeriesID, time: int) -> BacktestError:
    stamp = to_timestamp(int(time)).isoformat()
    return BacktestError(
        f"{type(brain).__name__} raised while handling the bar of {stamp} ({bsid}): "
        f"{type(exc).__name__}: {exc}",
        int(time),
    )


def _run_single(
    brain: Brain,
    context: _Context,
    inst: _Instrument,
    fill_close: bool,
    fills: Fills,
) -> None:
    """The hot loop for one instrument: keep it lean (what it costs per bar is measured by
    ``benchmarks/bench_backtest.py`` against a bare loop doing the Brain's own work)."""
    broker = context.broker
    active = broker.active
    symbol = inst.symbol
    row = inst.base.row
    series = inst.base.series
    times = inst.base.times
    n = len(times)
    cap = series.capacity
    on_new_bar = brain.on_new_bar
    on_event = _event_handler(brain)
    queue = context.queue
    higher = [(f.series, _due(f), len(f)) for f in inst.higher]
    cursors = [0] * len(higher)
    current_bsid = inst.base.bsid
    i = 0
    _start(brain)
    try:
        for i in range(n):
            if symbol in active:
                events = broker.on_bar(symbol, _bar(row, i))
                fills.record(0, i, events)
                _deliver(brain, events, on_event)
            series._head = n - 1 - i
            if i < cap:
                series._len = i + 1
            on_new_bar(series)
            if queue:
                _flush(brain, queue, on_event)
            if higher:
                for k, (hseries, after, count) in enumerate(higher):
                    j = cursors[k]
                    while j < count and after[j] == i:
                        hseries._head = count - 1 - j
                        hseries._len = j + 1 if j < hseries.capacity else hseries.capacity
                        current_bsid = hseries.bsid
                        on_new_bar(hseries)
                        if queue:
                            _flush(brain, queue, on_event)
                        j += 1
                    cursors[k] = j
                current_bsid = inst.base.bsid
            if fill_close and symbol in active:
                events = broker.fill_at_close(symbol, _bar(row, i))
                fills.record(0, i, events)
                _deliver(brain, events, on_event)
    except BacktestError:
        raise
    except Exception as exc:
        raise _fail(exc, brain, current_bsid, times[i] if n else 0) from exc
    broker.mark(symbol, float(inst.close[-1]), int(times[-1]))


def _due(feed: _Feed) -> np.ndarray:
    if feed.deliver_after is None:
        raise RuntimeError(f"{feed.bsid}: not a resampled feed")
    return feed.deliver_after


def _flush(brain: Brain, queue: list[OrderEvent], on_event: Any) -> None:
    events = queue[:]
    queue.clear()
    _deliver(brain, events, on_event)


def _run_multi(
    brain: Brain,
    context: _Context,
    instruments: list[_Instrument],
    fill_close: bool,
    fills: Fills,
    curve: list[float] | None = None,
    windows: Iterable[list[tuple[int, int, int]]] | None = None,
) -> None:
    """Several instruments in time order: at each time, the broker runs every instrument's bar
    first, then the Brain sees them in the order the symbols were given. With an account
    currency the broker sees every bar (marks, conversion, closeout, financing) and ``curve``
    gets the equity after each time.

    ``windows``: the bars to replay, window after window, each a list of ``(instrument number,
    first bar, end)`` ranges of the instruments' preloaded bars (a streamed backtest loads the
    next chunk of its files between two windows); every bar at once when None."""
    broker = context.broker
    active = broker.active if broker.account is None else _Everything()
    on_new_bar = brain.on_new_bar
    on_event = _event_handler(brain)
    queue = context.queue
    if windows is None:
        windows = [[(k, 0, len(inst.base)) for k, inst in enumerate(instruments)]]
    cursors = [[0] * len(inst.higher) for inst in instruments]
    current_bsid = instruments[0].base.bsid
    time = 0
    _start(brain)
    try:
        for ranges in _reading(windows):
            all_times, which, local = _merged(instruments, ranges)
            bounds = np.flatnonzero(np.r_[True, all_times[1:] != all_times[:-1], True])
            for g in range(len(bounds) - 1):
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                time = int(all_times[lo])
                group = [(int(which[s]), int(local[s])) for s in range(lo, hi)]
                for k, i in group:
                    inst = instruments[k]
                    if inst.symbol in active:
                        events = broker.on_bar(inst.symbol, _bar(inst.base.row, i))
                        fills.record(k, i, events)
                        _deliver(brain, events, on_event)
                for k, i in group:
                    inst = instruments[k]
                    series = inst.base.series
                    series._head = len(inst.base) - 1 - i
                    series._len = min(i + 1, series.capacity)
                    context.clock = series
                    current_bsid = inst.base.bsid
                    on_new_bar(series)
                    _flush(brain, queue, on_event)
                    for h, feed in enumerate(inst.higher):
                        after = _due(feed)
                        j, count = cursors[k][h], len(feed)
                        while j < count and after[j] == i:
                            feed.series._head = count - 1 - j
                            feed.series._len = min(j + 1, feed.series.capacity)
                            current_bsid = feed.bsid
                            on_new_bar(feed.series)
                            _flush(brain, queue, on_event)
                            j += 1
                        cursors[k][h] = j
                    if fill_close and inst.symbol in active:
                        events = broker.fill_at_close(inst.symbol, _bar(inst.base.row, i))
                        fills.record(k, i, events)
                        _deliver(brain, events, on_event)
                if curve is not None:
                    curve.append(broker.equity)
    except BacktestError:
        raise
    except _SourceFailed as failed:  # the data, not the Brain: raised as it is
        raise failed.error from failed.error.__cause__
    except Exception as exc:
        raise _fail(exc, brain, current_bsid, time) from exc
    for inst in instruments:
        broker.mark(inst.symbol, float(inst.close[-1]), int(inst.base.times[-1]))


class _SourceFailed(Exception):
    """Reading the next window failed: carries the error, to be raised as the data's own."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _reading(windows: Iterable[Any]) -> Iterator[Any]:
    iterator = iter(windows)
    while True:
        try:
            window = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceFailed(exc) from exc
        yield window


def _merged(
    instruments: list[_Instrument], ranges: list[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bars of ``ranges`` in time order (instruments in their order at one time): their
    times, instrument numbers and indexes."""
    all_times = np.concatenate([instruments[k].base.times[a:b] for k, a, b in ranges])
    which = np.concatenate([np.full(b - a, k, dtype=np.int32) for k, a, b in ranges])
    local = np.concatenate([np.arange(a, b, dtype=np.int64) for _, a, b in ranges])
    order = np.lexsort((which, all_times))
    return all_times[order], which[order], local[order]


class _Everything:
    """A set that holds every symbol: the broker sees every bar."""

    def __contains__(self, item: object) -> bool:
        return True


def _result(
    brain: Brain,
    broker: SimulatedBroker,
    instruments: list[_Instrument],
    fills: Fills,
    cash: float,
    params: Mapping[str, Any] | None,
    *,
    events: RecordLog[OrderEvent] | None = None,
    orders: RecordLog[Order] | None = None,
    curve: list[float] | None = None,
    keep: EquityKeep | None = None,
    alignment: Alignment = DEFAULT_ALIGNMENT,
) -> Result:
    """Equity after every bar, vectorised: cash minus the fills' cash flows plus each
    instrument's position marked at its close (carried forward between its bars); or, with an
    account currency, the broker's own equity after each time (``curve``). Built in place in
    one array (plus one for the cash), so its cost is 16 bytes per bar at the peak."""
    if len(instruments) == 1:
        times = instruments[0].base.times
        own = instruments[0].frame.index
    else:
        times = np.unique(np.concatenate([inst.base.times for inst in instruments]))
        own = None
    if isinstance(own, pd.DatetimeIndex) and str(own.dtype) == "datetime64[ns, UTC]":
        index = own.rename("time")  # the data's own index: no copy
    else:
        index = pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC")
    if curve is None:
        equity = _marked_equity(broker, instruments, fills, times, cash)
    else:
        equity = np.asarray(curve, dtype=np.float64)
    equity_series = (keep or EquityKeep()).apply(
        pd.Series(equity, index=index, name="equity", copy=False), alignment
    )
    prices = {inst.symbol: inst.frame for inst in instruments}
    return Result.from_run(
        fills.log,  # every event: the trades are its fills
        equity_series,
        initial_cash=cash,
        prices=prices,
        name=brain.name,
        params=dict(params or {}),
        open_positions=broker.positions,
        multipliers={inst.symbol: broker.multiplier(inst.symbol) for inst in instruments},
        conversions=broker.fill_conversions if broker.account is not None else None,
        events=events,
        orders=orders,
    )


def _marked_equity(
    broker: SimulatedBroker,
    instruments: list[_Instrument],
    fills: Fills,
    times: np.ndarray,
    cash: float,
) -> np.ndarray:
    if not len(fills):  # nothing held at any time: the cash, exactly (prices are finite)
        return np.full(len(times), cash, dtype=np.float64)
    stretches = [
        Stretch(inst.base.times, inst.close, broker.multiplier(inst.symbol))
        for inst in instruments
    ]
    number, local, signed, cost = fills.arrays(stretches)
    return marked_equity(times, stretches, number, local, signed, cost, cash)[0]


__all__ = [
    "BacktestError", "Fills", "ReplaySeries", "backtest", "frame_columns", "load_bars",
    "make_brain", "parse_bsids",
]  # fmt: skip
