"""``osmarkets backtest``: prints the statistics; bad input is one line and exit status 2."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_backtest import make_bars

from osmarkets.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sma_cross.py"


@pytest.fixture
def bars_csv(tmp_path):
    path = tmp_path / "bars.csv"
    make_bars(300, seed=7).to_csv(path)
    return path


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prints_the_stats_table(bars_csv, capsys):
    code, out, err = run(
        [
            "backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--bsid", "EUR_USD:M1",
            "--param", "fast=3", "--param", "slow=9", "--param", "size=10",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "final_value" in out and "sharpe" in out and "max_drawdown" in out


def test_html_report(bars_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    report = tmp_path / "r.html"
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--bsid", "X:M1",
            "--param", "size=5", "--html", str(report)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "base64" in report.read_text()


def test_unwritable_html_report_is_one_line_exit_2(bars_csv, tmp_path, capsys):
    report = tmp_path / "no such folder" / "r.html"
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--bsid", "X:M1",
            "--param", "size=5", "--html", str(report)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("osmarkets backtest: --html ") and str(report) in err
    assert len(err.strip().splitlines()) == 1 and not report.exists()


@pytest.mark.parametrize(
    ("target", "params", "message"),
    [
        ("missing.py:SmaCross", [], "no such file"),
        ("{example}:Nope", [], "no class 'Nope'"),
        ("{example}", [], "FILE.py:CLASS"),
        ("{other}:NotBrain", [], "not a Brain subclass"),
        ("{broken}:X", [], "import failed: NameError"),
        ("{example}:SmaCross", ["--param", "speed=3"], "no parameter 'speed'"),
        ("{example}:SmaCross", ["--param", "fast=ten"], "fast: expected a int"),
        ("{example}:SmaCross", ["--param", "fast"], "NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_exit_2(bars_csv, tmp_path, capsys, target, params, message):
    other, broken = tmp_path / "other.py", tmp_path / "broken.py"
    other.write_text("class NotBrain:\n    pass\n")
    broken.write_text("undefined_name\n")
    target = target.format(example=EXAMPLE, other=other, broken=broken)
    argv = ["backtest", target, "--data", str(bars_csv), "--bsid", "X:M1", *params]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_data_and_bsid(tmp_path, capsys):
    frame = make_bars(50)
    frame.iloc[7, frame.columns.get_loc("close")] = np.nan
    nan_csv = tmp_path / "nan.csv"
    frame.to_csv(nan_csv)
    base = ["backtest", f"{EXAMPLE}:SmaCross", "--bsid", "X:M1"]
    code, _, err = run([*base, "--data", str(nan_csv)], capsys)
    assert code == 2 and "close" in err and "row 7" in err
    code, _, err = run([*base, "--data", str(tmp_path / "none.csv")], capsys)
    assert code == 2 and "no such file" in err
    good = tmp_path / "good.csv"
    make_bars(50).to_csv(good)
    code, _, err = run(["backtest", f"{EXAMPLE}:SmaCross", "--data", str(good), "--bsid", "X:Q9"],
                       capsys)  # fmt: skip
    assert code == 2 and "--bsid" in err


def test_subprocess_exit_status(bars_csv, tmp_path):
    exe = shutil.which("osmarkets")
    cmd = [exe] if exe else [sys.executable, "-m", "osmarkets"]
    proc = subprocess.run(
        [*cmd, "backtest", f"{EXAMPLE}:Missing", "--data", str(bars_csv), "--bsid", "X:M1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
