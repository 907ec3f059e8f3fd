"""Market-data core speed: batch resampling, streaming aggregation, BarSeries appends.

Run: python benchmarks/bench_data.py [--ticks N] [--stream-ticks N] [--bars N] [--repeats R]

Side by side, medians over repeats, on seeded synthetic ticks (a random walk with a spread and
random gaps, several ticks often sharing a timestamp):

* batch ``ticks_to_bars(ticks, 'M1')`` (validation + mid/bid/ask OHLC + tick count) against
  pandas ``resample('1min').ohlc()`` on the bid and ask columns, and against the pandas code
  that produces the same output (mid/bid/ask OHLC and a count);
* streaming ``TickAggregator('M1').update`` per tick, against a bare Python loop over the same
  ticks (the floor any per-tick Python code pays);
* ``BarSeries.append`` plus a read of ``close[:30]`` per bar, against a Python list doing the
  same (``append`` + ``[-30:]``).

If the real 1-minute file of ``/work/shared/data/market`` is present, its read and M1 -> M5
resample are timed too (batch, streaming, pandas).

Data of any market (``--calendar-years``, 10 by default: about 1M New York session minutes):
``infer_timeframe`` against pandas finding the smallest gap (``index.to_series().diff().min()``),
and ``conform(minutes, 'D', calendar='XNYS')`` (validation, session of every bar, daily bars
stamped at the session open) against pandas grouping the same minutes by their New York date
and aggregating first/max/min/last/sum.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from osmarkets.data import (
    Alignment,
    Bar,
    BarResampler,
    BarSeries,
    TickAggregator,
    conform,
    infer_timeframe,
    read_csv,
    resample,
    ticks_to_bars,
)

REAL_MINUTES = Path("/work/shared/data/market/2006-01-02-volume-min-001.txt")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_ticks(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Mean gap 40 ms, a third of the ticks sharing the previous timestamp.
    gaps = rng.exponential(60e6, n).astype(np.int64) * (rng.random(n) > 1 / 3)
    times = pd.Timestamp("2024-01-01 22:00", tz="UTC").value + np.cumsum(gaps)
    bid = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 2e-5, n)))
    ask = bid + rng.integers(1, 20, n) * 1e-5
    index = pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC")
    return pd.DataFrame({"bid": bid, "ask": ask}, index=index)


def row(label: str, ours: str, ref: str, ratio: str) -> None:
    print(f"{label:<44} {ours:>16} {ref:>16} {ratio:>9}")


def bench_batch(ticks: pd.DataFrame, repeats: int) -> None:
    n = len(ticks)
    ours = median_time(lambda: ticks_to_bars(ticks, "M1"), repeats)
    plain = median_time(lambda: ticks.resample("1min").ohlc(), repeats)

    def pandas_same_output() -> pd.DataFrame:
        data = ticks.assign(mid=(ticks["bid"] + ticks["ask"]) / 2)
        grouped = data.resample("1min")
        out = grouped[["mid", "bid", "ask"]].ohlc()
        count = grouped["mid"].count()
        out[("count", "count")] = count
        return out[count.to_numpy() > 0]

    same = median_time(pandas_same_output, repeats)
    print(f"\nBatch, {n:,} ticks -> M1 bars (median of {repeats}; ratio = pandas time / ours)")
    row("", "osmarkets", "pandas", "ratio")
    row("ticks_to_bars vs resample().ohlc() bid+ask", f"{ours:.3f} s", f"{plain:.3f} s",
        f"{plain / ours:.2f}x")  # fmt: skip
    row("  same output (mid/bid/ask OHLC + count)", f"{ours:.3f} s", f"{same:.3f} s",
        f"{same / ours:.2f}x")  # fmt: skip
    row("  throughput", f"{n / ours / 1e6:.1f} M ticks/s", f"{n / plain / 1e6:.1f} M ticks/s", "")


def bench_streaming(ticks: pd.DataFrame, repeats: int) -> None:
    records = list(
        zip(ticks.index.asi8.tolist(), ticks["bid"].tolist(), ticks["ask"].tolist(), strict=True)
    )
    n = len(records)

    def stream() -> int:
        agg = TickAggregator("M1")
        update = agg.update
        count = 0
        for tick in records:
            if update(tick):
                count += 1
        return count

    def bare() -> int:
        count = 0
        for tick in records:
            if tick[1] > tick[2]:
                count += 1
        return count

    ours = median_time(stream, repeats)
    floor = median_time(bare, repeats)
    print(f"\nStreaming, {n:,} ticks -> M1 (median of {repeats}; target >= 500k ticks/s)")
    row("TickAggregator.update vs bare Python loop", f"{n / ours / 1e3:,.0f} k ticks/s",
        f"{n / floor / 1e3:,.0f} k ticks/s", f"{floor / ours:.2f}x")  # fmt: skip


def bench_series(n: int, repeats: int) -> None:
    rng = np.random.default_rng(3)
    close = 1.1 + np.cumsum(rng.normal(0, 1e-4, n))
    bars = [
        Bar(i * 60_000_000_000, c, c + 1e-4, c - 1e-4, c, 10.0,
            c - 1e-5, c + 9e-5, c - 1.1e-4, c - 1e-5, c + 1e-5, c + 1.1e-4, c - 9e-5, c + 1e-5)
        for i, c in enumerate(close.tolist())
    ]  # fmt: skip

    def series() -> None:
        s = BarSeries(("EUR_USD", 1, "Minutes"), 1000)
        append = s.append
        for bar in bars:
            append(bar)
            s.close[:30]

    def plain_list() -> None:
        closes: list[float] = []
        for bar in bars:
            closes.append(bar.close)
            closes[-30:]

    ours = median_time(series, repeats)
    ref = median_time(plain_list, repeats)
    print(f"\nBarSeries, {n:,} bars, capacity 1000 (median of {repeats}; target >= 1M bars/s)")
    row("append + close[:30] vs list append + [-30:]", f"{n / ours / 1e6:.2f} M bars/s",
        f"{n / ref / 1e6:.2f} M bars/s", f"{ref / ours:.2f}x")  # fmt: skip


def bench_real(repeats: int) -> None:
    if not REAL_MINUTES.exists():
        print(f"\n(real data {REAL_MINUTES} not found: skipped)")
        return
    read = median_time(lambda: read_csv(REAL_MINUTES), repeats)
    bars = read_csv(REAL_MINUTES)
    n = len(bars)
    batch = median_time(lambda: resample(bars, "M5"), repeats)

    def stream() -> None:
        res = BarResampler("M5")
        for record in zip(bars.index.asi8.tolist(), *(bars[c].tolist() for c in bars.columns),
                          strict=True):  # fmt: skip
            res.update(record)
        res.flush()

    streaming = median_time(stream, repeats)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    pandas = median_time(lambda: bars.resample("5min").agg(agg).dropna(), repeats)
    print(f"\nReal 1-minute file, {n:,} bars (median of {repeats})")
    row("read_csv", f"{read * 1e3:.1f} ms", "", "")
    row("resample M1->M5 vs pandas resample().agg()", f"{batch * 1e3:.1f} ms",
        f"{pandas * 1e3:.1f} ms", f"{pandas / batch:.2f}x")  # fmt: skip
    row("BarResampler M1->M5 (streaming)", f"{n / streaming / 1e3:,.0f} k bars/s", "", "")


def session_minutes(years: int, seed: int = 3) -> pd.DataFrame:
    """One-minute bars of every XNYS session of ``years`` years from 2010."""
    import exchange_calendars as xcals

    cal = xcals.get_calendar("XNYS", start="2010-01-04", end=f"{2010 + years - 1}-12-31")
    opens = cal.schedule["open"].dt.tz_convert(None).to_numpy().astype(np.int64)
    closes = cal.schedule["close"].dt.tz_convert(None).to_numpy().astype(np.int64)
    minute = 60_000_000_000
    counts = (closes - opens) // minute
    times = (
        np.repeat(opens, counts)
        + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) * minute
    )
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 5e-4, len(times))))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) * 1.0002,
         "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": 1.0},
        index=index,
    )  # fmt: skip


def bench_calendar(years: int, repeats: int) -> None:
    minutes = session_minutes(years)
    n = len(minutes)
    times = minutes.index.as_unit("ns").asi8
    ours = median_time(lambda: infer_timeframe(times), repeats)
    pandas = median_time(lambda: minutes.index.to_series().diff().min(), repeats)
    print(f"\nData of any market, {n:,} XNYS session minutes over {years} years "
          f"(median of {repeats}; target >= pandas)")  # fmt: skip
    row("infer_timeframe vs pandas diff().min()", f"{n / ours / 1e6:,.0f} M bars/s",
        f"{n / pandas / 1e6:,.0f} M bars/s", f"{pandas / ours:.2f}x")  # fmt: skip
    nyse = Alignment.of(calendar="XNYS")
    start = time.perf_counter()
    conform(minutes, "D", nyse)  # the first call loads the calendar's decades (then cached)
    print(f"  first call, with the calendar's load: {time.perf_counter() - start:.2f} s")

    def pandas_daily() -> pd.DataFrame:
        day = minutes.index.tz_convert("America/New_York").normalize()
        return minutes.groupby(day).agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
        )

    ours = median_time(lambda: conform(minutes, "D", nyse), repeats)
    pandas = median_time(pandas_daily, repeats)
    ours_bars, _ = conform(minutes, "D", nyse)
    assert np.array_equal(ours_bars["close"].to_numpy(), pandas_daily()["close"].to_numpy())
    row("conform M1 -> D, calendar XNYS, vs pandas groupby", f"{n / ours / 1e6:,.1f} M bars/s",
        f"{n / pandas / 1e6:,.1f} M bars/s", f"{pandas / ours:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--stream-ticks", type=int, default=2_000_000)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calendar-years", type=int, default=10)
    parser.add_argument("--only-calendar", action="store_true", help="skip the other measures")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, pandas {pd.__version__}")
    bench_calendar(args.calendar_years, args.repeats)
    if args.only_calendar:
        return
    ticks = synthetic_ticks(args.ticks)
    bench_batch(ticks, args.repeats)
    bench_streaming(ticks.iloc[: args.stream_ticks], args.repeats)
    del ticks
    bench_series(args.bars, args.repeats)
    bench_real(args.repeats)


if __name__ == "__main__":
    main()
