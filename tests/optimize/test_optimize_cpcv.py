"""Walk-forward by combinatorial purged cross-validation (issue 15): ``walk_forward(...,
method='cpcv')`` chooses on training bars only (purge and embargo left out), and stitches the
test groups into φ out-of-sample paths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers_optimize import Momentum, make_bars

from osmarkets.backtest import stats as st
from osmarkets.cli import main
from osmarkets.optimize import IntRange, walk_forward
from osmarkets.optimize.overfit import cpcv_splits

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


@pytest.fixture(scope="module")
def bars():
    return make_bars(1800, seed=5, freq="5min")


@pytest.fixture(scope="module")
def result(bars):
    return walk_forward(Momentum, bars, {"lag": IntRange(1, 60)}, method="cpcv", groups=6,
                        test_groups=2, purge=7, embargo=4, samples=24, seed=3)  # fmt: skip


def _returns(result):
    table = result.exploration.table
    configs = [{"lag": int(lag)} for lag in table["lag"]]
    returns = np.array(result.exploration.evaluator.returns(configs), dtype=float)
    returns[~np.isfinite(returns)] = 0.0
    return table, returns


def test_counts_of_splits_and_paths(result, bars) -> None:
    assert len(result.splits) == math.comb(6, 2) == 15
    assert len(result.paths) == math.comb(5, 1) == 5
    assert result.path_returns.shape == (len(bars), 5)
    assert result.stats["paths"] == 5 and result.stats["splits"] == 15
    assert sorted(map(tuple, result.splits["test_groups"])) == sorted(
        (a, b) for a in range(6) for b in range(a + 1, 6)
    )


def test_each_split_chooses_on_its_training_bars_only(result, bars) -> None:
    table, returns = _returns(result)
    n = len(bars)
    for row, (train, test) in zip(
        result.splits.to_dict("records"), cpcv_splits(n, 6, 2, 7, 4), strict=True
    ):
        assert row["train_bars"] == len(train) and not set(train) & set(test)
        # purge before and embargo after each test block are out of training
        assert len(train) == n - len(test) - _left_out(test, n, 7, 4)
        chosen = returns[train]
        sharpe = chosen.mean(axis=0) / chosen.std(axis=0, ddof=1)
        assert row["config"] == table["id"].iloc[int(np.nanargmax(sharpe))]


def _left_out(test: np.ndarray, n: int, purge: int, embargo: int) -> int:
    inside = np.zeros(n, bool)
    inside[test] = True
    out = np.zeros(n, bool)
    starts = np.flatnonzero(inside & ~np.r_[False, inside[:-1]])
    stops = np.flatnonzero(inside & ~np.r_[inside[1:], False]) + 1
    for start, stop in zip(starts, stops, strict=True):
        out[max(0, start - purge) : start] = True
        out[stop : stop + embargo] = True
    return int((out & ~inside).sum())


def test_paths_are_the_chosen_configurations_returns_on_the_groups_they_test(result) -> None:
    table, returns = _returns(result)
    ids = list(table["id"])
    splits = result.splits.set_index("split")
    bounds = np.r_[0, np.cumsum([len(p) for p in np.array_split(np.arange(len(returns)), 6)])]
    covered = {group: [] for group in range(6)}
    for split, groups in splits["test_groups"].items():
        for group in groups:
            covered[group].append(split)
    for j, column in enumerate(result.path_returns):
        for group in range(6):
            split = covered[group][j]
            config = ids.index(splits.loc[split, "config"])
            start, stop = bounds[group], bounds[group + 1]
            got = result.path_returns[column].to_numpy()[start:stop]
            assert np.array_equal(got, returns[start:stop, config])
        expected = st.sharpe(result.path_returns[column], result.periods_per_year)
        assert result.paths.loc[column, "sharpe"] == pytest.approx(expected)
    sharpes = result.paths["sharpe"]
    assert result.stats["median_sharpe"] == pytest.approx(float(np.median(sharpes)))
    assert result.stats["negative_paths"] == pytest.approx(float((sharpes < 0).mean()))


def test_summary_report_and_bad_arguments(result, bars, tmp_path) -> None:
    assert "5 paths" in result.summary() and "purge 7 and embargo 4 bars" in result.summary()
    text = Path(result.to_html(tmp_path / "cpcv.html")).read_text()
    assert "Out-of-sample Sharpe over the paths" in text and "data:image/png" in text
    with pytest.raises(ValueError, match=r"method: expected 'windows' \('rolling' or 'anch"):
        walk_forward(Momentum, bars, {"lag": IntRange(1, 9)}, method="kfold")
    with pytest.raises(ValueError, match="train/test: a walk-forward by windows needs both"):
        walk_forward(Momentum, bars, {"lag": IntRange(1, 9)})
    with pytest.raises(ValueError, match="test_groups"):
        walk_forward(Momentum, bars, {"lag": IntRange(1, 9)}, method="cpcv", test_groups=6,
                     samples=3)  # fmt: skip


def test_rolling_and_anchored_name_the_windows(bars) -> None:
    space = {"lag": IntRange(1, 20)}
    options = {"train": 600, "test": 300, "samples": 4, "max_members": 1}
    rolling = walk_forward(Momentum, bars, space, method="rolling", **options)
    anchored = walk_forward(Momentum, bars, space, method="anchored", **options)
    assert set(rolling.windows["train_bars"]) == {600}
    assert list(anchored.windows["train_bars"])[:2] == [600, 900]  # anchored: training grows


def test_cli_cpcv(tmp_path, capsys) -> None:
    data = tmp_path / "bars.csv"
    make_bars(1500, seed=8).to_csv(data)
    base = ["walkforward", EXAMPLE, "--data", str(data), "--bsid", "X:M1", "--space",
            "fast=2:20", "--space", "slow=21:90", "--samples", "12"]  # fmt: skip
    cpcv = ["--method", "cpcv", "--groups", "4", "--test-groups", "2", "--purge", "3",
            "--embargo", "3", "--html", str(tmp_path / "c.html")]  # fmt: skip
    assert main([*base, *cpcv]) == 0
    out = capsys.readouterr().out
    assert "6 splits, 3 paths" in out and "out-of-sample Sharpe over the paths" in out
    assert (tmp_path / "c.html").exists()
    for extra, message in (
        ([], "--train and --test: both are needed (or --method cpcv)"),
        (["--method", "cpcv", "--groups", "1"], "--groups/--test-groups: expected groups >= 2"),
        (["--method", "cpcv", "--purge", "-1"], "--purge/--embargo: expected"),
    ):
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err


def test_cpcv_refuses_what_would_choose_on_test_bars(bars) -> None:
    space = {"lag": IntRange(1, 9)}
    for extra in ({"search": "tpe"}, {"refine": 1}):
        with pytest.raises(ValueError, match="cpcv: a model search or refinement"):
            walk_forward(Momentum, bars, space, method="cpcv", samples=3, **extra)
    with pytest.raises(ValueError, match="purge/embargo: split 0 keeps"):
        walk_forward(Momentum, bars, space, method="cpcv", groups=3, test_groups=2,
                     purge=900, embargo=900, samples=3)  # fmt: skip
