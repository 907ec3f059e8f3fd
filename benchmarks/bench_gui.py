"""GUI speed: frames per second, tick-to-screen latency and backlog under a fast feed.

Run: QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py [--bars N] [--rate R]
[--seconds S] [--repeats K]

The real window (:class:`osmarkets.gui.window.MainWindow`, offscreen) is loaded with ``--bars``
one-minute bars of history (default 100,000) and fed ``--rate`` ticks per second (default 1,000)
by another process over the same kind of ZeroMQ PAIR socket the bridge uses, in the same
MessagePack batches (:func:`osmarkets.gui.bridge.encode_batch`, decoded by
:class:`~osmarkets.gui.bridge.WindowDecoder`), each tick stamped with the wall clock when it was
sent. Measured, for the chart following the newest bar (120
bars in view) and zoomed out to the whole history:

* frames per second actually drawn (the redraw timer asks for 30);
* update latency: from a tick leaving the feeder to the end of the first redraw that shows it
  (median and p99);
* backlog: ticks sent but not yet consumed, sampled every 0.5 s (it must not grow).

Targets (issue 7): >= 30 fps, latency < 100 ms, no growing backlog.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

MIN = 60_000_000_000


def feeder(endpoint: str, rate: float, sent: Any, stop: Any) -> None:
    """Send ``rate`` ticks/s (one message each) until ``stop`` is set."""
    import zmq

    from osmarkets.data.types import Tick
    from osmarkets.gui.bridge import encode_batch

    ctx = zmq.Context()
    pair = ctx.socket(zmq.PAIR)
    pair.connect(endpoint)
    rng = np.random.default_rng(0)
    mid = 1.1
    started = time.perf_counter()
    n = 0
    while not stop.is_set():
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        mid *= 1 + rng.normal(0, 2e-5)
        row = Tick(time.time_ns(), mid - 5e-5, mid + 5e-5)
        pair.send(encode_batch([("ticks", "EUR_USD", [row])]))
        n += 1
        sent.value = n
    pair.close(linger=0)
    ctx.term()


class PairSource:
    """The window's side of the feed (what :class:`~osmarkets.gui.bridge.Connection` does)."""

    def __init__(self) -> None:
        import zmq

        from osmarkets.gui.bridge import WindowDecoder

        self.zmq = zmq
        self.decoder = WindowDecoder()
        self.ctx = zmq.Context()
        self.dir = tempfile.mkdtemp(prefix="osm-bench-gui-")
        self.endpoint = f"ipc://{self.dir}/feed"
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.bind(self.endpoint)
        self.preload: list[tuple] = []
        self.consumed = 0
        self.newest = 0  # wall-clock stamp of the newest tick consumed

    def drain(self) -> list[tuple]:
        out, self.preload = self.preload, []
        while True:
            try:
                data = self.pair.recv(self.zmq.NOBLOCK)
            except self.zmq.Again:
                break
            batch = self.decoder(data)
            for message in batch:
                if message[0] == "ticks":
                    self.consumed += len(message[2])
                    self.newest = message[2][-1][0]
            out.extend(batch)
        return out

    def watch(self, bsid: Any, count: int = 500) -> None:
        pass

    def close(self) -> None:
        self.pair.close(linger=0)
        self.ctx.term()


def history(n: int) -> np.ndarray:
    from osmarkets.data.types import BAR_DTYPE

    rng = np.random.default_rng(1)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, 1e-4, n))
    bars = np.zeros(n, dtype=BAR_DTYPE)
    now = time.time_ns() // MIN * MIN
    bars["time"] = now - MIN * np.arange(n, 0, -1)
    bars["open"], bars["close"] = open_, close
    bars["high"] = np.maximum(open_, close) + wick
    bars["low"] = np.minimum(open_, close) - wick
    bars["volume"] = rng.integers(20, 80, n)
    for col in ("bid", "ask"):
        for f in ("open", "high", "low", "close"):
            bars[f"{col}_{f}"] = np.nan
    return bars


def run(bars: int, rate: float, seconds: float, zoom_all: bool) -> dict[str, float]:
    from osmarkets.data.timeframes import BarSeriesID
    from osmarkets.gui.app import application
    from osmarkets.gui.window import MainWindow

    app = application()
    source = PairSource()
    bsid = BarSeriesID("EUR_USD", 1, "Minutes")
    loaded = time.perf_counter()
    source.preload = [("history", bsid, history(bars), bars)]
    window = MainWindow(source, history=bars)
    window.resize(1280, 800)
    window.show()
    window.open_series(bsid)
    while not window.charts:
        app.processEvents()
    load_s = time.perf_counter() - loaded
    chart = window.charts[bsid]
    for name in ("RSI 14", "MACD 12,26,9", "EMA 50"):
        window.indicator_actions[name].setChecked(True)
    if zoom_all:
        chart.span = bars + 10.0
    latencies: list[float] = []
    original = chart.refresh

    def timed_refresh(force: bool = False) -> bool:
        drew = original(force)
        if drew and source.newest:
            latencies.append((time.time_ns() - source.newest) / 1e6)
        return drew

    chart.refresh = timed_refresh  # type: ignore[method-assign]
    window.draw_timer.timeout.disconnect()
    window.draw_timer.timeout.connect(lambda: chart.refresh())
    context = multiprocessing.get_context("spawn")
    sent, stop = context.Value("q", 0), context.Event()
    proc = context.Process(target=feeder, args=(source.endpoint, rate, sent, stop))
    proc.start()
    while sent.value == 0:
        app.processEvents()
    frames0 = chart.frames
    latencies.clear()
    started = time.perf_counter()
    backlog: list[int] = []
    next_sample = started + 0.5
    while time.perf_counter() - started < seconds:
        app.processEvents()
        if time.perf_counter() >= next_sample:
            next_sample += 0.5
            backlog.append(sent.value - source.consumed)
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    frames = chart.frames - frames0
    stop.set()
    proc.join(5)
    window.close()
    half = len(backlog) // 2
    return {
        "load_s": load_s,
        "fps": frames / elapsed,
        "lat_med": statistics.median(latencies) if latencies else float("nan"),
        "lat_p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "ticks_s": source.consumed / elapsed,
        "backlog_first": statistics.mean(backlog[:half]) if half else float("nan"),
        "backlog_last": statistics.mean(backlog[half:]) if half else float("nan"),
        "backlog_max": max(backlog) if backlog else 0,
        "bucket": chart.bucket,
        "drawn": chart.candles.drawn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"GUI: {args.bars:,} bars loaded, {args.rate:,.0f} ticks/s for {args.seconds:g} s, "
        f"median of {args.repeats} runs (targets: >= 30 fps, latency < 100 ms, "
        f"no growing backlog)"
    )
    header = (
        f"{'view':<22}{'fps':>6}{'lat med ms':>12}{'lat p99 ms':>12}{'ticks/s':>9}"
        f"{'backlog 1st/2nd half':>22}{'candles':>9}{'load s':>8}"
    )
    print(header)
    for label, zoom_all in (("follow (120 bars)", False), ("zoomed out (all)", True)):
        runs = [run(args.bars, args.rate, args.seconds, zoom_all) for _ in range(args.repeats)]

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"{label:<22}{med('fps'):>6.1f}{med('lat_med'):>12.1f}{med('lat_p99'):>12.1f}"
            f"{med('ticks_s'):>9.0f}{med('backlog_first'):>11.1f}/{med('backlog_last'):<10.1f}"
            f"{med('drawn'):>9.0f}{med('load_s'):>8.2f}"
        )


if __name__ == "__main__":
    main()
