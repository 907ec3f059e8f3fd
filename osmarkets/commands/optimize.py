"""``osmarkets optimize`` and ``osmarkets walkforward``.

::

    osmarkets optimize file.py:Class --data bars.csv --bsid EUR_USD:M1 \\
        --space fast=5:50 --space slow=20:200 [--space x=0.1:10:log] [--space kind=a,b,c] \\
        [--constraint 'fast < slow'] --samples 2000 [--grid] --workers 2 \\
        -o results.parquet [--html report.html]
    osmarkets walkforward file.py:Class --data bars.csv --bsid EUR_USD:M1 \\
        --space fast=5:50 --train 20000 --test 5000 [--step 5000] [--anchored] ...

A progress bar (configurations done, rate, ETA) goes to stderr, the summary table to stdout.
Bad input is one line on stderr and exit status 2.

Other machines join with ``osmarkets worker --nameserver HOST:PORT --key-file PATH``: start the
optimisation with ``--host`` (an address they reach), ``--port`` and ``--key-file PATH``, where
it writes its keys (mode 0600; generated for each run) for you to copy to the workers over a
secure channel. Only holders of the keys can call the optimisation (Pyro HMAC) or connect to its
sockets (CURVE), and only they receive the Brain class (a cloudpickle, see
:mod:`osmarkets.optimize.agents`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from ..cli import UsageError, check_output, examples, first_line
from .backtest import add_data_options


class ProgressBar:
    """``[#####.....]  512/2000  850.3 cfg/s  ETA 0:00:02`` redrawn in place on ``stream``."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.label = label
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.drawn = False

    def restart(self, label: str = "") -> None:
        self.finish()
        self.label = label
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        self.stream.write("\r" + self.line(done, total, now - self.started))
        self.stream.flush()
        self.drawn = True

    def line(self, done: int, total: int, elapsed: float) -> str:
        fraction = done / total if total else 1.0
        filled = int(round(self.width * fraction))
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.nan
        eta_text = _clock(eta) if math.isfinite(eta) else "--:--:--"
        head = f"{self.label} " if self.label else ""
        return (f"{head}[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                f"{rate:,.1f} cfg/s ETA {eta_text}")  # fmt: skip

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("target", metavar="FILE.py:CLASS", help="the Brain subclass to optimise")
    add("--data", required=True, help="CSV of bars (time, open, high, low, close)")
    add("--bsid", required=True, help="bar series id, e.g. EUR_USD:M1")
    add("--space", action="append", default=[], metavar="NAME=SPEC",
        help="a dimension: fast=5:50 (ints), fast=5:50:5 (step), x=0.1:10 (floats), "
             "x=0.1:10:log, kind=a,b,c (choice); repeatable")  # fmt: skip
    add("--constraint", action="append", default=[], metavar="EXPR",
        help="a condition between parameters, e.g. 'fast < slow' or 'slow - fast >= 10': "
             "parameter names, numbers, < <= > >= == !=, + - * / // %%, unary -, and, or, "
             "not, parentheses (nothing else; never evaluated as Python); configurations "
             "violating it are not generated; repeatable")  # fmt: skip
    add(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a Brain parameter for every configuration (repeatable)",
    )
    add("--samples", type=int, default=200, help="random configurations (default 200)")
    add("--grid", action="store_true", help="every combination instead of random sampling")
    add("--search", choices=("random", "grid", "tpe", "nsga2"),
        help="how configurations are generated: random (default), grid, or --samples of them "
        "proposed by Optuna's TPE or NSGA-II sampler")  # fmt: skip
    add("--points", type=int, default=5, help="grid values of a float range (default 5)")
    add("--refine", type=int, default=0,
        help="rounds after the first, proposed by Optuna's TPE from every score")  # fmt: skip
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--score", default="sharpe", choices=("sharpe", "sortino", "total_return", "final_value"),
        help="what configurations are ranked by (default: annualised Sharpe ratio)")  # fmt: skip
    add(
        "--smooth",
        type=int,
        default=0,
        metavar="K",
        help="rank by the mean score of the K nearest configurations",
    )
    add("--min-trades", type=int, help="filter: minimum number of fills")
    add("--min-trades-per-day", type=float, help="filter: minimum fills per calendar day")
    add("--min-active-days", type=float, help="filter: minimum fraction of days with a fill")
    add("--min-sharpe", type=float, help="filter: minimum annualised Sharpe ratio")
    add("--min-sortino", type=float, help="filter: minimum annualised Sortino ratio")
    add("--max-drawdown", type=float, help="filter: maximum drawdown as a fraction (0.2)")
    add("--min-dsr", type=float, metavar="P",
        help="filter: minimum deflated Sharpe ratio, a probability (0.95: the usual bar), "
        "deflated by every configuration tried")  # fmt: skip
    add(
        "--max-correlation",
        type=float,
        default=0.7,
        help="portfolio: maximum return correlation with any member (default 0.7)",
    )
    add("--max-members", type=int, default=10, help="portfolio: at most this many members")
    add("--candidates", type=int, default=50, help="portfolio: best survivors considered")
    add("--cash", type=float, default=100_000.0, help="initial cash")
    add("--fill", choices=("next_open", "close"), default="next_open",
        help="when market orders fill (default: the next bar's open)")  # fmt: skip
    add("--spread", type=float, default=0.0, help="spread on plain OHLC bars")
    add("--slippage", type=float, default=0.0, help="adverse price per fill")
    add("--commission", type=float, default=0.0, help="commission, fraction of notional")
    add("--engine", choices=("auto", "vectorized", "event"), default="auto",
        help="backtest engine: 'vectorized' (fast, for Brains that support it), 'event' (bar "
             "by bar, any Brain) or 'auto' (vectorized when possible; the default)")  # fmt: skip
    add("--workers", type=int, default=0, help="Backtester agent processes (0: in this process)")
    add("--batch", type=int, default=None, help="configurations per message to a worker")
    add("--host", default="127.0.0.1",
        help="address the name server and sockets bind to (remote workers need a reachable "
             "one; only holders of --key-file can call it or connect)")  # fmt: skip
    add_data_options(parser)
    add(
        "--port",
        type=int,
        default=None,
        help="fix the name server's port (so `osmarkets worker` on other machines can join; "
        "needs --key-file)",
    )
    add(
        "--key-file",
        metavar="PATH",
        help="write this run's keys here (mode 0600) for `osmarkets worker --key-file PATH` on "
        "other machines; copy the file there over a secure channel (scp). Whoever holds it can "
        "join, send results and receive the Brain class (a cloudpickle) and data",
    )
    add("-o", "--output", help="save every configuration here (.parquet or .csv)")
    add("--html", help="write an HTML report with the plots here")
    add("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers: Any) -> None:
    optimize = subparsers.add_parser(
        "optimize", help="explore a Brain's parameters and build a portfolio",
        description="Evaluate configurations of a Brain on historical bars, filter them and "
        "build a correlation-aware portfolio.",
        **examples(
            "osmarkets optimize examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:20 --space slow=21:90 --samples 200",
            "osmarkets optimize examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:50:2 --space slow=10:200 --constraint 'fast < slow' "
            "--grid -o results.parquet --html report.html",
            "osmarkets optimize examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:20 --space slow=21:90 --workers 4 --refine 3",
        ),
    )  # fmt: skip
    _common(optimize)
    optimize.add_argument(
        "--partitions", type=int, default=16, metavar="S",
        help="probability of backtest overfitting: the rows are cut into S groups (even; "
        "default 16, C(16, 8) = 12,870 splits); 0 skips it",
    )  # fmt: skip
    optimize.set_defaults(handler=run_optimize)
    walk = subparsers.add_parser(
        "walkforward", help="walk-forward optimisation of a Brain",
        description="Optimise on rolling (or anchored) training windows and trade the chosen "
        "portfolio on the following test windows; report out-of-sample results.",
        **examples(
            "osmarkets walkforward examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:20 --space slow=21:90 --train 1000 --test 250",
            "osmarkets walkforward examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:20 --space slow=21:90 --train 730D --test 180D "
            "--anchored --html walkforward.html",
            "osmarkets walkforward examples/sma_cross.py:SmaCross "
            "--data examples/data/stock-daily.csv "
            "--bsid ORCL:D --space fast=2:20 --space slow=21:90 --method cpcv --groups 6 "
            "--test-groups 2 --purge 5 --embargo 5",
        ),
    )  # fmt: skip
    _common(walk)
    walk.add_argument(
        "--train", help="training window: bars (20000) or a pandas offset (30D); windows only"
    )
    walk.add_argument("--test", help="test window: bars or an offset; windows only")
    walk.add_argument("--step", help="distance between windows (default: the test window)")
    walk.add_argument("--anchored", action="store_true", help="grow training from the start")
    walk.add_argument(
        "--method", choices=("windows", "cpcv"), default="windows",
        help="rolling/anchored windows (default), or combinatorial purged cross-validation: "
        "a distribution of out-of-sample Sharpe ratios over its paths",
    )  # fmt: skip
    walk.add_argument("--groups", type=int, default=6, help="cpcv: groups of bars (default 6)")
    walk.add_argument("--test-groups", type=int, default=2,
                      help="cpcv: groups tested per split (default 2)")  # fmt: skip
    walk.add_argument("--purge", type=int, default=0,
                      help="cpcv: bars before each test block left out of training")  # fmt: skip
    walk.add_argument("--embargo", type=int, default=0,
                      help="cpcv: bars after each test block left out of training")  # fmt: skip
    walk.set_defaults(handler=run_walkforward)  # fmt: skip


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any]]:
    from ..brokers.simulated import Commission
    from ..optimize.space import Space, parse_dimension
    from .backtest import (
        data_options,
        load_brain_class,
        parse_bsid_option,
        parse_params,
        read_data,
    )

    # Every file this run writes is checked first: a bad path fails now, not after the run.
    if args.output and not args.output.lower().endswith((".parquet", ".pq", ".csv")):
        raise UsageError(f"-o: expected a .parquet or .csv file, got {args.output!r}")
    check_output("-o", args.output)
    check_output("--html", args.html)
    check_output("--key-file", args.key_file)
    cls = load_brain_class(args.target)
    fixed = parse_params(cls, args.param)
    bsids = parse_bsid_option(args.bsid)
    if len(bsids) != 1:
        raise UsageError("--bsid: give one bar series id")
    if not args.space:
        raise UsageError("--space: give at least one dimension, e.g. --space fast=5:50")
    known = cls.parameters()  # type: ignore[attr-defined]
    dims = {}
    for text in args.space:
        name, dim = _dimension(text, known, cls.__name__, parse_dimension)
        if name in dims:
            raise UsageError(f"--space: {name} given twice")
        dims[name] = dim
    try:
        space = Space(dims, constraints=args.constraint)
    except ValueError as exc:
        text = first_line(exc)
        raise UsageError(f"--{text}" if text.startswith("constraint") else text) from None
    for name, value in (("--samples", args.samples), ("--points", args.points),
                        ("--max-members", args.max_members)):  # fmt: skip
        if value < 1:
            raise UsageError(f"{name}: expected >= 1, got {value}")
    if args.workers < 0:
        raise UsageError(f"--workers: expected >= 0, got {args.workers}")
    if args.min_dsr is not None and not 0.0 <= args.min_dsr <= 1.0:
        raise UsageError(f"--min-dsr: expected a probability 0..1, got {args.min_dsr}")
    partitions = getattr(args, "partitions", 0)
    if partitions and (partitions < 2 or partitions % 2):
        raise UsageError(f"--partitions: expected an even number >= 2 (or 0), got {partitions}")
    data = read_data(args.data)
    options: dict[str, Any] = {
        "bsid": bsids[0], "samples": args.samples, "grid": args.grid, "points": args.points,
        "search": args.search,
        "refine": args.refine, "seed": args.seed, "score": args.score, "smooth": args.smooth,
        "max_correlation": args.max_correlation, "max_members": args.max_members,
        "candidates": args.candidates, "cash": args.cash, "fill": args.fill,
        "spread": args.spread, "slippage": args.slippage, "engine": args.engine,
        "commission": Commission(fraction=args.commission) if args.commission else None,
        "params": fixed, "workers": args.workers, "batch": args.batch, "host": args.host,
        "data_options": data_options(args),
        "filters": {k: v for k, v in (
            ("min_trades", args.min_trades), ("min_trades_per_day", args.min_trades_per_day),
            ("min_active_days", args.min_active_days), ("min_sharpe", args.min_sharpe),
            ("min_sortino", args.min_sortino), ("max_drawdown", args.max_drawdown),
            ("min_dsr", args.min_dsr),
        ) if v is not None},
    }  # fmt: skip
    return cls, data, space, options


SPACE_SYNTAX = (
    "expected NAME=LOW:HIGH (ints or floats), NAME=LOW:HIGH:STEP, NAME=LOW:HIGH:log or NAME=a,b,c"
)


def _dimension(
    text: str, known: dict[str, Any], owner: str, parse_dimension: Any
) -> tuple[str, Any]:
    """One ``--space`` value -> ``(name, dimension)``, or a one-line UsageError naming the
    option, the value given and, for bad syntax, the accepted one."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name.isidentifier() or not spec:
        raise UsageError(f"--space {text}: {SPACE_SYNTAX}")
    if name not in known:
        raise UsageError(f"--space: {owner} has no parameter {name!r} "
                         f"(known: {', '.join(known) or 'none'})")  # fmt: skip
    problem = _space_problem(spec, known[name])
    if problem:
        raise UsageError(f"--space {text}: {SPACE_SYNTAX} ({problem})")
    try:
        return parse_dimension(text, known[name])
    except ValueError as exc:
        reason = first_line(exc).removeprefix(f"{name}: ")
        # "IntRange: high (1) is below low (9)" -> "high (1) is below low (9)",
        # "IntRange.step: expected >= 1, got 0" -> "step: expected >= 1, got 0".
        reason = re.sub(r"^(?:Int|Float|LogFloat)Range(?:\.(\w+))?: ",
                        lambda m: f"{m.group(1)}: " if m.group(1) else "", reason)  # fmt: skip
        raise UsageError(f"--space {text}: {reason}") from None


def _space_problem(spec: str, default: Any) -> str:
    """What is wrong with the syntax of a ``--space`` value after ``NAME=`` ('' if nothing)."""
    if ".." in spec:
        return "a range is LOW:HIGH, not LOW..HIGH"
    if ":" in spec:
        parts = [p.strip() for p in spec.split(":")]
        if len(parts) not in (2, 3):
            return f"{len(parts)} parts separated by ':', expected 2 or 3"
        for part in parts[:2]:
            if not _is_number(part):
                return f"{part!r} is not a number"
        if len(parts) == 3 and parts[2].lower() != "log" and not _is_number(parts[2]):
            return f"step {parts[2]!r} is not a number or 'log'"
        return ""
    options = [o.strip() for o in spec.split(",")]
    if any(not o for o in options):
        return "empty option"
    kinds: tuple[tuple[type, str, Any], ...] = (
        (bool, "a boolean (true/false)", None), (int, "an int", int), (float, "a number", float),
    )  # fmt: skip
    for kind, label, convert in kinds:
        if isinstance(default, kind):
            for option in options:
                lowered = option.lower()
                if kind is bool:
                    ok = lowered in ("1", "true", "yes", "on", "0", "false", "no", "off")
                else:
                    ok = _converts(convert, option)
                if not ok:
                    return f"{option!r} is not {label}"
            break
    return ""


def _is_number(text: str) -> bool:
    return _converts(float, text)


def _converts(convert: Any, text: str) -> bool:
    try:
        convert(text)
    except ValueError:
        return False
    return True


def _save(result: Any, args: argparse.Namespace) -> None:
    from .backtest import write_html

    if args.output:
        try:
            result.save(args.output)
        except (OSError, ImportError) as exc:
            raise UsageError(f"-o {args.output}: {first_line(exc)}") from None
        print(f"every configuration saved to {args.output}")
    if args.html:
        write_html(result, args.html)


def _runner(args: argparse.Namespace) -> Any:
    """Agents when asked for (``--workers N``, ``--port`` or ``--key-file``), announcing where
    remote workers can join; None to evaluate in this process."""
    if not args.workers and args.port is None and not args.key_file:
        return None
    if args.port is not None and not args.key_file:
        raise UsageError("--port: remote workers need this run's keys: add --key-file PATH")
    from ..optimize.agents import AgentRunner

    if args.key_file:
        key_dir = os.path.dirname(os.path.abspath(args.key_file))
        if not os.path.isdir(key_dir):
            raise UsageError(f"--key-file {args.key_file}: no such directory {key_dir}")
    try:
        runner = AgentRunner(None, workers=args.workers, batch=args.batch or 16,
                             host=args.host, port=args.port)  # fmt: skip
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"--host/--port: cannot start the agents: {first_line(exc)}") from None
    if args.key_file:
        try:
            runner.write_key_file(args.key_file)
        except OSError as exc:
            runner.close()
            raise UsageError(f"--key-file {args.key_file}: {exc.strerror or exc}") from None
        print(f"name server {runner.address}: other machines can join with `osmarkets worker "
              f"--nameserver {runner.address} --key-file PATH`, PATH a copy of "
              f"{args.key_file} (mode 0600; copy it over a secure channel)",
              file=sys.stderr)  # fmt: skip
    return runner


@contextlib.contextmanager
def _running(bar: ProgressBar | None, runner: Any) -> Iterator[None]:
    """Around a run: its bad input as a UsageError; the progress line ended and the agents
    stopped however it ends."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UsageError(first_line(exc)) from None
    finally:
        if bar is not None:
            bar.finish()
        if runner is not None:
            runner.close()


def run_optimize(args: argparse.Namespace) -> int:
    from ..optimize import explore

    cls, data, space, options = _prepare(args)
    bar = ProgressBar(label="optimize") if not args.quiet else None
    runner = _runner(args)
    with _running(bar, runner):
        result = explore(cls, data, space, progress=bar, runner=runner, **options)
    result.meta["overfit"] = bool(args.partitions)  # 0: not in the report either
    if args.partitions:
        try:
            result.overfit(args.partitions)
        except ValueError as exc:  # too few survivors or bars: said, not fatal
            print(f"no probability of backtest overfitting: {exc}", file=sys.stderr)
    print(f"{cls.__name__} on {args.data} ({options['bsid']})")
    print(result.summary())
    if result.portfolio is not None and result.portfolio.members:
        print(result.portfolio.to_pandas().to_string(index=False))
    _save(result, args)
    return 0


def _length(text: str | None, name: str) -> Any:
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    import pandas as pd

    try:
        pd.tseries.frequencies.to_offset(text)
    except ValueError:
        raise UsageError(f"{name}: expected a number of bars or an offset like 30D, "
                         f"got {text!r}") from None  # fmt: skip
    return text


def run_walkforward(args: argparse.Namespace) -> int:
    from ..optimize import walk_forward

    cls, data, space, options = _prepare(args)
    train = _length(args.train, "--train")
    test = _length(args.test, "--test")
    step = _length(args.step, "--step")
    cpcv = {"method": args.method, "groups": args.groups, "test_groups": args.test_groups,
            "purge": args.purge, "embargo": args.embargo}  # fmt: skip
    if args.method == "windows" and (train is None or test is None):
        raise UsageError("--train and --test: both are needed (or --method cpcv)")
    if args.method == "cpcv":
        if args.groups < 2 or not 1 <= args.test_groups < args.groups:
            raise UsageError(
                "--groups/--test-groups: expected groups >= 2 and 1 <= test groups < groups, "
                f"got {args.groups} and {args.test_groups}"
            )
        if args.purge < 0 or args.embargo < 0:
            raise UsageError("--purge/--embargo: expected a number of bars >= 0")
    bar = ProgressBar(label="window") if not args.quiet else None
    current = {"window": -1}

    def progress(window: int, windows: int, done: int, total: int) -> None:
        if bar is None:
            return
        if window != current["window"]:
            current["window"] = window
            bar.restart(f"window {window + 1}/{windows}")
        bar(done, total)

    runner = _runner(args)
    with _running(bar, runner):
        result = walk_forward(cls, data, space, train=train, test=test, step=step,
                              anchored=args.anchored, progress=progress, runner=runner, **cpcv,
                              **options)  # fmt: skip
    print(f"{cls.__name__} on {args.data} ({options['bsid']}), walk-forward")
    print(result.summary())
    _save(result, args)
    return 0
