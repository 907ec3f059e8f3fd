"""The optimiser and walk-forward on daily stock data as it comes (issue: data of any market)."""

from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from osmarkets.backtest import backtest
from osmarkets.cli import main
from osmarkets.optimize import Evaluator, explore, walk_forward
from osmarkets.strategies import SmaCross

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


def yahoo(n=600, seed=4):
    """Daily bars of New York sessions stamped at 00:00 UTC, prices in cents."""
    dates = xcals.get_calendar("XNYS", start="2015-01-02", end="2019-12-31").sessions[:n]
    rng = np.random.default_rng(seed)
    close = np.round(30 * np.exp(np.cumsum(rng.normal(0, 0.015, n))), 2)
    open_ = np.round(np.r_[30.0, close[:-1]] * (1 + rng.normal(0, 0.003, n)), 2)
    index = pd.DatetimeIndex(np.asarray(dates.as_unit("ns").asi8).view("M8[ns]"), name="time")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + 0.2,
         "low": np.minimum(open_, close) - 0.2, "close": close, "volume": 1e5},
        index=index.tz_localize("UTC"),
    )  # fmt: skip


@pytest.mark.parametrize("bsid", [None, "STK:D"])
def test_the_evaluator_takes_daily_bars_as_they_are(bsid):
    data = yahoo()
    fast = Evaluator(SmaCross, data, bsid, cash=1e6)
    slow = Evaluator(SmaCross, data, bsid, cash=1e6, engine="event")
    assert str(fast.bsid).endswith(":D")
    configs = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 40}]
    for a, b in zip(fast.evaluate(configs), slow.evaluate(configs), strict=True):
        assert a["stats"]["trades"] == b["stats"]["trades"] > 0
        assert a["stats"]["final_value"] == pytest.approx(b["stats"]["final_value"])
    expected = backtest(SmaCross, data, "STK:D", params=configs[0], cash=1e6)
    assert slow.evaluate(configs[:1])[0]["stats"]["final_value"] == expected.final_value


def test_explore_and_walk_forward_on_weeks_of_a_daily_file_with_a_calendar():
    data = yahoo()
    options = {"calendar": "XNYS"}
    result = explore(SmaCross, data, {"fast": [3, 5], "slow": [10, 12]}, bsid="STK:W",
                     grid=True, data_options=options, filters={"min_trades": 0})  # fmt: skip
    assert len(result.table) == 4
    expected = backtest(SmaCross, data, "STK:W", params={"fast": 3, "slow": 10},
                        calendar="XNYS")  # fmt: skip
    table = result.table.set_index(["fast", "slow"])
    assert table.loc[(3, 10), "final_value"] == pytest.approx(expected.final_value)
    walk = walk_forward(SmaCross, data, {"fast": [3, 5], "slow": [10, 12]}, train=60, test=20,
                        bsid="STK:W", grid=True, data_options=options,
                        filters={"min_trades": 0})  # fmt: skip
    assert len(walk.windows) >= 2


def test_a_shorter_frame_and_bad_data_options_are_refused():
    with pytest.raises(ValueError, match="has D bars.*M1 is shorter"):
        Evaluator(SmaCross, yahoo(), "STK:M1")
    with pytest.raises(ValueError, match="unknown option 'session'"):
        Evaluator(SmaCross, yahoo(), "STK:D", data_options={"session": "XNYS"})
    with pytest.raises(ValueError, match="vectorised engine has no instrument model"):
        Evaluator(SmaCross, yahoo(), "STK:D", data_options={"instruments": {"STK": {}}})


def test_the_optimize_command_on_a_yahoo_file(tmp_path, capsys):
    path = tmp_path / "stk.csv"
    data = yahoo(300)
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"] + [
        f"{t:%Y-%m-%d},{r.open},{r.high},{r.low},{r.close},{r.close},100000"
        for t, r in data.iterrows()
    ]
    path.write_text("\n".join(lines) + "\n")
    code = main(["optimize", EXAMPLE, "--data", str(path), "--bsid", "STK:D", "--space",
                 "fast=3:6", "--space", "slow=10:14", "--samples", "6", "--quiet",
                 "--calendar", "XNYS"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "STK:D" in out
    code = main(["optimize", EXAMPLE, "--data", str(path), "--bsid", "STK:M5", "--space",
                 "fast=3:6", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "has D bars" in err and len(err.strip().splitlines()) == 1


def test_alignment_options_are_keywords_of_explore_and_walk_forward_too():
    data = yahoo()
    space = {"fast": [3], "slow": [10]}
    by_keyword = explore(SmaCross, data, space, bsid="STK:W", grid=True, calendar="XNYS",
                         filters={"min_trades": 0})  # fmt: skip
    by_mapping = explore(SmaCross, data, space, bsid="STK:W", grid=True,
                         data_options={"calendar": "XNYS"}, filters={"min_trades": 0})  # fmt: skip
    assert by_keyword.table["final_value"].iloc[0] == by_mapping.table["final_value"].iloc[0]
    stamped = Evaluator(SmaCross, data, "STK:W", calendar="XNYS").frame.index
    dated = Evaluator(SmaCross, data, "STK:W").frame.index
    assert (stamped.tz_convert("America/New_York").strftime("%H:%M") == "09:30").all()
    assert (dated.hour == 0).all() and len(dated) == len(stamped)
    walk = walk_forward(SmaCross, data, space, train=60, test=20, bsid="STK:W", grid=True,
                        calendar="XNYS", filters={"min_trades": 0})  # fmt: skip
    assert len(walk.windows) >= 2
