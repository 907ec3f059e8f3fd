"""``osmarkets sandbox``: run the local OANDA v20 look-alike server (or, with
``--exchange binance``, the Binance-spot exchange sandbox) until Ctrl-C."""

from __future__ import annotations

import argparse
import secrets
import threading

from ..cli import UsageError, examples


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local OANDA v20-compatible server (prices, candles, orders, streams); "
        "--exchange binance for the crypto exchange sandbox",
        description="Serve the OANDA v20 REST and streaming API on 127.0.0.1 with simulated "
        "prices and a simulated account, until Ctrl-C. Point osMarkets (rest_url=, "
        "stream_url=) or any v20 client at the printed URLs. With --exchange binance, serve "
        "Binance spot's REST API and market streams instead (one port), for ccxt.binance.",
        **examples(
            "osmarkets sandbox",
            "osmarkets sandbox --port 8080 --token-file token.txt --instruments EUR_USD,GBP_USD",
            "osmarkets sandbox --exchange binance --port 8090 --symbols BTC/USDT,ETH/USDT",
        ),
    )
    parser.add_argument(
        "--exchange",
        choices=("oanda", "binance"),
        default="oanda",
        help="which server: the OANDA v20 sandbox (default) or the Binance-spot sandbox",
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
        "--instruments",
        default=None,
        help="comma-separated OANDA instruments (default EUR_USD,USD_JPY)",
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="--exchange binance: comma-separated spot symbols (default BTC/USDT,ETH/USDT)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="--exchange binance: the API key to accept (default: random)",
    )
    parser.add_argument(
        "--secret-file",
        default=None,
        metavar="PATH",
        help="--exchange binance: read the API secret from PATH (its first line; default: a "
        "random secret, printed)",
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


def _token_from_file(path: str, option: str = "--token-file", what: str = "token") -> str:
    """The first line of ``path``, stripped; a one-line :class:`UsageError` if it cannot be
    read or is empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {path} is not text") from None
    if not token:
        raise UsageError(f"{option}: {path} is empty (the {what} is its first line)")
    return token


def run(
    args: argparse.Namespace,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set, for tests); ``ready`` is set once
    serving."""
    if getattr(args, "exchange", "oanda") == "binance":
        return _run_exchange(args, ready, stop)
    from ..brokers.oanda.sandbox import OandaSandbox

    for option in ("symbols", "api_key", "secret_file"):
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag}: only with --exchange binance")
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
    instruments = [
        name.strip() for name in (args.instruments or "EUR_USD,USD_JPY").split(",") if name.strip()
    ]
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


def _run_exchange(
    args: argparse.Namespace,
    ready: threading.Event | None,
    stop: threading.Event | None,
) -> int:
    """``--exchange binance``: the Binance-spot sandbox on ``--port`` (REST and streams)."""
    for option in ("instruments", "token", "token_file", "stream_port"):
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag}: not with --exchange binance (it is for OANDA)")
    port = _port(args.port, "--port")
    symbols = [s.strip() for s in (args.symbols or "BTC/USDT,ETH/USDT").split(",") if s.strip()]
    if args.api_key is not None and not args.api_key.strip().isalnum():
        raise UsageError("--api-key: expected letters and digits only")
    secret_file = args.secret_file
    secret = _token_from_file(secret_file, "--secret-file", "secret") if secret_file else None
    try:
        from ..brokers.ccxt import ExchangeSandbox
    except ImportError as exc:  # aiohttp comes with ccxt: pip install osmarkets[crypto]
        raise UsageError(
            f"--exchange binance needs ccxt (pip install osmarkets[crypto]): {exc}"
        ) from None
    try:
        sandbox = ExchangeSandbox(
            symbols=symbols, seed=args.seed, api_key=args.api_key, secret=secret, port=port
        )
        sandbox.start()
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    with sandbox:
        print(f"Binance-spot exchange sandbox serving {', '.join(symbols)}", flush=True)
        print(f"  url     = {sandbox.url}   (REST: /api/v3/...)")
        print(f"  ws_url  = {sandbox.ws_url}")
        print(f"  api key = {sandbox.api_key}")
        if secret_file:  # not printed: whoever reads the output need not see it
            print(f"  secret  = (the first line of {secret_file})")
        else:
            print(f"  secret  = {sandbox.secret}   (a generated test credential, valid only "
                  "here)")  # fmt: skip
        print(f"  ccxt    = urls.api public/private = {sandbox.url}/api/v3, urls.api.ws.spot = "
              f"ws_url; options fetchMarkets.types=['spot'], fetchMargins=False, "
              "fetchCurrencies=False")  # fmt: skip
        print("Ctrl-C to stop.", flush=True)
        if ready is not None:
            ready.set()
        (stop or threading.Event()).wait()  # until KeyboardInterrupt
    return 0
