"""``osmarkets download``: OANDA candles for a date range into a Parquet or CSV file."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import pandas as pd

from ..cli import UsageError, check_output, examples


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download OANDA candles into a .parquet or .csv file",
        description="Download completed OANDA candles (paginated, any range) into the osMarkets "
        "bar format. The token comes from OANDA_ACCESS_TOKEN or --token-file.",
        **examples(
            "osmarkets download EUR_USD M1 --from 2024-01-01 --to 2024-02-01 -o eurusd-m1.parquet",
            "osmarkets download USD_JPY H4 --from 2023-01-01 -o usdjpy-h4.csv "
            "--token-file ~/.oanda-token",
            "osmarkets download EUR_USD M1 --from 2024-01-01 -o bars.csv "
            "--rest-url http://127.0.0.1:8080 --token-file token.txt",
        ),
    )
    parser.add_argument("instrument", help="instrument, e.g. EUR_USD")
    parser.add_argument("granularity", help="granularity code, e.g. M1, H4, D")
    parser.add_argument("--from", dest="start", required=True, help="start (UTC), e.g. 2024-01-01")
    parser.add_argument("--to", dest="end", default=None, help="end, exclusive (default: now)")
    parser.add_argument("-o", "--output", required=True, help="output file: .parquet or .csv")
    parser.add_argument("--price", default="BA", help="price components: M, B, A, BA, MBA")
    parser.add_argument("--environment", choices=("practice", "live"), default="practice",
                        help="OANDA environment of the token (default practice)")  # fmt: skip
    parser.add_argument("--rest-url", default=None, help="REST base URL (e.g. the sandbox)")
    parser.add_argument("--token-file", default=None, help="file holding the access token")
    parser.set_defaults(handler=run)


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(
                f"--token-file: cannot read {args.token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise UsageError(f"--token-file: {args.token_file} is empty")
        return token
    token = os.environ.get("OANDA_ACCESS_TOKEN", "").strip()
    if not token:
        raise UsageError("no access token: set OANDA_ACCESS_TOKEN or pass --token-file")
    return token


def _time(value: str, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise UsageError(f"{name}: not a date/time: {value!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, fraction: float) -> None:
        filled = int(fraction * 30)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


def run(args: argparse.Namespace) -> int:
    from ..brokers.oanda.client import PRICE_COMPONENTS, OandaClient, oanda_granularity
    from ..brokers.oanda.errors import OandaError
    from ..data.io import write_csv, write_parquet

    try:
        granularity = oanda_granularity(args.granularity)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.price not in PRICE_COMPONENTS:
        raise UsageError(
            f"--price: expected one of {', '.join(PRICE_COMPONENTS)}, got {args.price!r}"
        )
    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"-o: expected a .parquet or .csv file name, got {args.output!r}")
    check_output("-o", args.output)
    if output.suffix.lower() == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        # Checked before the download, not after it: nothing fetched is thrown away.
        raise UsageError("-o: writing .parquet needs pyarrow (pip install pyarrow), or use .csv")
    start = _time(args.start, "--from")
    end = _time(args.end, "--to") if args.end else pd.Timestamp.now(tz="UTC")
    if end <= start:
        raise UsageError("--to: must be after --from")
    client = OandaClient(_token(args), environment=args.environment, rest_url=args.rest_url)
    progress = _Progress(f"{args.instrument} {granularity}")
    try:
        frame = client.history(
            args.instrument, granularity, start, end, price=args.price, progress=progress
        )
    except OandaError as exc:
        progress.done()
        print(f"osmarkets download: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    progress.done()
    writer = write_parquet if output.suffix.lower() == ".parquet" else write_csv
    try:
        writer(frame, output)
    except OSError as exc:
        raise UsageError(f"-o: cannot write {output}: {exc.strerror or exc}") from None
    print(f"{len(frame)} candles written to {output}", file=sys.stderr)
    return 0
