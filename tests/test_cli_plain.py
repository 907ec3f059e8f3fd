"""The CLI speaks plainly: help on every option, examples in every sub-command's ``--help``,
one-line errors with the accepted syntax, and output paths checked before the work starts."""

import argparse
from pathlib import Path

import pytest
from test_backtest import make_bars

import osmarkets.backtest.engine
import osmarkets.optimize
from osmarkets.cli import build_parser, main

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "sma_cross.py") + ":SmaCross"


@pytest.fixture
def bars_csv(tmp_path):
    path = tmp_path / "bars.csv"
    make_bars(300, seed=7).to_csv(path)
    return str(path)


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_sub_command_is_walked():
    assert {"backtest", "optimize", "walkforward", "demo", "download", "sandbox", "worker",
            "gui"} <= set(subparsers())  # fmt: skip


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_has_help_and_the_epilog_has_examples(name, capsys):
    parser = subparsers()[name]
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not missing, f"{name}: options without help: {missing}"
    assert parser.epilog and "examples:" in parser.epilog
    lines = parser.epilog.split("examples:", 1)[1].strip().splitlines()
    assert 2 <= len(lines) <= 3 and all(line.strip().startswith("osmarkets ") for line in lines)
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    # The examples are shown as written (one command line per line), at the end.
    assert out.rstrip().splitlines()[-len(lines)].strip() == lines[0].strip()
    assert "\nexamples:\n" in out


def _one_line_error(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, captured
    assert len(err.splitlines()) == 1, err
    return err, captured.out


@pytest.mark.parametrize("command", ["optimize", "walkforward"])
@pytest.mark.parametrize(
    "value, hint",
    [
        ("fast=5..50", "LOW:HIGH, not LOW..HIGH"),
        ("fast", ""),
        ("fast=1:x", "'x' is not a number"),
        ("fast=1:2:3:4", "4 parts"),
        ("fast=a,b", "'a' is not an int"),
    ],
)
def test_bad_space_is_one_line_with_the_accepted_syntax(bars_csv, capsys, command, value, hint):
    argv = [command, EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", value,
            "--train", "100", "--test", "50"]  # fmt: skip
    if command == "optimize":
        argv = argv[:-4]
    err, _ = _one_line_error(argv, capsys)
    assert f"--space {value}: expected NAME=LOW:HIGH" in err
    assert "NAME=LOW:HIGH:STEP" in err and "NAME=LOW:HIGH:log" in err and "NAME=a,b,c" in err
    assert hint in err and "invalid literal" not in err


def test_space_out_of_order_names_the_value(bars_csv, capsys):
    err, _ = _one_line_error(
        ["optimize", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", "fast=9:1"], capsys
    )
    assert err == "osmarkets optimize: --space fast=9:1: high (1) is below low (9)"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--param", "fast"], "--param: expected NAME=VALUE, got 'fast'"),
        (["--param", "slow=x"], "--param slow: expected an integer, got 'x'"),
        (["--constraint", "fast < slw"], "--constraint 'fast < slw': unknown name 'slw'"),
        (["--constraint", "import os"], "--constraint 'import os': not a valid expression"),
    ],
)
def test_bad_param_and_constraint_are_one_line(bars_csv, capsys, extra, message):
    argv = ["optimize", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", "fast=2:9"]
    err, _ = _one_line_error([*argv, *extra], capsys)
    assert message in err


@pytest.fixture
def no_work(monkeypatch):
    """Any backtest or exploration fails the test: the paths must be checked before."""

    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the output paths were checked")

    monkeypatch.setattr(osmarkets.backtest.engine, "backtest", refuse)
    monkeypatch.setattr(osmarkets.optimize, "explore", refuse)
    monkeypatch.setattr(osmarkets.optimize, "walk_forward", refuse)


def test_backtest_html_to_a_missing_directory_fails_before_the_run(
    bars_csv, tmp_path, monkeypatch, capsys, no_work
):
    monkeypatch.chdir(tmp_path)
    argv = ["backtest", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1",
            "--html", "out/missing/r.html"]  # fmt: skip
    err, out = _one_line_error(argv, capsys)
    assert err == "osmarkets backtest: --html out/missing/r.html: no such directory out/missing"
    assert out == ""


@pytest.mark.parametrize("command", ["optimize", "walkforward"])
@pytest.mark.parametrize("option", ["--html", "-o", "--key-file"])
def test_optimize_outputs_to_a_missing_directory_fail_before_the_run(
    bars_csv, tmp_path, capsys, no_work, command, option
):
    target = tmp_path / "missing" / ("r.html" if option == "--html" else "r.csv")
    argv = [command, EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", "fast=2:9",
            option, str(target)]  # fmt: skip
    if command == "walkforward":
        argv += ["--train", "100", "--test", "50"]
    err, out = _one_line_error(argv, capsys)
    assert err == f"osmarkets {command}: {option} {target}: no such directory {target.parent}"
    assert out == "" and "cfg/s" not in err and not target.parent.exists()


def test_output_that_is_a_directory_fails_before_the_run(bars_csv, tmp_path, capsys, no_work):
    argv = ["backtest", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--html", str(tmp_path)]
    err, _ = _one_line_error(argv, capsys)
    assert "is a directory" in err


def test_download_output_to_a_missing_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OANDA_ACCESS_TOKEN", "x")
    target = tmp_path / "missing" / "bars.csv"
    argv = ["download", "EUR_USD", "M1", "--from", "2024-01-01", "-o", str(target),
            "--rest-url", "http://127.0.0.1:9"]  # fmt: skip
    err, _ = _one_line_error(argv, capsys)
    assert err == f"osmarkets download: -o {target}: no such directory {target.parent}"
