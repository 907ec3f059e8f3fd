"""Benchmark of the agent pipeline (real osBrain processes on loopback).

Measured in one run and printed side by side:

1. raw osBrain PUSH/PULL hop: one-way latency of a message into an osBrain agent's handler;
2. sustained ticks/s through Feeder -> Router -> Brain (``on_tick``), checking zero loss;
3. tick-to-order latency, from the Feeder's timestamp to the Trader's receipt of the order the
   Brain sent on that tick (3 hops), compared with 3 x the raw hop;
4. the wire codec (msgspec MessagePack with schema validation, :mod:`osmarkets.wire`) against
   the pickle it replaced, per message kind, encode + decode;
5. ``SimulatedArchitecture.run()`` bars/s on ~30,000 one-minute bars (the shared 1-minute
   index future when present, else generated), next to the in-process backtest on the same
   bars, with a check that both give the same fills;
6. the live brokers' adapters on their local sandboxes, side by side: quotes/s from the
   broker's stream to a Brain's ``on_tick`` and tick-to-order latency (the quote's timestamp to
   the Trader's receipt of the order the Brain sent on it), OANDA (v20 pricing stream) next to
   ccxt (Binance's ``bookTicker`` websocket, ccxt.pro). Both sandboxes publish a quote every
   2 ms; the figures include the sandboxes' own Python servers.

Run: ``python benchmarks/bench_pipeline.py [--repeats 3] [--ticks 200000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import osbrain
import pandas as pd
import zmq

from osmarkets import Brain
from osmarkets.agents.feeder import zmq_url
from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.backtest import backtest
from osmarkets.strategies import SmaCross

MARKET = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"


class Sink(osbrain.Agent):
    def on_init(self) -> None:
        self.latencies: list[int] = []
        self.bind("PULL", alias="in", handler=self.on_message, serializer="raw")

    def on_message(self, data: bytes) -> None:
        self.latencies.append(time.time_ns() - int(data))


class CountTicks(Brain):
    def on_tick(self, tick) -> None:  # type: ignore[no-untyped-def]
        self.ticks = getattr(self, "ticks", 0) + 1


class TickOrders(Brain):
    """Sends an order on every ``every``-th tick and remembers the tick's time."""

    every = 5
    symbol = "EUR_USD"
    size = 1.0

    def on_start(self) -> None:
        self.count = 0
        self.sent: dict[str, int] = {}

    def on_tick(self, tick) -> None:  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count % self.every == 0:
            side = "buy" if (self.count // self.every) % 2 else "sell"
            client_id = self.send_order(side=side, size=self.size, symbol=self.symbol)
            self.sent[client_id] = tick.time


def quantiles(values_ns: list[int]) -> tuple[float, float]:
    arr = np.asarray(values_ns, dtype=float) / 1000.0
    return float(np.median(arr)), float(np.percentile(arr, 99))


def raw_hop(count: int = 3000) -> tuple[float, float]:
    ns = osbrain.run_nameserver()
    try:
        sink = osbrain.run_agent("sink", base=Sink)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(zmq_url(sink.addr("in")))
        for _ in range(count):
            push.send(str(time.time_ns()).encode())
            time.sleep(0.0002)  # paced: latency, not queueing
        deadline = time.monotonic() + 10
        while len(sink.get_attr("latencies")) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = sink.get_attr("latencies")[200:]
        push.close(linger=0)
        return quantiles(latencies)
    finally:
        ns.shutdown()


def codec_costs(repeats: int = 20_000) -> list[tuple[str, float, float]]:
    """(message, pickle us, wire us): encode + decode of one message, medians of 5 runs."""
    import pickle

    from osmarkets import wire
    from osmarkets.brokers.base import Order
    from osmarkets.data.timeframes import BarSeriesID
    from osmarkets.data.types import Bar, Tick

    tick = Tick(1_700_000_000_000_000_000, 1.10001, 1.10011)
    cases = [
        ("tick", ("tick", "EUR_USD", tick), wire.Decoder(wire.ROUTER_IN)),
        ("100-tick batch", ("ticks", "EUR_USD", [tick] * 100), wire.Decoder(wire.ROUTER_IN)),
        ("bar publication", ("bar", BarSeriesID("EUR_USD", 1, "Minutes"), 7,
                             Bar(tick.time, 1.1, 1.2, 1.0, 1.15, 3.0), None),
         wire.Decoder(wire.BRAIN_PUB)),
        ("order", ("order", Order("b-1", "EUR_USD", "buy", 100.0, brain="b"), "0" * 32),
         wire.Decoder(wire.TRADER_ORDERS)),
    ]  # fmt: skip
    out = []
    for name, message, decode in cases:
        count = repeats if name != "100-tick batch" else repeats // 20

        def run_pickle(message: tuple = message, count: int = count) -> float:
            start = time.perf_counter()
            for _ in range(count):
                pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
            return (time.perf_counter() - start) / count * 1e6

        def run_wire(message: tuple = message, decode=decode, count: int = count) -> float:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            for _ in range(count):
                decode(wire.encode(message))
            return (time.perf_counter() - start) / count * 1e6

        pickled = statistics.median(run_pickle() for _ in range(5))
        wired = statistics.median(run_wire() for _ in range(5))
        out.append((name, pickled, wired))
    return out


def synthetic_tick_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    mid = 1.1 * np.exp(np.cumsum(rng.normal(0, 2e-5, n)))
    times = pd.date_range("2024-01-02", periods=n, freq="100ms", tz="UTC", name="time")
    return pd.DataFrame({"bid": mid - 0.00005, "ask": mid + 0.00005}, index=times)


def throughput(ticks: int, durability: str = "process") -> tuple[float, int, int]:
    """``durability``: the Architecture's (``'none'``: no journal, to measure its cost)."""
    frame = synthetic_tick_frame(ticks)
    with Architecture(supervise=False, handle_signals=False, durability=durability) as system:
        system.add_brain("count", base=CountTicks)
        system["count"].subscribe(("EUR_USD", 1, "Minutes"), 10)
        start = time.perf_counter()
        system.stream(data={"EUR_USD": frame}, speed=0, batch=200)
        brain = system["count"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = brain.get_attr("osm_ticks")
            if got >= ticks or system["feeder"].get_attr("feed_done") and got >= ticks:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        got = brain.get_attr("osm_ticks")
        gaps = brain.get_attr("osm_tick_gaps")
    return got / elapsed, ticks - got, gaps


def tick_to_order(seconds: float = 6.0, durability: str = "process") -> tuple[float, float, int]:
    with Architecture(supervise=False, handle_signals=False, durability=durability) as system:
        system.add_brain("lat", base=TickOrders)
        system["lat"].subscribe(("EUR_USD", 1, "Minutes"), 10)
        # ~1,000 ticks/s restamped with the wall clock: a live feed, not a replay
        system.stream(["EUR_USD"], seed=1, speed=1000, stamp_now=True,
                      options={"ticks_per_minute": 60})  # fmt: skip
        time.sleep(seconds)  # measuring for a duration, not synchronising
        sent = system["lat"].get_attr("sent")
        receipts = dict(system["trader"].latency_receipts())
    latencies = [receipts[c] - t for c, t in sent.items() if c in receipts]
    latencies = latencies[len(latencies) // 10 :]  # drop the warm-up
    median, p99 = quantiles(latencies)
    return median, p99, len(latencies)


def live_broker(kind: str, seconds: float = 6.0) -> tuple[float, float, float, int]:
    """Quotes/s to a Brain, tick-to-order median and p99 (us), orders measured: the
    architecture of ``kind`` ('oanda' or 'ccxt') on its local sandbox."""
    import contextlib
    import secrets

    from osmarkets.architecture import CcxtArchitecture, OandaArchitecture
    from osmarkets.brokers.ccxt import ExchangeSandbox
    from osmarkets.brokers.oanda import OandaSandbox

    with contextlib.ExitStack() as stack:
        if kind == "oanda":
            token = secrets.token_hex(16)
            sandbox = stack.enter_context(
                OandaSandbox(token=token, instruments=["EUR_USD"], tick_interval=0.002)
            )
            system = stack.enter_context(OandaArchitecture(
                account_id=sandbox.account_id, access_token=token, rest_url=sandbox.rest_url,
                stream_url=sandbox.stream_url, supervise=False, handle_signals=False,
                log_console=None,
            ))  # fmt: skip
            symbol, size = "EUR_USD", 1.0
        else:
            exchange = stack.enter_context(ExchangeSandbox(
                symbols=["BTC/USDT"], tick_interval=0.002, balances={"USDT": 10_000_000},
                weight_limit=None,
            ))  # fmt: skip
            options = exchange.ccxt_options()
            key, secret = options.pop("apiKey"), options.pop("secret")
            system = stack.enter_context(CcxtArchitecture(
                "binance", key, secret, options=options, supervise=False,
                handle_signals=False, log_console=None,
            ))  # fmt: skip
            symbol, size = "BTC/USDT", 0.001
        system.add_brain("lat", base=TickOrders, every=20, symbol=symbol, size=size)
        system["lat"].subscribe((symbol, 1, "Minutes"), 10)
        system.stream([symbol])
        brain = system["lat"]
        first = brain.get_attr("osm_ticks")
        start = time.perf_counter()
        time.sleep(seconds)  # measuring for a duration, not synchronising
        rate = (brain.get_attr("osm_ticks") - first) / (time.perf_counter() - start)
        sent = brain.get_attr("sent")
        receipts = dict(system["trader"].latency_receipts())
    latencies = [receipts[c] - t for c, t in sent.items() if c in receipts]
    latencies = latencies[len(latencies) // 10 :]  # drop the warm-up
    median, p99 = quantiles(latencies)
    return rate, median, p99, len(latencies)


def minute_bars() -> tuple[pd.DataFrame, str]:
    path = MARKET / "2006-01-02-volume-min-001.txt"
    if path.exists():
        # the header names 7 columns for 8 fields (date and time are separate)
        names = ["Date", "Time", "Open", "High", "Low", "Close", "Volume", "OpenInterest"]
        raw = pd.read_csv(path, header=None, skiprows=1, names=names)
        index = pd.to_datetime(raw["Date"] + " " + raw["Time"], utc=True)
        frame = pd.DataFrame(
            {
                c.lower(): raw[c].to_numpy(dtype=float)
                for c in ("Open", "High", "Low", "Close", "Volume")
            },  # fmt: skip
            index=pd.DatetimeIndex(index, name="time"),
        )
        frame = frame[~frame.index.duplicated()].sort_index()
        return frame, path.name
    rng = np.random.default_rng(0)
    n = 30_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2006-01-02", periods=n, freq="1min", tz="UTC", name="time")
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close),
                          "low": np.minimum(open_, close), "close": close, "volume": 1.0},
                         index=index)  # fmt: skip
    return frame, "generated"


def simulated_run(
    frame: pd.DataFrame, durability: str = "process"
) -> tuple[float, float, bool, int]:
    bsid = ("SPI", 1, "Minutes")
    start = time.perf_counter()
    expected = backtest(SmaCross, frame, bsid, history=100, params={"size": 1})
    in_process = len(frame) / (time.perf_counter() - start)
    with SimulatedArchitecture(
        {"SPI": frame}, supervise=False, handle_signals=False, durability=durability
    ) as system:
        system.add_brain("sma", base=SmaCross, size=1)
        system["sma"].subscribe(bsid, 100)
        start = time.perf_counter()
        result = system.run(timeout=600)
        agents = len(frame) / (time.perf_counter() - start)
    cols = ["time", "side", "size", "price"]
    same = (
        result.trades[cols]
        .reset_index(drop=True)
        .equals(expected.trades[cols].reset_index(drop=True))
    )
    return agents, in_process, same, len(result.trades)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument(
        "--durability", choices=["process", "power", "none"], default="process",
        help="the architectures' journal ('none': without; benchmarks/chaos_live.py compares)",
    )  # fmt: skip
    parser.add_argument(
        "--only-live",
        action="store_true",
        help="only the live brokers' rows (OANDA and ccxt sandboxes)",
    )
    args = parser.parse_args()
    version = sys.version.split()[0]
    print(f"python {version}, osbrain {osbrain.__version__}, medians over {args.repeats} repeats"
          f", durability={args.durability}")  # fmt: skip
    if not args.only_live:
        pipeline(args)
    live_rows(args.repeats)
    return 0


def pipeline(args: argparse.Namespace) -> None:
    """Rows 1 to 5 (see the module docstring)."""

    hops = [raw_hop() for _ in range(args.repeats)]
    hop_median = statistics.median(h[0] for h in hops)
    hop_p99 = statistics.median(h[1] for h in hops)
    print(f"raw osBrain PUSH/PULL hop      median {hop_median:8.1f} us   p99 {hop_p99:8.1f} us")

    runs = [throughput(args.ticks, args.durability) for _ in range(args.repeats)]
    rate = statistics.median(r[0] for r in runs)
    lost = max(r[1] for r in runs)
    gaps = max(r[2] for r in runs)
    verdict = "zero loss" if lost == 0 and gaps == 0 else f"LOST {lost} ticks, {gaps} gaps"
    print(f"Feeder->Router->Brain          {rate:10,.0f} ticks/s ({args.ticks:,} ticks, "
          f"{verdict}; target >= 50,000)")  # fmt: skip

    lats = [tick_to_order(durability=args.durability) for _ in range(args.repeats)]
    lat_median = statistics.median(x[0] for x in lats)
    lat_p99 = statistics.median(x[1] for x in lats)
    print(f"tick-to-order (3 hops)         median {lat_median:8.1f} us   p99 {lat_p99:8.1f} us"
          f"   ({lats[0][2]} orders/run)")  # fmt: skip
    ratio = lat_median / (3 * hop_median)
    print(f"  median / (3 x raw hop)       {ratio:8.2f}   (target <= 3)")

    for name, pickled, wired in codec_costs():
        print(f"codec {name:<24} pickle {pickled:7.2f} us   wire {wired:7.2f} us   "
              f"(wire / pickle {wired / pickled:5.2f}, decode validates)")  # fmt: skip

    frame, source = minute_bars()
    sims = [simulated_run(frame, args.durability) for _ in range(args.repeats)]
    agents = statistics.median(s[0] for s in sims)
    inproc = statistics.median(s[1] for s in sims)
    same = all(s[2] for s in sims)
    print(f"SimulatedArchitecture.run()    {agents:10,.0f} bars/s on {len(frame):,} bars "
          f"({source}), {sims[0][3]} fills, same fills as backtest: {same}")  # fmt: skip
    print(f"in-process backtest            {inproc:10,.0f} bars/s   "
          f"(lock-step costs x{inproc / agents:,.0f})")  # fmt: skip


def live_rows(repeats: int) -> None:
    """Row 6: the OANDA and ccxt adapters on their sandboxes, in the same run."""
    for kind, label in (("oanda", "OANDA sandbox (v20 stream)"),
                        ("ccxt", "ccxt sandbox (bookTicker ws)")):  # fmt: skip
        lives = [live_broker(kind) for _ in range(repeats)]
        rate = statistics.median(x[0] for x in lives)
        median = statistics.median(x[1] for x in lives)
        p99 = statistics.median(x[2] for x in lives)
        print(f"{label:<30} {rate:8,.0f} quotes/s   tick-to-order median {median:8.1f} us   "
              f"p99 {p99:9.1f} us   ({lives[0][3]} orders/run)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
