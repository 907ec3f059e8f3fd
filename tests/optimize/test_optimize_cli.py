"""``osmarkets optimize``, ``osmarkets walkforward`` and ``osmarkets worker`` input handling."""

import io
from pathlib import Path

import pandas as pd
import pytest
from helpers_optimize import make_bars

from osmarkets.cli import main
from osmarkets.commands.optimize import ProgressBar

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


@pytest.fixture
def bars_csv(tmp_path):
    path = tmp_path / "bars.csv"
    make_bars(2500, seed=8).to_csv(path)
    return str(path)


def test_optimize_writes_results_and_report(bars_csv, tmp_path, capsys):
    out, html = tmp_path / "r.csv", tmp_path / "r.html"
    code = main(
        [
            "optimize",
            EXAMPLE,
            "--data",
            bars_csv,
            "--bsid",
            "X:M1",
            "--space",
            "fast=2:20",
            "--space",
            "slow=21:90",
            "--samples",
            "60",
            "--min-trades",
            "5",
            "-o",
            str(out),
            "--html",
            str(html),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = pd.read_csv(out)
    assert len(table) == 60 and {"fast", "slow", "sharpe", "passed", "included"} <= set(table)
    assert table["fast"].between(2, 20).all() and table["slow"].between(21, 90).all()
    assert "60/60" in captured.err and "cfg/s" in captured.err and "ETA" in captured.err
    assert "configurations" in captured.out and "portfolio" in captured.out
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 2


def test_walkforward_command(bars_csv, tmp_path, capsys):
    html = tmp_path / "wf.html"
    code = main(
        [
            "walkforward",
            EXAMPLE,
            "--data",
            bars_csv,
            "--bsid",
            "X:M1",
            "--space",
            "fast=2:20",
            "--space",
            "slow=21:90",
            "--samples",
            "20",
            "--train",
            "1000",
            "--test",
            "500",
            "--html",
            str(html),
            "-o",
            str(tmp_path / "wf.parquet"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "window 3/3" in captured.err
    assert "efficiency" in captured.out
    assert len(pd.read_parquet(tmp_path / "wf.parquet")) == 60
    assert html.read_text().count("data:image/png;base64,") >= 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--space", "fast=9:1"], "--space fast"),
        (["--space", "nope=1:5"], "no parameter 'nope'"),
        (["--space", "fast"], "--space"),
        (["--space", "fast=1:5", "--samples", "0"], "--samples"),
        (["--space", "fast=1:5", "-o", "r.xlsx"], "-o"),
        (["--space", "fast=1:5", "--workers", "-1"], "--workers"),
        (["--space", "fast=1:5", "--bsid", "bad id"], "--bsid"),
        ([], "--space"),
    ],
)
def test_optimize_bad_input_is_one_line_and_exit_2(bars_csv, capsys, extra, message):
    args = ["optimize", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_optimize_bad_files(tmp_path, bars_csv, capsys):
    assert (
        main(
            [
                "optimize",
                EXAMPLE,
                "--data",
                str(tmp_path / "none.csv"),
                "--bsid",
                "X:M1",
                "--space",
                "fast=1:5",
            ]
        )
        == 2
    )
    assert "--data" in capsys.readouterr().err
    assert (
        main(
            [
                "optimize",
                "nowhere.py:X",
                "--data",
                bars_csv,
                "--bsid",
                "X:M1",
                "--space",
                "fast=1:5",
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_walkforward_bad_window(bars_csv, capsys):
    base = ["walkforward", EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", "fast=2:9"]
    assert main([*base, "--train", "fortnight", "--test", "10"]) == 2
    assert "--train" in capsys.readouterr().err
    assert main([*base, "--train", "100000", "--test", "10"]) == 2
    assert "window" in capsys.readouterr().err


def test_worker_rejects_a_bad_address(capsys):
    assert main(["worker", "--nameserver", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_progress_bar_line():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    assert bar.line(5, 10, 2.0) == "[#####.....] 5/10 2.5 cfg/s ETA 0:00:02"
    assert "--:--:--" in bar.line(0, 10, 0.0)
    bar(10, 10)
    bar.finish()
    assert "10/10" in stream.getvalue() and stream.getvalue().endswith("\n")


def test_data_with_a_nan_price_is_rejected(tmp_path, capsys):
    frame = make_bars(300)
    frame.iloc[100, frame.columns.get_loc("close")] = float("nan")
    path = tmp_path / "nan.csv"
    frame.to_csv(path)
    assert (
        main(["optimize", EXAMPLE, "--data", str(path), "--bsid", "X:M1", "--space", "fast=2:9"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "close" in err


def test_the_example_runs_from_the_cli_and_writes_reports(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "optimize_example.py"
    done = subprocess.run(
        [sys.executable, str(example), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "cfg/s" in done.stderr and "ETA" in done.stderr
    for name in ("optimize.html", "walkforward.html"):
        assert (tmp_path / name).read_text().count("data:image/png;base64,") >= 2
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 400
    # overfitting made a number (issue 15): the PBO and the DSR of the chosen portfolio
    assert "overfitting: PBO" in done.stdout and "12,870 combinations" in done.stdout
    assert "portfolio members' DSR" in done.stdout and "deflated by 400 trials" in done.stdout
    assert "<h2>Overfitting</h2>" in (tmp_path / "optimize.html").read_text()
