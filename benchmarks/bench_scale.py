"""Large backtests: peak memory and throughput, in memory and streamed from Parquet files.

    python benchmarks/bench_scale.py [--bars 5000000] [--instruments 100]
        [--instrument-bars 375000] [--baseline PATH] [--only memory|stream]

Each measured run is a child process of its own, measured by ``/usr/bin/time -v`` (its
"Maximum resident set size"; ``getrusage`` of the child where that tool is missing), so the
figures are the whole process's peak: the interpreter, numpy and pandas (about 105 MB), the
input and the backtest. The in-memory children also report their RSS once the input is built
and the peak during the backtest alone (``VmHWM`` after resetting it through
``/proc/self/clear_refs``), whose difference is the backtest's cost beyond its input.

* memory: ``--bars`` synthetic one-minute bars (OHLCV, float64: 48 bytes a bar) built in a
  DataFrame, then ``backtest`` with an empty Brain and with an incremental SMA-cross 10/30 Brain
  (a fill every ~26 bars). ``--baseline PATH`` runs the same children on another checkout of
  osMarkets (``git worktree add /tmp/osm-old <rev>``) for a side-by-side figure.
* stream: ``--instruments`` Parquet files of ``--instrument-bars`` one-minute bars each, written
  once to a temporary directory (not measured), then one streamed backtest over all of them
  with an SMA-cross 60/240 per instrument (one Brain, every instrument), and the same on a
  tenth of the instruments in memory and streamed, side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BRAINS = textwrap.dedent(
    """
    import math, sys, time
    import numpy as np, pandas as pd
    from osmarkets import Brain
    from osmarkets.backtest import backtest
    from osmarkets.indicators import SMA

    class Empty(Brain):
        def on_new_bar(self, series):
            pass

    class Cross(Brain):
        fast = 10
        slow = 30

        def on_start(self):
            self.lines = {}

        def on_new_bar(self, series):
            symbol = series.bsid.symbol
            lines = self.lines.get(symbol)
            if lines is None:
                lines = self.lines[symbol] = [SMA(self.fast), SMA(self.slow), math.nan, math.nan]
            x = series.close[0]
            f, s = lines[0].update(x), lines[1].update(x)
            fb, sb = lines[2], lines[3]
            lines[2], lines[3] = f, s
            if fb <= sb and f > s and not self.position(symbol):
                self.send_order("buy", 1, symbol)
            elif fb >= sb and f < s and self.position(symbol) > 0:
                self.send_order("sell", self.position(symbol), symbol)

    def synthetic(n, seed=0, start="2000-01-03"):
        rng = np.random.default_rng(seed)
        close = rng.standard_normal(n)
        np.cumsum(close, out=close)
        close += 3600.0
        close *= 4
        np.round(close, out=close)
        close /= 4  # on a 0.25 tick grid
        open_ = np.empty(n)
        open_[1:] = close[:-1]
        open_[0] = close[0]
        high = np.maximum(open_, close)
        high += 0.5
        low = np.minimum(open_, close)
        low -= 0.5
        index = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="time", unit="ns")
        columns = {"open": open_, "high": high, "low": low, "close": close, "volume": np.ones(n)}
        return pd.DataFrame(columns, index=index, copy=False)
    """
)

MEMORY_CHILD = BRAINS + textwrap.dedent(
    """
    import gc

    def status(key):
        with open("/proc/self/status") as lines:
            return next(int(x.split()[1]) // 1024 for x in lines if x.startswith(key))

    n, which = int(sys.argv[1]), sys.argv[2]
    frame = synthetic(n)
    gc.collect()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak (VmHWM): what follows is the backtest's own
    start = time.perf_counter()
    result = backtest(Empty if which == "empty" else Cross, frame, "X:M1")
    elapsed = time.perf_counter() - start
    import osmarkets
    print(f"FROM {osmarkets.__file__}")
    print(f"RESULT {elapsed:.3f} {len(result.trades)} {before} {status('VmHWM')}")
    """
)

WRITE_CHILD = BRAINS + textwrap.dedent(
    """
    folder, count, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for k in range(count):
        synthetic(n, seed=k).to_parquet(f"{folder}/S{k:03d}.parquet", row_group_size=16_384)
    """
)

STREAM_CHILD = BRAINS + textwrap.dedent(
    """
    folder, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    symbols = [f"S{k:03d}" for k in range(count)]
    Cross.fast, Cross.slow = 60, 240
    start = time.perf_counter()
    if mode == "memory":
        data = {s: pd.read_parquet(f"{folder}/{s}.parquet") for s in symbols}
        result = backtest(Cross, data, [f"{s}:M1" for s in symbols], history=300)
    else:
        result = backtest(Cross, folder, [f"{s}:M1" for s in symbols], history=300,
                          equity_dtype="float32")
    elapsed = time.perf_counter() - start
    print(f"RESULT {elapsed:.3f} {len(result.trades)} {float(result.equity.iloc[-1])!r}")
    """
)


def measure(code: str, args: list[str], pythonpath: str | None = None) -> tuple[float, str]:
    """(peak RSS in MB, the child's RESULT line) of ``code`` run in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath or str(ROOT)
    command = [sys.executable, "-c", code, *args]
    cwd = tempfile.gettempdir()  # not the checkout: "-c" puts the working directory first
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if timer:
        done = subprocess.run(
            [timer, "-v", *command], capture_output=True, text=True, env=env, cwd=cwd
        )
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        peak = int(found.group(1)) / 1024 if found else float("nan")
    else:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
        peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    if done.returncode:
        raise SystemExit(f"child failed: {done.stderr.strip().splitlines()[-1]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    source = [x for x in done.stdout.splitlines() if x.startswith("FROM")]
    if source and pythonpath and not source[0].startswith(f"FROM {pythonpath}"):
        raise SystemExit(f"the baseline run imported {source[0][5:]}, not {pythonpath}")
    return peak, line


def memory(bars: int, baseline: str | None) -> None:
    print(f"\nIn memory: {bars:,} synthetic one-minute bars (input {bars * 48 / 1e6:,.0f} MB)")
    print(f"{'run':<34}{'process peak':>13}{'before run':>11}{'run peak':>10}{'extra':>8}"
          f"{'time':>8}{'bars/s':>12}{'fills':>9}")  # fmt: skip
    for which in ("empty", "sma"):
        for label, path in (("osMarkets", None), ("baseline", baseline)):
            if label == "baseline" and not path:
                continue
            peak, line = measure(MEMORY_CHILD, [str(bars), which], path)
            _, elapsed, fills, before, during = line.split()
            rate = bars / float(elapsed)
            extra = int(during) - int(before)
            name = f"{label}, {'empty Brain' if which == 'empty' else 'SMA cross 10/30'}"
            print(f"{name:<34}{peak:>11,.0f}MB{before:>9}MB{during:>8}MB{extra:>6}MB"
                  f"{float(elapsed):>7.1f}s{rate:>12,.0f}{fills:>9}")  # fmt: skip


def stream(instruments: int, per: int) -> None:
    folder = tempfile.mkdtemp(prefix="osm-scale-")
    try:
        subprocess.run([sys.executable, "-c", WRITE_CHILD, folder, str(instruments), str(per)],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
        total = instruments * per
        ohlcv = total * 48 / 1e6
        print(f"\nStreamed: {instruments} Parquet files x {per:,} bars = {total:,} bars "
              f"({size:,.0f} MB on disk, {ohlcv:,.0f} MB as float64 OHLCV)")  # fmt: skip
        print(f"{'run':<40}{'peak RSS':>10}{'time':>9}{'bars/s':>12}{'fills':>9}")
        small = max(1, instruments // 10)
        runs = [(small, "memory"), (small, "stream"), (instruments, "stream")]
        if os.environ.get("OSM_SCALE_ONLY_BIG"):
            runs = runs[2:]
        for count, mode in runs:
            peak, line = measure(STREAM_CHILD, [folder, str(count), mode])
            _, elapsed, fills, _ = line.split()
            bars = count * per
            name = f"{count} instruments, {'in memory' if mode == 'memory' else 'streamed'}"
            print(f"{name:<40}{peak:>8,.0f}MB{float(elapsed):>8.1f}s"
                  f"{bars / float(elapsed):>12,.0f}{fills:>9}")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=5_000_000)
    parser.add_argument("--instruments", type=int, default=100)
    parser.add_argument("--instrument-bars", type=int, default=375_000)
    parser.add_argument("--baseline", help="another osMarkets checkout to compare with")
    parser.add_argument("--only", choices=("memory", "stream"))
    args = parser.parse_args()
    if args.only in (None, "memory"):
        memory(args.bars, args.baseline)
    if args.only in (None, "stream"):
        stream(args.instruments, args.instrument_bars)


if __name__ == "__main__":
    main()
