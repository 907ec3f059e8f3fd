"""Model searches (issue 15): Optuna's TPE and NSGA-II samplers propose the configurations,
every one tried is a row of the table (so the DSR counts them), constraints hold, and the
runner (in-process or Backtester agents) evaluates each batch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_optimize import Momentum, make_bars

from osmarkets.cli import main
from osmarkets.optimize import IntRange, explore
from osmarkets.optimize.search import distributions
from osmarkets.optimize.space import Choice, FloatRange, LogFloatRange, Space
from osmarkets.strategies import SmaCross

optuna = pytest.importorskip("optuna")
EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


@pytest.fixture(scope="module")
def bars():
    return make_bars(2500, seed=9, freq="5min")


@pytest.mark.parametrize("search", ["tpe", "nsga2"])
def test_every_proposed_configuration_is_a_row_and_counts_as_a_trial(bars, search) -> None:
    result = explore(Momentum, bars, {"lag": IntRange(1, 150)}, samples=40, seed=3,
                     search=search, batch=8)  # fmt: skip
    table = result.table
    assert len(table) == 40 and table["id"].is_unique
    assert result.meta["search"] == search and result.meta["trials"] == 40
    assert table["round"].max() >= 4  # batches of 8, each told before the next is asked
    again = explore(Momentum, bars, {"lag": IntRange(1, 150)}, samples=40, seed=3,
                    search=search, batch=8)  # fmt: skip
    assert list(again.table["id"]) == list(table["id"])  # the seed makes it reproducible
    assert np.isfinite(table["dsr"]).any()


def test_tpe_concentrates_where_the_scores_are_good(bars) -> None:
    result = explore(Momentum, bars, {"lag": IntRange(1, 300)}, samples=64, seed=1,
                     search="tpe", batch=8, portfolio=False)  # fmt: skip
    table = result.table
    first = table[table["round"] == 0]["score"].mean()
    late = table[table["round"] >= 5]["score"].mean()
    assert late > first  # later batches are proposed from what scored well


def test_constraints_hold_and_rejected_proposals_are_not_rows(bars) -> None:
    space = {"fast": IntRange(2, 40), "slow": IntRange(5, 60)}
    result = explore(SmaCross, bars, space, samples=30, seed=2, search="tpe", batch=6,
                     constraints=["fast + 5 < slow"], portfolio=False)  # fmt: skip
    table = result.table
    assert len(table) == 30 and (table["fast"] + 5 < table["slow"]).all()


def test_the_agents_evaluate_the_batches(bars) -> None:
    result = explore(Momentum, bars, {"lag": IntRange(1, 150)}, samples=24, seed=3,
                     search="tpe", batch=6, workers=2, portfolio=False)  # fmt: skip
    assert len(result.table) == 24
    assert set(result.table["worker"]) - {"local"}  # evaluated by the Backtester agents


def test_distributions_keep_each_dimension_s_values_and_scale() -> None:
    space = Space({"n": IntRange(2, 11, 3), "x": FloatRange(0.0, 1.0, 0.25),
                   "r": LogFloatRange(1e-3, 1.0), "c": Choice(["a", "b"])})  # fmt: skip
    found = distributions(space)
    assert (found["n"].low, found["n"].high, found["n"].step) == (2, 11, 3)
    assert (found["x"].low, found["x"].high, found["x"].step) == (0.0, 1.0, 0.25)
    assert found["r"].log and found["c"].choices == ("a", "b")


def test_bad_searches(bars, monkeypatch) -> None:
    space = {"lag": IntRange(1, 9)}
    with pytest.raises(ValueError, match="search: expected one of random, grid, tpe, nsga2"):
        explore(Momentum, bars, space, search="bayes")
    with pytest.raises(ValueError, match="refine: not with search='tpe'"):
        explore(Momentum, bars, space, search="tpe", refine=2)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if Optuna were not installed
    with pytest.raises(ValueError, match="need Optuna: python -m pip install optuna"):
        explore(Momentum, bars, space, search="tpe")


def test_cli_search(tmp_path, capsys) -> None:
    data = tmp_path / "bars.csv"
    make_bars(1500, seed=8).to_csv(data)
    base = ["optimize", EXAMPLE, "--data", str(data), "--bsid", "X:M1", "--space", "fast=2:20",
            "--space", "slow=21:90", "--samples", "20", "--partitions", "0"]  # fmt: skip
    out = tmp_path / "r.csv"
    assert main([*base, "--search", "tpe", "-o", str(out)]) == 0
    assert "20 configurations" in capsys.readouterr().out
    import pandas as pd

    assert len(pd.read_csv(out)) == 20
    assert main([*base, "--search", "tpe", "--refine", "2"]) == 2
    assert "refine: not with search='tpe'" in capsys.readouterr().err


def test_refinement_rounds_are_proposed_by_tpe_from_every_score_so_far(bars, monkeypatch) -> None:
    from osmarkets.optimize import search as search_module

    told = []
    original = search_module.model_search

    def spy(space, evaluate, **kwargs):
        told.append((kwargs["method"], len(kwargs.get("known", ())), kwargs["trials"]))
        return original(space, evaluate, **kwargs)

    monkeypatch.setattr("osmarkets.optimize.pipeline.model_search", spy)
    result = explore(Momentum, bars, {"lag": IntRange(1, 300)}, samples=24, seed=1, refine=3,
                     refine_samples=12, portfolio=False)  # fmt: skip
    table = result.table
    assert told == [("tpe", 24, 12), ("tpe", 36, 12), ("tpe", 48, 12)]  # all scores so far
    assert table["id"].is_unique and len(table) == 60 == result.meta["trials"]
    assert list(table["round"].value_counts().sort_index()) == [24, 12, 12, 12]
    first = table[table["round"] == 0]["score"].mean()
    assert table[table["round"] == 3]["score"].mean() > first


def test_refinement_stops_when_the_space_is_exhausted(bars) -> None:
    result = explore(Momentum, bars, {"lag": IntRange(1, 12)}, samples=8, seed=1, refine=3,
                     refine_samples=10, portfolio=False)  # fmt: skip
    assert sorted(result.table["lag"]) == list(range(1, 13))  # every value once, then done


def test_stepped_floats_keep_one_id_and_an_exhausted_grid_is_not_refined_again(bars) -> None:
    from osmarkets.optimize.space import FloatRange

    space = {"lag": IntRange(3, 4), "size": FloatRange(0.1, 0.7, 0.2)}
    result = explore(Momentum, bars, space, grid=True, refine=2, refine_samples=5,
                     portfolio=False)  # fmt: skip
    assert len(result.table) == 8 and result.table["id"].is_unique  # no 0.7 next to 0.7000..1
    with pytest.raises(ValueError, match="grid: True conflicts with search='tpe'"):
        explore(Momentum, bars, space, grid=True, search="tpe")
