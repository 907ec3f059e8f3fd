"""``osmarkets demo``: the whole architecture on the simulated broker, no account, no data.

Starts the name server, a Logger, a Feeder of seeded synthetic EUR_USD quotes, the Router, the
example SMA-cross Brain, a Trader on the simulated broker and the Overmind; shows a progress line
(bars, orders, fills, equity) and a final summary, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..cli import examples


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole architecture on synthetic quotes and the simulated broker",
        description="Run name server, Logger, synthetic Feeder, Router, the example SmaCross "
        "Brain, a Trader on the simulated broker and the Overmind; no account or data needed.",
        **examples(
            "osmarkets demo",
            "osmarkets demo --broker oanda-sandbox --speed 600",
            "osmarkets demo --broker ccxt-sandbox --symbol BTC/USDT",
        ),
    )
    parser.add_argument(
        "--bars",
        type=int,
        default=300,
        help="one-minute bars of synthetic quotes to replay (default 300)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the quotes")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="replay speed as a factor of real time (0 = as fast as possible)",
    )
    parser.add_argument(
        "--symbol", default=None,
        help="instrument name (default EUR_USD; BTC/USDT with --broker ccxt-sandbox)",
    )  # fmt: skip
    parser.add_argument("--cash", type=float, default=100_000.0, help="starting cash")
    parser.add_argument(
        "--broker",
        choices=("simulated", "oanda-sandbox", "ccxt-sandbox"),
        default="simulated",
        help="'oanda-sandbox': the OandaArchitecture against a local OANDA sandbox; "
        "'ccxt-sandbox': the CcxtArchitecture (ccxt's binance classes) against a local "
        "exchange sandbox (--symbol BTC/USDT by default); their clocks run --speed times real "
        "time (default 600)",
    )
    parser.set_defaults(handler=run_demo)  # fmt: skip


def _check(args: argparse.Namespace) -> None:
    from ..cli import UsageError
    from ..data.timeframes import BarSeriesID

    if args.symbol is None:
        crypto = getattr(args, "broker", "simulated") == "ccxt-sandbox"
        args.symbol = "BTC/USDT" if crypto else "EUR_USD"
    if args.bars <= 0:
        raise UsageError(f"--bars: expected a positive number of bars, got {args.bars}")
    if not args.speed >= 0:
        raise UsageError(f"--speed: expected 0 or a positive factor, got {args.speed}")
    if not args.cash > 0:
        raise UsageError(f"--cash: expected a positive amount, got {args.cash}")
    try:
        BarSeriesID(args.symbol, 1, "Minutes")
    except ValueError as exc:
        raise UsageError(f"--symbol: {exc}") from None


def run_demo(args: argparse.Namespace) -> int:
    _check(args)
    if getattr(args, "broker", "simulated") == "oanda-sandbox":
        return run_sandbox_demo(args)
    if getattr(args, "broker", "simulated") == "ccxt-sandbox":
        return run_ccxt_demo(args)
    from ..architecture import SimulatedArchitecture
    from ..strategies import SmaCross

    interactive = sys.stdout.isatty()
    started = time.monotonic()

    def show(info: dict[str, Any]) -> None:
        equity = info.get("equity")
        text = (
            f"bars {info.get('bars_out', 0):>6}  ticks {info.get('ticks_in', 0):>7}  "
            f"orders {info.get('orders', 0):>4}  fills {info.get('fills', 0):>4}  "
            f"equity {equity if equity is not None else float('nan'):>12,.2f}  "
            f"{time.monotonic() - started:5.1f} s"
        )
        print("\r" + text if interactive else text, end="" if interactive else "\n", flush=True)

    print(f"osmarkets demo: {args.bars} synthetic one-minute bars of {args.symbol}, "
          f"seed {args.seed}, SmaCross on the simulated broker")  # fmt: skip
    with SimulatedArchitecture(
        None, args.cash, symbols=[args.symbol], bars=args.bars, seed=args.seed,
        speed=args.speed, logging=True,
    ) as system:  # fmt: skip
        log_path = system.log_path  # a file per run, kept after the run
        print(
            f"agents: name server, {', '.join(system.agents)}, overmind (supervisor)", flush=True
        )
        system.add_brain("sma", base=SmaCross)
        system["sma"].subscribe((args.symbol, 1, "Minutes"), 100)
        result = system.run(progress=show, every=0.5 if interactive else 2.0)
        if interactive:
            print()
        status = system.status()
        columns = [c for c in ("kind", "pid", "alive", "running", "received", "sent", "errors")
                   if c in status.columns]  # fmt: skip
        print(status[columns].to_string())
    trades = result.trades
    print(
        f"done in {time.monotonic() - started:.1f} s: {len(trades)} fills, "
        f"final value {result.final_value:,.2f} "
        f"({(result.final_value / args.cash - 1) * 100:+.3f} %), all agents stopped"
    )
    print_summary(result, args.cash, log_path)
    return 0


def print_summary(result: Any, cash: float, log_path: Path | None) -> None:
    """What the run did (its last round trips, realised and unrealised P&L), where its logs
    are, and what to try next."""
    trips = result.positions
    if len(trips):
        shown = trips.tail(5)[["entry_time", "exit_time", "side", "size", "pnl"]].copy()
        for column in ("entry_time", "exit_time"):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d %H:%M:%S")
        print(f"last {len(shown)} of {len(trips)} round trips:")
        print(shown.to_string(index=False))
    else:
        print("no round trip completed (the strategy did not both enter and exit)")
    realised = float(trips["pnl"].sum()) if len(trips) else 0.0
    unrealised = result.final_value - cash - realised
    print(f"realised P&L {realised:,.2f}, unrealised P&L {unrealised:,.2f}, open positions "
          f"{result.open_positions or 'none'}")  # fmt: skip
    if log_path is not None:
        print(f"logs: {log_path}")
    print("next: osmarkets backtest examples/sma_cross.py:SmaCross --data "
          "examples/data/stock-daily.csv --bsid STOCK:D  |  osmarkets gui --demo  |  "
          "osmarkets demo --broker oanda-sandbox")  # fmt: skip


def run_sandbox_demo(args: argparse.Namespace) -> int:
    """The OandaArchitecture (OANDA Feeder on the pricing stream, Trader on the v20 REST API)
    against an in-process :class:`~osmarkets.brokers.oanda.OandaSandbox` whose clock runs
    ``--speed`` times real time, until the Brain has seen ``--bars`` one-minute bars."""
    import secrets

    from ..architecture import OandaArchitecture
    from ..brokers.oanda.sandbox import INSTRUMENT_NAMES, OandaSandbox
    from ..cli import UsageError
    from ..data.types import to_ns
    from ..strategies import SmaCross

    if args.symbol not in INSTRUMENT_NAMES:
        raise UsageError(f"--symbol: the sandbox knows {', '.join(INSTRUMENT_NAMES)}")
    factor = args.speed or 600.0
    base, origin = to_ns("2024-01-02T07:00:00Z"), time.monotonic_ns()

    def clock() -> int:
        return base + int((time.monotonic_ns() - origin) * factor)

    token = secrets.token_hex(16)  # a throw-away token for the throw-away server
    started = time.monotonic()
    print(f"osmarkets demo: SmaCross on {args.symbol} against a local OANDA sandbox "
          f"(clock x{factor:g}), until {args.bars} one-minute bars")  # fmt: skip
    tick = max(0.005, min(0.25, 6.0 / factor))  # about ten quotes per simulated minute
    with (
        OandaSandbox(
            token=token,
            instruments=[args.symbol],
            seed=args.seed,
            clock=clock,
            tick_interval=tick,
            balance=args.cash,
        ) as sandbox,  # fmt: skip
        OandaArchitecture(
            logging=True,
            account_id=sandbox.account_id,
            access_token=token,
            rest_url=sandbox.rest_url,
            stream_url=sandbox.stream_url,
            poll_interval=0.5,
        ) as system,  # fmt: skip
    ):
        print(f"sandbox: {sandbox.rest_url} / {sandbox.stream_url}, account "
              f"{sandbox.account_id}; agents: {', '.join(system.agents)}", flush=True)  # fmt: skip
        system.add_brain("sma", base=SmaCross, fast=5, slow=15, size=1000)
        system["sma"].subscribe((args.symbol, 1, "Minutes"), 100)
        system.stream([args.symbol])
        last = 0.0
        while True:
            bars = system["sma"].get_attr("osm_bars")
            error = system["feeder"].get_attr("feed_error")
            if error:
                print(f"the Feeder failed: {error}", file=sys.stderr)
                return 1
            if bars >= args.bars or time.monotonic() - last >= 2.0:
                last = time.monotonic()
                trader = system["trader"].osm_stats()
                equity = trader.get("equity")
                print(f"bars {bars:>5}  orders {trader['orders']:>3}  fills {trader['fills']:>3}"
                      f"  equity {equity if equity is not None else float('nan'):>12,.2f}"
                      f"  {time.monotonic() - started:5.1f} s", flush=True)  # fmt: skip
            if bars >= args.bars:
                break
            time.sleep(0.1)
        positions = system["trader"].get_attr("positions")
        status = system.status()
        columns = [c for c in ("kind", "pid", "alive", "running", "received", "sent", "errors")
                   if c in status.columns]  # fmt: skip
        print(status[columns].to_string())
    print(
        f"done in {time.monotonic() - started:.1f} s: positions {positions}, "
        "all agents and the sandbox stopped"
    )
    print(f"logs: {system.log_path}")
    return 0


def _accelerated(factor: float, start: str = "2024-01-02T07:00:00Z") -> Any:
    """A clock (ns) starting at ``start`` and running ``factor`` times real time."""
    from ..data.types import to_ns

    base, origin = to_ns(start), time.monotonic_ns()

    def clock() -> int:
        return base + int((time.monotonic_ns() - origin) * factor)

    return clock


def run_ccxt_demo(args: argparse.Namespace) -> int:
    """The CcxtArchitecture (ccxt's unmodified binance classes: the Feeder on the exchange's
    ticker websocket, the Trader on its REST API) against an in-process
    :class:`~osmarkets.brokers.ccxt.ExchangeSandbox` whose clock runs ``--speed`` times real
    time, until the Brain has seen ``--bars`` one-minute bars."""
    from ..architecture import CcxtArchitecture
    from ..brokers.ccxt import SYMBOLS, ExchangeSandbox
    from ..cli import UsageError
    from ..strategies import SmaCross

    if args.symbol not in SYMBOLS:
        raise UsageError(f"--symbol: the exchange sandbox knows {', '.join(SYMBOLS)}")
    factor = args.speed or 600.0
    clock = _accelerated(factor)
    quote = args.symbol.split("/")[1]
    started = time.monotonic()
    print(f"osmarkets demo: SmaCross on {args.symbol} against a local exchange sandbox "
          f"(ccxt binance, clock x{factor:g}), until {args.bars} one-minute bars")  # fmt: skip
    tick = max(0.005, min(0.25, 6.0 / factor))  # about ten quotes per simulated minute
    with ExchangeSandbox(
        symbols=[args.symbol], seed=args.seed, clock=lambda: clock() // 1_000_000,
        tick_interval=tick, balances={quote: args.cash}, weight_limit=None,
    ) as sandbox:  # fmt: skip
        options = sandbox.ccxt_options()
        key, secret = options.pop("apiKey"), options.pop("secret")
        with CcxtArchitecture(
            "binance", key, secret, options=options, currency=quote, poll_interval=0.2,
            stream_options={"method": "ticker"},  # stamped by the sandbox's (fast) clock
        ) as system:  # fmt: skip
            print(f"sandbox: {sandbox.url} (REST and websockets); agents: "
                  f"{', '.join(system.agents)}", flush=True)  # fmt: skip
            price = float(sandbox.quote(args.symbol)[1])
            size = float(f"{args.cash * 0.1 / price:.3g}")  # a tenth of the cash
            step = system.broker.step(args.symbol)  # the market's amount step
            system.add_brain("sma", base=SmaCross, fast=5, slow=15, size=size, lot=step)
            system["sma"].subscribe((args.symbol, 1, "Minutes"), 100)
            system.stream([args.symbol])
            status = _watch(system, args.bars, started)
            if status:
                return status
            positions = system["trader"].get_attr("positions")
            table = system.status()
            columns = [c for c in ("kind", "pid", "alive", "running", "received", "sent",
                                   "errors") if c in table.columns]  # fmt: skip
            print(table[columns].to_string())
    print(f"done in {time.monotonic() - started:.1f} s: positions {positions}, "
          "all agents and the sandbox stopped")  # fmt: skip
    print(f"logs: {system.log_path}")
    return 0


def _watch(system: Any, bars: int, started: float) -> int:
    """Progress lines until the Brain has seen ``bars`` bars; 1 if the Feeder failed."""
    last = 0.0
    while True:
        seen = system["sma"].get_attr("osm_bars")
        error = system["feeder"].get_attr("feed_error")
        if error:
            print(f"the Feeder failed: {error}", file=sys.stderr)
            return 1
        if seen >= bars or time.monotonic() - last >= 2.0:
            last = time.monotonic()
            trader = system["trader"].osm_stats()
            equity = trader.get("equity")
            print(f"bars {seen:>5}  orders {trader['orders']:>3}  fills {trader['fills']:>3}"
                  f"  equity {equity if equity is not None else float('nan'):>12,.2f}"
                  f"  {time.monotonic() - started:5.1f} s", flush=True)  # fmt: skip
        if seen >= bars:
            return 0
        time.sleep(0.1)
