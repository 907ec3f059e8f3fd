"""``osmarkets gui``: the real-time window on a running architecture, or on the live demo."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli import examples

if TYPE_CHECKING:
    from ..agents.auth import DeploymentKeys


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gui",
        help="real-time charts of a running architecture (needs the gui extra: "
        "python -m pip install '.[gui]' from the checkout)",
        description="Open the real-time window: candles, indicators, fills, positions and the "
        "agents' status. Closing it leaves the architecture running.",
        **examples(
            "osmarkets gui --demo",
            "osmarkets gui",
            "osmarkets gui --nameserver 127.0.0.1:9090 --key-file deployment.key "
            "--series EUR_USD:M1",
        ),
    )
    parser.add_argument(
        "--nameserver",
        metavar="HOST:PORT",
        help="name server of the architecture (default: $OSMARKETS_NAMESERVER, else the one "
        "architecture running on this machine for this user)",
    )
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help="the deployment's key file, readable by you only (default: the registry entry of "
        "the architecture, which holds its keys)",
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


def _check(args: argparse.Namespace) -> tuple[str, DeploymentKeys] | None:
    """The name server to connect to and the deployment's keys (None with ``--demo``)."""
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
        if args.key_file:
            raise UsageError("--key-file and --demo: the demo makes its own keys")
        return None
    return find_deployment(args.nameserver, args.key_file)


def find_deployment(nameserver: str | None, key_file: str | None) -> tuple[str, DeploymentKeys]:
    """The name server and keys of the deployment to attach to: ``nameserver``
    (``HOST:PORT``, else ``$OSMARKETS_NAMESERVER``, else the one architecture of this user in
    the registry) with the keys of ``key_file`` or of its registry entry. A
    :class:`~osmarkets.cli.UsageError` says what is missing."""
    from ..cli import UsageError

    explicit = nameserver or os.environ.get("OSMARKETS_NAMESERVER")
    if explicit:
        _check_address(explicit)
    if key_file is not None:
        keys, recorded = _read_key_file(key_file)
        address = explicit or recorded or str(_find_local()["nameserver"])
        _check_address(address)
        return address, keys
    if explicit:
        entry = _entry_for(explicit)
        if entry is None:
            from ..registry import registry_dir

            raise UsageError(
                f"--nameserver {explicit}: no architecture of yours runs there (registry "
                f"{registry_dir()}), so its keys are unknown: give its key file with --key-file"
            )
    else:
        entry = _find_local()
    return explicit or str(entry["nameserver"]), _entry_keys(entry)


def _check_address(address: str) -> None:
    from ..cli import UsageError

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--nameserver: expected HOST:PORT, got {address!r}")


def _read_key_file(path: str) -> tuple[DeploymentKeys, str | None]:
    """The keys in ``path`` and the name server it names, if it is a registry entry."""
    from ..agents.auth import read_key_file
    from ..cli import UsageError

    try:
        keys = read_key_file(path)
    except ValueError as exc:
        raise UsageError(f"--key-file: {exc}") from None
    recorded = None
    try:  # read_key_file checked the file's mode: a registry entry also names its name server
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and isinstance(data.get("nameserver"), str):
            recorded = data["nameserver"]
    except (OSError, ValueError):
        pass
    return keys, recorded


def _entry_keys(entry: dict[str, Any]) -> DeploymentKeys:
    """The keys a registry entry holds."""
    from ..agents.auth import read_key_file
    from ..cli import UsageError

    where = f"the architecture at {entry['nameserver']}"
    if "keys" not in entry:
        raise UsageError(f"{where}: its registry entry holds no keys; give --key-file")
    try:
        return read_key_file(entry["path"])
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}; give --key-file") from None


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    try:
        return socket.gethostbyname(host_a) == socket.gethostbyname(host_b)
    except (OSError, UnicodeError):
        return False


def _entry_for(address: str) -> dict[str, Any] | None:
    """The registry entry of the running architecture whose name server is ``address``."""
    from ..registry import running

    for entry in running():
        if _same_address(str(entry["nameserver"]), address):
            return entry
    return None


def _find_local() -> dict[str, Any]:
    """The registry entry of the one architecture this user runs on this machine (every
    Architecture writes one, with its keys; entries of dead processes are cleaned up)."""
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
    return found[0]


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..gui.app import qt_error

    target = _check(args)
    error = qt_error()
    if error is not None:
        raise UsageError(error)
    from ..gui.app import demo_architecture, run_gui

    if target is not None:
        address, keys = target
        return run_gui(address, keys=keys, series=args.series, history=args.history)
    with demo_architecture(speed=args.speed, seed=args.seed) as system:
        print(
            f"osmarkets gui: demo architecture on name server {system.nsaddr} "
            f"(connect another window with --nameserver {system.nsaddr})",
            flush=True,
        )
        return run_gui(
            system.nsaddr,
            keys=system.keys,
            series=args.series or "EUR_USD:M1",
            history=args.history,
        )
