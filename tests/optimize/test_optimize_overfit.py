"""Overfitting in the optimiser (issue 15): every configuration's PSR and DSR deflated by every
trial, the ``min_dsr`` filter, :meth:`ExploreResult.overfit` (PBO of the search) and what the
CLI prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_optimize import EventMomentum, Momentum, make_bars

from osmarkets.cli import main
from osmarkets.optimize import IntRange, explore
from osmarkets.optimize.evaluate import Filters
from osmarkets.optimize.overfit import (
    deflated_sharpe,
    expected_max_sharpe,
    pbo,
    probabilistic_sharpe,
)
from osmarkets.optimize.results import ExploreResult

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"
SPACE = {"lag": IntRange(1, 80)}


@pytest.fixture(scope="module")
def bars():
    return make_bars(2400, seed=3, freq="5min")


@pytest.fixture(scope="module")
def searched(bars):
    return explore(Momentum, bars, SPACE, samples=40, seed=2, refine=1, refine_samples=10)


def test_each_configuration_has_its_psr_and_its_dsr_deflated_by_every_trial(searched):
    table = searched.table
    assert searched.meta["trials"] == len(table) > 40  # the refinement round counts too
    assert set(table["round"]) == {0, 1}
    evaluator = searched.evaluator
    sharpes = table["period_sharpe"].to_numpy()
    assert np.isfinite(sharpes).all()
    assert searched.meta["expected_max_sharpe"] == pytest.approx(expected_max_sharpe(sharpes))
    for row in table.sample(5, random_state=1).to_dict("records"):
        returns = evaluator.returns([{"lag": int(row["lag"])}]).iloc[:, 0].to_numpy()
        assert row["period_sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1))
        assert row["psr"] == pytest.approx(probabilistic_sharpe(returns), rel=1e-9)
        assert row["dsr"] == pytest.approx(deflated_sharpe(returns, sharpes), rel=1e-9)
        assert row["dsr"] <= row["psr"]  # deflating raises the bar


def test_the_event_driven_engine_gives_the_same_moments(bars):
    fast = explore(Momentum, bars, SPACE, samples=6, seed=4, portfolio=False)
    slow = explore(EventMomentum, bars, SPACE, samples=6, seed=4, portfolio=False)
    columns = ["period_sharpe", "skewness", "kurtosis", "periods", "psr", "dsr"]
    left = fast.table.set_index("lag")[columns].sort_index()
    right = slow.table.set_index("lag")[columns].sort_index()
    assert np.allclose(left.to_numpy(), right.to_numpy(), rtol=1e-9, equal_nan=True)


def test_min_dsr_keeps_low_dsr_configurations_out_of_the_portfolio(bars, searched):
    threshold = float(np.median(searched.table["dsr"]))
    kept = explore(Momentum, bars, SPACE, samples=40, seed=2, refine=1, refine_samples=10,
                   filters={"min_dsr": threshold}, max_correlation=0.99)  # fmt: skip
    table = kept.table
    low = table["dsr"] < threshold
    assert low.any() and not table.loc[low, "passed"].any()
    assert table.loc[low, "reason"].str.startswith("dsr ").all()
    assert (table.loc[table["included"], "dsr"] >= threshold).all()
    assert table["included"].any()
    # a per-row verdict cannot know the DSR (it needs every trial): it ignores the threshold
    assert Filters(min_dsr=0.99).verdict({"sharpe": 1.0}) == ""


def test_overfit_runs_pbo_on_the_passed_configurations(searched):
    found = searched.overfit(partitions=8)
    assert searched.overfitting is found and searched.meta["pbo"] == found.pbo
    assert found.combinations == 70 and found.partitions == 8
    passed = searched.table[searched.table["passed"]]
    configs = [{"lag": int(lag)} for lag in passed["lag"]]
    again = pbo(searched.evaluator.returns(configs), 8)
    assert found.pbo == again.pbo and np.array_equal(found.logits, again.logits)
    summary = searched.summary()
    assert f"PBO {found.pbo:.3f} over 70 combinations of 8 partitions" in summary
    assert f"deflated by {len(searched.table)} trials" in summary


def test_overfit_on_the_best_k_and_its_errors(bars, searched):
    found = searched.overfit(partitions=4, top=5)
    assert found.combinations == 6 and len(found.logits) == 6
    for top in (1, 2.5, True):
        with pytest.raises(ValueError, match="top: expected an integer >= 2"):
            searched.overfit(top=top)
    with pytest.raises(ValueError, match="partitions"):
        searched.overfit(partitions=3)
    strict = explore(Momentum, bars, SPACE, samples=8, seed=2, portfolio=False,
                     filters={"min_trades": 10**9})  # fmt: skip
    with pytest.raises(ValueError, match="0 configuration.*passed the filters.*top=K"):
        strict.overfit()
    assert strict.overfit(partitions=4, top=3).combinations == 6
    loaded = ExploreResult(table=searched.table, space=searched.space)
    with pytest.raises(ValueError, match="no evaluator"):
        loaded.overfit()


def test_pbo_of_a_search_on_noise_is_high_and_with_a_real_edge_low() -> None:
    """A search over pure noise picks its in-sample best by luck (PBO near 0.5); a search
    where one configuration really is better everywhere does not (PBO near 0)."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.01, (2000, 30))
    assert 0.2 < pbo(noise, 10).pbo < 0.8
    edge = noise.copy()
    edge[:, 7] += 0.004
    assert pbo(edge, 10).pbo < 0.05


def test_the_cli_prints_pbo_and_the_best_dsr(tmp_path, capsys) -> None:
    data = tmp_path / "bars.csv"
    make_bars(3000, seed=8).to_csv(data)
    argv = ["optimize", EXAMPLE, "--data", str(data), "--bsid", "X:M1", "--space", "fast=2:20",
            "--space", "slow=21:90", "--samples", "30", "--partitions", "8",
            "--html", str(tmp_path / "r.html")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "overfitting: PBO" in out and "70 combinations of 8 partitions" in out
    assert "best configuration: DSR" in out and "deflated by 30 trials" in out
    assert "<h2>Overfitting</h2>" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--min-dsr", "1.5"], "--min-dsr: expected a probability 0..1, got 1.5"),
        (["--partitions", "7"], "--partitions: expected an even number >= 2 (or 0), got 7"),
    ],
)
def test_bad_overfitting_options_are_one_line(tmp_path, capsys, extra, message) -> None:
    data = tmp_path / "bars.csv"
    make_bars(300, seed=8).to_csv(data)
    argv = ["optimize", EXAMPLE, "--data", str(data), "--bsid", "X:M1", "--space", "fast=2:9",
            *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"osmarkets optimize: {message}"


def test_a_single_configuration_is_not_deflated_and_partitions_0_leaves_pbo_out(
    bars, tmp_path, capsys
) -> None:
    one = explore(Momentum, bars, {"lag": IntRange(5, 5)}, samples=1, portfolio=False,
                  filters={"min_dsr": 0.0})  # fmt: skip
    row = one.table.iloc[0]
    assert row["dsr"] == row["psr"] and bool(row["passed"])  # nothing selected among one
    data = tmp_path / "bars.csv"
    make_bars(1500, seed=8).to_csv(data)
    html = tmp_path / "r.html"
    argv = ["optimize", EXAMPLE, "--data", str(data), "--bsid", "X:M1", "--space", "fast=2:9",
            "--samples", "6", "--partitions", "0", "--html", str(html)]  # fmt: skip
    assert main(argv) == 0
    assert "overfitting: PBO" not in capsys.readouterr().out
    assert "<th>PBO</th>" not in html.read_text()
