"""Every command README.rst shows runs as written (issue 14): its Python block is run by
tests/test_indicators_exact.py and its backtest by tests/test_backtest_cli.py; here every
``osmarkets`` command line of its shell blocks is parsed by the CLI as written, and those that
finish on their own are run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from osmarkets.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _shell_commands() -> list[list[str]]:
    """Each command line of the README's literal (``::``) blocks, without its comment."""
    text = (ROOT / "README.rst").read_text()
    commands = []
    for block in re.findall(r"::\n\n((?:    .*\n|\n)+)", text):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            for part in line.split("&&"):
                if part.strip():
                    commands.append(shlex.split(part))
    return commands


def test_the_readme_shows_the_commands_a_newcomer_needs() -> None:
    firsts = [" ".join(c[:3]) for c in _shell_commands()]
    assert "osmarkets demo" in firsts and "osmarkets gui --demo" in firsts
    assert any(c.startswith("python -m pip") for c in firsts)


@pytest.mark.parametrize(
    "argv", [c for c in _shell_commands() if c[0] == "osmarkets"], ids=" ".join
)
def test_every_osmarkets_command_of_the_readme_parses_as_written(argv) -> None:
    args = build_parser().parse_args(argv[1:])
    assert getattr(args, "handler", None) is not None


@pytest.mark.timeout(120)
def test_the_readme_demo_runs_as_written() -> None:
    assert ["osmarkets", "demo"] in _shell_commands()
    runtime = Path(tempfile.mkdtemp(prefix="osm-readme-", dir="/tmp"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "osmarkets", "demo"], cwd=ROOT, capture_output=True,
            text=True, timeout=110, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "all agents stopped" in done.stdout and "next: osmarkets" in done.stdout
        logs = Path(done.stdout.split("logs: ", 1)[1].splitlines()[0])
        shutil.rmtree(logs.parent.parent)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
