"""``osmarkets worker --nameserver HOST:PORT --key-file PATH``: lend this machine's cores to an
optimisation.

Starts Backtester agents here that join a running ``osmarkets optimize`` / ``walkforward`` (or
``explore(runner=AgentRunner(...))``) through its name server, evaluate the batches they pull,
and stop when that optimisation ends.

Trust model: the optimisation's key file (``osmarkets optimize --key-file PATH``, mode 0600)
is what lets this machine join. Every Pyro call is authenticated with its HMAC key, and every
ZeroMQ link is CURVE-encrypted and admits only holders of its secret key; configurations and
results are schema'd MessagePack, never pickles. The job itself (your Brain class, by value, and
the data) must travel as code: it is a cloudpickle this worker runs, received only over the
CURVE-authenticated ``job`` connection from a Generator holding the same key. So: join only
optimisations you started, and keep the key file as private as an SSH key (whoever holds it can
join, send results, and read the Brain class and data).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import UsageError, examples, first_line


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="start Backtester agents that join a running optimisation",
        description="Start Backtester agents here that join a running optimisation through its "
        "name server. Needs the optimisation's key file (written by `osmarkets optimize "
        "--key-file PATH`, mode 0600; copy it here over a secure channel): Pyro calls are "
        "HMAC-authenticated with it and data links CURVE-encrypted, and only holders of the key "
        "can join. The optimisation sends its Brain class as a cloudpickle that this worker "
        "runs, over the CURVE-authenticated job connection only: join only optimisations you "
        "started, and keep the key file private.",
        **examples(
            "osmarkets worker --nameserver 192.168.1.10:9090 --key-file run.key",
            "osmarkets worker --nameserver 192.168.1.10:9090 --key-file run.key --workers 8 "
            "--host 192.168.1.20",
        ),
    )
    parser.add_argument(
        "--nameserver",
        required=True,
        metavar="HOST:PORT",
        help="the optimisation's name server (printed by osmarkets optimize)",
    )
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help="the optimisation's keys (osmarkets optimize --key-file PATH; required, mode 0600)",
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
    from ..agents.auth import read_key_file
    from ..optimize.agents import KeyRefused, join, split_nameserver

    try:
        split_nameserver(args.nameserver)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.workers < 1:
        raise UsageError(f"--workers: expected >= 1, got {args.workers}")
    if not args.key_file:
        raise UsageError(
            "--key-file: required (the file `osmarkets optimize --key-file PATH` wrote)"
        )
    try:
        keys = read_key_file(args.key_file)
    except ValueError as exc:
        raise UsageError(f"--key-file: {first_line(exc)}") from None
    print(f"joining {args.nameserver} with {args.workers} Backtester(s)", flush=True)
    try:
        batches = join(args.nameserver, keys=keys, workers=args.workers, host=args.host)
    except KeyRefused as exc:
        raise UsageError(f"--key-file {args.key_file}: {first_line(exc)}") from None
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"--nameserver {args.nameserver}: {first_line(exc)}") from None
    except Exception as exc:  # Pyro errors: no name server or no optimisation there
        raise UsageError(
            f"--nameserver {args.nameserver}: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    print(f"optimisation over: {batches} batches evaluated here", flush=True)
    return 0
