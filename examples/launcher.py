"""Deploy the example SmaCross Brain on the simulated architecture.

Every agent (name server, Logger, Feeder, Router, Brain, Trader) runs in its own process; the
``with`` block shuts them all down on exit, on an exception and on Ctrl-C / SIGTERM.

    python examples/launcher.py            # 500 synthetic one-minute bars of EUR_USD
    python examples/launcher.py bars.csv   # or replay your own bars (a 'time' column + OHLC)
"""

import sys

from sma_cross import SmaCross

from osmarkets import run_script
from osmarkets.architecture import SimulatedArchitecture


def main() -> int:
    data = {"EUR_USD": sys.argv[1]} if len(sys.argv) > 1 else None
    with SimulatedArchitecture(data, cash=100_000, seed=1, bars=500, logging=True) as system:
        system.add_brain("example", base=SmaCross, fast=10, slow=30)
        system["example"].set_attr(size=2000)
        system["example"].subscribe(("EUR_USD", 1, "Minutes"), 100)
        result = system.run(progress=lambda info: print(
            f"bars {info['bars_out']}  orders {info['orders']}  fills {info['fills']}  "
            f"equity {info['equity']:,.2f}"
        ))  # fmt: skip
        print(system.status()[["kind", "pid", "running", "received", "errors"]])
    print(result.trades[["time", "side", "size", "price"]].to_string())
    print(f"final value {result.final_value:,.2f}")
    return 0


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
