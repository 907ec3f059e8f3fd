"""Benchmark of the lock-step simulation (issue 18): ``SimulatedArchitecture.run()`` bars/s with
one step at a time (the lock-step as it was) and with runs (the default), next to the raw
osBrain hop measured in the same run, with the hops one bar needs and the floor they imply.

Measured in one run and printed side by side (medians over ``--repeats``, old and new
interleaved so both see the same machine):

1. the raw osBrain hop between two real agents: a message ping-ponged between two agents'
   PULL handlers (PUSH/PULL, ipc), one-way hops per second;
2. ``SimulatedArchitecture.run()`` with ``_lockstep_run = 1`` (a round trip Router -> Trader ->
   Router -> Brain -> Router per bar: 4 hops) and with runs (one round trip per run of bars,
   see :mod:`osmarkets.agents.router`), on ~30,000 one-minute bars (the shared 1-minute index
   future when present, else generated), SmaCross, checked against the in-process backtest
   (same fills, same final value);
3. for each: the rounds (4 hops each) counted by the Router, hops per bar, and the floor
   = hop rate / hops per bar (bars/s if the hops were all there is);
4. the same with a Brain that never orders (the longest runs).

Run: ``python benchmarks/bench_lockstep.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import osbrain
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import minute_bars  # noqa: E402

from osmarkets import Brain  # noqa: E402
from osmarkets.architecture import SimulatedArchitecture  # noqa: E402
from osmarkets.backtest import backtest  # noqa: E402
from osmarkets.strategies import SmaCross  # noqa: E402

BSID = ("SPI", 1, "Minutes")


class Ping(osbrain.Agent):
    """Sends a message to its peer each time the peer's answer arrives, ``count`` times."""

    def on_init(self) -> None:
        self.bind("PULL", alias="in", handler=self.on_message, serializer="raw")
        self.left = 0
        self.started = 0.0
        self.elapsed = 0.0

    def go(self, peer: Any, count: int) -> None:
        if not self.has_socket("out"):
            self.connect(peer, alias="out")
        self.left = count
        self.elapsed = 0.0
        self.started = time.perf_counter()
        self.send("out", b"x")

    def on_message(self, data: bytes) -> None:
        self.left -= 1
        if self.left > 0:
            self.send("out", data)
        else:
            self.elapsed = time.perf_counter() - self.started


class Pong(osbrain.Agent):
    def on_init(self) -> None:
        self.bind("PULL", alias="in", handler=self.on_message, serializer="raw")

    def reply_to(self, peer: Any) -> None:
        self.connect(peer, alias="out")

    def on_message(self, data: bytes) -> None:
        self.send("out", data)


def hop_rate(count: int = 5_000) -> float:
    """One-way osBrain hops per second between two agents (PUSH/PULL ping-pong on ipc)."""
    ns = osbrain.run_nameserver()
    try:
        ping = osbrain.run_agent("ping", base=Ping, transport="ipc")
        pong = osbrain.run_agent("pong", base=Pong, transport="ipc")
        ping_in = ping.addr("in")
        pong.reply_to(ping_in)
        ping.go(pong.addr("in"), 200)  # warm-up (connections up)
        _until(lambda: ping.get_attr("elapsed") > 0)
        ping.go(pong.addr("in"), count)
        _until(lambda: ping.get_attr("elapsed") > 0)
        return 2 * count / float(ping.get_attr("elapsed"))
    finally:
        ns.shutdown()


def _until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("hop benchmark: no answer")
        time.sleep(0.01)


class Idle(Brain):
    """Never orders: the lock-step's best case (every run as long as allowed)."""

    def on_new_bar(self, series: Any) -> None:
        pass


def simulated(frame: pd.DataFrame, run: int, base: type, params: dict) -> dict[str, Any]:
    """bars/s, rounds and the Result of one SimulatedArchitecture.run() (``run``: the
    longest run, 1 = one step at a time, the lock-step as it was)."""
    cls = type("Bench", (SimulatedArchitecture,), {"_lockstep_run": run})
    with cls({"SPI": frame}, supervise=False, handle_signals=False, log_console=None) as system:
        system.add_brain("brain", base=base, **params)
        system["brain"].subscribe(BSID, 100)
        start = time.perf_counter()
        result = system.run(timeout=900)
        elapsed = time.perf_counter() - start
        info = system["router"].progress()
    return {"rate": len(frame) / elapsed, "rounds": info["rounds"], "result": result,
            "republished": info["republished"]}  # fmt: skip


def same(result: Any, expected: Any) -> bool:
    cols = ["time", "side", "size", "price"]
    fills = result.trades[cols].reset_index(drop=True)
    return bool(fills.equals(expected.trades[cols].reset_index(drop=True))) and (
        abs(result.final_value - expected.final_value) < 1e-6
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", type=int, default=SimulatedArchitecture._lockstep_run,
                        help="the longest run of the new path")  # fmt: skip
    args = parser.parse_args()
    frame, source = minute_bars()
    bars = len(frame)
    print(f"python {sys.version.split()[0]}, osbrain {osbrain.__version__}, medians over "
          f"{args.repeats} repeats, {bars:,} bars ({source}), runs of at most "
          f"{args.run}")  # fmt: skip
    expected = backtest(SmaCross, frame, BSID, history=100, params={"size": 1})
    hops: list[float] = []
    rows: dict[str, list[dict[str, Any]]] = {"old": [], "new": [], "old idle": [], "new idle": []}
    for _ in range(args.repeats):
        hops.append(hop_rate())
        rows["old"].append(simulated(frame, 1, SmaCross, {"size": 1}))
        rows["new"].append(simulated(frame, args.run, SmaCross, {"size": 1}))
        rows["old idle"].append(simulated(frame, 1, Idle, {}))
        rows["new idle"].append(simulated(frame, args.run, Idle, {}))
    rate = statistics.median(hops)
    print(f"raw osBrain hop (agent -> agent, PUSH/PULL ipc)   {rate:10,.0f} hops/s "
          f"({1e6 / rate:.1f} us a hop)")  # fmt: skip
    medians: dict[str, float] = {}
    for name, runs in rows.items():
        speed = statistics.median(r["rate"] for r in runs)
        medians[name] = speed
        per_bar = 4 * statistics.median(r["rounds"] for r in runs) / bars
        floor = rate / per_bar
        check = ""
        if "idle" not in name:
            check = f", same fills and final value as backtest: {all(same(r['result'], expected) for r in runs)}"  # noqa: E501
        label = f"SimulatedArchitecture.run() {name}"
        print(f"{label:<40} {speed:10,.0f} bars/s  hops/bar {per_bar:6.3f}  floor "
              f"{floor:10,.0f} bars/s  ({speed / floor:5.1%} of it; republished "
              f"{statistics.median(r['republished'] for r in runs):,.0f}{check})")  # fmt: skip
    print(f"new / old (SmaCross)                     {medians['new'] / medians['old']:10.2f}x")
    print(f"new / old (a Brain that never orders)    "
          f"{medians['new idle'] / medians['old idle']:10.2f}x")  # fmt: skip
    print(f"fills: {len(expected.trades)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
