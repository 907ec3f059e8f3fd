"""Overfitting statistics (PSR, DSR, MinTRL, PBO by CSCV, CPCV) against slow re-implementations
written here from the published formulas: loops, exact sums, itertools, scipy.stats.norm."""

import dataclasses
import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from osmarkets.optimize import overfit
from osmarkets.optimize.overfit import (
    PBOResult,
    cpcv_paths,
    cpcv_splits,
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record_length,
    pbo,
    probabilistic_sharpe,
)

GAMMA = 0.5772156649015329  # Euler–Mascheroni


# -- seeded returns --------------------------------------------------------------------------


def normal_returns(seed, size, drift=0.0005):
    return np.random.default_rng(seed).normal(drift, 0.01, size)


def student_returns(seed, size, df=3):
    """Fat tails (kurtosis well above 3)."""
    return 0.0004 + 0.005 * np.random.default_rng(seed).standard_t(df, size)


def skewed_returns(seed, size):
    """Lognormal-based, right-skewed; negated for a left skew on odd seeds."""
    draws = np.random.default_rng(seed).lognormal(0.0, 0.75, size)
    centred = (draws - math.exp(0.75**2 / 2)) * 0.01 + 0.001
    return -centred + 0.002 if seed % 2 else centred


GENERATORS = [normal_returns, student_returns, skewed_returns]
SIZES = [2, 3, 17, 250, 2000]


# -- slow references from the formulas -------------------------------------------------------


def slow_moments(values):
    """Per-period Sharpe (ddof=1), biased skewness and kurtosis, T: loops and exact sums."""
    x = [float(v) for v in values]
    t = len(x)
    mean = math.fsum(x) / t
    deviations = [v - mean for v in x]
    m2 = math.fsum(d * d for d in deviations) / t
    m3 = math.fsum(d**3 for d in deviations) / t
    m4 = math.fsum(d**4 for d in deviations) / t
    std = math.sqrt(math.fsum(d * d for d in deviations) / (t - 1))
    return mean / std, m3 / m2**1.5, m4 / m2**2, t


def slow_psr(sr, skew, kurt, t, benchmark):
    z = (sr - benchmark) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return stats.norm.cdf(z)


def slow_expected_max(trials):
    n = len(trials)
    mean = math.fsum(trials) / n
    variance = math.fsum((v - mean) ** 2 for v in trials) / (n - 1)
    return math.sqrt(variance) * (
        (1 - GAMMA) * stats.norm.ppf(1 - 1 / n) + GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    )


def slow_min_trl(sr, skew, kurt, benchmark, confidence):
    if sr <= benchmark:
        return math.inf
    return (
        1
        + (1 - skew * sr + (kurt - 1) / 4 * sr**2)
        * (stats.norm.ppf(confidence) / (sr - benchmark)) ** 2
    )


def exact_sharpe(values):
    """Sharpe (ddof=1) with exact rational mean and variance, NaN if all values are equal;
    equal exact statistics give the same float, so ties stay ties."""
    if max(values) == min(values):
        return math.nan
    x = [Fraction(float(v)) for v in values]
    n = len(x)
    mean = sum(x) / n
    variance = sum((v - mean) ** 2 for v in x) / (n - 1)
    return float(mean) / math.sqrt(float(variance))


def slow_pbo(matrix, partitions):
    """CSCV as the paper states it, one combination and one configuration at a time."""
    matrix = np.asarray(matrix, dtype=float)
    t, n = matrix.shape
    size = t // partitions
    groups = [list(range(g * size, (g + 1) * size)) for g in range(partitions)]
    logits, is_perf, oos_perf, chosen = [], [], [], []
    for combo in itertools.combinations(range(partitions), partitions // 2):
        is_rows = [r for g in combo for r in groups[g]]
        oos_rows = [r for g in range(partitions) if g not in combo for r in groups[g]]
        is_sr = [exact_sharpe([matrix[r, j] for r in is_rows]) for j in range(n)]
        oos_sr = [exact_sharpe([matrix[r, j] for r in oos_rows]) for j in range(n)]
        is_score = [-math.inf if math.isnan(v) else v for v in is_sr]
        best = 0
        for j in range(1, n):
            if is_score[j] > is_score[best]:
                best = j
        oos_score = [-math.inf if math.isnan(v) else v for v in oos_sr]
        rank = stats.rankdata(oos_score)[best]  # ascending, average ties
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
        is_perf.append(is_sr[best])
        oos_perf.append(oos_sr[best])
        chosen.append(best)
    is_perf, oos_perf = np.array(is_perf), np.array(oos_perf)
    keep = np.isfinite(is_perf) & np.isfinite(oos_perf)
    slope = stats.linregress(is_perf[keep], oos_perf[keep]).slope if keep.sum() > 1 else math.nan
    return {
        "pbo": sum(1 for v in logits if v <= 0) / len(logits),
        "logits": np.array(logits),
        "is_performance": is_perf,
        "oos_performance": oos_perf,
        "chosen": np.array(chosen),
        "degradation": slope,
        "prob_loss": sum(1 for v in oos_perf if v < 0) / len(oos_perf),
        "combinations": len(logits),
    }


def assert_same_pbo(result, expected, partitions):
    assert isinstance(result, PBOResult)
    assert result.pbo == expected["pbo"]
    assert (
        result.combinations == expected["combinations"] == math.comb(partitions, partitions // 2)
    )
    assert result.partitions == partitions
    np.testing.assert_array_equal(result.chosen, expected["chosen"])
    np.testing.assert_allclose(result.logits, expected["logits"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.is_performance, expected["is_performance"], rtol=1e-9)
    np.testing.assert_allclose(result.oos_performance, expected["oos_performance"], rtol=1e-9)
    assert result.prob_loss == expected["prob_loss"]
    if math.isnan(expected["degradation"]):
        assert math.isnan(result.degradation)
    else:
        assert result.degradation == pytest.approx(expected["degradation"], rel=1e-9, abs=1e-12)


# -- probabilistic Sharpe ratio --------------------------------------------------------------


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("level", [0.0, 0.05, -0.02])
def test_psr_matches_the_formula(generator, size, level):
    for seed in range(3):
        returns = generator(seed, size)
        sr, skew, kurt, t = slow_moments(returns)
        expected = slow_psr(sr, skew, kurt, t, level)
        assert probabilistic_sharpe(returns, level) == pytest.approx(expected, abs=1e-12)


def test_psr_uses_biased_moments_and_ddof_1():
    returns = student_returns(7, 40)
    sr = returns.mean() / returns.std(ddof=1)
    skew = stats.skew(returns)
    kurt = stats.kurtosis(returns, fisher=False)
    expected = slow_psr(sr, skew, kurt, 40, 0.01)
    assert probabilistic_sharpe(returns, 0.01) == pytest.approx(expected, abs=1e-14)
    assert kurt > 3.5  # fat-tailed data really exercise the kurtosis term


@pytest.mark.parametrize("generator", GENERATORS)
def test_psr_is_one_half_when_the_sharpe_ratio_equals_the_benchmark(generator):
    returns = generator(3, 500)
    sr = slow_moments(returns)[0]
    assert probabilistic_sharpe(returns, sr) == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("generator", GENERATORS)
def test_psr_grows_with_the_track_record_when_the_sharpe_ratio_beats_the_benchmark(generator):
    returns = generator(5, 300)
    sr = slow_moments(returns)[0]
    above = [probabilistic_sharpe(np.tile(returns, k), sr - 0.02) for k in range(1, 6)]
    below = [probabilistic_sharpe(np.tile(returns, k), sr + 0.02) for k in range(1, 6)]
    assert all(a < b for a, b in itertools.pairwise(above))
    assert all(a > b for a, b in itertools.pairwise(below))
    # the same with the moments held fixed and T alone moving
    values = [overfit._psr(0.1, -1.0, 6.0, t, 0.02) for t in (10, 50, 100, 1000, 10_000)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_psr_accepts_lists_arrays_series_and_one_column_frames():
    returns = normal_returns(11, 60)
    expected = probabilistic_sharpe(returns)
    assert probabilistic_sharpe(list(returns)) == expected
    assert probabilistic_sharpe(pd.Series(returns)) == expected
    assert probabilistic_sharpe(pd.DataFrame({"a": returns})) == expected
    assert probabilistic_sharpe(pd.Series(returns, dtype="Float64")) == expected


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        ([0.01, math.nan, 0.02], "NaN"),
        ([0.01, math.inf, 0.02], "infinite"),
        ([0.01], "at least 2"),
        ([], "at least 2"),
        ([0.1, 0.1, 0.1], "constant"),
        (np.zeros((5, 2)), "one series"),
        (["a", "b"], "numeric"),
        (pd.Series([0.01, None, 0.02], dtype="Float64"), "NaN"),
    ],
)
def test_psr_rejects_bad_returns(returns, message):
    with pytest.raises(ValueError, match=message):
        probabilistic_sharpe(returns)


@pytest.mark.parametrize("level", [math.nan, math.inf, "0", True, None])
def test_psr_rejects_a_bad_benchmark(level):
    with pytest.raises(ValueError, match="benchmark"):
        probabilistic_sharpe([0.01, 0.02, -0.01], level)


def test_psr_of_two_valued_returns_without_estimation_error():
    # 1 − γ3·SR + (γ4 − 1)/4·SR² can only reach 0 for two-valued returns; then no doubt is
    # left and the PSR is 1 above the benchmark, 0 below it, 0.5 at it.
    assert overfit._psr(0.5, 4.0, 17.0, 100, 0.0) == 1.0  # 1 − 2 + 16/4·0.25 = 0
    assert overfit._psr(0.5, 4.0, 17.0, 100, 0.6) == 0.0
    assert overfit._psr(0.5, 4.0, 17.0, 100, 0.5) == 0.5


# -- deflated Sharpe ratio, expected maximum, MinTRL -----------------------------------------


@pytest.mark.parametrize("trials", [2, 3, 10, 100, 1000])
def test_expected_max_sharpe_matches_the_formula(trials):
    sharpes = np.random.default_rng(trials).normal(0.02, 0.03, trials)
    assert expected_max_sharpe(sharpes) == pytest.approx(slow_expected_max(sharpes), rel=1e-12)
    assert expected_max_sharpe(list(sharpes)) == expected_max_sharpe(pd.Series(sharpes))


def test_expected_max_sharpe_uses_the_ddof_1_variance():
    sharpes = [0.0, 0.1]
    sd = math.sqrt(0.005)  # ddof=1 variance of (0, 0.1); ddof=0 would be 0.0025
    expected = sd * (
        (1 - GAMMA) * stats.norm.ppf(0.5) + GAMMA * stats.norm.ppf(1 - 1 / (2 * math.e))
    )
    assert expected_max_sharpe(sharpes) == pytest.approx(expected, rel=1e-14)


def test_expected_max_sharpe_grows_with_the_number_of_trials():
    values = []
    for trials in (2, 3, 5, 10, 100, 1000, 10_000):
        draws = np.random.default_rng(trials).normal(size=trials)
        unit = (draws - draws.mean()) / draws.std(ddof=1)  # the same variance, 1, for every N
        values.append(expected_max_sharpe(0.05 * unit))
    assert all(a < b for a, b in itertools.pairwise(values))
    assert expected_max_sharpe(np.zeros(10)) == 0.0  # no dispersion among trials: no bias


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("size", [3, 50, 1250])
def test_deflated_sharpe_is_the_psr_against_the_expected_maximum(generator, size):
    returns = generator(size, size)
    trials = np.random.default_rng(size + 1).normal(0.0, 0.04, 25)
    benchmark = slow_expected_max(trials)
    sr, skew, kurt, t = slow_moments(returns)
    expected = slow_psr(sr, skew, kurt, t, benchmark)
    assert deflated_sharpe(returns, trials) == pytest.approx(expected, abs=1e-12)
    assert deflated_sharpe(returns, trials) == probabilistic_sharpe(returns, benchmark)


def test_deflated_sharpe_falls_as_trials_multiply():
    returns = normal_returns(2, 1000, drift=0.002)
    values = []
    for trials in (2, 10, 100, 1000, 10_000):
        draws = np.random.default_rng(trials).normal(size=trials)
        values.append(deflated_sharpe(returns, 0.02 * (draws - draws.mean()) / draws.std(ddof=1)))
    assert all(a > b for a, b in itertools.pairwise(values))


def test_the_numerical_example_of_the_deflated_sharpe_ratio_paper():
    # The inputs of the numerical example in Bailey and López de Prado (2014): N = 100 trials
    # whose annualised Sharpe ratios have variance 1/2, an annualised SR of 2.5 over 1,250 daily
    # observations, skewness −3, kurtosis 10, 250 days a year. Expected values computed here
    # from the formulas (rounded).
    days = 250
    sr0 = overfit._expected_max(0.5 / days, 100)
    assert sr0 == pytest.approx(0.113172, abs=1e-6)  # per day; ×√250 = 1.789 annualised
    dsr = overfit._psr(2.5 / math.sqrt(days), -3.0, 10.0, 1250, sr0)
    assert dsr == pytest.approx(0.900397, abs=1e-6)


def test_deflated_sharpe_needs_two_finite_trials():
    returns = normal_returns(0, 50)
    for bad, message in [([0.1], "at least 2"), ([0.1, math.nan], "NaN"), ([], "at least 2")]:
        with pytest.raises(ValueError, match=message):
            deflated_sharpe(returns, bad)
        with pytest.raises(ValueError, match="trial_sharpes"):
            expected_max_sharpe(bad)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("level", [0.0, 0.01])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_min_track_record_length_matches_the_formula(generator, level, confidence):
    returns = generator(4, 700) + 0.003
    sr, skew, kurt, _ = slow_moments(returns)
    expected = slow_min_trl(sr, skew, kurt, level, confidence)
    assert sr > level
    result = min_track_record_length(returns, level, confidence)
    assert result == pytest.approx(expected, rel=1e-10)
    # MinTRL is the length at which the PSR reaches the confidence
    assert overfit._psr(sr, skew, kurt, result, level) == pytest.approx(confidence, abs=1e-9)


def test_min_track_record_length_is_infinite_at_or_below_the_benchmark():
    returns = normal_returns(1, 300)
    sr = slow_moments(returns)[0]
    assert min_track_record_length(returns, sr + 0.01) == math.inf
    assert min_track_record_length(returns, sr) == math.inf
    assert min_track_record_length(-np.abs(returns)) == math.inf


def test_min_track_record_length_grows_with_confidence_and_benchmark():
    returns = normal_returns(9, 500, drift=0.003)
    by_confidence = [min_track_record_length(returns, 0.0, c) for c in (0.8, 0.9, 0.95, 0.99)]
    by_benchmark = [min_track_record_length(returns, b) for b in (0.0, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in itertools.pairwise(by_confidence))
    assert all(a < b for a, b in itertools.pairwise(by_benchmark))


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, math.nan, "0.9"])
def test_min_track_record_length_rejects_a_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        min_track_record_length(normal_returns(0, 30), 0.0, confidence)


# -- probability of backtest overfitting -----------------------------------------------------


def random_matrix(kind, seed, periods, configurations):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0.0, 0.01, (periods, configurations))
    if kind == "student":
        return 0.003 * rng.standard_t(3, (periods, configurations))
    return 0.01 * (rng.lognormal(0.0, 0.8, (periods, configurations)) - 1.3)


@pytest.mark.parametrize(
    ("kind", "seed", "periods", "configurations", "partitions"),
    [
        ("normal", 0, 64, 6, 4),
        ("normal", 1, 40, 2, 2),
        ("student", 2, 103, 9, 6),  # 103 = 6·17 + 1: one row dropped
        ("lognormal", 3, 96, 5, 8),
        ("student", 4, 121, 12, 8),  # 121 = 8·15 + 1
        ("lognormal", 5, 30, 7, 10),  # 3 rows per group
    ],
)
def test_pbo_equals_the_slow_implementation(kind, seed, periods, configurations, partitions):
    matrix = random_matrix(kind, seed, periods, configurations)
    assert_same_pbo(pbo(matrix, partitions), slow_pbo(matrix, partitions), partitions)


def tied_matrix(seed, partitions, size, extra_rows=0):
    """Returns on a 1/8 grid (exact sums) with ties built in: duplicated columns, a column
    whose rows are shuffled within each group (the same statistics on every union of groups),
    an all-zero column, one flat in the first half of the groups, a constant 0.1 one."""
    rng = np.random.default_rng(seed)
    periods = partitions * size + extra_rows
    base = rng.integers(-3, 4, size=(periods, 4)) / 8.0
    shuffled = base[:, 1].copy()
    for g in range(partitions):
        shuffled[g * size : (g + 1) * size] = rng.permutation(shuffled[g * size : (g + 1) * size])
    half_flat = base[:, 2].copy()
    half_flat[: partitions // 2 * size] = 0.0
    columns = [
        base[:, 0], base[:, 1], base[:, 0], shuffled, np.zeros(periods),
        half_flat, base[:, 3], np.full(periods, 0.1), base[:, 3],
    ]  # fmt: skip
    return np.column_stack(columns)


@pytest.mark.parametrize(
    ("seed", "partitions", "size", "extra_rows"), [(0, 4, 6, 0), (1, 6, 5, 3), (2, 8, 4, 1)]
)
def test_pbo_equals_the_slow_implementation_with_ties_and_flat_configurations(
    seed, partitions, size, extra_rows
):
    matrix = tied_matrix(seed, partitions, size, extra_rows)
    result = pbo(matrix, partitions)
    expected = slow_pbo(matrix, partitions)
    assert_same_pbo(result, expected, partitions)
    # ties really happen: some average ranks are halves (odd double ranks)
    ranks = (len(matrix[0]) + 1) / (1 + np.exp(-result.logits))
    assert np.any(np.abs(ranks - np.round(ranks)) > 0.25)


def test_pbo_chunks_and_table_blocks_do_not_change_the_result(monkeypatch):
    matrix = random_matrix("student", 8, 80, 7)
    tied = tied_matrix(3, 8, 5)
    expected = slow_pbo(matrix, 8)
    expected_tied = slow_pbo(tied, 8)
    for chunk_elements, table_bits in [(1, 8), (7 * 3, 3), (9 * 5, 1), (10_000, 2)]:
        monkeypatch.setattr(overfit, "_CHUNK_ELEMENTS", chunk_elements)
        monkeypatch.setattr(overfit, "_TABLE_BITS", table_bits)
        assert_same_pbo(pbo(matrix, 8), expected, 8)
        assert_same_pbo(pbo(tied, 8), expected_tied, 8)


def test_pbo_zero_variance_is_undefined_never_chosen_and_ranked_last():
    # column 0: zero in the first two groups (flat in-sample for combination (0, 1));
    # column 1: always flat; column 2: noise everywhere.
    rng = np.random.default_rng(4)
    noise = rng.normal(0.001, 0.01, (40, 2))
    matrix = np.column_stack([noise[:, 0], np.zeros(40), noise[:, 1]])
    matrix[:20, 0] = 0.0
    result = pbo(matrix, 4)
    combos = list(itertools.combinations(range(4), 2))
    first = combos.index((0, 1))
    assert result.chosen[first] == 2  # the flat ones cannot win in-sample
    assert not np.any(result.chosen == 1)
    # combination (2, 3) has column 0 flat out-of-sample: if chosen, it ranks below column 2
    last = combos.index((2, 3))
    assert math.isnan(result.oos_performance[last]) == (result.chosen[last] == 0)
    # a matrix where every configuration is flat in-sample: the first is chosen, NaN Sharpe
    flat = np.vstack([np.zeros((10, 3)), rng.normal(0, 0.01, (10, 3))])
    both = pbo(flat, 2)
    assert both.chosen[0] == 0 and math.isnan(both.is_performance[0])
    assert both.prob_loss <= 0.5  # NaN out-of-sample does not count as a loss
    assert_same_pbo(both, slow_pbo(flat, 2), 2)


def test_pbo_constant_nonzero_returns_have_no_sharpe_ratio():
    rng = np.random.default_rng(6)
    matrix = np.column_stack([np.full(48, 0.1), rng.normal(0, 0.01, 48), np.full(48, 1e-3)])
    result = pbo(matrix, 4)
    assert not np.any(result.chosen == 0) and not np.any(result.chosen == 2)
    assert np.all(np.isfinite(result.is_performance))


def test_pbo_survives_a_mean_far_larger_than_the_deviation():
    # Σx² − (Σx)²/n would cancel to noise here; the per-configuration shift keeps the variance.
    matrix = 1e4 + random_matrix("student", 17, 96, 5) * 0.1
    result = pbo(matrix, 8)
    expected = slow_pbo(matrix, 8)
    np.testing.assert_allclose(result.is_performance, expected["is_performance"], rtol=1e-8)
    np.testing.assert_allclose(result.oos_performance, expected["oos_performance"], rtol=1e-8)
    np.testing.assert_array_equal(result.chosen, expected["chosen"])
    assert result.pbo == expected["pbo"]


def test_pbo_of_pure_noise_is_near_one_half_and_degrades():
    results = [pbo(random_matrix("normal", seed, 400, 20), 8) for seed in range(20)]
    assert 0.35 <= np.mean([r.pbo for r in results]) <= 0.65
    assert np.mean([r.degradation for r in results]) < 0.05
    assert all(0 <= r.pbo <= 1 and 0 <= r.prob_loss <= 1 for r in results)


def test_pbo_of_a_real_edge_is_near_zero():
    rng = np.random.default_rng(12)
    matrix = rng.normal(0.0, 0.01, (1000, 30))
    matrix[:, 17] += 0.004  # a real edge every period
    result = pbo(matrix, 10)
    assert result.pbo < 0.05
    assert np.all(result.chosen == 17)
    assert result.prob_loss == 0.0
    assert np.all(result.logits > 0)


def test_pbo_drops_the_remainder_rows():
    matrix = random_matrix("normal", 13, 70, 5)  # 70 = 8·8 + 6
    head = pbo(matrix[:64], 8)
    changed = matrix.copy()
    changed[64:] = 123.0
    for result in (pbo(matrix, 8), pbo(changed, 8)):
        np.testing.assert_array_equal(result.logits, head.logits)
        np.testing.assert_array_equal(result.is_performance, head.is_performance)
        assert result.pbo == head.pbo


def test_pbo_accepts_frames_arrays_and_lists():
    matrix = random_matrix("student", 14, 60, 4)
    expected = pbo(matrix, 6)
    frame = pd.DataFrame(matrix, columns=list("abcd"))
    for data in (frame, matrix.tolist(), np.asfortranarray(matrix)):
        result = pbo(data, 6)
        np.testing.assert_array_equal(result.chosen, expected.chosen)
        np.testing.assert_allclose(result.logits, expected.logits, rtol=0, atol=0)
        np.testing.assert_allclose(result.is_performance, expected.is_performance, rtol=1e-12)


def test_pbo_duplicate_columns_tie_in_fortran_order_frames():
    rng = np.random.default_rng(15)
    base = rng.normal(0.0005, 0.01, (301, 3))
    frame = pd.DataFrame(np.column_stack([base, base[:, ::-1], base]))  # every column ×2 or ×3
    result = pbo(frame, 6)
    np.testing.assert_allclose(result.logits, slow_pbo(frame, 6)["logits"], rtol=0, atol=1e-12)


def test_pbo_result_is_frozen_and_read_only():
    result = pbo(random_matrix("normal", 16, 40, 3), 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pbo = 0.0  # type: ignore[misc]
    for array in (result.logits, result.is_performance, result.oos_performance, result.chosen):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
    assert len(result.logits) == result.combinations == 6


@pytest.mark.parametrize(
    ("data", "partitions", "message"),
    [
        (np.zeros((20, 3)) + np.arange(3), 3, "even"),
        (np.ones((20, 3)), 0, "even"),
        (np.ones((20, 3)), -2, "even"),
        (np.ones((20, 3)), 4.0, "integer"),
        (np.ones((20, 3)), True, "integer"),
        (np.ones((20, 3)), 22, "at most the number of periods"),
        (np.ones((3, 3)), 2, "at least 2"),  # one row per half
        (np.ones((20, 1)), 2, "at least 2 configurations"),
        (np.ones((1, 3)), 2, "at least 2 periods"),
        (np.ones(20), 2, "2-D"),
        (np.ones((2, 3, 4)), 2, "2-D"),
        (np.where(np.eye(20, 3) > 0, np.nan, 0.1), 2, "NaN"),
        (np.where(np.eye(20, 3) > 0, -np.inf, 0.1), 2, "infinite"),
        ([["a", "b"], ["c", "d"]], 2, "numeric"),
        (np.ones((100, 3)), 30, "combinations"),
    ],
)
def test_pbo_rejects_bad_inputs(data, partitions, message):
    with pytest.raises(ValueError, match=message):
        pbo(data, partitions)


def test_pbo_names_the_first_bad_value():
    matrix = np.zeros((20, 3))
    matrix[7, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"^returns_matrix holds NaN at position \(7, 2\) \(the first;"
    ):
        pbo(matrix)


# -- combinatorial purged cross-validation ---------------------------------------------------


def group_ranges(n, groups):
    return [(int(part[0]), int(part[-1]) + 1) for part in np.array_split(np.arange(n), groups)]


@pytest.mark.parametrize(
    ("n", "groups", "test_groups"), [(6, 3, 2), (100, 6, 2), (101, 6, 3), (37, 5, 1), (50, 10, 4)]
)
def test_cpcv_split_and_path_counts_and_coverage(n, groups, test_groups):
    splits = list(cpcv_splits(n, groups, test_groups))
    combos = list(itertools.combinations(range(groups), test_groups))
    ranges = group_ranges(n, groups)
    assert len(splits) == math.comb(groups, test_groups)
    for (train, test), combo in zip(splits, combos, strict=True):
        expected_test = np.concatenate([np.arange(*ranges[g]) for g in combo])
        np.testing.assert_array_equal(test, expected_test)
        np.testing.assert_array_equal(train, np.setdiff1d(np.arange(n), expected_test))
        assert train.dtype.kind == "i" and test.dtype.kind == "i"
    paths = cpcv_paths(n, groups, test_groups)
    phi = test_groups * math.comb(groups, test_groups) // groups
    assert len(paths) == phi == math.comb(groups - 1, test_groups - 1)
    for path in paths:
        assert [group for _, group in path] == list(range(groups))  # each group exactly once
        for split, group in path:
            assert group in combos[split]
    for group in range(groups):
        testers = [split for split, combo in enumerate(combos) if group in combo]
        assert [path[group][0] for path in paths] == testers  # j-th tester on path j
    # every (split, group) test prediction is used by exactly one path
    used = sorted((s, g) for path in paths for s, g in path)
    assert used == sorted((s, g) for s, combo in enumerate(combos) for g in combo)


def test_cpcv_paths_small_example():
    # groups 0, 1, 2, test pairs (0, 1), (0, 2), (1, 2)
    assert cpcv_paths(6, 3, 2) == [[(0, 0), (0, 1), (1, 2)], [(1, 0), (2, 1), (2, 2)]]
    assert cpcv_paths(10, 4, 1) == [[(0, 0), (1, 1), (2, 2), (3, 3)]]


@pytest.mark.parametrize(
    ("n", "groups", "test_groups", "purge", "embargo"),
    [(100, 5, 2, 3, 4), (120, 6, 2, 0, 5), (120, 6, 3, 7, 0), (97, 7, 3, 2, 2), (60, 6, 1, 4, 3)],
)
def test_cpcv_purge_and_embargo_widths_are_exact(n, groups, test_groups, purge, embargo):
    ranges = group_ranges(n, groups)
    combos = itertools.combinations(range(groups), test_groups)
    everything = np.arange(n)
    for (train, test), combo in zip(
        cpcv_splits(n, groups, test_groups, purge, embargo), combos, strict=True
    ):
        assert not np.intersect1d(train, test).size  # no test bar in its own training
        removed = np.setdiff1d(everything, np.union1d(train, test))
        assert np.array_equal(np.sort(np.concatenate([train, test, removed])), everything)
        blocks = []
        for g in combo:
            if blocks and blocks[-1][1] == g:
                blocks[-1][1] = g + 1
            else:
                blocks.append([g, g + 1])
        expected_removed = 0
        for first, last in blocks:
            start, stop = ranges[first][0], ranges[last - 1][1]
            before = np.sum((removed >= start - purge) & (removed < start))
            after = np.sum((removed >= stop) & (removed < stop + embargo))
            assert before == min(purge, start)  # clipped at the first bar
            assert after == min(embargo, n - stop)  # clipped at the last bar
            expected_removed += before + after
        assert removed.size == expected_removed  # nothing else is left out
        assert test.size == sum(ranges[g][1] - ranges[g][0] for g in combo)


def test_cpcv_blocks_at_the_edges_and_merged_adjacent_groups():
    splits = list(cpcv_splits(30, 3, 2, purge=2, embargo=3))
    # (0, 1): one block [0, 20): nothing before it, embargo 20..22
    train, test = splits[0]
    np.testing.assert_array_equal(test, np.arange(20))
    np.testing.assert_array_equal(train, np.arange(23, 30))
    # (0, 2): blocks [0, 10) and [20, 30): embargo 10..12, purge 18..19, nothing after the end
    train, test = splits[1]
    np.testing.assert_array_equal(train, np.arange(13, 18))
    # (1, 2): one block [10, 30): purge 8..9
    train, test = splits[2]
    np.testing.assert_array_equal(train, np.arange(8))


def test_cpcv_wide_purge_is_clipped_and_may_empty_the_training_set():
    (train, test), *_ = cpcv_splits(20, 2, 1, purge=0, embargo=50)
    np.testing.assert_array_equal(test, np.arange(10))
    assert train.size == 0
    _, (train, test) = cpcv_splits(20, 2, 1, purge=50, embargo=0)
    np.testing.assert_array_equal(test, np.arange(10, 20))
    assert train.size == 0


def test_cpcv_group_sizes_follow_numpy_array_split():
    _, test = next(iter(cpcv_splits(11, 3, 1)))
    np.testing.assert_array_equal(test, np.arange(4))  # sizes 4, 4, 3
    assert [t.size for _, t in cpcv_splits(11, 3, 1)] == [4, 4, 3]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 10.0}, "n"),
        ({"n": True}, "n"),
        ({"n": 4, "groups": 6}, "n"),
        ({"groups": 1}, "groups"),
        ({"groups": "6"}, "groups"),
        ({"test_groups": 0}, "test_groups"),
        ({"test_groups": 6}, "test_groups"),
        ({"test_groups": 2.0}, "test_groups"),
        ({"purge": -1}, "purge"),
        ({"purge": 1.5}, "purge"),
        ({"embargo": -2}, "embargo"),
        ({"embargo": None}, "embargo"),
    ],
)
def test_cpcv_rejects_bad_arguments_naming_them(kwargs, name):
    arguments = {"n": 60} | kwargs
    for function in (cpcv_splits, cpcv_paths):
        with pytest.raises(ValueError, match=rf"^{name} must"):
            function(**arguments)  # checked on the call, not on the first split


def test_cpcv_accepts_numpy_integers():
    splits = list(cpcv_splits(np.int64(30), np.int32(5), np.int64(2), np.int8(1), np.uint8(1)))
    assert len(splits) == 10
    assert len(cpcv_paths(np.int64(30), np.int32(5), np.int64(2))) == 4


# -- real return series (the shared market data, when it is beside the project) -------------
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "market"


def _real_closes(name):
    from osmarkets.data.io import read_bars

    return read_bars(SHARED / name)["close"].to_numpy(dtype=float)


@pytest.mark.skipif(not SHARED.exists(), reason="the shared market data is not beside the project")
@pytest.mark.parametrize("name", ["orcl-1995-2014.txt", "nvda-1999-2014.txt"])
def test_the_sharpe_statistics_on_real_daily_returns(name):
    closes = _real_closes(name)
    returns = closes[1:] / closes[:-1] - 1.0
    sr, skew, kurt, t = slow_moments(returns)
    assert kurt > 5  # real daily stock returns: fat tails, which the PSR must account for
    assert probabilistic_sharpe(returns, 0.01) == pytest.approx(
        slow_psr(sr, skew, kurt, t, 0.01), rel=1e-9
    )
    # the trials: momentum rules of 1..40 days on the same stock (long when up over the lag)
    trials = []
    for lag in range(1, 41):
        signal = np.r_[np.zeros(lag), closes[lag:-1] > closes[: -lag - 1]].astype(float)
        trials.append(slow_moments(signal * returns)[0])
    assert deflated_sharpe(returns, trials) == pytest.approx(
        slow_psr(sr, skew, kurt, t, slow_expected_max(trials)), rel=1e-9
    )
    assert min_track_record_length(returns, 0.0) == pytest.approx(
        slow_min_trl(sr, skew, kurt, 0.0, 0.95), rel=1e-9
    )


@pytest.mark.skipif(not SHARED.exists(), reason="the shared market data is not beside the project")
def test_pbo_on_real_minute_returns_matches_the_slow_cscv():
    closes = _real_closes("2006-01-02-volume-min-001.txt")[:1601]
    returns = closes[1:] / closes[:-1] - 1.0
    columns = []
    for lag in range(1, 9):
        signal = np.r_[np.zeros(lag), closes[lag:-1] > closes[: -lag - 1]].astype(float)
        columns.append(signal * returns)
    matrix = np.column_stack(columns)
    assert_same_pbo(pbo(matrix, 8), slow_pbo(matrix, 8), 8)
