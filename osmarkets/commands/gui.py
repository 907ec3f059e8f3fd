"""``osmarkets gui``: the real-time window on a running architecture, or on the live demo."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gui",
        help="real-time charts of a running architecture (needs osmarkets[gui])",
        description="Open the real-time window: candles, indicators, fills, positions and the "
        "agents' status. Closing it leaves the architecture running.",
    )
    parser.add_argument(
        "--nameserver",
        metavar="HOST:PORT",
        help="name server of the architecture (default: $OSMARKETS_NAMESERVER, else the one "
        "architecture running on this machine for this user)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a live demo architecture (synthetic EUR_USD, SmaCross, simulated broker)",
    )
    parser.add_argument("--series", help="bar series to open first, e.g. EUR_USD:M1")
    parser.add_argument("--history", type=int, default=500, help="bars a chart loads first")
    parser.add_argument(
        "--speed", type=float, default=60.0, help="--demo: times real time (default 60)"
    )
    parser.add_argument("--seed", type=int, default=0, help="--demo: random seed of the quotes")
    parser.set_defaults(handler=run)


def _check(args: argparse.Namespace) -> str | None:
    from ..cli import UsageError
    from ..data.timeframes import BarSeriesID

    if args.history <= 0:
        raise UsageError(f"--history: expected a positive number of bars, got {args.history}")
    if not args.speed > 0:
        raise UsageError(f"--speed: expected a positive factor, got {args.speed}")
    if args.series is not None:
        try:
            BarSeriesID.parse(args.series)
        except ValueError as exc:
            raise UsageError(f"--series: {exc}") from None
    if args.demo:
        if args.nameserver:
            raise UsageError("--nameserver and --demo: give one or the other")
        return None
    address = args.nameserver or os.environ.get("OSMARKETS_NAMESERVER") or _find_local()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--nameserver: expected HOST:PORT, got {address!r}")
    return address


def _find_local() -> str:
    """The name server of the one architecture this user runs on this machine (from the
    registry every Architecture writes; entries of dead processes are cleaned up)."""
    from ..cli import UsageError
    from ..registry import registry_dir, running

    found = running()
    if not found:
        raise UsageError(
            f"--nameserver: no running architecture found (in {registry_dir()}); start one "
            "(e.g. osmarkets demo --speed 60 --bars 3000), give --nameserver HOST:PORT, or --demo"
        )
    if len(found) > 1:
        listed = ", ".join(
            f"{e['nameserver']} ({e.get('kind', '?')}, pid {e['pid']}, started "
            f"{time.strftime('%H:%M:%S', time.localtime(e['started']))})"
            for e in found
        )
        raise UsageError(
            f"--nameserver: {len(found)} architectures are running (newest first), "
            f"give one with --nameserver: {listed}"
        )
    return str(found[0]["nameserver"])


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..gui.app import qt_error

    address = _check(args)
    error = qt_error()
    if error is not None:
        raise UsageError(error)
    from ..gui.app import demo_architecture, run_gui

    if not args.demo:
        return run_gui(address, series=args.series, history=args.history)
    with demo_architecture(speed=args.speed, seed=args.seed) as system:
        print(
            f"osmarkets gui: demo architecture on name server {system.nsaddr} "
            f"(connect another window with --nameserver {system.nsaddr})",
            flush=True,
        )
        return run_gui(system.nsaddr, series=args.series or "EUR_USD:M1", history=args.history)
