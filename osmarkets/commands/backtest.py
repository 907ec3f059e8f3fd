"""``osmarkets backtest path/to/file.py:ClassName --data bars.csv --bsid EUR_USD:M1 ...``

Loads the user's Brain class from a file, runs the in-process backtest and prints the
statistics table. Bad input (missing file, unknown class, bad parameter, bad data) is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import uuid
from typing import Any

from ..cli import UsageError, check_output, examples, first_line


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="backtest a Brain class on historical bars",
        description="Backtest a Brain class on historical bars and print its statistics.",
        **examples(
            "osmarkets backtest examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv --bsid ORCL:D",
            "osmarkets backtest examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv --bsid ORCL:D --param fast=5 --param slow=20 "
            "--html report.html",
            "osmarkets backtest examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv --bsid ORCL:D --bsid ORCL:W --fill close "
            "--commission 0.001",
        ),
    )
    parser.add_argument("target", metavar="FILE.py:CLASS", help="the Brain subclass to run")
    parser.add_argument("--data", required=True,
                        help="file of bars (CSV, Parquet...), or a directory of <SYMBOL>.parquet "
                             "or .csv files, read in chunks (docs: Large backtests)")  # fmt: skip
    parser.add_argument(
        "--stream",
        action="store_true",
        help="read the --data file in chunks instead of whole (Parquet or CSV)",
    )
    parser.add_argument("--bsid", required=True, action="append",
                        help="bar series id, e.g. EUR_USD:M1 (repeatable)")  # fmt: skip
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a Brain parameter (repeatable)")  # fmt: skip
    parser.add_argument("--cash", type=float, default=100_000.0, help="initial cash")
    parser.add_argument("--fill", choices=("next_open", "close"), default="next_open",
                        help="when market orders fill (default: the next bar's open)")  # fmt: skip
    parser.add_argument("--spread", type=float, default=0.0, help="spread on plain OHLC bars")
    parser.add_argument("--slippage", type=float, default=0.0, help="adverse price per fill")
    parser.add_argument("--commission", type=float, default=0.0,
                        help="commission as a fraction of the notional")  # fmt: skip
    parser.add_argument("--margin-rate", type=float, default=1.0,
                        help="margin fraction (1 = no leverage, 0.02 = 50:1)")  # fmt: skip
    parser.add_argument("--history", type=int, default=None, help="bars kept per series")
    parser.add_argument("--html", help="also write a self-contained HTML report here")
    parser.add_argument("--currency", metavar="CODE",
                        help="account currency, e.g. USD: P&L and margin converted from each "
                             "quote currency, margin closeout (docs: Money)")  # fmt: skip
    parser.add_argument("--rate", action="append", default=[], metavar="CUR=VALUE",
                        help="value of one unit of CUR in the account currency, for crosses "
                             "without a conversion pair in the data (repeatable)")  # fmt: skip
    add_data_options(parser)
    parser.set_defaults(handler=run)


def money_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--currency`` and ``--rate`` checked: one line naming the bad one."""
    if args.rate and not args.currency:
        raise UsageError("--rate: needs --currency")
    if not args.currency:
        return {}
    rates: dict[str, float] = {}
    for item in args.rate:
        code, sep, text = item.partition("=")
        try:
            rates[code.strip().upper()] = float(text) if sep else float("nan")
        except ValueError:
            raise UsageError(f"--rate: expected CUR=VALUE, got {item!r}") from None
    from ..brokers.money import AccountCurrency

    try:
        AccountCurrency(args.currency, rates)
    except ValueError as exc:
        raise UsageError(f"--currency/--rate: {first_line(exc)}") from None
    return {"currency": args.currency, "rates": rates}


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The options that say what the data is and how longer frames are made from it."""
    group = parser.add_argument_group("data")
    add = group.add_argument
    add("--data-timeframe", metavar="CODE",
        help="the data's own time frame (default: inferred from the bars' times)")  # fmt: skip
    add(
        "--calendar",
        metavar="NAME",
        help="exchange calendar for sessions, e.g. XNYS, XLON, CMES (exchange_calendars)",
    )
    add("--regular-hours", action="store_true",
        help="keep only bars inside the calendar's sessions")  # fmt: skip
    add(
        "--daily-alignment",
        type=int,
        metavar="HOUR",
        help="hour days start at when resampling without a calendar (default 17)",
    )
    add("--alignment-timezone", metavar="ZONE",
        help="time zone of --daily-alignment (default America/New_York)")  # fmt: skip
    add("--weekly-alignment", metavar="DAY", help="day weeks start on (default Friday)")
    add(
        "--instruments",
        metavar="FILE",
        help="TOML or JSON file of instrument specifications (multiplier, tick_size, ...)",
    )


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options given on the command line, checked: one line naming the bad one."""
    from ..data.timeframes import Alignment, Timeframe
    from ..instruments import load_instruments

    options: dict[str, Any] = {}
    if args.data_timeframe is not None:
        try:
            options["data_timeframe"] = Timeframe.parse(args.data_timeframe).code
        except ValueError as exc:
            raise UsageError(f"--data-timeframe: {exc}") from None
    alignment = {
        "daily_alignment": args.daily_alignment, "alignment_timezone": args.alignment_timezone,
        "weekly_alignment": args.weekly_alignment, "calendar": args.calendar,
        "regular_hours": args.regular_hours or None,
    }  # fmt: skip
    try:
        options.update(
            {k: v for k, v in Alignment.of(**alignment)._asdict().items() if k in alignment}
        )
    except ValueError as exc:
        option = "--" + str(exc).split(":")[0].replace("_", "-")
        raise UsageError(f"{option}: {first_line(exc).partition(': ')[2]}") from None
    if args.instruments is not None:
        try:
            options["instruments"] = load_instruments(args.instruments)
        except ValueError as exc:
            raise UsageError(f"--instruments: {first_line(exc)}") from None
    return options


def load_brain_class(target: str) -> type:
    """``path/to/file.py:ClassName`` -> the class (a Brain subclass)."""
    from ..brain import Brain

    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise UsageError(f"expected FILE.py:CLASS, got {target!r}")
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    module_name = f"_osmarkets_user_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"{path}: import failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(folder)
    cls = getattr(module, name, None)
    if cls is None:
        raise UsageError(f"{path}: no class {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Brain)):
        raise UsageError(f"{path}: {name} is not a Brain subclass")
    return cls


def parse_params(cls: Any, items: list[str]) -> dict[str, Any]:
    """``['fast=10', ...]`` -> ``{'fast': 10}``, each value converted to its default's type."""
    known = cls.parameters()
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param: expected NAME=VALUE, got {item!r}")
        if key not in known:
            raise UsageError(
                f"--param: {cls.__name__} has no parameter {key!r} "
                f"(known: {', '.join(known) or 'none'})"
            )
        params[key] = _convert(key, text.strip(), known[key])
    return params


def _convert(key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
        raise UsageError(f"--param {key}: expected {kind}, got {text!r}") from None
    return text


def parse_bsid_option(values: Any) -> list[Any]:
    """``--bsid`` value(s) -> bar series ids, or a UsageError naming the option."""
    from ..backtest.engine import parse_bsids

    try:
        return parse_bsids(values)
    except ValueError as exc:
        raise UsageError(f"--bsid: {exc}") from None


def read_data(path: str) -> Any:
    """``--data`` -> the bars DataFrame, or a UsageError naming the option and the file."""
    from ..data.io import read_bars

    try:
        return read_bars(path)
    except FileNotFoundError:
        raise UsageError(f"--data: no such file: {path}") from None
    except Exception as exc:
        raise UsageError(f"--data: {path}: {exc}") from None


def write_html(result: Any, path: str) -> None:
    """``--html``: the result's report to ``path``, or a UsageError naming the option."""
    try:
        result.to_html(path)
    except OSError as exc:
        raise UsageError(f"--html {path}: {first_line(exc)}") from None
    print(f"report written to {path}")


def rejection_warning(result: Any, args: argparse.Namespace, cls: Any) -> str:
    """One line on the rejected orders, ``''`` when none: how many, the most frequent reason
    (with the cash and margin rate when it is margin) and the options that change it."""
    rejections = result.rejections
    if not rejections:
        return ""
    top = next(iter(rejections))
    if top == "insufficient margin":
        cash = f"{args.cash:,.0f}" if args.cash == int(args.cash) else f"{args.cash:,.2f}"
        notes = {top: f" (cash {cash}, margin rate {args.margin_rate!r})"}
        options = ["--cash", "--margin-rate"]
        if "size" in cls.parameters():
            options.append("--param size")
        hint = f"see {', '.join(options)}"
    else:
        notes = {}
        hint = "see the orders in the --html report"
    return f"{result.rejection_summary(notes)}; {hint}"


def run(args: argparse.Namespace) -> int:
    from ..backtest.engine import backtest
    from ..brokers.simulated import Commission

    check_output("--html", args.html)
    cls = load_brain_class(args.target)
    params = parse_params(cls, args.param)
    bsids = parse_bsid_option(args.bsid)
    options = {**data_options(args), **money_options(args)}
    symbols = {b.symbol for b in bsids}
    frames: Any
    if os.path.isdir(args.data) or args.stream:
        if not os.path.exists(args.data):
            raise UsageError(f"--data: no such file or directory: {args.data}")
        options["stream"] = True
        single_file = not os.path.isdir(args.data) and len(symbols) > 1
        frames = {s: args.data for s in symbols} if single_file else args.data
    else:
        data = read_data(args.data)
        frames = data if len(symbols) == 1 else {s: data for s in symbols}
    try:
        commission = Commission(fraction=args.commission) if args.commission else None
        result = backtest(
            cls, frames, bsids, params=params, history=args.history, cash=args.cash,
            fill=args.fill, spread=args.spread, slippage=args.slippage, commission=commission,
            margin_rate=args.margin_rate, **options,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(first_line(exc)) from None
    print(f"{cls.__name__} on {args.data} ({', '.join(str(b) for b in bsids)})")
    print(result.stats_table())
    warning = rejection_warning(result, args, cls)
    if warning:
        print(warning, file=sys.stderr)
    if args.html:
        write_html(result, args.html)
    return 0
