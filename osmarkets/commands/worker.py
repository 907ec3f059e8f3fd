"""``osmarkets worker --nameserver HOST:PORT``: lend this machine's cores to an optimisation.

Starts Backtester agents here that join a running ``osmarkets optimize`` / ``walkforward`` (or
``explore(workers=...)``) through its name server, evaluate the batches they pull, and stop
when that optimisation ends.

Trust model: the optimisation sends its Brain class (by value) and data as pickles, and
unpickling runs code. Join only optimisations you started, and let an optimisation listen
beyond 127.0.0.1 (``--host``) only on a network where every machine is yours.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="start Backtester agents that join a running optimisation",
        description="Start Backtester agents here that join a running optimisation through "
        "its name server (pickle over the network: only join optimisations you trust).",
    )
    parser.add_argument(
        "--nameserver",
        required=True,
        metavar="HOST:PORT",
        help="the optimisation's name server (printed by osmarkets optimize)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="Backtester agents to start (default: one per core)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address this machine's agents bind to (default 127.0.0.1)",
    )
    parser.set_defaults(handler=run)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..optimize.agents import join, split_nameserver

    try:
        split_nameserver(args.nameserver)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.workers < 1:
        raise UsageError(f"--workers: expected >= 1, got {args.workers}")
    print(f"joining {args.nameserver} with {args.workers} Backtester(s)", flush=True)
    try:
        batches = join(args.nameserver, workers=args.workers, host=args.host)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--nameserver {args.nameserver}: {exc}") from None
    except Exception as exc:  # Pyro errors: no name server or no optimisation there
        raise UsageError(f"--nameserver {args.nameserver}: {type(exc).__name__}: {exc}") from None
    print(f"optimisation over: {batches} batches evaluated here", flush=True)
    return 0
