"""The OANDA launcher of the design page: SmaCross on EUR_USD one-minute bars.

Against your fxTrade Practice account::

    export OANDA_ACCESS_TOKEN=$(cat ~/.oanda-token) OANDA_ACCOUNT_ID=101-004-1234567-001
    python examples/oanda_example.py

Unchanged against the local sandbox (``osmarkets sandbox`` prints its URLs and token), by
setting the two URLs::

    export OANDA_REST_URL=http://127.0.0.1:8080 OANDA_STREAM_URL=http://127.0.0.1:8081
    python examples/oanda_example.py

``OANDA_ENVIRONMENT=live`` trades real money and also needs ``OSMARKETS_CONFIRM_LIVE=1``;
``--seconds N`` stops after N seconds (default: run until Ctrl-C). Every agent stops on exit,
on an exception and on Ctrl-C / SIGTERM.

The deployment's journal lives in ``--state-dir`` (default ``~/.osmarkets/oanda-example``):
if this process is killed (even with SIGKILL), running it again resumes: it reconciles with
the account, sends no order twice, restores the Brain's recovery point and replays the bars it
missed (see "What survives a crash" in the docs).
"""

import argparse
import os
import time

from sma_cross import SmaCross as Example

from osmarkets import run_script
from osmarkets.architecture import OandaArchitecture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    parser.add_argument(
        "--state-dir", default=os.path.expanduser("~/.osmarkets/oanda-example"),
        help="where the deployment's journal is kept (running again resumes from it)",
    )  # fmt: skip
    args = parser.parse_args()
    token = os.environ.get("OANDA_ACCESS_TOKEN")  # never on the command line
    system = OandaArchitecture(
        logging=True,
        account_id=os.environ.get("OANDA_ACCOUNT_ID", "101-004-1234567-001"),
        access_token=token,
        environment=os.environ.get("OANDA_ENVIRONMENT", "practice"),  # or 'live'
        rest_url=os.environ.get("OANDA_REST_URL"),  # None: OANDA's own hosts
        stream_url=os.environ.get("OANDA_STREAM_URL"),
        state_dir=args.state_dir,
    )
    if system.resumed_from is not None:
        print(f"resuming deployment {system.run_id}: its previous owner (pid "
              f"{system.resumed_from}) died without shutting down", flush=True)  # fmt: skip
    with system:
        system.stream(["EUR_USD"])
        system.add_brain("example", base=Example)
        system["example"].set_attr(DEBUG=True)
        system["example"].subscribe(("EUR_USD", 1, "Minutes"), 100)  # keep 100 bars
        started = time.monotonic()
        while args.seconds is None or time.monotonic() - started < args.seconds:
            time.sleep(min(5.0, args.seconds or 5.0, 1.0 + time.monotonic() - started))
            stats = system["trader"].osm_stats()
            print(f"bars {system['example'].get_attr('osm_bars')}  orders {stats['orders']}  "
                  f"fills {stats['fills']}  positions {system['trader'].get_attr('positions')}",
                  flush=True)  # fmt: skip
        print(system.status()[["kind", "pid", "running", "received", "errors"]])
    return 0


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
