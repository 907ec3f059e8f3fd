"""``osmarkets sandbox``: run the local OANDA v20 look-alike server until Ctrl-C."""

from __future__ import annotations

import argparse
import secrets
import threading

from ..cli import UsageError, examples


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local OANDA v20-compatible server (prices, candles, orders, streams)",
        description="Serve the OANDA v20 REST and streaming API on 127.0.0.1 with simulated "
        "prices and a simulated account, until Ctrl-C. Point osMarkets (rest_url=, "
        "stream_url=) or any v20 client at the printed URLs.",
        **examples(
            "osmarkets sandbox",
            "osmarkets sandbox --port 8080 --token-file token.txt --instruments EUR_USD,GBP_USD",
            "osmarkets sandbox --port 0 --seed 7 --heartbeat 1",
        ),
    )
    parser.add_argument("--port", type=int, default=8080, help="REST port (default 8080; 0: any)")
    parser.add_argument(
        "--stream-port", type=int, default=None, help="streaming port (default: --port + 1)"
    )
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="read the bearer token to accept from PATH (its first line)",
    )
    tokens.add_argument(
        "--token",
        default=None,
        help="bearer token to accept, visible to every user in `ps`: prefer --token-file "
        "(default: a random token, printed)",
    )
    parser.add_argument(
        "--instruments", default="EUR_USD,USD_JPY", help="comma-separated instruments"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated prices")
    parser.add_argument(
        "--heartbeat", type=float, default=5.0, help="stream heartbeat interval, seconds"
    )
    parser.set_defaults(handler=run)


def _port(value: int, name: str) -> int:
    if not 0 <= value <= 65535:
        raise UsageError(f"{name}: expected a port 0..65535, got {value}")
    return value


def _token_from_file(path: str) -> str:
    """The first line of ``path``, stripped; a one-line :class:`UsageError` if it cannot be
    read or is empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except OSError as exc:
        raise UsageError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--token-file: {path} is not text") from None
    if not token:
        raise UsageError(f"--token-file: {path} is empty (the token is its first line)")
    return token


def run(
    args: argparse.Namespace,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set, for tests); ``ready`` is set once
    serving."""
    from ..brokers.oanda.sandbox import OandaSandbox

    port = _port(args.port, "--port")
    stream_port = _port(
        args.stream_port if args.stream_port is not None else (port + 1 if port else 0),
        "--stream-port",
    )
    if not args.heartbeat > 0:
        raise UsageError(f"--heartbeat: expected seconds > 0, got {args.heartbeat}")
    if args.token is not None and not args.token.strip():
        raise UsageError("--token: expected a non-empty token")
    token_file = getattr(args, "token_file", None)
    instruments = [name.strip() for name in args.instruments.split(",") if name.strip()]
    token = (_token_from_file(token_file) if token_file else None) or args.token
    token = token or secrets.token_hex(16)
    try:
        sandbox = OandaSandbox(
            token=token,
            instruments=instruments,
            seed=args.seed,
            heartbeat=args.heartbeat,
            port=port,
            stream_port=stream_port,
        )
        sandbox.start()
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    with sandbox:
        print(f"OANDA sandbox serving {', '.join(instruments)}", flush=True)
        print(f"  rest_url   = {sandbox.rest_url}")
        print(f"  stream_url = {sandbox.stream_url}")
        print(f"  account_id = {sandbox.account_id}")
        if token_file:  # not printed: whoever reads the output need not see it
            print(f"  token      = (the first line of {token_file})")
        else:
            print(f"  token      = {token}")
        print("Ctrl-C to stop.", flush=True)
        if ready is not None:
            ready.set()
        (stop or threading.Event()).wait()  # until KeyboardInterrupt
    return 0
