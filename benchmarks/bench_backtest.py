"""Backtest throughput, side by side in one run (medians over repeats, ratios printed; the
event-driven contenders and the floors run round-robin, one of each per round).

    python benchmarks/bench_backtest.py [--repeats 5] [--data PATH]

Workload: long-only SMA-cross 10/30 with next-open fills, one unit, 100,000 cash, no costs, on
/work/shared/data/market/2006-01-02-volume-min-001.txt (30,889 one-minute bars; its header
lists 7 names but rows have 8 fields) or, if absent, 30,000 generated bars.

* osMarkets event-driven: the example SmaCross (numpy means per bar) and the same rule with
  incremental indicators (osmarkets.indicators.SMA), and an empty Brain.
* backtrader on the same rule and fill (pip install backtrader; benchmarking only), with the
  agreement of fills and final value printed.
* vectorised grid of 1,024 (fast, slow) combinations: osmarkets.backtest.vectorized (with
  SmaCross.signals_batch, and with one signals call per combination) vs vectorbt (pip install
  vectorbt; benchmarking only) or, when vectorbt is missing, a plain pandas loop; then the
  agreement of the vectorised fills and final values with the event-driven engine on a sample
  of the combinations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from osmarkets import Brain
from osmarkets.backtest import backtest
from osmarkets.backtest.vectorized import vectorized
from osmarkets.indicators import SMA
from osmarkets.strategies import SmaCross

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from previous_sma import RunningSMA  # noqa: E402

DATA = "/work/shared/data/market/2006-01-02-volume-min-001.txt"
FAST, SLOW, CASH = 10, 30, 100_000.0


def load(path: str) -> tuple[pd.DataFrame, str]:
    if os.path.exists(path):
        raw = pd.read_csv(
            path, header=None, skiprows=1,
            names=["date", "time", "open", "high", "low", "close", "volume", "oi"],
        )  # fmt: skip
        index = pd.DatetimeIndex(pd.to_datetime(raw["date"] + " " + raw["time"]), name="time")
        cols = {c: raw[c].to_numpy(float) for c in ("open", "high", "low", "close", "volume")}
        return pd.DataFrame(cols, index=index.tz_localize("UTC")), path
    rng = np.random.default_rng(0)
    # on a 0.25 tick grid, as real futures prices: sums of such floats are exact
    close = np.round(4 * (3600 + np.cumsum(rng.normal(0, 1.0, 30_000)))) / 4
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + 0.5,
         "low": np.minimum(open_, close) - 0.5, "close": close, "volume": 1.0},
        index=pd.date_range("2006-01-02", periods=len(close), freq="1min", tz="UTC", name="time"),
    )  # fmt: skip
    return frame, "generated random walk (data file not found)"


class FastSmaCross(Brain):
    """SmaCross's rule with O(1) incremental averages."""

    fast = FAST
    slow = SLOW
    size = 1
    average: Any = SMA

    def on_start(self) -> None:
        self._f, self._s = self.average(self.fast), self.average(self.slow)
        self._prev = (np.nan, np.nan)
        self._count = 0

    def on_new_bar(self, series: Any) -> None:
        x = series.close[0]
        f, s = self._f.update(x), self._s.update(x)
        fb, sb = self._prev
        self._prev = (f, s)
        self._count += 1
        if self._count <= self.slow:
            return
        symbol = series.bsid.symbol
        held = self.position(symbol)
        if fb <= sb and f > s and held == 0:
            self.send_order("buy", self.size, symbol)
        elif fb >= sb and f < s and held > 0:
            self.send_order("sell", held, symbol)


class PreviousSmaCross(FastSmaCross):
    """The same on the previous running-sum SMA (issue 19: not exact; here only to measure the
    exact one against it in the same run)."""

    average = RunningSMA


class Empty(Brain):
    def on_new_bar(self, series: Any) -> None:
        pass


def floor_sma_cross(closes: list[float]) -> int:
    """The bare-loop floor: the FastSmaCross rule on a Python list, with the same SMA class,
    no engine, no series, no broker (it counts the crosses it would trade)."""
    f, s = SMA(FAST), SMA(SLOW)
    fb = sb = float("nan")
    held = trades = 0
    for count, x in enumerate(closes, 1):
        fv, sv = f.update(x), s.update(x)
        if count > SLOW:
            if fb <= sb and fv > sv and held == 0:
                held, trades = 1, trades + 1
            elif fb >= sb and fv < sv and held > 0:
                held, trades = 0, trades + 1
        fb, sb = fv, sv
    return trades


class _MethodRule:
    """The FastSmaCross rule as a Brain writes it, a method keeping its state on ``self``, but
    called by a bare loop (no engine, no series, no broker)."""

    slow = SLOW

    def __init__(self) -> None:
        self._f, self._s = SMA(FAST), SMA(SLOW)
        self._prev = (np.nan, np.nan)
        self._count = self.held = self.trades = 0

    def on_bar(self, x: float) -> None:
        f, s = self._f.update(x), self._s.update(x)
        fb, sb = self._prev
        self._prev = (f, s)
        self._count += 1
        if self._count <= self.slow:
            return
        held = self.held
        if fb <= sb and f > s and held == 0:
            self.held, self.trades = 1, self.trades + 1
        elif fb >= sb and f < s and held > 0:
            self.held, self.trades = 0, self.trades + 1


def floor_method(closes: list[float]) -> int:
    """The bare loop calling the rule's method once per bar: what the Brain's own code costs
    as written (state on ``self``), without anything of the engine."""
    rule = _MethodRule()
    on_bar = rule.on_bar
    for x in closes:
        on_bar(x)
    return rule.trades


class NoOrderSmaCross(FastSmaCross):
    """FastSmaCross reading its bars and position the same way, but keeping its own position
    instead of sending orders: the difference to FastSmaCross is the cost of the orders."""

    def on_new_bar(self, series: Any) -> None:
        x = series.close[0]
        f, s = self._f.update(x), self._s.update(x)
        fb, sb = self._prev
        self._prev = (f, s)
        self._count += 1
        if self._count <= self.slow:
            return
        self.position(series.bsid.symbol)
        if fb <= sb and f > s and not self._held:
            self._held = 1
        elif fb >= sb and f < s and self._held:
            self._held = 0

    _held = 0


def floor_empty(closes: list[float]) -> None:
    """The bare-loop floor of an empty Brain: one call per bar."""

    def on_bar(x: float) -> None:
        pass

    for x in closes:
        on_bar(x)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def interleaved(
    contenders: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Median times of ``contenders`` run round-robin, one of each per round: a slow phase of
    a shared machine then weighs on all of them alike, and the ratios hold."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outs


def run_backtrader(df: pd.DataFrame) -> tuple[list, float] | None:
    try:
        import backtrader as bt
    except ImportError:
        return None

    class BtSmaCross(bt.Strategy):
        params = (("fast", FAST), ("slow", SLOW), ("size", 1))

        def __init__(self) -> None:
            self.f = bt.ind.SMA(self.data.close, period=self.p.fast)
            self.s = bt.ind.SMA(self.data.close, period=self.p.slow)
            self.fills: list = []

        def next(self) -> None:
            if len(self) <= self.p.slow:
                return
            fb, sb, f, s = self.f[-1], self.s[-1], self.f[0], self.s[0]
            held = self.position.size
            if fb <= sb and f > s and held == 0:
                self.buy(size=self.p.size)
            elif fb >= sb and f < s and held > 0:
                self.sell(size=held)

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills.append((order.executed.size, order.executed.price))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df.tz_localize(None)))
    cerebro.addstrategy(BtSmaCross)
    cerebro.broker.setcash(CASH)
    (strategy,) = cerebro.run()
    return strategy.fills, cerebro.broker.getvalue()


def grid() -> list[dict]:
    return [{"fast": f, "slow": s, "size": 1} for f in range(2, 34) for s in range(35, 67)]


def run_vectorbt(df: pd.DataFrame, combos: list[dict]) -> np.ndarray | None:
    try:
        import vectorbt as vbt
    except Exception:
        return None
    close = df["close"].tz_localize(None)
    finals = []
    for start in range(0, len(combos), 256):
        part = combos[start : start + 256]
        fast = vbt.MA.run(close, window=[c["fast"] for c in part], short_name="fast")
        slow = vbt.MA.run(close, window=[c["slow"] for c in part], short_name="slow")
        entries, exits = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
        pf = vbt.Portfolio.from_signals(close, entries, exits, size=1, init_cash=CASH)
        finals.append(np.asarray(pf.final_value()))
    return np.concatenate(finals)


def run_pandas(df: pd.DataFrame, combos: list[dict]) -> np.ndarray:
    close = df["close"]
    finals = []
    for c in combos:
        f, s = close.rolling(c["fast"]).mean(), close.rolling(c["slow"]).mean()
        up = (f.shift() <= s.shift()) & (f > s)
        down = (f.shift() >= s.shift()) & (f < s)
        state = pd.Series(np.where(up, 1.0, np.where(down, 0.0, np.nan)), index=close.index)
        held = state.ffill().fillna(0.0).shift().fillna(0.0)
        delta = held.diff().fillna(held)
        finals.append(CASH - (delta * df["open"]).sum() + held.iloc[-1] * close.iloc[-1])
    return np.array(finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=DATA)
    args = parser.parse_args()
    df, source = load(args.data)
    n = len(df)
    print(f"data: {source}: {n} bars; repeats: {args.repeats} (medians)\n")

    params = {"size": 1}
    closes = df["close"].tolist()
    times, outs = interleaved(
        {
            "plain": lambda: backtest(SmaCross, df, "X:M1", params=params),
            "fast": lambda: backtest(FastSmaCross, df, "X:M1"),
            "empty": lambda: backtest(Empty, df, "X:M1"),
            "prev": lambda: backtest(PreviousSmaCross, df, "X:M1"),
            "floor": lambda: floor_sma_cross(closes),
            "floor_empty": lambda: floor_empty(closes),
            "method": lambda: floor_method(closes),
            "quiet": lambda: backtest(NoOrderSmaCross, df, "X:M1"),
        },
        args.repeats,
    )
    t_plain, t_fast, t_empty, t_prev = (times[k] for k in ("plain", "fast", "empty", "prev"))
    t_floor, t_floor_empty, t_method, t_quiet = (
        times[k] for k in ("floor", "floor_empty", "method", "quiet")
    )
    plain, fast = outs["plain"], outs["fast"]
    print(
        f"bare-loop floor (same run): SMA cross on a list {n / t_floor:,.0f} bars/s, osMarkets "
        f"incremental Brain {n / t_fast:,.0f} = {t_floor / t_fast:.0%} of it (target >= 70 %, "
        f">= 1M bars/s); empty callback {n / t_floor_empty:,.0f} bars/s, osMarkets empty Brain "
        f"{n / t_empty:,.0f} = {t_floor_empty / t_empty:.0%} (target >= 5M bars/s)"
    )
    orders = len(fast.trades)
    print(
        f"where the time goes, per bar: the rule on a list {t_floor / n * 1e9:,.0f} ns; as a "
        f"method with its state on self {t_method / n * 1e9:,.0f} ns; as a Brain in the engine "
        f"(series.close[0], position(), no orders) {t_quiet / n * 1e9:,.0f} ns; with its "
        f"{orders:,} orders and fills {t_fast / n * 1e9:,.0f} ns, i.e. "
        f"{(t_fast - t_quiet) / max(orders, 1) * 1e6:,.1f} us per order and its fill"
    )
    print(
        f"incremental SMA-cross Brain: exact SMA {n / t_fast:,.0f} bars/s, previous "
        f"running-sum SMA {n / t_prev:,.0f} bars/s: {t_prev / t_fast:.2f} of its speed "
        f"(target >= 0.90)\n"
    )
    rows = [
        ("osMarkets SmaCross (package: exact SMA + Crossover)", n / t_plain),
        ("osMarkets SmaCross (incremental SMA)", n / t_fast),
        ("osMarkets empty Brain", n / t_empty),
    ]
    bt_rate = None
    bt_out = run_backtrader(df)
    if bt_out is None:
        print("backtrader: not installed (pip install backtrader)")
    else:
        t_bt, bt_out = median_time(lambda: run_backtrader(df), max(1, args.repeats // 2))
        bt_rate = n / t_bt
        rows.append(("backtrader SmaCross", bt_rate))
    print(f"{'event-driven, SMA-cross 10/30, next-open fills':<44}{'bars/s':>12}{'vs bt':>8}")
    for label, rate in rows:
        ratio = f"{rate / bt_rate:7.1f}x" if bt_rate else "      -"
        print(f"{label:<44}{rate:>12,.0f}{ratio:>8}")
    print(f"{'(nautilus_trader published class: ~47k bars/s)':<44}")
    if bt_out is not None:
        bt_fills, bt_value = bt_out
        t = fast.trades
        ours = [
            (s if side == "buy" else -s, p)
            for side, s, p in zip(t["side"], t["size"], t["price"], strict=True)
        ]
        same_fills = ours == [(float(s), float(p)) for s, p in bt_fills]
        print(
            f"\nagreement with backtrader: fills {len(ours)} vs {len(bt_fills)} "
            f"({'identical' if same_fills else 'DIFFERENT'}), final value "
            f"{fast.final_value:,.2f} vs {bt_value:,.2f} "
            f"({'equal' if abs(fast.final_value - bt_value) < 1e-6 else 'DIFFERENT'}); "
            f"numpy-means SmaCross: {len(plain.trades)} fills, {plain.final_value:,.2f}"
        )

    combos = grid()
    t_vec, vec = median_time(lambda: vectorized(SmaCross, df, combos), args.repeats)
    t_one, one = median_time(lambda: vectorized(SmaCross, df, combos, batch=False), 1)
    ours_rate = len(combos) / t_vec
    print(f"\n{'vectorised grid, 1,024 combinations':<44}{'combos/s':>12}{'ratio':>8}")
    print(f"{'osmarkets vectorized (signals_batch)':<44}{ours_rate:>12,.0f}{'':>8}")
    print(f"{'osmarkets vectorized (signals per combo)':<44}{len(combos) / t_one:>12,.0f}{'':>8}")
    if run_vectorbt(df, combos[:4]) is not None:  # warm-up: numba compiles on first use
        t_vbt, _ = median_time(lambda: run_vectorbt(df, combos), max(1, args.repeats // 2))
        rate = len(combos) / t_vbt
        print(f"{'vectorbt (MA.run + Portfolio.from_signals)':<44}{rate:>12,.0f}"
              f"{ours_rate / rate:>7.1f}x")  # fmt: skip
    else:
        print("vectorbt: not importable; comparing with plain pandas instead")
        subset = combos[:64]
        t_pd, finals = median_time(lambda: run_pandas(df, subset), 1)
        rate = len(subset) / t_pd
        print(f"{'plain pandas loop':<44}{rate:>12,.0f}{ours_rate / rate:>7.1f}x")
    same_paths = vec.table.equals(one.table)
    sample = np.random.default_rng(0).choice(len(combos), size=8, replace=False)
    agree = 0
    for i in sorted(sample.tolist()):
        check = backtest(SmaCross, df, "X:M1", params=combos[i])
        row = vec.table.iloc[i]
        agree += (
            int(row["trades"]) == len(check.trades) and row["final_value"] == check.final_value
        )
    print(
        f"batched vs per-combination tables: {'identical' if same_paths else 'DIFFERENT'}; "
        f"vectorised vs event-driven SmaCross on {len(sample)} sampled combinations: "
        f"{agree}/{len(sample)} with identical fill counts and final values"
    )


if __name__ == "__main__":
    sys.exit(main())
