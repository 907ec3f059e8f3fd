"""The ``osmarkets`` command line.

Each sub-command lives in its own small function; bad input ends with one line on stderr naming
what is wrong and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, commands

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when the message is empty), for
    a one-line :class:`UsageError`."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions like argparse's default formatter but keeps an ``examples:`` epilog
    as written, one command line per line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def examples(*lines: str) -> dict[str, Any]:
    """Keyword arguments of ``subparsers.add_parser`` for an ``examples:`` epilog of these
    command lines at the end of the sub-command's ``--help``."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return {"epilog": epilog, "formatter_class": HelpFormatter}


def check_output(option: str, path: str | None) -> None:
    """Before any work: ``path`` (a file the command will write, given with ``option``) must be
    in an existing, writable directory and not be a directory or a read-only file; else a
    one-line :class:`UsageError` naming the option and the path."""
    if not path:
        return
    folder = os.path.dirname(path)
    where = folder or os.curdir
    if not os.path.isdir(where):
        raise UsageError(f"{option} {path}: no such directory {folder}")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory, expected a file name")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: directory {where} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: file is not writable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osmarkets",
        description="Real-time automated trading on osBrain: deploy, backtest and optimise "
        "one Brain class.",
    )
    parser.add_argument("--version", action="version", version=f"osmarkets {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each module of osmarkets.commands adds its sub-command with add_parser(subparsers) and
    # sets ``handler`` on it; a new command is a new module, nothing to register here.
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except UsageError as exc:
        print(f"osmarkets {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"osmarkets {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``osmarkets ... | head``): not an error of ours. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
