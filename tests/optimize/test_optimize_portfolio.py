"""The greedy correlation-aware portfolio, and explore/build_portfolio in-process."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_optimize import Momentum, make_bars

from osmarkets.optimize import (
    Filters,
    IntRange,
    Space,
    build_portfolio,
    explore,
    load_table,
    select_portfolio,
)
from osmarkets.optimize.portfolio import combine

N = 2000
INDEX = pd.date_range("2024-01-01", periods=N, freq="h", tz="UTC")


def curve(returns, cash=100.0):
    return pd.Series(cash * np.cumprod(1 + np.asarray(returns)), index=INDEX)


def correlated(base, rho, rng, mean=0.0005, vol=0.01):
    """Returns with correlation ``rho`` to ``base`` (both standardised)."""
    noise = rng.normal(0, 1, N)
    z = (base - base.mean()) / base.std()
    return mean + vol * (rho * z + math.sqrt(1 - rho * rho) * noise)


@pytest.fixture
def series():
    rng = np.random.default_rng(42)
    base = rng.normal(0, 1, N)
    return {
        "best": 0.0006 + 0.01 * (base - base.mean()) / base.std(),
        "twin": correlated(base, 0.95, rng),  # a near copy of the best
        "independent": correlated(base, 0.0, rng),
        "anti": correlated(base, -0.5, rng),
        "loser": correlated(rng.normal(0, 1, N), 0.0, rng, mean=-0.001),
    }


def test_rule_rejects_correlated_and_non_improving_candidates(series):
    curves = {k: curve(v) for k, v in series.items()}
    p = select_portfolio(
        curves,
        max_correlation=0.5,
        measure="sharpe",
        initial=dict.fromkeys(curves, 100.0),
        cash=100.0,
    )
    d = p.decisions.set_index("id")
    assert d.loc["best", "accepted"]
    assert not d.loc["twin", "accepted"] and d.loc["twin", "reason"].startswith("correlation")
    assert d.loc["independent", "accepted"]
    assert d.loc["anti", "accepted"]
    assert not d.loc["loser", "accepted"] and "does not improve" in d.loc["loser", "reason"]
    assert p.members == ["best", "independent", "anti"]
    # the correlation matrix reflects how the series were built
    assert p.correlation.loc["best", "anti"] == pytest.approx(-0.5, abs=0.06)
    assert abs(p.correlation.loc["best", "independent"]) < 0.08
    assert np.allclose(np.diag(p.correlation), 1.0)
    # each accepted member improved the measure: the decisions' measures increase
    accepted = d[d["accepted"]]["measure"].to_numpy()
    assert np.all(np.diff(accepted) > 0)
    assert p.value == pytest.approx(accepted[-1])


def test_a_looser_threshold_admits_the_twin_only_if_it_improves(series):
    curves = {k: curve(v) for k, v in series.items() if k in ("best", "twin")}
    p = select_portfolio(curves, max_correlation=0.99)
    d = p.decisions.set_index("id")
    assert d.loc["twin", "reason"] == "" or "does not improve" in d.loc["twin", "reason"]


def test_equal_weights_and_combined_equity(series):
    curves = {k: curve(v) for k, v in series.items()}
    p = select_portfolio(
        curves, max_correlation=0.5, initial=dict.fromkeys(curves, 100.0), cash=1000.0
    )
    assert p.weights.sum() == pytest.approx(1.0)
    assert np.allclose(p.weights, 1 / len(p.members))
    manual = 1000.0 * np.mean([curves[m] / 100.0 for m in p.members], axis=0)
    assert np.allclose(p.equity.to_numpy(), manual)


def test_max_members_and_flat_candidates():
    rng = np.random.default_rng(1)
    curves = {f"c{i}": curve(rng.normal(0.001, 0.01, N)) for i in range(6)}
    curves["flat"] = pd.Series(100.0, index=INDEX)
    full = select_portfolio(curves, max_correlation=0.9, max_members=2)
    assert len(full.members) == 2
    assert full.decisions.set_index("id").loc["flat", "reason"] == "portfolio full"
    roomy = select_portfolio(curves, max_correlation=0.9, max_members=10)
    reason = roomy.decisions.set_index("id").loc["flat", "reason"]
    assert reason.startswith("correlation undefined")
    assert "flat" not in roomy.members


def test_a_wiped_out_account_is_never_a_member():
    rng = np.random.default_rng(2)
    good = curve(rng.normal(0.001, 0.01, N))
    ruined = curve(rng.normal(0.002, 0.01, N)).copy()
    ruined.iloc[N // 2 :] = 0.0
    p = select_portfolio({"ruined": ruined, "good": good})
    assert p.members == ["good"]


def test_combine_equal_weights():
    frame = pd.DataFrame({"a": [100.0, 110.0], "b": [200.0, 180.0]}, index=INDEX[:2])
    assert combine(frame, cash=10.0).tolist() == pytest.approx([10.0, 10.0])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_correlation": 1.5}, "max_correlation"),
        ({"max_members": 0}, "max_members"),
        ({"measure": "luck"}, "measure"),
    ],
)
def test_bad_portfolio_settings(series, kwargs, field):
    with pytest.raises(ValueError, match=field):
        select_portfolio({"best": curve(series["best"])}, **kwargs)


def test_explore_in_process_keeps_every_configuration(tmp_path):
    bars = make_bars(3000, seed=5)
    space = Space({"lag": IntRange(1, 60)})
    result = explore(
        Momentum,
        bars,
        space,
        samples=40,
        seed=3,
        filters=Filters(min_trades=30, max_drawdown=0.5),
        max_correlation=0.8,
    )
    table = result.to_pandas()
    assert len(table) == 40 and table["id"].is_unique
    assert set(table["lag"]) <= set(range(1, 61))
    assert (table["passed"] == (table["reason"] == "")).all()
    failed = table[~table["passed"]]
    assert ((failed["trades"] < 30) | (failed["max_drawdown"] > 0.5)).all()
    ok = table[table["passed"]]
    assert ((ok["trades"] >= 30) & (ok["max_drawdown"] <= 0.5)).all()
    members = set(result.portfolio.members)
    assert members == set(table.loc[table["included"], "id"])
    assert table.loc[table["included"], "passed"].all()
    # same seed, same exploration
    again = explore(
        Momentum,
        bars,
        space,
        samples=40,
        seed=3,
        filters=Filters(min_trades=30, max_drawdown=0.5),
        max_correlation=0.8,
    )
    assert again.table["id"].tolist() == table["id"].tolist()
    for name in ("results.csv", "results.parquet"):
        result.save(tmp_path / name)
        back = load_table(tmp_path / name)
        assert back["id"].tolist() == table["id"].tolist()
        assert back["included"].tolist() == table["included"].tolist()


def test_build_portfolio_again_with_other_settings(tmp_path):
    bars = make_bars(2000, seed=6)
    result = explore(Momentum, bars, {"lag": IntRange(1, 40)}, samples=30, portfolio=False)
    assert result.portfolio is None and not result.table["included"].any()
    one = build_portfolio(result, max_members=1)
    assert len(one.members) == 1
    page = one.to_html(str(tmp_path / "p.html"))
    assert Path(page).read_text().count("data:image/png;base64,") == 1
    assert list(one.to_pandas()["id"]) == one.members
    best = result.best(1)["id"].iloc[0]
    assert one.members == [best]


def test_refinement_rounds_are_recorded():
    bars = make_bars(2000, seed=7)
    result = explore(
        Momentum,
        bars,
        {"lag": IntRange(1, 200)},
        samples=20,
        refine=2,
        refine_samples=10,
        portfolio=False,
    )
    table = result.table
    assert table["id"].is_unique
    assert sorted(table["round"].unique()) == [0, 1, 2]
    assert (table["round"] == 0).sum() == 20
