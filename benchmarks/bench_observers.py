"""Do observers (GUIs) slow the trading path? Ticks/s through the Trader, with and without them.

Run: python benchmarks/bench_observers.py [--bars N] [--informer-bars M] [--repeats K]
[--only-informer]

A live Architecture replays ``--bars`` minutes of synthetic EUR_USD quotes as fast as possible
(thousands of ticks) through Router and Trader; a Brain buys on its first bar and holds, so the
Trader publishes an account update on its ``observers`` feed for every tick. Measured: ticks/s
from the first tick to the Trader having consumed the last one, median over ``--repeats``, for

* no observer;
* a GUI bridge attached (reads history as an observer, the Trader's and the Overmind's feeds);
* a stalled observer: a SUB socket on the Trader's feed with a receive high-water mark of 1 that
  never reads (PUB drops its messages instead of blocking the Trader);

and a SimulatedArchitecture run (lock-step) of the same bars with and without a GUI bridge.

The Informer case (``--only-informer`` runs just it), over ``--informer-bars`` minutes (1000:
about 48,000 ticks, a run of 5-10 s): a Brain that trades on every bar (alternately buys and
sells 1000 units, so one fill per bar), the same ticks/s measured

* without an Informer;
* with the Informer attached, rule ``fills`` on, batched every second, sending to an Apprise
  ``json://`` webhook: a real HTTP receiver (``ThreadingHTTPServer`` on 127.0.0.1, in this
  process) that answers 200 and counts the posts. At the end of that run the posts received
  and ``system["informer"].status()`` (sent, failures, dropped) are printed.

(With a fill per bar at full speed the Trader used to deadlock past about 3,000 minutes, its
loop and its broker thread each waiting on the other's full inproc queue: fixed, see
``tests/architecture/test_trader_burst.py``. Past 2,000 minutes the Trader still falls behind
the feed, which only makes a run longer.)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zmq

from osmarkets import BarSeries, Brain
from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.gui.bridge import Connection
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")


class Holder(Brain):
    def on_start(self) -> None:
        self.bars = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        if self.bars == 1:
            self.send_order(side="buy", size=1000, symbol=series.bsid.symbol)


class Flipper(Brain):
    """Trades on every bar: buys 1000, sells 1000, buys... (a fill per bar)."""

    def on_start(self) -> None:
        self.bars = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        side = "buy" if self.bars % 2 else "sell"
        self.send_order(side=side, size=1000, symbol=series.bsid.symbol)


class Receiver:
    """A local webhook: answers every POST with 200 and counts them (and their bytes)."""

    def __init__(self) -> None:
        self.posts = 0
        self.bytes = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    receiver.posts += 1
                    receiver.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def _wait(condition: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met")
        time.sleep(0.005)


def live_run(bars: int, observer: str, report: dict[str, Any] | None = None) -> float:
    """Ticks/s through the Trader with ``observer`` in ('none', 'gui', 'stalled') for the
    Holder; 'trading' (the Flipper, no observer) and 'informer' (the Flipper, an Informer
    sending every fill to a local webhook: its figures go in ``report``)."""
    ctx = zmq.Context()
    connection = None
    receiver = Receiver() if observer == "informer" else None
    informer = None
    if receiver is not None:
        informer = {"urls": [receiver.url], "rules": {"fills": True, "batch_seconds": 1.0}}
    brain = Flipper if observer in ("trading", "informer") else Holder
    with Architecture(
        broker_factory=functools.partial(SimulatedBroker, 100_000), informer=informer
    ) as system:
        system.add_brain("brain", base=brain)
        system["brain"].subscribe(M1, 10)
        trader, router = system["trader"], system["router"]
        if observer == "stalled":
            address = trader.addr("observers")
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, 1)
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect(f"{address.transport}://{address.address}")
            sub.setsockopt(zmq.SUBSCRIBE, b"")
        elif observer == "gui":
            connection = Connection(system.nsaddr, keys=system.keys)
            connection.watch(M1, 500)
            _wait(lambda: any(m[0] == "history" for m in connection.drain()), 30)
        started = time.perf_counter()
        system.stream(["EUR_USD"], bars=bars, seed=1, speed=0)
        feeder = system["feeder"]
        _wait(lambda: feeder.get_attr("feed_done") and router.progress()["finished"])
        ticks = router.progress()["ticks_in"]
        _wait(lambda: _consumed(trader.osm_stats()) >= ticks and trader.idle_now())
        elapsed = time.perf_counter() - started
        if connection is not None:
            connection.close()
        if receiver is not None:
            fills = trader.osm_stats().get("fills")
            _informer_report(system["informer"], receiver, elapsed, report)
            if report is not None:
                report["fills"] = fills
    if receiver is not None:
        receiver.close()
    ctx.destroy(linger=0)
    return ticks / elapsed


def _consumed(stats: dict[str, Any]) -> int:
    """Market messages the Trader took (one a tick here): what it received less the orders."""
    return int(stats["received"]) - int(stats["orders"])


def _informer_report(
    informer: Any, receiver: Receiver, elapsed: float, report: dict[str, Any] | None
) -> None:
    """Wait (after the measurement) for the Informer to send what it has, then note its
    status, the posts received, and how far it was behind when the Trader was done."""
    behind = informer.status()

    def sent_all() -> bool:
        status = informer.status()
        return status["queued"] == 0 and status["sending"] == 0

    _wait(sent_all, 180)  # past max_per_minute sends, the rest waits up to a minute
    time.sleep(0.2)  # the last post's handler
    if report is not None:
        report.update(status=informer.status(), posts=receiver.posts, bytes=receiver.bytes,
                      queued_at_end=behind["queued"], elapsed=elapsed)  # fmt: skip


def simulated_run(bars: int, gui: bool) -> float:
    """Bars/s of a lock-stepped SimulatedArchitecture.run() with or without a GUI bridge."""
    with SimulatedArchitecture(None, 100_000, bars=bars, seed=1) as system:
        system.add_brain("sma", base=SmaCross, fast=5, slow=20)
        system["sma"].subscribe(M1, 100)
        connection = Connection(system.nsaddr, keys=system.keys) if gui else None
        if connection is not None:
            connection.watch(M1, 500)
            _wait(lambda: any(m[0] == "history" for m in connection.drain()), 30)
        started = time.perf_counter()
        system.run(timeout=600)
        elapsed = time.perf_counter() - started
        steps = system["router"].progress()["bars_out"]
        if connection is not None:
            connection.close()
    return steps / elapsed


def _print_informer(
    args: argparse.Namespace, live: dict[str, list[float]], reports: list[dict[str, Any]]
) -> None:
    plain, informed = statistics.median(live["trading"]), statistics.median(live["informer"])
    print(f"Informer: {args.informer_bars} minutes of synthetic ticks, a Brain trading every bar, "
          f"median of {args.repeats} runs")  # fmt: skip
    print(f"{'case':<34}{'ticks/s':>10}  runs")
    for name, label in (("trading", "(a) trading Brain, no Informer"),
                        ("informer", "(b) + Informer, webhook per fill")):  # fmt: skip
        runs = ", ".join(f"{v:,.0f}" for v in live[name])
        print(f"{label:<34}{statistics.median(live[name]):>10,.0f}  {runs}")
    ratio = informed / plain
    verdict = "met" if ratio >= 0.90 else "NOT met"
    print(f"(b)/(a): {ratio:.1%} (target >= 90 %: {verdict})")
    for index, report in enumerate(reports, 1):
        status = report["status"]
        print(f"run {index} (b): {report['fills']} fills, {report['posts']} webhook posts "
              f"({report['bytes']:,} bytes), informer queued when the Trader was done "
              f"{report['queued_at_end']}; status: sent {status['sent']}, sends "
              f"{status['sends']}, failures {status['failures']}, dropped "
              f"{status['dropped']}, updates {status['updates']}, update_gaps "
              f"{status['update_gaps']}, last_error {status['last_error']!r}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=300, help="minutes of synthetic quotes")
    parser.add_argument(
        "--informer-bars", type=int, default=1000, help="minutes of the Informer case"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only-informer",
        action="store_true",
        help="run only the trading Brain without and with an Informer",
    )
    args = parser.parse_args()
    names = ("none", "gui", "stalled") if not args.only_informer else ()
    names += ("trading", "informer")
    live = {name: [] for name in names}  # type: dict[str, list[float]]
    sim = {} if args.only_informer else {False: [], True: []}  # type: dict[bool, list[float]]
    reports = []  # type: list[dict[str, Any]]
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit every case
        for name in live:
            report = {}  # type: dict[str, Any]
            bars = args.informer_bars if name in ("trading", "informer") else args.bars
            live[name].append(live_run(bars, name, report))
            if name == "informer":
                reports.append(report)
        for gui in sim:
            sim[gui].append(simulated_run(args.bars, gui))
    if args.only_informer:
        _print_informer(args, live, reports)
        return 0
    base = statistics.median(live["none"])
    print(f"live: {args.bars} minutes of synthetic ticks, median of {args.repeats} runs")
    print(f"{'observer':<22}{'ticks/s':>10}{'ratio':>8}")
    for name, label in (("none", "none"), ("gui", "GUI bridge"), ("stalled", "stalled SUB")):
        value = statistics.median(live[name])
        print(f"{label:<22}{value:>10,.0f}{value / base:>8.2f}")
    plain = statistics.median(sim[False])
    print(f"SimulatedArchitecture.run(): {args.bars} bars (lock-step)")
    print(f"{'observer':<22}{'bars/s':>10}{'ratio':>8}")
    for gui, label in ((False, "none"), (True, "GUI bridge")):
        value = statistics.median(sim[gui])
        print(f"{label:<22}{value:>10,.0f}{value / plain:>8.2f}")
    _print_informer(args, live, reports)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
