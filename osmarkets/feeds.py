"""Market data sources for the Feeder agent: seeded synthetic FX quotes and historical replay.

Pure logic (numpy and pandas, no osBrain): the Feeder agent only moves what these generators
yield onto a socket, so the data they produce can be tested, and reproduced, in-process.

Every source yields *events* ``(kind, symbol, payload)`` in time order:

* ``('tick', symbol, Tick)`` for quotes;
* ``('bar', symbol, Bar)`` for completed bars of a replayed bar file.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data.series import frame_to_records
from .data.types import Bar, Tick, to_ns

Event = tuple[str, str, Any]

_MINUTE_NS = 60_000_000_000
# Relative tick activity per UTC hour: quiet in the Asian session, busiest in the London / New
# York overlap (13:00-16:00 UTC), as spot FX is.
_ACTIVITY = np.array(
    [0.3, 0.3, 0.35, 0.35, 0.35, 0.4, 0.5, 0.8, 1.0, 1.0, 0.9, 0.85,
     0.9, 1.2, 1.3, 1.3, 1.1, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.3]
)  # fmt: skip


def pip_size(symbol: str) -> float:
    """0.01 for yen crosses, 0.0001 otherwise (FX convention)."""
    return 0.01 if symbol.upper().endswith("JPY") else 0.0001


def synthetic_ticks(
    symbol: str = "EUR_USD",
    *,
    seed: int = 0,
    start: Any = "2024-01-02 07:00",
    price: float | None = None,
    ticks_per_minute: float = 60.0,
    volatility: float = 0.00012,
    count: int | None = None,
    until: Any = None,
) -> Iterator[Tick]:
    """Seeded random-walk quotes for ``symbol``, reproducible tick for tick.

    The mid price follows a geometric random walk whose per-tick step is scaled so that one
    minute moves about ``volatility`` (relative), whatever the tick rate. Ticks arrive as a
    Poisson process whose rate follows the hour of day (``ticks_per_minute`` at the busiest
    hours). The spread is 0.8 to 1.5 pips, wider when the market is quiet. Stops after
    ``count`` ticks or at ``until`` (whichever comes first); endless if neither is given.
    """
    if ticks_per_minute <= 0 or not math.isfinite(ticks_per_minute):
        raise ValueError(f"ticks_per_minute: expected a positive number, got {ticks_per_minute}")
    if count is not None and count < 0:
        raise ValueError(f"count: expected a non-negative number of ticks, got {count}")
    rng = np.random.default_rng(seed)
    pip = pip_size(symbol)
    mid = float(price if price is not None else (150.0 if pip == 0.01 else 1.10))
    if mid <= 0:
        raise ValueError(f"price: expected a positive price, got {price}")
    now = to_ns(start)
    end = to_ns(until) if until is not None else None
    per_tick_sigma = volatility / math.sqrt(ticks_per_minute)
    produced = 0
    chunk = 4096
    while count is None or produced < count:
        steps = rng.standard_normal(chunk)
        waits = rng.exponential(1.0, chunk)
        spreads = rng.uniform(0.0, 1.0, chunk)
        for k in range(chunk):
            hour = (now // 3_600_000_000_000) % 24
            activity = float(_ACTIVITY[hour])
            # Fewer ticks when quiet: the mean wait grows with 1 / activity.
            now += int(waits[k] * _MINUTE_NS / (ticks_per_minute * activity)) + 1
            if end is not None and now >= end:
                return
            mid *= math.exp(per_tick_sigma * steps[k])
            spread = pip * (0.8 + 0.7 * spreads[k] * (1.3 - min(activity, 1.3)) / 1.0)
            spread = min(max(spread, 0.8 * pip), 1.5 * pip)
            bid = round(float(mid - spread / 2), 6)
            ask = round(float(bid + spread), 6)
            yield Tick(now, bid, ask)
            produced += 1
            if count is not None and produced >= count:
                return


def synthetic_minutes(symbol: str, *, bars: int, seed: int = 0, **kwargs: Any) -> Iterator[Tick]:
    """Synthetic ticks covering about ``bars`` one-minute bars (one extra minute, so that the
    last of them completes)."""
    start = to_ns(kwargs.pop("start", "2024-01-02 07:00"))
    until = start + (bars + 1) * _MINUTE_NS
    return synthetic_ticks(symbol, seed=seed, start=start, until=until, **kwargs)


# -- replay ------------------------------------------------------------------------------------
def load_frame(source: Any, symbol: str) -> pd.DataFrame:
    """A DataFrame of bars or ticks from a DataFrame or a file path (any layout
    :func:`osmarkets.data.io.read_bars` reads: CSV exports, MetaTrader, Parquet...)."""
    from .data.io import read_bars

    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise ValueError(f"data[{symbol!r}]: no such file {str(path)!r}")
        try:
            frame = read_bars(path)
        except ValueError as exc:
            raise ValueError(f"data[{symbol!r}]: {exc}") from None
    else:
        raise ValueError(
            f"data[{symbol!r}]: expected a DataFrame or a file path, got {type(source).__name__}"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(f"data[{symbol!r}]: expected a DatetimeIndex (or a 'time' column)")
    if not frame.index.is_monotonic_increasing:
        raise ValueError(f"data[{symbol!r}]: time goes backwards")
    return frame


def is_tick_frame(frame: pd.DataFrame) -> bool:
    """Ticks have ``bid`` and ``ask`` columns; bars have ``open`` ... ``close``."""
    return "bid" in frame.columns and "ask" in frame.columns and "open" not in frame.columns


def frame_events(frame: pd.DataFrame, symbol: str) -> Iterator[Event]:
    """The events of one symbol's frame, in time order."""
    if is_tick_frame(frame):
        index = pd.DatetimeIndex(frame.index)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        times = index.as_unit("ns").asi8
        bids = frame["bid"].to_numpy(dtype=float)
        asks = frame["ask"].to_numpy(dtype=float)
        for k in range(len(frame)):
            yield ("tick", symbol, Tick(int(times[k]), float(bids[k]), float(asks[k])))
        return
    for record in frame_to_records(frame).tolist():
        yield ("bar", symbol, Bar(*record))


def replay_events(data: Mapping[str, Any]) -> Iterator[Event]:
    """Merge every symbol's events into one time-ordered stream (ties keep symbol order)."""
    streams = []
    for order, (symbol, source) in enumerate(data.items()):
        frame = load_frame(source, symbol)
        streams.append((ev[2].time, order, ev) for ev in frame_events(frame, symbol))
    for _, _, event in heapq.merge(*streams):
        yield event


def base_timeframes(data: Mapping[str, Any]) -> dict[str, str | None]:
    """The bar time frame code of each replayed bar frame (``None`` for ticks), inferred from
    its times by :func:`osmarkets.data.timeframes.infer_timeframe` (``'M1'`` for one bar)."""
    from .data.timeframes import infer_timeframe

    out: dict[str, str | None] = {}
    for symbol, source in data.items():
        frame = load_frame(source, symbol)
        if is_tick_frame(frame) or len(frame) < 2:
            out[symbol] = None if is_tick_frame(frame) else "M1"
            continue
        times = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
        try:
            out[symbol] = infer_timeframe(times).code
        except ValueError as exc:
            raise ValueError(f"data[{symbol!r}]: {exc}") from None
    return out
