"""``osmarkets backtest``: prints the statistics; bad input is one line and exit status 2."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_backtest import make_bars

from osmarkets.cli import main
from osmarkets.strategies import SmaCross

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
        ("{example}:SmaCross", ["--param", "fast=ten"], "fast: expected an integer"),
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


def yahoo_csv(path, n=300, seed=3):
    """A daily file as Yahoo writes it: dates of New York sessions, Adj Close."""
    import exchange_calendars as xcals

    frame = make_bars(n, seed=seed, start="2021-01-04", freq="B")
    dates = xcals.get_calendar("XNYS", start="2021-01-04", end="2023-12-29").sessions[:n]
    frame.index = dates
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for time, row in frame.iterrows():
        prices = f"{row.open:.4f},{row.high:.4f},{row.low:.4f},{row.close:.4f}"
        lines.append(f"{time:%Y-%m-%d},{prices},{row.close * 0.9:.4f},{int(row.volume * 1e3)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_yahoo_daily_file_backtests_on_sym_d(tmp_path, capsys):
    path = yahoo_csv(tmp_path / "orcl.csv")
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(path), "--bsid", "ORCL:D",
            "--param", "fast=5", "--param", "slow=20"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    from osmarkets.backtest import backtest
    from osmarkets.data.io import read_bars

    expected = backtest(SmaCross, read_bars(path), "ORCL:D", params={"fast": 5, "slow": 20})
    assert expected.stats["trades"] > 4
    assert f"{expected.final_value:,.2f}" in out
    code, out, err = run([*argv, "--calendar", "XNYS"], capsys)  # the same fills by session
    assert code == 0, err
    assert f"{expected.final_value:,.2f}" in out


def test_a_longer_frame_is_derived_and_a_shorter_one_refused(tmp_path, capsys, bars_csv):
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--param", "fast=2",
            "--param", "slow=5"]  # fmt: skip
    code, out, err = run([*argv, "--bsid", "FUT:M5"], capsys)
    assert code == 0, err
    assert "FUT:M5" in out
    code, out, err = run([*argv, "--bsid", "FUT:M5", "--bsid", "FUT:M15"], capsys)
    assert code == 0, err
    daily = yahoo_csv(tmp_path / "daily.csv", n=40)
    code, _, err = run(["backtest", f"{EXAMPLE}:SmaCross", "--data", str(daily), "--bsid",
                        "ORCL:M1"], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has D bars" in err and "M1 is shorter; ask for D or a longer frame" in err
    five = tmp_path / "five.csv"
    make_bars(300, freq="5min").to_csv(five)
    code, _, err = run(["backtest", f"{EXAMPLE}:SmaCross", "--data", str(five), "--bsid",
                        "FUT:M7"], capsys)  # fmt: skip
    assert code == 2 and "its M5 bars do not fit in M7 periods" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--calendar", "NOPE"], "--calendar: unknown exchange calendar 'NOPE'"),
        (["--regular-hours"], "--regular-hours: needs an exchange calendar"),
        (["--daily-alignment", "25"], "--daily-alignment: expected an hour 0..23, got 25"),
        (["--alignment-timezone", "Mars/Base"], "--alignment-timezone: unknown time zone"),
        (["--weekly-alignment", "Funday"], "--weekly-alignment: expected one of Monday"),
        (["--data-timeframe", "Q9"], "--data-timeframe: timeframe: unknown granularity"),
        (["--instruments", "missing.toml"], "--instruments:"),
    ],
)
def test_bad_data_options_are_one_line_exit_2(bars_csv, capsys, options, message):
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--bsid", "X:M1"]
    code, _, err = run([*argv, *options], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_instruments_file_on_the_command_line(tmp_path, capsys, bars_csv):
    spec = tmp_path / "spec.toml"
    spec.write_text("[X]\nlot_size = 7\n")
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(bars_csv), "--bsid", "X:M1",
            "--param", "fast=3", "--param", "slow=9", "--param", "size=10"]  # fmt: skip
    code, out, err = run([*argv, "--instruments", str(spec)], capsys)
    assert code == 0, err
    assert "trades                 0" in out  # every order of 10 is off the lot of 7
    code, out, err = run(argv, capsys)
    assert "trades                 0" not in out


def test_the_readme_backtest_command_runs_as_written(tmp_path, capsys, monkeypatch):
    import re
    import shlex

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.rst").read_text()
    block = re.search(r"(osmarkets backtest [^\n]*\\\n[^\n]*)", readme)
    assert block is not None
    argv = shlex.split(block.group(1).replace("\\\n", " "))[1:]
    assert argv[argv.index("--bsid") + 1] == "STOCK:D"
    argv[argv.index("--html") + 1] = str(tmp_path / "report.html")
    monkeypatch.chdir(root)
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "final_value" in out and (tmp_path / "report.html").exists()


def test_a_directory_of_parquet_files_is_streamed_with_the_same_result(tmp_path, capsys):
    folder = tmp_path / "bars"
    folder.mkdir()
    frame = make_bars(400, seed=5)
    frame.to_parquet(folder / "EUR_USD.parquet")
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--bsid", "EUR_USD:M1", "--param", "fast=3",
            "--param", "slow=9", "--param", "size=10"]  # fmt: skip
    code, streamed, err = run([*argv, "--data", str(folder)], capsys)
    assert code == 0, err
    code, whole, err = run([*argv, "--data", str(folder / "EUR_USD.parquet")], capsys)
    assert code == 0, err
    code, chunked, err = run([*argv, "--data", str(folder / "EUR_USD.parquet"), "--stream"],
                             capsys)  # fmt: skip
    assert code == 0, err
    table = lambda out: out.splitlines()[1:]  # noqa: E731 (the first line names the data)
    assert table(streamed) == table(whole) == table(chunked) and "final_value" in whole
    code, _, err = run([*argv, "--data", str(folder), "--bsid", "GBP_USD:M1"], capsys)
    assert code == 2 and "no file for 'GBP_USD'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run([*argv, "--data", str(tmp_path / "nothing"), "--stream"], capsys)
    assert code == 2 and "no such file" in err


def test_stream_one_file_for_several_bsids_as_without_stream(tmp_path, capsys):
    path = tmp_path / "bars.csv"
    make_bars(300, seed=7).to_csv(path)
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(path), "--bsid", "A:M1",
            "--bsid", "B:M1", "--param", "fast=3", "--param", "slow=9"]  # fmt: skip
    code, whole, err = run(argv, capsys)
    assert code == 0, err
    parquet = tmp_path / "bars.parquet"
    make_bars(300, seed=7).to_parquet(parquet)
    argv[3] = str(parquet)
    code, streamed, err = run([*argv, "--stream"], capsys)
    assert code == 0, err
    assert whole.splitlines()[1:] == streamed.splitlines()[1:]
