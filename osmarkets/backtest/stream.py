"""Streamed backtests: bars read from files chunk by chunk, memory that does not grow with them.

``backtest(MyBrain, "bars/", ["EUR_USD:M1", "USD_JPY:M1"])`` (a directory with one file per
instrument, ``EUR_USD.parquet``...) or ``stream=True`` with a file or a mapping symbol -> file
replays the bars in windows. Each instrument holds one chunk of its file plus the last
``history`` bars before it, as chronological columns its Brain's series is a zero-copy window
over, exactly as in memory; a window replays every bar up to the earliest last time among the
chunks held, merged by time, then the equity of the window is computed and the instruments
whose chunk is used up read their next one. In memory: the chunks, the series' histories, the
broker's state, the record of orders and fills, and the equity (one value per time, 8 bytes,
4 with ``equity_dtype='float32'``, fewer with ``equity_every``).

The fills, the orders and the equity are those of the same backtest in memory, bit for bit
(tested). What streaming leaves out: longer time frames resampled from the bars, exchange
calendars and ``regular_hours``, and ``data_timeframe`` (the files hold the bars of the series
asked for, as they are), and the price frames of :attr:`Result.prices` (plots of a streamed
result show the equity, not the bars).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..brain import Brain
from ..brokers.simulated import SimulatedBroker
from ..data.chunks import STREAMED, bar_chunks, stream_kind
from ..data.conform import rank
from ..data.timeframes import Alignment, BarSeriesID, infer_timeframe
from .engine import (
    Fills,
    ReplaySeries,
    _Context,
    _Feed,
    _Instrument,
    _read_only,
    _row_columns,
    _run_multi,
    frame_columns,
)
from .equity import EquityKeep, KeptEquity, Stretch, marked_equity
from .result import Result

#: Bars held at once over all the instruments of a streamed backtest, by default (about 24 MB
#: of OHLCV): each instrument's chunk is this divided by their number, at least MIN_CHUNK.
WINDOW_BARS = 500_000
MIN_CHUNK = 4_096


def is_streamed(data: Any) -> bool:
    """Whether ``backtest`` streams ``data`` by default: a directory of bar files."""
    return isinstance(data, str | os.PathLike) and Path(data).is_dir()


def stream_paths(data: Any, symbols: list[str]) -> dict[str, Path]:
    """The file of each symbol: ``data`` is a directory (``<symbol>.parquet``, ``.pq``,
    ``.csv`` or ``.csv.gz`` in it), one file (one symbol) or a mapping symbol -> file."""
    if isinstance(data, Mapping):
        paths = {}
        for symbol in symbols:
            if symbol not in data:
                raise ValueError(f"data: no file for symbol {symbol!r} (have {list(data)})")
            paths[symbol] = _file(data[symbol], f"data[{symbol!r}]")
        return paths
    if not isinstance(data, str | os.PathLike):
        raise TypeError(
            "data: streaming reads files: expected a directory, a file path or a mapping "
            "symbol -> file path"
        )
    folder = Path(data)
    if folder.is_dir():
        paths = {}
        names = [p.name for p in folder.iterdir() if p.is_file()]
        for symbol in symbols:
            if "/" in symbol or "\\" in symbol:
                raise ValueError(
                    f"data: {symbol!r} cannot name a file in {folder}: pass a mapping "
                    "symbol -> file"
                )
            found = [folder / name for name in names if _names(name, symbol)]
            if not found:
                have = sorted(name for name in names if stream_kind(name))[:10]
                raise ValueError(
                    f"data: no file for {symbol!r} in {folder} (expected {symbol}.parquet, "
                    f".pq, .csv or .csv.gz; found {', '.join(have) or 'none'})"
                )
            if len(found) > 1:
                listed = ", ".join(sorted(path.name for path in found))
                raise ValueError(f"data: several files for {symbol!r} in {folder}: {listed}")
            paths[symbol] = found[0]
        return paths
    if len(symbols) != 1:
        raise ValueError(
            f"data: one file given for several symbols {symbols}; pass a directory or a "
            "mapping symbol -> file"
        )
    return {symbols[0]: _file(data, "data")}


def _names(name: str, symbol: str) -> bool:
    """Whether file ``name`` is ``symbol``'s: the symbol as it is, then a streamed ending in
    any case (``ES.parquet``, ``ES.PARQUET``)."""
    return name.startswith(symbol) and name[len(symbol) :].lower() in STREAMED


def _file(value: Any, label: str) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{label}: expected a file path to stream, got {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{label}: {path}: no such file")
    if stream_kind(path) is None:
        raise ValueError(f"{label}: {path}: cannot stream it: expected .parquet, .pq, .csv or "
                         ".csv.gz (read other layouts with read_bars, in memory)")  # fmt: skip
    return path


def check_streamable(bsids: list[BarSeriesID], alignment: Alignment, data_timeframe: Any) -> None:
    """Refuse, with what to do instead, what a streamed backtest does not do."""
    symbols = [b.symbol for b in bsids]
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise ValueError(
            f"stream: one bar series per instrument ({repeated[0]!r} has several): longer "
            "frames are not resampled while streaming; load the data in memory for them"
        )
    longer = [str(b) for b in bsids if not b.timeframe.is_intraday]
    if longer:
        raise ValueError(
            f"stream: {longer[0]}: daily and longer bars are stamped to the alignment's days "
            "in memory (conform); stream intraday bars, or load these in memory"
        )
    if alignment.calendar is not None or alignment.regular_hours:
        raise ValueError("stream: calendar= and regular_hours= need the data in memory")
    if data_timeframe is not None:
        raise ValueError(
            "stream: data_timeframe= is not used: streamed files must hold the bars of the "
            "series asked for"
        )


class _Source:
    """One instrument's file: the chunk being replayed, with the history before it."""

    def __init__(
        self, bsid: BarSeriesID, path: Path, chunk_bars: int, history: int, label: str
    ) -> None:
        self.bsid = bsid
        self.path = path
        self.label = label
        self.chunks = bar_chunks(path, chunk_bars=chunk_bars)
        self.history = history
        self.feed: _Feed | None = None
        self.next = 0  # the first bar of the chunk not replayed yet
        self.done = False
        self.last_time: int | None = None  # of the bars read so far
        self.smallest_gap: int | None = None  # between two bars read so far

    def remaining(self) -> int:
        return 0 if self.feed is None else len(self.feed) - self.next

    def refill(self) -> None:
        """Read the next chunk, keeping the bars the series shows before it."""
        frame = next(self.chunks, None)
        if frame is None:
            self.done = True
            self._check_frame(final=True)
            return
        new = frame_columns(frame)
        self._note_gaps(new["time"])
        self._check_frame(final=False)
        if self.feed is None:
            self.feed = _Feed(self.bsid, new, self.history)
            self.next = 0
            return
        feed, series = self.feed, self.feed.series
        keep = series._len
        columns = {name: _joined(column[len(column) - keep :], new[name])
                   for name, column in feed.columns.items()}  # fmt: skip
        feed.columns, feed.times, feed.row = columns, columns["time"], _row_columns(columns)
        series._columns = {name: _read_only(column[::-1]) for name, column in columns.items()}
        series._head = len(feed) - keep  # the newest bar shown is the last one kept
        self.next = keep

    def _note_gaps(self, times: np.ndarray) -> None:
        if self.last_time is not None:
            times = np.r_[self.last_time, times]
        if len(times) > 1:
            gap = int(np.diff(times).min())
            self.smallest_gap = gap if self.smallest_gap is None else min(gap, self.smallest_gap)
        self.last_time = int(times[-1])

    def _check_frame(self, final: bool) -> None:
        """The file's time frame, from the smallest gap between its bars (as in memory): data
        shorter than the series asked for is refused as soon as it shows; longer data once
        the whole file has been read, when the smallest gap is known."""
        if self.smallest_gap is None:
            return  # one bar: taken as asked, as in memory
        want = self.bsid.timeframe
        own = infer_timeframe(np.array([0, self.smallest_gap], dtype=np.int64))
        if rank(own) < rank(want) or (final and own != want):
            raise ValueError(
                f"{self.label} ({self.path.name}) has {own.code} bars: a streamed backtest "
                f"replays the bars as they are; ask for {self.bsid.symbol}:{own.code}"
            )


def _joined(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """``tail`` then ``head``; a column missing from the file stays a zero-memory constant."""
    if tail.strides == (0,) and head.strides == (0,) and _same(tail, head):
        return np.broadcast_to(head[:1] if len(head) else tail[:1], len(tail) + len(head))
    return np.concatenate([tail, head])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if not len(a) or not len(b):
        return True
    x, y = float(a[0]), float(b[0])
    return x == y or (math.isnan(x) and math.isnan(y))


def run_streamed(
    brain: Brain,
    broker: SimulatedBroker,
    paths: dict[str, Path],
    bsids: list[BarSeriesID],
    *,
    history: int,
    fill_close: bool,
    cash: float,
    params: Mapping[str, Any] | None,
    keep: EquityKeep,
    alignment: Alignment,
    chunk_bars: int | None,
) -> Result:
    """The streamed counterpart of the in-memory run of :func:`~osmarkets.backtest.backtest`."""
    if chunk_bars is None:
        chunk_bars = max(MIN_CHUNK, WINDOW_BARS // len(bsids))
    sources = [
        _Source(b, paths[b.symbol], chunk_bars, history, f"data for {b.symbol!r}") for b in bsids
    ]
    for source in sources:
        source.refill()
        if source.feed is None:
            raise ValueError(f"{source.label}: no bars in {source.path}")
    instruments = [_Instrument(s.bsid.symbol, s.feed, [], pd.DataFrame()) for s in sources]  # type: ignore[arg-type]
    series: dict[Any, ReplaySeries] = {inst.base.bsid: inst.base.series for inst in instruments}
    context = _Context(broker, instruments, series)
    brain.bind(context, brain.name)
    fills = Fills(context.events)
    curve: list[float] | None = [] if broker.account is not None else None
    stretches = [Stretch(np.zeros(0, np.int64), np.zeros(0), broker.multiplier(s.bsid.symbol))
                 for s in sources]  # fmt: skip
    kept = KeptEquity(keep, alignment)
    spent = [0.0]

    def windows() -> Iterator[list[tuple[int, int, int]]]:
        while True:
            for k, source in enumerate(sources):
                if not source.remaining() and not source.done:
                    source.refill()
                    instruments[k].close = source.feed.columns["close"]  # type: ignore[union-attr]
            live = [k for k, source in enumerate(sources) if source.remaining()]
            if not live:
                return
            horizon = min(int(sources[k].feed.times[-1]) for k in live)  # type: ignore[union-attr]
            ranges = []
            for k in live:
                source = sources[k]
                end = int(np.searchsorted(source.feed.times, horizon, side="right"))  # type: ignore[union-attr]
                ranges.append((k, source.next, end))
            first_fill = len(fills)
            yield ranges
            kept.add(_window_equity(ranges, first_fill))
            for k, _, end in ranges:
                sources[k].next = end

    def _window_equity(ranges: list[tuple[int, int, int]], first_fill: int) -> pd.Series:
        starts = {k: a for k, a, _ in ranges}
        for k, stretch in enumerate(stretches):
            feed = sources[k].feed
            a, b = next(((a, b) for j, a, b in ranges if j == k), (0, 0))
            stretch.times = feed.times[a:b]  # type: ignore[union-attr]
            stretch.close = feed.columns["close"][a:b]  # type: ignore[union-attr]
        times = np.unique(np.concatenate([s.times for s in stretches]))
        if curve is None:
            number, local, signed, cost = fills.arrays(stretches, first_fill)
            local = local - np.array([starts[k] for k in number.tolist()], dtype=np.int64)
            equity, spent[0] = marked_equity(
                times, stretches, number, local, signed, cost, cash, spent[0]
            )
        else:
            equity = np.asarray(curve, dtype=np.float64)  # the broker's, after each time
            curve.clear()
            for stretch in stretches:
                if len(stretch.close):
                    stretch.close_before = float(stretch.close[-1])
        index = pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC")
        return pd.Series(equity, index=index, name="equity", copy=False)

    _run_multi(brain, context, instruments, fill_close, fills, curve, windows())
    return Result.from_run(
        context.events,  # every event: the trades are its fills
        kept.result(),
        initial_cash=cash,
        prices={},
        name=brain.name,
        params=dict(params or {}),
        open_positions=broker.positions,
        multipliers={s.bsid.symbol: broker.multiplier(s.bsid.symbol) for s in sources},
        conversions=broker.fill_conversions if broker.account is not None else None,
        events=context.events,
        orders=context.orders,
    )


__all__ = ["MIN_CHUNK", "WINDOW_BARS", "check_streamable", "is_streamed", "run_streamed",
           "stream_paths"]  # fmt: skip
