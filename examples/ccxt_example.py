"""SmaCross on a crypto exchange through ccxt: BTC/USDT one-minute bars, spot.

On the local exchange sandbox (no account, no internet)::

    python examples/ccxt_example.py

Unchanged but for two options on Binance's spot testnet (https://testnet.binance.vision gives
a key and secret): ``sandbox=True``, and the key and secret, read from the environment (never
from the command line)::

    export CCXT_API_KEY=... CCXT_SECRET=...
    python examples/ccxt_example.py --testnet

``--seconds N`` stops after N seconds (default: run until Ctrl-C). Every agent stops on exit, on
an exception and on Ctrl-C / SIGTERM. The deployment's journal and the Trader's state file live
in ``--state-dir``: run it again after a crash and it resumes (no order sent twice).
"""

import argparse
import contextlib
import os
import time

from osmarkets import run_script
from osmarkets.architecture import CcxtArchitecture
from osmarkets.strategies import SmaCross

SYMBOL = "BTC/USDT"


class CryptoSmaCross(SmaCross):
    """SmaCross in BTC. The exchange takes its fee on a buy in BTC, so the position is a little
    less than was bought and off the step: ``lot`` makes the strategy sell the whole steps it
    holds and count the dust below one step as flat."""

    fast = 5
    slow = 15
    size = 0.001
    lot = 0.00001  # BTC/USDT's amount step on Binance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--testnet", action="store_true", help="Binance's spot testnet")
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    parser.add_argument(
        "--state-dir", default=os.path.expanduser("~/.osmarkets/ccxt-example"),
        help="where the deployment's journal is kept (running again resumes from it)",
    )  # fmt: skip
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.testnet:
            # the two options: the exchange's testnet, and the keys (from the environment)
            options = {"sandbox": True, "api_key": None, "secret": None}
        else:
            from osmarkets.brokers.ccxt import ExchangeSandbox

            sandbox = stack.enter_context(ExchangeSandbox(symbols=[SYMBOL], seed=1))
            ccxt_options = sandbox.ccxt_options()
            options = {
                "api_key": ccxt_options.pop("apiKey"),
                "secret": ccxt_options.pop("secret"),
                "options": ccxt_options,  # ccxt's binance class, pointed at the sandbox
            }
            print(f"exchange sandbox on {sandbox.url}", flush=True)
        system = stack.enter_context(
            CcxtArchitecture("binance", state_dir=args.state_dir, **options)
        )
        system.add_brain("sma", base=CryptoSmaCross)
        system["sma"].subscribe((SYMBOL, 1, "Minutes"), 100)  # history first, from the exchange
        system.stream([SYMBOL])
        started = time.monotonic()
        while args.seconds is None or time.monotonic() - started < args.seconds:
            time.sleep(min(5.0, args.seconds or 5.0, 1.0 + time.monotonic() - started))
            stats = system["trader"].osm_stats()
            print(f"bars {system['sma'].get_attr('osm_bars')}  orders {stats['orders']}  "
                  f"fills {stats['fills']}  positions {system['trader'].get_attr('positions')}",
                  flush=True)  # fmt: skip
        print(system.status()[["kind", "pid", "running", "received", "errors"]])
    return 0


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
